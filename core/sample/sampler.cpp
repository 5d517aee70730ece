#include "core/sample/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <unordered_set>

#include "core/sample/philox.h"

namespace pagoda {

Status SamplingParams::validate() const {
  if (!std::isfinite(temperature)) return make_error("temperature must be a finite number");
  if (!(top_p > 0.0f) || top_p > 1.0f) return make_error("top_p must be in (0, 1]");
  if (min_p < 0.0f || min_p > 1.0f) return make_error("min_p must be in [0, 1]");
  if (!(repeat_penalty > 0.0f)) return make_error("repeat_penalty must be positive");
  if (repeat_last_n < 0) return make_error("repeat_last_n must be >= 0");
  return {};
}

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p) {
  if (p.repeat_penalty == 1.0f || p.repeat_last_n == 0) return;
  const size_t n = std::min(history.size(), size_t(p.repeat_last_n));
  std::unordered_set<int32_t> seen(history.end() - long(n), history.end());
  for (int32_t t : seen) {
    if (t < 0 || size_t(t) >= logits.size()) continue;
    float& l = logits[size_t(t)];
    l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
  }
}

std::vector<float> sampling_distribution(std::span<const float> logits_in, std::span<const int32_t> history,
                                         const SamplingParams& p) {
  std::vector<float> logits(logits_in.begin(), logits_in.end());
  apply_repetition_penalty(logits, history, p);
  std::vector<float> probs(logits.size(), 0.0f);
  if (p.greedy()) {
    probs[size_t(argmax(logits))] = 1.0f;
    return probs;
  }
  // Candidates in descending logit order (ties by index), cut to top-k first so the sort is small.
  std::vector<int32_t> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b); };
  size_t keep = idx.size();
  if (p.top_k > 0 && size_t(p.top_k) < keep) {
    keep = size_t(p.top_k);
    std::nth_element(idx.begin(), idx.begin() + long(keep) - 1, idx.end(), by_logit);
  }
  std::sort(idx.begin(), idx.begin() + long(keep), by_logit);
  const float mx = logits[size_t(idx[0])];
  std::vector<double> w(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += w[i] = std::exp(double(logits[size_t(idx[i])] - mx) / p.temperature);
  // top-p: the smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p * max.
  size_t cut = keep;
  if (p.top_p < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < keep; ++i) {
      acc += w[i] / sum;
      if (acc >= p.top_p) { cut = i + 1; break; }
    }
  }
  if (p.min_p > 0.0f) {
    size_t m = 1;
    while (m < cut && w[m] >= p.min_p * w[0]) ++m;
    cut = m;
  }
  double kept = 0;
  for (size_t i = 0; i < cut; ++i) kept += w[i];
  for (size_t i = 0; i < cut; ++i) probs[size_t(idx[i])] = float(w[i] / kept);
  return probs;
}

int32_t draw_from(std::span<const float> probs, float u) {
  double total = 0;
  for (float x : probs) total += x;
  const double target = double(u) * total;
  double acc = 0;
  int32_t last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    last = int32_t(i);
    acc += probs[i];
    if (acc > target) return int32_t(i);
  }
  return last;
}

int32_t sample_token(std::span<const float> logits, std::span<const int32_t> history, const SamplingParams& p,
                     uint64_t index) {
  if (p.greedy() && p.repeat_penalty == 1.0f) return argmax(logits);
  const auto probs = sampling_distribution(logits, history, p);
  if (p.greedy()) return argmax(probs);
  return draw_from(probs, philox_uniform(p.seed, 0, index));
}

}  // namespace pagoda
