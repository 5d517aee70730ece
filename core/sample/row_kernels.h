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

// w[i] = exp((l[i] - mx) * inv_t) for i in [lo, hi), exactly 0 for -inf (banned) and NaN logits;
// returns their sum, added in eight float lanes (a double accumulator would be one long dependency
// chain; blocks are short enough that float lanes lose nothing a draw can see). With kMin it also
// lowers *min_finite to the block's smallest finite logit (top-p's buckets span the row): one
// more compare and blend in this loop cost less than a pass of their own.
template <bool kMin = false>
inline double weigh(const float* l, float* w, size_t lo, size_t hi, float mx, float inv_t, float* min_finite = nullptr) {
  const F8 ninf = F8{} + kNegInf, lo_x = F8{} - 87.0f;
  F8 least = F8{} + std::numeric_limits<float>::infinity();
  F8 acc = {};
  size_t i = lo;
  for (; i + 8 <= hi; i += 8) {
    F8 v;
    std::memcpy(&v, l + i, sizeof v);
    // exp_nonpositive, lane-wise (inline: no function passes 32-byte vectors, which would change
    // the ABI of a build without AVX).
    F8 x = (v - mx) * inv_t;
    x = x >= lo_x ? x : lo_x;  // NaN fails the comparison and clamps too
    const F8 k = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    const F8 r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    const F8 poly =
        1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    const I8 bits = (__builtin_convertvector(k, I8) + 127) << 23;
    const F8 e = poly * __builtin_bit_cast(F8, bits);
    const F8 out = v > ninf ? e : F8{};
    std::memcpy(w + i, &out, sizeof out);
    acc += out;
    if constexpr (kMin) least = (v < least) & (v > ninf) ? v : least;  // NaN fails both comparisons
  }
  double sum = 0;
  for (int j = 0; j < 8; ++j) sum += acc[j];
  float m = kMin ? *min_finite : 0.0f;
  if constexpr (kMin)
    for (int j = 0; j < 8; ++j) m = least[j] < m ? least[j] : m;
  for (; i < hi; ++i) {
    sum += w[i] = l[i] > kNegInf ? exp_nonpositive((l[i] - mx) * inv_t) : 0.0f;
    if (kMin && l[i] < m && l[i] > kNegInf) m = l[i];
  }
  if constexpr (kMin) *min_finite = m;
  return sum;
}

// Top-p buckets tokens by (max - l) * scale, truncated: their distance below the top token in
// 1/k units of log-weight (scale = k / T), which orders buckets like the candidate order. k adapts
// to the row (at least kMinBucketsPerUnit): the 1024 buckets span only the distance top-p can
// reach, so a near-uniform row (every token within a few units) is not piled into a few buckets
// whose sort would cost more than the rest of the sampler. Past the last bucket's distance, NaN and
// -inf: the last bucket.
constexpr size_t kBuckets = 1024;
constexpr float kMinBucketsPerUnit = 32.0f;

inline int32_t bucket_of(float l, float mx, float scale) {
  const float d = (mx - l) * scale;
  return d < float(kBuckets - 1) ? int32_t(d) : int32_t(kBuckets - 1);
}

// Whether any lane of a comparison result is set.
inline bool any_lane(const I8& v) {
#if defined(__AVX2__)
  const __m256i x = __builtin_bit_cast(__m256i, v);
  return !_mm256_testz_si256(x, x);
#else
  typedef uint64_t U64 __attribute__((vector_size(32)));
  const U64 x = __builtin_bit_cast(U64, v);
  return (x[0] | x[1]) | (x[2] | x[3]);
#endif
}

// A selected token: its index above the 10 bits of its bucket, so one permute and one store take
// eight of them (rows up to 2^22 tokens).
constexpr int kBucketBits = 10;
static_assert(kBuckets == size_t(1) << kBucketBits);
constexpr size_t kMaxSelectable = size_t(1) << (32 - kBucketBits);

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

// bucket_of on eight lanes.
inline void bucket_lanes(const F8& v, float mx, float scale, I8& b) {
  const F8 top = F8{} + float(kBuckets - 1);
  const F8 d = (mx - v) * scale;
  b = d < top ? __builtin_convertvector(d < top ? d : F8{}, I8) : I8{} + int32_t(kBuckets - 1);
}

#if defined(__AVX2__)
// Appends the lanes mask m selects, as (index << kBucketBits | bucket), to out at count, in lane
// order: the set bits of m say which lanes to keep, one permute and one store write them, and
// count moves by their number (out needs room for 8 past count).
inline void append_lanes(uint32_t* out, size_t& count, const I8& idx, const I8& b, int m) {
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i pos = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int32_t(kSetBits[size_t(m)])), shifts),
                                       _mm256_set1_epi32(15));
  const __m256i packed = __builtin_bit_cast(__m256i, (idx << kBucketBits) | b);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + count), _mm256_permutevar8x32_epi32(packed, pos));
  count += size_t(std::popcount(unsigned(m)));
}
#endif

// The tokens in bucket `limit` or before (n at most kMaxSelectable), in index order, into `out`
// (room for n + 8 entries); returns how many. With AVX2, eight at a time: the set bits of the
// selection mask say which lanes to keep, and the write position moves by their count.
inline size_t select_buckets(const float* l, size_t n, float mx, float scale, int32_t limit, uint32_t* out) {
  size_t count = 0, i = 0;
#if defined(__AVX2__)
  const I8 lim = I8{} + limit;
  for (I8 idx = I8{0, 1, 2, 3, 4, 5, 6, 7}; i + 8 <= n; i += 8, idx += 8) {
    F8 v;
    std::memcpy(&v, l + i, sizeof v);
    I8 b;
    bucket_lanes(v, mx, scale, b);
    const int m = _mm256_movemask_ps(__builtin_bit_cast(__m256, I8(b <= lim)));
    if (m != 0) append_lanes(out, count, idx, b, m);  // most groups of a peaked row select nothing
  }
#endif
  for (; i < n; ++i) {
    const int32_t b = bucket_of(l[i], mx, scale);
    out[count] = uint32_t(i) << kBucketBits | uint32_t(b);
    count += b <= limit;
  }
  return count;
}

// Top-p's pass over a window of buckets [lo, hi]: the tokens whose bucket lies in it into `out`
// (as select_buckets writes them; room for n + 8 entries, their number in `count`), and the
// returned weight of the tokens in buckets before lo, w summed in eight float lanes per 256 tokens
// (as weigh sums a block) and the blocks in double. Every token costs a few vector operations.
inline double window_select(const float* l, const float* w, size_t n, float mx, float scale, int32_t lo, int32_t hi,
                            uint32_t* out, size_t& count) {
  const I8 lo_v = I8{} + lo, hi_v = I8{} + hi;
  double before = 0;
  count = 0;
  size_t i = 0;
  for (size_t block = 0; block < n; block += 256) {
    const size_t end = block + 256 < n ? block + 256 : n;
    F8 acc = {};
    I8 idx = I8{0, 1, 2, 3, 4, 5, 6, 7} + int32_t(i);
    for (; i + 8 <= end; i += 8, idx += 8) {
      F8 v, x;
      std::memcpy(&v, l + i, sizeof v);
      std::memcpy(&x, w + i, sizeof x);
      I8 b;
      bucket_lanes(v, mx, scale, b);
      acc += b < lo_v ? x : F8{};
      const I8 in = (b >= lo_v) & (b <= hi_v);
#if defined(__AVX2__)
      // No branch on the mask: around a third of a near-uniform row's groups hold a window token,
      // at random, so a skip would be mispredicted often; a store that advances by 0 costs less.
      append_lanes(out, count, idx, b, _mm256_movemask_ps(__builtin_bit_cast(__m256, in)));
#else
      for (int j = 0; j < 8; ++j) {
        out[count] = uint32_t(idx[j]) << kBucketBits | uint32_t(b[j]);
        count += in[j] != 0;
      }
#endif
    }
    double sum = 0;
    for (int j = 0; j < 8; ++j) sum += acc[j];
    for (; i < end; ++i) {
      const int32_t b = bucket_of(l[i], mx, scale);
      if (b < lo) sum += w[i];
      out[count] = uint32_t(i) << kBucketBits | uint32_t(b);
      count += b >= lo && b <= hi;
    }
    before += sum;
  }
  return before;
}

// The largest logit, ignoring NaN (-inf when there is none): eight lanes at a time.
inline float max_logit(std::span<const float> l) {
  F8 hi = F8{} + kNegInf;
  size_t i = 0;
  for (; i + 8 <= l.size(); i += 8) {
    F8 x;
    std::memcpy(&x, l.data() + i, sizeof x);
    hi = x > hi ? x : hi;  // NaN never wins
  }
  float m = kNegInf;
  for (int j = 0; j < 8; ++j) m = hi[j] > m ? hi[j] : m;
  for (; i < l.size(); ++i) m = l[i] > m ? l[i] : m;
  return m;
}

}  // namespace pagoda::row_kernels
