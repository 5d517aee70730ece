// Production CPU kernels: threaded over output rows / (token, kv head) pairs, vectorized with GCC
// vector extensions (8-float vectors, 16-float ones for the float products where the CPU has
// AVX-512) and x86 intrinsics.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_fast_quant.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "core/util/half.h"

namespace pagoda {
namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef int8_t v8i8 __attribute__((vector_size(8)));

inline v8f load8(const float* p) { v8f v; std::memcpy(&v, p, 32); return v; }

// 8 int8 -> 8 floats. GCC scalarizes __builtin_convertvector for this width, so AVX2 builds use
// the sign-extend + convert pair directly.
inline v8f int8x8_to_f32(const uint8_t* p) {
#if defined(__AVX2__)
  const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  v8f v;
  std::memcpy(&v, &f, 32);
  return v;
#else
  v8i8 q;
  std::memcpy(&q, p, 8);
  return __builtin_convertvector(q, v8f);
#endif
}
inline float hsum(v8f v) {
  float s = 0;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

typedef int32_t v8i __attribute__((vector_size(32)));

// e^x lane by lane (Cephes-style: 2^n * polynomial on the reduced argument, relative error
// ~1e-7), for a float vector F and the int vector I of its width. Inputs are clamped to
// [-87.3, 88.7], so very negative scores give ~1e-38 rather than 0. Every lane's arithmetic is
// the same at every width, so exp16's lanes are exp8's bits.
template <typename F, typename I>
inline F exp_lanes(F x) {
  const F lo = F{} - 87.3f, hi = F{} + 88.7f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const F fx = x * 1.44269504088896341f;
  const I n = __builtin_convertvector(fx + (fx >= 0 ? F{} + 0.5f : F{} - 0.5f), I);
  const F nf = __builtin_convertvector(n, F);
  const F r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  F y = F{} + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const I bits = (n + 127) << 23;
  F scale;
  std::memcpy(&scale, &bits, sizeof(F));
  return y * scale;
}
inline v8f exp8(v8f x) { return exp_lanes<v8f, v8i>(x); }

struct SoftmaxStats {
  float max;  // of row * scale
  float sum;  // of exp(row * scale - max), what the row was divided by
};

// In place: row[0..len) = softmax(row * scale); row[len..pad) = 0 where pad = len rounded up to 8.
// Sixteen lanes at a time where the CPU has AVX-512 (then the last eight, if any), with eight-lane
// results: each element's exponent and quotient are lane-wise, and the sum takes its eight lanes
// in the eight-lane loop's order (the 16 values' low half, then the high half), so a row's bits do
// not depend on the width. The exponents are summed as they are made (one pass fewer).
__attribute__((noinline)) SoftmaxStats softmax_row(float* row, int32_t len, float scale) {
  const int32_t pad = (len + 7) / 8 * 8;
  for (int32_t t = len; t < pad; ++t) row[t] = -INFINITY;
#if defined(__AVX512F__)
  typedef float v16f __attribute__((vector_size(64)));
  typedef int32_t v16i __attribute__((vector_size(64)));
  constexpr int32_t kWide = 16;
  auto load16 = [](const float* p) { v16f v; std::memcpy(&v, p, 64); return v; };
  auto lo = [](v16f v) -> v8f { return __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7); };
  auto hi = [](v16f v) -> v8f { return __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15); };
  const int32_t wide_end = pad / kWide * kWide;
#endif
  v8f mx = v8f{} - INFINITY;
  int32_t t = 0;
#if defined(__AVX512F__)
  v16f mx16 = v16f{} - INFINITY;
  for (; t < wide_end; t += kWide) {
    const v16f x = load16(row + t) * scale;
    mx16 = x > mx16 ? x : mx16;
  }
  mx = lo(mx16) > hi(mx16) ? lo(mx16) : hi(mx16);
#endif
  for (; t < pad; t += 8) {
    const v8f x = load8(row + t) * scale;
    mx = x > mx ? x : mx;
  }
  float m = mx[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, mx[i]);
  // Exponents, stored and summed; the padding (past len, in the last eight) is stored as 0 and
  // adds 0, as if zeroed before the sum.
  v8f sum = {};
  t = 0;
#if defined(__AVX512F__)
  for (; t < wide_end && t + kWide <= len; t += kWide) {
    const v16f e = exp_lanes<v16f, v16i>(load16(row + t) * scale - m);
    std::memcpy(row + t, &e, 64);
    sum += lo(e);
    sum += hi(e);
  }
#endif
  for (; t < pad; t += 8) {
    v8f e = exp8(load8(row + t) * scale - m);
    for (int i = 0; i < 8; ++i)
      if (t + i >= len) e[i] = 0.0f;
    std::memcpy(row + t, &e, 32);
    sum += e;
  }
  const float total = hsum(sum), inv = 1.0f / total;
  t = 0;
#if defined(__AVX512F__)
  for (; t < wide_end; t += kWide) {
    const v16f e = load16(row + t) * inv;
    std::memcpy(row + t, &e, 64);
  }
#endif
  for (; t < pad; t += 8) {
    const v8f e = load8(row + t) * inv;
    std::memcpy(row + t, &e, 32);
  }
  return {m, total};
}

#if defined(__AVX2__)
// Storage on 64-byte boundaries: the kernels read activations in 64-byte vectors (a misaligned
// one spans two cache lines, which costs the core two of its loads).
template <typename T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <typename U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const Aligned64<U>&) const { return true; }
};
using Int8s = std::vector<int8_t, Aligned64<int8_t>>;

// Activations quantized like Q8_0 (per 32-block scale, int8 values) so a Q8_0 weight row dots in
// integer arithmetic: 32 products per maddubs instead of 8 float FMAs after a convert.
struct QuantX {
  Int8s q;
  std::vector<float> d;
  std::vector<int32_t> sum;  // per block: sum of its int8 values (the min term of affine formats)
};

// Blocks [b0, b1) of x, 32 floats each, rows of nb blocks: int8 values, scale amax / 127 and the
// values' sum. Vector code with the scalar definition's results (round to nearest even, as lrintf
// in the default mode). The values laid out as fastq::x32_layout's `layout` says.
void quantize_x_blocks(const float* x, int64_t b0, int64_t b1, int64_t nb, int layout, QuantX& out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = b0; b < b1; ++b) {
    const float* xb = x + b * 32;
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float d = _mm_cvtss_f32(h) / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    out.d[size_t(b)] = d;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], idv));
    // packs interleave the 128-bit halves: dword j of the packed bytes holds q[j % 4] half j / 4.
    const __m256i packed = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])), order);
    // Elements 0..15 and 16..31 where the layout puts them in the block's row.
    const int64_t j = b % nb;
    int8_t* row = out.q.data() + (b - j) * 32;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(row + fastq::x32_slot(layout, j, 0, nb)), _mm256_castsi256_si128(packed));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(row + fastq::x32_slot(layout, j, 16, nb)), _mm256_extracti128_si256(packed, 1));
    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), packed), _mm256_set1_epi16(1));
    const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
    out.sum[size_t(b)] = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
  }
}

// Into `out`, whose storage is reused (a decode row's buffers are kept between steps).
void quantize_x(ThreadPool& pool, const float* x, int64_t rows, int64_t n, int layout, QuantX& out) {
  out.q.resize(size_t(rows * n));
  out.d.resize(size_t(rows * n / 32));
  out.sum.resize(size_t(rows * n / 32));
  const int64_t blocks = rows * n / 32, nb = n / 32;
  if (blocks < 1024) quantize_x_blocks(x, 0, blocks, nb, layout, out);  // a decode row: not worth a pool handoff
  else pool.parallel_for(blocks, [&](int64_t b0, int64_t b1) { quantize_x_blocks(x, b0, b1, nb, layout, out); });
}
QuantX quantize_x(ThreadPool& pool, const float* x, int64_t rows, int64_t n, int layout) {
  QuantX out;
  quantize_x(pool, x, rows, n, layout, out);
  return out;
}

// Activations for the K-quant kernels of a weight type: int8 per 256-element super-block, laid out
// as that type's kernels read them (fastq::quantize_x256).
struct QuantX256 {
  Int8s q;
  std::vector<float> d;
  std::vector<int16_t> sum16;  // per 16 values of q: their sum
};

void quantize_x256(ThreadPool& pool, const float* x, int64_t rows, int64_t n, DType for_type, QuantX256& out) {
  out.q.resize(size_t(rows * n));
  out.d.resize(size_t(rows * n / 256));
  out.sum16.resize(size_t(rows * n / 16));
  const int64_t sbs = rows * n / 256;
  auto run = [&](int64_t s0, int64_t s1) { fastq::quantize_x256(x, s0, s1, out.q.data(), out.d.data(), out.sum16.data(), for_type); };
  if (sbs < 128) run(0, sbs);  // a decode row: not worth a pool handoff
  else pool.parallel_for(sbs, run);
}
QuantX256 quantize_x256(ThreadPool& pool, const float* x, int64_t rows, int64_t n, DType for_type) {
  QuantX256 out;
  quantize_x256(pool, x, rows, n, for_type, out);
  return out;
}

// out[r][o] for every activation row r and weight row o through an integer kernel:
// dot(wr, r, tokens, res) writes the dots of weight row wr with activation rows r..r+tokens
// (tokens 4 or 1). Blocks of weight rows (a few
// KiB, in L1/L2) meet every activation row in turn: each weight row is read from memory once,
// each activation row from L1 once per block. Weight rows before `first` are left alone.
template <typename Dot>
void int_matmul(ThreadPool& pool, const HostTensor& w, int64_t rows, const HostTensor& out, const Dot& dot, int64_t first = 0) {
  const size_t stride = w.row_stride();
  if (first >= w.rows) return;
  pool.parallel_for(w.rows - first, [&](int64_t o0, int64_t o1) {
    o0 += first, o1 += first;
    constexpr int64_t kRowBlock = 16;
    for (int64_t ob = o0; ob < o1; ob += kRowBlock) {
      const int64_t oe = std::min(o1, ob + kRowBlock);
      // Four activation rows per pass over a weight row, the last one to three in one more pass
      // (a speculative verify of two drafts, three streams' decode step).
      for (int64_t r = 0; r < rows; r += 4) {
        const int64_t n = std::min<int64_t>(4, rows - r);
        for (int64_t o = ob; o < oe; ++o) {
          float res[4];
          dot(w.data + size_t(o) * stride, r, n, res);
          for (int64_t t = 0; t < n; ++t) out.f32()[(r + t) * out.cols + o] = res[t];
        }
      }
    }
  });
}

// A prompt's activations re-laid for the AVX-512 panels (fastq::gemm16_x, gemm16k_x): `words`
// words in the calling thread's buffer, fill(p0, p1, buffer) over `passes` passes spread on the
// pool; null where the build or the type reads the activations as they are (no words). (The
// buffer is named by a pointer: inside the pool's lambdas a thread_local is each worker's own.)
template <typename Fill>
const int32_t* panel_activations(ThreadPool& pool, size_t words, int64_t passes, const Fill& fill) {
  thread_local std::vector<int32_t> store;
  if (words == 0) return nullptr;
  store.resize(words);
  int32_t* to = store.data();
  pool.parallel_for(passes, [&](int64_t p0, int64_t p1) { fill(p0, p1, to); });
  return to;
}

// Every whole panel of fastq::kGemmRows weight rows through panel(its weights, its first output
// column, count), two panels a call (count 1 for an odd last one), spread over the pool; returns
// the first row left to the row kernels.
template <typename Panel>
int64_t in_panel_pairs(ThreadPool& pool, const HostTensor& w, const HostTensor& out, const Panel& panel) {
  const int64_t panels = w.rows / fastq::kGemmRows;
  pool.parallel_for((panels + 1) / 2, [&](int64_t q0, int64_t q1) {
    for (int64_t p = 2 * q0; p < std::min(panels, 2 * q1); p += 2)
      panel(w.data + size_t(p * fastq::kGemmRows) * w.row_stride(), out.f32() + p * fastq::kGemmRows,
            int(std::min<int64_t>(2, panels - p)));
  });
  return panels * fastq::kGemmRows;
}

#endif

#if defined(__F16C__)
// 8 halves -> 8 floats with one vcvtph2ps. (__builtin_convertvector on a _Float16 vector is
// scalarized by GCC 12 without AVX512-FP16: four instructions per element, which made F16 K/V
// attention and F16 matvecs compute-bound.)
inline v8f half8_to_f32(const uint8_t* p) {
  const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  v8f v;
  std::memcpy(&v, &f, 32);
  return v;
}
#endif

// 8 BF16 -> 8 floats: a BF16 is the top half of an F32, so widen and shift left by 16.
inline v8f bf16x8_to_f32(const uint8_t* p) {
#if defined(__AVX2__)
  const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16);
  v8f v;
  std::memcpy(&v, &w, 32);
  return v;
#else
  typedef uint16_t u16x8 __attribute__((vector_size(16)));
  typedef uint32_t u32x8 __attribute__((vector_size(32)));
  u16x8 h;
  std::memcpy(&h, p, 16);
  return __builtin_bit_cast(v8f, __builtin_convertvector(h, u32x8) << 16);
#endif
}

// 16-bit float rows (F16, BF16) widened eight at a time in registers, for the batched paths (the
// decode dot, dot_16bit, widens 32 at a time).
inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

template <v8f (*To8)(const uint8_t*), float (*To1)(uint16_t)>
void widen_16bit(const uint8_t* src, float* dst, int32_t n) {
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v8f f = To8(src + 2 * i);
    std::memcpy(dst + i, &f, 32);
  }
  const auto* h = reinterpret_cast<const uint16_t*>(src);
  for (; i < n; ++i) dst[i] = To1(h[i]);
}

// A row segment of any dtype as floats: F16 (through the F16C converts when the build has them)
// and BF16 in registers, the rest through the reference dequantizer.
void row_to_f32(DType t, const uint8_t* src, float* dst, int32_t n) {
  if (t == DType::BF16) return widen_16bit<bf16x8_to_f32, bf16_to_f32>(src, dst, n);
#if defined(__F16C__)
  if (t == DType::F16) return widen_16bit<half8_to_f32, half_to_float>(src, dst, n);
#endif
  dequantize_row(t, src, dst, n);
}

// Orders work items so that the equal-count chunks parallel_for makes carry about equal work:
// sorted by cost, then taken alternately from the cheap and the expensive end. Each item writes
// only its own results, so the order changes no value.
template <typename T, typename Cost>
void balance_by_cost(std::vector<T>& v, const Cost& cost) {
  if (v.size() < 3) return;
  std::stable_sort(v.begin(), v.end(), [&](const T& a, const T& b) { return cost(a) < cost(b); });
  std::vector<T> out;
  out.reserve(v.size());
  for (size_t lo = 0, hi = v.size(); lo < hi;) {
    out.push_back(v[lo++]);
    if (lo < hi) out.push_back(v[--hi]);
  }
  v.swap(out);
}

// Orders work items for parallel_for over `threads` (chunk k is items [n k / threads, n (k + 1) /
// threads), one chunk a thread) so that the chunks' costs are as even as whole items allow: the
// most expensive first, each into the chunk with the least work that still has room. Returns the
// largest chunk's cost over the mean (1: perfectly even). The order changes no value.
template <typename T, typename Cost>
double balance_in_chunks(std::vector<T>& v, int32_t threads, const Cost& cost) {
  const int64_t n = int64_t(v.size());
  if (n == 0 || threads <= 1) return 1.0;
  std::stable_sort(v.begin(), v.end(), [&](const T& a, const T& b) { return cost(a) > cost(b); });
  std::vector<std::vector<T>> chunks(static_cast<size_t>(threads));
  std::vector<int64_t> work(static_cast<size_t>(threads), 0);
  int64_t total = 0;
  for (const T& x : v) {
    size_t best = chunks.size();
    for (size_t k = 0; k < chunks.size(); ++k) {
      const int64_t room = n * int64_t(k + 1) / threads - n * int64_t(k) / threads - int64_t(chunks[k].size());
      if (room > 0 && (best == chunks.size() || work[k] < work[best])) best = k;
    }
    chunks[best].push_back(x);
    work[best] += cost(x);
    total += cost(x);
  }
  v.clear();
  for (auto& c : chunks) v.insert(v.end(), c.begin(), c.end());
  return total > 0 ? double(*std::max_element(work.begin(), work.end())) * threads / double(total) : 1.0;
}

// Decode attention works on tiles of this many positions.
constexpr int32_t kDotTile = 8;

// Lane j of the result: the sum of the lanes of a[j]. Three levels of pairwise sums; with AVX each
// level is two shuffles and an add per pair of vectors (a horizontal sum per vector costs more
// than that, and in order, as hsum() does, eight dependent adds).
inline v8f transpose_sum8(const v8f* a) {
  auto pairs = [](v8f x, v8f y) {
    return __builtin_shufflevector(x, y, 0, 2, 8, 10, 4, 6, 12, 14) + __builtin_shufflevector(x, y, 1, 3, 9, 11, 5, 7, 13, 15);
  };
  const v8f lo = pairs(pairs(a[0], a[1]), pairs(a[2], a[3]));  // lane j: a[j]'s lanes 0-3, lane 4 + j: 4-7
  const v8f hi = pairs(pairs(a[4], a[5]), pairs(a[6], a[7]));
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 8, 9, 10, 11) + __builtin_shufflevector(lo, hi, 4, 5, 6, 7, 12, 13, 14, 15);
}

// out[j] = dot(q, rows[j]) for j < kDotTile, n floats each: one load of q feeds eight FMAs, and the
// eight sums reduce together. Not inlined (like the other kernels decode and prompts share), so
// the compiler cannot contract or vectorize it differently at two call sites.
__attribute__((noinline)) void dots_tile(const float* q, const float* const* rows, int32_t n, float* out) {
  static_assert(kDotTile == 8);
  v8f a[8] = {};
  int32_t d = 0;
  for (; d + 8 <= n; d += 8) {
    const v8f qv = load8(q + d);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) a[j] += qv * load8(rows[j] + d);
  }
  v8f s = transpose_sum8(a);
  for (; d < n; ++d)  // n not a multiple of 8
    for (int j = 0; j < 8; ++j) s[j] += q[d] * rows[j][d];
  std::memcpy(out, &s, 32);
}

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__F16C__) && defined(__FMA__))
#define PAGODA_GROUPED_ATTENTION 1
// GCC 12's AVX-512 intrinsics start some results from _mm512_undefined_*(), which its flow
// analysis reports as uninitialized once inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// ---- Decode attention for a group of query heads sharing a kv head ----
//
// dots_tile and weighted_rows_add take one query head at a time, so each K/V element is loaded
// (and, for an F16 cache, converted into a buffer and loaded back) once per head of its group:
// with 4 query heads per kv head the loads bound the loop and the long-context kernel ran at a
// third of the copy bandwidth (F32), a fifth (F16). Here each chunk of a cache row is loaded and
// converted once, in a register, for up to four heads. Written once for the native vector width
// (Simd: 16 floats with AVX-512, 8 with AVX2).
#if defined(__AVX512F__)
struct Simd {
  using V = __m512;
  static constexpr int kW = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_half(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static V splat(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  // Lane L: the sum of the lanes of v[L] (a tree of in-register shuffles and adds, about three
  // operations a sum where a horizontal sum each costs eight).
  static V transpose_sum(const V* v) {
    V s[8], t[4];
    for (int p = 0; p < 8; ++p)
      s[p] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * p], v[2 * p + 1]), _mm512_unpackhi_ps(v[2 * p], v[2 * p + 1]));
    for (int p = 0; p < 4; ++p) {
      const __m512d a = _mm512_castps_pd(s[2 * p]), b = _mm512_castps_pd(s[2 * p + 1]);
      t[p] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    auto quarters = [](V a, V b) { return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD)); };
    return quarters(quarters(t[0], t[1]), quarters(t[2], t[3]));
  }
};
#else
struct Simd {
  using V = __m256;
  static constexpr int kW = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_half(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static V splat(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V transpose_sum(const V* v) {
    v8f a[8];
    std::memcpy(a, v, sizeof(a));
    const v8f r = transpose_sum8(a);
    V out;
    std::memcpy(&out, &r, 32);
    return out;
  }
};
#endif
constexpr int kSimdW = Simd::kW;

// kW elements of a cache row (floats, or F16 bits) from element d, as floats.
template <typename E>
inline Simd::V kv_chunk(const uint8_t* row, int32_t d) {
  if constexpr (sizeof(E) == 4) return Simd::load(reinterpret_cast<const float*>(row) + d);
  else return Simd::load_half(row + 2 * size_t(d));
}

// Asks for the `bytes` at off of m cache rows (the tile after the one being computed): the
// grouped kernels visit a row's heads one after another, eight rows at a time, a pattern the
// hardware prefetchers do not follow, and without this the loads waited on memory.
inline void prefetch_tile(const uint8_t* data, size_t stride, const int64_t* slots, int32_t m, size_t off, size_t bytes) {
  for (int32_t j = 0; j < m; ++j) {
    const uint8_t* r = data + size_t(slots[j]) * stride + off;
    for (size_t b = 0; b < bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(r + b), _MM_HINT_T0);
  }
}

// out[g * ld + j] = dot(q + g * hd, row j) for the G (<= 4) heads g and the kDotTile rows j (at
// rows[j] + off): kW / 4 rows at a time (G x kW / 4 = kW sums reduced together), each chunk of a
// row loaded once for the G heads.
template <typename E, int G>
void group_scores(const float* const* q, const uint8_t* const* rows, size_t off, int32_t hd, float* out, int64_t ld) {
  constexpr int kR = kSimdW / 4;
  static_assert(kDotTile % kR == 0 && G <= 4);
  for (int j0 = 0; j0 < kDotTile; j0 += kR) {
    Simd::V a[kSimdW];
    for (int i = 0; i < kSimdW; ++i) a[i] = Simd::zero();
    const uint8_t* r[kR];
    for (int j = 0; j < kR; ++j) r[j] = rows[j0 + j] + off;
    for (int32_t d = 0; d < hd; d += kSimdW) {
      Simd::V k[kR];
#pragma GCC unroll 4
      for (int j = 0; j < kR; ++j) k[j] = kv_chunk<E>(r[j], d);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const Simd::V qv = Simd::load(q[g] + d);
#pragma GCC unroll 4
        for (int j = 0; j < kR; ++j) a[kR * g + j] = Simd::fma(qv, k[j], a[kR * g + j]);
      }
    }
    // Lane kR * g + j: head g, row j0 + j.
#if defined(__AVX512F__)
    const __m512 sums = Simd::transpose_sum(a);  // quarter g: head g's four rows, stored whole
    _mm_storeu_ps(out + j0, _mm512_castps512_ps128(sums));
    if constexpr (G > 1) _mm_storeu_ps(out + ld + j0, _mm512_extractf32x4_ps(sums, 1));
    if constexpr (G > 2) _mm_storeu_ps(out + 2 * ld + j0, _mm512_extractf32x4_ps(sums, 2));
    if constexpr (G > 3) _mm_storeu_ps(out + 3 * ld + j0, _mm512_extractf32x4_ps(sums, 3));
#else
    alignas(64) float sums[kSimdW];
    Simd::store(sums, Simd::transpose_sum(a));
    for (int g = 0; g < G; ++g)
      for (int j = 0; j < kR; ++j) out[g * ld + j0 + j] = sums[kR * g + j];
#endif
  }
}

// acc[g * hd + c * kW ..] += sum over j < m of w[g * ld + j] * row j's elements (from rows[j] +
// off, C chunks), for the G (<= 4) heads g: each chunk of a row loaded once for the G heads.
template <typename E, int G, int C>
void group_values(const float* w, int64_t ld, const uint8_t* const* rows, size_t off, int32_t m, int32_t hd,
                  float* acc) {
  static_assert(G * C <= kSimdW);
  Simd::V a[G][C];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) a[g][c] = Simd::load(acc + int64_t(g) * hd + kSimdW * c);
  for (int32_t j = 0; j < m; ++j) {
    Simd::V v[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) v[c] = kv_chunk<E>(rows[j] + off, kSimdW * c);
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const Simd::V wj = Simd::splat(w[g * ld + j]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) a[g][c] = Simd::fma(wj, v[c], a[g][c]);
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) Simd::store(acc + int64_t(g) * hd + kSimdW * c, a[g][c]);
}

#if defined(__AVX512F__)
// ---- Heads of 8 dims with 16-float registers (stories260K and its widenings: 96 heads of 8) ----
//
// A head is half a register, so the kernels above would leave half of every lane idle, and the
// one-head kernels (dots_tile, weighted_rows_add) spent a call, a transpose and eight loads on
// each head's eight scores: 8.8 GB/s of K/V at 96 heads against 36 at 12 heads of 64 (same bytes).
// Here two cache rows (scores) or two heads (values) share a register. A score is dots_tile's
// arithmetic exactly (the same products, the same sum tree); a value is one FMA chain per head dim
// over the rows in order (GCC had compiled weighted_rows_add's 8-float case as a multiply and an
// add, its wider cases as FMAs).

// Rows a and b (8 elements each) as [a | b].
template <typename E>
inline __m512 two_rows8(const uint8_t* a, const uint8_t* b) {
  if constexpr (sizeof(E) == 4)
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(reinterpret_cast<const float*>(a))),
                              _mm256_loadu_ps(reinterpret_cast<const float*>(b)), 1);
  else
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
                                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1));
}
// Row r (8 elements) in both halves.
template <typename E>
inline __m512 row_twice8(const uint8_t* r) {
  if constexpr (sizeof(E) == 4) return _mm512_broadcast_f32x8(_mm256_loadu_ps(reinterpret_cast<const float*>(r)));
  else return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r))));
}
// Per 128-bit lane [x0 + x1, x2 + x3, y0 + y1, y2 + y3]: transpose_sum8's pairwise level.
inline __m512 lane_pair_sums(__m512 x, __m512 y) {
  return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x88), _mm512_shuffle_ps(x, y, 0xDD));
}

// group_scores_any for hd = 8: k[i] = [row i | row i + 4] (i < 4), so a head's eight products
// take four multiplies, and two levels of lane_pair_sums leave, in 128-bit lane Q, the four-dim
// sums of rows 0-3 (Q = 0: dims 0-3, Q = 1: dims 4-7) and 4-7 (Q = 2, 3); adding lane 0 to 1 and
// 2 to 3 gives each row ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)), dots_tile's tree, for
// two heads per add.
template <typename E>
inline void pair_scores8(const float* const* q, int32_t n, const uint8_t* const* rows, size_t off, float* out, int64_t ld) {
  static_assert(kDotTile == 8);
  __m512 k[4];
  for (int i = 0; i < 4; ++i) k[i] = two_rows8<E>(rows[i] + off, rows[i + 4] + off);
  auto head = [&](const float* qh) {  // the lane sums of one head
    const __m512 qq = _mm512_broadcast_f32x8(_mm256_loadu_ps(qh)), z = _mm512_setzero_ps();
    __m512 p[4];
    for (int i = 0; i < 4; ++i) p[i] = _mm512_fmadd_ps(qq, k[i], z);  // dots_tile's FMA from zero
    return lane_pair_sums(lane_pair_sums(p[0], p[1]), lane_pair_sums(p[2], p[3]));
  };
  int32_t g = 0;
  for (; g + 2 <= n; g += 2) {
    const __m512 a = head(q[g]), b = head(q[g + 1]);
    const __m512 r = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
    _mm256_storeu_ps(out + g * ld, _mm512_castps512_ps256(r));
    _mm256_storeu_ps(out + (g + 1) * ld, _mm512_extractf32x8_ps(r, 1));
  }
  if (g < n) {
    const __m512 a = head(q[g]);
    _mm256_storeu_ps(out + g * ld, _mm512_castps512_ps256(_mm512_add_ps(_mm512_shuffle_f32x4(a, a, 0x88), _mm512_shuffle_f32x4(a, a, 0xDD))));
  }
}

// Heads [g0, g0 + 2 * NP) of the n (the last pair may be one head): NP pairs' accumulators stay
// in registers while each row is loaded once for all of them.
template <typename E, int NP>
inline void pair_values8_block(const float* w, int64_t ld, int32_t g0, int32_t n, const uint8_t* const* rows, size_t off,
                               int32_t m, float* acc) {
  alignas(64) static const int32_t kSpread[8][16] = {
      {0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8},         {1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9},
      {2, 2, 2, 2, 2, 2, 2, 2, 10, 10, 10, 10, 10, 10, 10, 10}, {3, 3, 3, 3, 3, 3, 3, 3, 11, 11, 11, 11, 11, 11, 11, 11},
      {4, 4, 4, 4, 4, 4, 4, 4, 12, 12, 12, 12, 12, 12, 12, 12}, {5, 5, 5, 5, 5, 5, 5, 5, 13, 13, 13, 13, 13, 13, 13, 13},
      {6, 6, 6, 6, 6, 6, 6, 6, 14, 14, 14, 14, 14, 14, 14, 14}, {7, 7, 7, 7, 7, 7, 7, 7, 15, 15, 15, 15, 15, 15, 15, 15}};
  __m512 a[NP];
  __mmask16 lanes[NP];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    lanes[p] = g0 + 2 * p + 1 < n ? 0xFFFF : 0x00FF;
    a[p] = _mm512_maskz_loadu_ps(lanes[p], acc + int64_t(g0 + 2 * p) * 8);
  }
  for (int32_t j0 = 0; j0 < m; j0 += 8) {
    const int32_t mj = std::min<int32_t>(8, m - j0);
    const __mmask8 ws = __mmask8((1u << mj) - 1);
    __m512 wv[NP];
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) {
      const int32_t g = g0 + 2 * p;
      const __m256 w0 = _mm256_maskz_loadu_ps(ws, w + g * ld + j0);
      wv[p] = _mm512_insertf32x8(_mm512_castps256_ps512(w0), g + 1 < n ? _mm256_maskz_loadu_ps(ws, w + (g + 1) * ld + j0) : w0, 1);
    }
    for (int32_t j = 0; j < mj; ++j) {
      const __m512 v = row_twice8<E>(rows[j0 + j] + off);
      const __m512i spread = _mm512_load_si512(kSpread[j]);
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) a[p] = _mm512_fmadd_ps(_mm512_permutexvar_ps(spread, wv[p]), v, a[p]);
    }
  }
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) _mm512_mask_storeu_ps(acc + int64_t(g0 + 2 * p) * 8, lanes[p], a[p]);
}
// group_values_any for hd = 8: heads g and g + 1 in one register [acc g | acc g + 1], each row
// broadcast to both halves and its two weights spread by one permute, up to four pairs per pass
// over the rows; per head dim one FMA chain over the rows in order, however the rows are cut into
// calls and the heads into passes. An odd last head in the low half alone.
template <typename E>
inline void pair_values8(const float* w, int64_t ld, int32_t n, const uint8_t* const* rows, size_t off, int32_t m, float* acc) {
  for (int32_t g0 = 0; g0 < n; g0 += 8) {
    switch (std::min<int32_t>(4, (n - g0 + 1) / 2)) {
      case 1: pair_values8_block<E, 1>(w, ld, g0, n, rows, off, m, acc); break;
      case 2: pair_values8_block<E, 2>(w, ld, g0, n, rows, off, m, acc); break;
      case 3: pair_values8_block<E, 3>(w, ld, g0, n, rows, off, m, acc); break;
      default: pair_values8_block<E, 4>(w, ld, g0, n, rows, off, m, acc); break;
    }
  }
}

// Decode's tile for heads of 8: kv heads [kv0, kv1) in one call (each with its `group` query
// heads, at q + head * 8, scores at out + head * ld), with the next tile's rows (next[j], j <
// m_next) asked for head by head: a head's 16 or 32 bytes never cross a cache line. A call and
// the prefetch addresses once a tile rather than once a head; each head's arithmetic is
// pair_scores8's (pair_values8's), as prompts run it through group_scores_any.
template <typename E>
__attribute__((noinline)) void pair_scores8_heads(const float* q, int32_t group, int32_t kv0, int32_t kv1,
                                                  const uint8_t* const* rows, const uint8_t* const* next, int32_t m_next,
                                                  size_t head_bytes, float* out, int64_t ld) {
  const float* qp[16];
  for (int32_t kvh = kv0; kvh < kv1; ++kvh) {
    const size_t off = size_t(kvh) * head_bytes;
    for (int32_t j = 0; j < m_next; ++j) _mm_prefetch(reinterpret_cast<const char*>(next[j] + off), _MM_HINT_T0);
    for (int32_t g0 = 0; g0 < group; g0 += 16) {
      const int32_t ng = std::min<int32_t>(16, group - g0), h0 = kvh * group + g0;
      for (int32_t g = 0; g < ng; ++g) qp[g] = q + int64_t(h0 + g) * 8;
      pair_scores8<E>(qp, ng, rows, off, out + h0 * ld, ld);
    }
  }
}
template <typename E>
__attribute__((noinline)) void pair_values8_heads(const float* w, int64_t ld, int32_t group, int32_t kv0, int32_t kv1,
                                                  const uint8_t* const* rows, int32_t m, const uint8_t* const* next,
                                                  int32_t m_next, size_t head_bytes, float* acc) {
  for (int32_t kvh = kv0; kvh < kv1; ++kvh) {
    const size_t off = size_t(kvh) * head_bytes;
    for (int32_t j = 0; j < m_next; ++j) _mm_prefetch(reinterpret_cast<const char*>(next[j] + off), _MM_HINT_T0);
    pair_values8<E>(w + int64_t(kvh) * group * ld, ld, group, rows, off, m, acc + int64_t(kvh) * group * 8);
  }
}
#endif

// Scores of n query vectors q[i] (a decode row's heads sharing one kv head, or a prompt's
// queries) against a tile's rows, query i's at out + i * ld. Each score is one tree: kW lane sums
// over the head dims in order, then transpose_sum's fixed reduction, whichever queries and rows
// share the call. Not inlined, so decode and prompts run the same compiled arithmetic.
template <typename E>
__attribute__((noinline)) void group_scores_any(const float* const* q, int32_t n, const uint8_t* const* rows, size_t off,
                                                int32_t hd, float* out, int64_t ld) {
#if defined(__AVX512F__)
  if (hd == 8) return pair_scores8<E>(q, n, rows, off, out, ld);
#endif
  for (int32_t g0 = 0; g0 < n; g0 += 4) {
    const float* const* qg = q + g0;
    float* og = out + g0 * ld;
    switch (std::min(4, n - g0)) {
      case 1: group_scores<E, 1>(qg, rows, off, hd, og, ld); break;
      case 2: group_scores<E, 2>(qg, rows, off, hd, og, ld); break;
      case 3: group_scores<E, 3>(qg, rows, off, hd, og, ld); break;
      default: group_scores<E, 4>(qg, rows, off, hd, og, ld); break;
    }
  }
}

// The values of G heads for a tile's m rows, kChunks chunks (4 x 16 or 2 x 8 floats) a pass.
template <typename E, int G>
void group_values_dims(const float* w, int64_t ld, const uint8_t* const* rows, size_t off, int32_t m, int32_t hd, float* acc) {
  constexpr int kChunks = kSimdW / 4;  // G * kChunks accumulators stay in registers
  for (int32_t d0 = 0; d0 < hd; d0 += kChunks * kSimdW) {
    const size_t o = off + size_t(d0) * sizeof(E);
    float* a = acc + d0;
    const int c = std::min(kChunks, (hd - d0) / kSimdW);
    if (c == kChunks) group_values<E, G, kChunks>(w, ld, rows, o, m, hd, a);
    else if (c == 1) group_values<E, G, 1>(w, ld, rows, o, m, hd, a);
    else if constexpr (kChunks == 4) {
      if (c == 2) group_values<E, G, 2>(w, ld, rows, o, m, hd, a);
      else group_values<E, G, 3>(w, ld, rows, o, m, hd, a);
    }
  }
}
// acc[i * hd ..] += the weighted rows for the n queries whose weights are at w + i * ld: per head
// dim one FMA chain over the rows in order, however the rows are cut into calls.
template <typename E>
__attribute__((noinline)) void group_values_any(const float* w, int64_t ld, int32_t n, const uint8_t* const* rows, size_t off,
                                                int32_t m, int32_t hd, float* acc) {
#if defined(__AVX512F__)
  if (hd == 8) return pair_values8<E>(w, ld, n, rows, off, m, acc);
#endif
  for (int32_t g0 = 0; g0 < n; g0 += 4) {
    const float* wg = w + g0 * ld;
    float* ag = acc + int64_t(g0) * hd;
    switch (std::min(4, n - g0)) {
      case 1: group_values_dims<E, 1>(wg, ld, rows, off, m, hd, ag); break;
      case 2: group_values_dims<E, 2>(wg, ld, rows, off, m, hd, ag); break;
      case 3: group_values_dims<E, 3>(wg, ld, rows, off, m, hd, ag); break;
      default: group_values_dims<E, 4>(wg, ld, rows, off, m, hd, ag); break;
    }
  }
}
#pragma GCC diagnostic pop
#endif

// acc[0..n) += sum over j < m of w[j] * rows[j][0..n): 64 floats of acc at a time held in
// registers across the tile's rows.
template <int V>
inline void weighted_rows_chunk(const float* w, const float* const* rows, int32_t m, int32_t d0, float* acc) {
  v8f a[V];
#pragma GCC unroll 8
  for (int i = 0; i < V; ++i) a[i] = load8(acc + d0 + 8 * i);
  for (int32_t j = 0; j < m; ++j) {
    const float wj = w[j];
#pragma GCC unroll 8
    for (int i = 0; i < V; ++i) a[i] += wj * load8(rows[j] + d0 + 8 * i);
  }
#pragma GCC unroll 8
  for (int i = 0; i < V; ++i) std::memcpy(acc + d0 + 8 * i, &a[i], 32);
}

__attribute__((noinline)) void weighted_rows_add(const float* w, const float* const* rows, int32_t m, int32_t n, float* acc) {
  int32_t d0 = 0;
  for (; d0 + 64 <= n; d0 += 64) weighted_rows_chunk<8>(w, rows, m, d0, acc);
  switch ((n - d0) / 8) {
    case 7: weighted_rows_chunk<7>(w, rows, m, d0, acc); break;
    case 6: weighted_rows_chunk<6>(w, rows, m, d0, acc); break;
    case 5: weighted_rows_chunk<5>(w, rows, m, d0, acc); break;
    case 4: weighted_rows_chunk<4>(w, rows, m, d0, acc); break;
    case 3: weighted_rows_chunk<3>(w, rows, m, d0, acc); break;
    case 2: weighted_rows_chunk<2>(w, rows, m, d0, acc); break;
    case 1: weighted_rows_chunk<1>(w, rows, m, d0, acc); break;
    default: break;
  }
  for (int32_t d = d0 + (n - d0) / 8 * 8; d < n; ++d)  // n not a multiple of 8
    for (int32_t j = 0; j < m; ++j) acc[d] += w[j] * rows[j][d];
}

// Small batches (verify steps, a few streams): each weight row is read once from memory and dotted
// with every row of x, two weight rows against up to three x rows per pass, the weight pair
// staying in L1 across the passes; each (weight row, x row) sum is Dot32's, below.
// The vector of the float products (the GEMM, the prompt attention, Dot32 with AVX-512): 16 floats
// with AVX-512, 8 with AVX, 4 with baseline SSE (a portable build), so these kernels never ask the
// compiler to emulate vectors wider than the ISA.
#if defined(__AVX512F__)
typedef float vgf __attribute__((vector_size(64)));
#elif defined(__AVX__)
typedef float vgf __attribute__((vector_size(32)));
#else
typedef float vgf __attribute__((vector_size(16)));
#endif
constexpr int64_t kGLanes = int64_t(sizeof(vgf) / sizeof(float));
inline vgf loadg(const float* p) { vgf v; std::memcpy(&v, p, sizeof(vgf)); return v; }

// One (weight row, x row) sum of a small batch, in exactly dot_f32's order: four 8-lane
// accumulators over 32-float steps (with AVX-512 as two 16-lane ones, lanes 0-7 and 8-15 of `a`
// being dot_f32's s0 and s1, of `b` s2 and s3), then 8-float steps into s0, the fold
// (s0 + s1) + (s2 + s3), hsum, and the scalar rest. So a verify pass or a few streams give an F32
// row exactly what decode gives it.
struct Dot32 {
#if defined(__AVX512F__)
  struct W32 {  // 32 weights as floats
    vgf lo, hi;
  };
  static W32 load(const float* w) { return {loadg(w), loadg(w + 16)}; }
  vgf a{}, b{};
  void step(const W32& w, const float* x) { step(w, load(x)); }
  // The same step with the activations loaded: the GEMM's tiles load them once for several rows.
  void step(const W32& w, const W32& x) {
    a += w.lo * x.lo;
    b += w.hi * x.hi;
  }
  // The sum, with the last len (< 32) weights and activations at wt and xt.
  float finish(const float* wt, const float* xt, int64_t len) const {
    v8f s[4];
    std::memcpy(&s[0], &a, 64);
    std::memcpy(&s[2], &b, 64);
#else
  struct W32 {
    v8f v[4];
  };
  static W32 load(const float* w) { return {{load8(w), load8(w + 8), load8(w + 16), load8(w + 24)}}; }
  v8f s[4] = {};
  void step(const W32& w, const float* x) {
    for (int k = 0; k < 4; ++k) s[k] += w.v[k] * load8(x + 8 * k);
  }
  float finish(const float* wt, const float* xt, int64_t len) const {
    v8f s[4] = {this->s[0], this->s[1], this->s[2], this->s[3]};
#endif
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) s[0] += load8(wt + i) * load8(xt + i);
    float r = hsum((s[0] + s[1]) + (s[2] + s[3]));
    // An explicit fma: left as r += w * x, GCC vectorized this tail in one caller (products
    // rounded, then added in order) and fused it in the other.
    for (; i < len; ++i) r = std::fma(wt[i], xt[i], r);
    return r;
  }
};

// (No software prefetch in the decode dots: 8 KiB ahead took one thread's F32 matvec from memory
// from 23 to 36.5 GB/s in pagoda_kernel_bench, but two-thread 110M F32 decode from 167-171 down
// to 140-153 tok/s, and F16 within noise: with both threads streaming, the hardware prefetcher
// keeps up and the extra requests only compete.)
float dot_f32(const float* a, const float* b, int64_t n) {
  Dot32 d;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) d.step(Dot32::load(a + i), b + i);
  return d.finish(a + i, b + i, n - i);
}

// 16-bit float rows (F16, BF16) widened 32 weights at a time in registers (exact conversions),
// then summed as dot_f32 sums: a decode dot straight from the weight bytes that equals, bit for
// bit, dot_f32 of the widened row (what a small batch computes). (BF16 rows were dequantized
// element by element into a buffer first, three times slower than F16 at the same bytes.)
template <Dot32::W32 (*To32)(const uint8_t*), float (*To1)(uint16_t)>
float dot_16bit(const uint8_t* w, const float* x, int64_t n) {
  Dot32 d;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) d.step(To32(w + 2 * i), x + i);
  float tail[32];
  const auto* h = reinterpret_cast<const uint16_t*>(w);
  for (int64_t j = i; j < n; ++j) tail[j - i] = To1(h[j]);
  return d.finish(tail, x + i, n - i);
}

// 32 F16 or BF16 weights as Dot32's floats.
#if defined(__AVX512F__)
#pragma GCC diagnostic push  // GCC 12 reads the intrinsics' undefined passthrough operands as uninitialized
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline Dot32::W32 half32_to_f32(const uint8_t* p) {
  auto cvt = [](const uint8_t* q) { return std::bit_cast<vgf>(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)))); };
  return {cvt(p), cvt(p + 32)};
}
inline Dot32::W32 bf16x32_to_f32(const uint8_t* p) {
  auto cvt = [](const uint8_t* q) {
    return std::bit_cast<vgf>(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q))), 16));
  };
  return {cvt(p), cvt(p + 32)};
}
#pragma GCC diagnostic pop
#else
#if defined(__F16C__)
inline Dot32::W32 half32_to_f32(const uint8_t* p) { return {{half8_to_f32(p), half8_to_f32(p + 16), half8_to_f32(p + 32), half8_to_f32(p + 48)}}; }
#endif
inline Dot32::W32 bf16x32_to_f32(const uint8_t* p) {
  return {{bf16x8_to_f32(p), bf16x8_to_f32(p + 16), bf16x8_to_f32(p + 32), bf16x8_to_f32(p + 48)}};
}
#endif

// Two weight rows against MR rows of x, each pair summed as dot_f32 sums it.
template <int MR>
void dot_2xm(const float* w0, const float* w1, const float* x, int64_t n, float* out0, float* out1) {
  Dot32 d0[MR], d1[MR];
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    // The weights stream from memory exactly once: ask for them well ahead (the hardware
    // prefetcher alone kept this loop at half the bandwidth a plain dot reaches).
    __builtin_prefetch(w0 + i + 256);
    __builtin_prefetch(w0 + i + 272);
    __builtin_prefetch(w1 + i + 256);
    __builtin_prefetch(w1 + i + 272);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      d0[r].step(Dot32::load(w0 + i), x + r * n + i);
      d1[r].step(Dot32::load(w1 + i), x + r * n + i);
    }
  }
  for (int r = 0; r < MR; ++r) {
    out0[r] = d0[r].finish(w0 + i, x + r * n + i, n - i);
    out1[r] = d1[r].finish(w1 + i, x + r * n + i, n - i);
  }
}

void dot_2xm_rows(int64_t mr, const float* w0, const float* w1, const float* x, int64_t n, float* o0, float* o1) {
  switch (mr) {
    case 3:
      dot_2xm<2>(w0, w1, x, n, o0, o1);
      return dot_2xm<1>(w0, w1, x + 2 * n, n, o0 + 2, o1 + 2);
    case 2: return dot_2xm<2>(w0, w1, x, n, o0, o1);
    default: return dot_2xm<1>(w0, w1, x, n, o0, o1);
  }
}

// Batched F32 (or dequantized) matmul over output rows [o0, o1) for a small batch.
void matmul_rows_f32(const float* const* wrow, int64_t o0, int64_t o1, const HostTensor& x, const HostTensor& out) {
  const int64_t M = x.rows, n = x.cols, n_groups = (M + 2) / 3;
  for (int64_t o = o0; o < o1; o += 2) {
    const bool pair = o + 1 < o1;
    const float* w0 = wrow[o - o0];
    const float* w1 = pair ? wrow[o - o0 + 1] : w0;
    for (int64_t g = 0; g < n_groups; ++g) {
      const int64_t r0 = M * g / n_groups, mr = M * (g + 1) / n_groups - r0;
      float t0[3], t1[3];
      dot_2xm_rows(mr, w0, w1, x.f32() + r0 * n, n, t0, t1);
      for (int64_t a = 0; a < mr; ++a) {
        out.f32()[(r0 + a) * out.cols + o] = t0[a];
        if (pair) out.f32()[(r0 + a) * out.cols + o + 1] = t1[a];
      }
    }
  }
}

// Rows from which float weights are packed into the tiles (decode_order_gemm): below, packing
// costs more than the reuse saves (verify passes, a few streams).
constexpr int64_t kGemmMinRows = 16;

#if defined(__AVX512BF16__)
// ---- BF16 weights: products of BF16 pairs (vdpbf16ps) ----
//
// A BF16 x BF16 product is exact in F32, and vdpbf16ps sums two of them into each of 16 F32 lanes
// per instruction: twice the multiply-adds of an F32 FMA, on weights read at their file size.
// With BF16 weights (an even width) the activations are rounded to BF16 (to nearest even) once
// per matmul, as llama.cpp does for BF16 weights on every path; that rounding (relative 2^-9 at
// most) is the only difference in the products from widening the weights to meet F32 activations.
// Every batch size sums a (weight row, activation row) pair as dot_bf16_pairs does: decode and
// small batches call it, prompts run its accumulators in the tiles below (Bf16PairForm).

// BF16 rounding of n floats (n even) into n / 2 pair words; the tail through a masked load.
void x_to_bf16_pairs(const float* x, int64_t n, uint32_t* dst) {
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k / 2),
                                                   std::bit_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(x + k))));
  if (k < n) {
    const __mmask16 m = __mmask16((1u << (n - k)) - 1);
    const __m256i h = std::bit_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + k)));
    _mm256_mask_storeu_epi16(dst + k / 2, m, h);
  }
}

// Rows of x (n even) as BF16 pair words, n / 2 per row.
// Rounded on the pool when there is one (a prompt's rows), so the threaded GEMM after it does
// not wait on one thread.
std::vector<uint32_t> rows_to_bf16_pairs(const HostTensor& x, ThreadPool* pool = nullptr) {
  std::vector<uint32_t> xb(size_t(x.rows * x.cols / 2));
  auto rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) x_to_bf16_pairs(x.f32() + r * x.cols, x.cols, xb.data() + r * x.cols / 2);
  };
  if (pool) pool->parallel_for(x.rows, rows);
  else rows(0, x.rows);
  return xb;
}

// One BF16 weight row against one activation row as pair words (n even): two 16-lane chains over
// 64-element steps, then one 32-element step into the first, the rest into the second through
// masked loads (nothing read past the row), then the fold.
#pragma GCC diagnostic push  // GCC 12 reads _mm512_reduce_add_ps's undefined operands as uninitialized
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
float dot_bf16_pairs(const uint8_t* w, const uint32_t* xb, int64_t n) {
  auto wv = [&](int64_t i) { return std::bit_cast<__m512bh>(_mm512_loadu_si512(w + 4 * i)); };
  auto xv = [&](int64_t i) { return std::bit_cast<__m512bh>(_mm512_loadu_si512(xb + i)); };
  __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
  const int64_t words = n / 2;
  int64_t i = 0;
  for (; i + 32 <= words; i += 32) {
    a = _mm512_dpbf16_ps(a, wv(i), xv(i));
    b = _mm512_dpbf16_ps(b, wv(i + 16), xv(i + 16));
  }
  if (i + 16 <= words) {
    a = _mm512_dpbf16_ps(a, wv(i), xv(i));
    i += 16;
  }
  if (i < words) {
    const __mmask16 m = __mmask16((1u << (words - i)) - 1);
    b = _mm512_dpbf16_ps(b, std::bit_cast<__m512bh>(_mm512_maskz_loadu_epi32(m, w + 4 * i)),
                         std::bit_cast<__m512bh>(_mm512_maskz_loadu_epi32(m, xb + i)));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}
#pragma GCC diagnostic pop

#endif

// ---- Prompt-sized float batches in decode's own summation order ----
//
// F32, F16 and BF16 weights against 16 rows or more. A panel GEMM (until the twentieth session)
// summed each output as one chain over k, which rounds differently from decode's dot (Dot32's 32
// lanes and fold, or dot_bf16_pairs' pair lanes): a prompt's row and the same row decoded alone
// differed in the last bits, and so could a greedy continuation after a prefix cache hit, another
// chunking or a verify pass of 16+ rows. Here each output IS decode's sum: a tile of MR activation
// rows x NR weight rows keeps one decode accumulator per output, each weight vector (packed, and
// widened, once per block) loaded once for the MR rows, each activation vector once for the NR
// weight rows, and every output finished by the decode dot's own tail and fold. A block of weight
// rows stays in L2 while every group of rows passes it.
//
// A form: the accumulator (Acc), one step's weights (W, kStep elements or pair words), the step,
// and the finish from element (word) i of an n-long row. AVX-512 builds only (the tiles need its
// 32 vector registers; other builds take the small-batch dots).
#if defined(__AVX512F__)
#pragma GCC diagnostic push  // GCC 12 reads the intrinsics' undefined operands as uninitialized
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
struct F32Form {
  using Acc = Dot32;
  using W = Dot32::W32;
  using X = float;
  using XV = Dot32::W32;  // one step's activations
  using P = float;  // a packed step: kStep of them, 128 bytes
  static constexpr int64_t kStep = 32;
  static void pack(const uint8_t* w, int64_t i, P* dst) { std::memcpy(dst, w + 4 * i, 128); }
  static W load(const P* p) { return Dot32::load(p); }
  static XV load_x(const X* x, int64_t i) { return Dot32::load(x + i); }
  static void step(Acc& a, const W& w, const XV& x) { a.step(w, x); }
  static float finish(const Acc& a, const uint8_t* w, const X* x, int64_t i, int64_t n) {
    return a.finish(reinterpret_cast<const float*>(w) + i, x + i, n - i);
  }
};
// F16 or BF16 weights widened 32 at a time, as dot_16bit.
template <Dot32::W32 (*To32)(const uint8_t*), float (*To1)(uint16_t)>
struct HalfForm : F32Form {
  static void pack(const uint8_t* w, int64_t i, P* dst) {  // widened once (exactly) for every row group
    const W v = To32(w + 2 * i);
    std::memcpy(dst, &v, 128);
  }
  static float finish(const Acc& a, const uint8_t* w, const X* x, int64_t i, int64_t n) {
    float tail[32];
    const auto* h = reinterpret_cast<const uint16_t*>(w);
    for (int64_t j = i; j < n; ++j) tail[j - i] = To1(h[j]);
    return a.finish(tail, x + i, n - i);
  }
};
#if defined(__AVX512BF16__)
// BF16 weights against activations rounded to BF16, as dot_bf16_pairs (n, i in pair words).
struct Bf16PairForm {
  struct Acc {
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
  };
  struct W {
    __m512bh lo, hi;
  };
  using X = uint32_t;
  using XV = W;
  using P = uint32_t;
  static constexpr int64_t kStep = 32;
  static __m512bh words(const void* p) { return std::bit_cast<__m512bh>(_mm512_loadu_si512(p)); }
  static void pack(const uint8_t* w, int64_t i, P* dst) { std::memcpy(dst, w + 4 * i, 128); }
  static W load(const P* p) { return {words(p), words(p + 16)}; }
  static XV load_x(const X* x, int64_t i) { return {words(x + i), words(x + i + 16)}; }
  static void step(Acc& acc, const W& w, const XV& x) {
    acc.a = _mm512_dpbf16_ps(acc.a, w.lo, x.lo);
    acc.b = _mm512_dpbf16_ps(acc.b, w.hi, x.hi);
  }
  static float finish(Acc acc, const uint8_t* w, const X* x, int64_t i, int64_t n) {
    if (i + 16 <= n) {
      acc.a = _mm512_dpbf16_ps(acc.a, words(w + 4 * i), words(x + i));
      i += 16;
    }
    if (i < n) {
      const __mmask16 m = __mmask16((1u << (n - i)) - 1);
      acc.b = _mm512_dpbf16_ps(acc.b, std::bit_cast<__m512bh>(_mm512_maskz_loadu_epi32(m, w + 4 * i)),
                               std::bit_cast<__m512bh>(_mm512_maskz_loadu_epi32(m, x + i)));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc.a, acc.b));
  }
};
#endif

// Steps [i0, i1) (multiples of kStep) of the decode sums of weight rows wr[c] and activation
// rows xr[r] (n elements or words), r < MR, c < NR, carried in `state` from the steps before i0;
// when i1 is the last whole step the sums are finished into out[r * ldo + c], else kept in state.
// The steps read the weights packed (pk: step i0's PackNR rows of kStep, then the next step's)
// and the activations from a copy of the block (xs[r], from element i0); the finish reads the
// rows' tails from wr and xr. (Not inlined: inside the blocking loops GCC spilled the
// accumulators to the stack, 30 against 49 Gmadds/s.)
template <class F, int MR, int NR, int PackNR>
__attribute__((noinline)) void decode_order_tile(const typename F::P* pk, const uint8_t* const* wr, const typename F::X* const* xs,
                       const typename F::X* const* xr, int64_t i0, int64_t i1, int64_t n, typename F::Acc* state, float* out,
                       int64_t ldo) {
  typename F::Acc acc[MR][NR];
  if (i0 > 0)
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) acc[r][c] = state[r * NR + c];
  for (int64_t i = i0; i < i1; i += F::kStep, pk += PackNR * F::kStep) {
    typename F::W w[NR];
    // Weights and activations each loaded once into registers (left to itself GCC folded the
    // loads into the FMAs: 30 to 32 loads to 24 FMAs a step instead of 14).
#pragma GCC unroll 4
    for (int c = 0; c < NR; ++c) {
      w[c] = F::load(pk + c * F::kStep);
      asm("" : "+v"(w[c].lo), "+v"(w[c].hi));
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      typename F::XV xv = F::load_x(xs[r], i - i0);
      asm("" : "+v"(xv.lo), "+v"(xv.hi));
#pragma GCC unroll 4
      for (int c = 0; c < NR; ++c) F::step(acc[r][c], w[c], xv);
    }
  }
  if (i1 < n / F::kStep * F::kStep) {
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) state[r * NR + c] = acc[r][c];
    return;
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) out[r * ldo + c] = F::finish(acc[r][c], wr[c], xr[r], i1, n);
}

// Weight rows [o0, o1) against every one of the M rows of x (row r at x + r * ldx; n elements or
// words a row). 4 x 3 tiles (24 of AVX-512's 32 vector registers hold the accumulators) over K
// blocks: a row group's block of activations stays in L1 while the block's weight rows pass
// from L2, each tile's sums carried between K blocks in memory (exactly: a sum is the same
// whether its accumulators wait in a register or in memory).
template <class F>
void decode_order_gemm(const HostTensor& w, const typename F::X* x, int64_t ldx, int64_t M, int64_t n, const HostTensor& out,
                       int64_t o0, int64_t o1) {
  constexpr int kMR = 4, kNR = 3;
  constexpr int64_t kKc = 32 * F::kStep;  // 1024 floats (F32/F16) or pair words a K block
  const size_t stride = w.row_stride();
  // Weight rows a block: about 512 KiB of them, so they stay in L2 while the row groups pass.
  const int64_t block = std::clamp<int64_t>(int64_t((512u << 10) / std::max<size_t>(stride, 1)) / kNR * kNR, kNR, 96);
  const int64_t n_full = n / F::kStep * F::kStep, n_steps = n_full / F::kStep, tile_elems = kNR * n_full;
  // Tiles a block can have: whole ones of kNR rows, then up to kNR - 1 single-row ones (a block
  // of 95 rows is 31 + 2; counting (block + 2) / 3 of them overran the buffers by one tile).
  const int64_t max_tiles = block / kNR + kNR - 1;
  thread_local std::vector<typename F::Acc> state;
  thread_local std::vector<typename F::P> packed_store;
  state.resize(size_t(max_tiles * kMR * kNR));
  packed_store.resize(size_t(max_tiles * tile_elems + 16));
  // Both on cache lines: a 64-byte load that straddles two lines costs two. The row group's
  // activations are copied a K block at a time when x's rows are not.
  auto on_line = [](auto* p) { return p + (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64 / sizeof(*p); };
  typename F::P* packed = on_line(packed_store.data());
  alignas(64) typename F::X xblock[kMR * kKc];
  const bool x_on_lines = reinterpret_cast<uintptr_t>(x) % 64 == 0 && ldx * sizeof(typename F::X) % 64 == 0;
  for (int64_t ob = o0; ob < o1; ob += block) {
    const int64_t oe = std::min(o1, ob + block);
    // The block's tiles: kNR rows each, the last rows one at a time; fn(tile, first row, rows).
    auto each_tile = [&](auto&& fn) {
      for (int64_t o = ob, t = 0; o < oe; ++t) {
        const int64_t nr = oe - o >= kNR ? kNR : 1;
        fn(t, o, nr);
        o += nr;
      }
    };
    // The block's whole steps packed tile by tile, step by step (one stream per tile, in the
    // order the tiles read them; F16/BF16 widened here once rather than once per row group).
    each_tile([&](int64_t t, int64_t o, int64_t nr) {
      for (int64_t c = 0; c < nr; ++c)
        for (int64_t st = 0; st < n_steps; ++st)
          F::pack(w.data + size_t(o + c) * stride, st * F::kStep, packed + t * tile_elems + (st * kNR + c) * F::kStep);
    });
    for (int64_t r0 = 0; r0 < M; r0 += kMR) {
      const int64_t mr = std::min<int64_t>(kMR, M - r0);
      const typename F::X* xr[kMR];
      for (int64_t r = 0; r < kMR; ++r) xr[r] = x + (r0 + std::min(r, mr - 1)) * ldx;
      for (int64_t i0 = 0;; i0 += kKc) {
        const int64_t i1 = std::min(n_full, i0 + kKc);
        const typename F::X* xs[kMR];
        for (int64_t r = 0; r < kMR; ++r) {
          if (x_on_lines) {
            xs[r] = xr[r] + i0;
            continue;
          }
          std::memcpy(xblock + r * kKc, xr[r] + i0, size_t(i1 - i0) * sizeof(typename F::X));
          xs[r] = xblock + r * kKc;
        }
        each_tile([&](int64_t t, int64_t o, int64_t nr) {
          const uint8_t* wr[kNR];
          for (int64_t c = 0; c < kNR; ++c) wr[c] = w.data + size_t(o + std::min(c, nr - 1)) * stride;
          float* op = out.f32() + r0 * out.cols + o;
          typename F::Acc* st = state.data() + t * kMR * kNR;
          const typename F::P* pk = packed + t * tile_elems + i0 / F::kStep * kNR * F::kStep;
#define PAGODA_TILE(MR, NR) decode_order_tile<F, MR, NR, kNR>(pk, wr, xs, xr, i0, i1, n, st, op, out.cols)
          if (nr == kNR) {
            switch (mr) {
              case 4: PAGODA_TILE(4, kNR); break;
              case 3: PAGODA_TILE(3, kNR); break;
              case 2: PAGODA_TILE(2, kNR); break;
              default: PAGODA_TILE(1, kNR); break;
            }
          } else {
            switch (mr) {
              case 4: PAGODA_TILE(4, 1); break;
              case 3: PAGODA_TILE(3, 1); break;
              case 2: PAGODA_TILE(2, 1); break;
              default: PAGODA_TILE(1, 1); break;
            }
          }
#undef PAGODA_TILE
        });
        if (i1 >= n_full) break;
      }
    }
  }
}

#pragma GCC diagnostic pop
#endif  // __AVX512F__

// ---- Float weights in k-major panels ----
//
// The CPU backend keeps F32, F16 and BF16 matmul weights as panels of kPanel rows
// (CpuBackend::repack_matmul_weight): panel p holds rows kPanel p .. kPanel p + 15 (rows past the
// end are zeros) and its step s the 16 rows' elements at s side by side (in AVX-512 BF16 builds a
// BF16 step is the pair word of elements 2s and 2s + 1, multiplied by vdpbf16ps). An output is one
// multiply-add chain over the steps in order, in one vector lane, whatever the batch: decode runs
// a few panels against one activation row, a prompt kPanelMR activation rows against kPanelNP
// panels, each output with the same chain. So decode and prompts agree bit for bit by
// construction, and a prompt step loads one vector per panel and broadcasts one element per
// activation row (the decode-order tiles above, for weights left in the file's layout, load both
// as vectors and finish every output with a reduction). The backend packs a weight at its first
// decode-sized matmul, not at load: packing writes fresh memory, which tripled a cold start on a
// VM that hands freed pages back to its host (docs/perf.md). Before that, a matmul packs each
// band's K blocks into a buffer of the thread's, once per call (panel_matmul_file), with the
// same chains; from the file's layout decode would read sixteen rows side by side, which streamed
// at a third of the packed panels' rate, so decode always waits for the packing.
constexpr int64_t kPanel = 16;
#if defined(__AVX512F__)
constexpr int kPanelMR = 6, kPanelNP = 4, kPanelDecodeNP = 4;  // 24 of the 32 registers accumulate
#elif defined(__AVX__)
constexpr int kPanelMR = 6, kPanelNP = 1, kPanelDecodeNP = 3;  // 12 of the 16; decode 3 panels (4 spilled)
#else
constexpr int kPanelMR = 2, kPanelNP = 1, kPanelDecodeNP = 1;  // 8 of the 16 (a panel is 4 registers)
#endif
constexpr int64_t kPanelBandRows = kPanel * kPanelNP;  // rows a band of panels holds
using fastq::kKeptGroupRows;                        // rows a group of kept quant panels holds
constexpr int64_t kPanelKc = 512;  // steps a prompt's K block: 128 KiB of a band's F32 lanes

// 16 lanes of a panel step, in the build's float vectors.
struct V16 {
  vgf v[kPanel / kGLanes];
};
// w * x + a rounded once where the build has FMA; a multiply and an add (each rounded) where it
// has not, at every call site alike.
inline vgf fmag(vgf w, vgf x, vgf a) {
#if defined(__AVX512F__)
  return std::bit_cast<vgf>(_mm512_fmadd_ps(std::bit_cast<__m512>(w), std::bit_cast<__m512>(x), std::bit_cast<__m512>(a)));
#elif defined(__FMA__) && defined(__AVX2__)
  return std::bit_cast<vgf>(_mm256_fmadd_ps(std::bit_cast<__m256>(w), std::bit_cast<__m256>(x), std::bit_cast<__m256>(a)));
#else
  return w * x + a;
#endif
}

// Panel forms: the bytes of one row's element at a step (kElem), the accumulator and widened
// weights (V), one activation element broadcast (XV), and a step's product.
struct PanelF32 {
  using X = float;
  using V = V16;
  using XV = vgf;
  static constexpr size_t kElem = 4;
  static V zero() { return {}; }
  static V load(const uint8_t* p) {
    V r;
    for (int64_t i = 0; i < kPanel / kGLanes; ++i) r.v[i] = loadg(reinterpret_cast<const float*>(p) + i * kGLanes);
    return r;
  }
  // x[s] in every lane, one broadcast load. (Written as vgf{} + x[s], it compiled to an add of
  // +0.0, which the compiler must keep for x = -0.0, and a broadcast from a register: two more
  // vector operations per activation row and step, on the pipes the multiply-adds need.) An
  // accumulator starts at +0.0, and adding a product of either zero leaves it as it is, so
  // broadcasting -0.0 itself changes no sum.
  static XV bcast(const X* x, int64_t s) {
#if defined(__AVX512F__)
    return std::bit_cast<vgf>(_mm512_set1_ps(x[s]));
#elif defined(__AVX2__)
    return std::bit_cast<vgf>(_mm256_set1_ps(x[s]));
#else
    vgf v;
    for (int64_t i = 0; i < kGLanes; ++i) v[i] = x[s];
    return v;
#endif
  }
  static void step(V& a, const V& w, XV x) {
    for (int64_t i = 0; i < kPanel / kGLanes; ++i) a.v[i] = fmag(w.v[i], x, a.v[i]);
  }
  static void pin(V& w) {
    for (int64_t i = 0; i < kPanel / kGLanes; ++i) asm("" : "+v"(w.v[i]));
  }
  static void store(const V& a, float* dst) { std::memcpy(dst, &a, sizeof(a)); }
};
// F16 or BF16 elements, widened exactly to floats at each step.
template <bool kBf16>
struct PanelHalf : PanelF32 {
  static constexpr size_t kElem = 2;
#pragma GCC diagnostic push  // GCC 12 reads the intrinsics' undefined passthrough operands as uninitialized
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
  static V load(const uint8_t* p) {
#if defined(__AVX512F__)
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (kBf16) return {{std::bit_cast<vgf>(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))}};
    else return {{std::bit_cast<vgf>(_mm512_cvtph_ps(h))}};
#elif defined(__AVX2__) && defined(__F16C__)
    // In registers, eight at a time (through a buffer, F16 decode ran at a third of the row dots).
    if constexpr (kBf16) return {{bf16x8_to_f32(p), bf16x8_to_f32(p + 16)}};
    else return {{half8_to_f32(p), half8_to_f32(p + 16)}};
#else
    alignas(64) float f[kPanel];
    if constexpr (kBf16) widen_16bit<bf16x8_to_f32, bf16_to_f32>(p, f, kPanel);
    else {
#if defined(__F16C__)
      widen_16bit<half8_to_f32, half_to_float>(p, f, kPanel);
#else
      for (int64_t j = 0; j < kPanel; ++j) f[j] = half_to_float(reinterpret_cast<const uint16_t*>(p)[j]);
#endif
    }
    return PanelF32::load(reinterpret_cast<const uint8_t*>(f));
#endif
  }
#pragma GCC diagnostic pop
};
#if defined(__AVX512BF16__)
// BF16 pair words against activations rounded to BF16 pairs (as dot_bf16_pairs' products).
struct PanelBf16Pairs {
  using X = uint32_t;
  struct V {
    __m512 v;
  };
  using XV = __m512bh;
  static constexpr size_t kElem = 4;
  static V zero() { return {_mm512_setzero_ps()}; }
  static V load(const uint8_t* p) { return {_mm512_loadu_ps(p)}; }
  static XV bcast(const X* x, int64_t s) { return std::bit_cast<__m512bh>(_mm512_set1_epi32(int32_t(x[s]))); }
  static void step(V& a, const V& w, XV x) { a.v = _mm512_dpbf16_ps(a.v, std::bit_cast<__m512bh>(w.v), x); }
  static void pin(V& w) { asm("" : "+v"(w.v)); }
  static void store(const V& a, float* dst) { _mm512_storeu_ps(dst, a.v); }
};
#endif

// The panels' element size and steps for weights of dtype t, `cols` wide; {0, 0} for a dtype the
// panels do not take.
struct PanelLayout {
  size_t elem = 0;
  int64_t steps = 0;
};
PanelLayout panel_layout(DType t, int64_t cols) {
  if (t == DType::F32) return {4, cols};
  if (t == DType::F16) return {2, cols};
#if defined(__AVX512BF16__)
  if (t == DType::BF16 && cols % 2 == 0) return {4, cols / 2};
#endif
  if (t == DType::BF16) return {2, cols};
  return {};
}

// Where the panels lie: in bands of kPanelNP, the last band perhaps fewer. A band's steps follow
// one another, each step its panels' kPanel elements side by side, so the tile over a band (a
// prompt's, or decode's) reads one sequential stream (with four panels each a stream of its own,
// two threads' eight streams read F16 decode at 0.9x of the row dots).
struct PanelBands {
  size_t elem;
  int64_t steps, n_panels;
  PanelBands(DType t, int64_t rows, int64_t cols) {
    const PanelLayout l = panel_layout(t, cols);
    elem = l.elem;
    steps = l.steps;
    n_panels = (rows + kPanel - 1) / kPanel;
  }
  int64_t panels_in(int64_t b) const { return std::min<int64_t>(kPanelNP, n_panels - b * kPanelNP); }
  size_t step_stride(int64_t p) const { return size_t(panels_in(p / kPanelNP)) * kPanel * elem; }
  // Panel p's step 0.
  size_t offset(int64_t p) const {
    return size_t(p / kPanelNP) * kPanelNP * kPanel * size_t(steps) * elem + size_t(p % kPanelNP) * kPanel * elem;
  }
};

// How a weight row's elements become 4-byte lanes: moved as they are (F32, and BF16 pair words),
// or 16-bit floats widened exactly.
enum class Lanes { Move32, F16, BF16 };

template <Lanes L>
inline float lane_at(const uint8_t* row, int64_t s) {
  if constexpr (L == Lanes::Move32) {
    float f;
    std::memcpy(&f, row + 4 * s, 4);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, row + 2 * s, 2);
    if constexpr (L == Lanes::F16) return half_to_float(h);
    else return bf16_to_f32(h);
  }
}

#pragma GCC diagnostic push  // GCC 12 reads the intrinsics' undefined passthrough operands as uninitialized
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__)
// Lanes 0 .. 3 of rows i, 4 + i, 8 + i and 12 + i (at p, p + s4, p + 2 s4, p + 3 s4 bytes, s4 four
// rows' bytes) in the four 128-bit lanes of one register (as floats): put together by masked
// broadcast loads, which need no shuffle unit (a 16 x 16 transpose in registers takes 64
// shuffles; this leaves 32).
template <Lanes L>
inline __m512 quad_rows(const uint8_t* p, size_t s4) {
  const uint8_t* q = p + 2 * s4;
  if constexpr (L == Lanes::Move32) {
    auto f = [](const uint8_t* a) { return _mm_loadu_ps(reinterpret_cast<const float*>(a)); };
    __m512 v = _mm512_broadcast_f32x4(f(p));
    v = _mm512_mask_broadcast_f32x4(v, 0x00F0, f(p + s4));
    v = _mm512_mask_broadcast_f32x4(v, 0x0F00, f(q));
    return _mm512_mask_broadcast_f32x4(v, 0xF000, f(q + s4));
  } else {
    // Four 16-bit lanes a row: 64 bits, into 64-bit element L of a 256-bit register (F16, then
    // widened by vcvtph2ps) or the low half of 128-bit lane L (BF16, then interleaved with zeros).
    auto f = [](const uint8_t* a) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(a)); };
    if constexpr (L == Lanes::F16) {
      __m256i h = _mm256_broadcastq_epi64(f(p));
      h = _mm256_mask_broadcastq_epi64(h, 0x2, f(p + s4));
      h = _mm256_mask_broadcastq_epi64(h, 0x4, f(q));
      h = _mm256_mask_broadcastq_epi64(h, 0x8, f(q + s4));
      return _mm512_cvtph_ps(h);
    } else {
      __m512i h = _mm512_broadcastq_epi64(f(p));
      h = _mm512_mask_broadcastq_epi64(h, 0x04, f(p + s4));
      h = _mm512_mask_broadcastq_epi64(h, 0x10, f(q));
      h = _mm512_mask_broadcastq_epi64(h, 0x40, f(q + s4));
      return _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), h));
    }
  }
}
// Lanes 0 .. 15 of 16 rows (row j at b + j stride) to dst[k * ld + j]: per four lanes, four
// quad_rows registers and a 4 x 4 transpose within each 128-bit lane.
template <Lanes L>
inline void transpose16_store(const uint8_t* b, size_t stride, float* dst, int64_t ld) {
  constexpr size_t kE = L == Lanes::Move32 ? 4 : 2;
  const size_t s4 = 4 * stride;
#pragma GCC unroll 4
  for (int h = 0; h < 4; ++h) {
    const uint8_t* p = b + 4 * kE * h;
    const __m512 r0 = quad_rows<L>(p, s4), r1 = quad_rows<L>(p + stride, s4);
    const __m512 r2 = quad_rows<L>(p + 2 * stride, s4), r3 = quad_rows<L>(p + 3 * stride, s4);
    const __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(r0, r1)), t1 = _mm512_castps_pd(_mm512_unpackhi_ps(r0, r1));
    const __m512d t2 = _mm512_castps_pd(_mm512_unpacklo_ps(r2, r3)), t3 = _mm512_castps_pd(_mm512_unpackhi_ps(r2, r3));
    float* d = dst + 4 * h * ld;
    _mm512_store_ps(d, _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)));
    _mm512_store_ps(d + ld, _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)));
    _mm512_store_ps(d + 2 * ld, _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)));
    _mm512_store_ps(d + 3 * ld, _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3)));
  }
}
#elif defined(__AVX2__)
template <Lanes L>
inline __m256 lanes8(const uint8_t* row, int64_t s) {
  if constexpr (L == Lanes::Move32) return _mm256_loadu_ps(reinterpret_cast<const float*>(row + 4 * s));
  else if constexpr (L == Lanes::F16) return std::bit_cast<__m256>(half8_to_f32(row + 2 * s));
  else return std::bit_cast<__m256>(bf16x8_to_f32(row + 2 * s));
}
// r[j] = 8 lanes of row j (j < 8) -> dst[k * ld + j] for k < 8.
inline void transpose8_store(const __m256 r[8], float* dst, int64_t ld) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + m], 128-bit half H: rows 4i .. 4i+3 at k = 4H + m.
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int m = 0; m < 4; ++m) {
    _mm256_store_ps(dst + m * ld, _mm256_permute2f128_ps(u[m], u[4 + m], 0x20));
    _mm256_store_ps(dst + (4 + m) * ld, _mm256_permute2f128_ps(u[m], u[4 + m], 0x31));
  }
}
#endif

// Rows r0 .. r0 + 16 np of w (row-major, `stride` bytes a row; rows at or past n_rows read as
// zeros), lanes [s0, s1), into panels: lane s of panel c's row j at dst[(s - s0) * 16 np + 16 c + j]
// (dst on a 64-byte line). Whole blocks of 16 (AVX-512) or 8 (AVX2) lanes through register
// transposes, the rest one lane at a time.
template <Lanes L>
void pack_panel_steps(const uint8_t* w, size_t stride, int64_t n_rows, int64_t r0, int np, int64_t s0, int64_t s1,
                      float* dst) {
  const int64_t ld = kPanel * np;
  int64_t s = s0;
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__)
  constexpr size_t kE = L == Lanes::Move32 ? 4 : 2;
  for (int c = 0; c < np; ++c) {
    const int64_t first = r0 + c * kPanel, have = std::min<int64_t>(kPanel, n_rows - first);
    // A part panel (the weight's last) goes through a copy with zero rows below it.
    alignas(64) uint8_t part[kPanel * 16 * 4];
    for (s = s0; s + 16 <= s1; s += 16) {
      float* d = dst + (s - s0) * ld + c * kPanel;
      if (have == kPanel) {
        const uint8_t* b = w + size_t(first) * stride + kE * size_t(s);
        transpose16_store<L>(b, stride, d, ld);
        continue;
      }
      std::memset(part, 0, sizeof(part));
      for (int64_t j = 0; j < have; ++j) std::memcpy(part + j * 16 * kE, w + size_t(first + j) * stride + kE * size_t(s), 16 * kE);
      transpose16_store<L>(part, 16 * kE, d, ld);
    }
  }
#elif defined(__AVX2__)
  for (int c = 0; c < np; ++c)
    for (int h = 0; h < 2; ++h) {
      const uint8_t* rows[8];
      for (int j = 0; j < 8; ++j) {
        const int64_t r = r0 + c * kPanel + h * 8 + j;
        rows[j] = r < n_rows ? w + size_t(r) * stride : nullptr;
      }
      for (s = s0; s + 8 <= s1; s += 8) {
        __m256 v[8];
        for (int j = 0; j < 8; ++j) v[j] = rows[j] ? lanes8<L>(rows[j], s) : _mm256_setzero_ps();
        transpose8_store(v, dst + (s - s0) * ld + c * kPanel + h * 8, ld);
      }
    }
#endif
  for (int64_t j = 0; j < ld; ++j) {  // the lanes past the last whole block (all of them in portable builds)
    const int64_t r = r0 + j;
    for (int64_t t = s; t < s1; ++t) dst[(t - s0) * ld + j] = r < n_rows ? lane_at<L>(w + size_t(r) * stride, t) : 0.0f;
  }
}
#pragma GCC diagnostic pop


// out[r * ldo + c * kPanel + j] for the MR activation rows r (at x + r * ldx) and the NP panels c,
// panel c's step s at pw + c * panel_stride + (s - s0) * step_stride, j < kPanel, the outputs before
// n_out only: steps [s0, s1) of `steps`, the sums before s0 taken from `carry` and, when
// s1 < steps, left there (exactly: a sum is the same whether it waits in a register or in memory;
// decode's instances, kCarry false, take every step at once). Not inlined: decode and prompts
// call different instances, each the same chain per output.
template <class F, int MR, int NP, bool kCarry = true>
__attribute__((noinline)) void panel_tile(const uint8_t* pw, size_t panel_stride, size_t step_stride, const typename F::X* x,
                                          int64_t ldx, int64_t s0, int64_t s1, int64_t steps, typename F::V* carry, float* out,
                                          int64_t ldo, int64_t n_out) {
  typename F::V acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NP; ++c) acc[r][c] = kCarry && s0 > 0 ? carry[r * NP + c] : F::zero();
  const uint8_t* ws = pw;  // step s0
  for (int64_t s = s0; s < s1; ++s, ws += step_stride) {
    typename F::V w[NP];
#pragma GCC unroll 4
    for (int c = 0; c < NP; ++c) {
      w[c] = F::load(ws + size_t(c) * panel_stride);
      F::pin(w[c]);  // loaded once into a register for the MR rows (see decode_order_tile)
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const typename F::XV xb = F::bcast(x + r * ldx, s);
#pragma GCC unroll 4
      for (int c = 0; c < NP; ++c) F::step(acc[r][c], w[c], xb);
    }
  }
  if (kCarry && s1 < steps) {
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NP; ++c) carry[r * NP + c] = acc[r][c];
    return;
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NP; ++c) {
      const int64_t m = std::min<int64_t>(kPanel, n_out - c * kPanel);
      if (m == kPanel) {  // a whole panel straight out (through t, a libc call per tile: 3.7% of a tiny model's prompt)
        F::store(acc[r][c], out + r * ldo + c * kPanel);
        continue;
      }
      alignas(64) float t[kPanel];
      F::store(acc[r][c], t);
      if (m > 0) std::memcpy(out + r * ldo + c * kPanel, t, size_t(m) * sizeof(float));
    }
}

template <class F, int NP, bool kCarry, int... MR>
constexpr auto panel_tiles(std::integer_sequence<int, MR...>) {
  return std::array{&panel_tile<F, MR + 1, NP, kCarry>...};
}
template <class F, int... NP>
constexpr auto decode_tiles(std::integer_sequence<int, NP...>) {
  return std::array{&panel_tile<F, 1, NP + 1, false>...};
}

// Outputs [o0, o1) of one activation row (o0 on a band; o1 too, or the end): a band's panels
// together (each panel's chain waits on its multiply-add's latency; several interleave), or
// with single-panel bands kPanelDecodeNP neighbours at a time.
template <class F>
void panel_matvec(const uint8_t* w, const PanelBands& pb, const typename F::X* x, float* y, int64_t o0, int64_t o1) {
  static constexpr auto kDecode = decode_tiles<F>(std::make_integer_sequence<int, std::max(kPanelNP, kPanelDecodeNP)>{});
  const int64_t p1 = (o1 + kPanel - 1) / kPanel;
  for (int64_t p = o0 / kPanel; p < p1;) {
    int64_t np;
    size_t panel_stride;
    if constexpr (kPanelNP > 1) {
      np = std::min(p1, (p / kPanelNP + 1) * kPanelNP) - p;  // to the band's end
      panel_stride = kPanel * pb.elem;
    } else {
      np = std::min<int64_t>(kPanelDecodeNP, p1 - p);  // single-panel bands, one after another
      panel_stride = kPanel * pb.elem * size_t(pb.steps);
    }
    kDecode[size_t(np - 1)](w + pb.offset(p), panel_stride, pb.step_stride(p), x, 0, 0, pb.steps, pb.steps, nullptr,
                            y + p * kPanel, 0, o1 - p * kPanel);
    p += np;
  }
}

// Steps [s0, s1) of one band of panels: step s0 of its first panel, and the bytes from one panel
// to the next and from one step to the next.
struct BandBlock {
  const uint8_t* pw;
  size_t panel_stride, step_stride;
};

// Every output for the M activation rows (row r at x + r * ldx) of a weight of `rows` rows and
// `steps` steps: its bands of kPanelNP panels spread over the pool; within a band, blocks of
// kPanelKc steps (128 KiB of F32 weights, which stay in L2 while every row group passes), the
// sums carried between blocks. block(b, np, s0, s1) gives band b's (np panels') block, on the
// thread that runs the band.
template <class F, class Block>
void panel_bands_matmul(ThreadPool& pool, int64_t rows, int64_t steps, const typename F::X* x, int64_t ldx, int64_t M,
                        const HostTensor& out, const Block& block) {
  static constexpr auto kFull = panel_tiles<F, kPanelNP, true>(std::make_integer_sequence<int, kPanelMR>{});
  static constexpr auto kOne = panel_tiles<F, 1, true>(std::make_integer_sequence<int, kPanelMR>{});
  const int64_t n_panels = (rows + kPanel - 1) / kPanel, n_bands = (n_panels + kPanelNP - 1) / kPanelNP;
  const int64_t row_groups = (M + kPanelMR - 1) / kPanelMR;
  pool.parallel_for(n_bands, [&](int64_t b0, int64_t b1) {
    // The carried sums: a row group's MR x NP accumulators (the single-panel tiles use MR of them
    // per panel, so a band's panels carry at most that many together).
    thread_local std::vector<typename F::V> carry_store;
    if (steps > kPanelKc) carry_store.resize(size_t(row_groups * kPanelMR * kPanelNP));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t p0 = b * kPanelNP;
      const int np = int(std::min<int64_t>(kPanelNP, n_panels - p0));
      for (int64_t s0 = 0; s0 < steps; s0 += kPanelKc) {
        const int64_t s1 = std::min(steps, s0 + kPanelKc);
        const BandBlock bb = block(b, np, s0, s1);
        for (int64_t r0 = 0, rg = 0; r0 < M; r0 += kPanelMR, ++rg) {
          const int64_t mr = std::min<int64_t>(kPanelMR, M - r0);
          float* o = out.f32() + r0 * out.cols;
          typename F::V* carry = steps > kPanelKc ? carry_store.data() + rg * kPanelMR * kPanelNP : nullptr;
          if (np == kPanelNP) {
            kFull[size_t(mr - 1)](bb.pw, bb.panel_stride, bb.step_stride, x + r0 * ldx, ldx, s0, s1, steps, carry,
                                  o + p0 * kPanel, out.cols, rows - p0 * kPanel);
            continue;
          }
          for (int64_t p = p0; p < p0 + np; ++p)
            kOne[size_t(mr - 1)](bb.pw + size_t(p - p0) * bb.panel_stride, bb.panel_stride, bb.step_stride, x + r0 * ldx, ldx,
                                 s0, s1, steps, carry ? carry + (p - p0) * kPanelMR : nullptr, o + p * kPanel, out.cols,
                                 rows - p * kPanel);
        }
      }
    }
  });
}

// Float weights packed into panels (fast::pack_panels).
template <class F>
void panel_matmul(ThreadPool& pool, const HostTensor& w, const typename F::X* x, int64_t ldx, int64_t M, const HostTensor& out) {
  const PanelBands pb(w.dtype, w.rows, w.cols);
  panel_bands_matmul<F>(pool, w.rows, pb.steps, x, ldx, M, out, [&](int64_t b, int, int64_t s0, int64_t) {
    const size_t step_stride = pb.step_stride(b * kPanelNP);
    return BandBlock{w.data + pb.offset(b * kPanelNP) + size_t(s0) * step_stride, kPanel * pb.elem, step_stride};
  });
}

// Float weights still in the file's layout that the backend will pack (HostTensor::packable),
// before it has: each band's block packed here, once per call, into a buffer of the thread's
// (pack_panel_steps, 4-byte lanes). The same chain per output as the packed panels, so a row's
// bits do not depend on whether the weight was packed yet. F: PanelF32 (F16, BF16 widened) or
// PanelBf16Pairs.
template <class F, Lanes L>
void panel_matmul_file(ThreadPool& pool, const HostTensor& w, int64_t steps, const typename F::X* x, int64_t ldx, int64_t M,
                       const HostTensor& out) {
  const size_t stride = w.row_stride();
  panel_bands_matmul<F>(pool, w.rows, steps, x, ldx, M, out, [&](int64_t b, int np, int64_t s0, int64_t s1) {
    thread_local std::vector<V16> pk_store(size_t(kPanelNP * kPanelKc));
    float* pk = reinterpret_cast<float*>(pk_store.data());
    pack_panel_steps<L>(w.data, stride, w.rows, b * kPanelBandRows, np, s0, s1, pk);
    return BandBlock{reinterpret_cast<const uint8_t*>(pk), size_t(kPanel) * 4, size_t(kPanel) * size_t(np) * 4};
  });
}

// out[0..hd) = the n spans' outputs acc[c], each normalized by its own softmax sum st[c].sum,
// merged (flash-decoding): span c weighs st[c].sum * exp(st[c].max - the largest max), over the
// total of those weights. w: n floats of scratch. Decode rows and prompt rows merge their spans
// through this one body.
__attribute__((noinline)) void merge_spans(int32_t n, const SoftmaxStats* st, const float* const* acc, int32_t hd, float* out,
                                           float* w) {
  float m = -INFINITY, total = 0;
  for (int32_t c = 0; c < n; ++c) m = std::max(m, st[c].max);
  for (int32_t c = 0; c < n; ++c) {
    w[c] = st[c].sum * std::exp(st[c].max - m);
    total += w[c];
  }
  std::fill(out, out + hd, 0.0f);
  for (int32_t c = 0; c < n; ++c) {
    const float wc = w[c] / total;
    for (int32_t d = 0; d < hd; ++d) out[d] = std::fma(wc, acc[c][d], out[d]);
  }
}

}  // namespace

namespace fast {

// ---- Decode: one activation row, run by ranges of weight rows ----

// The activations of a decode step's matvecs, quantized once for every weight that reads them the
// same way (q, k and v share one input, as do gate and up: matmul_many), into buffers that live as
// long as the thread: a 110M step quantizes ~50 times, and fresh buffers each time were a good
// part of its ~670 heap allocations a token. One MatvecInput at a time per thread (a matvec never
// starts another).
struct MatvecInput {
  explicit MatvecInput(const HostTensor& in) : x(in) {}
  const HostTensor& x;
#if defined(__AVX2__)
  struct Kept {
    QuantX x32[2];      // 32-element blocks (fastq::int_dot_for's types), per layout, x32_layout(t)
    QuantX256 x256[3];  // per layout, x256_layout(t)
  };
  static Kept& kept() {
    thread_local Kept k;
    return k;
  }
  bool has_x32[2] = {}, has_x256[3] = {};
#endif
#if defined(__AVX512BF16__)
  std::vector<uint32_t> xbf16;  // BF16 pair words (dot_bf16_pairs)
#endif
};

// Decode work that reads less than this runs on the calling thread: handing a job to the pool and
// waiting for it costs ~1-2 us on a 2-vCPU VM, about what one core takes to stream 64-128 KiB
// from L2 or L3, so splitting it gains little or nothing. Weights this small are a tiny model's,
// cached; attention's K/V threshold is lower since a longer context's cache may come from memory.
// A tiny model's step then stays on one thread (stories260K decode on 2 threads 9.4-10.3k ->
// 19.9-21.9k tok/s, docs/perf.md).
constexpr int64_t kHandoffWeightBytes = 256 << 10, kHandoffKvBytes = 64 << 10;

// out = w · x for one activation row, ready to run over any range of weight rows [o0, o1) (which
// writes out[o0 .. o1)); the activations are converted into `in` first, on the caller's thread. A
// row's result never depends on the range it falls in. A plain struct rather than a closure, so a
// step's ~50 of them need no heap.
struct MatvecPlan {
  enum class Kind { IntRows, KeptPanels, KeptPanelsK, SuperRows, SuperEach, Bf16Pairs, Panels, Fused } kind = Kind::Fused;
  const uint8_t* w = nullptr;
  DType dtype = DType::F32;
  size_t stride = 0;
  int64_t n_in = 0;
  float* y = nullptr;
  const float* xv = nullptr;  // the activations as floats (Fused)
#if defined(__AVX2__)
  fastq::IntDotRows int_rows = nullptr;
  fastq::SuperDotRows super_rows = nullptr;
  fastq::SuperDot super_each = nullptr;
  const QuantX* x32 = nullptr;
  const QuantX256* x256 = nullptr;
#endif
  const uint32_t* xbf16 = nullptr;
  int64_t rows = 0;  // Panels: the weight's rows

  void operator()(int64_t o0, int64_t o1) const {
    switch (kind) {
      case Kind::Panels: {
        const PanelBands pb(dtype, rows, n_in);
        if (dtype == DType::F32) return panel_matvec<PanelF32>(w, pb, xv, y, o0, o1);
        if (dtype == DType::F16) return panel_matvec<PanelHalf<false>>(w, pb, xv, y, o0, o1);
#if defined(__AVX512BF16__)
        if (xbf16) return panel_matvec<PanelBf16Pairs>(w, pb, xbf16, y, o0, o1);
#endif
        return panel_matvec<PanelHalf<true>>(w, pb, xv, y, o0, o1);
      }
#if defined(__AVX2__)
      case Kind::IntRows:
        int_rows(w + size_t(o0) * stride, stride, o1 - o0, x32->q.data(), x32->d.data(), x32->sum.data(), n_in / 32, y + o0);
        return;
      case Kind::KeptPanels:
        fastq::kept_panel_matmul(dtype, w, stride, rows, n_in / 32, o0, o1, x32->q.data(), x32->d.data(), x32->sum.data(), 1,
                                 y, 0);
        return;
      case Kind::KeptPanelsK:
        fastq::kept_panel_matmul_k(dtype, w, stride, rows, n_in / 256, o0, o1, x256->q.data(), x256->d.data(),
                                   x256->sum16.data(), 1, y, 0);
        return;
      case Kind::SuperRows:
        super_rows(w + size_t(o0) * stride, stride, o1 - o0, x256->q.data(), x256->d.data(), x256->sum16.data(), n_in / 256,
                   y + o0);
        return;
      case Kind::SuperEach:
        for (int64_t o = o0; o < o1; ++o)
          super_each(w + size_t(o) * stride, x256->q.data(), x256->d.data(), x256->sum16.data(), n_in / 256, y + o);
        return;
#endif
#if defined(__AVX512BF16__)
      case Kind::Bf16Pairs:
        for (int64_t o = o0; o < o1; ++o) y[o] = dot_bf16_pairs(w + size_t(o) * stride, xbf16, n_in);
        return;
#endif
      default: break;
    }
    // Fused kernels straight from the weight bytes, the bandwidth-bound case.
    std::vector<float> buf;
    for (int64_t o = o0; o < o1; ++o) {
      const uint8_t* wr = w + size_t(o) * stride;
      if (dtype == DType::F32) y[o] = dot_f32(reinterpret_cast<const float*>(wr), xv, n_in);
      else if (dtype == DType::BF16) y[o] = dot_16bit<bf16x32_to_f32, bf16_to_f32>(wr, xv, n_in);
#if defined(__F16C__)
      else if (dtype == DType::F16) y[o] = dot_16bit<half32_to_f32, half_to_float>(wr, xv, n_in);
#endif
      else {
        buf.resize(size_t(n_in));
        row_to_f32(dtype, wr, buf.data(), n_in);
        y[o] = dot_f32(buf.data(), xv, n_in);
      }
    }
  }
};

MatvecPlan prepare_matvec(ThreadPool& pool, const HostTensor& w, const HostTensor& out, MatvecInput& in) {
  const HostTensor& x = in.x;
  MatvecPlan p;
  p.w = w.data;
  p.dtype = w.dtype;
  p.stride = w.row_stride();
  p.n_in = w.cols;
  p.y = out.f32();
  p.xv = x.f32();
#if defined(__AVX2__)
  MatvecInput::Kept& kept = MatvecInput::kept();
  // Quantized activations for the integer kernels, once per layout a step.
  auto x32 = [&](DType t) {
    const int key = fastq::x32_layout(t);
    if (!in.has_x32[key]) quantize_x(pool, x.f32(), 1, p.n_in, key, kept.x32[key]), in.has_x32[key] = true;
    return &kept.x32[key];
  };
  auto x256 = [&](DType t) {
    const int key = fastq::x256_layout(t);
    if (!in.has_x256[key]) quantize_x256(pool, x.f32(), 1, p.n_in, t, kept.x256[key]), in.has_x256[key] = true;
    return &kept.x256[key];
  };
  if (w.panels && kept_panels(w.dtype)) {
    p.rows = w.rows;
    if (dtype_block_elems(w.dtype) == 256) {
      p.kind = MatvecPlan::Kind::KeptPanelsK;
      p.x256 = x256(w.dtype);
    } else {
      p.kind = MatvecPlan::Kind::KeptPanels;
      p.x32 = x32(w.dtype);
    }
    return p;
  }
#endif
  if (w.panels) {
    p.kind = MatvecPlan::Kind::Panels;
    p.rows = w.rows;
#if defined(__AVX512BF16__)
    if (w.dtype == DType::BF16 && panel_layout(w.dtype, w.cols).elem == 4) {  // pair words (see panel_layout)
      if (in.xbf16.empty()) in.xbf16 = rows_to_bf16_pairs(x);
      p.xbf16 = in.xbf16.data();
    }
#endif
    return p;
  }
#if defined(__AVX2__)
  // Quantized weights with an integer kernel against int8 activations (see matmul).
  if (const fastq::IntDotRows kdot = fastq::int_dot_rows_for(w.dtype)) {
    p.kind = MatvecPlan::Kind::IntRows;
    p.int_rows = kdot;
    p.x32 = x32(w.dtype);
    return p;
  }
  if (const fastq::SuperDot sdot = fastq::super_dot_for(w.dtype, 1, p.n_in / 256)) {
    p.x256 = x256(w.dtype);
    p.super_each = sdot;
    p.super_rows = fastq::super_dot_rows_for(w.dtype, p.n_in / 256);
    p.kind = p.super_rows ? MatvecPlan::Kind::SuperRows : MatvecPlan::Kind::SuperEach;
    return p;
  }
#else
  (void)pool;
#endif
#if defined(__AVX512BF16__)
  if (w.dtype == DType::BF16 && p.n_in % 2 == 0) {  // against activations rounded to BF16 (see matmul)
    if (in.xbf16.empty()) in.xbf16 = rows_to_bf16_pairs(x);
    p.kind = MatvecPlan::Kind::Bf16Pairs;
    p.xbf16 = in.xbf16.data();
    return p;
  }
#endif
  return p;
}

// Decode matvecs ws[i], each as its plan fn[i], as one pool job. Each row's result
// is the same in any range (the kernels' unit checks), so the job is shared out by each thread's
// measured speed, in KiB of the concatenated weights (a thread's share is about the bytes its
// speed lets it stream, whatever the types); a row goes with the KiB its first byte is in, and
// ranges are cut at even rows (whole row pairs, which the pair kernels take fastest). Under
// kHandoffWeightBytes in all, the calling thread runs them.
void run_matvecs(ThreadPool& pool, std::span<const HostTensor> ws, std::span<const MatvecPlan> fn) {
  FewOrMany<int64_t, 9> first_byte(ws.size() + 1);  // matrix i's weights at [first_byte[i], first_byte[i + 1])
  first_byte[0] = 0;
  for (size_t i = 0; i < ws.size(); ++i) first_byte[i + 1] = first_byte[i] + ws[i].rows * int64_t(ws[i].row_stride());
  if (first_byte[ws.size()] < kHandoffWeightBytes) {
    for (size_t i = 0; i < ws.size(); ++i) fn[i](0, ws[i].rows);
    return;
  }
  constexpr int64_t kUnit = 1024;
  const int64_t units = (first_byte[ws.size()] + kUnit - 1) / kUnit;
  struct Job {
    std::span<const HostTensor> ws;
    std::span<const MatvecPlan> fn;
    const int64_t* first_byte;
    // The first even row (first row of a band of panels, of a group of kept quant panels) of matrix i
    // at or past byte b of the concatenation.
    int64_t row_at(size_t i, int64_t b) const {
      const int64_t g = !ws[i].panels ? 2 : kept_panels(ws[i].dtype) ? kKeptGroupRows : kPanelBandRows;
      const int64_t s = g * int64_t(ws[i].row_stride());
      return std::clamp(g * ((b - first_byte[i] + s - 1) / s), int64_t(0), ws[i].rows);
    }
  } job{ws, fn, first_byte.data()};
  // The closure holds one pointer, which std::function keeps without a heap allocation.
  pool.parallel_for_balanced(units, [j = &job](int64_t u0, int64_t u1) {
    for (size_t i = 0; i < j->ws.size(); ++i) {
      const int64_t o0 = j->row_at(i, u0 * kUnit), o1 = j->row_at(i, u1 * kUnit);
      if (o0 < o1) j->fn[i](o0, o1);
    }
  });
}

bool kept_panels(DType t) { return fastq::has_kept_panels(t); }

size_t panel_bytes(DType t, int64_t rows, int64_t cols) {
  if (kept_panels(t)) return rows > 0 && cols > 0 && cols % dtype_block_elems(t) == 0 ? size_t(rows) * row_bytes(t, cols) : 0;
  const PanelLayout l = panel_layout(t, cols);
  if (l.elem == 0 || rows <= 0 || cols <= 0) return 0;
  return size_t((rows + kPanel - 1) / kPanel) * size_t(kPanel) * size_t(l.steps) * l.elem;
}

int64_t panel_band_rows() { return kPanelBandRows; }

void pack_panels(ThreadPool& pool, DType t, const uint8_t* src, int64_t rows, int64_t cols, int64_t r0, int64_t r1,
                 uint8_t* dst) {
  const size_t stride = row_bytes(t, cols);
  if (kept_panels(t)) {  // whole groups of kKeptGroupRows; the rows past the last one copied as they are
    static_assert(kPanelBandRows % kKeptGroupRows == 0);
    const int64_t end = std::min(r1, rows), grouped = rows / kKeptGroupRows * kKeptGroupRows;
    if (const int64_t groups = (std::min(end, grouped) - r0 + kKeptGroupRows - 1) / kKeptGroupRows; groups > 0)
      pool.parallel_for(groups, [&](int64_t g0, int64_t g1) {
        fastq::pack_kept_panels(t, src, stride, cols, r0 / kKeptGroupRows + g0, r0 / kKeptGroupRows + g1, dst);
      });
    if (end > grouped) {
      const int64_t from = std::max(r0, grouped);
      std::memcpy(dst + size_t(from) * stride, src + size_t(from) * stride, size_t(end - from) * stride);
    }
    return;
  }
  const PanelBands pb(t, rows, cols);
  // Band by band, step by step: step s is element s of each of the band's rows (zero past the
  // last row). Written in order; the band's rows are read a cache line at a time each.
  auto pack = [&](auto elem, int64_t b0, int64_t b1) {
    using E = decltype(elem);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t width = pb.panels_in(b) * kPanel, have = std::min(width, rows - b * kPanelBandRows);
      const uint8_t* first = src + size_t(b * kPanelBandRows) * stride;
      E* d = reinterpret_cast<E*>(dst + pb.offset(b * kPanelNP));
      for (int64_t s = 0; s < pb.steps; ++s, d += width) {
        const uint8_t* e = first + size_t(s) * sizeof(E);
        for (int64_t i = 0; i < have; ++i, e += stride) std::memcpy(d + i, e, sizeof(E));
        for (int64_t i = have; i < width; ++i) d[i] = E{};
      }
    }
  };
  pool.parallel_for((std::min(r1, rows) - r0 + kPanelBandRows - 1) / kPanelBandRows, [&](int64_t b0, int64_t b1) {
    if (pb.elem == 4) pack(uint32_t{}, r0 / kPanelBandRows + b0, r0 / kPanelBandRows + b1);
    else pack(uint16_t{}, r0 / kPanelBandRows + b0, r0 / kPanelBandRows + b1);
  });
}

bool bf16_rounds_activations() {
#if defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

void matmul(ThreadPool& pool, const HostTensor& w, const HostTensor& x, const HostTensor& out) {
  if (w.packable) {  // float weights to be packed, not yet: the panels' chains, packed per call
    const int64_t steps = panel_layout(w.dtype, w.cols).steps;
    if (w.dtype == DType::F32) return panel_matmul_file<PanelF32, Lanes::Move32>(pool, w, steps, x.f32(), x.cols, x.rows, out);
    if (w.dtype == DType::F16) return panel_matmul_file<PanelF32, Lanes::F16>(pool, w, steps, x.f32(), x.cols, x.rows, out);
#if defined(__AVX512BF16__)
    if (panel_layout(w.dtype, w.cols).elem == 4) {  // pair words (see panel_layout)
      const std::vector<uint32_t> xb = rows_to_bf16_pairs(x, &pool);
      return panel_matmul_file<PanelBf16Pairs, Lanes::Move32>(pool, w, steps, xb.data(), x.cols / 2, x.rows, out);
    }
#endif
    return panel_matmul_file<PanelF32, Lanes::BF16>(pool, w, steps, x.f32(), x.cols, x.rows, out);
  }
  if (x.rows == 1) {
    MatvecInput in(x);
    const MatvecPlan fn = prepare_matvec(pool, w, out, in);
    run_matvecs(pool, std::span<const HostTensor>(&w, 1), std::span<const MatvecPlan>(&fn, 1));
    return;
  }
  const int64_t n_in = w.cols;
  const size_t stride = w.row_stride();
#if defined(__AVX2__)
  if (w.panels && kept_panels(w.dtype)) {  // kept panels (32-element types, K-quants): every token through each group
    auto groups = [&](auto rows) {  // rows(o0, o1) on whole groups of kKeptGroupRows
      pool.parallel_for((w.rows + kKeptGroupRows - 1) / kKeptGroupRows, [&](int64_t g0, int64_t g1) {
        rows(g0 * kKeptGroupRows, std::min(w.rows, g1 * kKeptGroupRows));
      });
    };
    if (dtype_block_elems(w.dtype) == 256) {
      const QuantX256 qx = quantize_x256(pool, x.f32(), x.rows, n_in, w.dtype);
      groups([&](int64_t o0, int64_t o1) {
        fastq::kept_panel_matmul_k(w.dtype, w.data, stride, w.rows, n_in / 256, o0, o1, qx.q.data(), qx.d.data(),
                                   qx.sum16.data(), x.rows, out.f32(), out.cols);
      });
    } else {
      const QuantX qx = quantize_x(pool, x.f32(), x.rows, n_in, fastq::x32_layout(w.dtype));
      groups([&](int64_t o0, int64_t o1) {
        fastq::kept_panel_matmul(w.dtype, w.data, stride, w.rows, n_in / 32, o0, o1, qx.q.data(), qx.d.data(), qx.sum.data(),
                                 x.rows, out.f32(), out.cols);
      });
    }
    return;
  }
#endif
  if (w.panels) {  // float weights packed: the same chain per output at every batch size
    if (w.dtype == DType::F32) return panel_matmul<PanelF32>(pool, w, x.f32(), x.cols, x.rows, out);
    if (w.dtype == DType::F16) return panel_matmul<PanelHalf<false>>(pool, w, x.f32(), x.cols, x.rows, out);
#if defined(__AVX512BF16__)
    if (panel_layout(w.dtype, n_in).elem == 4) {
      const std::vector<uint32_t> xb = rows_to_bf16_pairs(x, &pool);
      return panel_matmul<PanelBf16Pairs>(pool, w, xb.data(), x.cols / 2, x.rows, out);
    }
#endif
    return panel_matmul<PanelHalf<true>>(pool, w, x.f32(), x.cols, x.rows, out);
  }
#if defined(__AVX2__)
  // Quantized weights with an integer kernel: dots against int8-quantized activations at every
  // batch size, so a token's result never depends on the batch or the prompt chunking. Decode
  // reads each weight row once at its packed size; prompts unpack each weight row once per four
  // tokens and keep a block of rows in L1/L2 while every token passes (int8 products, a quarter of
  // the F32 GEMM's bytes; faster than dequantizing panels into the F32 GEMM, docs/perf.md).
  // Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL: activations in 32-element blocks (fastq::int_dot_for).
  if (const fastq::IntDot kdot = fastq::int_dot_for(w.dtype)) {
    const fastq::IntDotBatch kdots[4] = {fastq::int_dot_rows_at_once(w.dtype, 1), fastq::int_dot_rows_at_once(w.dtype, 2),
                                         fastq::int_dot_rows_at_once(w.dtype, 3), fastq::int_dot_rows_at_once(w.dtype, 4)};
    const QuantX qx = quantize_x(pool, x.f32(), x.rows, n_in, fastq::x32_layout(w.dtype));
    const int64_t nb = n_in / 32;
    // Prompts: panels of 16 weight rows against every token (fastq::gemm16, same results per
    // token), the rows past the last whole panel through the row kernels.
    const bool panels = x.rows >= fastq::panel_min_tokens(w.dtype) && fastq::has_gemm16(w.dtype);
    const int32_t* xi = !panels ? nullptr
        : panel_activations(pool, fastq::gemm16_x_words(x.rows, nb), fastq::gemm16_x_passes(x.rows),
                            [&](int64_t p0, int64_t p1, int32_t* to) {
                              fastq::gemm16_x(w.dtype, qx.q.data(), qx.d.data(), qx.sum.data(), x.rows, nb, p0, p1, to);
                            });
    const int64_t first = panels ? in_panel_pairs(pool, w, out, [&](const uint8_t* wp, float* op, int n) {
      fastq::gemm16(w.dtype, wp, stride, nb, qx.q.data(), qx.d.data(), qx.sum.data(), xi, x.rows, op, out.cols, n);
    })
                                 : 0;
    // Without panels: each block of weight rows unpacked once, then every token through it.
    fastq::UnpackRow unpack = nullptr;
    if (const fastq::UnpackedDot4 udot4 = first == 0 && x.rows >= 4 ? fastq::unpacked_dot4_for(w.dtype, &unpack) : nullptr) {
      pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
        constexpr int64_t kRowBlock = 16;
        thread_local std::vector<uint8_t> u;
        u.resize(size_t(kRowBlock * n_in));
        for (int64_t ob = o0; ob < o1; ob += kRowBlock) {
          const int64_t oe = std::min(o1, ob + kRowBlock);
          for (int64_t o = ob; o < oe; ++o) unpack(w.data + size_t(o) * stride, nb, u.data() + (o - ob) * n_in);
          int64_t r = 0;
          for (; r + 4 <= x.rows; r += 4)
            for (int64_t o = ob; o < oe; ++o) {
              float res[4];
              udot4(w.data + size_t(o) * stride, u.data() + (o - ob) * n_in, qx.q.data() + r * n_in, qx.d.data() + r * nb,
                    qx.sum.data() + r * nb, nb, res);
              for (int64_t t = 0; t < 4; ++t) out.f32()[(r + t) * out.cols + o] = res[t];
            }
          for (; r < x.rows; ++r)
            for (int64_t o = ob; o < oe; ++o)
              out.f32()[r * out.cols + o] = kdot(w.data + size_t(o) * stride, qx.q.data() + r * n_in, qx.d.data() + r * nb,
                                                 qx.sum.data() + r * nb, nb);
        }
      });
      return;
    }
    int_matmul(pool, w, x.rows, out, [&](const uint8_t* wr, int64_t r, int64_t tokens, float* res) {
      kdots[tokens - 1](wr, qx.q.data() + r * n_in, qx.d.data() + r * nb, qx.sum.data() + r * nb, nb, res);
    }, first);
    return;
  }
  // The K-quants: activations in 256-element super-blocks with per-16 sums (fastq::super_dot_for),
  // so a super-block's sub-block scales apply in integer arithmetic.
  if (const fastq::SuperDot sdot = fastq::super_dot_for(w.dtype, 1, n_in / 256)) {
    const int64_t nsb = n_in / 256;
    const fastq::SuperDot sdots[4] = {sdot, fastq::super_dot_for(w.dtype, 2, nsb), fastq::super_dot_for(w.dtype, 3, nsb),
                                      fastq::super_dot_for(w.dtype, 4, nsb)};
    const QuantX256 qx = quantize_x256(pool, x.f32(), x.rows, n_in, w.dtype);
    const bool panels = x.rows >= fastq::panel_min_tokens(w.dtype) && fastq::has_gemm16_k(w.dtype);  // as above
    const int32_t* xi = !panels ? nullptr
        : panel_activations(pool, fastq::gemm16k_x_words(w.dtype, x.rows, nsb), fastq::gemm16k_x_passes(w.dtype, x.rows),
                            [&](int64_t p0, int64_t p1, int32_t* to) {
                              fastq::gemm16k_x(w.dtype, qx.q.data(), qx.d.data(), qx.sum16.data(), x.rows, nsb, p0, p1, to);
                            });
    const int64_t first = panels ? in_panel_pairs(pool, w, out, [&](const uint8_t* wp, float* op, int n) {
      fastq::gemm16_k(w.dtype, wp, stride, nsb, qx.q.data(), qx.d.data(), qx.sum16.data(), xi, x.rows, op, out.cols, n);
    })
                                 : 0;
    int_matmul(pool, w, x.rows, out, [&](const uint8_t* wr, int64_t r, int64_t tokens, float* res) {
      sdots[tokens - 1](wr, qx.q.data() + r * n_in, qx.d.data() + r * nsb, qx.sum16.data() + r * 16 * nsb, nsb, res);
    }, first);
    return;
  }
#endif
#if defined(__AVX512BF16__)
  // BF16 weights against activations rounded to BF16: panels for prompts, row dots below 16 rows
  // (each weight row from L1 for every row of x).
  if (w.dtype == DType::BF16 && n_in % 2 == 0) {
    const std::vector<uint32_t> xb = rows_to_bf16_pairs(x, &pool);
    if (x.rows >= kGemmMinRows) {
      pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
        decode_order_gemm<Bf16PairForm>(w, xb.data(), n_in / 2, x.rows, n_in / 2, out, o0, o1);
      });
    } else {
      pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o)
          for (int64_t r = 0; r < x.rows; ++r)
            out.f32()[r * out.cols + o] = dot_bf16_pairs(w.data + size_t(o) * stride, xb.data() + r * n_in / 2, n_in);
      });
    }
    return;
  }
#endif
#if defined(__AVX512F__)
  // Prefill-sized batches of float weights: tiles that sum each output exactly as decode does.
  if (x.rows >= kGemmMinRows && (w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16)) {
    pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
      if (w.dtype == DType::F32) decode_order_gemm<F32Form>(w, x.f32(), x.cols, x.rows, n_in, out, o0, o1);
      else if (w.dtype == DType::F16) decode_order_gemm<HalfForm<half32_to_f32, half_to_float>>(w, x.f32(), x.cols, x.rows, n_in, out, o0, o1);
      else decode_order_gemm<HalfForm<bf16x32_to_f32, bf16_to_f32>>(w, x.f32(), x.cols, x.rows, n_in, out, o0, o1);
    });
    return;
  }
#endif
  // Everything else (float weights without AVX-512; quantized ones without AVX2, whose decode
  // dequantizes a row and takes dot_f32) runs the small-batch dots at every batch size: decode's
  // order, so a row's result never depends on the batch. Each weight row is dequantized once and
  // dotted with every row of x.
  if (x.rows >= 3) {
    // Batches: weight rows as floats (F32 in place, others dequantized per chunk), then 2 x M dots.
    // (Two rows take the per-row fused dots below: measured faster than a 2 x 2 pass.)
    pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
      constexpr int64_t kChunk = 64;  // rows dequantized at a time: stays in L2 with the activations
      std::vector<float> buf;
      std::vector<const float*> rows(static_cast<size_t>(kChunk));
      for (int64_t c0 = o0; c0 < o1; c0 += kChunk) {
        const int64_t c1 = std::min(o1, c0 + kChunk);
        if (w.dtype == DType::F32) {
          for (int64_t o = c0; o < c1; ++o) rows[size_t(o - c0)] = reinterpret_cast<const float*>(w.data + size_t(o) * stride);
        } else {
          buf.resize(size_t((c1 - c0) * n_in));
          for (int64_t o = c0; o < c1; ++o) {
            row_to_f32(w.dtype, w.data + size_t(o) * stride, buf.data() + (o - c0) * n_in, n_in);
            rows[size_t(o - c0)] = buf.data() + (o - c0) * n_in;
          }
        }
        matmul_rows_f32(rows.data(), c0, c1, x, out);
      }
    });
    return;
  }
  // Two rows: each weight row dequantized once (F32 in place) and dotted with both.
  pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
    std::vector<float> buf;
    for (int64_t o = o0; o < o1; ++o) {
      const uint8_t* wr = w.data + size_t(o) * stride;
      const float* wf = reinterpret_cast<const float*>(wr);
      if (w.dtype != DType::F32) {
        buf.resize(size_t(n_in));
        row_to_f32(w.dtype, wr, buf.data(), n_in);
        wf = buf.data();
      }
      for (int64_t r = 0; r < x.rows; ++r) out.f32()[r * out.cols + o] = dot_f32(wf, x.f32() + r * x.cols, n_in);
    }
  });
}

// Several matvecs of one input (decode): one pool job for all of them, so a step waits for the
// threads once per group instead of once per matrix, and the activations are quantized once per
// layout. Batches (prompts) take matmul per weight: their work dwarfs a handoff.
void matmul_many(ThreadPool& pool, const HostTensor& x, std::span<const HostTensor> ws, std::span<const HostTensor> outs) {
  bool each = x.rows != 1;
  for (const HostTensor& w : ws) each = each || w.packable;  // packed per call: one at a time
  if (each) {
    for (size_t i = 0; i < ws.size(); ++i) matmul(pool, ws[i], x, outs[i]);
    return;
  }
  MatvecInput in(x);
  FewOrMany<MatvecPlan, 8> fn(ws.size());
  for (size_t i = 0; i < ws.size(); ++i) fn[i] = prepare_matvec(pool, ws[i], outs[i], in);
  run_matvecs(pool, ws, fn.span());
}

// Multi-row work (prefill chunks, verify rows): (sequence, kv head, range of query rows). Each item
// finds its context's K and V rows once (F16 converted once per item rather than once per query
// row), and every query row of the range is then computed with decode's kernels on decode's
// spans, four queries sharing each K/V load (see the items' loop below).
//
// A lone query row (decode) has nothing to share a gather with. Its work is split by position
// instead: (row, span of kDecodeSpan positions), every head at once, so each K/V cache row is read
// whole and in order (a per-head item would read a 1/n_kv_heads slice of every row, which the
// hardware prefetchers turn into wasted traffic), and a long context spreads over every thread.
// Each span keeps its softmax max and sum; spans are merged afterwards (flash-decoding). A context
// that fits one span is written directly, with the same arithmetic as a whole-row softmax. Spans
// depend only on the row's own context length, so results do not depend on the batch.
void paged_attention(ThreadPool& pool, const HostTensor& q, const HostTensor& kc, const HostTensor& vc,
                     const HostTensor& seqs, const HostTensor& bt, const HostTensor& out,
                     const AttentionParams& p) {
  const auto* info = reinterpret_cast<const SeqInfo*>(seqs.data);
  const int32_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim, n_heads = p.n_heads;
  // The caches' row strides and head sizes in bytes, once: row_bytes is a call into core, and the
  // tile loops below made it per row and per head (2% of a 110M decode step). The caches hold F32
  // or F16 (CpuBackend::supports), so kv head h starts h head sizes into a row.
  const size_t k_stride = kc.row_stride(), v_stride = vc.row_stride();
  const size_t k_head = row_bytes(kc.dtype, hd), v_head = row_bytes(vc.dtype, hd);
  // For the lambdas below that take either cache (always kc or vc itself, never a copy).
  auto stride_of = [&](const HostTensor& c) { return &c == &kc ? k_stride : v_stride; };
  auto off_of = [&](const HostTensor& c, int32_t kvh) { return size_t(kvh) * (&c == &kc ? k_head : v_head); };
  constexpr int32_t kMinItemRows = 8, kDecodeSpan = 512, kTile = kDotTile;
  struct Item {
    int32_t s, kvh, r0, r1;
  };
  struct Span {
    int32_t s, r, t0, t1;
    int32_t part;      // index of its partial result, or -1 when the span is the whole context
    int32_t kv0, kv1;  // the kv heads (and their query heads) this item computes
  };
  struct Merge {
    int32_t s, r, first_part, n_parts;
  };
  std::vector<Item> items;
  std::vector<Span> spans;
  std::vector<Merge> merges;
  int32_t n_parts = 0;
  // Multi-row sequences: each kv head's rows in `ranges` contiguous ranges of about equal work (a
  // row's work grows with its position), enough items for every thread several times over. An
  // item finds (and converts) its context once for all its rows, so the fewer items the less of
  // that: with 32-row items a 1000-token prompt transposed each key 16 times (the fifteenth
  // session's layout), which took more time than the products it fed.
  int32_t prompt_seqs = 0;
  for (int32_t s = 0; s < p.n_seqs; ++s) prompt_seqs += info[s].q_len > 1;
  const int32_t heads_in_prompts = std::max(1, prompt_seqs * p.n_kv_heads);
  const int32_t ranges_wanted = int32_t((4 * int64_t(pool.size()) + heads_in_prompts - 1) / heads_in_prompts);
  for (int32_t s = 0; s < p.n_seqs; ++s) {
    const int32_t n_rows = info[s].q_len, first_pos = info[s].ctx_len - info[s].q_len;
    if (n_rows > 1) {
      const int32_t ranges = std::max(1, std::min(ranges_wanted, n_rows / kMinItemRows));
      // Row r costs first_pos + r + 1 positions; range k ends where the running cost passes k / ranges of it all.
      const double total = double(n_rows) * first_pos + 0.5 * double(n_rows) * (n_rows + 1);
      int32_t r0 = 0;
      double cost = 0;
      for (int32_t k = 1; k <= ranges; ++k) {
        int32_t r1 = r0;
        if (k == ranges) r1 = n_rows;
        else
          while (r1 < n_rows && cost < total * k / ranges) cost += first_pos + ++r1;
        if (r1 > r0)
          for (int32_t kvh = 0; kvh < p.n_kv_heads; ++kvh) items.push_back({s, kvh, r0, r1});
        r0 = r1;
      }
      continue;
    }
    if (n_rows == 1) {
      constexpr int32_t r0 = 0;
      const int32_t len = first_pos + r0 + 1;
      const int32_t lo = p.window > 0 ? std::max(0, len - p.window) : 0;  // sliding window: skip older keys
      if (len - lo <= kDecodeSpan) {
        spans.push_back({s, r0, lo, len, -1, 0, p.n_kv_heads});
        continue;
      }
      merges.push_back({s, r0, n_parts, (len - lo + kDecodeSpan - 1) / kDecodeSpan});
      for (int32_t t0 = lo; t0 < len; t0 += kDecodeSpan)
        spans.push_back({s, r0, t0, std::min(len, t0 + kDecodeSpan), n_parts++, 0, p.n_kv_heads});
    }
  }
  // K and V bytes the spans read: a short context of a small model is read on this thread.
  int64_t span_bytes = 0;
  for (const Span& sp : spans) span_bytes += int64_t(sp.t1 - sp.t0);
  span_bytes *= int64_t(k_stride + v_stride);
  const bool spans_here = span_bytes < kHandoffKvBytes;
  // Spans the threads cannot share evenly enough (one short decode row: a thread idle; 512 + 88
  // positions on two threads) are split by kv head too, into as few parts as bring the busiest
  // thread within kUneven of the mean. Not for less: an item of some kv heads reads part of each
  // cache row, which from memory costs more than a little imbalance (a 1900-token row's four
  // spans split in two on two threads made 1B decode 0.87x; 1000 tokens unsplit, 1.10x). A
  // head's arithmetic is the same whichever item computes it, so results stay batch-independent.
  if (!spans.empty() && !spans_here) {
    constexpr double kUneven = 1.5;
    const int32_t threads = pool.size();
    auto span_cost = [](const Span& sp) { return int64_t(sp.t1 - sp.t0) * (sp.kv1 - sp.kv0); };
    if (balance_in_chunks(spans, threads, span_cost) > kUneven)
      for (int32_t split = 2;; split = std::min(p.n_kv_heads, split * 2)) {
        std::vector<Span> split_spans;
        for (const Span& sp : spans)
          for (int32_t i = 0; i < split; ++i) {
            Span part = sp;
            part.kv0 = p.n_kv_heads * i / split;
            part.kv1 = p.n_kv_heads * (i + 1) / split;
            if (part.kv1 > part.kv0) split_spans.push_back(part);
          }
        if (balance_in_chunks(split_spans, threads, span_cost) <= kUneven || split >= p.n_kv_heads) {
          spans.swap(split_spans);
          break;
        }
      }
  }
  // parallel_for gives each thread an equal count of items; a causal prompt's later row chunks
  // attend to more positions (the last of a 1000-token prompt ~60x the first's work), so in
  // creation order one thread got three quarters of the work.
  balance_by_cost(items, [&](const Item& it) {
    const int64_t first_pos = info[it.s].ctx_len - info[it.s].q_len;
    return int64_t(it.r1 - it.r0) * (first_pos + (it.r0 + it.r1) / 2 + 1);
  });
  // Softmax of a row of raw dot products, with the soft cap cap * tanh(s / cap) on the scaled
  // scores first when the model asks for one.
  auto probs = [&](float* row, int32_t n) {
    if (p.softcap <= 0) return softmax_row(row, n, p.scale);
    for (int32_t t = 0; t < n; ++t) row[t] = p.softcap * std::tanh(row[t] * p.scale / p.softcap);
    return softmax_row(row, n, 1.0f);
  };
#if PAGODA_GROUPED_ATTENTION
  // F32 and F16 caches with whole vector chunks per head: the grouped kernels, reading the cache
  // rows in place (decode) or the gathered rows (prompts).
  const bool grouped = (hd % kSimdW == 0 || (kSimdW == 16 && hd == 8)) && kc.dtype == vc.dtype && (kc.dtype == DType::F32 || kc.dtype == DType::F16);
#endif
  // Per partial, per head: (max, sum) then head_dim accumulators (already divided by sum).
  const size_t part_floats = size_t(n_heads) * size_t(hd + 2);
  std::vector<float> parts(size_t(n_parts) * part_floats);

  // Row `slot` of cache c, kv head kvh, as floats: in place for F32, else converted into tmp.
  auto kv_head_at = [&](const HostTensor& c, int64_t slot, int32_t kvh, float* tmp) -> const float* {
    const uint8_t* r = c.data + size_t(slot) * stride_of(c) + off_of(c, kvh);
    if (c.dtype == DType::F32) return reinterpret_cast<const float*>(r);
    row_to_f32(c.dtype, r, tmp, hd);
    return tmp;
  };
  auto slot_of = [&](const SeqInfo& si, int32_t t) {
    return int64_t(bt.i32()[si.bt_offset + t / p.block_size]) * p.block_size + t % p.block_size;
  };
  auto kv_head = [&](const HostTensor& c, const SeqInfo& si, int32_t t, int32_t kvh, float* tmp) {
    return kv_head_at(c, slot_of(si, t), kvh, tmp);
  };

  if (!spans.empty()) {
    const std::function<void(int64_t, int64_t)> run_spans = [&](int64_t i0, int64_t i1) {
      // F32 caches are read in place; other types convert a tile's rows into kbuf.
      const size_t cols = size_t(p.n_kv_heads) * size_t(hd);
      std::vector<float> kbuf(kc.dtype == DType::F32 && vc.dtype == DType::F32 ? 0 : size_t(kTile) * cols), sc;
      std::vector<float> acc(static_cast<size_t>(n_heads) * size_t(hd));
      std::vector<int64_t> slots;
      const float* rows[kTile];
      const float* base[kTile];
#if PAGODA_GROUPED_ATTENTION
      const uint8_t* raw[kTile];
#if defined(__AVX512F__)
      const uint8_t* next[kTile];  // the next tile's rows (heads of 8)
#endif
      FewOrMany<const float*, 16> qp{size_t(group)};  // the query heads of one kv head
#endif
      // base[j]: the span's kv heads of the cache row of position t + min(j, m - 1), as floats: in
      // place for F32, else the tile's rows converted whole, one row after the other.
      auto tile_rows = [&](const HostTensor& c, const Span& sp, int32_t t, int32_t m) {
        const size_t off = off_of(c, sp.kv0), stride = stride_of(c);
        const int32_t n_cols = (sp.kv1 - sp.kv0) * hd;
        for (int32_t j = 0; j < kTile; ++j) {
          if (j >= m) {
            base[j] = base[m - 1];
            continue;
          }
          const uint8_t* r = c.data + size_t(slots[size_t(t + j)]) * stride + off;
          if (c.dtype == DType::F32) {
            base[j] = reinterpret_cast<const float*>(r);
          } else {
            row_to_f32(c.dtype, r, kbuf.data() + size_t(j) * cols, n_cols);
            base[j] = kbuf.data() + size_t(j) * cols;
          }
        }
      };
      for (int64_t i = i0; i < i1; ++i) {
        const Span& sp = spans[size_t(i)];
        const SeqInfo& si = info[sp.s];
        const int32_t n = sp.t1 - sp.t0;
        // Heads' score rows a cache line apart beyond a multiple of 8: a power-of-two stride would put
        // every head's score for one position in the same L1 set.
        const int64_t ld = (n + 7) / 8 * 8 + 16, row = si.q_start + sp.r;
        sc.resize(size_t(n_heads) * size_t(ld));
        slots.resize(size_t(n));
        for (int32_t t = 0; t < n; ++t) slots[size_t(t)] = slot_of(si, sp.t0 + t);
        const float* qr = q.f32() + row * q.cols;
#if PAGODA_GROUPED_ATTENTION
        constexpr int32_t kAheadTiles = 1;
#endif
#if defined(__AVX512F__)
        // next[j]: the cache rows of the tile after the one at t (as many as the span has left).
        auto next_tile = [&](const uint8_t* data, size_t stride, int32_t t) {
          const int32_t m_next = std::max(0, std::min(kTile, n - t - kTile));
          for (int32_t j = 0; j < m_next; ++j) next[j] = data + size_t(slots[size_t(t + kTile + j)]) * stride;
          return m_next;
        };
#endif
        // Scores, kTile positions at a time, every kv head of the span in those positions' cache
        // rows in turn (each row's heads read in one piece, in order): a tile's keys are converted
        // once for the group's query heads, and each head's kTile dot products reduce together.
        for (int32_t t = 0; t < n; t += kTile) {
          const int32_t m = std::min(kTile, n - t);
#if PAGODA_GROUPED_ATTENTION
          if (grouped) {  // the rows in place, every kv head's group of query heads at once
            for (int32_t j = 0; j < kTile; ++j)  // past the span: the last row again, its score unused
              raw[j] = kc.data + size_t(slots[size_t(t + std::min(j, m - 1))]) * k_stride;
#if defined(__AVX512F__)
            if (hd == 8) {
              const int32_t m_next = next_tile(kc.data, k_stride, t);
              float* o = sc.data() + size_t(t);
              if (kc.dtype == DType::F32) pair_scores8_heads<float>(qr, group, sp.kv0, sp.kv1, raw, next, m_next, k_head, o, ld);
              else pair_scores8_heads<uint16_t>(qr, group, sp.kv0, sp.kv1, raw, next, m_next, k_head, o, ld);
              continue;
            }
#endif
            for (int32_t kvh = sp.kv0; kvh < sp.kv1; ++kvh) {
              const size_t off = size_t(kvh) * k_head;
              if (t + kAheadTiles * kTile < n)
                prefetch_tile(kc.data, k_stride, slots.data() + t + kAheadTiles * kTile, std::min(kTile, n - t - kAheadTiles * kTile), off, k_head);
              float* o = sc.data() + size_t(kvh * group) * size_t(ld) + size_t(t);
              for (int32_t g = 0; g < group; ++g) qp[size_t(g)] = qr + int64_t(kvh * group + g) * hd;
              if (kc.dtype == DType::F32) group_scores_any<float>(qp.data(), group, raw, off, hd, o, ld);
              else group_scores_any<uint16_t>(qp.data(), group, raw, off, hd, o, ld);
            }
            continue;
          }
#endif
          tile_rows(kc, sp, t, m);  // past the span: the last row again, its score unused
          for (int32_t kvh = sp.kv0; kvh < sp.kv1; ++kvh) {
            for (int32_t j = 0; j < kTile; ++j) rows[j] = base[j] + int64_t(kvh - sp.kv0) * hd;
            for (int32_t h = kvh * group; h < (kvh + 1) * group; ++h)
              dots_tile(qr + int64_t(h) * hd, rows, hd, sc.data() + size_t(h) * size_t(ld) + size_t(t));
          }
        }
        float* part = sp.part < 0 ? nullptr : parts.data() + size_t(sp.part) * part_floats;
        for (int32_t h = sp.kv0 * group; h < sp.kv1 * group; ++h) {
          const SoftmaxStats st = probs(sc.data() + size_t(h) * size_t(ld), n);
          if (part) {
            part[2 * h] = st.max;
            part[2 * h + 1] = st.sum;
          }
        }
        const size_t a0 = size_t(sp.kv0) * size_t(group) * size_t(hd), a1 = size_t(sp.kv1) * size_t(group) * size_t(hd);
        std::fill(acc.begin() + ptrdiff_t(a0), acc.begin() + ptrdiff_t(a1), 0.0f);
        // Values, the same tiles: each head's accumulators stay in registers across a tile.
        for (int32_t t = 0; t < n; t += kTile) {
          const int32_t m = std::min(kTile, n - t);
#if PAGODA_GROUPED_ATTENTION
          if (grouped) {
            for (int32_t j = 0; j < m; ++j) raw[j] = vc.data + size_t(slots[size_t(t + j)]) * v_stride;
#if defined(__AVX512F__)
            if (hd == 8) {
              const int32_t m_next = next_tile(vc.data, v_stride, t);
              if (vc.dtype == DType::F32) pair_values8_heads<float>(sc.data() + t, ld, group, sp.kv0, sp.kv1, raw, m, next, m_next, v_head, acc.data());
              else pair_values8_heads<uint16_t>(sc.data() + t, ld, group, sp.kv0, sp.kv1, raw, m, next, m_next, v_head, acc.data());
              continue;
            }
#endif
            for (int32_t kvh = sp.kv0; kvh < sp.kv1; ++kvh) {
              const size_t off = size_t(kvh) * v_head;
              if (t + kAheadTiles * kTile < n)
                prefetch_tile(vc.data, v_stride, slots.data() + t + kAheadTiles * kTile, std::min(kTile, n - t - kAheadTiles * kTile), off, v_head);
              const float* w = sc.data() + size_t(kvh * group) * size_t(ld) + size_t(t);
              float* a = acc.data() + size_t(kvh * group) * size_t(hd);
              if (vc.dtype == DType::F32) group_values_any<float>(w, ld, group, raw, off, m, hd, a);
              else group_values_any<uint16_t>(w, ld, group, raw, off, m, hd, a);
            }
            continue;
          }
#endif
          tile_rows(vc, sp, t, m);
          for (int32_t kvh = sp.kv0; kvh < sp.kv1; ++kvh) {
            for (int32_t j = 0; j < m; ++j) rows[j] = base[j] + int64_t(kvh - sp.kv0) * hd;
            for (int32_t h = kvh * group; h < (kvh + 1) * group; ++h)
              weighted_rows_add(sc.data() + size_t(h) * size_t(ld) + size_t(t), rows, m, hd, acc.data() + size_t(h) * size_t(hd));
          }
        }
        float* dst = part ? part + 2 * n_heads : out.f32() + row * out.cols;
        std::copy(acc.begin() + ptrdiff_t(a0), acc.begin() + ptrdiff_t(a1), dst + a0);
      }
    };
    if (spans_here) run_spans(0, int64_t(spans.size()));
    else pool.parallel_for(int64_t(spans.size()), run_spans);
    // Merge spans: each was normalized by its own sum, so weight it by sum * exp(max - overall max).
    if (!merges.empty()) pool.parallel_for(int64_t(merges.size()), [&](int64_t i0, int64_t i1) {
      std::vector<SoftmaxStats> st;
      std::vector<const float*> acc;
      std::vector<float> w;
      for (int64_t i = i0; i < i1; ++i) {
        const Merge& mg = merges[size_t(i)];
        float* o = out.f32() + (info[mg.s].q_start + mg.r) * out.cols;
        st.resize(size_t(mg.n_parts));
        acc.resize(size_t(mg.n_parts));
        w.resize(size_t(mg.n_parts));
        for (int32_t h = 0; h < n_heads; ++h) {
          for (int32_t c = 0; c < mg.n_parts; ++c) {
            const float* part = parts.data() + size_t(mg.first_part + c) * part_floats;
            st[size_t(c)] = {part[2 * h], part[2 * h + 1]};
            acc[size_t(c)] = part + 2 * n_heads + int64_t(h) * hd;
          }
          merge_spans(mg.n_parts, st.data(), acc.data(), hd, o + int64_t(h) * hd, w.data());
        }
      }
    });
  }
  if (items.empty()) return;

  // Multi-row items. Each query row is computed exactly as decode computes it: the same score and
  // value kernels (one compiled body each), the same spans of kDecodeSpan positions from the same
  // first position, merged by the same merge_spans. So a row's output is the same bits whether it
  // came alone (decode), in a verify pass or in a prompt chunk of any size, and a prefix cache hit
  // or a different chunking cannot change a greedy continuation. What is shared is memory traffic:
  // the item's K/V rows are found (F16 converted) once, and each K and V chunk is loaded once for
  // up to kQueryBlock queries. Sixteen rather than four: each block of queries walks the item's
  // rows again and starts its kernels again (1000-token prompts 1.05-1.1x at heads of 64, 1.1-1.3x
  // at 96 heads of 8, 2000 tokens 1.16-1.43x there; the scores of 16 queries stay in L2).
  pool.parallel_for(int64_t(items.size()), [&](int64_t i0, int64_t i1) {
    constexpr int32_t kQueryBlock = 16;
    std::vector<float> kbuf, vbuf, sc, acc, w;
    std::vector<const float*> krow, vrow, accp;
    std::vector<const uint8_t*> vraw;
    std::vector<SoftmaxStats> st;
    for (int64_t it = i0; it < i1; ++it) {
      const Item& item = items[size_t(it)];
      const SeqInfo& si = info[item.s];
      const int32_t first_pos = si.ctx_len - si.q_len;
      // Query qi of the item: row item.r0 + qi / group, head item.kvh * group + qi % group.
      auto len_of = [&](int32_t qi) { return first_pos + item.r0 + qi / group + 1; };
      auto lo_of = [&](int32_t qi) { return p.window > 0 ? std::max(0, len_of(qi) - p.window) : 0; };
      // Positions [lo0, n_ctx): what any of the item's rows attends to (older keys may have left
      // a sliding window's cache).
      const int32_t lo0 = lo_of(0), n_ctx = first_pos + item.r1, n_g = n_ctx - lo0;
      krow.resize(size_t(n_g));
      vrow.resize(size_t(n_g));
      vraw.resize(size_t(n_g));
      kbuf.resize(kc.dtype == DType::F32 ? 0 : size_t(n_g) * size_t(hd));
      vbuf.resize(vc.dtype == DType::F32 ? 0 : size_t(n_g) * size_t(hd));
      for (int32_t t = 0; t < n_g; ++t) {
        krow[size_t(t)] = kv_head(kc, si, lo0 + t, item.kvh, kbuf.empty() ? nullptr : kbuf.data() + size_t(t) * size_t(hd));
        vrow[size_t(t)] = kv_head(vc, si, lo0 + t, item.kvh, vbuf.empty() ? nullptr : vbuf.data() + size_t(t) * size_t(hd));
        vraw[size_t(t)] = reinterpret_cast<const uint8_t*>(vrow[size_t(t)]);
      }
      const int32_t n_q = (item.r1 - item.r0) * group;
      for (int32_t q0 = 0; q0 < n_q;) {
        // Up to kQueryBlock consecutive queries with the same first position (all of them, but
        // for a sliding window): their spans start together. Their lengths do not decrease.
        const int32_t lo = lo_of(q0);
        int32_t nb = 1;
        while (nb < kQueryBlock && q0 + nb < n_q && lo_of(q0 + nb) == lo) ++nb;
        const float* qv[kQueryBlock];
        float* ov[kQueryBlock];
        int32_t len[kQueryBlock];  // positions from lo
        for (int32_t i = 0; i < nb; ++i) {
          const int32_t qi = q0 + i;
          const int64_t row = si.q_start + item.r0 + qi / group;
          const int32_t h = item.kvh * group + qi % group;
          qv[i] = q.f32() + row * q.cols + int64_t(h) * hd;
          ov[i] = out.f32() + row * out.cols + int64_t(h) * hd;
          len[i] = len_of(qi) - lo;
        }
        const int32_t n_max = len[nb - 1];
        const int64_t ld = (n_max + kTile - 1) / kTile * kTile + 16;  // as decode's score rows
        sc.resize(size_t(kQueryBlock) * size_t(ld));
        // Scores, kTile positions at a time, the last tile padded with its last row as decode's.
        const float* const* kr = krow.data() + (lo - lo0);
        for (int32_t t = 0; t < n_max; t += kTile) {
          const int32_t m = std::min(kTile, n_max - t);
          const float* rows[kTile];
          for (int32_t j = 0; j < kTile; ++j) rows[j] = kr[t + std::min(j, m - 1)];
#if PAGODA_GROUPED_ATTENTION
          if (grouped) {
            const uint8_t* raw[kTile];
            for (int32_t j = 0; j < kTile; ++j) raw[j] = reinterpret_cast<const uint8_t*>(rows[j]);
            group_scores_any<float>(qv, nb, raw, 0, hd, sc.data() + t, ld);
            continue;
          }
#endif
          for (int32_t i = 0; i < nb; ++i) dots_tile(qv[i], rows, hd, sc.data() + size_t(i) * size_t(ld) + size_t(t));
        }
        // Spans of kDecodeSpan positions from lo, as decode cuts them; each query's softmax and
        // weighted values per span, into st[query * n_spans + span] and
        // acc[(span * kQueryBlock + query) * hd] (a span's queries side by side, as the value
        // kernel writes them).
        const int32_t n_spans = (n_max + kDecodeSpan - 1) / kDecodeSpan;
        acc.resize(size_t(n_spans) * kQueryBlock * size_t(hd));
        st.resize(size_t(n_spans) * kQueryBlock);
        for (int32_t k = 0; k < n_spans; ++k) {
          const int32_t t0 = k * kDecodeSpan;
          int32_t first = nb;  // the queries with this span: a suffix of the block
          for (int32_t i = nb - 1; i >= 0 && len[i] > t0; --i) {
            st[size_t(i * n_spans + k)] = probs(sc.data() + size_t(i) * size_t(ld) + size_t(t0), std::min(kDecodeSpan, len[i] - t0));
            first = i;
          }
          float* a = acc.data() + size_t(k * kQueryBlock + first) * size_t(hd);
          std::fill(a, a + size_t(nb - first) * size_t(hd), 0.0f);
#if PAGODA_GROUPED_ATTENTION
          if (grouped) {
            // Rows [0, end of query i) for queries i.. at once, then the next query's further rows:
            // each query's chain over its own rows in order, as decode's.
            for (int32_t i = first, done = 0; i < nb; ++i) {
              const int32_t end = std::min(kDecodeSpan, len[i] - t0);
              if (end > done)
                group_values_any<float>(sc.data() + size_t(i) * size_t(ld) + size_t(t0 + done), ld, nb - i,
                                        vraw.data() + (lo - lo0) + t0 + done, 0, end - done, hd,
                                        a + size_t(i - first) * size_t(hd));
              done = std::max(done, end);
            }
            continue;
          }
#endif
          for (int32_t i = first; i < nb; ++i)
            weighted_rows_add(sc.data() + size_t(i) * size_t(ld) + size_t(t0), vrow.data() + (lo - lo0) + t0,
                              std::min(kDecodeSpan, len[i] - t0), hd, a + size_t(i - first) * size_t(hd));
        }
        for (int32_t i = 0; i < nb; ++i) {
          const int32_t spans_i = (len[i] + kDecodeSpan - 1) / kDecodeSpan;
          if (spans_i == 1) {
            std::copy_n(acc.data() + size_t(i) * size_t(hd), hd, ov[i]);
            continue;
          }
          accp.resize(size_t(spans_i));
          w.resize(size_t(spans_i));
          for (int32_t k = 0; k < spans_i; ++k) accp[size_t(k)] = acc.data() + size_t(k * kQueryBlock + i) * size_t(hd);
          merge_spans(spans_i, st.data() + size_t(i * n_spans), accp.data(), hd, ov[i], w.data());
        }
        q0 += nb;
      }
    }
  });
}

// act(gate) * up, eight lanes at a time through exp8 (the reference calls expf per element on the
// caller's thread alone, the pool's workers asleep meanwhile: a 1000-token prompt ran 1.13-1.31x
// faster without it). A tail
// shorter than eight goes through the same lanes, so each value is the same wherever it falls in
// the tensor and however the pool splits it.
template <typename Act>
void gated_mul(ThreadPool& pool, const HostTensor& gate, const HostTensor& up, const HostTensor& out, Act act) {
  const int64_t n = gate.rows * gate.cols, groups = (n + 7) / 8;
  auto run = [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t i = g * 8, len = std::min<int64_t>(8, n - i);
      v8f gv = {}, uv = {};
      std::memcpy(&gv, gate.f32() + i, size_t(len) * 4);
      std::memcpy(&uv, up.f32() + i, size_t(len) * 4);
      const v8f r = act(gv) * uv;
      std::memcpy(out.f32() + i, &r, size_t(len) * 4);
    }
  };
  if (n < kPoolMinValues) run(0, groups);
  else pool.parallel_for(groups, run);
}

void silu_mul(ThreadPool& pool, const HostTensor& gate, const HostTensor& up, const HostTensor& out) {
  gated_mul(pool, gate, up, out, [](v8f g) { return g / (1.0f + exp8(-g)); });
}

// The reference's form, g * sigmoid(2u) (see ref::gelu_mul).
void gelu_mul(ThreadPool& pool, const HostTensor& gate, const HostTensor& up, const HostTensor& out) {
  gated_mul(pool, gate, up, out, [](v8f g) {
    const v8f u = 0.7978845608028654f * (g + 0.044715f * g * g * g);
    return g / (1.0f + exp8(-2.0f * u));
  });
}

}  // namespace fast
}  // namespace pagoda
