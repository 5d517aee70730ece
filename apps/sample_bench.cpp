// Google Benchmark of one sampling call per setting over a 32,000-token vocabulary (the Llama 2
// vocabulary size), with logits shaped like a real model's (a few strong candidates over a broad
// tail) and flat ones (random weights), so the cost of each filter is visible on its own.
// Run: ./build/pagoda_sample_bench [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "core/sample/philox.h"
#include "core/sample/sampler.h"

namespace {

using pagoda::SamplingParams;

// Row shapes: 0 flat (normal, standard deviation 2), 1 peaked (the same plus a few dominant
// tokens), 2 near-uniform (standard deviation 0.34, what the synth models' random weights give and
// what a real model gives at a high temperature: every token within a few units of the top).
std::vector<float> make_logits(int64_t shape) {
  std::vector<float> l(32000);
  const float sd = shape == 2 ? 0.34f : 2.0f;
  for (size_t i = 0; i < l.size(); ++i) {
    // Box-Muller normal from two Philox uniforms.
    const float u1 = std::max(pagoda::philox_uniform(5, 0, i), 1e-7f), u2 = pagoda::philox_uniform(5, 1, i);
    l[i] = sd * std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
  }
  if (shape == 1)
    for (size_t i = 0; i < 8; ++i) l[i * 3001] += 14.0f - float(i);
  return l;
}
const char* kShapes[] = {"/flat", "/peaked", "/near_uniform"};

// 64 earlier tokens, spread over the vocabulary, for the penalty settings.
std::vector<int32_t> history64() {
  std::vector<int32_t> h(64);
  for (size_t i = 0; i < h.size(); ++i) h[i] = int32_t(i * 97);
  return h;
}

SamplingParams setting(int64_t which) {
  SamplingParams p;
  p.top_k = 0; p.top_p = 1; p.min_p = 0; p.temperature = 0.8f;
  switch (which) {
    case 0: p.temperature = 0; break;                          // greedy
    case 1: break;                                             // temperature only (OpenAI's default)
    case 2: p.top_k = 40; break;
    case 3: p.top_p = 0.95f; break;
    case 4: p.min_p = 0.05f; break;
    case 5: p.top_k = 40; p.top_p = 0.95f; p.min_p = 0.05f; break;  // pagoda run's default
    case 6: p.top_p = 0.95f; p.repeat_penalty = 1.1f; break;
  }
  return p;
}
const char* kNames[] = {"greedy", "temperature", "top_k40", "top_p0.95", "min_p0.05", "k40_p0.95_minp0.05",
                        "top_p0.95_repeat1.1"};

void BM_SampleToken(benchmark::State& state) {
  const auto logits = make_logits(state.range(1));
  const SamplingParams p = setting(state.range(0));
  const std::vector<int32_t> history = history64();
  uint64_t index = 0;
  for (auto _ : state) benchmark::DoNotOptimize(pagoda::sample_token(logits, history, p, index++));
  state.SetLabel(std::string(kNames[state.range(0)]) + kShapes[state.range(1)]);
}
// The same call over 64 different rows in turn (8 MiB, past this machine's L2): the engine samples
// a batch's rows just after the output matmul wrote them, not from a row already in L2.
void BM_SampleTokenRotatingRows(benchmark::State& state) {
  constexpr size_t kRows = 64;
  const auto base = make_logits(state.range(1));
  std::vector<std::vector<float>> rows(kRows, base);
  for (size_t r = 0; r < kRows; ++r) std::rotate(rows[r].begin(), rows[r].begin() + long(r * 499), rows[r].end());
  const SamplingParams p = setting(state.range(0));
  const std::vector<int32_t> history = history64();
  uint64_t index = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pagoda::sample_token(rows[index % kRows], history, p, index));
    ++index;
  }
  state.SetLabel(std::string(kNames[state.range(0)]) + kShapes[state.range(1)] + "/64rows");
}
// The engine's call: the penalties written into the row and undone, not into a copy of it.
void BM_SampleTokenInPlace(benchmark::State& state) {
  auto logits = make_logits(state.range(1));
  const SamplingParams p = setting(state.range(0));
  const std::vector<int32_t> history = history64();
  uint64_t index = 0;
  for (auto _ : state) benchmark::DoNotOptimize(pagoda::sample_token_in_place(logits, history, p, index++));
  state.SetLabel(std::string(kNames[state.range(0)]) + kShapes[state.range(1)] + "/in_place");
}
BENCHMARK(BM_SampleTokenInPlace)->ArgsProduct({{3, 6}, {0, 1, 2}})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SampleTokenRotatingRows)->ArgsProduct({{0, 1, 3, 5}, {0, 1, 2}})->Unit(benchmark::kMicrosecond);

// The sampler before this benchmark existed, kept as the baseline the ratio divides by: a dense
// copy of the row, a full sort of the vocabulary (or of the top-k), double-precision weights, a
// dense probability vector, then an inverse-CDF draw over it.
int32_t sort_baseline(std::span<const float> logits_in, const SamplingParams& p, float u) {
  std::vector<float> logits(logits_in.begin(), logits_in.end());
  std::vector<float> probs(logits.size(), 0.0f);
  if (p.greedy()) return pagoda::argmax(logits);
  std::vector<int32_t> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  };
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
  size_t cut = keep;
  if (p.top_p < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < keep; ++i)
      if ((acc += w[i] / sum) >= p.top_p) { cut = i + 1; break; }
  }
  if (p.min_p > 0.0f) {
    size_t m = 1;
    while (m < cut && w[m] >= p.min_p * w[0]) ++m;
    cut = m;
  }
  double kept = 0;
  for (size_t i = 0; i < cut; ++i) kept += w[i];
  for (size_t i = 0; i < cut; ++i) probs[size_t(idx[i])] = float(w[i] / kept);
  return pagoda::draw_from(probs, u);
}

void BM_SortBaseline(benchmark::State& state) {
  const auto logits = make_logits(state.range(1));
  const SamplingParams p = setting(state.range(0));
  uint64_t index = 0;
  for (auto _ : state) benchmark::DoNotOptimize(sort_baseline(logits, p, pagoda::philox_uniform(p.seed, 0, index++)));
  state.SetLabel(std::string(kNames[state.range(0)]) + kShapes[state.range(1)]);
}
BENCHMARK(BM_SortBaseline)->ArgsProduct({{1, 2, 3, 4, 5}, {0, 1}})->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_SampleToken)->ArgsProduct({{0, 1, 2, 3, 4, 5, 6}, {0, 1, 2}})->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
