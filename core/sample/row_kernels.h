// The sampler's passes over a row of logits, eight lanes at a time: the largest logit, the weights
// exp((l - max) / T) with their sums and top-p bucket ids, and the selection of tokens by bucket.
// Written with GCC's vector extension so they are vector code on every target (AVX2, or two SSE
// halves in the portable build), with one AVX2-only selection and its scalar equivalent.
#pragma once
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace pagoda::row_kernels {

// exp(x) for x <= 0 without a library call, so the weight loop vectorizes: x = n ln2 + r with
// |r| <= ln2/2, a degree-6 Taylor polynomial for e^r (relative error < 2e-7), 2^n from the
// exponent bits. x is clamped at -87 so 2^n stays a normal float.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  const float poly =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  const float scale = std::bit_cast<float>(int32_t(int32_t(n) + 127) << 23);
  return poly * scale;
}

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The same exp on eight lanes, written with GCC's vector extension so it is vector code on every
// target (AVX2, or two SSE halves in the portable build). The auto-vectorizer cannot be relied on
// here: the `logit > -inf ? exp(..) : 0` select is "control flow" it only if-converts where the ISA
// has masked lanes (AVX-512), so on AVX2 machines the weight loop ran scalar, 4x slower.
typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));

// Top-p buckets tokens by (max - l) / T, their distance below the top token in log-weight, which
// orders buckets like the candidate order. Tokens top-k dropped go to one more bucket, never counted.
constexpr size_t kBuckets = 1024;
constexpr float kBucketsPerUnit = 32.0f;  // width 1/32 in log-weight; past 32 units, the last bucket
constexpr uint16_t kDropped = kBuckets;

// Where the weight pass writes bucket ids: bk[i] for token i, and kDropped for tokens after `last`
// unless `all`.
struct Bucketing {
  uint16_t* bk = nullptr;
  int32_t last_index = 0;
  float last_logit = 0;
  bool all = true;
};

// w[i] = exp((l[i] - mx) * inv_t) for i in [lo, hi), exactly 0 for -inf (banned) and NaN logits,
// and with kBucket the top-p bucket ids; returns the sum of the weights, added in eight float lanes
// (a double accumulator would be one long dependency chain; blocks are short enough that float
// lanes lose nothing a draw can see). One pass computes all three, so the row is read once.
enum WeighMode { kWeightsOnly, kBucketAll, kBucketKept };
template <WeighMode kMode>
double weigh(const float* l, float* w, size_t lo, size_t hi, float mx, float inv_t, const Bucketing& bkt) {
  typedef uint16_t U8 __attribute__((vector_size(16)));
  const F8 ninf = F8{} + kNegInf, lo_x = F8{} - 87.0f, top = F8{} + float(kBuckets - 1);
  const F8 last_l = F8{} + bkt.last_logit;
  const I8 last_i = I8{} + bkt.last_index;
  F8 acc = {};
  size_t i = lo;
  for (I8 idx = I8{0, 1, 2, 3, 4, 5, 6, 7} + int32_t(lo); i + 8 <= hi; i += 8, idx += 8) {
    F8 v;
    std::memcpy(&v, l + i, sizeof v);
    // exp_nonpositive, lane-wise (inline: no function passes 32-byte vectors, which would change
    // the ABI of a build without AVX).
    const F8 y = (v - mx) * inv_t;
    const F8 x = y >= lo_x ? y : lo_x;  // NaN fails the comparison and clamps too
    const F8 k = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    const F8 r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    const F8 poly =
        1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    const I8 bits = (__builtin_convertvector(k, I8) + 127) << 23;
    const F8 e = poly * __builtin_bit_cast(F8, bits);
    const F8 out = v > ninf ? e : F8{};
    std::memcpy(w + i, &out, sizeof out);
    acc += out;
    if constexpr (kMode != kWeightsOnly) {
      // The bucket, truncated; NaN and -inf fail the test and go last.
      const F8 d = -y * kBucketsPerUnit;
      I8 b = d < top ? __builtin_convertvector(d < top ? d : F8{}, I8) : I8{} + int32_t(kBuckets - 1);
      // kept(), lane-wise (a NaN logit is never kept by a boundary, as in the scalar test).
      if constexpr (kMode == kBucketKept) b = (v > last_l) | ((v == last_l) & (idx <= last_i)) ? b : I8{} + kDropped;
      const U8 b16 = __builtin_convertvector(b, U8);
      std::memcpy(bkt.bk + i, &b16, sizeof b16);
    }
  }
  double sum = 0;
  for (int j = 0; j < 8; ++j) sum += acc[j];
  for (; i < hi; ++i) {
    const float y = (l[i] - mx) * inv_t;
    sum += w[i] = l[i] > kNegInf ? exp_nonpositive(y) : 0.0f;
    if constexpr (kMode != kWeightsOnly) {
      const float d = -y * kBucketsPerUnit;
      bkt.bk[i] = kMode == kBucketKept && !(l[i] > bkt.last_logit || (l[i] == bkt.last_logit && int32_t(i) <= bkt.last_index))
                      ? kDropped
                  : d < float(kBuckets - 1) ? uint16_t(d)
                                            : uint16_t(kBuckets - 1);
    }
  }
  return sum;
}

typedef float Vec8 __attribute__((vector_size(32)));

// The largest logit, ignoring NaN (-inf when there is none): eight lanes at a time.
inline float max_logit(std::span<const float> l) {
  Vec8 m;
  for (int j = 0; j < 8; ++j) m[j] = kNegInf;
  size_t i = 0;
  for (; i + 8 <= l.size(); i += 8) {
    Vec8 x;
    std::memcpy(&x, l.data() + i, sizeof x);
    m = x > m ? x : m;
  }
  float r = kNegInf;
  for (int j = 0; j < 8; ++j) r = m[j] > r ? m[j] : r;
  for (; i < l.size(); ++i) r = l[i] > r ? l[i] : r;
  return r;
}

// Sum of w[lo, hi) in eight float lanes (a double accumulator would be one long dependency
// chain); blocks are short enough that float lanes lose nothing a draw can see.
inline double sum_lanes(const float* w, size_t lo, size_t hi) {
  Vec8 acc = {};
  size_t i = lo;
  for (; i + 8 <= hi; i += 8) {
    Vec8 x;
    std::memcpy(&x, w + i, sizeof x);
    acc += x;
  }
  double r = 0;
  for (int j = 0; j < 8; ++j) r += acc[j];
  for (; i < hi; ++i) r += w[i];
  return r;
}

#if defined(__AVX2__)
// For each 8-bit mask, the positions of its set bits, four bits each, lowest first.
inline constexpr std::array<uint32_t, 256> kSetBits = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t m = 0; m < 256; ++m)
    for (uint32_t j = 0, k = 0; j < 8; ++j)
      if (m >> j & 1) t[m] |= j << (4 * k++);
  return t;
}();
#endif

// The tokens i in [0, n) with bk[i] <= limit, in index order, into `out` (room for n + 8 entries);
// returns how many. With AVX2, eight at a time: the set bits of the comparison mask become the
// indices to store, and the write position moves by their count.
inline size_t select_buckets(const uint16_t* bk, size_t n, uint16_t limit, int32_t* out) {
  size_t count = 0, i = 0;
#if defined(__AVX2__)
  const __m256i above = _mm256_set1_epi32(int32_t(limit) + 1), shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  for (; i + 8 <= n; i += 8) {
    const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bk + i)));
    const int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(above, b)));
    const __m256i pos = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int32_t(kSetBits[size_t(m)])), shifts),
                                         _mm256_set1_epi32(15));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + count), _mm256_add_epi32(pos, _mm256_set1_epi32(int32_t(i))));
    count += size_t(std::popcount(unsigned(m)));
  }
#endif
  for (; i < n; ++i) {
    out[count] = int32_t(i);
    count += bk[i] <= limit;
  }
  return count;
}

}  // namespace pagoda::row_kernels
