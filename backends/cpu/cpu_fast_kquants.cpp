// Integer dot products of quantized weight rows with int8 activations, for matvecs and prompts: the
// weights are read once at their packed size and unpacked in registers, 32 products per maddubs.
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL dot against activations quantized in 32-element blocks
// (one float scale each), the scales of eight blocks applied at once as one float vector. The
// K-quants (Q2_K..Q6_K) dot against activations quantized per 256-element super-block (as ggml's
// Q8_K), their sub-block scales applied in integer arithmetic.
// Without AVX2 and F16C the callers fall back to dequantize-and-dot (the portable path).
#include "backends/cpu/cpu_fast_quant.h"

#include <cstring>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_ops.h"
#include "core/util/half.h"

namespace pagoda::fastq {

#if defined(__AVX2__) && defined(__F16C__)
namespace {

float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

inline int32_t hsum8i(__m256i v) {
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  const __m128i t = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 1)));
}

inline float hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

inline __m256i ones16() { return _mm256_set1_epi16(1); }
inline __m256 load8f(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8i_as_f(const int32_t* p) {
  return _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// Eight f16 values `stride` bytes apart (block scales) as floats.
inline __m256 halves8(const uint8_t* p, int stride) {
  uint16_t h[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&h[i], p + i * stride, 2);
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
}
// Any-sign int8 weights times int8 activations: |w| . (x with w's sign).
inline __m256i dot_i8_i8(__m256i w, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones16());
}

// ---- K-quants against activations quantized per 256-element super-block ----
//
// Each super-block's sub-block dots are scaled in integer arithmetic (madd by the int16 scales)
// and summed into one int32 vector, converted to float once per super-block: no horizontal
// reduction per sub-block and no per-sub-block float scaling. The min/offset terms come from the
// activations' per-16 sums (one madd per super-block and activation row).

inline float f16s(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// A matvec streams each weight row once: ask for the kBytes that lie kAheadBytes ahead of w.
template <int kBytes, int kAheadBytes>
inline void prefetch_bytes_ahead(const uint8_t* w) {
  for (int off = 0; off < kBytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(w + kAheadBytes + off), _MM_HINT_T0);
}
// K-quants: the super-block kAhead blocks ahead (16 streamed Q4_K/Q6_K rows at 11-12.5 GB/s on
// one core against 9.5-10 with 4 ahead and 9-9.5 with none).
constexpr int kAhead = 16;
template <int kBytes>
inline void prefetch_ahead(const uint8_t* w) {
  prefetch_bytes_ahead<kBytes, kAhead * kBytes>(w);
}
// The 32-element block types (rows of 0.6-2 KiB) ask 8 KiB ahead per group of eight blocks (Q8_0
// 110M decode: 63-75 tok/s with no prefetch, 85-91 at 4 KiB, 96-103 at 8 KiB, same run; 13-17
// KiB no better).
constexpr int kAheadBytes32 = 8192;

// The eight 16-bit lanes of a 128-bit lane replicated: byte pair (2s, 2s+1) in every int16 lane.
inline __m256i pick16(int s) { return _mm256_set1_epi16(int16_t(((2 * s + 1) << 8) | (2 * s))); }

// The 8 six-bit scales and mins of a Q4_K/Q5_K super-block's 12 scale bytes (at q; 16 bytes are
// read, the block continues past them), as scale_min_k4 defines them, as bytes [sc0..7, m0..7]:
// sc0..3 = low 6 bits of bytes 0..3, m0..3 of bytes 4..7; sc4..7 = low nibbles of bytes 8..11 with
// the top 2 bits of bytes 0..3 above them, m4..7 = high nibbles of bytes 8..11 with the top 2 bits
// of bytes 4..7. (Vector code: the scalar bit-twiddling cost a quarter of the kernel's instructions.)
inline __m128i scales_mins_k4(const uint8_t* q) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x3F));                    // [sc0..3, m0..3]
  const __m128i top = _mm_and_si128(_mm_srli_epi16(v, 2), _mm_set1_epi8(0x30));  // bits 6-7 as 4-5
  const __m128i b8 = _mm_shuffle_epi8(v, _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1));
  // Bytes 0..3: low nibbles of bytes 8..11; bytes 4..7: their high nibbles (16-bit lanes 2, 3).
  const __m128i nib = _mm_and_si128(_mm_blend_epi16(b8, _mm_srli_epi16(b8, 4), 0x0C), _mm_set1_epi8(0x0F));
  return _mm_unpacklo_epi32(lo, _mm_or_si128(nib, top));
}

// The two f16 values at p (d, dmin) as floats in lanes 0 and 1.
inline __m128 halves2(const uint8_t* p) {
  int32_t h;
  std::memcpy(&h, p, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(h));
}

// Q4_K / Q5_K: sub-block s (32 elements) = d*sc_s*q - dmin*m_s, q unsigned (4 or 5 bits).
// T activation rows at once (row t at qx + t * 256 * nsb, its scale at dx + t * nsb, its per-16
// sums at xs + t * 16 * nsb): the weights are unpacked once for all of them, and each row's
// arithmetic is the same whatever T is.
template <bool kFive, int T>
void sdot_q45k(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out) {
  constexpr int kBytes = kFive ? 176 : 144;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb, w += kBytes) {
    if (T == 1) prefetch_ahead<kBytes>(w);
    const __m128i scm = scales_mins_k4(w + 4);
    const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
    const __m256i mins = _mm256_cvtepu8_epi16(  // m_s at lanes 2s, 2s + 1
        _mm_shuffle_epi8(scm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
    const uint8_t* qs = w + (kFive ? 48 : 16);
    const __m256i qh = kFive ? load32(w + 16) : _mm256_setzero_si256();
    __m256i sum[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = load32(qs + 32 * c);
      __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      if (kFive) {  // bit s of qh[l] is the fifth bit of sub-block s: bits 2c and 2c + 1 to bit 4,
        // one shift each (none for bit 4 itself; a 16-bit shift of at most 4 moves bit 4 of each
        // byte from within that byte)
        const __m256i b16 = _mm256_set1_epi8(16);
        const __m256i l5 = c < 2 ? _mm256_slli_epi16(qh, 4 - 2 * c) : c == 2 ? qh : _mm256_srli_epi16(qh, 2);
        const __m256i h5 = c < 2 ? _mm256_slli_epi16(qh, 3 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 3);
        lo = _mm256_or_si256(lo, _mm256_and_si256(l5, b16));
        hi = _mm256_or_si256(hi, _mm256_and_si256(h5, b16));
      }
      const __m256i slo = _mm256_shuffle_epi8(sc, pick16(2 * c)), shi = _mm256_shuffle_epi8(sc, pick16(2 * c + 1));
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const uint8_t* x = reinterpret_cast<const uint8_t*>(qx + t * 256 * nsb + sb * 256 + 64 * c);
        const __m256i a = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(x)), slo);
        const __m256i b = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(x + 32)), shi);
        sum[t] = _mm256_add_epi32(sum[t], _mm256_add_epi32(a, b));
      }
    }
    const __m128 dm = halves2(w);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m128 f = _mm_mul_ps(dm, _mm_set1_ps(dx[t * nsb + sb]));  // d * dx, dmin * dx
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + (t * nsb + sb) * 16));
      acc[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(f), _mm256_cvtepi32_ps(sum[t]), acc[t]);
      acc[t] = _mm256_fnmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(f)), _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bs)), acc[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = hsum8(acc[t]);
}

// Q2_K, Q3_K and Q6_K: sixteen 16-element sub-blocks with their own scales. Each super-block is
// two halves of four 32-element runs; run k of half n holds sub-blocks 8n + 2k (its low 16 bytes)
// and 8n + 2k + 1 (its high 16), so one shuffle of the half's int16 scales gives its madd factors.
// Weights are unpacked to unsigned bytes q'; the value is d * sc * (q' - kOff) (Q6_K: 32, Q3_K: 4),
// the offset taken as kOff * sum(sc * xs) once per super-block; Q2_K has mins instead (- dmin * m).
template <DType kType>
struct K16 {
  static constexpr int kBytes = kType == DType::Q6_K ? 210 : kType == DType::Q3_K ? 110 : 84;
  static constexpr int kOffShift = kType == DType::Q6_K ? 5 : kType == DType::Q3_K ? 2 : -1;  // log2 kOff
};

// Q3_K's sixteen 6-bit scales (stored + 32) as signed int16: low nibbles in bytes 0..7 (scales
// 0..7 low, 8..15 high nibbles), the top two bits of scale i in byte 8 + i % 4 at bit 2 * (i / 4).
inline __m256i scales_q3k(const uint8_t* s) {
  uint64_t a;
  uint32_t c;
  std::memcpy(&a, s, 8);
  std::memcpy(&c, s + 8, 4);
  const uint64_t nib = 0x0F0F0F0F0F0F0F0Full;
  const uint64_t two = 0x03030303u;
  const uint64_t hi0 = (c & two) | ((uint64_t(c >> 2) & two) << 32), hi1 = ((c >> 4) & two) | ((uint64_t(c >> 6) & two) << 32);
  const uint64_t lo8 = (a & nib) | (hi0 << 4), hi8 = ((a >> 4) & nib) | (hi1 << 4);
  const __m128i u = _mm_sub_epi8(_mm_set_epi64x(int64_t(hi8), int64_t(lo8)), _mm_set1_epi8(32));
  return _mm256_cvtepi8_epi16(u);
}

template <DType kType, int T>
void sdot_k16(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out) {
  constexpr int kBytes = K16<kType>::kBytes, kShift = K16<kType>::kOffShift;
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
  const __m256i hi2 = _mm256_set1_epi8(0x30);
  // Run k: int16 scale 2k of the half in the low 128 bits, 2k + 1 in the high.
  __m256i pick[4];
  for (int k = 0; k < 4; ++k) pick[k] = _mm256_set_m128i(_mm256_castsi256_si128(pick16(2 * k + 1)), _mm256_castsi256_si128(pick16(2 * k)));
  __m256 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb, w += kBytes) {
    if (T == 1) prefetch_ahead<kBytes>(w);
    __m256i sc16, mins = _mm256_setzero_si256();
    float d, dmin = 0;
    if constexpr (kType == DType::Q6_K) {
      sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192)));
      d = f16s(w + 208);
    } else if constexpr (kType == DType::Q3_K) {
      sc16 = scales_q3k(w + 96);
      d = f16s(w + 108);
    } else {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
      sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(0x0F)));
      mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)));
      d = f16s(w + 80);
      dmin = f16s(w + 82);
    }
    __m256i sum[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
    __m256i hm = _mm256_setzero_si256();
    if constexpr (kType == DType::Q3_K) hm = load32(w);
#pragma GCC unroll 2
    for (int n = 0; n < 2; ++n) {
      const __m256i sch = n ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
      __m256i l0, l1 = _mm256_setzero_si256(), qh = _mm256_setzero_si256();
      if constexpr (kType == DType::Q6_K) {
        l0 = load32(w + 64 * n);
        l1 = load32(w + 64 * n + 32);
        qh = load32(w + 128 + 32 * n);
      } else {
        l0 = load32(w + (kType == DType::Q3_K ? 32 : 16) + 32 * n);
      }
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        __m256i q;
        if constexpr (kType == DType::Q6_K) {
          const __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16((k & 1) ? l1 : l0, 4) : ((k & 1) ? l1 : l0), low4);
          // Bits 2k, 2k + 1 of each qh byte to bits 4, 5: one shift (none for k = 2) and a mask
          // (bits a 16-bit shift carries in from the neighbouring byte land outside 0x30).
          const __m256i top = k < 2 ? _mm256_slli_epi16(qh, 4 - 2 * k) : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
          q = _mm256_or_si256(lo, _mm256_and_si256(top, hi2));
        } else {
          q = _mm256_and_si256(_mm256_srli_epi16(l0, 2 * k), three);
          if constexpr (kType == DType::Q3_K) {  // hmask bit 4n + k set: + 4 (the value is q' - 4)
            const int bit = 4 * n + k;
            const __m256i h = bit >= 2 ? _mm256_srli_epi16(hm, bit - 2) : _mm256_slli_epi16(hm, 2 - bit);
            q = _mm256_or_si256(q, _mm256_and_si256(h, four));
          }
        }
        const __m256i scales = _mm256_shuffle_epi8(sch, pick[k]);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + t * 256 * nsb + sb * 256 + 128 * n + 32 * k));
          sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), scales));
        }
      }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const float dxt = dx[t * nsb + sb];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + (t * nsb + sb) * 16));
      if constexpr (kShift >= 0) sum[t] = _mm256_sub_epi32(sum[t], _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), kShift));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * dxt), _mm256_cvtepi32_ps(sum[t]), acc[t]);
      if constexpr (kType == DType::Q2_K)
        acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * dxt), _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bs)), acc[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = hsum8(acc[t]);
}

template <DType kType, int T>
void sdot(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out) {
  if constexpr (kType == DType::Q4_K) sdot_q45k<false, T>(w, qx, dx, xs, nsb, out);
  else if constexpr (kType == DType::Q5_K) sdot_q45k<true, T>(w, qx, dx, xs, nsb, out);
  else sdot_k16<kType, T>(w, qx, dx, xs, nsb, out);
}

// The 32 bits of a Q5 block's qh as 32 bytes: 0x10 where the element's fifth bit is set.
inline __m256i fifth_bits(const uint8_t* qh_bytes) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  // Byte j takes byte j/8 of qh, then tests bit j%8.
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(qh)),
                                             _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
}

// Nibbles of 16 bytes as 32 bytes: low nibbles (elements 0..15) then high (16..31).
inline __m256i nibbles(const uint8_t* q) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

// Rows of 32-element blocks of kBytes, f16 scale d first. Per block `unpack` gives the 32 weights
// as bytes. kOff >= 0: unsigned q with x = d*(q - kOff) (Q8_0 has no offset but any sign, kOff =
// -1 takes the sign trick); kMin: x = d*q + m (f16 m after d). Eight blocks are reduced together
// and scaled as one vector; the offset and min terms use the activation block sums xs.
// T activation rows at once, as for dot_q45k.
template <int kBytes, int kOff, bool kMin, int T, typename Unpack>
void dot_blocks32(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out,
                  Unpack unpack) {
  __m256 acc[T], macc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = macc[t] = _mm256_setzero_ps();
  // The block's dots with every row: p[t] for row t.
  auto block = [&](const uint8_t* wb, int64_t b, __m256i* p) {
    const __m256i q = unpack(wb);
    const __m256i aq = kOff < 0 ? _mm256_sign_epi8(q, q) : q;
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + t * 32 * nb + b * 32));
      p[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, kOff < 0 ? _mm256_sign_epi8(xv, q) : xv), ones16());
    }
  };
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8, w += 8 * kBytes) {
    if (T == 1) prefetch_bytes_ahead<8 * kBytes, kAheadBytes32>(w);
    // Lane s of a row's sum is the sum of the eight int32 lanes of block s's dot, reduced by a
    // tree of hadds folded as the blocks come: two blocks' dots are hadd-ed at once and a quad's
    // two pairs right after, so a row holds at most three partial vectors (with four rows, the
    // 4 x 8 block dots of an unfolded tree did not fit in 16 registers and went through the stack).
    __m256i quad[2][T];
    #pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m256i pair[T];
      #pragma GCC unroll 2
      for (int i = 0; i < 2; ++i) {
        __m256i p0[T], p1[T];
        block(w + (4 * h + 2 * i) * kBytes, b + 4 * h + 2 * i, p0);
        block(w + (4 * h + 2 * i + 1) * kBytes, b + 4 * h + 2 * i + 1, p1);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i two = _mm256_hadd_epi32(p0[t], p1[t]);
          if (i == 0) pair[t] = two;
          else quad[h][t] = _mm256_hadd_epi32(pair[t], two);
        }
      }
    }
    const __m256 d = halves8(w, kBytes);
    const __m256 m = kMin ? halves8(w + 2, kBytes) : _mm256_setzero_ps();
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      // quad[0]'s low 128 bits hold blocks 0..3 summed over lanes 0..3, its high bits over lanes
      // 4..7; quad[1] the same for blocks 4..7.
      __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(quad[0][t], quad[1][t], 0x20),
                                   _mm256_permute2x128_si256(quad[0][t], quad[1][t], 0x31));
      const __m256i xsv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + t * nb + b));
      if (kOff > 0) s = _mm256_sub_epi32(s, _mm256_mullo_epi32(xsv, _mm256_set1_epi32(kOff)));
      const __m256 dxv = load8f(dx + t * nb + b);
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dxv), _mm256_cvtepi32_ps(s), acc[t]);
      if (kMin) macc[t] = _mm256_fmadd_ps(_mm256_mul_ps(m, dxv), _mm256_cvtepi32_ps(xsv), macc[t]);
    }
  }
  float tail[T] = {};
  for (; b < nb; ++b, w += kBytes) {
    __m256i p[T];
    block(w, b, p);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      int32_t s = hsum8i(p[t]);
      if (kOff > 0) s -= kOff * xs[t * nb + b];
      tail[t] += f16(w) * dx[t * nb + b] * float(s);
      if (kMin) tail[t] += f16(w + 2) * dx[t * nb + b] * float(xs[t * nb + b]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = hsum8(_mm256_add_ps(acc[t], macc[t])) + tail[t];
}

inline __m256i unpack_q8_0(const uint8_t* b) { return load32(b + 2); }
inline __m256i unpack_q4_0(const uint8_t* b) { return nibbles(b + 2); }
inline __m256i unpack_q4_1(const uint8_t* b) { return nibbles(b + 4); }
inline __m256i unpack_q5_0(const uint8_t* b) { return _mm256_or_si256(nibbles(b + 6), fifth_bits(b + 2)); }
inline __m256i unpack_q5_1(const uint8_t* b) { return _mm256_or_si256(nibbles(b + 8), fifth_bits(b + 4)); }
inline __m256i unpack_iq4_nl(const uint8_t* b) {
  const __m256i table = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
  return _mm256_shuffle_epi8(table, nibbles(b + 2));
}

// The kernels of one type for 1 and for 4 activation rows.
template <int T>
void dot_type(DType type, const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out) {
  switch (type) {
    case DType::Q8_0: return dot_blocks32<34, -1, false, T>(w, qx, dx, xs, nb, out, [](const uint8_t* b) { return unpack_q8_0(b); });
    case DType::Q4_0: return dot_blocks32<18, 8, false, T>(w, qx, dx, xs, nb, out, [](const uint8_t* b) { return unpack_q4_0(b); });
    case DType::Q4_1: return dot_blocks32<20, 0, true, T>(w, qx, dx, xs, nb, out, [](const uint8_t* b) { return unpack_q4_1(b); });
    case DType::Q5_0: return dot_blocks32<22, 16, false, T>(w, qx, dx, xs, nb, out, [](const uint8_t* b) { return unpack_q5_0(b); });
    case DType::Q5_1: return dot_blocks32<24, 0, true, T>(w, qx, dx, xs, nb, out, [](const uint8_t* b) { return unpack_q5_1(b); });
    case DType::IQ4_NL: return dot_blocks32<18, -1, false, T>(w, qx, dx, xs, nb, out, [](const uint8_t* b) { return unpack_iq4_nl(b); });
    default: return;
  }
}

template <DType kType, int T>
void dot_t(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out) {
  dot_type<T>(kType, w, qx, dx, xs, nb, out);
}

template <DType kType>
float dot_1(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb) {
  float r;
  dot_type<1>(kType, w, qx, dx, xs, nb, &r);
  return r;
}

}  // namespace

IntDot int_dot_for(DType t) {
  switch (t) {
#define PAGODA_INT_DOT(T) case DType::T: return dot_1<DType::T>;
    PAGODA_INT_DOT(Q8_0) PAGODA_INT_DOT(Q4_0) PAGODA_INT_DOT(Q4_1) PAGODA_INT_DOT(Q5_0) PAGODA_INT_DOT(Q5_1)
    PAGODA_INT_DOT(IQ4_NL)
#undef PAGODA_INT_DOT
    default: return nullptr;
  }
}

IntDot4 int_dot4_for(DType t) {
  switch (t) {
#define PAGODA_INT_DOT(T) case DType::T: return dot_t<DType::T, 4>;
    PAGODA_INT_DOT(Q8_0) PAGODA_INT_DOT(Q4_0) PAGODA_INT_DOT(Q4_1) PAGODA_INT_DOT(Q5_0) PAGODA_INT_DOT(Q5_1)
    PAGODA_INT_DOT(IQ4_NL)
#undef PAGODA_INT_DOT
    default: return nullptr;
  }
}
SuperDot super_dot_for(DType t, int rows) {
  switch (t) {
#define PAGODA_SUPER_DOT(T) case DType::T: return rows == 4 ? sdot<DType::T, 4> : sdot<DType::T, 1>;
    PAGODA_SUPER_DOT(Q2_K) PAGODA_SUPER_DOT(Q3_K) PAGODA_SUPER_DOT(Q4_K) PAGODA_SUPER_DOT(Q5_K) PAGODA_SUPER_DOT(Q6_K)
#undef PAGODA_SUPER_DOT
    default: return nullptr;
  }
}

void quantize_x256(const float* x, int64_t sb0, int64_t sb1, int8_t* q, float* d, int16_t* sums) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t sb = sb0; sb < sb1; ++sb) {
    const float* xb = x + sb * 256;
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 32; ++i) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * i)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float dd = _mm_cvtss_f32(h) / 127.0f, id = dd > 0 ? 1.0f / dd : 0.0f;
    d[sb] = dd;
    const __m256 idv = _mm256_set1_ps(id);
    for (int g = 0; g < 8; ++g) {
      __m256i v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 32 * g + 8 * i), idv));
      // packs interleave the 128-bit halves: dword j of the packed bytes holds v[j % 4] half j / 4.
      const __m256i packed = _mm256_permutevar8x32_epi32(
          _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3])), order);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + sb * 256 + 32 * g), packed);
      // Per 128-bit lane (16 elements): four int32 partial sums, then their total.
      __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), packed), _mm256_set1_epi16(1));
      s = _mm256_hadd_epi32(s, s);
      s = _mm256_hadd_epi32(s, s);
      sums[sb * 16 + 2 * g] = int16_t(_mm_cvtsi128_si32(_mm256_castsi256_si128(s)));
      sums[sb * 16 + 2 * g + 1] = int16_t(_mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1)));
    }
  }
}
#else
IntDot int_dot_for(DType) { return nullptr; }
IntDot4 int_dot4_for(DType) { return nullptr; }
SuperDot super_dot_for(DType, int) { return nullptr; }
void quantize_x256(const float*, int64_t, int64_t, int8_t*, float*, int16_t*) {}
#endif

}  // namespace pagoda::fastq
