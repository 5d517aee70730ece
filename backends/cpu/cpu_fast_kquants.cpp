// Integer dot products of K-quant weight rows (Q4_K, Q5_K, Q6_K) with activations quantized to
// int8 in 32-element blocks (one float scale each), for matvecs and small batches: the weights
// are read once at their packed size and unpacked in registers, 32 products per maddubs.
// Without AVX2 the callers fall back to dequantize-and-dot (the portable path).
#include "backends/cpu/cpu_fast_quant.h"

#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

// Sum of the 32 int8 activations of a block (for the min term of affine formats).
inline int32_t sum_i8(const int8_t* x) {
  const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), load32(reinterpret_cast<const uint8_t*>(x))),
                                      _mm256_set1_epi16(1));
  const __m128i a = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  const __m128i b = _mm_add_epi32(a, _mm_shuffle_epi32(a, 0x4E));
  return _mm_cvtsi128_si32(_mm_add_epi32(b, _mm_shuffle_epi32(b, 0xB1)));
}

void scale_min(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K / Q5_K: sub-block s (32 elems) = d*sc_s*q - dmin*m_s, q unsigned (4 or 5 bits).
template <bool kFive>
float dot_q45k(const uint8_t* w, const int8_t* qx, const float* dx, int64_t nb) {
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
        scale_min(s, scales, sc, m);
        const __m256 p = _mm256_cvtepi32_ps(dot_u8_i8(q, load32(reinterpret_cast<const uint8_t*>(qx + xb * 32))));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * float(sc) * dx[xb]), p, acc);
        min_acc += dmin * float(m) * dx[xb] * float(sum_i8(qx + xb * 32));
      }
    }
  }
  return hsum8(acc) - min_acc;
}

// Q6_K: 16-element sub-blocks with int8 scales, q - 32 signed: sign trick, then madd by the
// two scales of each 32-element run.
float dot_q6k(const uint8_t* w, const int8_t* qx, const float* dx, int64_t nb) {
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

}  // namespace

IntDot int_dot_for(DType t) {
  switch (t) {
    case DType::Q4_K: return dot_q45k<false>;
    case DType::Q5_K: return dot_q45k<true>;
    case DType::Q6_K: return dot_q6k;
    default: return nullptr;
  }
}
#else
IntDot int_dot_for(DType) { return nullptr; }
#endif

}  // namespace pagoda::fastq
