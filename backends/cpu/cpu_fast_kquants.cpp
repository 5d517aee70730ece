// Integer dot products of weight rows (Q4_K, Q5_K, Q6_K, Q4_1, Q5_0, Q5_1, IQ4_NL) with activations quantized to
// int8 in 32-element blocks (one float scale each), for matvecs and small batches: the weights
// are read once at their packed size and unpacked in registers, 32 products per maddubs.
// Without AVX2 the callers fall back to dequantize-and-dot (the portable path).
#include "backends/cpu/cpu_fast_quant.h"

#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_ops.h"
#include "core/util/half.h"

namespace pagoda::fastq {

#if defined(__AVX2__)
namespace {

float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// 32 unsigned weights (< 128) times 32 int8 activations -> 8 int32 sums of four products each.
inline __m256i dot_u8_i8(__m256i w, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

inline float hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// Q4_K / Q5_K: sub-block s (32 elems) = d*sc_s*q - dmin*m_s, q unsigned (4 or 5 bits).
template <bool kFive>
float dot_q45k(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb) {
  constexpr int kBytes = kFive ? 176 : 144;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float min_acc = 0;
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += kBytes) {
    const float d = f16(w), dmin = f16(w + 2);
    const uint8_t* scales = w + 4;
    const uint8_t* qs = w + (kFive ? 48 : 16);
    const __m256i qh = kFive ? load32(w + 16) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = load32(qs + 32 * c);
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * c + h, xb = int(sb * 8) + s;
        __m256i q = _mm256_and_si256(h ? _mm256_srli_epi16(raw, 4) : raw, low4);
        if (kFive) {  // bit s of qh[l] is the fifth bit: move it to bit 4
          const __m256i bit = _mm256_and_si256(qh, _mm256_set1_epi8(char(1 << s)));
          q = _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(bit, _mm256_set1_epi8(char(1 << s))),
                                                  _mm256_set1_epi8(16)));
        }
        int sc, m;
        scale_min_k4(s, scales, sc, m);
        const __m256 p = _mm256_cvtepi32_ps(dot_u8_i8(q, load32(reinterpret_cast<const uint8_t*>(qx + xb * 32))));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * float(sc) * dx[xb]), p, acc);
        min_acc += dmin * float(m) * dx[xb] * float(xs[xb]);
      }
    }
  }
  return hsum8(acc) - min_acc;
}

// Q6_K: 16-element sub-blocks with int8 scales, q - 32 signed: sign trick, then madd by the
// two scales of each 32-element run.
float dot_q6k(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t*, int64_t nb) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += 210) {
    const float d = f16(w + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(w + 192);
    for (int half = 0; half < 2; ++half) {
      const __m256i qh = load32(w + 128 + 32 * half);
      for (int k = 0; k < 4; ++k) {
        const __m256i lraw = load32(w + 64 * half + 32 * (k & 1));
        const __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(lraw, 4) : lraw, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), three);
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), off);
        const int xb = int(sb * 8) + 4 * half + k;
        const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + xb * 32));
        const __m256i prod16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xv, q));
        const int s0 = sc[8 * half + 2 * k], s1 = sc[8 * half + 2 * k + 1];
        const __m256i scales = _mm256_setr_epi16(short(s0), short(s0), short(s0), short(s0), short(s0), short(s0),
                                                 short(s0), short(s0), short(s1), short(s1), short(s1), short(s1),
                                                 short(s1), short(s1), short(s1), short(s1));
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(prod16, scales));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dx[xb]), p, acc);
      }
    }
  }
  return hsum8(acc);
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

// 32-element blocks. kMin: block = d*q + m (Q4_1, Q5_1) with q unsigned; otherwise q is made
// signed by `signed_q` (Q5_0: minus 16; IQ4_NL: the non-linear table) and dotted with the sign trick.
template <int kBytes, bool kMin, int kQs, int kQh, typename Signed>
float dot_blocks32(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, Signed signed_q) {
  __m256 acc = _mm256_setzero_ps();
  float min_acc = 0;
  for (int64_t b = 0; b < nb; ++b, w += kBytes) {
    __m256i q = nibbles(w + kQs);
    if (kQh >= 0) q = _mm256_or_si256(q, fifth_bits(w + kQh));
    const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + b * 32));
    __m256i dot;
    if (kMin) {
      dot = dot_u8_i8(q, xv);
      min_acc += f16(w + 2) * dx[b] * float(xs[b]);
    } else {
      const __m256i sq = signed_q(q);
      dot = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(sq, sq), _mm256_sign_epi8(xv, sq)), _mm256_set1_epi16(1));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w) * dx[b]), _mm256_cvtepi32_ps(dot), acc);
  }
  return hsum8(acc) + min_acc;
}

float dot_q4_1(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb) {
  return dot_blocks32<20, true, 4, -1>(w, qx, dx, xs, nb, [](__m256i q) { return q; });
}
float dot_q5_1(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb) {
  return dot_blocks32<24, true, 8, 4>(w, qx, dx, xs, nb, [](__m256i q) { return q; });
}
float dot_q5_0(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb) {
  return dot_blocks32<22, false, 6, 2>(w, qx, dx, xs, nb, [](__m256i q) { return _mm256_sub_epi8(q, _mm256_set1_epi8(16)); });
}
float dot_iq4_nl(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb) {
  const __m256i table = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
  return dot_blocks32<18, false, 2, -1>(w, qx, dx, xs, nb, [&](__m256i q) { return _mm256_shuffle_epi8(table, q); });
}

}  // namespace

IntDot int_dot_for(DType t) {
  switch (t) {
    case DType::Q4_K: return dot_q45k<false>;
    case DType::Q5_K: return dot_q45k<true>;
    case DType::Q6_K: return dot_q6k;
    case DType::Q4_1: return dot_q4_1;
    case DType::Q5_0: return dot_q5_0;
    case DType::Q5_1: return dot_q5_1;
    case DType::IQ4_NL: return dot_iq4_nl;
    default: return nullptr;
  }
}
#else
IntDot int_dot_for(DType) { return nullptr; }
#endif

}  // namespace pagoda::fastq
