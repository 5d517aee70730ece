// Integer dot products of weight rows (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_0, Q5_1, IQ4_NL) with
// activations quantized to int8 in 32-element blocks (one float scale each), for matvecs and small
// batches: the weights are read once at their packed size and unpacked in registers, 32 products
// per maddubs, and the scales of eight blocks are applied at once as one float vector.
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

// Lane s of the result is the sum of the eight int32 lanes of p[s]: eight blocks' integer dots
// reduced at once, so their scales are applied as one float vector (no per-block scalar work).
inline __m256i sum8x8(const __m256i p[8]) {
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
  // a's low 128 bits hold s0..s3 summed over lanes 0..3, its high bits over lanes 4..7; b: s4..s7.
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
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

// The 8 six-bit scales (sc) and mins (m) of a Q4_K/Q5_K super-block's 12 scale bytes, as scale_min_k4
// defines them, unpacked four at a time in 32-bit words: sc[0..3] = low 6 bits of bytes 0..3,
// m[0..3] of bytes 4..7; sc[4..7] = low nibbles of bytes 8..11 with the top 2 bits of bytes 0..3
// above them, m[4..7] = high nibbles of bytes 8..11 with the top 2 bits of bytes 4..7.
inline void scales_mins_k4(const uint8_t* q, __m256& sc, __m256& m) {
  uint32_t a, b, c;
  std::memcpy(&a, q, 4);
  std::memcpy(&b, q + 4, 4);
  std::memcpy(&c, q + 8, 4);
  const uint32_t six = 0x3F3F3F3Fu, nib = 0x0F0F0F0Fu, two = 0x03030303u;
  const uint64_t sc8 = uint64_t(a & six) | uint64_t((c & nib) | (((a >> 6) & two) << 4)) << 32;
  const uint64_t m8 = uint64_t(b & six) | uint64_t(((c >> 4) & nib) | (((b >> 6) & two) << 4)) << 32;
  sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(sc8))));
  m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(m8))));
}

// Q4_K / Q5_K: sub-block s (32 elems) = d*sc_s*q - dmin*m_s, q unsigned (4 or 5 bits). The eight
// sub-blocks of a super-block are the eight activation blocks xb..xb+7: their integer dots are
// reduced together and scaled by d * sc * dx in one vector, the mins by dmin * m * dx * xs.
// T activation rows at once (row t at qx + t * 32 * nb, its scales and sums at t * nb): the
// weights are unpacked once for all of them; each row's arithmetic is the same whatever T is.
template <bool kFive, int T>
void dot_q45k(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out) {
  constexpr int kBytes = kFive ? 176 : 144;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[T], macc[T];
  for (int t = 0; t < T; ++t) acc[t] = macc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += kBytes) {
    const uint8_t* qs = w + (kFive ? 48 : 16);
    __m256i qh = kFive ? load32(w + 16) : _mm256_setzero_si256();
    __m256i p[T][8];
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = load32(qs + 32 * c);
      __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      if (kFive) {  // bit s of qh[l] is the fifth bit of sub-block s: move bits 0 and 1 to bit 4
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), _mm256_set1_epi8(16)));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), _mm256_set1_epi8(16)));
        qh = _mm256_srli_epi16(qh, 2);
      }
      for (int t = 0; t < T; ++t) {
        const uint8_t* x = reinterpret_cast<const uint8_t*>(qx + t * 32 * nb + sb * 256 + 64 * c);
        p[t][2 * c] = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(x)), ones16());
        p[t][2 * c + 1] = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(x + 32)), ones16());
      }
    }
    __m256 sc, m;
    scales_mins_k4(w + 4, sc, m);
    const __m256 dsc = _mm256_mul_ps(_mm256_set1_ps(f16(w)), sc), dm = _mm256_mul_ps(_mm256_set1_ps(f16(w + 2)), m);
    for (int t = 0; t < T; ++t) {
      const __m256 dxv = load8f(dx + t * nb + sb * 8);
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dsc, dxv), _mm256_cvtepi32_ps(sum8x8(p[t])), acc[t]);
      macc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dm, dxv), load8i_as_f(xs + t * nb + sb * 8), macc[t]);
    }
  }
  for (int t = 0; t < T; ++t) out[t] = hsum8(_mm256_sub_ps(acc[t], macc[t]));
}

// Q6_K: 16-element sub-blocks with int8 scales, q - 32 signed: sign trick, then madd by the two
// scales of each 32-element run (picked from the super-block's 16 scales by one shuffle); the
// eight runs, which are activation blocks xb..xb+7, are reduced together and scaled by d * dx.
template <int T>
void dot_q6k(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t*, int64_t nb, float* out) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
  // Run k (of four per 128-element half): int16 scale 2k in the low 128 bits, 2k + 1 in the high.
  __m256i pick[4];
  for (int k = 0; k < 4; ++k) {
    const char a = char(4 * k), b = char(4 * k + 2);
    pick[k] = _mm256_setr_epi8(a, char(a + 1), a, char(a + 1), a, char(a + 1), a, char(a + 1), a, char(a + 1), a,
                               char(a + 1), a, char(a + 1), a, char(a + 1), b, char(b + 1), b, char(b + 1), b,
                               char(b + 1), b, char(b + 1), b, char(b + 1), b, char(b + 1), b, char(b + 1), b, char(b + 1));
  }
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += 210) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192)));
    __m256i p[T][8];
    for (int half = 0; half < 2; ++half) {
      const __m256i qh = load32(w + 128 + 32 * half);
      const __m256i sch = half ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
      const __m256i l0 = load32(w + 64 * half), l1 = load32(w + 64 * half + 32);
      for (int k = 0; k < 4; ++k) {
        const __m256i lraw = (k & 1) ? l1 : l0;
        const __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(lraw, 4) : lraw, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), three);
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), off);
        const __m256i aq = _mm256_sign_epi8(q, q), scales = _mm256_shuffle_epi8(sch, pick[k]);
        for (int t = 0; t < T; ++t) {
          const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + t * 32 * nb + sb * 256 + 128 * half + 32 * k));
          p[t][4 * half + k] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(xv, q)), scales);
        }
      }
    }
    const __m256 d = _mm256_set1_ps(f16(w + 208));
    for (int t = 0; t < T; ++t)
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, load8f(dx + t * nb + sb * 8)), _mm256_cvtepi32_ps(sum8x8(p[t])), acc[t]);
  }
  for (int t = 0; t < T; ++t) out[t] = hsum8(acc[t]);
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
  for (int t = 0; t < T; ++t) acc[t] = macc[t] = _mm256_setzero_ps();
  // The block's dots with every row: p[t] for row t.
  auto block = [&](const uint8_t* wb, int64_t b, __m256i* p, int stride) {
    const __m256i q = unpack(wb);
    const __m256i aq = kOff < 0 ? _mm256_sign_epi8(q, q) : q;
    for (int t = 0; t < T; ++t) {
      const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + t * 32 * nb + b * 32));
      p[t * stride] = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, kOff < 0 ? _mm256_sign_epi8(xv, q) : xv), ones16());
    }
  };
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8, w += 8 * kBytes) {
    __m256i p[T][8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) block(w + i * kBytes, b + i, &p[0][i], 8);
    const __m256 d = halves8(w, kBytes);
    const __m256 m = kMin ? halves8(w + 2, kBytes) : _mm256_setzero_ps();
    for (int t = 0; t < T; ++t) {
      __m256i s = sum8x8(p[t]);
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
    block(w, b, p, 1);
    for (int t = 0; t < T; ++t) {
      int32_t s = hsum8i(p[t]);
      if (kOff > 0) s -= kOff * xs[t * nb + b];
      tail[t] += f16(w) * dx[t * nb + b] * float(s);
      if (kMin) tail[t] += f16(w + 2) * dx[t * nb + b] * float(xs[t * nb + b]);
    }
  }
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
    case DType::Q4_K: return dot_q45k<false, T>(w, qx, dx, xs, nb, out);
    case DType::Q5_K: return dot_q45k<true, T>(w, qx, dx, xs, nb, out);
    case DType::Q6_K: return dot_q6k<T>(w, qx, dx, xs, nb, out);
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
    PAGODA_INT_DOT(IQ4_NL) PAGODA_INT_DOT(Q4_K) PAGODA_INT_DOT(Q5_K) PAGODA_INT_DOT(Q6_K)
#undef PAGODA_INT_DOT
    default: return nullptr;
  }
}

IntDot4 int_dot4_for(DType t) {
  switch (t) {
#define PAGODA_INT_DOT(T) case DType::T: return dot_t<DType::T, 4>;
    PAGODA_INT_DOT(Q8_0) PAGODA_INT_DOT(Q4_0) PAGODA_INT_DOT(Q4_1) PAGODA_INT_DOT(Q5_0) PAGODA_INT_DOT(Q5_1)
    PAGODA_INT_DOT(IQ4_NL) PAGODA_INT_DOT(Q4_K) PAGODA_INT_DOT(Q5_K) PAGODA_INT_DOT(Q6_K)
#undef PAGODA_INT_DOT
    default: return nullptr;
  }
}
#else
IntDot int_dot_for(DType) { return nullptr; }
IntDot4 int_dot4_for(DType) { return nullptr; }
#endif

}  // namespace pagoda::fastq
