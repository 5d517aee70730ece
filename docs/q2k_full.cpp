// The whole Q2_K row kernel against a repacked layout (twenty-sixth session, docs/perf.md), not
// only its inner loop (docs/q2k_core.cpp): each super-block's 64 quant bytes stored so that 32-bit
// lane j is sub-block j (byte b, bits 2p: element 16j + 4p + b), headers as in the file, the
// activations in the matching order, their per-16 sums as int32 lanes. Loads from a 192 KiB
// buffer (it stays in L2), like `pagoda_kernel_bench --benchmark_filter=Matvec/q2_k/l2`, R weight
// rows a pass. Run both pinned to one vCPU:
//   g++ -O2 -march=native -std=c++20 -DPF=1 docs/q2k_full.cpp -o /tmp/q2k_full && taskset -c 0 /tmp/q2k_full
#include <immintrin.h>
#ifndef PF
#define PF 1
#endif
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <chrono>
#include <vector>
#include <random>
constexpr int kB = 84;
template <int R>
static inline void rows_dot(const uint8_t* w, size_t stride, const int8_t* qx, const float* dx2, const int32_t* bs, int64_t nsb, float* out) {
  const __m512i c03 = _mm512_set1_epi8(3), c0c = _mm512_set1_epi8(12), c0f = _mm512_set1_epi32(15);
  __m512 acc[R], acm[R];
  for (int r = 0; r < R; ++r) acc[r] = acm[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < nsb; g += 4) {
    alignas(32) float f[R][8];
    for (int r = 0; r < R; ++r) {
      alignas(16) uint32_t dd[4];
      for (int k = 0; k < 4; ++k) std::memcpy(&dd[k], w + r * stride + (g + k) * kB + 80, 4);
      _mm256_store_ps(f[r], _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128((const __m128i*)dd)), _mm256_loadu_ps(dx2 + 2 * g)));
    }
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const int8_t* xb = qx + (g + k) * 256;
      const __m512i x0 = _mm512_load_si512(xb), x1 = _mm512_load_si512(xb + 64), x2 = _mm512_load_si512(xb + 128), x3 = _mm512_load_si512(xb + 192);
      const __m512i bsv = _mm512_load_si512(bs + (g + k) * 16);
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const uint8_t* wb = w + r * stride + (g + k) * kB;
        if (PF) _mm_prefetch((const char*)wb + 48 * kB, _MM_HINT_T0);
        const __m512i q = _mm512_loadu_si512(wb);
        const __m512i hi = _mm512_srli_epi16(q, 4);
        __m512i sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q, c03), x0);
        __m512i sb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q, c0c), x1);
        sa = _mm512_dpbusd_epi32(sa, _mm512_and_si512(hi, c03), x2);
        sb = _mm512_dpbusd_epi32(sb, _mm512_and_si512(hi, c0c), x3);
        const __m512i s = _mm512_add_epi32(sa, _mm512_srai_epi32(sb, 2));
        const __m512i h = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(wb + 64)));
        const __m512i A = _mm512_madd_epi16(s, _mm512_and_si512(h, c0f));
        const __m512i B = _mm512_madd_epi16(_mm512_srli_epi32(h, 4), bsv);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(A), _mm512_set1_ps(f[r][2 * k]), acc[r]);
        acm[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(B), _mm512_set1_ps(f[r][2 * k + 1]), acm[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r], acm[r]));
}
template <int R> void run(int64_t cols) {
  const int64_t nsb = cols / 256;
  const int64_t rows = (192 * 1024) / (nsb * kB) / 4 * 4;
  std::vector<uint8_t> w(rows * nsb * kB + 64 * kB);
  std::mt19937 rng(1);
  for (auto& b : w) b = rng();
  for (int64_t i = 0; i < rows * nsb; ++i) { uint16_t h = 0x2c00 + (rng() & 0xff); std::memcpy(&w[i * kB + 80], &h, 2); std::memcpy(&w[i * kB + 82], &h, 2); }
  int8_t* qx = (int8_t*)aligned_alloc(64, nsb * 256); for (int i = 0; i < nsb * 256; ++i) qx[i] = int8_t(rng());
  float* dx2 = (float*)aligned_alloc(64, nsb * 8 + 64); for (int i = 0; i < nsb * 2; ++i) dx2[i] = (i & 1) ? -0.01f : 0.01f;
  int32_t* bs = (int32_t*)aligned_alloc(64, nsb * 64 + 64); for (int i = 0; i < nsb * 16; ++i) bs[i] = int16_t(rng() % 4000 - 2000);
  std::vector<float> out(rows);
  double best = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    const int iters = 3000;
    auto a = std::chrono::steady_clock::now();
    for (int it = 0; it < iters; ++it) { for (int64_t r = 0; r < rows; r += R) rows_dot<R>(w.data() + r * nsb * kB, nsb * kB, qx, dx2, bs, nsb, &out[r]); __asm__ volatile("" ::: "memory"); }
    auto b = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(b - a).count() / (double(iters) * rows * nsb));
  }
  printf("R=%d cols %ld: %.1f Gweights/s, %.2f cycles/SB-row @3.5 (%g)\n", R, cols, 256 / best / 1e9, best * 3.5e9, out[5]);
}
int main(int argc, char** argv) { const int64_t c = argc > 1 ? atoi(argv[1]) : 2048; run<1>(c); run<2>(c); run<4>(c); }
