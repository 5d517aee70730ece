#include "core/sample/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>

#include "core/sample/philox.h"
#include "core/sample/row_kernels.h"
#include "core/sample/top_p.h"

namespace pagoda {

Status SamplingParams::validate() const {
  if (!std::isfinite(temperature)) return make_error("temperature must be a finite number");
  if (!(top_p > 0.0f) || top_p > 1.0f) return make_error("top_p must be in (0, 1]");
  if (min_p < 0.0f || min_p > 1.0f) return make_error("min_p must be in [0, 1]");
  if (!(repeat_penalty > 0.0f)) return make_error("repeat_penalty must be positive");
  if (repeat_last_n < 0) return make_error("repeat_last_n must be >= 0");
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) return make_error("presence_penalty must be in [-2, 2]");
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    return make_error("frequency_penalty must be in [-2, 2]");
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0) return make_error("logit_bias: token id " + std::to_string(id) + " is negative");
    if (!(bias >= -100.0f && bias <= 100.0f))
      return make_error("logit_bias: bias for token " + std::to_string(id) + " must be in [-100, 100]");
  }
  return {};
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p) {
  SamplingParams r;
  r.repeat_penalty = p.repeat_penalty;
  r.repeat_last_n = p.repeat_last_n;
  apply_penalties(logits, history, 0, r);
}

bool has_penalties(const SamplingParams& p) {
  return (p.repeat_penalty != 1.0f && p.repeat_last_n != 0) || p.presence_penalty != 0.0f ||
         p.frequency_penalty != 0.0f || !p.logit_bias.empty();
}

void append_logit_adjustments(std::span<const int32_t> history, size_t generated, const SamplingParams& p,
                              int32_t vocab, int32_t row, std::vector<LogitAdjust>& out) {
  const size_t first = out.size();
  auto in_vocab = [vocab](int32_t t) { return t >= 0 && t < vocab; };
  // One entry per (category, token); the merge below folds them per token. Each category gives a
  // token at most one entry (logit_bias repeats add up), so folding into the identity entry
  // (bias 0, scales 1, subtract 0) is exact.
  for (const auto& [id, bias] : p.logit_bias)
    if (in_vocab(id)) out.push_back({row, id, bias, 1.0f, 1.0f, 0.0f});
  if (p.repeat_penalty != 1.0f && p.repeat_last_n != 0) {
    const size_t n = std::min(history.size(), size_t(p.repeat_last_n));
    const float inv = 1.0f / p.repeat_penalty;
    const size_t mark = out.size();
    for (int32_t t : history.subspan(history.size() - n))
      if (in_vocab(t)) out.push_back({row, t, 0.0f, inv, p.repeat_penalty, 0.0f});
    std::sort(out.begin() + long(mark), out.end(), [](const LogitAdjust& a, const LogitAdjust& b) { return a.token < b.token; });
    out.erase(std::unique(out.begin() + long(mark), out.end(),
                          [](const LogitAdjust& a, const LogitAdjust& b) { return a.token == b.token; }),
              out.end());
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    generated = std::min(generated, history.size());
    std::vector<int32_t> gen(history.end() - long(generated), history.end());
    std::sort(gen.begin(), gen.end());
    for (size_t i = 0; i < gen.size();) {
      size_t j = i;
      while (j < gen.size() && gen[j] == gen[i]) ++j;
      if (in_vocab(gen[i])) out.push_back({row, gen[i], 0.0f, 1.0f, 1.0f, float(j - i) * p.frequency_penalty + p.presence_penalty});
      i = j;
    }
  }
  std::stable_sort(out.begin() + long(first), out.end(),
                   [](const LogitAdjust& a, const LogitAdjust& b) { return a.token < b.token; });
  size_t w = first;
  for (size_t i = first; i < out.size(); ++i) {
    if (w > first && out[w - 1].token == out[i].token) {
      LogitAdjust& m = out[w - 1];
      m.bias += out[i].bias;
      m.pos_scale *= out[i].pos_scale;
      m.neg_scale *= out[i].neg_scale;
      m.subtract += out[i].subtract;
    } else {
      out[w++] = out[i];
    }
  }
  out.resize(w);
}

void apply_penalties(std::span<float> logits, std::span<const int32_t> history, size_t generated,
                     const SamplingParams& p) {
  thread_local std::vector<LogitAdjust> adj;
  adj.clear();
  append_logit_adjustments(history, generated, p, int32_t(logits.size()), 0, adj);
  for (const LogitAdjust& a : adj) logits[size_t(a.token)] = adjust_logit(logits[size_t(a.token)], a);
}

namespace {

using namespace row_kernels;
using sample_detail::before;
using sample_detail::kept;
using sample_detail::Rank;

// A token the sparse path keeps, with its unnormalized weight.
struct KeptToken {
  int32_t index;
  double w;
};

// Scratch buffers reused across calls on one thread: a call costs a few passes over the
// vocabulary, never an allocation once warm.
struct Scratch {
  std::vector<float> logits, w;
  std::vector<LogitAdjust> adjust;  // sample_token_in_place: the penalties, and the logits they replaced
  std::vector<float> replaced;
  std::vector<uint32_t> selected;
  std::vector<double> block_mass, cand_w;
  std::vector<Rank> ranks;
  std::vector<KeptToken> kept_tokens;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// The top-k boundary: the k-th token in candidate order, by one scan with a k-sized heap whose
// top is the worst kept token. Most tokens fail the first comparison and cost nothing more.
void top_k_candidates(std::span<const float> l, size_t k, std::vector<Rank>& heap) {
  auto worse_on_top = [](const Rank& a, const Rank& b) { return before(a, b); };
  heap.clear();
  const size_t n = l.size();
  size_t i = 0;
  for (; i < n && heap.size() < k; ++i) {
    heap.push_back({l[i], int32_t(i)});
    std::push_heap(heap.begin(), heap.end(), worse_on_top);
  }
  auto consider = [&](size_t j) {
    if (l[j] > heap.front().logit) {  // equal logits arrive later, so they rank after
      std::pop_heap(heap.begin(), heap.end(), worse_on_top);
      heap.back() = {l[j], int32_t(j)};
      std::push_heap(heap.begin(), heap.end(), worse_on_top);
    }
  };
  // Eight logits against the heap's worst at once: a group with none above it (nearly all, once
  // the heap holds strong candidates) costs one compare, not eight branches; a group with one is
  // taken token by token, in order, exactly as the scalar scan does.
  for (; i + 8 <= n; i += 8) {
    F8 v;
    std::memcpy(&v, l.data() + i, sizeof v);
    if (!any_lane(v > heap.front().logit)) continue;
    for (size_t j = i; j < i + 8; ++j) consider(j);
  }
  for (; i < n; ++i) consider(i);
}

// The distribution a setting defines over a row, unnormalized, in one of two forms: sparse (the
// kept tokens in index order with their weights; used when top-k leaves few candidates) or dense
// (a weight per token, 0 where filtered, with per-block sums so a draw scans one block).
constexpr size_t kBlock = 256;
struct Weights {
  bool sparse = false;
  std::span<const KeptToken> tokens;  // sparse, index order
  std::span<const float> w;          // dense
  std::span<const double> block_mass;  // dense
  double total = 0;
  // Dense under top-p alone: `w` and `block_mass` are unfiltered, and only the tokens kept() by
  // `last` count (a draw walks the row once instead of a pass zeroing the rest first).
  bool filtered = false;
  Rank last = {};
  std::span<const float> logits;
};

// Few candidates: weights in double over the top-k tokens in candidate order, the top-p and
// min-p prefixes cut from that order directly, then the survivors put back in index order.
bool sparse_weights(std::span<const float> l, const SamplingParams& p, Scratch& s, Weights& out) {
  top_k_candidates(l, size_t(p.top_k), s.ranks);
  std::sort(s.ranks.begin(), s.ranks.end(), before);
  if (!std::isfinite(s.ranks.front().logit)) return false;
  const double top = s.ranks.front().logit;
  s.cand_w.resize(s.ranks.size());
  double sum = 0;
  for (size_t i = 0; i < s.ranks.size(); ++i) {
    const float x = s.ranks[i].logit;
    sum += s.cand_w[i] = x > kNegInf ? std::exp((double(x) - top) / p.temperature) : 0.0;
  }
  size_t cut = s.ranks.size();
  if (p.top_p < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < cut; ++i)
      if ((acc += s.cand_w[i] / sum) >= p.top_p) { cut = i + 1; break; }
  }
  if (p.min_p > 0.0f) {
    size_t m = 1;
    while (m < cut && s.cand_w[m] >= p.min_p) ++m;  // the top token's weight is exactly 1
    cut = m;
  }
  // The survivors in index order, the order the draw walks.
  s.kept_tokens.resize(cut);
  double total = 0;
  for (size_t i = 0; i < cut; ++i) {
    s.kept_tokens[i] = {s.ranks[i].index, s.cand_w[i]};
    total += s.cand_w[i];
  }
  std::sort(s.kept_tokens.begin(), s.kept_tokens.end(),
            [](const KeptToken& a, const KeptToken& b) { return a.index < b.index; });
  out = {};
  out.sparse = true;
  out.tokens = s.kept_tokens;
  out.total = total;
  return total > 0;
}

// Many candidates: one pass over the row computing the weights and their block sums, then the
// boundary of whichever filters are on; top-p alone ends there (the draw tests kept() itself),
// otherwise one pass zeroes what the filters drop and sums blocks again.
bool dense_weights(std::span<const float> l, const SamplingParams& p, Scratch& s, Weights& out) {
  const size_t n = l.size();
  // Top-p's buckets span the row: the weight pass finds the smallest finite logit on the way.
  const bool top_p = p.top_p < 1.0f;
  const float mx = max_logit(l);
  float mn = std::numeric_limits<float>::infinity();
  if (!std::isfinite(mx)) return false;
  const float inv_t = 1.0f / p.temperature;
  s.w.resize(n);
  float* w = s.w.data();
  Rank last{kNegInf, int32_t(n)};  // keeps every token
  bool all = true;
  if (p.top_k > 0 && size_t(p.top_k) < n) {
    top_k_candidates(l, size_t(p.top_k), s.ranks);
    last = s.ranks.front();
    all = false;
  }
  const size_t blocks = (n + kBlock - 1) / kBlock;
  s.block_mass.resize(blocks);
  double total = 0;  // of the unfiltered weights: the top-p mass when nothing else filters
  for (size_t b = 0; b < blocks; ++b) {
    const size_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    total += s.block_mass[b] = top_p ? weigh<true>(l.data(), w, lo, hi, mx, inv_t, &mn) : weigh(l.data(), w, lo, hi, mx, inv_t);
  }
  if (top_p) {
    double mass = total;
    if (!all) {
      mass = 0;
      for (size_t i = 0; i < n; ++i) mass += kept(l[i], int32_t(i), last) ? w[i] : 0.0f;
    }
    double kept_mass = 0;
    std::tie(last, kept_mass) =
        sample_detail::top_p_boundary(l, s.w, s.selected, s.ranks, mx, mn, inv_t, last, all, double(p.top_p), mass);
    if (p.min_p <= 0.0f) {
      out = {};
      out.w = s.w;
      out.block_mass = s.block_mass;
      out.total = kept_mass;
      out.filtered = true;
      out.last = last;
      out.logits = l;
      return kept_mass > 0;
    }
    all = false;
  }
  // min-p keeps tokens whose weight is at least min_p times the top token's, which is exactly 1.
  if (!all || p.min_p > 0.0f) {
    const float min_w = p.min_p > 0.0f ? p.min_p : 0.0f;
    total = 0;
    const F8 last_l = F8{} + last.logit, minv = F8{} + min_w;
    const I8 last_i = I8{} + last.index, step = I8{} + 8;
    for (size_t b = 0; b < blocks; ++b) {
      const size_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      size_t i = lo;
      I8 idx = I8{0, 1, 2, 3, 4, 5, 6, 7} + int32_t(lo);
      F8 acc = {};  // the block's sum in eight float lanes, as weigh adds it
      for (; i + 8 <= hi; i += 8, idx += step) {
        F8 v, x;
        std::memcpy(&v, l.data() + i, sizeof v);
        std::memcpy(&x, w + i, sizeof x);
        // kept(): a higher logit, or the same logit at no later index (a NaN logit is never kept
        // by a boundary, as in the scalar test).
        const I8 keep = all ? (I8{} - 1) : ((v > last_l) | ((v == last_l) & (idx <= last_i)));
        const F8 out = (x >= minv) & (keep != 0) ? x : F8{};
        std::memcpy(w + i, &out, sizeof out);
        acc += out;
      }
      double sum = 0;
      for (int j = 0; j < 8; ++j) sum += acc[j];
      for (; i < hi; ++i) {
        if (w[i] < min_w || !(all || kept(l[i], int32_t(i), last))) w[i] = 0.0f;
        sum += w[i];
      }
      total += s.block_mass[b] = sum;
    }
  }
  out = {};
  out.w = s.w;
  out.block_mass = s.block_mass;
  out.total = total;
  return total > 0;
}

constexpr size_t kSparseTopK = 4096;  // top-k at or below this takes the sparse path

bool build_weights(std::span<const float> l, const SamplingParams& p, Scratch& s, Weights& out) {
  if (p.top_k > 0 && size_t(p.top_k) < l.size() && size_t(p.top_k) <= kSparseTopK) return sparse_weights(l, p, s, out);
  return dense_weights(l, p, s, out);
}

// The weight of the kept tokens in w[lo, hi), eight lanes at a time.
double kept_weight(const Weights& wt, size_t lo, size_t hi) {
  const float* l = wt.logits.data();
  const F8 last_l = F8{} + wt.last.logit;
  const I8 last_i = I8{} + wt.last.index;
  F8 acc = {};
  size_t i = lo;
  for (I8 idx = I8{0, 1, 2, 3, 4, 5, 6, 7} + int32_t(lo); i + 8 <= hi; i += 8, idx += 8) {
    F8 v, x;
    std::memcpy(&v, l + i, sizeof v);
    std::memcpy(&x, wt.w.data() + i, sizeof x);
    // kept(), lane-wise (a NaN logit is never kept by a boundary, as in the scalar test).
    acc += (v > last_l) | ((v == last_l) & (idx <= last_i)) ? x : F8{};
  }
  double sum = 0;
  for (int j = 0; j < 8; ++j) sum += acc[j];
  for (; i < hi; ++i) sum += kept(l[i], int32_t(i), wt.last) ? wt.w[i] : 0.0f;
  return sum;
}

// The draw over the kept tokens of a filtered dense row: their weight a block at a time until the
// block holding the target, then token by token in it. On average half the row is read.
int32_t draw_kept(const Weights& wt, double target) {
  const size_t n = wt.w.size();
  double acc = 0;
  size_t lo = 0;
  for (; lo + kBlock < n; lo += kBlock) {
    const double m = kept_weight(wt, lo, lo + kBlock);
    if (acc + m > target) break;
    acc += m;
  }
  for (size_t i = lo; i < n; ++i)
    if (wt.w[i] > 0.0f && kept(wt.logits[i], int32_t(i), wt.last) && (acc += wt.w[i]) > target) return int32_t(i);
  for (size_t i = n; i-- > 0;)  // rounding put the target past the kept weight: the last kept token
    if (wt.w[i] > 0.0f && kept(wt.logits[i], int32_t(i), wt.last)) return int32_t(i);
  return 0;
}

// Inverse-CDF draw in index order (the same order draw_from uses on a dense vector).
int32_t draw_weighted(const Weights& wt, float u) {
  const double target = double(u) * wt.total;
  double acc = 0;
  if (wt.sparse) {
    for (size_t i = 0; i < wt.tokens.size(); ++i)
      if ((acc += wt.tokens[i].w) > target && wt.tokens[i].w > 0) return wt.tokens[i].index;
    for (size_t i = wt.tokens.size(); i-- > 0;)
      if (wt.tokens[i].w > 0) return wt.tokens[i].index;
    return wt.tokens.front().index;
  }
  if (wt.filtered) return draw_kept(wt, target);
  size_t b = 0;
  for (; b + 1 < wt.block_mass.size(); ++b) {
    if (acc + wt.block_mass[b] > target) break;
    acc += wt.block_mass[b];
  }
  const size_t lo = b * kBlock, hi = std::min(wt.w.size(), lo + kBlock);
  for (size_t i = lo; i < hi; ++i)
    if (wt.w[i] > 0.0f && (acc += wt.w[i]) > target) return int32_t(i);
  for (size_t i = wt.w.size(); i-- > 0;)  // rounding put the target past the last block's mass
    if (wt.w[i] > 0.0f) return int32_t(i);
  return 0;
}

// Logits with the penalties applied: the input itself when there is none to apply.
std::span<const float> penalized(std::span<const float> logits, std::span<const int32_t> history,
                                 size_t generated, const SamplingParams& p, Scratch& s) {
  if (!has_penalties(p)) return logits;
  s.logits.assign(logits.begin(), logits.end());
  apply_penalties(s.logits, history, generated, p);
  return s.logits;
}

}  // namespace

// The first maximum, NaN ignored (all-NaN rows give 0). One pass, eight lanes: each lane keeps its
// largest value and the first index holding it (a strict compare keeps the earlier of equals);
// the first maximum overall is the smallest index among the lanes that hold the maximum.
int32_t argmax(std::span<const float> logits) {
  const size_t n = logits.size();
  if (n > size_t(std::numeric_limits<int32_t>::max())) return 0;  // no vocabulary is this large
  F8 best;
  for (int j = 0; j < 8; ++j) best[j] = kNegInf;
  I8 at = I8{} + std::numeric_limits<int32_t>::max(), idx = I8{0, 1, 2, 3, 4, 5, 6, 7};
  size_t i = 0;
  for (; i + 8 <= n; i += 8, idx += 8) {
    F8 v;
    std::memcpy(&v, logits.data() + i, sizeof v);
    const I8 up = v > best;  // NaN never wins
    best = up ? v : best;
    at = up ? idx : at;
  }
  float m = kNegInf;
  int32_t first = std::numeric_limits<int32_t>::max();
  for (int j = 0; j < 8; ++j)
    if (best[j] > m || (best[j] == m && at[j] < first)) m = best[j], first = at[j];
  for (; i < n; ++i)
    if (logits[i] > m) m = logits[i], first = int32_t(i);
  if (m > kNegInf) return first;
  // Nothing above -inf: the first -inf, or 0 when every logit is NaN.
  for (size_t k = 0; k < n; ++k)
    if (logits[k] == kNegInf) return int32_t(k);
  return 0;
}

std::vector<float> sampling_distribution(std::span<const float> logits_in, std::span<const int32_t> history,
                                         const SamplingParams& p, size_t generated) {
  Scratch& s = scratch();
  const auto logits = penalized(logits_in, history, generated, p, s);
  std::vector<float> probs(logits.size(), 0.0f);
  if (logits.empty()) return probs;
  Weights wt;
  if (p.greedy() || !build_weights(logits, p, s, wt)) {
    probs[size_t(argmax(logits))] = 1.0f;
    return probs;
  }
  if (wt.sparse)
    for (size_t i = 0; i < wt.tokens.size(); ++i) probs[size_t(wt.tokens[i].index)] = float(wt.tokens[i].w / wt.total);
  else
    for (size_t i = 0; i < probs.size(); ++i)
      probs[i] = !wt.filtered || kept(logits[i], int32_t(i), wt.last) ? float(double(wt.w[i]) / wt.total) : 0.0f;
  return probs;
}

TokenLogprobs token_logprobs(std::span<const float> logits, float temperature, int32_t chosen, int32_t top_n) {
  TokenLogprobs out;
  if (logits.empty()) return out;
  const double inv_t = temperature > 0.0f ? 1.0 / double(temperature) : 1.0;
  const float mx = max_logit(logits);
  double sum = 0;
  for (float x : logits)
    if (x > kNegInf) sum += std::exp((double(x) - double(mx)) * inv_t);
  const double log_z = double(mx) * inv_t + std::log(sum);
  auto lp = [&](int32_t id) {
    const float x = logits[size_t(id)];
    // A -inf logit (or NaN) has probability 0; report the most negative finite float rather than
    // -inf, which JSON cannot carry.
    return x > kNegInf ? float(double(x) * inv_t - log_z) : std::numeric_limits<float>::lowest();
  };
  if (chosen >= 0 && size_t(chosen) < logits.size()) out.chosen = lp(chosen);
  if (top_n > 0) {
    std::vector<Rank> heap;
    top_k_candidates(logits, std::min(size_t(top_n), logits.size()), heap);
    std::sort(heap.begin(), heap.end(), before);
    for (const Rank& r : heap) out.top.emplace_back(r.index, lp(r.index));
  }
  return out;
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

namespace {

// sample_token's draw from a row already penalized.
int32_t draw_token(std::span<const float> logits, const SamplingParams& p, uint64_t index, Scratch& s) {
  if (p.greedy()) return argmax(logits);
  Weights wt;
  if (!build_weights(logits, p, s, wt)) return argmax(logits);
  return draw_weighted(wt, philox_uniform(p.seed, 0, index));
}

}  // namespace

int32_t sample_token(std::span<const float> logits_in, std::span<const int32_t> history, const SamplingParams& p,
                     uint64_t index, size_t generated) {
  if (logits_in.empty()) return 0;
  Scratch& s = scratch();
  return draw_token(penalized(logits_in, history, generated, p, s), p, index, s);
}

int32_t sample_token_in_place(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p,
                              uint64_t index, size_t generated) {
  if (logits.empty()) return 0;
  Scratch& s = scratch();
  if (!has_penalties(p)) return draw_token(logits, p, index, s);
  // The adjustments apply_penalties makes, each logit's old value kept to put back.
  std::vector<LogitAdjust>& adj = s.adjust;
  adj.clear();
  append_logit_adjustments(history, generated, p, int32_t(logits.size()), 0, adj);
  s.replaced.resize(adj.size());
  for (size_t k = 0; k < adj.size(); ++k) {
    float& x = logits[size_t(adj[k].token)];
    s.replaced[k] = x;
    x = adjust_logit(x, adj[k]);
  }
  const int32_t token = draw_token(logits, p, index, s);
  for (size_t k = 0; k < adj.size(); ++k) logits[size_t(adj[k].token)] = s.replaced[k];
  return token;
}

}  // namespace pagoda
