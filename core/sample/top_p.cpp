// Top-p's boundary: tokens bucketed by their distance below the top logit, the bucket masses
// walked in candidate order to the bucket where the weight reaches top_p, and only that bucket's
// tokens sorted.
#include "core/sample/top_p.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/sample/row_kernels.h"
#include "core/sample/sampler.h"

namespace pagoda {
namespace sample_detail {
namespace {

using namespace row_kernels;

// Bucket masses as four partial histograms, entry j of a token list into part j % 4: consecutive
// tokens of a flat row mostly land in the same few buckets, and one histogram made every add wait
// for the previous store to it.
struct BucketMass {
  double part[4][kBuckets];
  double operator[](size_t b) const { return (part[0][b] + part[1][b]) + (part[2][b] + part[3][b]); }
  void clear(int32_t from, int32_t to) {
    for (auto& q : part) std::fill(q + from, q + to + 1, 0.0);
  }
  // Adds the weights of the selected tokens sel[0, count) (index above the bucket bits).
  void add(const uint32_t* sel, size_t count, const float* w) {
    constexpr uint32_t kMask = kBuckets - 1;
    size_t j = 0;
    for (; j + 4 <= count; j += 4) {
      part[0][sel[j] & kMask] += w[sel[j] >> kBucketBits];
      part[1][sel[j + 1] & kMask] += w[sel[j + 1] >> kBucketBits];
      part[2][sel[j + 2] & kMask] += w[sel[j + 2] >> kBucketBits];
      part[3][sel[j + 3] & kMask] += w[sel[j + 3] >> kBucketBits];
    }
    for (; j < count; ++j) part[j % 4][sel[j] & kMask] += w[sel[j] >> kBucketBits];
  }
};

// One per thread, shared by the window and the full walk (32 KiB).
BucketMass& bucket_mass() {
  thread_local BucketMass h;
  return h;
}

// The first bucket in [from, to] at which the weight (acc before `from`, the bucket masses after)
// reaches target, with acc left at the weight before it; to + 1 (acc through `to`) if none does.
int32_t crossing_bucket(const BucketMass& h, int32_t from, int32_t to, double target, double& acc) {
  int32_t b = from;
  for (; b <= to; ++b) {
    if (acc + h[size_t(b)] >= target) break;
    acc += h[size_t(b)];
  }
  return b;
}

// The selected tokens of bucket b into `ranks`: eight compared at once, and only a group holding
// one looked at token by token (a flat row puts ~1% of the vocabulary in any bucket).
void bucket_tokens(std::span<const float> l, const uint32_t* sel, size_t count, int32_t b, std::vector<Rank>& ranks) {
  constexpr uint32_t kMask = kBuckets - 1;
  typedef uint32_t U8 __attribute__((vector_size(32)));
  auto take = [&](uint32_t e) { ranks.push_back({l[e >> kBucketBits], int32_t(e >> kBucketBits)}); };
  const U8 want = U8{} + uint32_t(b);
  size_t j = 0;
  for (; j + 8 <= count; j += 8) {
    U8 v;
    std::memcpy(&v, sel + j, sizeof v);
    if (!any_lane(__builtin_bit_cast(I8, (v & kMask) == want))) continue;
    for (size_t k = j; k < j + 8; ++k)
      if ((sel[k] & kMask) == uint32_t(b)) take(sel[k]);
  }
  for (; j < count; ++j)
    if ((sel[j] & kMask) == uint32_t(b)) take(sel[j]);
}

// The crossing bucket's tokens in candidate order, added to acc until it reaches target: the
// boundary token and the weight through it.
std::pair<Rank, double> boundary_in(std::vector<Rank>& ranks, const float* w, double acc, double target) {
  std::sort(ranks.begin(), ranks.end(), before);
  for (const Rank& r : ranks) {
    acc += w[size_t(r.index)];
    if (acc >= target) return {r, acc};
  }
  return {ranks.back(), acc};
}

// Top-p on a row where most tokens lie within its reach (a near-uniform row: every token counts,
// and a histogram of all of them cost more than the rest of the sampler). A sample of the row (8
// consecutive tokens in every 64) places a window of buckets around the crossing, holding about
// 2 * kWindowMargin of the weight; one vector pass then sums the weight before the window and
// selects only the window's tokens, whose histogram finds the crossing exactly as the full one
// would. Gives up (false) when the sample's weight is not the row's within 10% (a few strong
// tokens carry the row: the sample cannot place the window) or the crossing is not inside the
// window; the full histogram then runs. The result is the full histogram's, up to the rounding of
// the weight before the window (summed as weigh sums blocks).
constexpr size_t kSampleEvery = 64;
thread_local uint64_t window_boundaries = 0;
constexpr double kWindowMargin = 0.02;
bool window_boundary(std::span<const float> l, const float* w, std::vector<uint32_t>& selected,
                     std::vector<Rank>& ranks, float mx, float scale, int32_t limit, double target, double mass,
                     std::pair<Rank, double>& result) {
  const size_t n = l.size();
  F8 acc = {};
  size_t groups = 0;
  for (size_t i = 0; i + 8 <= n; i += kSampleEvery, ++groups) {
    F8 x;
    std::memcpy(&x, w + i, sizeof x);
    acc += x;
  }
  double sampled = 0;
  for (int j = 0; j < 8; ++j) sampled += acc[j];
  const double scaled = sampled * double(n) / double(8 * groups);
  if (!(scaled > 0.9 * mass && scaled < 1.1 * mass)) return false;
  thread_local double est[kBuckets];
  std::fill(est, est + limit + 1, 0.0);
  for (size_t i = 0; i + 8 <= n; i += kSampleEvery)
    for (size_t k = i; k < i + 8; ++k)
      if (const int32_t b = bucket_of(l[k], mx, scale); b <= limit) est[b] += w[k];
  const double f = mass / sampled, margin = kWindowMargin * mass;
  int32_t lo = -1, hi = limit;
  double c = 0;
  for (int32_t b = 0; b <= limit; ++b) {
    c += est[b] * f;
    if (lo < 0 && c >= target - margin) lo = b;
    if (c >= target + margin) {
      hi = b;
      break;
    }
  }
  if (lo < 0) return false;
  selected.resize(n + 8);
  size_t count = 0;
  double acc_before = window_select(l.data(), w, n, mx, scale, lo, hi, selected.data(), count);
  if (!(acc_before < target)) return false;
  BucketMass& h = bucket_mass();
  h.clear(lo, hi);
  h.add(selected.data(), count, w);
  const int32_t b = crossing_bucket(h, lo, hi, target, acc_before);
  if (b > hi) return false;
  ranks.clear();
  bucket_tokens(l, selected.data(), count, b, ranks);
  result = boundary_in(ranks, w, acc_before, target);
  ++window_boundaries;
  return true;
}

}  // namespace

// Found from the bucket masses and a sort of the crossing bucket's tokens.
std::pair<Rank, double> top_p_boundary(std::span<const float> l, std::span<const float> weights,
                                       std::vector<uint32_t>& selected, std::vector<Rank>& ranks, float mx, float mn,
                                       float inv_t, const Rank& last, bool all, double top_p, double mass) {
  const float* w = weights.data();
  const size_t n = l.size();
  const double target = top_p * mass;
  // Only buckets up to `limit` are counted: a token past it weighs at most e^(-(limit + 1) / k) for
  // k buckets per unit of log-weight (times 1 + 2e-7, exp_nonpositive's error), so all n of them
  // together weigh less than the mass top-p drops, (1 - top_p) * mass, with 10% to spare, and the
  // crossing comes no later. On a flat 32k row that skips half the tokens, on a peaked one nearly
  // all. The buckets span that distance, or the whole row's if it is shorter: k = 1022 / distance
  // (at least 32), so a near-uniform row spreads over the buckets instead of piling ~1000 tokens
  // into the crossing one (whose sort then cost more than the rest of the sampler).
  const double tail = 0.9 * (1.0 - top_p) * mass;
  const double reach = tail > 0 ? std::log(double(n) / tail) : std::numeric_limits<double>::infinity();
  const double span = double(mx - mn) * double(inv_t);
  const double units = std::min(reach, span);
  constexpr double kMaxBucketsPerUnit = double(1 << 20);
  const double k = units > 0 ? std::clamp(double(kBuckets - 2) / units, double(kMinBucketsPerUnit), kMaxBucketsPerUnit)
                             : kMaxBucketsPerUnit;
  const float scale = float(double(inv_t) * k);
  const double bound = tail > 0 ? std::ceil(k * reach) : double(kBuckets);
  // (A row too long to select from counts everything below.)
  const int32_t limit = n > kMaxSelectable        ? -1
                        : bound < 0                ? 0
                        : bound >= double(kBuckets) ? int32_t(kBuckets - 1)
                                                    : int32_t(bound);
  // Every token within reach (the row's span is the shorter distance): try the window first.
  // (Top-k in front changes which tokens count: the full histogram handles that.)
  std::pair<Rank, double> found;
  if (all && limit >= 0 && span <= reach && n >= 8 * kSampleEvery &&
      window_boundary(l, w, selected, ranks, mx, scale, limit, target, mass, found))
    return found;
  // Tokens top-k dropped are counted too: they come after every kept token in candidate order, so
  // they only add to buckets from the one holding top-k's last token on, where the crossing is at
  // the latest, and the kept tokens alone reach the target (top_p < 1 of their mass, summed in
  // double), so the walk below stops before any dropped one.
  selected.resize(n + 8);
  const uint32_t* sel = selected.data();
  const size_t count = limit < 0 ? 0 : select_buckets(l.data(), n, mx, scale, limit, selected.data());
  BucketMass& h = bucket_mass();
  h.clear(0, int32_t(kBuckets - 1));
  h.add(sel, count, w);
  double acc = 0;
  int32_t b = crossing_bucket(h, 0, limit, target, acc);
  ranks.clear();
  if (b <= limit) {
    bucket_tokens(l, sel, count, b, ranks);
  } else {
    // Rounding beyond the 10% margin (or a target of all the mass): count the remaining tokens.
    for (size_t i = 0; i < n; ++i)
      if (const int32_t bi = bucket_of(l[i], mx, scale); bi > limit && (all || kept(l[i], int32_t(i), last)))
        h.part[i % 4][bi] += w[i];
    b = crossing_bucket(h, b, int32_t(kBuckets - 1), target, acc);
    if (b >= int32_t(kBuckets)) return {last, mass};  // rounding left the target just out of reach: keep everything
    for (size_t i = 0; i < n; ++i)
      if (bucket_of(l[i], mx, scale) == int32_t(b) && (all || kept(l[i], int32_t(i), last)))
        ranks.push_back({l[i], int32_t(i)});
  }
  return boundary_in(ranks, w, acc, target);
}

}  // namespace sample_detail

uint64_t top_p_window_boundaries() { return sample_detail::window_boundaries; }

}  // namespace pagoda
