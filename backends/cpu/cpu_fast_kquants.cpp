// Integer dot products of quantized weight rows with int8 activations, for matvecs and prompts: the
// weights are read once at their packed size and unpacked in registers, 32 products per maddubs (or VNNI's vpdpbusd).
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL dot against activations quantized in 32-element blocks
// (one float scale each), the scales of eight blocks applied at once as one float vector. The
// K-quants (Q2_K..Q6_K) dot against activations quantized per 256-element super-block (as ggml's
// Q8_K), their sub-block scales applied in integer arithmetic.
// Without AVX2 and F16C the callers fall back to dequantize-and-dot (the portable path).
#include "backends/cpu/cpu_fast_quant.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif
// 512-bit kernels where the build targets AVX-512 BW and VL with VNNI (Ice Lake, Zen 4 and later).
#if defined(__AVX2__) && defined(__F16C__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define PAGODA_AVX512_VNNI 1
#else
#define PAGODA_AVX512_VNNI 0
#endif
// Byte permutes across a whole 512-bit register and bit shuffles into masks (Ice Lake, Zen 4 and later).
#if PAGODA_AVX512_VNNI && defined(__AVX512VBMI__) && defined(__AVX512BITALG__)
#define PAGODA_AVX512_VBMI 1
#else
#define PAGODA_AVX512_VBMI 0
#endif

#include "backends/cpu/cpu_ops.h"
#include "core/util/half.h"

namespace pagoda::fastq {

namespace {
// The order of a super-block's 32-element sub-blocks in quantize_x256's output for the 512-bit
// Q4_K / Q5_K kernels (chunk c holds sub-block kPairedOrder[c]; the order is its own inverse).
constexpr int kPairedOrder[8] = {0, 2, 1, 3, 4, 6, 5, 7};
constexpr bool x256_paired(DType t) { return PAGODA_AVX512_VNNI && (t == DType::Q4_K || t == DType::Q5_K); }
// The chunk that holds 32-element sub-block g (< 8) of a super-block.
constexpr int x256_chunk(DType t, int g) { return x256_paired(t) ? kPairedOrder[g] : g; }
}  // namespace

#if defined(__AVX2__) && defined(__F16C__)
namespace {

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
// The 16-bit words at(0) .. at(kN - 1) (kN <= 8) in one register, zeros past, inserted one by one.
// (Copied into an array and loaded as one vector, the load waits for the stores to reach the
// cache: a store-forwarding stall per call.)
template <int kN, typename At>
inline __m128i words(At at) {
  static_assert(kN >= 1 && kN <= 8);
  auto word = [&](int i) { uint16_t v; std::memcpy(&v, at(i), 2); return int(v); };
  __m128i h = _mm_cvtsi32_si128(word(0));
  if constexpr (kN > 1) h = _mm_insert_epi16(h, word(1), 1);
  if constexpr (kN > 2) h = _mm_insert_epi16(h, word(2), 2);
  if constexpr (kN > 3) h = _mm_insert_epi16(h, word(3), 3);
  if constexpr (kN > 4) h = _mm_insert_epi16(h, word(4), 4);
  if constexpr (kN > 5) h = _mm_insert_epi16(h, word(5), 5);
  if constexpr (kN > 6) h = _mm_insert_epi16(h, word(6), 6);
  if constexpr (kN > 7) h = _mm_insert_epi16(h, word(7), 7);
  return h;
}
// Eight f16 values `stride` bytes apart (block scales) as floats.
inline __m256 halves8(const uint8_t* p, int stride) {
  return _mm256_cvtph_ps(words<8>([&](int i) { return p + i * stride; }));
}
// Eight consecutive f16 values (a panel's scales) as floats.
inline __m256 halves8(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
// The integer steps every kernel here is made of. With VNNI (AVX512-VNNI with VL, or AVX-VNNI)
// each is one instruction; without, the AVX2 sequence computes the same sums, because callers keep
// every int16 pair sum of maddubs below its saturation (unsigned weights of at most 6 bits, or the
// |w| . sign(x, w) form with |x| <= 127).
// acc + the sums of four u8 x s8 products per int32 lane.
inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones16()));
#endif
}
// acc + the sums of int16 pairs of a times b per int32 lane (madd).
inline __m256i madd_add(__m256i acc, __m256i a, __m256i b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(acc, a, b);
#elif defined(__AVXVNNI__)
  return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
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
// K-quants: the super-block kAhead blocks ahead. On an AVX2 VM (20-30 GB/s) 16 ahead streamed
// Q4_K/Q6_K rows at 11-12.5 GB/s on one core against 9.5-10 with 4 and 9-9.5 with none; on a
// Zen 5 VM (45-60 GB/s, 512-bit kernels) 1B-shape Q4_K decode read 73-79 tok/s with 16 ahead,
// 76-78 with 32, 82-89 with 48 and 76-90 with 64 (alternating runs, docs/perf.md).
constexpr int kAhead = 48;
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
// Byte s of each 128-bit lane in every int16 lane, zero-extended.
inline __m256i pick_byte(int s) { return _mm256_set1_epi16(int16_t(0x8000 | s)); }
// Run k of a Q2_K/Q3_K/Q6_K half (sub-blocks 2k and 2k + 1, see K16): int16 scale 2k of the half
// in the low 128 bits, 2k + 1 in the high.
inline __m256i pick_run16(int k) {
  return _mm256_set_m128i(_mm256_castsi256_si128(pick16(2 * k + 1)), _mm256_castsi256_si128(pick16(2 * k)));
}
// The same from scale bytes (Q2_K's row kernel, q2k_bytes): byte 2k zero-extended in the low 128
// bits, byte 2k + 1 in the high.
inline __m256i pick_run_byte(int k) {
  return _mm256_set_m128i(_mm256_castsi256_si128(pick_byte(2 * k + 1)), _mm256_castsi256_si128(pick_byte(2 * k)));
}

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

// The eight mins of scales_mins_k4's result as int16, m_s at lanes 2s and 2s + 1 (against the
// activations' per-16 sums).
// (scm2: scales_mins_k4's bytes in both 128-bit lanes; one vpshufb, no widening.)
inline __m256i mins_k4(__m256i scm2) {
  return _mm256_shuffle_epi8(scm2, _mm256_setr_epi8(8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128, 11, -128, 11, -128, 12,
                                                    -128, 12, -128, 13, -128, 13, -128, 14, -128, 14, -128, 15, -128, 15, -128));
}

// The two f16 values at p (d, dmin) as floats in lanes 0 and 1.
inline __m128 halves2(const uint8_t* p) {
  int32_t h;
  std::memcpy(&h, p, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(h));
}

// The K-quant row kernels' exact form, one super-block of one activation row: its dot lanes sum
// and min lanes mv (zero where the type has none) reduced to the exact integers E and M, then lane
// 0 of acc takes d*dx*E and lane 1 dmin*dx*M (dm: [d, dmin, 0, 0]). The panels (panel8k_tokens)
// repeat these float steps with a weight row per lane.
inline __m128 exact_step(__m128 acc, __m256i sum, __m256i mv, __m128 dm, float dx) {
  const __m256i part = _mm256_hadd_epi32(sum, mv);  // [e01 e23 m01 m23 | e45 e67 m45 m67]
  const __m128i q = _mm_add_epi32(_mm256_castsi256_si128(part), _mm256_extracti128_si256(part, 1));
  const __m128 em = _mm_cvtepi32_ps(_mm_hadd_epi32(q, q));  // [E, M, E, M]
  return _mm_fmadd_ps(_mm_mul_ps(dm, _mm_set1_ps(dx)), em, acc);
}
// A row's result from exact_step's chains: d*dx*E less dmin*dx*M.
inline float exact_result(__m128 acc) { return _mm_cvtss_f32(_mm_sub_ss(acc, _mm_movehdup_ps(acc))); }

// Chunk c (< 4) of a Q4_K / Q5_K super-block (packed nibbles at qs, Q5_K's 32 fifth-bit bytes qh):
// sub-block 2c (the low nibbles) in lo, 2c + 1 (the high ones) in hi, as unsigned quants.
template <bool kFive>
inline void q45k_chunk(const uint8_t* qs, __m256i qh, int c, __m256i& lo, __m256i& hi) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i raw = load32(qs + 32 * c);
  lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
  if (kFive) {  // bit s of qh[l] is the fifth bit of sub-block s: bits 2c and 2c + 1 to bit 4, one
    // shift each (none for bit 4 itself; a 16-bit shift of at most 4 moves bit 4 of each byte
    // from within that byte)
    const __m256i b16 = _mm256_set1_epi8(16);
    const __m256i l5 = c < 2 ? _mm256_slli_epi16(qh, 4 - 2 * c) : c == 2 ? qh : _mm256_srli_epi16(qh, 2);
    const __m256i h5 = c < 2 ? _mm256_slli_epi16(qh, 3 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 3);
    lo = _mm256_or_si256(lo, _mm256_and_si256(l5, b16));
    hi = _mm256_or_si256(hi, _mm256_and_si256(h5, b16));
  }
}

// Q4_K / Q5_K: sub-block s (32 elements) = d*sc_s*q - dmin*m_s, q unsigned (4 or 5 bits).
// T activation rows at once (row t at qx + t * 256 * nsb, its scale at dx + t * nsb, its per-16
// sums at xs + t * 16 * nsb): the weights are unpacked once for all of them, and each row's
// arithmetic is the same whatever T is.
// Exact form: each super-block reduced to exact integers, its scaled dot E and its min term M,
// and the float terms accumulated in two chains, d*dx*E and dmin*dx*M, their difference the
// result; gemm16_k's 8-row panels (panel8k_tokens) reach the same integers with a weight row per
// lane and repeat the float steps, so prompts get the bits of decode. (Until the thirtieth session
// each super-block's 8 lanes were scaled in float and reduced once a row, a form no panel can
// repeat: 1.03-1.06x this one from L2. Four super-blocks reduced together in four classes, as the
// 512-bit kernels do, ran at 0.85x: a long tail of dependent shuffles per group.)
// A super-block's float step runs after the next one's integer work: its reduction, conversion
// and multiply-add then find their inputs ready instead of holding the out-of-order window behind
// a 20-cycle chain (the same order of float operations, so the same bits; from L2 Q4_K 28.2 ->
// 30.5 Gweights/s, one thread streaming from memory 14.1 -> 15.4 GB/s, docs/perf.md).
template <bool kFive, int T>
void sdot_q45k(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out) {
  constexpr int kBytes = kFive ? 176 : 144;
  __m128 acc[T];  // exact_step's chains
  __m256i psum[T], pmv[T];  // the previous super-block's integers, stepped after this one's (see below)
  __m128 pdm = _mm_setzero_ps();
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps(), psum[t] = pmv[t] = _mm256_setzero_si256();
  for (int64_t sb = 0; sb < nsb; ++sb, w += kBytes) {
    if (T == 1) prefetch_ahead<kBytes>(w);
    // The scale and min bytes in both lanes: a chunk's vpshufb picks its scales as int16 from
    // bytes (pick_byte), with no vpmovzxbw on the shuffle ports first.
    const __m256i sc = _mm256_broadcastsi128_si256(scales_mins_k4(w + 4));
    const uint8_t* qs = w + (kFive ? 48 : 16);
    const __m256i qh = kFive ? load32(w + 16) : _mm256_setzero_si256();
    __m256i sum[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      __m256i lo, hi;
      q45k_chunk<kFive>(qs, qh, c, lo, hi);
      const __m256i slo = _mm256_shuffle_epi8(sc, pick_byte(2 * c)), shi = _mm256_shuffle_epi8(sc, pick_byte(2 * c + 1));
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const uint8_t* x = reinterpret_cast<const uint8_t*>(qx + t * 256 * nsb + sb * 256 + 64 * c);
        sum[t] = madd_add(sum[t], _mm256_maddubs_epi16(lo, load32(x)), slo);
        sum[t] = madd_add(sum[t], _mm256_maddubs_epi16(hi, load32(x + 32)), shi);
      }
    }
    const __m256i mins = mins_k4(sc);
    const __m128 dm = halves2(w);  // [d, dmin, 0, 0]
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if (sb > 0) acc[t] = exact_step(acc[t], psum[t], pmv[t], pdm, dx[t * nsb + sb - 1]);
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + (t * nsb + sb) * 16));
      psum[t] = sum[t], pmv[t] = _mm256_madd_epi16(mins, bs);
    }
    pdm = dm;
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = nsb > 0 ? exact_result(exact_step(acc[t], psum[t], pmv[t], pdm, dx[t * nsb + nsb - 1])) : 0.0f;
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

// A Q2_K, Q3_K or Q6_K super-block's sixteen sub-block scales as int16, [d, dmin, 0, 0] as floats
// and (Q2_K) its sixteen mins (zero for the others, as their dmin).
struct K16Header {
  __m256i sc16, mins;
  __m128 dm;
};
// One f16 at p as [f, 0, 0, 0].
inline __m128 half_lane0(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(h));
}
template <DType kType>
inline K16Header k16_header(const uint8_t* w) {
  if constexpr (kType == DType::Q6_K)
    return {_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192))), _mm256_setzero_si256(),
            half_lane0(w + 208)};
  else if constexpr (kType == DType::Q3_K)
    return {scales_q3k(w + 96), _mm256_setzero_si256(), half_lane0(w + 108)};
  else {  // d and dmin side by side at 80: one conversion
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    return {_mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(0x0F))),
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F))), halves2(w + 80)};
  }
}

// Run k of half n of a Q2_K, Q3_K or Q6_K super-block at w as unsigned quants q' (Q3_K's high-bit
// mask hm = its first 32 bytes, zero for the others).
template <DType kType>
inline __m256i k16_run(const uint8_t* w, __m256i hm, int n, int k) {
  if constexpr (kType == DType::Q6_K) {
    const __m256i l = load32(w + 64 * n + 32 * (k & 1)), qh = load32(w + 128 + 32 * n);
    const __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(l, 4) : l, _mm256_set1_epi8(0x0F));
    // Bits 2k, 2k + 1 of each qh byte to bits 4, 5: one shift (none for k = 2) and a mask (bits a
    // 16-bit shift carries in from the neighbouring byte land outside 0x30).
    const __m256i top = k < 2 ? _mm256_slli_epi16(qh, 4 - 2 * k) : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(top, _mm256_set1_epi8(0x30)));
  } else {
    const __m256i l = load32(w + (kType == DType::Q3_K ? 32 : 16) + 32 * n);
    __m256i q = _mm256_and_si256(_mm256_srli_epi16(l, 2 * k), _mm256_set1_epi8(3));
    if constexpr (kType == DType::Q3_K) {  // hmask bit 4n + k set: + 4 (the value is q' - 4)
      const int bit = 4 * n + k;
      const __m256i h = bit >= 2 ? _mm256_srli_epi16(hm, bit - 2) : _mm256_slli_epi16(hm, 2 - bit);
      q = _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(4)));
    }
    return q;
  }
}

// The row kernel's Q2_K header: the sixteen 4-bit scales as bytes in both 128-bit lanes, so that
// one vpshufb (pick_run_byte) gives a run's int16 factors with no widening first (two vpmovzxbw and
// two vperm2i128 a super-block, on the two shuffle ports that bound this kernel: from L2 29 -> 31
// Gweights/s, docs/perf.md); its sixteen mins as int16 and [d, dmin, 0, 0]. (Q3_K the same way,
// its signed scales placed in the high byte, ran no faster; Q6_K's int8 scales times 256 would
// overflow the sums.)
struct Q2KBytes {
  __m256i scales, mins;
  __m128 dm;
};
inline Q2KBytes q2k_bytes(const uint8_t* w) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  // int16 lane j of the low 128 bits takes byte j, of the high 128 bits byte 8 + j
  const __m256i widen = _mm256_setr_epi8(0, -128, 1, -128, 2, -128, 3, -128, 4, -128, 5, -128, 6, -128, 7, -128, 8, -128, 9,
                                         -128, 10, -128, 11, -128, 12, -128, 13, -128, 14, -128, 15, -128);
  return {_mm256_and_si256(v, low4), _mm256_shuffle_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), widen), halves2(w + 80)};
}

// Exact form, as sdot_q45k's: E = the scaled dot less the offset (Q2_K: M = its min term), two
// float chains, each super-block's step after the next one's integer work; gemm16_k's 8-row
// panels (panel8k_tokens), AVX2's kept panels (kept_k16_1) and AVX-512's (kept16_k16_tokens) repeat it.
template <DType kType, int T>
void sdot_k16(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out) {
  constexpr int kBytes = K16<kType>::kBytes, kShift = K16<kType>::kOffShift;
  constexpr bool kQ2 = kType == DType::Q2_K;
  __m256i pick[4];
  for (int k = 0; k < 4; ++k) pick[k] = kQ2 ? pick_run_byte(k) : pick_run16(k);
  __m128 acc[T];  // exact_step's chains
  __m256i psum[T], pmv[T];  // the previous super-block's integers, stepped after this one's (see below)
  __m128 pdm = _mm_setzero_ps();
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps(), psum[t] = pmv[t] = _mm256_setzero_si256();
  for (int64_t sb = 0; sb < nsb; ++sb, w += kBytes) {
    if (T == 1) prefetch_ahead<kBytes>(w);
    // Q2_K's scales as bytes (q2k_bytes; half 1's moved down 8 bytes), the others' widened
    __m256i sc, mins;
    __m128 dm;
    if constexpr (kQ2) {
      const Q2KBytes b = q2k_bytes(w);
      sc = b.scales, mins = b.mins, dm = b.dm;
    } else {
      const K16Header h = k16_header<kType>(w);
      sc = h.sc16, mins = h.mins, dm = h.dm;
    }
    __m256i sum[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sum[t] = _mm256_setzero_si256();
    const __m256i hm = kType == DType::Q3_K ? load32(w) : _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int n = 0; n < 2; ++n) {
      const __m256i sch = kQ2 ? (n ? _mm256_srli_si256(sc, 8) : sc)
                              : n ? _mm256_permute2x128_si256(sc, sc, 0x11) : _mm256_permute2x128_si256(sc, sc, 0x00);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m256i q = k16_run<kType>(w, hm, n, k);
        const __m256i scales = _mm256_shuffle_epi8(sch, pick[k]);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + t * 256 * nsb + sb * 256 + 128 * n + 32 * k));
          sum[t] = madd_add(sum[t], _mm256_maddubs_epi16(q, xv), scales);
        }
      }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + (t * nsb + sb) * 16));
      if constexpr (kShift >= 0) sum[t] = _mm256_sub_epi32(sum[t], _mm256_slli_epi32(_mm256_madd_epi16(sc, bs), kShift));
      if (sb > 0) acc[t] = exact_step(acc[t], psum[t], pmv[t], pdm, dx[t * nsb + sb - 1]);
      psum[t] = sum[t], pmv[t] = kQ2 ? _mm256_madd_epi16(mins, bs) : _mm256_setzero_si256();
    }
    pdm = dm;
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = nsb > 0 ? exact_result(exact_step(acc[t], psum[t], pmv[t], pdm, dx[t * nsb + nsb - 1])) : 0.0f;
}

#if PAGODA_AVX512_VNNI
// GCC 12's AVX-512 intrinsics start many results from _mm512_undefined_*(), which its flow
// analysis reports as uninitialized once inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// ---- The same K-quant dots in 512-bit registers (AVX-512 BW + VNNI) ----
//
// A 512-bit register holds 64 weights, so one unpack, one maddubs and one vpdpwssd cover two
// sub-blocks: half the instructions of the 256-bit kernels, which bound a matvec on a core that
// executes 512-bit operations at full width (one thread streamed Q4_K at 20 GB/s through the
// 256-bit kernel, about what it can read). Each row's arithmetic is again independent of T.

inline __m512i load64(const uint8_t* p) { return _mm512_loadu_si512(p); }
// 32 bytes at lo in the low half, 32 at hi in the high half. Also a 64-byte load where such loads
// at odd strides would span two cache lines (see blocks16_nib).
inline __m512i load_halves(const uint8_t* lo, const uint8_t* hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load32(lo)), load32(hi), 1);
}
// The same, held in a register for the two nibble planes made from it. GCC otherwise folds the
// load into both instructions, and weights at 144-, 176- or 210-byte strides mostly straddle two
// cache lines, so each folded copy costs two of the core's load slots. (One Q4_K super-block
// from L1: 11.8-11.9 cycles, was 11.8-12.6 depending on the activations' alignment.)
inline __m512i load64_once(const uint8_t* p) {
  __m512i v = load64(p);
  __asm__("" : "+v"(v));
  return v;
}
// a | (b & m), one vpternlog.
inline __m512i or_and(__m512i a, __m512i b, __m512i m) { return _mm512_ternarylogic_epi32(a, b, m, 0xF8); }
// 16-bit lanes: shift counts (or any int16) a in the low 256 bits, b in the high.
inline __m512i halves16(int16_t a, int16_t b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(a)), _mm256_set1_epi16(b), 1);
}

// The sum of the 16 lanes in a fixed tree: lane l + lane l + 8, then l + 4, then (0 + 2) + (1 + 3)
// (the order of GCC's _mm512_reduce_add_ps, spelled out so no other library changes it).
inline float reduce16(__m512 a) {
  const __m256 v = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  const __m128 w = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  return (_mm_cvtss_f32(w) + _mm_cvtss_f32(_mm_movehl_ps(w, w))) +
         (_mm_cvtss_f32(_mm_shuffle_ps(w, w, 1)) + _mm_cvtss_f32(_mm_shuffle_ps(w, w, 3)));
}

// The 512-bit Q4_K, Q5_K and Q6_K kernels take the exact form below at every row width and batch
// size, so a prompt's tokens can go through gemm16_k's panels and still get, bit for bit, what a
// decode step computes for them. (Until the fifteenth session rows under 2048 weights took a
// cheaper "lane form", each super-block's 16 lanes scaled in float and reduced once a row, and so
// kept the row kernels for prompts: 768-wide prompts ran at a third of the panels' rate. Two rows a
// pass made the exact form as fast on Q4_K, docs/perf.md.)

// The row kernels reduce each super-block to exact integers (the scaled dot, the min or offset
// term) and accumulate their float terms in four accumulators, super-block sb in sb % 4, so that
// gemm16_k can repeat the float arithmetic with a row per lane. The reductions are batched by four
// super-blocks: the four 16-lane dot vectors and four 8-lane min vectors become the eight totals
// by 128-bit shuffles, in-lane adds and one permute (about 5 instructions a super-block where a
// reduction each cost about 16).
struct Totals4 {
  __m128 e, m;  // per super-block of the group: the dot total and the min total, as floats
};
// 128-bit quarters q0..q3 of a and b: [a.q0 + a.q2, a.q1 + a.q3, b.q0 + b.q2, b.q1 + b.q3].
inline __m512i quarters_folded(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, 0x44), _mm512_shuffle_i32x4(a, b, 0xEE));
}
// [a.q0 + a.q1, a.q2 + a.q3, b.q0 + b.q1, b.q2 + b.q3].
inline __m512i quarters_paired(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD));
}
inline Totals4 totals4(const __m512i* s, const __m256i* mv) {
  // Quarter k of c: super-block k's four partial sums; of cm: its min sums.
  const __m512i c = quarters_paired(quarters_folded(s[0], s[1]), quarters_folded(s[2], s[3]));
  const __m512i cm = quarters_paired(_mm512_inserti64x4(_mm512_castsi256_si512(mv[0]), mv[1], 1),
                                     _mm512_inserti64x4(_mm512_castsi256_si512(mv[2]), mv[3], 1));
  const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(c, cm), _mm512_unpackhi_epi32(c, cm));
  const __m512i v = _mm512_add_epi32(u, _mm512_shuffle_epi32(u, _MM_PERM_BADC));  // quarter k: [e_k, m_k, e_k, m_k]
  const __m512 f = _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), v));
  return {_mm512_castps512_ps128(f), _mm512_extractf32x4_ps(f, 1)};
}
// The dot totals alone (Q6_K, whose offset is already in its dot vectors).
inline __m128 dot_totals4(const __m512i* s) {
  const __m512i c = quarters_paired(quarters_folded(s[0], s[1]), quarters_folded(s[2], s[3]));
  const __m512i u = _mm512_add_epi32(c, _mm512_shuffle_epi32(c, _MM_PERM_BADC));
  const __m512i v = _mm512_add_epi32(u, _mm512_shuffle_epi32(u, _MM_PERM_CDAB));  // quarter k: e_k in every lane
  const __m512i e = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), v);
  return _mm_cvtepi32_ps(_mm512_castsi512_si128(e));
}
// group.operator()<kN>(g) for the groups of four super-blocks from g = 0, 4, ..., the last one
// holding the kN = nsb % 4 left over (a compile-time count, so each group is straight-line code).
template <typename Group>
inline void for_groups_of4(int64_t nsb, Group& group) {
  int64_t g = 0;
  for (; g + 4 <= nsb; g += 4) group.template operator()<4>(g);
  switch (nsb - g) {
    case 1: group.template operator()<1>(g); break;
    case 2: group.template operator()<2>(g); break;
    case 3: group.template operator()<3>(g); break;
    default: break;
  }
}
// (a0 + a2) + (a1 + a3), the row's result.
inline float sum_classes(__m128 a) {
  const __m128 h = _mm_add_ps(a, _mm_movehl_ps(a, a));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}
// The two f16 values at p + k * stride (k < kN, zeros past) as floats: [first of each | second of
// each] (d and dmin of four super-blocks).
template <int kN>
inline __m256 halves_of4(const uint8_t* p, int stride) {
  int32_t h[4] = {};
  #pragma GCC unroll 4
  for (int k = 0; k < kN; ++k) std::memcpy(&h[k], p + k * stride, 4);
  const __m256 f = _mm256_cvtph_ps(_mm_setr_epi32(h[0], h[1], h[2], h[3]));
  return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}
// The f16 values at p + k * stride (k < kN <= 4, zeros past) as floats.
template <int kN>
inline __m128 f16_of4(const uint8_t* p, int stride) {
  return _mm_cvtph_ps(words<kN>([&](int k) { return p + k * stride; }));
}
// Four floats from p, zeros past the first kN (a row's last super-blocks).
template <int kN>
inline __m128 load4_upto(const float* p) {
  return kN >= 4 ? _mm_loadu_ps(p) : _mm_maskz_loadu_ps(__mmask8((1u << kN) - 1), p);
}

// Four super-blocks' scale bytes (12 at p + k * stride, k < kN; 16 are read) decoded at once as
// scales_mins_k4 decodes one: 128-bit lane k = [sc0..7, m0..7] of super-block k (zeros past kN).
template <int kN>
inline __m512i scales_mins_k4x4(const uint8_t* p, int stride) {
  auto at = [&](int k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k * stride)); };
  __m512i v = _mm512_castsi128_si512(at(0));
  if constexpr (kN > 1) v = _mm512_inserti32x4(v, at(1), 1);
  if constexpr (kN > 2) v = _mm512_inserti32x4(v, at(2), 2);
  if constexpr (kN > 3) v = _mm512_inserti32x4(v, at(3), 3);
  if constexpr (kN < 4) v = _mm512_maskz_mov_epi32(__mmask16((1u << (4 * kN)) - 1), v);
  const __m512i lo = _mm512_and_si512(v, _mm512_set1_epi8(0x3F));
  const __m512i top = _mm512_and_si512(_mm512_srli_epi16(v, 2), _mm512_set1_epi8(0x30));
  const __m512i b8 = _mm512_shuffle_epi8(v, _mm512_broadcast_i32x4(_mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1)));
  const __m512i nib = _mm512_and_si512(_mm512_mask_blend_epi16(__mmask32(0xCCCCCCCC), b8, _mm512_srli_epi16(b8, 4)), _mm512_set1_epi8(0x0F));
  return _mm512_unpacklo_epi32(lo, _mm512_or_si512(nib, top));
}
// 128-bit lane k (< 4) of v in all four lanes. The shuffle's immediate is spelled out per k: the
// callers' k is an unrolled loop counter, a constant only once the compiler optimizes.
inline __m512i lane_to_all(__m512i v, int k) {
  switch (k) {
    case 0: return _mm512_shuffle_i32x4(v, v, 0x00);
    case 1: return _mm512_shuffle_i32x4(v, v, 0x55);
    case 2: return _mm512_shuffle_i32x4(v, v, 0xAA);
    default: return _mm512_shuffle_i32x4(v, v, 0xFF);
  }
}
// Byte a of a 128-bit lane zero-extended into every int16 lane of the low 256 bits, byte b into
// the high 256 (for vpshufb).
inline __m512i pick_bytes16(int a, int b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(int16_t(0x8000 | a))), _mm256_set1_epi16(int16_t(0x8000 | b)), 1);
}

// Planes m of a Q4_K / Q5_K super-block at wb (qh: its 32 fifth-bit bytes in both 256-bit halves,
// Q5_K): q[0] the low nibbles of packed bytes 64m..64m+63 (sub-blocks 4m, 4m + 2), q[1] the high
// ones (4m + 1, 4m + 3), as unsigned quants in quantize_x256's order for these types.
template <bool kFive>
inline void q45k_planes(const uint8_t* wb, __m512i qh, int m, __m512i* q) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(16);
  const __m512i raw = load64_once(wb + (kFive ? 48 : 16) + 64 * m);
  q[0] = _mm512_and_si512(raw, low4);
  q[1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
  if (kFive) {  // bit j of qh byte i for element i of sub-block j, to bit 4 (shifts of at most 4
                // left or 3 right in 16-bit lanes keep each byte's bit 4 its own)
    const int s0 = 4 * m, s1 = 4 * m + 2;  // the low plane's sub-blocks; the high plane's are + 1
    q[0] = or_and(q[0], m == 0 ? _mm512_sllv_epi16(qh, halves16(int16_t(4 - s0), int16_t(4 - s1)))
                               : _mm512_srlv_epi16(qh, halves16(int16_t(s0 - 4), int16_t(s1 - 4))), b16);
    q[1] = or_and(q[1], m == 0 ? _mm512_sllv_epi16(qh, halves16(int16_t(3 - s0), int16_t(3 - s1)))
                               : _mm512_srlv_epi16(qh, halves16(int16_t(s0 - 3), int16_t(s1 - 3))), b16);
  }
}

// Q4_K / Q5_K. One 64-byte load of packed nibbles (runs 2m and 2m + 1) holds sub-blocks 4m and
// 4m + 2 in its low nibbles and 4m + 1 and 4m + 3 in its high ones, each unpacked plane facing 64
// activations that quantize_x256 lays out in that order for these types (x256_slot); the int16
// scale of each sub-block is picked into its 256-bit half. The scale bytes of four super-blocks
// are decoded together.
// One activation row (T = 1): R * rows weight rows `stride` bytes apart, results out[0..R * rows),
// each row's arithmetic the same as alone. One call streams them all (the kernel's set-up once,
// not once a row: 1.05-1.12x a matvec). R > 1: row i in one pass with rows i + rows, ...,
// interleaved, so one row's reductions and scale decoding overlap another's products (768-wide
// Q4_K rows from L2: 60 -> 70 Gweights/s a core).
// Exact form: each super-block reduced to its integer dot and min totals, four super-blocks at a
// time, and the float terms d*dx*E - dmin*dx*M accumulated in four classes (super-block sb % 4),
// which gemm16_k repeats with a weight row per lane.
template <bool kFive, int T, int R = 1>
void sdot_q45k_512(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out,
                   size_t stride = 0, int64_t rows = 1) {
  static_assert(R == 1 || T == 1, "several weight rows only in a matvec");
  constexpr int kBytes = kFive ? 176 : 144;
  // Plane p = 2m (low nibbles) or 2m + 1 (high): sub-blocks 4m + p % 2 and 4m + 2 + p % 2.
  __m512i pick[4];
  for (int p = 0; p < 4; ++p) pick[p] = pick_bytes16(4 * (p / 2) + p % 2, 4 * (p / 2) + 2 + p % 2);
  // The eight mins as int16, m_s at lanes 2s and 2s + 1 (against the activations' per-16 sums).
  const __m512i pick_mins = _mm512_castsi256_si512(_mm256_setr_epi8(
      8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1, 12, -1, 12, -1, 13, -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1));
  // Super-block sb (at wb, decoded scale bytes in every 128-bit lane of scm): its dot vector
  // sum[t] and min vector mv[t] for every row.
  auto superblock = [&](const uint8_t* wb, int64_t sb, __m512i scm, __m512i* sum, __m256i* mv) {
    if (T == 1) prefetch_ahead<kBytes>(wb);
    const __m512i qh = kFive ? _mm512_broadcast_i64x4(load32(wb + 16)) : _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sum[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int m = 0; m < 2; ++m) {
      __m512i q[2];
      q45k_planes<kFive>(wb, qh, m, q);
      const __m512i slo = _mm512_shuffle_epi8(scm, pick[2 * m]), shi = _mm512_shuffle_epi8(scm, pick[2 * m + 1]);
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const uint8_t* x = reinterpret_cast<const uint8_t*>(qx + t * 256 * nsb + sb * 256 + 128 * m);
        const __m512i a = _mm512_maddubs_epi16(q[0], load64(x)), b = _mm512_maddubs_epi16(q[1], load64(x + 64));
        sum[t] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(sum[t], a, slo), b, shi);
      }
    }
    const __m256i mins = _mm512_castsi512_si256(_mm512_shuffle_epi8(scm, pick_mins));
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      mv[t] = _mm256_madd_epi16(mins, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + (t * nsb + sb) * 16)));
  };
  __m128 acc[R][T];
  const uint8_t* wr = w;                                       // (the first of) the row(s) in hand
  const size_t apart = R > 1 ? size_t(rows) * stride : stride;  // the R rows in hand
  // The kN (<= 4) super-blocks from g: their vectors, then the float terms.
  auto group = [&]<int kN>(int64_t g) {
    __m256 dm[R];  // d of each super-block, then dmin
    __m512i scm4[R], sv[R][4][T];
    __m256i mvv[R][4][T];
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* wg = wr + r * apart + g * kBytes;
      dm[r] = halves_of4<kN>(wg, kBytes);
      scm4[r] = scales_mins_k4x4<kN>(wg + 4, kBytes);
    }
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        if (k < kN) superblock(wr + r * apart + (g + k) * kBytes, g + k, lane_to_all(scm4[r], k), sv[r][k], mvv[r][k]);
        else
          for (int t = 0; t < T; ++t) sv[r][k][t] = _mm512_setzero_si512(), mvv[r][k][t] = _mm256_setzero_si256();
      }
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m128 d = _mm256_castps256_ps128(dm[r]), dmin = _mm256_extractf128_ps(dm[r], 1);
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m128 dxv = load4_upto<kN>(dx + t * nsb + g);
        const __m512i s4[4] = {sv[r][0][t], sv[r][1][t], sv[r][2][t], sv[r][3][t]};
        const __m256i m4[4] = {mvv[r][0][t], mvv[r][1][t], mvv[r][2][t], mvv[r][3][t]};
        const Totals4 tot = totals4(s4, m4);
        acc[r][t] = _mm_fmadd_ps(_mm_mul_ps(d, dxv), tot.e, acc[r][t]);
        acc[r][t] = _mm_fnmadd_ps(_mm_mul_ps(dmin, dxv), tot.m, acc[r][t]);
      }
    }
  };
  if constexpr (T == 1) {
    for (int64_t i = 0; i < rows; ++i, wr += stride) {
      for (int r = 0; r < R; ++r) acc[r][0] = _mm_setzero_ps();
      for_groups_of4(nsb, group);
      for (int r = 0; r < R; ++r) out[i + r * rows] = sum_classes(acc[r][0]);
    }
    return;
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[0][t] = _mm_setzero_ps();
  for_groups_of4(nsb, group);
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = sum_classes(acc[0][t]);
}

// Q6_K. Half n's 64 low-bit bytes hold runs 0, 1 (low nibbles) and 2, 3 (high nibbles); runs 0
// and 1 (2 and 3) are the half's first (last) 64 elements, so each nibble plane faces 64
// contiguous activations. Every 128-bit lane there is one 16-element sub-block: its scale is
// spread over the lane by one vpermw.
// The exact form as sdot_q45k_512's, one weight row a pass (two a pass measured no faster from L2
// on 768-wide rows and 4% slower on 2048-wide ones).
template <int T>
void sdot_q6k_512(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out,
                  size_t stride = 0, int64_t rows = 1) {  // stride, rows: as sdot_q45k_512's
  constexpr int kBytes = 210;
  const __m512i low4 = _mm512_set1_epi8(0x0F), hi2 = _mm512_set1_epi8(0x30);
  const __m512i shl01 = halves16(4, 2), shr23 = halves16(0, 2);  // bits 2k, 2k + 1 of qh to bits 4, 5
  __m512i spread[4];  // plane p of half n: int16 scale 8n + 4p + lane / 8 in 16-bit lane `lane`
  for (int i = 0; i < 4; ++i) {
    alignas(64) int16_t idx[32];
    for (int l = 0; l < 32; ++l) idx[l] = int16_t(4 * i + l / 8);
    spread[i] = _mm512_load_si512(idx);
  }
  // Super-block sb (at wb): its dot vector less the offset, sum[t], for every row.
  auto superblock = [&](const uint8_t* wb, int64_t sb, __m512i* sum) {
    if (T == 1) prefetch_ahead<kBytes>(wb);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 192)));
    const __m512i sc = _mm512_castsi256_si512(sc16);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sum[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int n = 0; n < 2; ++n) {
      const __m512i l = load64_once(wb + 64 * n);
      const __m512i qh = _mm512_broadcast_i64x4(load32(wb + 128 + 32 * n));
#pragma GCC unroll 2
      for (int p = 0; p < 2; ++p) {
        const __m512i q = p == 0 ? or_and(_mm512_and_si512(l, low4), _mm512_sllv_epi16(qh, shl01), hi2)
                                 : or_and(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4), _mm512_srlv_epi16(qh, shr23), hi2);
        const __m512i scales = _mm512_permutexvar_epi16(spread[2 * n + p], sc);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const uint8_t* x = reinterpret_cast<const uint8_t*>(qx + t * 256 * nsb + sb * 256 + 128 * n + 64 * p);
          sum[t] = _mm512_dpwssd_epi32(sum[t], _mm512_maddubs_epi16(q, load64(x)), scales);
        }
      }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      // The offset: the unsigned q' is q + 32, so subtract 32 * sum(sc * xs) (in the sum's lanes 0..7).
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + (t * nsb + sb) * 16));
      sum[t] = _mm512_sub_epi32(sum[t], _mm512_zextsi256_si512(_mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5)));
    }
  };
  __m128 acc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const uint8_t* wr = w;
  auto group = [&]<int kN>(int64_t g) {
    __m512i part[4][T];
    const uint8_t* wg = wr + g * kBytes;
    const __m128 d = f16_of4<kN>(wg + 208, kBytes);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      if (k < kN) superblock(wg + k * kBytes, g + k, part[k]);
      else
        for (int t = 0; t < T; ++t) part[k][t] = _mm512_setzero_si512();
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i sv[4] = {part[0][t], part[1][t], part[2][t], part[3][t]};
      acc[t] = _mm_fmadd_ps(_mm_mul_ps(d, load4_upto<kN>(dx + t * nsb + g)), dot_totals4(sv), acc[t]);
    }
  };
  if constexpr (T == 1) {
    for (int64_t i = 0; i < rows; ++i, wr += stride) {
      acc[0] = _mm_setzero_ps();
      for_groups_of4(nsb, group);
      out[i] = sum_classes(acc[0]);
    }
    return;
  }
  for_groups_of4(nsb, group);
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = sum_classes(acc[t]);
}
#pragma GCC diagnostic pop
#endif

#if PAGODA_AVX512_VNNI
// The 512-bit kernel of a K-quant type (R, stride, rows: as sdot_q45k_512's).
template <DType kType, int T, int R = 1>
void sdot_512(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out,
              size_t stride = 0, int64_t rows = 1) {
  if constexpr (kType == DType::Q4_K) sdot_q45k_512<false, T, R>(w, qx, dx, xs, nsb, out, stride, rows);
  else if constexpr (kType == DType::Q5_K) sdot_q45k_512<true, T, R>(w, qx, dx, xs, nsb, out, stride, rows);
  else {
    static_assert(kType == DType::Q6_K && R == 1, "Q6_K takes one weight row a pass; Q2_K and Q3_K take sdot_k16");
    sdot_q6k_512<T>(w, qx, dx, xs, nsb, out, stride, rows);
  }
}

// A matvec's rows [0, rows) at w, `stride` apart (SuperDotRows): two rows a pass, row i with row
// i + rows / 2 (each half a sequential stream, as the hardware prefetcher wants it; adjacent rows
// in pairs streamed 15% slower), an odd last row alone; Q6_K row after row (sdot_q6k_512).
template <DType kType>
void sdot_range(const uint8_t* w, size_t stride, int64_t rows, const int8_t* qx, const float* dx, const int16_t* xs,
                int64_t nsb, float* out) {
  if constexpr (kType == DType::Q6_K) {
    sdot_512<kType, 1>(w, qx, dx, xs, nsb, out, stride, rows);
  } else {
    if (const int64_t pairs = rows / 2) sdot_512<kType, 1, 2>(w, qx, dx, xs, nsb, out, stride, pairs);
    if (rows % 2) sdot_512<kType, 1>(w + size_t(rows - 1) * stride, qx, dx, xs, nsb, out + rows - 1);
  }
}
#endif

// A K-quant row against T activation rows. Q2_K and Q3_K take sdot_k16 in every build: their
// decode and prompts run on kept panels that repeat its exact form (kept16_k16_tokens in AVX-512
// builds), and the rows past the panels' groups need the same bits.
template <DType kType, int T>
void sdot(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out) {
  if constexpr (kType == DType::Q2_K || kType == DType::Q3_K) sdot_k16<kType, T>(w, qx, dx, xs, nsb, out);
#if PAGODA_AVX512_VNNI
  else sdot_512<kType, T>(w, qx, dx, xs, nsb, out);
#else
  else if constexpr (kType == DType::Q4_K) sdot_q45k<false, T>(w, qx, dx, xs, nsb, out);
  else if constexpr (kType == DType::Q5_K) sdot_q45k<true, T>(w, qx, dx, xs, nsb, out);
  else sdot_k16<kType, T>(w, qx, dx, xs, nsb, out);
#endif
}

// 32 bits of Q5 fifth bits (bit j for byte j) as 32 bytes: 0x10 where the bit is set.
inline __m256i fifth_bits(uint32_t qh) {
#if PAGODA_AVX512_VNNI
  return _mm256_maskz_mov_epi8(__mmask32(qh), _mm256_set1_epi8(16));  // bit j selects byte j
#else
  // Byte j takes byte j/8 of qh, then tests bit j%8.
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(qh)),
                                             _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
#endif
}
// A Q5 block's qh (the fifth bit of element j at bit j) as 32 bytes.
inline __m256i fifth_bits(const uint8_t* qh_bytes) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  return fifth_bits(qh);
}

// Nibbles of 16 bytes as 32 bytes: low nibbles (elements 0..15) then high (16..31).
inline __m256i nibbles(const uint8_t* q) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

// The 32-element block formats, one struct each: the block's size in bytes, the offset its
// unsigned quants carry (kOff < 0: signed quants, Q8_0 and IQ4_NL), whether an f16 min follows
// the f16 scale d, and `unpack`, the block's 32 weights as bytes. The 4-bit formats also give
// where the 16 nibble bytes start (kNib; -1 for Q8_0) and Q5's 4 fifth-bit bytes (kQh; -1 for
// none). Every kernel below takes one of
// these as its format, and with_blocks32 is the one switch from a DType to its struct.
#if PAGODA_AVX512_VBMI
// blocks16_nib's nibble values for formats whose nibbles are the quants themselves.
struct PlainNibbles {
  static __m512i nib_values(__m512i n) { return n; }
};
#else
struct PlainNibbles {};
#endif
struct BlocksQ8_0 {
  static constexpr int kBytes = 34, kOff = -1, kNib = -1;
  static constexpr bool kMin = false;
  static __m256i unpack(const uint8_t* b) { return load32(b + 2); }
};
struct BlocksQ4_0 : PlainNibbles {
  static constexpr int kBytes = 18, kOff = 8, kNib = 2, kQh = -1;
  static constexpr bool kMin = false;
  static __m256i unpack(const uint8_t* b) { return nibbles(b + kNib); }
};
struct BlocksQ4_1 : PlainNibbles {
  static constexpr int kBytes = 20, kOff = 0, kNib = 4, kQh = -1;
  static constexpr bool kMin = true;
  static __m256i unpack(const uint8_t* b) { return nibbles(b + kNib); }
};
struct BlocksQ5_0 : PlainNibbles {
  static constexpr int kBytes = 22, kOff = 16, kNib = 6, kQh = 2;
  static constexpr bool kMin = false;
  static __m256i unpack(const uint8_t* b) { return _mm256_or_si256(nibbles(b + kNib), fifth_bits(b + kQh)); }
};
struct BlocksQ5_1 : PlainNibbles {
  static constexpr int kBytes = 24, kOff = 0, kNib = 8, kQh = 4;
  static constexpr bool kMin = true;
  static __m256i unpack(const uint8_t* b) { return _mm256_or_si256(nibbles(b + kNib), fifth_bits(b + kQh)); }
};
struct BlocksIQ4_NL {
  static constexpr int kBytes = 18, kOff = -1, kNib = 2, kQh = -1;
  static constexpr bool kMin = false;
  // The table's values at 32 nibbles (bytes 0..15).
  static __m256i lookup(__m256i n) {
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
    return _mm256_shuffle_epi8(table, n);
  }
  static __m256i unpack(const uint8_t* b) { return lookup(nibbles(b + kNib)); }
#if PAGODA_AVX512_VBMI
  // The table's values + 128 (all in 1..241, so unsigned bytes for vpdpbusd; blocks16_nib takes
  // 128 times the block sums back).
  static __m512i nib_values(__m512i n) {
    const __m512i table = _mm512_broadcast_i32x4(
        _mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, -127, -115, -103, -90, -75, -59, -39, -15));
    return _mm512_shuffle_epi8(table, n);
  }
#endif
};

// f(Blocks{}) with the format struct of a 32-element type; for any other type, R() where R is
// what f returns (nullptr for a function pointer).
template <typename F>
auto with_blocks32(DType t, F&& f) -> decltype(f(BlocksQ8_0{})) {
  switch (t) {
    case DType::Q8_0: return f(BlocksQ8_0{});
    case DType::Q4_0: return f(BlocksQ4_0{});
    case DType::Q4_1: return f(BlocksQ4_1{});
    case DType::Q5_0: return f(BlocksQ5_0{});
    case DType::Q5_1: return f(BlocksQ5_1{});
    case DType::IQ4_NL: return f(BlocksIQ4_NL{});
    default: return decltype(f(BlocksQ8_0{}))();
  }
}

// ---- Builds without the 512-bit kernels: the nibble formats two blocks at a time ----
//
// One block's 16 nibble bytes become its 32 weights after a shift, an insert and two ANDs. Two
// blocks' nibble bytes loaded side by side give both blocks' weights in two registers after a
// shift and two ANDs: their low nibbles [b: 0..15 | b + 1: 0..15] and their high ones
// [b: 16..31 | b + 1: 16..31]. The activations of such a pair are stored in that order (see
// x32_layout), and its products land in int32 lanes 0..3 (block b) and 4..7 (block b + 1), so
// eight blocks reduce to one lane each in three hadds instead of seven. The block sums are the
// same integers as one block at a time, so every result is the same bits.
template <typename B>
constexpr bool x32_pairs() {
  return !PAGODA_AVX512_VNNI && B::kNib >= 0;
}

// Blocks b and b + 1 (at p and p + kBytes) of a nibble format: lo = elements 0..15 of both, hi =
// elements 16..31 of both, as x32_pairs orders them.
template <typename B>
inline void unpack_pair(const uint8_t* p, __m256i& lo, __m256i& hi) {
  const __m256i raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + B::kBytes + B::kNib),
                                          reinterpret_cast<const __m128i*>(p + B::kNib));
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  lo = _mm256_and_si256(raw, low4);
  hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
  if constexpr (B::kQh >= 0) {  // fifth bits j < 16 of both blocks to lo, j >= 16 to hi
    uint32_t q0, q1;
    std::memcpy(&q0, p + B::kQh, 4);
    std::memcpy(&q1, p + B::kBytes + B::kQh, 4);
    // Both words in every 64 bits; byte i of lo takes qh byte i / 8 of its block (bytes 0, 1 of
    // the first word in the low 128 bits, of the second in the high), hi bytes 2, 3; then each
    // byte tests bit i % 8.
    const __m256i both = _mm256_set1_epi64x(int64_t(uint64_t(q0) | uint64_t(q1) << 32));
    const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
    auto sixteen = [&](__m256i spread) {
      return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
    };
    lo = _mm256_or_si256(lo, sixteen(_mm256_shuffle_epi8(both, _mm256_setr_epi64x(0, 0x0101010101010101, 0x0404040404040404,
                                                                                   0x0505050505050505))));
    hi = _mm256_or_si256(hi, sixteen(_mm256_shuffle_epi8(both, _mm256_setr_epi64x(0x0202020202020202, 0x0303030303030303,
                                                                                   0x0606060606060606, 0x0707070707070707))));
  }
  if constexpr (B::kOff < 0) {  // IQ4_NL: the nibbles index its table
    lo = B::lookup(lo);
    hi = B::lookup(hi);
  }
}

// A pair's dot with its 64 activation bytes at x (lo's 32, then hi's): int32 lanes 0..3 sum block
// b's products, lanes 4..7 block b + 1's.
template <typename B>
inline __m256i pair_dot(__m256i lo, __m256i hi, const uint8_t* x) {
  const __m256i xl = load32(x), xh = load32(x + 32);
  if constexpr (B::kOff < 0)  // signed weights: |w| against sign(x, w)
    return dot_u8s8(dot_u8s8(_mm256_setzero_si256(), _mm256_sign_epi8(lo, lo), _mm256_sign_epi8(xl, lo)),
                    _mm256_sign_epi8(hi, hi), _mm256_sign_epi8(xh, hi));
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
  return dot_u8s8(dot_u8s8(_mm256_setzero_si256(), lo, xl), hi, xh);
#else
  // Unsigned weights of at most 5 bits: two maddubs' pair sums add in int16 (4 * 31 * 127 < 2^15).
  return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh)), ones16());
#endif
}

#if PAGODA_AVX512_VNNI
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Sixteen 32-element blocks in 512-bit registers, for dot_blocks32: two blocks per register, so a
// row's block dot is one load, one vpdpbusd (and, for signed weights, one masked negate) per two
// blocks; the sixteen 16-lane dots are then folded to one lane per block by single-uop shuffles
// and adds (4 x 3 + 2 x 3 + 3 of them, against the 256-bit kernel's multi-uop hadds), so output
// lane 4j + k holds block j + 4k. The scales are taken in that order. Adds the blocks' terms to
// acc and macc (the min term) of each of the T rows.
constexpr int kGroup512 = 16;
inline __m256 fold512(__m512 a) {
  return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}
constexpr int block_of_lane(int lane) { return (lane >> 2) + 4 * (lane & 3); }
// block_of_lane of lanes 0..15, as a permute index.
alignas(64) inline constexpr auto kBlockOfLane = [] {
  std::array<int32_t, 16> a{};
  for (int l = 0; l < 16; ++l) a[size_t(l)] = block_of_lane(l);
  return a;
}();

template <typename B, int T>
inline void blocks16_512(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, int64_t b,
                         __m512* acc, __m512* macc) {
  constexpr int kBytes = B::kBytes, kOff = B::kOff;
  constexpr bool kMin = B::kMin;
  // Batches take signed weights as unsigned bytes w + 128, the 128 x sum(x) taken back from each
  // block's integer sum (exactly, so the same bits): one xor per weight vector where the sign
  // transfer cost a masked negate per token (Matmul4 Q8_0 and IQ4_NL 1.15x). One token keeps the
  // sign transfer: with the xor its loop ran faster, but 1B Q8_0 decode read 0.85-0.93x (samples on
  // its prefetches; docs/perf.md).
  constexpr bool kSigned = kOff < 0 && T == 1;
  // The shift the unsigned bytes carry (kOff, 128 for shifted signed weights) as a power of two.
  constexpr int kShift = kSigned ? 0 : kOff < 0 ? 128 : kOff, kShiftBits = kShift ? std::countr_zero(unsigned(kShift)) : 0;
  static_assert(kShift == 0 || kShift == 1 << kShiftBits, "a shift by a power of two");
  // S: blocks 4i..4i+3 as four int32 lanes each (128-bit lane j: block 4i + j).
  __m512i quad[4][T];
  #pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    __m512i p[2][T];
    #pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const uint8_t* wb = w + (4 * i + 2 * h) * kBytes;
      const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(B::unpack(wb)), B::unpack(wb + kBytes), 1);
      const __m512i uq = kSigned ? _mm512_abs_epi8(q) : kOff < 0 ? _mm512_xor_si512(q, _mm512_set1_epi8(char(0x80))) : q;
      const __mmask64 neg = kSigned ? _mm512_movepi8_mask(q) : 0;
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        __m512i xv = load64(reinterpret_cast<const uint8_t*>(qx + t * 32 * nb + (b + 4 * i + 2 * h) * 32));
        if (kSigned) xv = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);  // x with w's sign
        p[h][t] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), uq, xv);
      }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t)  // [a0 a1 | b0 b1], [c0 c1 | d0 d1] -> [a0 b0 c0 d0] + [a1 b1 c1 d1]
      quad[i][t] = _mm512_add_epi32(_mm512_shuffle_i32x4(p[0][t], p[1][t], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_i32x4(p[0][t], p[1][t], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  // Lane l's f16 d (and m) from block kBlockOfLane[l].
  auto f16_lanes = [&](int off) {
    const __m128i lo = words<8>([&](int l) { return w + kBlockOfLane[size_t(l)] * kBytes + off; });
    const __m128i hi = words<8>([&](int l) { return w + kBlockOfLane[size_t(8 + l)] * kBytes + off; });
    return _mm512_cvtph_ps(_mm256_set_m128i(hi, lo));
  };
  const __m512i perm = _mm512_load_si512(kBlockOfLane.data());
  const __m512 d = f16_lanes(0);
  const __m512 m = kMin ? f16_lanes(2) : _mm512_setzero_ps();
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    // Pairs of quads: 128-bit lane j holds blocks j, 4 + j (then 8 + j, 12 + j) as two lanes each.
    __m512i half[2];
    for (int k = 0; k < 2; ++k)
      half[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(quad[2 * k][t], quad[2 * k + 1][t]),
                                 _mm512_unpackhi_epi32(quad[2 * k][t], quad[2 * k + 1][t]));
    __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(half[0], half[1]), _mm512_unpackhi_epi64(half[0], half[1]));
    const __m512i xsv = _mm512_permutexvar_epi32(perm, _mm512_loadu_si512(xs + t * nb + b));
    if (kShift) s = _mm512_sub_epi32(s, _mm512_slli_epi32(xsv, kShiftBits));
    const __m512 dxv = _mm512_permutexvar_ps(perm, _mm512_loadu_ps(dx + t * nb + b));
    acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, dxv), _mm512_cvtepi32_ps(s), acc[t]);
    if (kMin) macc[t] = _mm512_fmadd_ps(_mm512_mul_ps(m, dxv), _mm512_cvtepi32_ps(xsv), macc[t]);
  }
}
#pragma GCC diagnostic pop
#endif

#if PAGODA_AVX512_VBMI
#pragma GCC diagnostic push  // GCC 12 reads the intrinsics' undefined passthrough operands as uninitialized
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// blocks16_512 for one activation row of a nibble format (B::kNib >= 0: Q4_0, Q4_1, Q5_0, Q5_1,
// IQ4_NL), in about half its instructions. blocks16_512 unpacks each block into its own 256-bit
// half, which held a Q4_0 matvec at 39 Gweights/s a core from L2 (22 GB/s, below what a core can
// read). Here a group of four blocks is two 64-byte loads and one byte permute (vpermt2b) that puts
// their 64 nibble bytes side by side; one AND gives elements 0..15 of all four blocks and a shift
// and an AND elements 16..31, each dotted (vpdpbusd) with the matching halves of the activations
// into one register, so 128-bit lane i holds block i's sum in four parts. Q5's fifth bits become
// masks (vpshufbitqmb) that add 16 to their bytes; IQ4_NL's table lookup gives values + 128 so the
// bytes stay unsigned. The scales are permuted straight out of the loaded bytes. The sums are
// folded to one lane per block in blocks16_512's lane order (lane 4j + k: block j + 4k) and scaled
// by the same float operations, so every result is bit-identical to blocks16_512's (and so to the
// prompt kernels').
template <typename B>
inline void blocks16_nib(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t b, __m512* acc,
                         __m512* macc) {
  constexpr int kBytes = B::kBytes, kGroup = 4 * kBytes;
  // The offset the unsigned bytes carry: kOff, or 128 for IQ4_NL's signed values (nib_values).
  constexpr int kNibOff = B::kOff < 0 ? 128 : B::kOff;
  constexpr bool kScalesFirst = 3 * kBytes + (B::kMin ? 4 : 2) <= 64;
  static_assert(kGroup <= 128, "a group of four blocks in two 64-byte loads");
  alignas(64) static constexpr auto idx = [] {
    // Byte k of a group is byte k of its first load (k < 64) or byte k - (kGroup - 64) of its second.
    auto pick = [](int k) { return uint8_t(k < 64 ? k : 64 + k - (kGroup - 64)); };
    struct {
      uint8_t nib[64], fifth[64], scale[4][64];
    } t{};
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 16; ++k) t.nib[16 * i + k] = pick(kBytes * i + B::kNib + k);
    // Q5: byte 0 of 64-bit word q holds the fifth bits of elements 8q..8q+7 of the four blocks'
    // low halves (block q / 2, its qh byte q % 2), byte 1 those of the high halves (qh byte 2 + q % 2).
    for (int q = 0; q < 8 && B::kQh >= 0; ++q)
      for (int h = 0; h < 2; ++h) t.fifth[8 * q + h] = pick(kBytes * (q / 2) + B::kQh + 2 * h + q % 2);
    // The scales: output bytes 0..31 hold the f16 d of lane l (bytes 2l, 2l + 1) from group l & 3
    // (block l >> 2 of it), bytes 32..63 the f16 min. Where every group's scales lie in its first
    // load (Q4_0, Q4_1, IQ4_NL), table 0 picks groups 0, 1 from their first loads and table 1 groups
    // 2, 3 (two permutes); otherwise table g picks group g's from its two loads (four).
    for (int l = 0; l < 16; ++l)
      for (int e = 0; e < 4; ++e) {
        const int at = e < 2 ? 2 * l + e : 32 + 2 * l + e - 2, k = kBytes * (l >> 2) + e;
        if (kScalesFirst) t.scale[(l & 3) / 2][at] = uint8_t(64 * (l & 1) + k);
        else t.scale[l & 3][at] = pick(k);
      }
    return t;
  }();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512i sum[4], first[4], scales;
  #pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const uint8_t* wg = w + g * kGroup;
    // Each 64 bytes as two 32-byte loads: at these 72- to 96-byte strides a 64-byte load nearly
    // always spans two cache lines, and one thread streamed Q4_0 from memory at 16-17 GB/s with
    // them against 28-29 GB/s with halves (blocks16_512, 16-byte loads: 21).
    const uint8_t* wz = wg + kGroup - 64;
    const __m512i a = first[g] = load_halves(wg, wg + 32), z = load_halves(wz, wz + 32);
    const __m512i q = _mm512_permutex2var_epi8(a, _mm512_load_si512(idx.nib), z);
    __m512i lo = _mm512_and_si512(q, low4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
    if constexpr (B::kQh >= 0) {
      const __m512i bits = _mm512_permutex2var_epi8(a, _mm512_load_si512(idx.fifth), z);
      const __m512i sel = _mm512_set1_epi64(0x0706050403020100);  // bit j % 8 of byte 0 (low) or 1 (high)
      lo = _mm512_mask_add_epi8(lo, _mm512_bitshuffle_epi64_mask(bits, sel), lo, _mm512_set1_epi8(16));
      hi = _mm512_mask_add_epi8(hi, _mm512_bitshuffle_epi64_mask(bits, _mm512_add_epi8(sel, _mm512_set1_epi8(8))), hi,
                                _mm512_set1_epi8(16));
    }
    lo = B::nib_values(lo);
    hi = B::nib_values(hi);
    const __m512i x0 = load64(reinterpret_cast<const uint8_t*>(qx + (b + 4 * g) * 32));
    const __m512i x1 = load64(reinterpret_cast<const uint8_t*>(qx + (b + 4 * g) * 32 + 64));
    // Activations of blocks 4g..4g+3 as [0..15 of each], [16..31 of each].
    const __m512i xlo = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));
    const __m512i xhi = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
    sum[g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo), hi, xhi);
    if constexpr (!kScalesFirst) {
      const __m512i sc = _mm512_permutex2var_epi8(a, _mm512_load_si512(idx.scale[g]), z);
      scales = g == 0 ? sc : _mm512_mask_blend_epi16(0x11111111u << g, scales, sc);
    }
  }
  if constexpr (kScalesFirst)
    scales = _mm512_mask_blend_epi16(0xCCCCCCCC, _mm512_permutex2var_epi8(first[0], _mm512_load_si512(idx.scale[0]), first[1]),
                                     _mm512_permutex2var_epi8(first[2], _mm512_load_si512(idx.scale[1]), first[3]));
  // [a0 a1 a2 a3] of group 0 with group 1's [b..]: [a0+a2 b0+b2 a1+a3 b1+b3], then with groups 2, 3
  // the 64-bit halves: lane 4j + k is group k's block j.
  const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(sum[0], sum[1]), _mm512_unpackhi_epi32(sum[0], sum[1]));
  const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(sum[2], sum[3]), _mm512_unpackhi_epi32(sum[2], sum[3]));
  __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
  const __m512i perm = _mm512_load_si512(kBlockOfLane.data());
  const __m512i xsv = _mm512_permutexvar_epi32(perm, _mm512_loadu_si512(xs + b));
  if (kNibOff > 0) s = _mm512_sub_epi32(s, _mm512_mullo_epi32(xsv, _mm512_set1_epi32(kNibOff)));
  const __m512 dxv = _mm512_permutexvar_ps(perm, _mm512_loadu_ps(dx + b));
  const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(scales));
  acc[0] = _mm512_fmadd_ps(_mm512_mul_ps(d, dxv), _mm512_cvtepi32_ps(s), acc[0]);
  if (B::kMin) {
    const __m512 m = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(scales, 1));
    macc[0] = _mm512_fmadd_ps(_mm512_mul_ps(m, dxv), _mm512_cvtepi32_ps(xsv), macc[0]);
  }
}
#pragma GCC diagnostic pop
#endif

// Rows of 32-element blocks of kBytes, f16 scale d first. Per block `unpack` gives the 32 weights
// as bytes. kOff >= 0: unsigned q with x = d*(q - kOff) (Q8_0 has no offset but any sign, kOff =
// -1 takes the sign trick); kMin: x = d*q + m (f16 m after d). Eight blocks are reduced together
// and scaled as one vector (sixteen at a time first where AVX-512 has blocks16_512); the offset
// and min terms use the activation block sums xs. T activation rows at once, as for dot_q45k.
// `unpacked` (T > 1, builds without the 512-bit kernels): the row's weights already unpacked, 32
// bytes a block (unpack_row), read in place of unpacking them here; the scales still come from w.
template <typename B, int T>
void dot_blocks32(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out,
                  const uint8_t* unpacked = nullptr) {
  constexpr int kBytes = B::kBytes, kOff = B::kOff;
  constexpr bool kMin = B::kMin;
  __m256 acc[T], macc[T];
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = macc[t] = _mm256_setzero_ps();
  // The block's dots with every row: p[t] for row t.
  auto block = [&](const uint8_t* wb, int64_t b, __m256i* p) {
    const __m256i q = T > 1 && !PAGODA_AVX512_VNNI && unpacked ? load32(unpacked + 32 * b) : B::unpack(wb);
    const __m256i aq = kOff < 0 ? _mm256_sign_epi8(q, q) : q;
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256i xv = load32(reinterpret_cast<const uint8_t*>(qx + t * 32 * nb + b * 32));
      p[t] = dot_u8s8(_mm256_setzero_si256(), aq, kOff < 0 ? _mm256_sign_epi8(xv, q) : xv);
    }
  };
  int64_t b = 0;
#if PAGODA_AVX512_VNNI
  {
    __m512 acc512[T], macc512[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc512[t] = macc512[t] = _mm512_setzero_ps();
    for (; b + kGroup512 <= nb; b += kGroup512, w += kGroup512 * kBytes) {
      if (T == 1) prefetch_bytes_ahead<kGroup512 * kBytes, kAheadBytes32>(w);
#if PAGODA_AVX512_VBMI
      if constexpr (T == 1 && B::kNib >= 0) {
        blocks16_nib<B>(w, qx, dx, xs, b, acc512, macc512);
        continue;
      }
#endif
      blocks16_512<B, T>(w, qx, dx, xs, nb, b, acc512, macc512);
    }
    // Their sums enter the 256-bit accumulators' lanes first, in the same way for every T.
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = fold512(_mm512_add_ps(acc512[t], macc512[t]));
  }
#endif
  // Eight blocks' sums s[t] (lane i: block b + i, row t) scaled into the accumulators.
  auto scale8 = [&](__m256i* s, const uint8_t* wg, int64_t bg) {
    const __m256 d = halves8(wg, kBytes);
    const __m256 m = kMin ? halves8(wg + 2, kBytes) : _mm256_setzero_ps();
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256i xsv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + t * nb + bg));
      if (kOff > 0) s[t] = _mm256_sub_epi32(s[t], _mm256_mullo_epi32(xsv, _mm256_set1_epi32(kOff)));
      const __m256 dxv = load8f(dx + t * nb + bg);
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dxv), _mm256_cvtepi32_ps(s[t]), acc[t]);
      if (kMin) macc[t] = _mm256_fmadd_ps(_mm256_mul_ps(m, dxv), _mm256_cvtepi32_ps(xsv), macc[t]);
    }
  };
  float tail[T] = {};
  // One block's sum s (row t) into tail[t].
  auto scale1 = [&](int32_t s, int t, const uint8_t* wb, int64_t bb) {
    if (kOff > 0) s -= kOff * xs[t * nb + bb];
    // Explicit fmas (not left to contraction), so gemm16's panels can repeat them lane for lane.
    tail[t] = std::fma(f16s(wb) * dx[t * nb + bb], float(s), tail[t]);
    if (kMin) tail[t] = std::fma(f16s(wb + 2) * dx[t * nb + bb], float(xs[t * nb + bb]), tail[t]);
  };
  if constexpr (x32_pairs<B>()) {
    // Blocks bp and bp + 1 against every row: p[t] (lanes 0..3 block bp, 4..7 block bp + 1).
    auto pair = [&](const uint8_t* wp, int64_t bp, __m256i* p) {
      __m256i lo, hi;
      if (T > 1 && unpacked) {
        lo = load32(unpacked + 32 * bp);
        hi = load32(unpacked + 32 * bp + 32);
      } else {
        unpack_pair<B>(wp, lo, hi);
      }
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) p[t] = pair_dot<B>(lo, hi, reinterpret_cast<const uint8_t*>(qx + t * 32 * nb + bp * 32));
    };
    // One row: a group's float step (scale8) runs after the next group's integer work, as the
    // K-quant row kernels do theirs (same operations in the same order; from L2 Q4_0 1.05x,
    // Q5_0 1.07x, IQ4_NL 1.03x).
    // (Batches and Q4_1/Q5_1 step in place: no gain measured, Q5_1 0.98x.)
    constexpr bool kLate = T == 1 && !kMin;
    [[maybe_unused]] __m256i ps = _mm256_setzero_si256();
    [[maybe_unused]] const uint8_t* pw = nullptr;
    [[maybe_unused]] int64_t pb = 0;
    for (; b + 8 <= nb; b += 8, w += 8 * kBytes) {
      if (T == 1) prefetch_bytes_ahead<8 * kBytes, kAheadBytes32>(w);
      // Pairs 0, 1 hadd into [b0 b0 b2 b2 | b1 b1 b3 b3], pairs 2, 3 likewise for blocks 4..7, and
      // those two into [b0 b2 b4 b6 | b1 b3 b5 b7], folded as they come (few live registers at T = 4).
      __m256i first[T], third[T], s[T];
      #pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        __m256i p[T];
        pair(w + 2 * i * kBytes, b + 2 * i, p);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          if (i == 0) first[t] = p[t];
          else if (i == 1) first[t] = _mm256_hadd_epi32(first[t], p[t]);
          else if (i == 2) third[t] = p[t];
          else s[t] = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(first[t], _mm256_hadd_epi32(third[t], p[t])),
                                                   _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        }
      }
      if constexpr (kLate) {
        if (pw) scale8(&ps, pw, pb);
        ps = s[0], pw = w, pb = b;
      } else {
        scale8(s, w, b);
      }
    }
    if constexpr (kLate)
      if (pw) scale8(&ps, pw, pb);
    for (; b + 2 <= nb; b += 2, w += 2 * kBytes) {
      __m256i p[T];
      pair(w, b, p);
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m128i s01 = _mm_hadd_epi32(_mm256_castsi256_si128(p[t]), _mm256_extracti128_si256(p[t], 1));
        const __m128i s = _mm_hadd_epi32(s01, s01);  // block b's sum in lane 0, b + 1's in lane 1
        scale1(_mm_cvtsi128_si32(s), t, w, b);
        scale1(_mm_extract_epi32(s, 1), t, w + kBytes, b + 1);
      }
    }
  }
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
    // quad[0]'s low 128 bits hold blocks 0..3 summed over lanes 0..3, its high bits over lanes
    // 4..7; quad[1] the same for blocks 4..7.
    __m256i s[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      s[t] = _mm256_add_epi32(_mm256_permute2x128_si256(quad[0][t], quad[1][t], 0x20),
                              _mm256_permute2x128_si256(quad[0][t], quad[1][t], 0x31));
    scale8(s, w, b);
  }
  for (; b < nb; ++b, w += kBytes) {  // with pairs, a row's odd last block (stored unpaired)
    __m256i p[T];
    block(w, b, p);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) scale1(hsum8i(p[t]), t, w, b);
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) out[t] = hsum8(_mm256_add_ps(acc[t], macc[t])) + tail[t];
}

// A row's blocks as dot_blocks32 unpacks them, 32 bytes a block into u (UnpackRow): two blocks
// as their low and high halves where x32_pairs, the odd last block alone.
template <typename B>
void unpack_row(const uint8_t* w, int64_t nb, uint8_t* u) {
  int64_t b = 0;
  if constexpr (x32_pairs<B>())
    for (; b + 2 <= nb; b += 2) {
      __m256i lo, hi;
      unpack_pair<B>(w + b * B::kBytes, lo, hi);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 32 * b), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 32 * b + 32), hi);
    }
  for (; b < nb; ++b) _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 32 * b), B::unpack(w + b * B::kBytes));
}
// Four activation rows against a row unpack_row has unpacked into u (UnpackedDot4).
template <typename B>
void dot4_unpacked(const uint8_t* w, const uint8_t* u, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb,
                   float* out) {
  dot_blocks32<B, 4>(w, qx, dx, xs, nb, out, u);
}

template <typename B, int T>
void dot_t(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out) {
  dot_blocks32<B, T>(w, qx, dx, xs, nb, out);
}

template <typename B>
float dot_1(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb) {
  float r;
  dot_blocks32<B, 1>(w, qx, dx, xs, nb, &r);
  return r;
}
template <typename B>
void dot_rows(const uint8_t* w, size_t stride, int64_t rows, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb,
              float* out) {
  for (int64_t r = 0; r < rows; ++r) dot_blocks32<B, 1>(w + size_t(r) * stride, qx, dx, xs, nb, out + r);
}

// The calling thread's panel memory, at least `bytes`, 64-byte aligned (kept for its next panel).
inline uint8_t* panel_store(size_t bytes) {
  thread_local std::vector<uint8_t> store;
  if (store.size() < bytes + 64) store.resize(bytes + 64);
  return store.data() + (64 - reinterpret_cast<uintptr_t>(store.data()) % 64) % 64;
}

// Dwords transposed: on entry r[j] holds row j's eight dwords, on return r[k] holds dword k of
// rows 0..7 (dword j: row j's). 24 shuffles where the panels' packing copied 64 dwords one at a
// time: at a 16-token prompt that packing took as long as the products (110M Q4_0, docs/perf.md).
inline void transpose8_epi32(__m256i r[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {  // [r_2i.0 r_2i+1.0 r_2i.1 r_2i+1.1 | .4 .5], [.2 .3 | .6 .7]
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h)  // rows 4h..4h+3: u[4h + c] dword c of each (low lane), c + 4 (high)
    for (int i = 0; i < 2; ++i) {
      u[4 * h + 2 * i] = _mm256_unpacklo_epi64(t[4 * h + i], t[4 * h + i + 2]);
      u[4 * h + 2 * i + 1] = _mm256_unpackhi_epi64(t[4 * h + i], t[4 * h + i + 2]);
    }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
  }
}

// The 8 rows' vectors r[j] transposed by dwords and stored as out[0..7] (32 bytes each, aligned).
inline void store_transposed8(__m256i r[8], uint8_t* out) {
  transpose8_epi32(r);
  for (int k = 0; k < 8; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * k), r[k]);
}

// The rows packed after a panel, [next, next + bytes), asked for from memory in equal shares, one
// before each of the panel's `passes` token passes (ahead()): at a 16-token prompt the packing
// otherwise waited on DRAM for half its time (110M IQ4_NL on AVX2, docs/perf.md). Prefetches past
// a tensor do no harm.
class NextRows {
 public:
  NextRows(const uint8_t* next, size_t bytes, int64_t passes)
      : p_(reinterpret_cast<const char*>(next)),
        lines_((bytes + 63) / 64),
        share_((lines_ + size_t(std::max<int64_t>(1, passes)) - 1) / size_t(std::max<int64_t>(1, passes))) {}
  void ahead() {
    for (const size_t end = std::min(lines_, line_ + share_); line_ < end; ++line_) _mm_prefetch(p_ + 64 * line_, _MM_HINT_T0);
  }

 private:
  const char* p_;
  size_t lines_, share_, line_ = 0;
};

// A panel's tokens: pass.operator()<kStep>(t) for kStep tokens at a time from t = 0, then
// operator()<1> for the rest, each pass after a share of the next rows (NextRows).
template <int kStep, typename Pass>
void token_passes(int64_t tokens, const uint8_t* next, size_t bytes, Pass pass) {
  if (tokens <= 0) return;
  NextRows rows(next, bytes, tokens / kStep + tokens % kStep);
  int64_t t = 0;
  for (; t + kStep <= tokens; t += kStep) rows.ahead(), pass.template operator()<kStep>(t);
  for (; t < tokens; ++t) rows.ahead(), pass.template operator()<1>(t);
}

// dot_blocks32's last steps for accumulator classes v(c) (acc + macc of its lane c): hsum8's tree
// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)), then + tail. The integer panels replay it
// with a weight row per vector lane (V: __m256 or __m512, add: its addition).
template <typename V, typename At, typename Add>
inline V replay_hsum8(At v, V tail, Add add) {
  V c[8];
  for (int i = 0; i < 8; ++i) c[i] = v(i);
  const V even = add(add(c[0], c[4]), add(c[2], c[6]));
  const V odd = add(add(c[1], c[5]), add(c[3], c[7]));
  return add(add(even, odd), tail);
}

#if !PAGODA_AVX512_VNNI
// ---- Prompts in builds without the 512-bit kernels: 8 weight rows at a time, a lane per row ----
//
// dot_blocks32 reduces each block's lanes per activation row (and, for Q8_0 and IQ4_NL, flips
// activation signs). Here 8 weight rows are first unpacked once into a panel where a vector lane
// is a row: for the unsigned formats (Q4_0, Q4_1, Q5_0, Q5_1) vector k of a block holds elements
// 4k..4k+3 of every row as bytes, multiplied by maddubs against the activations' broadcast quad,
// several products summed in int16 before one madd (no saturation: at most 8 x 2 x 15 x 127 or
// 4 x 2 x 31 x 127); for the signed ones (Q8_0, IQ4_NL) the panel also holds the quads'
// magnitudes, multiplied against the broadcast quad with the weights' signs (maddubs has no signed
// x signed form, and shifting the weights by 128 would saturate it), one madd per maddubs. Either
// way a block's dot with a token is the 8 rows' exact integer sums in 8 lanes, with no reduction,
// and the weight vectors serve kPanel8Tokens tokens from registers. (Widening both sides to int16
// for madd ran at 0.7-0.95x of the row kernels; this form at 1.3-1.5x.)
//
// The float arithmetic is dot_blocks32's, lane for lane (its accumulator lane c, the 8-block
// groups, the tail blocks' fmas, hsum8's tree), so a token's outputs are the same bits as the
// same token multiplied alone.
constexpr int kPanel8Rows = 8, kPanel8Tokens = 4;

// Per block: 8 vectors of byte quads (vector k, dword j: row j's elements 4k..4k+3), for the
// signed formats 8 more of their magnitudes, the 8 rows' scales d, then (kMin) their mins.
template <typename B>
constexpr int64_t panel8_weight_bytes() { return B::kOff < 0 ? 512 : 256; }
template <typename B>
constexpr int64_t panel8_block_bytes() { return panel8_weight_bytes<B>() + 32 + (B::kMin ? 32 : 0); }

// Nibble panels, for the 4-bit formats without fifth bits (Q4_0, Q4_1, IQ4_NL): per block the 8
// rows' nibble bytes as 4 vectors (vector k, dword j: row j's bytes 4k..4k+3, whose low nibbles
// are elements 4k..4k+3 and high nibbles 16 + 4k..), then the 8 rows' f16 d (and m): 8 blocks'
// bytes, so 8 rows packed take the bytes they took in the file. Packing is a 4 x 8 transpose of
// dwords, no unpacking; the products split each vector into the two the full panel holds (and, for
// IQ4_NL, look them up), once per block for every 4 tokens. At a 4-token prompt packing the full
// panel took longer than the products (110M IQ4_NL), which kept these formats on their row kernels
// below 6 tokens.
//
// Compact panels are these; for Q5_0 and Q5_1 the same with the 8 rows' fifth-bit words after the
// nibbles (dword j: row j's qh), 160 bytes before the scales; and for Q8_0 its quads as the full
// panel holds them without their magnitudes (taken per pass instead): 256 + 16 bytes. Each is 8
// blocks' bytes. The CPU backend keeps weights of these types packed so (pack_kept_panels), which
// serves decode too.
template <typename B>
constexpr bool panel8_nibbles() {
  if constexpr (B::kNib < 0) return false;
  else return B::kQh < 0;
}
template <typename B>
constexpr bool panel8_fifth_bits() {
  if constexpr (B::kNib < 0) return false;
  else return B::kQh >= 0;
}
template <typename B>
constexpr bool panel8_compact() {
  return B::kNib >= 0 || std::is_same_v<B, BlocksQ8_0>;
}
template <typename B>
constexpr int64_t panel8c_block_bytes() { return 8 * B::kBytes; }  // quads, 16 (d) [+ 16 (m)]
template <typename B>
constexpr int64_t panel8c_weight_bytes() { return B::kNib < 0 ? 256 : panel8_fifth_bits<B>() ? 160 : 128; }

template <typename B>
void pack_panel8c(const uint8_t* w, size_t stride, int64_t nb, uint8_t* panel) {
  static_assert(panel8c_block_bytes<B>() == panel8c_weight_bytes<B>() + 16 + (B::kMin ? 16 : 0));
  auto f16s = [&](const uint8_t* wb, int off) { return words<8>([&](int j) { return wb + size_t(j) * stride + off; }); };
  if constexpr (B::kNib < 0) {  // Q8_0: the full panel's quads
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* pb = panel + b * panel8c_block_bytes<B>();
      const uint8_t* wb = w + size_t(b) * B::kBytes;
      __m256i q[kPanel8Rows];
      for (int j = 0; j < kPanel8Rows; ++j) q[j] = B::unpack(wb + size_t(j) * stride);
      transpose8_epi32(q);
      for (int k = 0; k < 8; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + 32 * k), q[k]);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + 256), f16s(wb, 0));
    }
    return;
  }
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* pb = panel + b * panel8c_block_bytes<B>();
    const uint8_t* wb = w + size_t(b) * B::kBytes;
    __m256i r[4];  // rows j and j + 4
    for (int j = 0; j < 4; ++j)
      r[j] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(wb + size_t(j + 4) * stride + B::kNib),
                                 reinterpret_cast<const __m128i*>(wb + size_t(j) * stride + B::kNib));
    // A 4 x 4 dword transpose in each 128-bit half: vector k = dword k of rows 0..3 | 4..7.
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i* out = reinterpret_cast<__m256i*>(pb);
    _mm256_storeu_si256(out + 0, _mm256_unpacklo_epi64(t0, t2));
    _mm256_storeu_si256(out + 1, _mm256_unpackhi_epi64(t0, t2));
    _mm256_storeu_si256(out + 2, _mm256_unpacklo_epi64(t1, t3));
    _mm256_storeu_si256(out + 3, _mm256_unpackhi_epi64(t1, t3));
    if constexpr (panel8_fifth_bits<B>()) {
      uint32_t qh[kPanel8Rows];
      for (int j = 0; j < kPanel8Rows; ++j) std::memcpy(&qh[j], wb + size_t(j) * stride + B::kQh, 4);
      std::memcpy(pb + 128, qh, sizeof(qh));
    }
    constexpr int64_t kWB = panel8c_weight_bytes<B>();
    _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + kWB), f16s(wb, 0));
    if (B::kMin) _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + kWB + 16), f16s(wb, 2));
  }
}

template <typename B>
void pack_panel8(const uint8_t* w, size_t stride, int64_t nb, uint8_t* panel) {
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* pb = panel + b * panel8_block_bytes<B>();
    float* d = reinterpret_cast<float*>(pb + panel8_weight_bytes<B>());
    __m256i q[kPanel8Rows];
    for (int j = 0; j < kPanel8Rows; ++j) {
      const uint8_t* wb = w + size_t(j) * stride + size_t(b) * B::kBytes;
      q[j] = B::unpack(wb);
      d[j] = f16s(wb);
      if (B::kMin) d[kPanel8Rows + j] = f16s(wb + 2);
    }
    transpose8_epi32(q);
    for (int k = 0; k < 8; ++k) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(pb + 32 * k), q[k]);
      if constexpr (B::kOff < 0)  // and their magnitudes
        _mm256_store_si256(reinterpret_cast<__m256i*>(pb + 256 + 32 * k), _mm256_abs_epi8(q[k]));
    }
  }
}

// A compact panel block's 8 weight vectors as the full panel holds them (vector k: elements
// 4k..4k+3 of every row, as bytes).
template <typename B>
inline void compact_weights(const uint8_t* pb, __m256i* wv) {
  if constexpr (B::kNib < 0) {
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) wv[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 32 * k));
  } else {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i n = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 32 * k));
      wv[k] = _mm256_and_si256(n, low4);
      wv[4 + k] = _mm256_and_si256(_mm256_srli_epi16(n, 4), low4);
      if constexpr (B::kOff < 0) wv[k] = B::lookup(wv[k]), wv[4 + k] = B::lookup(wv[4 + k]);
    }
    if constexpr (panel8_fifth_bits<B>()) {
      // Vector v holds elements 4v..4v+3, whose fifth bits are bits 4v..4v+3 of each row's qh:
      // byte v / 2 of the dword, spread to the dword's 4 bytes, each testing its own bit.
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 128));
      const __m256i at = _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404, 0x08080808, 0x0C0C0C0C);
      #pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        const __m256i spread = _mm256_shuffle_epi8(qh, _mm256_add_epi8(at, _mm256_set1_epi8(char(v / 2))));
        const __m256i bit = _mm256_set1_epi32(v % 2 ? int(0x80402010) : 0x08040201);
        wv[v] = _mm256_or_si256(wv[v], _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                                                        _mm256_set1_epi8(16)));
      }
    }
  }
}

// The full panel (pack_panel8's) of a compact one: for prompts long enough that unpacking the
// compact panel once beats doing it at every 4-token pass.
template <typename B>
void expand_panel8c(const uint8_t* compact, int64_t nb, uint8_t* full) {
  constexpr int64_t kWB = panel8c_weight_bytes<B>();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pb = compact + b * panel8c_block_bytes<B>();
    uint8_t* fb = full + b * panel8_block_bytes<B>();
    __m256i wv[8];
    compact_weights<B>(pb, wv);
    for (int k = 0; k < 8; ++k) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(fb + 32 * k), wv[k]);
      if constexpr (B::kOff < 0)
        _mm256_store_si256(reinterpret_cast<__m256i*>(fb + 256 + 32 * k), _mm256_abs_epi8(wv[k]));
    }
    float* d = reinterpret_cast<float*>(fb + panel8_weight_bytes<B>());
    _mm256_store_ps(d, halves8(pb + kWB));
    if (B::kMin) _mm256_store_ps(d + 8, halves8(pb + kWB + 16));
  }
}

// out[t * ldo + j] for the panel's 8 rows j and tokens t < T (token t's activations at qx + t * 32
// * nb, dx + t * nb, xs + t * nb).
// kCompact: the panel is pack_panel8c's (compact), else pack_panel8's.
template <typename B, int T, bool kCompact = false>
void panel8_tokens(const uint8_t* panel, int64_t nb, const int8_t* qx, const float* dx, const int32_t* xs, float* out,
                   int64_t ldo) {
  constexpr int kOff = B::kOff;
  constexpr bool kMin = B::kMin;
  constexpr int64_t kPB = kCompact ? panel8c_block_bytes<B>() : panel8_block_bytes<B>();
  constexpr int64_t kWB = kCompact ? panel8c_weight_bytes<B>() : panel8_weight_bytes<B>();
  // The block's 8 weight vectors (vector k: elements 4k..4k+3 of every row), from either panel.
  auto weights = [&](const uint8_t* pb, __m256i* wv) {
    if constexpr (kCompact) {
      compact_weights<B>(pb, wv);
    } else {
      #pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) wv[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 32 * k));
    }
  };
  // Quads summed in int16 before a madd: 8 for weights below 16, 4 for five-bit weights.
  constexpr int kGroup = std::is_same_v<B, BlocksQ5_0> || std::is_same_v<B, BlocksQ5_1> ? 4 : 8;
  // Block b's exact integer dots with every token, less the offset term: s[t], lane j for row j.
  auto sums = [&](int64_t b, __m256i* s) {
    const uint8_t* pb = panel + b * kPB;
    if constexpr (kOff < 0) {  // |w| against sign(x, w), one maddubs per madd (|w| may reach 128)
      // The running sums in locals: in s[] (the caller's array) GCC stored and reloaded them at
      // every step in one of its two copies of this loop (Matmul64/iq4_nl 1.08x as locals).
      __m256i r[T];
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) r[t] = _mm256_setzero_si256();
      __m256i wvs[8];
      weights(pb, wvs);
      #pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m256i wv = wvs[k];
        const __m256i aw = kCompact ? _mm256_abs_epi8(wv)
                                     : _mm256_load_si256(reinterpret_cast<const __m256i*>(pb + 256 + 32 * k));
        const int64_t at = x32_slot(x32_pairs<B>() ? 1 : 0, b, 4 * k, nb);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          int32_t x4;
          std::memcpy(&x4, qx + t * 32 * nb + at, 4);
          r[t] = dot_u8s8(r[t], aw, _mm256_sign_epi8(_mm256_set1_epi32(x4), wv));
          asm("" : "+x"(r[t]));  // one running sum per token (GCC otherwise builds a tree and spills)
        }
      }
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) s[t] = r[t];
    } else {
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_si256();
      __m256i wvs[8];
      weights(pb, wvs);
      #pragma GCC unroll 2
      for (int g = 0; g < 8; g += kGroup) {
        __m256i p[T];
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) p[t] = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int k = g; k < g + kGroup; ++k) {
          const __m256i wv = wvs[k];
          const int64_t at = x32_slot(x32_pairs<B>() ? 1 : 0, b, 4 * k, nb);
          #pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            int32_t x4;
            std::memcpy(&x4, qx + t * 32 * nb + at, 4);
            p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(wv, _mm256_set1_epi32(x4)));
          }
        }
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(p[t], ones16()));
      }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      if (kOff > 0) s[t] = _mm256_sub_epi32(s[t], _mm256_set1_epi32(xs[t * nb + b] * kOff));
  };
  // dot_blocks32's accumulators: class c is its lane c; blocks past the last group of eight go
  // into `tail` (scale term, then min term, per block, as its scalar fmas).
  const __m256 zero = _mm256_setzero_ps();
  __m256 acc[8][T], macc[8][T], tail[T];
  for (int c = 0; c < 8; ++c)
    for (int t = 0; t < T; ++t) acc[c][t] = macc[c][t] = zero;
  for (int t = 0; t < T; ++t) tail[t] = zero;
  const int64_t grouped = nb - nb % 8;
  for (int64_t b = 0; b < nb; ++b) {
    // Decode streams a weight kept in panels from memory: asked ahead as the row kernels ask.
    if constexpr (kCompact && T == 1) prefetch_bytes_ahead<kPB, kAheadBytes32>(panel + b * kPB);
    __m256i s[T];
    sums(b, s);
    const uint8_t* sc = panel + b * kPB + kWB;
    auto scale = [&](int i) {  // the 8 rows' d (i = 0) or m (1)
      if constexpr (kCompact) return halves8(sc + 16 * i);
      else return _mm256_load_ps(reinterpret_cast<const float*>(sc) + 8 * i);
    };
    const __m256 d = scale(0), m = kMin ? scale(1) : zero;
    const int c = int(b % 8);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256 dxv = _mm256_set1_ps(dx[t * nb + b]);
      __m256& a = b < grouped ? acc[c][t] : tail[t];
      a = _mm256_fmadd_ps(_mm256_mul_ps(d, dxv), _mm256_cvtepi32_ps(s[t]), a);
      if (kMin) {
        __m256& ma = b < grouped ? macc[c][t] : tail[t];
        ma = _mm256_fmadd_ps(_mm256_mul_ps(m, dxv), _mm256_set1_ps(float(xs[t * nb + b])), ma);
      }
    }
  }
  const auto add = [](__m256 x, __m256 y) { return _mm256_add_ps(x, y); };
  for (int t = 0; t < T; ++t)
    _mm256_storeu_ps(out + t * ldo, replay_hsum8([&](int c) { return add(acc[c][t], macc[c][t]); }, tail[t], add));
}

// 16 rows (kGemmRows) as two panels of 8 rows made by pack(rows, panel), every token through
// each: pass.operator()<T>(panel, first token, out) for kPanel8Tokens tokens at a time, then one.
template <typename Pack, typename Pass>
void gemm8x2(const uint8_t* w, size_t stride, size_t panel_bytes, int64_t tokens, float* out, int64_t ldo, Pack pack,
             Pass pass) {
  uint8_t* panel = panel_store(panel_bytes);
  for (int h = 0; h < 2; ++h) {
    pack(w + size_t(h * kPanel8Rows) * stride, panel);
    float* o = out + h * kPanel8Rows;
    // the next 8 rows: the second panel's, then the next call's first
    token_passes<kPanel8Tokens>(tokens, w + size_t((h + 1) * kPanel8Rows) * stride, size_t(kPanel8Rows) * stride,
                                [&]<int T>(int64_t t) { pass.template operator()<T>(panel, t, o + t * ldo); });
  }
}

template <typename B>
void gemm8x2_type(const uint8_t* w, size_t stride, int64_t nb, const int8_t* qx, const float* dx, const int32_t* xs,
                  int64_t tokens, float* out, int64_t ldo) {
  // IQ4_NL's nibbles are looked up and their magnitudes taken at every 4-token pass, Q5's fifth
  // bits spread; from 64 tokens the full panel, which holds them, ran 1.05x faster (Matmul64/iq4_nl).
  if constexpr (B::kNib >= 0)
    if ((panel8_nibbles<B>() && B::kOff >= 0) || tokens < 64) {
      gemm8x2(w, stride, size_t(nb * panel8c_block_bytes<B>()), tokens, out, ldo,
              [&](const uint8_t* rows, uint8_t* panel) { pack_panel8c<B>(rows, stride, nb, panel); },
              [&]<int T>(const uint8_t* panel, int64_t t, float* o) {
                panel8_tokens<B, T, true>(panel, nb, qx + t * 32 * nb, dx + t * nb, xs + t * nb, o, ldo);
              });
      return;
    }
  gemm8x2(w, stride, size_t(nb * panel8_block_bytes<B>()), tokens, out, ldo,
          [&](const uint8_t* rows, uint8_t* panel) { pack_panel8<B>(rows, stride, nb, panel); },
          [&]<int T>(const uint8_t* panel, int64_t t, float* o) {
            panel8_tokens<B, T>(panel, nb, qx + t * 32 * nb, dx + t * nb, xs + t * nb, o, ldo);
          });
}

// Rows [o0, o1) of a weight kept in compact panels (pack_kept_panels: 8-row group g at byte 8g x
// stride, the rows past the last group as in the file) against `tokens` tokens: out[t * ldo + o].
// o0 and o1 fall on groups, or o1 is `rows` (kept_panel_matmul's contract); the rows past the
// groups go through the row kernel, which gives the panels' bits.
template <typename B>
void kept_panel_rows(const uint8_t* panel, size_t stride, int64_t rows, int64_t nb, int64_t o0, int64_t o1,
                     const int8_t* qx, const float* dx, const int32_t* xs, int64_t tokens, float* out, int64_t ldo) {
  const int64_t grouped = rows / kPanel8Rows * kPanel8Rows;
  // From 64 tokens the types whose compact panels cost more than an AND and a shift per vector
  // (IQ4_NL's lookups and magnitudes, Q5's fifth bits, Q8_0's magnitudes) expand each group once
  // into the full panel (Matmul64 0.85-0.95x in their compact panels).
  constexpr int64_t kExpandFrom = B::kOff < 0 || panel8_fifth_bits<B>() ? 64 : INT64_MAX;
  for (int64_t r = o0; r < std::min(o1, grouped); r += kPanel8Rows) {
    const uint8_t* pg = panel + size_t(r) * stride;
    if (tokens >= kExpandFrom) {
      uint8_t* full = panel_store(size_t(nb * panel8_block_bytes<B>()));
      expand_panel8c<B>(pg, nb, full);
      token_passes<kPanel8Tokens>(tokens, nullptr, 0, [&]<int T>(int64_t t) {
        panel8_tokens<B, T>(full, nb, qx + t * 32 * nb, dx + t * nb, xs + t * nb, out + t * ldo + r, ldo);
      });
    } else {
      token_passes<kPanel8Tokens>(tokens, nullptr, 0, [&]<int T>(int64_t t) {
        panel8_tokens<B, T, true>(pg, nb, qx + t * 32 * nb, dx + t * nb, xs + t * nb, out + t * ldo + r, ldo);
      });
    }
  }
  for (int64_t o = std::max(o0, grouped); o < o1; ++o)
    for (int64_t t = 0; t < tokens; ++t)
      dot_blocks32<B, 1>(panel + size_t(o) * stride, qx + t * 32 * nb, dx + t * nb, xs + t * nb, nb, out + t * ldo + o);
}

// ---- The same for the K-quants ----
//
// sdot_q45k and sdot_k16 reduce each super-block to exact integers: E, the scaled dot (Q3_K and
// Q6_K: less the offset), and M, the min term (Q4_K, Q5_K, Q2_K). A panel of 8 rows reaches them
// with a row per lane: per sub-block its quads' maddubs summed in int16 (four at a time, Q6_K's
// 6-bit quants two: 2 x 2 x 63 x 127 fits, four would not; eight for Q4_K measured 0.9-1.0x), one
// madd by the rows' (scale, scale) pairs; M, or the offset, from madds of (min, min) or (sc_2l,
// sc_2l+1) pairs against per-16 sums 2l and 2l + 1. The float steps are then the row kernels',
// lane for lane.
//
// Per super-block: 64 vectors of unsigned quants (vector k, dword j: row j's elements 4k..4k+3),
// one vector of scale pairs per sub-block, 8 of min or offset pairs, the rows' d, then dmin.
template <DType kType>
struct Panel8K {
  static constexpr bool kQ45 = kType == DType::Q4_K || kType == DType::Q5_K;
  static constexpr int kSubs = kQ45 ? 8 : 16;  // sub-blocks (scale pairs)
  static constexpr int kGroup = kType == DType::Q6_K ? 2 : 4;
  static constexpr int kShift = kQ45 ? -1 : K16<kType>::kOffShift;  // the offset's, or none
  static constexpr bool kMin = kQ45 || kType == DType::Q2_K;          // pairs hold mins (M)
  static constexpr int64_t kScales = 2048, kPairs = kScales + 32 * kSubs, kD = kPairs + 256, kDmin = kD + 32;
  static constexpr int64_t kBytes = kDmin + 32;
};

// Row j's super-block at wb as unsigned quants q[256] in element order, its sub-block scales as
// int16 (sc, the first kSubs lanes), its min or offset pairs' values as int16 (pv, against per-16
// sums), d and dmin.
template <DType kType>
void unpack_superblock8(const uint8_t* wb, uint8_t* q, __m256i& sc, __m256i& pv, float& d, float& dmin) {
  if constexpr (Panel8K<kType>::kQ45) {
    constexpr bool kFive = kType == DType::Q5_K;
    const __m128i sm = scales_mins_k4(wb + 4);  // [sc0..7, m0..7]
    sc = _mm256_cvtepu8_epi16(sm);
    pv = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));  // m_s at lanes 2s and 2s + 1
    const __m256i qh = kFive ? load32(wb + 16) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      __m256i lo, hi;
      q45k_chunk<kFive>(wb + (kFive ? 48 : 16), qh, c, lo, hi);
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 64 * c), lo);
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 64 * c + 32), hi);
    }
    d = f16s(wb);
    dmin = f16s(wb + 2);
  } else {
    const K16Header h = k16_header<kType>(wb);
    sc = h.sc16;
    pv = kType == DType::Q2_K ? h.mins : h.sc16;
    const __m256i hm = kType == DType::Q3_K ? load32(wb) : _mm256_setzero_si256();
    for (int n = 0; n < 2; ++n)
      for (int k = 0; k < 4; ++k)
        _mm256_store_si256(reinterpret_cast<__m256i*>(q + 128 * n + 32 * k), k16_run<kType>(wb, hm, n, k));
    d = _mm_cvtss_f32(h.dm);
    dmin = _mm_cvtss_f32(_mm_movehdup_ps(h.dm));
  }
}

template <DType kType>
void pack_panel8_k(const uint8_t* w, size_t stride, int64_t nsb, uint8_t* panel) {
  using L = Panel8K<kType>;
  constexpr int kBytes = kType == DType::Q4_K ? 144 : kType == DType::Q5_K ? 176 : K16<kType>::kBytes;
  alignas(32) uint8_t q[kPanel8Rows][256];
  for (int64_t sb = 0; sb < nsb; ++sb) {
    uint8_t* pb = panel + sb * L::kBytes;
    float* d = reinterpret_cast<float*>(pb + L::kD);
    float* dmin = reinterpret_cast<float*>(pb + L::kDmin);
    // Per row: its (sc_s, sc_s) int16 pairs as dwords, s < 8 and s >= 8, and its pv pairs.
    __m256i lo[kPanel8Rows], hi[kPanel8Rows], pairs[kPanel8Rows];
    for (int j = 0; j < kPanel8Rows; ++j) {
      __m256i sc;
      unpack_superblock8<kType>(w + size_t(j) * stride + size_t(sb) * kBytes, q[j], sc, pairs[j], d[j], dmin[j]);
      const __m256i a = _mm256_unpacklo_epi16(sc, sc), b = _mm256_unpackhi_epi16(sc, sc);  // [0..3 | 8..11], [4..7 | 12..15]
      lo[j] = _mm256_permute2x128_si256(a, b, 0x20), hi[j] = _mm256_permute2x128_si256(a, b, 0x31);
    }
    // Vector s of the scales: dword j = row j's (sc_s, sc_s); vector l of the pairs: (pv_2l, pv_2l+1).
    store_transposed8(lo, pb + L::kScales);
    if constexpr (L::kSubs > 8) store_transposed8(hi, pb + L::kScales + 256);
    store_transposed8(pairs, pb + L::kPairs);
    for (int v = 0; v < 8; ++v) {  // vectors 8v..8v+7 from each row's bytes 32v..32v+31
      __m256i r[kPanel8Rows];
      for (int j = 0; j < kPanel8Rows; ++j) r[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(q[j] + 32 * v));
      store_transposed8(r, pb + 32 * 8 * v);
    }
  }
}

// out[t * ldo + j] for the panel's 8 rows j and tokens t < T (token t's activations at qx + t *
// 256 * nsb, dx + t * nsb, xs + t * 16 * nsb).
template <DType kType, int T>
void panel8k_tokens(const uint8_t* panel, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs, float* out,
                    int64_t ldo) {
  using L = Panel8K<kType>;
  constexpr int kQuads = 64 / L::kSubs;  // per sub-block
  __m256 acc[T], macc[T];                // the row kernels' two chains, a row per lane
  for (int t = 0; t < T; ++t) acc[t] = macc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* pb = panel + sb * L::kBytes;
    __m256i e[T], o[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) e[t] = o[t] = _mm256_setzero_si256();
    for (int s = 0; s < L::kSubs; ++s) {
      const __m256i scv = _mm256_load_si256(reinterpret_cast<const __m256i*>(pb + L::kScales + 32 * s));
      #pragma GCC unroll 2
      for (int g = 0; g < kQuads; g += L::kGroup) {
        __m256i p[T];
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) p[t] = _mm256_setzero_si256();
        #pragma GCC unroll 4
        for (int k = kQuads * s + g; k < kQuads * s + g + L::kGroup; ++k) {
          const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(pb + 32 * k));
          #pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            int32_t x4;
            std::memcpy(&x4, qx + (t * nsb + sb) * 256 + 4 * k, 4);
            p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(wv, _mm256_set1_epi32(x4)));
            asm("" : "+x"(p[t]));  // GCC otherwise hoists the broadcasts and spills (1.08x)
          }
        }
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) e[t] = madd_add(e[t], p[t], scv);
      }
    }
    #pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) {
      const __m256i pv = _mm256_load_si256(reinterpret_cast<const __m256i*>(pb + L::kPairs + 32 * l));
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        int32_t xs2;
        std::memcpy(&xs2, xs + (t * nsb + sb) * 16 + 2 * l, 4);
        o[t] = madd_add(o[t], pv, _mm256_set1_epi32(xs2));
        asm("" : "+x"(o[t]));
      }
    }
    const __m256 d = _mm256_load_ps(reinterpret_cast<const float*>(pb + L::kD));
    const __m256 dmin = _mm256_load_ps(reinterpret_cast<const float*>(pb + L::kDmin));
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256 dxv = _mm256_set1_ps(dx[t * nsb + sb]);
      if constexpr (L::kShift >= 0) e[t] = _mm256_sub_epi32(e[t], _mm256_slli_epi32(o[t], L::kShift));
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dxv), _mm256_cvtepi32_ps(e[t]), acc[t]);
      const __m256i m = L::kMin ? o[t] : _mm256_setzero_si256();
      macc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dmin, dxv), _mm256_cvtepi32_ps(m), macc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(out + t * ldo, _mm256_sub_ps(acc[t], macc[t]));
}

template <DType kType>
void gemm8x2_k(const uint8_t* w, size_t stride, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs,
               int64_t tokens, float* out, int64_t ldo) {
  gemm8x2(w, stride, size_t(nsb * Panel8K<kType>::kBytes), tokens, out, ldo,
          [&](const uint8_t* rows, uint8_t* panel) { pack_panel8_k<kType>(rows, stride, nsb, panel); },
          [&]<int T>(const uint8_t* panel, int64_t t, float* o) {
            panel8k_tokens<kType, T>(panel, nsb, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, o, ldo);
          });
}

// ---- Q4_K and Q5_K weights kept in compact 8-row panels ----
//
// As the 32-element types' kept panels (pack_panel8c): per super-block, a group of 8 rows takes
// exactly the bytes its rows' super-blocks took in the file (8 x 144, Q5_K 8 x 176), arranged so
// that decode reads a row per vector lane, in the order the products read them:
//   96:         the rows' six-bit scales and mins (scale_min_k4's values) as pack_six_bit's 16 values
//               a row (sc0..3, m0..3, sc4..7, m4..7);
//   1024:       the nibbles: vector 8c + i (c < 4, i < 8), dword j = row j's quant bytes 32c + 4i..+3
//               (low nibbles: elements 4i..4i+3 of sub-block 2c; high: of sub-block 2c + 1);
//   Q5_K, 256:  the fifth bits: vector i, dword j = row j's qh bytes 4i..4i+3 (bit s: sub-block s);
//   16 + 16:    the rows' f16 d, then dmin.
// (Read out of order, with the scales after the quants, a group streamed from memory no faster
// than the row kernels and Q2_K's at 0.93x of them: one core, 1B shape, docs/perf.md.)
// The products reach sdot_q45k's exact integers E and M per super-block and repeat its float steps
// lane for lane (as panel8k_tokens does), so every output is the row kernel's bits. Against the row
// kernel a super-block of 8 rows costs 8 madds by the scales instead of 64 (vpmaddwd shares its two
// pipes with vpmaddubsw on Zen 3), no horizontal sums, one scale decode for the 8 rows, and prompts
// no longer pack.
template <DType kType>
struct KeptK {
  static constexpr bool kFive = kType == DType::Q5_K;
  static constexpr int kRowBytes = kFive ? 176 : 144, kQs = kFive ? 48 : 16;
  static constexpr int64_t kScales = 0, kNib = 96, kQh = kNib + 1024, kD = kQh + (kFive ? 256 : 0), kDmin = kD + 16;
  static constexpr int64_t kBytes = kDmin + 16;
  static_assert(kBytes == kPanel8Rows * kRowBytes);
};
constexpr bool kept_k(DType t) { return t == DType::Q4_K || t == DType::Q5_K; }

// Sixteen six-bit values a row for 8 rows (v[j][4g + s]: value s of group g of row j) in 96 bytes
// from which one vpshufb gives a value of every row as an int16 pair, dword j for row j: value s of
// row j sits at byte 4s + j % 4 of 128-bit lane j / 4 (kept_k_pick(s)). Bytes 0..63: two vectors of
// low nibbles (vector g / 2, groups 0 and 2 in the low nibbles, 1 and 3 in the high); 64..95: their
// top two bits (group g's at bits 2g, 2g + 1).
constexpr int kept_k_scale_at(int s, int j) { return 16 * (j / 4) + 4 * s + j % 4; }
inline void pack_six_bit(const uint8_t v[kPanel8Rows][16], uint8_t* out) {
  std::memset(out, 0, 96);
  for (int j = 0; j < kPanel8Rows; ++j)
    for (int g = 0; g < 4; ++g)
      for (int s = 0; s < 4; ++s) {
        const int at = kept_k_scale_at(s, j), val = v[j][4 * g + s];
        out[32 * (g / 2) + at] = uint8_t(out[32 * (g / 2) + at] | (val & 15) << (4 * (g % 2)));
        out[64 + at] = uint8_t(out[64 + at] | (val >> 4) << (2 * g));
      }
}
// pack_six_bit's groups back as bytes (g[i]: group i of every row, value s of row j at byte
// kept_k_scale_at(s, j)).
struct SixBit {
  __m256i g[4];
};
inline SixBit six_bit_values(const uint8_t* p) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
  const __m256i n0 = load32(p), n1 = load32(p + 32), hb = load32(p + 64);
  return {{_mm256_or_si256(_mm256_and_si256(n0, low4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), top2)),
           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(n0, 4), low4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), top2)),
           _mm256_or_si256(_mm256_and_si256(n1, low4), _mm256_and_si256(hb, top2)),
           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(n1, 4), low4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), top2))}};
}
// vpshufb indices for int16 pairs (a, b) of every row, dword j for row j: a and b the bytes at
// offsets a and b of the row's place (byte a + j % 4 of 128-bit lane j / 4), zero-extended. In a
// table, so that each is a constant operand (built at run time through an array, each cost a
// store-forwarding stall: Matmul4 q2_k 26 against 61 Gmadds/s).
struct KeptPicks {
  alignas(32) int8_t one[4][32];  // [s]: value s (< 4) of a group as (v, v)
  alignas(32) int8_t two[2][32];  // [h]: values 2h and 2h + 1 as (v_2h, v_2h+1)
};
inline constexpr KeptPicks kKeptPicks = [] {
  KeptPicks k{};
  auto fill = [](int8_t* p, int a, int b) {
    for (int r = 0; r < 8; ++r) {  // both 128-bit lanes alike
      const int at = 4 * (r % 4) + 16 * (r / 4);
      p[at] = int8_t(a + r % 4), p[at + 1] = -128, p[at + 2] = int8_t(b + r % 4), p[at + 3] = -128;
    }
  };
  for (int s = 0; s < 4; ++s) fill(k.one[s], 4 * s, 4 * s);
  for (int h = 0; h < 2; ++h) fill(k.two[h], 8 * h, 8 * h + 4);
  return k;
}();
// Value s (< 4) of a group as (v, v) int16 pairs.
inline __m256i kept_k_pick(int s) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(kKeptPicks.one[s])); }
// Values 2h and 2h + 1 (h < 2) of a group as an int16 pair (v_2h, v_2h+1).
inline __m256i kept_k_pick2(int h) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(kKeptPicks.two[h])); }

// The 32 bytes at `off` of each of 8 rows (row(j)) transposed by dwords into 8 vectors at out
// (vector i, dword j: row j's dword i; unaligned stores).
template <typename Row>
inline void put_transposed_rows(Row row, int off, uint8_t* out) {
  __m256i r[kPanel8Rows];
  for (int j = 0; j < kPanel8Rows; ++j) r[j] = load32(row(j) + off);
  transpose8_epi32(r);
  for (int i = 0; i < 8; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * i), r[i]);
}

template <DType kType>
void pack_kept_k(const uint8_t* w, size_t stride, int64_t nsb, uint8_t* group) {
  using L = KeptK<kType>;
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* wb = w + size_t(sb) * L::kRowBytes;
    uint8_t* pb = group + sb * L::kBytes;
    auto row = [&](int j) { return wb + size_t(j) * stride; };
    for (int c = 0; c < 4; ++c) put_transposed_rows(row, L::kQs + 32 * c, pb + L::kNib + 32 * 8 * c);
    if constexpr (L::kFive) put_transposed_rows(row, 16, pb + L::kQh);
    alignas(16) uint8_t sm[kPanel8Rows][16];  // [sc0..7, m0..7] per row, then as [sc0..3, m0..3, sc4..7, m4..7]
    for (int j = 0; j < kPanel8Rows; ++j) {
      const __m128i v = scales_mins_k4(row(j) + 4);
      _mm_store_si128(reinterpret_cast<__m128i*>(sm[j]), _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 1, 2, 0)));
    }
    pack_six_bit(sm, pb + L::kScales);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + L::kD), words<8>([&](int j) { return row(j); }));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + L::kDmin), words<8>([&](int j) { return row(j) + 2; }));
  }
}

// Vector 8c + i of a kept super-block's quants (pb) as unsigned bytes: sub-block 2c's (lo) and 2c + 1's (hi).
template <DType kType>
inline void kept_k_quants(const uint8_t* pb, int c, int i, __m256i& lo, __m256i& hi) {
  using L = KeptK<kType>;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i n = load32(pb + L::kNib + 32 * (8 * c + i));
  lo = _mm256_and_si256(n, low4), hi = _mm256_and_si256(_mm256_srli_epi16(n, 4), low4);
  if constexpr (L::kFive) {  // bits 2c and 2c + 1 of each qh byte to bit 4, as q45k_chunk
    const __m256i qh = load32(pb + L::kQh + 32 * i), b16 = _mm256_set1_epi8(16);
    const __m256i l5 = c < 2 ? _mm256_slli_epi16(qh, 4 - 2 * c) : c == 2 ? qh : _mm256_srli_epi16(qh, 2);
    const __m256i h5 = c < 2 ? _mm256_slli_epi16(qh, 3 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 3);
    lo = _mm256_or_si256(lo, _mm256_and_si256(l5, b16));
    hi = _mm256_or_si256(hi, _mm256_and_si256(h5, b16));
  }
}

// A kept super-block's rows' f16 d and dmin (nullptr: none, +0) as Panel8K's floats at fb.
template <DType kType>
inline void expand_kept_d(const uint8_t* d, const uint8_t* dmin, uint8_t* fb) {
  using P = Panel8K<kType>;
  _mm256_store_ps(reinterpret_cast<float*>(fb + P::kD), halves8(d));
  _mm256_store_ps(reinterpret_cast<float*>(fb + P::kDmin), dmin ? halves8(dmin) : _mm256_setzero_ps());
}

// A kept group as pack_panel8_k's panel (Panel8K), for prompts long enough that unpacking it
// once beats unpacking it at every 4-token pass.
template <DType kType>
void expand_kept_k(const uint8_t* group, int64_t nsb, uint8_t* full) {
  using L = KeptK<kType>;
  using P = Panel8K<kType>;
  static_assert(P::kSubs == 8);
  auto store = [](uint8_t* p, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); };
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* pb = group + sb * L::kBytes;
    uint8_t* fb = full + sb * P::kBytes;
    for (int c = 0; c < 4; ++c)
      for (int i = 0; i < 8; ++i) {  // elements 64c + 4i.. and 64c + 32 + 4i..: vectors 16c + i, 16c + 8 + i
        __m256i lo, hi;
        kept_k_quants<kType>(pb, c, i, lo, hi);
        store(fb + 32 * (16 * c + i), lo);
        store(fb + 32 * (16 * c + 8 + i), hi);
      }
    const SixBit sm = six_bit_values(pb + L::kScales);  // groups: sc0..3, m0..3, sc4..7, m4..7
    for (int s = 0; s < 8; ++s) {
      store(fb + P::kScales + 32 * s, _mm256_shuffle_epi8(sm.g[s < 4 ? 0 : 2], kept_k_pick(s % 4)));
      store(fb + P::kPairs + 32 * s, _mm256_shuffle_epi8(sm.g[s < 4 ? 1 : 3], kept_k_pick(s % 4)));
    }
    expand_kept_d<kType>(pb + L::kD, pb + L::kDmin, fb);
  }
}

// out[t * ldo + j] for the group's 8 rows j and tokens t < T (token t's activations at qx + t *
// 256 * nsb, dx + t * nsb, xs + t * 16 * nsb): sdot_q45k's results, the same bits.
template <DType kType, int T>
void kept_k_tokens(const uint8_t* group, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs, float* out,
                   int64_t ldo) {
  using L = KeptK<kType>;
  // Quads summed in int16 before a madd by the scale: at most kGroup x 2 x 15 (31) x 127.
  constexpr int kGroup = L::kFive ? 4 : 8;
  __m256 acc[T], macc[T];  // sdot_q45k's two chains, a row per lane
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = macc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* pb = group + sb * L::kBytes;
    // Decode streams the weight from memory: asked ahead as the 32-element kept panels ask.
    if constexpr (T == 1) prefetch_bytes_ahead<L::kBytes, kAheadBytes32>(pb);
    const SixBit sm = six_bit_values(pb + L::kScales);  // groups: sc0..3, m0..3, sc4..7, m4..7
    __m256i e[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) e[t] = _mm256_setzero_si256();
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i scs = sm.g[c < 2 ? 0 : 2];
      const __m256i slo = _mm256_shuffle_epi8(scs, kept_k_pick(2 * c % 4)), shi = _mm256_shuffle_epi8(scs, kept_k_pick(2 * c % 4 + 1));
      #pragma GCC unroll 2
      for (int g = 0; g < 8; g += kGroup) {
        __m256i plo[T], phi[T];
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) plo[t] = phi[t] = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int i = g; i < g + kGroup; ++i) {
          __m256i lo, hi;
          kept_k_quants<kType>(pb, c, i, lo, hi);
          #pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            const int8_t* x = qx + (t * nsb + sb) * 256 + 64 * c + 4 * i;
            int32_t xl, xh;
            std::memcpy(&xl, x, 4);
            std::memcpy(&xh, x + 32, 4);
            plo[t] = _mm256_add_epi16(plo[t], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xl)));
            phi[t] = _mm256_add_epi16(phi[t], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xh)));
          }
        }
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) e[t] = madd_add(madd_add(e[t], plo[t], slo), phi[t], shi);
      }
    }
    // M: each min against its sub-block's two per-16 sums.
    __m256i o[T];
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) o[t] = _mm256_setzero_si256();
    #pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) {
      const __m256i mv = _mm256_shuffle_epi8(sm.g[s < 4 ? 1 : 3], kept_k_pick(s % 4));
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        int32_t xs2;
        std::memcpy(&xs2, xs + (t * nsb + sb) * 16 + 2 * s, 4);
        o[t] = madd_add(o[t], mv, _mm256_set1_epi32(xs2));
      }
    }
    const __m256 d = halves8(pb + L::kD);
    const __m256 dmin = halves8(pb + L::kDmin);
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256 dxv = _mm256_set1_ps(dx[t * nsb + sb]);
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dxv), _mm256_cvtepi32_ps(e[t]), acc[t]);
      macc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dmin, dxv), _mm256_cvtepi32_ps(o[t]), macc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(out + t * ldo, _mm256_sub_ps(acc[t], macc[t]));
}

// ---- Q2_K and Q3_K weights kept in compact 8-row panels ----
//
// The same for the types of sixteen 16-element sub-blocks without Q6_K (K16), per super-block of a
// group in the 8 x 84 (Q3_K: 8 x 110) bytes its rows' super-blocks took in the file, in the order
// the products read them:
//   Q2_K, 128: the rows' scale bytes (scale | min << 4), sub-block s of row j at byte
//              kept_k_scale_at(s % 4, j) of vector s / 4; Q3_K, 96: the rows' sixteen six-bit scales
//              (stored + 32) as pack_six_bit's values;
//   512:       the 2-bit quants: vector 8n + i (n < 2, i < 8), dword j = row j's qs bytes 32n + 4i..+3
//              (bits 2k, 2k + 1: elements 128n + 32k + 4i.. of sub-block 8n + 2k + i / 4);
//   Q3_K, 256: the high-bit mask: vector i, dword j = row j's hmask bytes 4i..4i+3 (bit 4n + k: the
//              same elements' high bits);
//   16 (+ 16): the rows' f16 d (Q2_K: then dmin).
// Decode reaches sdot_k16's exact integers E (Q3_K: less the offset) and M (Q2_K) with a row per
// lane and repeats its float steps, so the same bits; per super-block and 8 rows 16 madds by the
// scales where the row kernel spends 128, and one scale decode.
template <DType kType>
struct KeptK16 {
  static constexpr bool kQ3 = kType == DType::Q3_K;
  static constexpr int kRowBytes = K16<kType>::kBytes, kQs = kQ3 ? 32 : 16, kRowScales = kQ3 ? 96 : 0, kRowD = kQ3 ? 108 : 80;
  static constexpr int64_t kScales = 0, kQ = kQ3 ? 96 : 128, kHm = kQ + 512, kD = kHm + (kQ3 ? 256 : 0), kDmin = kD + 16;
  static constexpr int64_t kBytes = kD + (kQ3 ? 16 : 32);
  static_assert(kBytes == kPanel8Rows * kRowBytes);
};
constexpr bool kept_k16(DType t) { return t == DType::Q2_K || t == DType::Q3_K; }

template <DType kType>
void pack_kept_k16(const uint8_t* w, size_t stride, int64_t nsb, uint8_t* group) {
  using L = KeptK16<kType>;
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* wb = w + size_t(sb) * L::kRowBytes;
    uint8_t* pb = group + sb * L::kBytes;
    auto row = [&](int j) { return wb + size_t(j) * stride; };
    for (int n = 0; n < 2; ++n) put_transposed_rows(row, L::kQs + 32 * n, pb + L::kQ + 32 * 8 * n);
    if constexpr (L::kQ3) {
      put_transposed_rows(row, 0, pb + L::kHm);
      alignas(32) int16_t sc[16];
      uint8_t v[kPanel8Rows][16];
      for (int j = 0; j < kPanel8Rows; ++j) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(sc), scales_q3k(row(j) + L::kRowScales));
        for (int s = 0; s < 16; ++s) v[j][s] = uint8_t(sc[s] + 32);
      }
      pack_six_bit(v, pb + L::kScales);
    } else {
      for (int j = 0; j < kPanel8Rows; ++j)
        for (int s = 0; s < 16; ++s) pb[L::kScales + 32 * (s / 4) + kept_k_scale_at(s % 4, j)] = row(j)[s];
      _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + L::kDmin), words<8>([&](int j) { return row(j) + L::kRowD + 2; }));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(pb + L::kD), words<8>([&](int j) { return row(j) + L::kRowD; }));
  }
}

// A kept super-block's sub-block scales as int16 pairs (scale(s): dword j = row j's (sc_s, sc_s))
// and its min or offset pairs (pair(l): (v_2l, v_2l+1), Q2_K's mins, Q3_K's scales).
template <DType kType>
struct KeptK16Scales {
  __m256i g[4], m[4];  // bytes, group s / 4: the scales (Q3_K: + 32), Q2_K's mins
  explicit KeptK16Scales(const uint8_t* p) {
    if constexpr (KeptK16<kType>::kQ3) {
      const SixBit v = six_bit_values(p);
      for (int q = 0; q < 4; ++q) g[q] = m[q] = v.g[q];
    } else {
      const __m256i low4 = _mm256_set1_epi8(0x0F);
      for (int q = 0; q < 4; ++q) {
        const __m256i b = load32(p + 32 * q);
        g[q] = _mm256_and_si256(b, low4), m[q] = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);
      }
    }
  }
  static __m256i sign(__m256i v) { return KeptK16<kType>::kQ3 ? _mm256_sub_epi16(v, _mm256_set1_epi16(32)) : v; }
  __m256i scale(int s) const { return sign(_mm256_shuffle_epi8(g[s / 4], kept_k_pick(s % 4))); }
  __m256i pair(int l) const { return sign(_mm256_shuffle_epi8(m[l / 2], kept_k_pick2(l % 2))); }
};

// The quants of vector 8n + i for run k (elements 128n + 32k + 4i..) as unsigned bytes q' (Q3_K:
// its high bit as + 4, as k16_run).
template <DType kType>
inline __m256i kept_k16_run(__m256i q, __m256i hm, int n, int k) {
  __m256i v = _mm256_and_si256(k ? _mm256_srli_epi16(q, 2 * k) : q, _mm256_set1_epi8(3));
  if constexpr (KeptK16<kType>::kQ3) {
    const int bit = 4 * n + k;
    const __m256i h = bit >= 2 ? _mm256_srli_epi16(hm, bit - 2) : _mm256_slli_epi16(hm, 2 - bit);
    v = _mm256_or_si256(v, _mm256_and_si256(h, _mm256_set1_epi8(4)));
  }
  return v;
}

// A kept group as pack_panel8_k's panel (Panel8K), for prompts.
template <DType kType>
void expand_kept_k16(const uint8_t* group, int64_t nsb, uint8_t* full) {
  using L = KeptK16<kType>;
  using P = Panel8K<kType>;
  static_assert(P::kSubs == 16);
  auto store = [](uint8_t* p, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); };
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* pb = group + sb * L::kBytes;
    uint8_t* fb = full + sb * P::kBytes;
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 8; ++i) {
        const __m256i q = load32(pb + L::kQ + 32 * (8 * n + i));
        const __m256i hm = L::kQ3 ? load32(pb + L::kHm + 32 * i) : _mm256_setzero_si256();
        for (int k = 0; k < 4; ++k) store(fb + 32 * (32 * n + 8 * k + i), kept_k16_run<kType>(q, hm, n, k));
      }
    const KeptK16Scales<kType> sc(pb + L::kScales);
    for (int s = 0; s < 16; ++s) store(fb + P::kScales + 32 * s, sc.scale(s));
    for (int l = 0; l < 8; ++l) store(fb + P::kPairs + 32 * l, sc.pair(l));
    expand_kept_d<kType>(pb + L::kD, L::kQ3 ? nullptr : pb + L::kDmin, fb);
  }
}

// out[j] for the group's 8 rows j against one token (decode): sdot_k16's results, the same bits.
template <DType kType>
void kept_k16_1(const uint8_t* group, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs, float* out) {
  using L = KeptK16<kType>;
  __m256 acc = _mm256_setzero_ps(), macc = _mm256_setzero_ps();  // sdot_k16's two chains, a row per lane
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* pb = group + sb * L::kBytes;
    prefetch_bytes_ahead<L::kBytes, kAheadBytes32>(pb);
    const KeptK16Scales<kType> sc(pb + L::kScales);
    const int8_t* x = qx + sb * 256;
    __m256i e = _mm256_setzero_si256();
    #pragma GCC unroll 2
    for (int n = 0; n < 2; ++n)
      #pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {  // vectors 8n + 4h + i: sub-blocks 8n + 2k + h
        __m256i q[4], hm[4];
        for (int i = 0; i < 4; ++i) {
          q[i] = load32(pb + L::kQ + 32 * (8 * n + 4 * h + i));
          hm[i] = L::kQ3 ? load32(pb + L::kHm + 32 * (4 * h + i)) : _mm256_setzero_si256();
        }
        #pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          __m256i p = _mm256_setzero_si256();  // at most 4 x 2 x 7 x 127 in int16
          #pragma GCC unroll 4
          for (int i = 0; i < 4; ++i) {
            int32_t x4;
            std::memcpy(&x4, x + 128 * n + 32 * k + 4 * (4 * h + i), 4);
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(kept_k16_run<kType>(q[i], hm[i], n, k), _mm256_set1_epi32(x4)));
          }
          e = madd_add(e, p, sc.scale(8 * n + 2 * k + h));
        }
      }
    __m256i o = _mm256_setzero_si256();
    #pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) {
      int32_t xs2;
      std::memcpy(&xs2, xs + sb * 16 + 2 * l, 4);
      o = madd_add(o, sc.pair(l), _mm256_set1_epi32(xs2));
    }
    const __m256 dxv = _mm256_set1_ps(dx[sb]);
    const __m256 d = halves8(pb + L::kD);
    if constexpr (L::kQ3) {  // E less the offset 4 x sum(sc x xs); no min term (sdot_k16's second chain stays +0)
      e = _mm256_sub_epi32(e, _mm256_slli_epi32(o, K16<kType>::kOffShift));
    } else {
      const __m256 dmin = halves8(pb + L::kDmin);
      macc = _mm256_fmadd_ps(_mm256_mul_ps(dmin, dxv), _mm256_cvtepi32_ps(o), macc);
    }
    acc = _mm256_fmadd_ps(_mm256_mul_ps(d, dxv), _mm256_cvtepi32_ps(e), acc);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(acc, macc));
}

// Rows [o0, o1) of a Q2_K-Q5_K weight kept in compact panels against `tokens` tokens, as
// kept_panel_rows: o0 and o1 on groups, or o1 = rows; the rows past the groups through the row
// kernel. Prompts of kKeptKExpandFrom tokens or more expand each group once into pack_panel8_k's
// panel (Matmul4 q4_k 1.25x, q5_k 1.1x against the compact group, whose unpacking at every pass
// also cost registers: at 4 tokens it ran below the per-call panels).
constexpr int64_t kKeptKExpandFrom = 4;
template <DType kType>
void kept_k_rows(const uint8_t* panel, size_t stride, int64_t rows, int64_t nsb, int64_t o0, int64_t o1, const int8_t* qx,
                 const float* dx, const int16_t* xs, int64_t tokens, float* out, int64_t ldo) {
  const int64_t grouped = rows / kPanel8Rows * kPanel8Rows;
  for (int64_t r = o0; r < std::min(o1, grouped); r += kPanel8Rows) {
    const uint8_t* pg = panel + size_t(r) * stride;
    if (tokens >= kKeptKExpandFrom) {
      uint8_t* full = panel_store(size_t(nsb * Panel8K<kType>::kBytes));
      if constexpr (kept_k(kType)) expand_kept_k<kType>(pg, nsb, full);
      else expand_kept_k16<kType>(pg, nsb, full);
      // the next group, expanded next, asked for from memory over the passes (as gemm8x2 does)
      token_passes<kPanel8Tokens>(tokens, pg + size_t(kPanel8Rows) * stride, size_t(kPanel8Rows) * stride, [&]<int T>(int64_t t) {
        panel8k_tokens<kType, T>(full, nsb, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, out + t * ldo + r, ldo);
      });
    } else {
      for (int64_t t = 0; t < tokens; ++t) {
        if constexpr (kept_k(kType))
          kept_k_tokens<kType, 1>(pg, nsb, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, out + t * ldo + r, ldo);
        else
          kept_k16_1<kType>(pg, nsb, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, out + t * ldo + r);
      }
    }
  }
  for (int64_t o = std::max(o0, grouped); o < o1; ++o)
    for (int64_t t = 0; t < tokens; ++t)
      sdot<kType, 1>(panel + size_t(o) * stride, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, nsb, out + t * ldo + o);
}
#endif

#if PAGODA_AVX512_VNNI
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// ---- Prompts: 16 weight rows at a time, interleaved so that a lane is a row ----
//
// dot_blocks32 spends most of a prompt's time outside the products: per activation row it folds
// sixteen 16-lane dots into one lane per block (about 20 shuffles and adds per 16 blocks) and,
// for Q8_0 and IQ4_NL, flips activation signs. Here 16 rows of weights are first unpacked once
// into a panel where, per block, vector k holds bytes 4k..4k+3 of every row (dword j: row j), as
// unsigned bytes (signed formats shifted by 128, the shift taken back through the activation
// block sums, exactly). A block's dot with a token is then 8 vpdpbusd against the token's
// broadcast dwords with the 16 rows' results in 16 lanes: no folds, no sign flips, and each
// weight vector serves kTokens tokens from a register.
//
// The float arithmetic is dot_blocks32's, lane for lane, so a token's outputs are bit-identical
// to the same token multiplied alone (the engine's outputs may not depend on the batch). Its
// accumulators are replayed here as arrays indexed by the lane they occupy there: 16 lanes over
// the 16-block groups, folded to 8, then the 8-block groups, the reduction tree of hsum8, and the
// tail blocks' fmas.
constexpr int kPanelRows = 16;

inline int lane_of_block(int blk) { return 4 * (blk & 3) + (blk >> 2); }  // inverse of block_of_lane

// Per block of the panel: 8 x 64 bytes of weights, then 16 float scales d, then (kMin) 16 mins.
template <bool kMin>
constexpr int64_t panel_block_bytes() { return 512 + 64 + (kMin ? 64 : 0); }

// Dwords transposed: on entry r[j] holds row j's sixteen dwords, on return r[v] holds dword v of
// the 16 rows (dword j: row j's). 64 shuffles, where gathering each vector cost 16 loads: with
// gathers, packing a group per call made 4-token prompts from the file's layout 0.55x the row kernels.
inline void transpose16_epi32(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane l: [r2i.4l, r2i+1.4l, .4l+1, .4l+1], [.4l+2 .. .4l+3]
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i)  // u[4i + c], lane l: dword 4l + c of rows 4i..4i+3
    for (int a = 0; a < 2; ++a) {
      u[4 * i + 2 * a] = _mm512_unpacklo_epi64(t[4 * i + a], t[4 * i + 2 + a]);
      u[4 * i + 2 * a + 1] = _mm512_unpackhi_epi64(t[4 * i + a], t[4 * i + 2 + a]);
    }
  for (int c = 0; c < 4; ++c) {  // r[4l + c], lane m: u[4m + c]'s lane l
    const __m512i a01 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i a23 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512i b01 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i b23 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 2, 3, 2));
    r[c] = _mm512_shuffle_i32x4(a01, b01, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + c] = _mm512_shuffle_i32x4(a01, b01, _MM_SHUFFLE(3, 1, 3, 1));
    r[8 + c] = _mm512_shuffle_i32x4(a23, b23, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + c] = _mm512_shuffle_i32x4(a23, b23, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// Rows j < 16 at w + j * stride into the panel at `panel`, its blocks `step` bytes apart.
template <typename B>
void pack_panel16(const uint8_t* w, size_t stride, int64_t nb, uint8_t* panel, int64_t step) {
  constexpr int kBytes = B::kBytes, kOff = B::kOff;
  constexpr bool kMin = B::kMin;
  // Two blocks a step: row j's 16 dwords in r[j], transposed so that r[k] (k < 8) is the first
  // block's vector k and r[8 + k] the second's (a dword a copy made the packing 8% of a 256-token
  // Q8_0 prompt); an odd last block goes alone, its partner zeros that are not stored.
  for (int64_t b = 0; b < nb; b += 2) {
    const bool two = b + 1 < nb;
    uint8_t* pb = panel + b * step;
    float* d0 = reinterpret_cast<float*>(pb + 512);
    float* d1 = reinterpret_cast<float*>(pb + step + 512);
    __m512i r[kPanelRows];
    for (int j = 0; j < kPanelRows; ++j) {
      const uint8_t* wb = w + size_t(j) * stride + size_t(b) * kBytes;
      __m256i q0 = B::unpack(wb), q1 = two ? B::unpack(wb + kBytes) : _mm256_setzero_si256();
      if (kOff < 0) {  // q + 128 as a byte
        q0 = _mm256_xor_si256(q0, _mm256_set1_epi8(int8_t(0x80)));
        q1 = _mm256_xor_si256(q1, _mm256_set1_epi8(int8_t(0x80)));
      }
      r[j] = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
      d0[j] = f16s(wb);
      if (kMin) d0[kPanelRows + j] = f16s(wb + 2);
      if (two) {
        d1[j] = f16s(wb + kBytes);
        if (kMin) d1[kPanelRows + j] = f16s(wb + kBytes + 2);
      }
    }
    transpose16_epi32(r);
    for (int k = 0; k < 8; ++k) {
      _mm512_store_si512(pb + 64 * k, r[k]);
      if (two) _mm512_store_si512(pb + step + 64 * k, r[8 + k]);
    }
  }
}

// A prompt's activations as panel16_tokens reads them (gemm16_x): per pass of T tokens (gemm_pass's
// passes: 8 tokens, then halving) starting at token t0, from word 10 * nb * t0, per block b 10 * T
// words: the block's dword k of token t at k * T + t (k < 8), then per token its shift term (the
// activation sum times the panel's shift, or for types with a min the sum as a float), then its
// scale dx. One pointer per block, so every operand is a broadcast from it (vpdpbusd's {1to16}):
// with a pointer per token a 16-row panel spilled its token pointers to vector registers and moved
// each dword through a general register (Matmul256 Q8_0 at half the vpdpbusd rate).
constexpr int kGemm16Tokens = 8;
constexpr int64_t kXWords = 10;  // words per token and block

// The panels' passes over a prompt's tokens: kStep at a time, then the rest in halving passes
// (kStep 8, 7 left: 4, 2, 1), so a short prompt is one or two passes, not one per token.
inline int64_t gemm_passes(int64_t tokens, int kStep) {
  return tokens / kStep + std::popcount(uint64_t(tokens % kStep));
}
// Pass p's first token and token count.
inline std::pair<int64_t, int> gemm_pass(int64_t tokens, int64_t p, int kStep) {
  const int64_t full = tokens / kStep;
  if (p < full) return {p * kStep, kStep};
  int64_t t = full * kStep, q = full;  // q: the pass starting at t
  for (int T = int(std::bit_floor(unsigned(kStep - 1))); T >= 1; T /= 2)
    if (tokens - t >= T) {
      if (p == q) return {t, T};
      t += T, ++q;
    }
  return {t, 0};
}
// fn.template operator()<T>(first token) for every pass in order (T one of kStep, 4, 2, 1: gemm_pass's
// sizes), each after a share of the next rows (NextRows), as token_passes does.
template <int kStep, typename Fn>
void gemm_pass_loop(int64_t tokens, const uint8_t* next, size_t bytes, Fn fn) {
  static_assert(std::bit_floor(unsigned(kStep - 1)) == 4, "the halving passes are 4, 2 and 1 tokens");
  const int64_t passes = gemm_passes(tokens, kStep);
  NextRows rows(next, bytes, passes);
  for (int64_t i = 0; i < passes; ++i) {
    rows.ahead();
    const auto [t, T] = gemm_pass(tokens, i, kStep);
    if (T == kStep) fn.template operator()<kStep>(t);
    else if (T == 4) fn.template operator()<4>(t);
    else if (T == 2) fn.template operator()<2>(t);
    else fn.template operator()<1>(t);
  }
}

// Passes [p0, p1) of a layout of kWords words per token and block (gemm16_x's, gemm16k_x's):
// fn(out, T, t, i) for token t < T of each pass and block, out the block's kWords * T words, i the
// index of the token's block among the activations' (token-major) blocks.
template <typename Fn>
void lay_out_passes(int64_t tokens, int kStep, int64_t kWords, int64_t nb, int64_t p0, int64_t p1, int32_t* xi, Fn fn) {
  for (int64_t p = p0; p < p1; ++p) {
    const auto [t0, T] = gemm_pass(tokens, p, kStep);
    int32_t* out = xi + kWords * nb * t0;
    for (int64_t b = 0; b < nb; ++b, out += kWords * T)
      for (int64_t t = 0; t < T; ++t) fn(out, int64_t(T), t, (t0 + t) * nb + b);
  }
}

template <typename B>
void gemm16_x_type(const int8_t* qx, const float* dx, const int32_t* xs, int64_t tokens, int64_t nb, int64_t p0, int64_t p1,
                   int32_t* xi) {
  constexpr int32_t kShift = B::kOff < 0 ? 128 : B::kOff;
  lay_out_passes(tokens, kGemm16Tokens, kXWords, nb, p0, p1, xi, [&](int32_t* out, int64_t T, int64_t t, int64_t tb) {
    for (int k = 0; k < 8; ++k) std::memcpy(out + k * T + t, qx + 32 * tb + 4 * k, 4);
    if constexpr (B::kMin) {
      const float s = float(xs[tb]);
      std::memcpy(out + 8 * T + t, &s, 4);
    } else {
      out[8 * T + t] = xs[tb] * kShift;
    }
    std::memcpy(out + 9 * T + t, dx + tb, 4);
  });
}

// out[t * ldo + 16 * r + j] for row j of panel r < R and tokens t < T, the tokens' activations at xi
// (a pass of gemm16_x's layout). The R panels lie side by side (per block, panel r's at r * kPB):
// each weight vector meets T tokens and each token's broadcast R weight vectors (with one panel, a
// broadcast per vpdpbusd held Matmul256 Q8_0 at about 1 vpdpbusd a cycle).
template <int kOff, bool kMin, int R, int T>
void panel16_tokens(const uint8_t* panel, int64_t nb, const int32_t* xi, float* out, int64_t ldo) {
  constexpr int32_t kShift = kOff < 0 ? 128 : kOff;  // what the panel's bytes carry above the weights
  constexpr int64_t kPB = panel_block_bytes<kMin>();
  constexpr int V = R * T;  // output vectors: v = r * T + t, panel r's rows against token t
  // Block b's integer dots with every token, the panel's shift taken out: s[v], lane j for row j.
  auto sums = [&](int64_t b, __m512i* s) {
    const uint8_t* pb = panel + b * R * kPB;
    const int32_t* xb = xi + b * kXWords * T;
    #pragma GCC unroll 16
    for (int v = 0; v < V; ++v) s[v] = _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      __m512i wv[R];
      #pragma GCC unroll 2
      for (int r = 0; r < R; ++r) wv[r] = _mm512_load_si512(pb + r * kPB + 64 * k);
      #pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const __m512i xv = _mm512_set1_epi32(xb[k * T + t]);
        #pragma GCC unroll 2
        for (int r = 0; r < R; ++r) s[r * T + t] = _mm512_dpbusd_epi32(s[r * T + t], wv[r], xv);
      }
    }
    if constexpr (kShift > 0) {
      #pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const __m512i shift = _mm512_set1_epi32(xb[8 * T + t]);
        #pragma GCC unroll 2
        for (int r = 0; r < R; ++r) s[r * T + t] = _mm512_sub_epi32(s[r * T + t], shift);
      }
    }
  };
  // Block b's terms added to acc[v] (scale) and macc[v] (min), as dot_blocks32 adds them to a lane.
  auto block = [&](int64_t b, __m512* acc, __m512* macc) {
    __m512i s[V];
    sums(b, s);
    const float* xf = reinterpret_cast<const float*>(xi + b * kXWords * T);
    #pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
      const float* scales = reinterpret_cast<const float*>(panel + (b * R + r) * kPB + 512);
      const __m512 d = _mm512_load_ps(scales);
      #pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const int v = r * T + t;
        const __m512 dxv = _mm512_set1_ps(xf[9 * T + t]);
        acc[v] = _mm512_fmadd_ps(_mm512_mul_ps(d, dxv), _mm512_cvtepi32_ps(s[v]), acc[v]);
        if (kMin)
          macc[v] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(scales + 16), dxv), _mm512_set1_ps(xf[8 * T + t]), macc[v]);
      }
    }
  };
  const __m512 zero = _mm512_setzero_ps();
  // dot_blocks32's 512-bit accumulators: class c is its lane c. Types without a min never write
  // macc, so it is the zero dot_blocks32 adds (kept as an add: it turns a -0 into +0 there too),
  // not 16 x V vectors on the stack to clear and read back (a tenth of a 768-wide Q4_0 prompt).
  __m512 acc16[16][V], macc16[kMin ? 16 : 1][V];
  for (int c = 0; c < 16; ++c)
    for (int v = 0; v < V; ++v) {
      acc16[c][v] = zero;
      if constexpr (kMin) macc16[c][v] = zero;
    }
  auto min16 = [&](int c, int v) {
    if constexpr (kMin) return macc16[c][v];
    else return zero;
  };
  int64_t b = 0;
  for (; b + 16 <= nb; b += 16)
    for (int j = 0; j < 16; ++j) block(b + j, acc16[lane_of_block(j)], macc16[kMin ? lane_of_block(j) : 0]);
  // fold512(acc + macc): lane c of the 256-bit accumulator is (acc + macc)[c] + (acc + macc)[c + 8].
  __m512 acc8[8][V], macc8[8][V];
  for (int c = 0; c < 8; ++c)
    for (int v = 0; v < V; ++v) {
      acc8[c][v] = _mm512_add_ps(_mm512_add_ps(acc16[c][v], min16(c, v)), _mm512_add_ps(acc16[c + 8][v], min16(c + 8, v)));
      macc8[c][v] = zero;
    }
  for (; b + 8 <= nb; b += 8)
    for (int j = 0; j < 8; ++j) block(b + j, acc8[j], macc8[j]);
  // The tail blocks: one running sum, scale term then min term per block.
  __m512 tail[V];
  for (int v = 0; v < V; ++v) tail[v] = zero;
  for (; b < nb; ++b) block(b, tail, tail);
  const auto add = [](__m512 x, __m512 y) { return _mm512_add_ps(x, y); };
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      const int v = r * T + t;
      _mm512_storeu_ps(out + t * ldo + r * kPanelRows, replay_hsum8([&](int c) { return add(acc8[c][v], macc8[c][v]); }, tail[v], add));
    }
}

// The panel and token loop of one type for `panels` (1 or 2) panels of 16 rows: kGemm16Tokens
// tokens per pass, then halving passes.
template <typename B>
void gemm16_type(const uint8_t* w, size_t stride, int64_t nb, const int32_t* xi, int64_t tokens, float* out, int64_t ldo,
                 int panels) {
  constexpr int kOff = B::kOff;
  constexpr bool kMin = B::kMin;
  constexpr int64_t kPB = panel_block_bytes<kMin>();
  uint8_t* panel = panel_store(size_t(nb * kPB * panels));
  for (int r = 0; r < panels; ++r) pack_panel16<B>(w + size_t(r * kPanelRows) * stride, stride, nb, panel + r * kPB, panels * kPB);
  const size_t rows = size_t(panels * kPanelRows);
  gemm_pass_loop<kGemm16Tokens>(tokens, w + rows * stride, rows * stride, [&]<int T>(int64_t t) {
    const int32_t* x = xi + kXWords * nb * t;
    if (panels == 2) panel16_tokens<kOff, kMin, 2, T>(panel, nb, x, out + t * ldo, ldo);
    else panel16_tokens<kOff, kMin, 1, T>(panel, nb, x, out + t * ldo, ldo);
  });
}

// ---- The same panels for Q4_K, Q5_K and Q6_K ----
//
// The row kernels (sdot_q45k_512, sdot_q6k_512) reduce each super-block to two exact integers, its
// scaled dot E and its min term M (Q6_K: E less the offset), and accumulate d*dx*E - dmin*dx*M in
// float, super-block sb into accumulator sb % 4; a row's result is (a0 + a2) + (a1 + a3). A panel
// reaches the same integers with a row per lane: per sub-block 8 (Q6_K: 4) vpdpbusd of unsigned
// quants against broadcast activations, one vpmulld by the sub-block scales; the min / offset term
// by vpdpwssd of int16 pairs. The float operations are then the row kernels', lane for lane.
//
// Per super-block of 16 rows: the unsigned quants (Q6_K's as q + 32) as 64 vectors of element
// quads (vector k, dword j: row j's elements 4k..4k+3), the int32 sub-block scales (16 lanes per
// sub-block), 8 vectors of int16 pairs (class L: (m_L, m_L), or Q6_K's (sc_2L, sc_2L+1)), d, dmin.
constexpr int64_t kPanelKScales = 4096, kPanelKPairs = 5120, kPanelKD = 5632, kPanelKDmin = 5696;
constexpr int64_t kPanelK = kPanelKDmin + 64;

// Row j's super-block at wb as unsigned quants q[256] in quantize_x256's order for the type,
// scales sc[16] (8 used by Q4_K/Q5_K, in the quants' sub-block order), mins m[8] (in element
// order, against the per-16 sums), d and dmin: the block layouts as sdot_q45k_512 and sdot_q6k_512
// read them. (No shuffles: on a 2-vCPU VM whose threads share one core, a shuffle transpose
// competed with the other thread's panel products and made 16-token prompts 15% slower.)
template <DType kType>
void unpack_superblock(const uint8_t* wb, uint8_t* q, int32_t* sc, int32_t* m, float& d, float& dmin) {
  if constexpr (kType == DType::Q6_K) {
    const uint8_t *ql = wb, *qh = wb + 128;
    for (int n = 0; n < 2; ++n)
      for (int l = 0; l < 32; ++l) {
        const uint8_t h = qh[32 * n + l];
        uint8_t* qn = q + 128 * n + l;
        qn[0] = uint8_t((ql[64 * n + l] & 15) | ((h & 3) << 4));
        qn[32] = uint8_t((ql[64 * n + l + 32] & 15) | (((h >> 2) & 3) << 4));
        qn[64] = uint8_t((ql[64 * n + l] >> 4) | (((h >> 4) & 3) << 4));
        qn[96] = uint8_t((ql[64 * n + l + 32] >> 4) | (((h >> 6) & 3) << 4));
      }
    for (int s = 0; s < 16; ++s) sc[s] = int8_t(wb[192 + s]);
    d = f16s(wb + 208);
    dmin = 0.0f;
  } else {
    constexpr bool kFive = kType == DType::Q5_K;
    alignas(16) uint8_t sm[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(sm), scales_mins_k4(wb + 4));
    // q and sc in the activations' order (x256_slot): chunk s of q holds sub-block kPairedOrder[s].
    static_assert(x256_paired(kType), "the panels read the 512-bit kernels' order");
    for (int s = 0; s < 8; ++s) sc[s] = sm[kPairedOrder[s]], m[s] = sm[8 + s];
    const __m256i qh = kFive ? load32(wb + 16) : _mm256_setzero_si256();
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      __m256i lo, hi;
      q45k_chunk<kFive>(wb + (kFive ? 48 : 16), qh, c, lo, hi);
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 32 * kPairedOrder[2 * c]), lo);
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 32 * kPairedOrder[2 * c + 1]), hi);
    }
    d = f16s(wb);
    dmin = f16s(wb + 2);
  }
}

// Rows j < 16 at w + j * stride into the panel at `panel`, its super-blocks `step` bytes apart.
template <DType kType>
void pack_panel16_k(const uint8_t* w, size_t stride, int64_t nsb, uint8_t* panel, int64_t step) {
  constexpr int kBytes = kType == DType::Q6_K ? 210 : kType == DType::Q5_K ? 176 : 144;
  alignas(64) uint8_t q[kPanelRows][256];
  for (int64_t sb = 0; sb < nsb; ++sb) {
    uint8_t* pb = panel + sb * step;
    int32_t* sc = reinterpret_cast<int32_t*>(pb + kPanelKScales);
    int16_t* pairs = reinterpret_cast<int16_t*>(pb + kPanelKPairs);  // [class][row][2]
    float* d = reinterpret_cast<float*>(pb + kPanelKD);
    float* dmin = reinterpret_cast<float*>(pb + kPanelKDmin);
    for (int j = 0; j < kPanelRows; ++j) {
      int32_t scj[16], mj[8] = {};
      unpack_superblock<kType>(w + size_t(j) * stride + size_t(sb) * kBytes, q[j], scj, mj, d[j], dmin[j]);
      for (int s = 0; s < (kType == DType::Q6_K ? 16 : 8); ++s) sc[16 * s + j] = scj[s];
      for (int l = 0; l < 8; ++l) {
        pairs[32 * l + 2 * j] = int16_t(kType == DType::Q6_K ? scj[2 * l] : mj[l]);
        pairs[32 * l + 2 * j + 1] = int16_t(kType == DType::Q6_K ? scj[2 * l + 1] : mj[l]);
      }
    }
    for (int c = 0; c < 4; ++c) {  // quads 16c..16c+15 of the 16 rows, transposed by registers
      __m512i r[kPanelRows];
      for (int j = 0; j < kPanelRows; ++j) r[j] = _mm512_load_si512(q[j] + 64 * c);
      transpose16_epi32(r);
      for (int v = 0; v < 16; ++v) _mm512_store_si512(pb + 64 * (16 * c + v), r[v]);
    }
  }
}

// A prompt's activations as panel16k_tokens reads them (gemm16k_x), as gemm16_x lays out the
// 32-element types': per pass of T tokens from token t0 (passes of kGemm16kTokens, then halving),
// from word kKWords * nsb * t0, per super-block kKWords * T words: its quad q of token t at q * T + t
// (q < 64), the int16 pair l of its per-16 sums at 64 * T + l * T + t (l < 8), its scale dx at
// 72 * T + t.
constexpr int kGemm16kTokens = 6;  // 2 panels x 6 tokens: 24 integer accumulators in registers
constexpr int64_t kKWords = 73;

inline int64_t gemm16k_passes(int64_t tokens) { return gemm_passes(tokens, kGemm16kTokens); }

void gemm16k_x_rows(const int8_t* qx, const float* dx, const int16_t* xs, int64_t tokens, int64_t nsb, int64_t p0,
                    int64_t p1, int32_t* xi) {
  lay_out_passes(tokens, kGemm16kTokens, kKWords, nsb, p0, p1, xi, [&](int32_t* out, int64_t T, int64_t t, int64_t ts) {
    for (int q = 0; q < 64; ++q) std::memcpy(out + q * T + t, qx + 256 * ts + 4 * q, 4);
    for (int l = 0; l < 8; ++l) std::memcpy(out + 64 * T + l * T + t, xs + 16 * ts + 2 * l, 4);
    std::memcpy(out + 72 * T + t, dx + ts, 4);
  });
}

// R panels side by side (per super-block, panel r's at r * kPanelK) against T tokens at xi (a pass
// of gemm16k_x's layout): each token's broadcast serves R weight vectors.
template <DType kType, int R, int T>
void panel16k_tokens(const uint8_t* panel, int64_t nsb, const int32_t* xi, float* out, int64_t ldo) {
  constexpr bool kSix = kType == DType::Q6_K;
  constexpr int kSub = kSix ? 16 : 8, kQuads = 64 / kSub;  // sub-blocks, element quads per sub-block
  constexpr int V = R * T;  // v = r * T + t: panel r's rows against token t
  __m512 acc[4][V];  // the row kernels' four accumulators, a row per lane
  for (int c = 0; c < 4; ++c)
    for (int v = 0; v < V; ++v) acc[c][v] = _mm512_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* pb = panel + sb * R * kPanelK;
    const int32_t* xb = xi + sb * kKWords * T;
    __m512i e[V];
    #pragma GCC unroll 16
    for (int v = 0; v < V; ++v) e[v] = _mm512_setzero_si512();
    for (int s = 0; s < kSub; ++s) {
      __m512i raw[V];
      #pragma GCC unroll 16
      for (int v = 0; v < V; ++v) raw[v] = _mm512_setzero_si512();
      #pragma GCC unroll 8
      for (int k = 0; k < kQuads; ++k) {
        const int quad = s * kQuads + k;
        __m512i wv[R];
        #pragma GCC unroll 2
        for (int r = 0; r < R; ++r) wv[r] = _mm512_load_si512(pb + r * kPanelK + 64 * quad);
        #pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const __m512i xv = _mm512_set1_epi32(xb[quad * T + t]);
          #pragma GCC unroll 2
          for (int r = 0; r < R; ++r) raw[r * T + t] = _mm512_dpbusd_epi32(raw[r * T + t], wv[r], xv);
        }
      }
      #pragma GCC unroll 2
      for (int r = 0; r < R; ++r) {
        const __m512i scv = _mm512_load_si512(pb + r * kPanelK + kPanelKScales + 64 * s);
        #pragma GCC unroll 16
        for (int t = 0; t < T; ++t) e[r * T + t] = _mm512_add_epi32(e[r * T + t], _mm512_mullo_epi32(scv, raw[r * T + t]));
      }
    }
    // The min term (Q6_K: the offset's sum of sc * xs) from the int16 pairs.
    __m512i m[V];
    #pragma GCC unroll 16
    for (int v = 0; v < V; ++v) m[v] = _mm512_setzero_si512();
    for (int l = 0; l < 8; ++l) {
      __m512i pv[R];
      #pragma GCC unroll 2
      for (int r = 0; r < R; ++r) pv[r] = _mm512_load_si512(pb + r * kPanelK + kPanelKPairs + 64 * l);
      #pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const __m512i xv = _mm512_set1_epi32(xb[64 * T + l * T + t]);
        #pragma GCC unroll 2
        for (int r = 0; r < R; ++r) m[r * T + t] = _mm512_dpwssd_epi32(m[r * T + t], pv[r], xv);
      }
    }
    const float* xf = reinterpret_cast<const float*>(xb + 72 * T);
    const int c = int(sb & 3);
    #pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
      const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(pb + r * kPanelK + kPanelKD));
      const __m512 dmin = _mm512_load_ps(reinterpret_cast<const float*>(pb + r * kPanelK + kPanelKDmin));
      #pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const int v = r * T + t;
        const __m512 dxv = _mm512_set1_ps(xf[t]);
        if (kSix) {
          acc[c][v] = _mm512_fmadd_ps(_mm512_mul_ps(d, dxv), _mm512_cvtepi32_ps(_mm512_sub_epi32(e[v], _mm512_slli_epi32(m[v], 5))), acc[c][v]);
        } else {
          acc[c][v] = _mm512_fmadd_ps(_mm512_mul_ps(d, dxv), _mm512_cvtepi32_ps(e[v]), acc[c][v]);
          acc[c][v] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dxv), _mm512_cvtepi32_ps(m[v]), acc[c][v]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      const int v = r * T + t;
      _mm512_storeu_ps(out + t * ldo + r * kPanelRows,
                       _mm512_add_ps(_mm512_add_ps(acc[0][v], acc[2][v]), _mm512_add_ps(acc[1][v], acc[3][v])));
    }
}

// `panels` (1 or 2) panels of 16 rows against every token, in gemm16k_passes' passes.
template <DType kType>
void gemm16_k_type(const uint8_t* w, size_t stride, int64_t nsb, const int32_t* xi, int64_t tokens, float* out, int64_t ldo,
                   int panels) {
  uint8_t* panel = panel_store(size_t(nsb * kPanelK * panels));
  for (int r = 0; r < panels; ++r)
    pack_panel16_k<kType>(w + size_t(r * kPanelRows) * stride, stride, nsb, panel + r * kPanelK, panels * kPanelK);
  const size_t rows = size_t(panels * kPanelRows);
  gemm_pass_loop<kGemm16kTokens>(tokens, w + rows * stride, rows * stride, [&]<int T>(int64_t t) {
    const int32_t* x = xi + kKWords * nsb * t;
    if (panels == 2) panel16k_tokens<kType, 2, T>(panel, nsb, x, out + t * ldo, ldo);
    else panel16k_tokens<kType, 1, T>(panel, nsb, x, out + t * ldo, ldo);
  });
}
#pragma GCC diagnostic pop
#endif

#if PAGODA_AVX512_VNNI
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// ---- Q2_K and Q3_K weights kept in 16-row panels (AVX-512 VNNI) ----
//
// A group of 16 rows takes, per super-block, the 16 x 84 (Q3_K: 16 x 110) bytes its rows'
// super-blocks took in the file, in the order the products read them:
//   Q2_K, 256: the rows' scale bytes (scale | min << 4): vector c (< 4), dword j = row j's bytes
//              4c..4c+3 (sub-blocks 4c..4c+3);
//   Q3_K, 192: the rows' six-bit scales u = s + 32: two vectors h of low nibbles (dword j, byte b:
//              u[8h + b] | u[8h + 4 + b] << 4), then one of top bits (dword j, byte b: the top two
//              bits of u[b] at bits 4-5, of u[4 + b] at 6-7, u[8 + b] at 0-1, u[12 + b] at 2-3);
//   1024:      the two-bit quants: vector 8n + i (n < 2, i < 8), dword j = row j's qs bytes
//              32n + 4i..+3 (bits 2k, 2k + 1: elements 128n + 32k + 4i.. of sub-block 8n + 2k + i / 4);
//   Q3_K, 512: the high-bit mask: vector i, dword j = row j's hmask bytes 4i..4i+3 (bit 4n + k: the
//              same elements' high bits);
//   32 (+ 32): the rows' f16 d (Q2_K: then dmin).
// Per sub-block and token, four vpdpbusd of unpacked two-bit planes (Q3_K's with their high bit)
// against broadcast activation dwords give the 16 rows' dots in 16 lanes, and one vpdpwssd scales
// them into the super-block's sum; the mins (Q3_K: the offsets) take one vpdpwssd per pair of
// sub-blocks. Those are sdot_k16's exact integers E and M, and the float steps are its own with a
// row per lane, so every output has the bits of the row kernel (and of AVX2 builds). Against the
// 512-bit row kernels this replaced (product tables per super-block and row, 16 float lanes per
// row reduced at its end), a super-block of 16 rows costs a third of the instructions.
template <DType kType>
struct Kept16K16 {
  static constexpr bool kQ3 = kType == DType::Q3_K;
  static constexpr int kRows = 16, kRowBytes = K16<kType>::kBytes, kQs = kQ3 ? 32 : 16;
  static constexpr int64_t kQ = kQ3 ? 192 : 256, kHm = kQ + 1024, kD = kHm + (kQ3 ? 512 : 0), kDmin = kD + 32;
  static constexpr int64_t kBytes = kD + (kQ3 ? 32 : 64);
  static_assert(kBytes == kRows * kRowBytes && kRows == kKeptGroupRows);
};
constexpr bool kept16_k16(DType t) { return t == DType::Q2_K || t == DType::Q3_K; }
// Tokens a pass over a kept group (prompts).
constexpr int kKept16Tokens = 4;

// A group's 16 rows (row j at w + j * stride) into the kept layout, super-block by super-block:
// each row's block read as 64 bytes and the rest (a masked load that stays inside the block),
// both transposed by dwords. Q3_K's scale bytes come out as three vectors (bytes 0..3, 4..7,
// 8..11 of every row) whose nibbles and bit pairs only move into the kept order.
template <DType kType>
void pack_kept16_k16(const uint8_t* w, size_t stride, int64_t nsb, uint8_t* group) {
  using L = Kept16K16<kType>;
  constexpr int kRest = L::kRowBytes - 64;  // 20 (Q2_K: qs 48..63, d, dmin), 46 (Q3_K: qs 32..63, scales, d)
  auto store = [](uint8_t* p, __m512i v) { _mm512_storeu_si512(p, v); };
  auto store_halves = [](uint8_t* p, __m512i v) {  // the low words of v's dwords: 16 f16
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
  };
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* wb = w + size_t(sb) * L::kRowBytes;
    uint8_t* pb = group + sb * L::kBytes;
    __m512i a[16], b[16];
    for (int j = 0; j < L::kRows; ++j) {
      a[j] = _mm512_loadu_si512(wb + size_t(j) * stride);
      b[j] = _mm512_maskz_loadu_epi8((__mmask64(1) << kRest) - 1, wb + size_t(j) * stride + 64);
    }
    transpose16_epi32(a);
    transpose16_epi32(b);
    if constexpr (L::kQ3) {  // a: hmask 0..31, qs 0..31; b: qs 32..63, scales, d
      for (int v = 0; v < 8; ++v) store(pb + L::kHm + 64 * v, a[v]);
      for (int v = 0; v < 8; ++v) store(pb + L::kQ + 64 * v, a[8 + v]), store(pb + L::kQ + 64 * (8 + v), b[v]);
      // Scale i: low nibble in byte i % 8 (the high nibble for i >= 8), top two bits in byte 8 + i % 4
      // at bit 2 (i / 4). b[8], b[9], b[10]: bytes 0..3, 4..7, 8..11.
      const __m512i s0 = b[8], s1 = b[9], s2 = b[10], low4 = _mm512_set1_epi8(0x0F);
      store(pb, _mm512_ternarylogic_epi32(s0, _mm512_slli_epi16(s1, 4), low4, 0xE4));  // u[b] | u[4 + b] << 4
      store(pb + 64, _mm512_ternarylogic_epi32(_mm512_srli_epi16(s0, 4), s1, low4, 0xE4));  // u[8 + b] | u[12 + b] << 4
      store(pb + 128, _mm512_ternarylogic_epi32(_mm512_srli_epi16(s2, 4), _mm512_slli_epi16(s2, 4), low4, 0xE4));  // nibbles swapped
      store_halves(pb + L::kD, b[11]);
    } else {  // a: scales, qs 0..47; b: qs 48..63, d | dmin << 16
      for (int c = 0; c < 4; ++c) store(pb + 64 * c, a[c]);
      for (int v = 0; v < 12; ++v) store(pb + L::kQ + 64 * v, a[4 + v]);
      for (int v = 0; v < 4; ++v) store(pb + L::kQ + 64 * (12 + v), b[v]);
      store_halves(pb + L::kD, b[4]);
      store_halves(pb + L::kDmin, _mm512_srli_epi32(b[4], 16));
    }
  }
}

// vpshufb indices that put byte b0 (and b1, when >= 0) of each dword into that dword: Q2_K (kHigh
// false) as the low byte of its low (high) word, Q3_K as the high byte, so a signed byte s becomes
// the int16 256 s; every other byte zero.
template <bool kHigh>
inline __m512i dword_pick(int b0, int b1) {
  const int x = kHigh ? 8 : 0;
  uint32_t pat = 0x80808080u & ~(0xFFu << x);
  pat |= uint32_t(b0) << x;
  if (b1 >= 0) pat = (pat & ~(0xFFu << (16 + x))) | uint32_t(b1) << (16 + x);
  // a dword's bytes are 4p.. of its 128-bit lane (the zeroing indices stay >= 0x80)
  return _mm512_add_epi8(_mm512_set1_epi32(int32_t(pat)), _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C)));
}

// Bits 2k, 2k + 1 of each byte as its value (0..3).
inline __m512i two_bits(__m512i q, int k) {
#if defined(__GFNI__)
  // Output bit b of a byte is the parity of (input & byte 7 - b of the qword): bit 0 takes input
  // bit 2k, bit 1 input bit 2k + 1. (One instruction, where a shift and a mask are two.)
  if (k == 0) return _mm512_and_si512(q, _mm512_set1_epi8(3));
  return _mm512_gf2p8affine_epi64_epi8(q, _mm512_set1_epi64(int64_t(uint64_t(1u << (2 * k)) << 56 | uint64_t(2u << (2 * k)) << 48)), 0);
#else
  return _mm512_and_si512(k ? _mm512_srli_epi16(q, 2 * k) : q, _mm512_set1_epi8(3));
#endif
}
// Bit `bit` of each byte as 4 (Q3_K's high bit: + 4).
inline __m512i high_bit4(__m512i hm, int bit) {
#if defined(__GFNI__)
  return _mm512_gf2p8affine_epi64_epi8(hm, _mm512_set1_epi64(int64_t(uint64_t(1u << bit) << 40)), 0);
#else
  const __m512i h = bit >= 2 ? _mm512_srli_epi16(hm, bit - 2) : _mm512_slli_epi16(hm, 2 - bit);
  return _mm512_and_si512(h, _mm512_set1_epi8(4));
#endif
}

// out[t * ldo + j] for the group's 16 rows j and tokens t < T (token t at qx + t * 256 * nsb, dx +
// t * nsb, xs + t * 16 * nsb): sdot_k16's results, the same bits.
template <DType kType, int T>
void kept16_k16_tokens(const uint8_t* group, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs, float* out,
                       int64_t ldo) {
  using L = Kept16K16<kType>;
  constexpr bool kQ3 = L::kQ3;
  const __m512i low4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
  __m512i pick[4], pair[2];  // a sub-block's scale (dword_pick<kQ3>(b)), a pair's (2h, 2h + 1)
  for (int b = 0; b < 4; ++b) pick[b] = dword_pick<kQ3>(b, -1);
  for (int h = 0; h < 2; ++h) pair[h] = dword_pick<kQ3>(2 * h, 2 * h + 1);
  auto x4 = [&](int t, int64_t sb, int at) {
    int32_t v;
    std::memcpy(&v, qx + t * 256 * nsb + sb * 256 + at, 4);
    return _mm512_set1_epi32(v);
  };
  auto xs2 = [&](int t, int64_t sb, int l) {  // the per-16 sums of sub-blocks 2l, 2l + 1
    int32_t v;
    std::memcpy(&v, xs + (t * nsb + sb) * 16 + 2 * l, 4);
    return _mm512_set1_epi32(v);
  };
  __m512 acc[T], macc[T];  // sdot_k16's two chains, a row per lane
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = macc[t] = _mm512_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* pb = group + sb * L::kBytes;
    if (T == 1) prefetch_bytes_ahead<int(L::kBytes), kAheadBytes32>(pb);
    // Sub-blocks 4c..4c+3's scales (Q3_K: s, signed) and Q2_K's mins as bytes, dword j: row j.
    __m512i sc[4], mn[4];
    if constexpr (kQ3) {
      const __m512i lo0 = load64(pb), lo1 = load64(pb + 64), hi = load64(pb + 128);
      const __m512i tops[4] = {_mm512_and_si512(hi, top2), _mm512_and_si512(_mm512_srli_epi16(hi, 2), top2),
                               _mm512_and_si512(_mm512_slli_epi16(hi, 4), top2), _mm512_and_si512(_mm512_slli_epi16(hi, 2), top2)};
      const __m512i lows[4] = {lo0, _mm512_srli_epi16(lo0, 4), lo1, _mm512_srli_epi16(lo1, 4)};
      #pragma GCC unroll 4
      for (int c = 0; c < 4; ++c)  // low nibble from lows, bits 4-5 from tops
        sc[c] = mn[c] = _mm512_sub_epi8(_mm512_ternarylogic_epi32(lows[c], tops[c], low4, 0xE4), _mm512_set1_epi8(32));
    } else {
      #pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m512i v = load64(pb + 64 * c);
        sc[c] = _mm512_and_si512(v, low4), mn[c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + L::kD)));
    // Q2_K: M = sum(m * xs), stepped into macc now; Q3_K: 256 sum(s * xs), the offset, which starts
    // e at -4 times it (int32 sums wrap, so only the final 256 E must fit: |E| <= 16 x 32 x 16 x 4 x 127).
    __m512i e[T];
    {
      __m512i m[T];
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) m[t] = _mm512_setzero_si512();
      #pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) {
        const __m512i pr = _mm512_shuffle_epi8(mn[l / 2], pair[l % 2]);
        #pragma GCC unroll 8
        for (int t = 0; t < T; ++t) m[t] = _mm512_dpwssd_epi32(m[t], pr, xs2(t, sb, l));
      }
      const __m512 dmin = kQ3 ? _mm512_setzero_ps() : _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + L::kDmin)));
      #pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        if constexpr (kQ3) {
          e[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(m[t], 2));
        } else {
          e[t] = _mm512_setzero_si512();
          macc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dmin, _mm512_set1_ps(dx[t * nsb + sb])), _mm512_cvtepi32_ps(m[t]), macc[t]);
        }
      }
    }
    #pragma GCC unroll 2
    for (int n = 0; n < 2; ++n)
      #pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {  // vectors 8n + 4h + i: sub-blocks 8n + 2k + h
        __m512i q[4], hm[4];
        #pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          q[i] = load64(pb + L::kQ + 64 * (8 * n + 4 * h + i));
          hm[i] = kQ3 ? load64(pb + L::kHm + 64 * (4 * h + i)) : _mm512_setzero_si512();
        }
        #pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          __m512i sub[T];  // the sub-block's dots: at most 16 x 7 x 127, an int16 in each dword's low word
          #pragma GCC unroll 8
          for (int t = 0; t < T; ++t) sub[t] = _mm512_setzero_si512();
          #pragma GCC unroll 4
          for (int i = 0; i < 4; ++i) {
            __m512i p = two_bits(q[i], k);
            if constexpr (kQ3) p = _mm512_or_si512(p, high_bit4(hm[i], 4 * n + k));
            #pragma GCC unroll 8
            for (int t = 0; t < T; ++t) sub[t] = _mm512_dpbusd_epi32(sub[t], p, x4(t, sb, 128 * n + 32 * k + 4 * (4 * h + i)));
          }
          const int s = 8 * n + 2 * k + h;
          const __m512i f = _mm512_shuffle_epi8(sc[s / 4], pick[s % 4]);  // Q2_K: the scale; Q3_K: 256 s
          #pragma GCC unroll 8
          for (int t = 0; t < T; ++t) e[t] = _mm512_dpwssd_epi32(e[t], sub[t], f);
        }
      }
    #pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512i et = kQ3 ? _mm512_srai_epi32(e[t], 8) : e[t];
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(dx[t * nsb + sb])), _mm512_cvtepi32_ps(et), acc[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + t * ldo, _mm512_sub_ps(acc[t], macc[t]));
}

// Rows [o0, o1) of a Q2_K or Q3_K weight kept in 16-row panels against `tokens` tokens (o0 and o1
// on groups, or o1 = rows): kKept16Tokens tokens a pass; the rows past the groups through sdot_k16.
template <DType kType>
void kept16_k16_rows(const uint8_t* panel, size_t stride, int64_t rows, int64_t nsb, int64_t o0, int64_t o1, const int8_t* qx,
                     const float* dx, const int16_t* xs, int64_t tokens, float* out, int64_t ldo) {
  constexpr int64_t kRows = Kept16K16<kType>::kRows;
  const int64_t grouped = rows / kRows * kRows;
  for (int64_t r = o0; r < std::min(o1, grouped); r += kRows) {
    const uint8_t* pg = panel + size_t(r) * stride;
    if (tokens == 1) {  // decode: the kernel asks for its stream ahead itself
      kept16_k16_tokens<kType, 1>(pg, nsb, qx, dx, xs, out + r, ldo);
      continue;
    }
    token_passes<kKept16Tokens>(tokens, pg + size_t(kRows) * stride, size_t(kRows) * stride, [&]<int T>(int64_t t) {
      kept16_k16_tokens<kType, T>(pg, nsb, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, out + t * ldo + r, ldo);
    });
  }
  for (int64_t o = std::max(o0, grouped); o < o1; ++o)
    for (int64_t t = 0; t < tokens; ++t)
      sdot_k16<kType, 1>(panel + size_t(o) * stride, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, nsb, out + t * ldo + o);
}

// A prompt against 16 rows as the file lays them out (gemm16_k): packed per call, then as kept.
template <DType kType>
void gemm16_k16(const uint8_t* w, size_t stride, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs,
                int64_t tokens, float* out, int64_t ldo) {
  constexpr int64_t kRows = Kept16K16<kType>::kRows;
  static_assert(kRows == kGemmRows);
  uint8_t* panel = panel_store(size_t(nsb * Kept16K16<kType>::kBytes));
  pack_kept16_k16<kType>(w, stride, nsb, panel);
  token_passes<kKept16Tokens>(tokens, w + size_t(kRows) * stride, size_t(kRows) * stride, [&]<int T>(int64_t t) {
    kept16_k16_tokens<kType, T>(panel, nsb, qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb, out + t * ldo, ldo);
  });
}
#pragma GCC diagnostic pop
#endif

}  // namespace

IntDot int_dot_for(DType t) {
  return with_blocks32(t, [](auto b) -> IntDot { return dot_1<decltype(b)>; });
}

IntDotRows int_dot_rows_for(DType t) {
  return with_blocks32(t, [](auto b) -> IntDotRows { return dot_rows<decltype(b)>; });
}

IntDotBatch int_dot_rows_at_once(DType t, int rows) {
  return with_blocks32(t, [rows](auto b) -> IntDotBatch {
    using B = decltype(b);
    return rows == 1 ? dot_t<B, 1> : rows == 2 ? dot_t<B, 2> : rows == 3 ? dot_t<B, 3> : rows == 4 ? dot_t<B, 4> : nullptr;
  });
}
bool has_gemm16(DType t) { return int_dot_for(t) != nullptr; }
int x32_layout(DType t) {
  return with_blocks32(t, [](auto b) { return x32_pairs<decltype(b)>() ? 1 : 0; });
}

UnpackedDot4 unpacked_dot4_for(DType t, UnpackRow* unpack) {
  if (PAGODA_AVX512_VNNI) return nullptr;  // prompts there go through gemm16's panels
  if (t == DType::Q8_0) return nullptr;    // its weights are their own unpacked bytes
  return with_blocks32(t, [&](auto b) -> UnpackedDot4 {
    *unpack = unpack_row<decltype(b)>;
    return dot4_unpacked<decltype(b)>;
  });
}

bool has_gemm16_k(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

// AVX2's 8-row panels (packed by register transposes) repay their packing early (Zen 3 VM, 110M
// files, prefill tok/s against the row kernels, docs/perf.md): Q2_K, Q3_K and Q4_K_M 1.07-1.1x at
// 4 tokens and 1.25-1.36x at 5; every K-quant 1.2-1.75x at 6 and 7, 1.1-1.65x at 8 and 12 (Q6_K
// 0.75x at 4); the 32-element types 1.0-1.3x at 6 (Q4_1 level), 1.14-1.37x at 7, level to 1.3x at
// 8 and 12, but at 5 Q4_1 0.9x and at 4 all 0.85-0.93x; Q8_0, which has no unpacked row path to
// lose to, 0.55-0.65x at 4 and level at 8. (Q5_K, in no 110M file, goes with Q4_K: the same
// panel kernel.) The 512-bit panels keep the threshold they were measured at, but for Q2_K and
// Q3_K, whose rows past them take the 256-bit sdot_k16 (gemm16_k16).
int64_t panel_min_tokens(DType t) {
#if PAGODA_AVX512_VNNI
  // The 32-element types' panels (passes of 8, 4, 2, 1 tokens) against the row kernels, one
  // thread: 5 tokens 1.07-1.26x, 6 1.2-1.5x, 8 1.3-1.8x, but 4 tokens 0.9x (docs/perf.md).
  if (int_dot_for(t)) return 5;
  // Q4_K-Q6_K (two panels against 6 tokens a pass, then 4, 2, 1) against the row kernels: Q4_K and
  // Q5_K 6 tokens 1.18-1.3x, 10-12 tokens 1.4-1.5x (5: 0.83-0.9x); Q6_K 10-12 tokens 1.1x (8: 0.8x).
  if (t == DType::Q4_K || t == DType::Q5_K) return 6;
  if (t == DType::Q6_K) return 10;
  return kept16_k16(t) ? kKept16Tokens : 16;
#endif
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K: return 4;
    case DType::Q8_0: return 8;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::IQ4_NL: return 4;  // nibble panels (pack_panel8c)
    default: return 6;
  }
}

#if PAGODA_AVX512_VNNI
namespace {
bool k_interleaved(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }
}  // namespace
#endif

int64_t gemm16k_x_passes(DType t, int64_t tokens) {
#if PAGODA_AVX512_VNNI
  if (k_interleaved(t)) return gemm16k_passes(tokens);
#endif
  (void)t, (void)tokens;
  return 0;
}

size_t gemm16k_x_words(DType t, int64_t tokens, int64_t nsb) {
#if PAGODA_AVX512_VNNI
  if (k_interleaved(t)) return size_t(kKWords * nsb * tokens);
#endif
  (void)t, (void)tokens, (void)nsb;
  return 0;
}

void gemm16k_x(DType t, const int8_t* qx, const float* dx, const int16_t* xs, int64_t tokens, int64_t nsb, int64_t p0,
               int64_t p1, int32_t* xi) {
#if PAGODA_AVX512_VNNI
  if (k_interleaved(t)) return gemm16k_x_rows(qx, dx, xs, tokens, nsb, p0, p1, xi);
#endif
  (void)t, (void)qx, (void)dx, (void)xs, (void)tokens, (void)nsb, (void)p0, (void)p1, (void)xi;
}

bool gemm16_k(DType t, const uint8_t* w, size_t stride, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs,
              const int32_t* xi, int64_t tokens, float* out, int64_t ldo, int panels) {
#if PAGODA_AVX512_VNNI
  if (!has_gemm16_k(t)) return false;
  switch (t) {
    case DType::Q4_K: gemm16_k_type<DType::Q4_K>(w, stride, nsb, xi, tokens, out, ldo, panels); return true;
    case DType::Q5_K: gemm16_k_type<DType::Q5_K>(w, stride, nsb, xi, tokens, out, ldo, panels); return true;
    case DType::Q6_K: gemm16_k_type<DType::Q6_K>(w, stride, nsb, xi, tokens, out, ldo, panels); return true;
    default: break;
  }
#endif
  if (panels == 2)  // one panel after the other
    return gemm16_k(t, w, stride, nsb, qx, dx, xs, xi, tokens, out, ldo, 1) &&
           gemm16_k(t, w + size_t(kGemmRows) * stride, stride, nsb, qx, dx, xs, xi, tokens, out + kGemmRows, ldo, 1);
#if PAGODA_AVX512_VNNI
  switch (t) {
    case DType::Q2_K: gemm16_k16<DType::Q2_K>(w, stride, nsb, qx, dx, xs, tokens, out, ldo); return true;
    case DType::Q3_K: gemm16_k16<DType::Q3_K>(w, stride, nsb, qx, dx, xs, tokens, out, ldo); return true;
    default: return false;
  }
#else
  switch (t) {
    case DType::Q2_K: gemm8x2_k<DType::Q2_K>(w, stride, nsb, qx, dx, xs, tokens, out, ldo); return true;
    case DType::Q3_K: gemm8x2_k<DType::Q3_K>(w, stride, nsb, qx, dx, xs, tokens, out, ldo); return true;
    case DType::Q4_K: gemm8x2_k<DType::Q4_K>(w, stride, nsb, qx, dx, xs, tokens, out, ldo); return true;
    case DType::Q5_K: gemm8x2_k<DType::Q5_K>(w, stride, nsb, qx, dx, xs, tokens, out, ldo); return true;
    case DType::Q6_K: gemm8x2_k<DType::Q6_K>(w, stride, nsb, qx, dx, xs, tokens, out, ldo); return true;
    default: return false;
  }
#endif
}

int64_t gemm16_x_passes(int64_t tokens) {
#if PAGODA_AVX512_VNNI
  return gemm_passes(tokens, kGemm16Tokens);
#else
  (void)tokens;
  return 0;
#endif
}

size_t gemm16_x_words(int64_t tokens, int64_t nb) {
#if PAGODA_AVX512_VNNI
  return size_t(kXWords * nb * tokens);
#else
  (void)tokens, (void)nb;
  return 0;
#endif
}

void gemm16_x(DType t, const int8_t* qx, const float* dx, const int32_t* xs, int64_t tokens, int64_t nb, int64_t p0,
              int64_t p1, int32_t* xi) {
#if PAGODA_AVX512_VNNI
  with_blocks32(t, [&](auto b) {
    gemm16_x_type<decltype(b)>(qx, dx, xs, tokens, nb, p0, p1, xi);
    return true;
  });
#else
  (void)t, (void)qx, (void)dx, (void)xs, (void)tokens, (void)nb, (void)p0, (void)p1, (void)xi;
#endif
}

bool gemm16(DType t, const uint8_t* w, size_t stride, int64_t nb, const int8_t* qx, const float* dx, const int32_t* xs,
            const int32_t* xi, int64_t tokens, float* out, int64_t ldo, int panels) {
#if PAGODA_AVX512_VNNI
  (void)qx, (void)dx, (void)xs;
  return with_blocks32(t, [&](auto b) {
    gemm16_type<decltype(b)>(w, stride, nb, xi, tokens, out, ldo, panels);
    return true;
  });
#else
  (void)xi;
  if (panels == 2)
    return gemm16(t, w, stride, nb, qx, dx, xs, xi, tokens, out, ldo, 1) &&
           gemm16(t, w + size_t(kGemmRows) * stride, stride, nb, qx, dx, xs, xi, tokens, out + kGemmRows, ldo, 1);
  return with_blocks32(t, [&](auto b) {
    gemm8x2_type<decltype(b)>(w, stride, nb, qx, dx, xs, tokens, out, ldo);
    return true;
  });
#endif
}

bool has_kept_panels(DType t) {
#if PAGODA_AVX512_VNNI
  return kept16_k16(t);
#else
  return kept_k(t) || kept_k16(t) || with_blocks32(t, [](auto b) { return panel8_compact<decltype(b)>(); });
#endif
}

void pack_kept_panels(DType t, const uint8_t* src, size_t stride, int64_t n_in, int64_t g0, int64_t g1, uint8_t* dst) {
#if !PAGODA_AVX512_VNNI
  auto groups = [&](auto pack) {
    for (int64_t g = g0; g < g1; ++g) {
      const size_t at = size_t(g * kPanel8Rows) * stride;
      pack(src + at, dst + at);
    }
  };
  if (t == DType::Q4_K) return groups([&](const uint8_t* s, uint8_t* d) { pack_kept_k<DType::Q4_K>(s, stride, n_in / 256, d); });
  if (t == DType::Q5_K) return groups([&](const uint8_t* s, uint8_t* d) { pack_kept_k<DType::Q5_K>(s, stride, n_in / 256, d); });
  if (t == DType::Q2_K) return groups([&](const uint8_t* s, uint8_t* d) { pack_kept_k16<DType::Q2_K>(s, stride, n_in / 256, d); });
  if (t == DType::Q3_K) return groups([&](const uint8_t* s, uint8_t* d) { pack_kept_k16<DType::Q3_K>(s, stride, n_in / 256, d); });
  with_blocks32(t, [&](auto b) {
    using B = decltype(b);
    if constexpr (panel8_compact<B>()) groups([&](const uint8_t* s, uint8_t* d) { pack_panel8c<B>(s, stride, n_in / 32, d); });
    return true;
  });
#else
  for (int64_t g = g0; g < g1; ++g) {
    const size_t at = size_t(g * kKeptGroupRows) * stride;
    if (t == DType::Q2_K) pack_kept16_k16<DType::Q2_K>(src + at, stride, n_in / 256, dst + at);
    if (t == DType::Q3_K) pack_kept16_k16<DType::Q3_K>(src + at, stride, n_in / 256, dst + at);
  }
#endif
}

void kept_panel_matmul_k(DType t, const uint8_t* panel, size_t stride, int64_t rows, int64_t nsb, int64_t o0, int64_t o1,
                         const int8_t* qx, const float* dx, const int16_t* xs, int64_t tokens, float* out, int64_t ldo) {
#if !PAGODA_AVX512_VNNI
  if (t == DType::Q4_K) kept_k_rows<DType::Q4_K>(panel, stride, rows, nsb, o0, o1, qx, dx, xs, tokens, out, ldo);
  if (t == DType::Q5_K) kept_k_rows<DType::Q5_K>(panel, stride, rows, nsb, o0, o1, qx, dx, xs, tokens, out, ldo);
  if (t == DType::Q2_K) kept_k_rows<DType::Q2_K>(panel, stride, rows, nsb, o0, o1, qx, dx, xs, tokens, out, ldo);
  if (t == DType::Q3_K) kept_k_rows<DType::Q3_K>(panel, stride, rows, nsb, o0, o1, qx, dx, xs, tokens, out, ldo);
#else
  if (t == DType::Q2_K) kept16_k16_rows<DType::Q2_K>(panel, stride, rows, nsb, o0, o1, qx, dx, xs, tokens, out, ldo);
  if (t == DType::Q3_K) kept16_k16_rows<DType::Q3_K>(panel, stride, rows, nsb, o0, o1, qx, dx, xs, tokens, out, ldo);
#endif
}

void kept_panel_matmul(DType t, const uint8_t* panel, size_t stride, int64_t rows, int64_t nb, int64_t o0, int64_t o1,
                       const int8_t* qx, const float* dx, const int32_t* xs, int64_t tokens, float* out, int64_t ldo) {
#if !PAGODA_AVX512_VNNI
  with_blocks32(t, [&](auto b) {
    using B = decltype(b);
    if constexpr (panel8_compact<B>()) kept_panel_rows<B>(panel, stride, rows, nb, o0, o1, qx, dx, xs, tokens, out, ldo);
    return true;
  });
#else
  (void)t, (void)panel, (void)stride, (void)rows, (void)nb, (void)o0, (void)o1, (void)qx, (void)dx, (void)xs, (void)tokens,
      (void)out, (void)ldo;
#endif
}

SuperDotRows super_dot_rows_for(DType t, int64_t nsb) {
#if PAGODA_AVX512_VNNI
  switch (t) {
    case DType::Q4_K: return sdot_range<DType::Q4_K>;
    case DType::Q5_K: return sdot_range<DType::Q5_K>;
    case DType::Q6_K: return sdot_range<DType::Q6_K>;
    default: break;  // Q2_K, Q3_K: kept panels, the rows past them through sdot_k16
  }
#else
  (void)t, (void)nsb;
#endif
  return nullptr;
}

SuperDot super_dot_for(DType t, int rows, int64_t) {
  if (rows < 1 || rows > 4) return nullptr;
  switch (t) {
#define PAGODA_SUPER_DOT(T) \
  case DType::T: return rows == 4 ? sdot<DType::T, 4> : rows == 3 ? sdot<DType::T, 3> : rows == 2 ? sdot<DType::T, 2> : sdot<DType::T, 1>;
    PAGODA_SUPER_DOT(Q2_K) PAGODA_SUPER_DOT(Q3_K) PAGODA_SUPER_DOT(Q4_K) PAGODA_SUPER_DOT(Q5_K) PAGODA_SUPER_DOT(Q6_K)
#undef PAGODA_SUPER_DOT
    default: return nullptr;
  }
}

int x256_slot(DType t, int i) { return 32 * x256_chunk(t, i / 32) + i % 32; }
int x256_layout(DType t) { return x256_paired(t) ? 1 : 0; }

void quantize_x256(const float* x, int64_t sb0, int64_t sb1, int8_t* q, float* d, int16_t* sums, DType t) {
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
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + sb * 256 + 32 * x256_chunk(t, g)), packed);
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
int x256_slot(DType, int i) { return i; }
int x256_layout(DType) { return 0; }
IntDot int_dot_for(DType) { return nullptr; }
IntDotRows int_dot_rows_for(DType) { return nullptr; }
IntDotBatch int_dot_rows_at_once(DType, int) { return nullptr; }
int x32_layout(DType) { return 0; }
SuperDot super_dot_for(DType, int, int64_t) { return nullptr; }
SuperDotRows super_dot_rows_for(DType, int64_t) { return nullptr; }
bool has_gemm16(DType) { return false; }
UnpackedDot4 unpacked_dot4_for(DType, UnpackRow*) { return nullptr; }
bool has_gemm16_k(DType) { return false; }
int64_t panel_min_tokens(DType) { return 16; }
int64_t gemm16k_x_passes(DType, int64_t) { return 0; }
size_t gemm16k_x_words(DType, int64_t, int64_t) { return 0; }
void gemm16k_x(DType, const int8_t*, const float*, const int16_t*, int64_t, int64_t, int64_t, int64_t, int32_t*) {}
bool gemm16_k(DType, const uint8_t*, size_t, int64_t, const int8_t*, const float*, const int16_t*, const int32_t*, int64_t, float*,
              int64_t, int) { return false; }
int64_t gemm16_x_passes(int64_t) { return 0; }
size_t gemm16_x_words(int64_t, int64_t) { return 0; }
void gemm16_x(DType, const int8_t*, const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int32_t*) {}
bool gemm16(DType, const uint8_t*, size_t, int64_t, const int8_t*, const float*, const int32_t*, const int32_t*, int64_t, float*,
            int64_t, int) { return false; }
bool has_kept_panels(DType) { return false; }
void pack_kept_panels(DType, const uint8_t*, size_t, int64_t, int64_t, int64_t, uint8_t*) {}
void kept_panel_matmul(DType, const uint8_t*, size_t, int64_t, int64_t, int64_t, int64_t, const int8_t*, const float*,
                       const int32_t*, int64_t, float*, int64_t) {}
void kept_panel_matmul_k(DType, const uint8_t*, size_t, int64_t, int64_t, int64_t, int64_t, const int8_t*, const float*,
                         const int16_t*, int64_t, float*, int64_t) {}
void quantize_x256(const float*, int64_t, int64_t, int8_t*, float*, int16_t*, DType) {}
#endif

}  // namespace pagoda::fastq
