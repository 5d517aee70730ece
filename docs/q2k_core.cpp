// Q2_K's inner loop in registers only (no loads but the scales in one variant): the product-table
// kernel against a sub-block-contiguous layout that would need the weights repacked at load.
// Twenty-fifth session (docs/perf.md). Build and run on one pinned core:
//   g++ -O2 -march=native -std=c++20 docs/q2k_core.cpp -o /tmp/q2k_core && taskset -c 0 /tmp/q2k_core
// Each variant runs NR independent super-block rows per iteration; cycles assume 3.5 GHz.
#include <immintrin.h>
#include <cstdio>
#include <chrono>
constexpr int NR = 5;
template <int VAR>
__attribute__((noinline)) float run(long iters, const __m512i* src, const uint8_t* scmem) {
  __m512i qs[8], sc[8], x[4]; __m512 acc[8];
  for (int i=0;i<8;i++){ qs[i]=src[i]; sc[i]=src[8+i]; acc[i]=_mm512_setzero_ps(); }
  for (int i=0;i<4;i++) x[i]=src[16+i];
  const __m512i c03 = _mm512_set1_epi8(3), c0c = _mm512_set1_epi8(12), c0f = _mm512_set1_epi32(15);
  const __m512i at = src[20], mul = _mm512_set1_epi32(0x03020100);
  const __m512i pk[4] = {_mm512_set1_epi64(0x0102), _mm512_set1_epi64(0x0408), _mm512_set1_epi64(0x1020), _mm512_set1_epi64(0x4080)};
  for (long it=0; it<iters; ++it) {
    #pragma GCC unroll 8
    for (int r=0;r<NR;r++) {
      if (VAR == 0) {
        __m512i tab = _mm512_mullo_epi16(_mm512_maskz_permutexvar_epi8(0x5555555555555555ull, at, sc[r]), mul);
        __m512i s = _mm512_setzero_si512();
        #pragma GCC unroll 4
        for (int p=0;p<4;p++) {
          __m512i idx;
          switch(p){case 0: idx=_mm512_gf2p8affine_epi64_epi8(qs[r], pk[0], 0); break; case 1: idx=_mm512_gf2p8affine_epi64_epi8(qs[r], pk[1], 4); break; case 2: idx=_mm512_gf2p8affine_epi64_epi8(qs[r], pk[2], 8); break; default: idx=_mm512_gf2p8affine_epi64_epi8(qs[r], pk[3], 12);}
          s = _mm512_dpbusd_epi32(s, _mm512_shuffle_epi8(tab, idx), x[p]);
        }
        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f+r), _mm512_cvtepi32_ps(s), acc[r]);
      } else if (VAR == 1 || VAR == 2) {  // repacked: lane s = sub-block s
        const __m512i hi = _mm512_srli_epi16(qs[r], 4);
        __m512i sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qs[r], c03), x[0]);
        __m512i sb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qs[r], c0c), x[1]);
        sa = _mm512_dpbusd_epi32(sa, _mm512_and_si512(hi, c03), x[2]);
        sb = _mm512_dpbusd_epi32(sb, _mm512_and_si512(hi, c0c), x[3]);
        const __m512i s = _mm512_add_epi32(sa, _mm512_srai_epi32(sb, 2));
        __m512i sc32 = VAR == 1 ? _mm512_cvtepu8_epi32(_mm512_castsi512_si128(sc[r]))
                                : _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(scmem + 16 * ((r + it) & 63))));
        sc32 = _mm512_and_si512(sc32, c0f);
        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f+r), _mm512_cvtepi32_ps(_mm512_madd_epi16(s, sc32)), acc[r]);
      } else if (VAR == 4 || VAR == 5) {  // floor: planes + dpbusd only
        const __m512i hi = _mm512_srli_epi16(qs[r], 4);
        __m512i sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qs[r], c03), x[0]);
        __m512i sb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qs[r], c0c), x[1]);
        sa = _mm512_dpbusd_epi32(sa, _mm512_and_si512(hi, c03), x[2]);
        sb = _mm512_dpbusd_epi32(sb, _mm512_and_si512(hi, c0c), x[3]);
        __m512i s = _mm512_add_epi32(sa, _mm512_srai_epi32(sb, 2));
        if (VAR == 5) s = _mm512_madd_epi16(s, sc[r]);
        acc[r] = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(acc[r]), s));
      } else if (VAR == 3) {  // original layout, per-plane scale vectors from one vpermb + shifts
        const __m512i v = _mm512_permutexvar_epi8(at, sc[r]);
        const __m512i hi = _mm512_srli_epi16(qs[r], 4);
        const __m512i a0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qs[r], c03), x[0]);
        const __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(qs[r], c0c), x[1]);
        const __m512i a2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(hi, c03), x[2]);
        const __m512i a3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(hi, c0c), x[3]);
        const __m512i ta = _mm512_add_epi32(_mm512_madd_epi16(a0, _mm512_and_si512(v, c0f)), _mm512_madd_epi16(a2, _mm512_and_si512(_mm512_srli_epi32(v, 16), c0f)));
        const __m512i tb = _mm512_add_epi32(_mm512_madd_epi16(a1, _mm512_and_si512(_mm512_srli_epi32(v, 8), c0f)), _mm512_madd_epi16(a3, _mm512_srli_epi32(v, 24)));
        const __m512i s = _mm512_add_epi32(ta, _mm512_srai_epi32(tb, 2));
        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f+r), _mm512_cvtepi32_ps(s), acc[r]);
      }
      qs[r] = _mm512_add_epi8(qs[r], x[0]);
    }
    __asm__ volatile("" ::: "memory");
  }
  __m512 t = acc[0]; for (int i=1;i<NR;i++) t=_mm512_add_ps(t,acc[i]); return _mm512_reduce_add_ps(t);
}
alignas(64) static uint8_t scm[16*64+64];
template <int V> void bench(const char* name, const __m512i* src) {
  long iters = 20000000; run<V>(1000, src, scm);
  auto a = std::chrono::steady_clock::now(); float f = run<V>(iters, src, scm); auto b = std::chrono::steady_clock::now();
  double ns = std::chrono::duration<double, std::nano>(b-a).count() / (iters*double(NR));
  printf("%-34s %.3f ns/SB-row = %.2f cycles @3.5  (%g)\n", name, ns, ns*3.5, f);
}
int main(){ alignas(64) static __m512i src[32]; for(int i=0;i<32;i++) src[i]=_mm512_set1_epi32(0x01020304*(i+1));
 for (int i=0;i<16*64;i++) scm[i]=i*7;
 bench<0>("current (gfni+table+pshufb)", src); bench<1>("repacked, scales from reg", src); bench<2>("repacked, scales from mem", src);
 bench<3>("orig layout, per-plane madd", src); bench<4>("floor planes+dpbusd", src); bench<5>("floor + madd", src); bench<0>("current again", src); bench<2>("repacked mem again", src);}
