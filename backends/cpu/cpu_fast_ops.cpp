// Production CPU kernels: threaded over output rows / (token, kv head) pairs, vectorized with GCC
// vector extensions (8 floats per lane, four accumulators to hide FMA latency).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

float dot_f32(const float* a, const float* b, int64_t n) {
  v8f s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 += load8(a + i) * load8(b + i);
    s1 += load8(a + i + 8) * load8(b + i + 8);
    s2 += load8(a + i + 16) * load8(b + i + 16);
    s3 += load8(a + i + 24) * load8(b + i + 24);
  }
  for (; i + 8 <= n; i += 8) s0 += load8(a + i) * load8(b + i);
  float s = hsum((s0 + s1) + (s2 + s3));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Every half value as a float: the block scales of quantized rows are looked up, not converted.
const float* half_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v(65536);
    for (uint32_t h = 0; h < 65536; ++h) v[h] = half_to_float(uint16_t(h));
    return v;
  }();
  return t.data();
}

// Fused dequantize-and-dot for one Q8_0 row against floats (n multiple of 32). Two blocks per
// iteration into independent accumulators so the int8->float converts overlap the FMAs.
float dot_q8_0(const uint8_t* w, const float* x, int64_t n) {
  const float* ht = half_table();
  v8f acc0 = {}, acc1 = {};
  auto block = [&](const uint8_t* b, const float* xb) {
    v8f part = {};
    for (int j = 0; j < 32; j += 8) part += int8x8_to_f32(b + 2 + j) * load8(xb + j);
    uint16_t d16;
    std::memcpy(&d16, b, 2);
    return part * ht[d16];
  };
  const int64_t nb = n / 32;
  int64_t blk = 0;
  for (; blk + 2 <= nb; blk += 2) {
    acc0 += block(w + blk * 34, x + blk * 32);
    acc1 += block(w + (blk + 1) * 34, x + (blk + 1) * 32);
  }
  if (blk < nb) acc0 += block(w + blk * 34, x + blk * 32);
  return hsum(acc0 + acc1);
}

#if defined(__AVX2__)
// Activations quantized like Q8_0 (per 32-block scale, int8 values) so a Q8_0 weight row dots in
// integer arithmetic: 32 products per maddubs instead of 8 float FMAs after a convert.
struct QuantX {
  std::vector<int8_t> q;
  std::vector<float> d;
};

QuantX quantize_x(const float* x, int64_t rows, int64_t n) {
  QuantX out;
  out.q.resize(size_t(rows * n));
  out.d.resize(size_t(rows * n / 32));
  for (int64_t b = 0; b < rows * n / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    out.d[size_t(b)] = d;
    for (int j = 0; j < 32; ++j) out.q[size_t(b * 32 + j)] = int8_t(std::lrintf(xb[j] * id));
  }
  return out;
}

float dot_q8_q8(const uint8_t* w, const int8_t* qx, const float* dx, int64_t nb) {
  const float* ht = half_table();
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, w += 34) {
    const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + b * 32));
    // maddubs multiplies unsigned by signed: move w's sign onto x and use |w|.
    const __m256i prod16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qv, qw));
    const __m256 prod = _mm256_cvtepi32_ps(_mm256_madd_epi16(prod16, ones));
    uint16_t d16;
    std::memcpy(&d16, w, 2);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(ht[d16] * dx[b]), prod, acc);
  }
  v8f v;
  std::memcpy(&v, &acc, 32);
  return hsum(v);
}
#endif

#if defined(__F16C__)
typedef _Float16 v8h __attribute__((vector_size(16)));
float dot_f16(const uint8_t* w, const float* x, int64_t n) {
  v8f s0 = {}, s1 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v8h h0, h1;
    std::memcpy(&h0, w + 2 * i, 16);
    std::memcpy(&h1, w + 2 * i + 16, 16);
    s0 += __builtin_convertvector(h0, v8f) * load8(x + i);
    s1 += __builtin_convertvector(h1, v8f) * load8(x + i + 8);
  }
  float s = hsum(s0 + s1);
  const auto* h = reinterpret_cast<const uint16_t*>(w);
  for (; i < n; ++i) s += half_to_float(h[i]) * x[i];
  return s;
}
#endif

// out[r, o] for a tile of 4 weight rows x 3 activation rows: 12 accumulators, 7 loads per 12 FMAs,
// so batched matmul is bound by FMA throughput instead of loads (a plain dot is 2 loads per FMA).
void tile_4x3(const float* const w[4], const float* const x[3], int64_t n, float out[3][4]) {
  v8f a[3][4] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v8f w0 = load8(w[0] + i), w1 = load8(w[1] + i), w2 = load8(w[2] + i), w3 = load8(w[3] + i);
    for (int r = 0; r < 3; ++r) {
      const v8f xv = load8(x[r] + i);
      a[r][0] += w0 * xv;
      a[r][1] += w1 * xv;
      a[r][2] += w2 * xv;
      a[r][3] += w3 * xv;
    }
  }
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) {
      float sum = hsum(a[r][c]);
      for (int64_t j = i; j < n; ++j) sum += w[c][j] * x[r][j];
      out[r][c] = sum;
    }
}

// Batched F32 (or dequantized) matmul over output rows [o0, o1): tiles where they fit, dots elsewhere.
void matmul_rows_f32(const float* const* wrow, int64_t o0, int64_t o1, const HostTensor& x, const HostTensor& out) {
  const int64_t n = x.cols;
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) {
    const float* w4[4] = {wrow[o - o0], wrow[o - o0 + 1], wrow[o - o0 + 2], wrow[o - o0 + 3]};
    int64_t r = 0;
    for (; r + 3 <= x.rows; r += 3) {
      const float* x3[3] = {x.f32() + r * n, x.f32() + (r + 1) * n, x.f32() + (r + 2) * n};
      float t[3][4];
      tile_4x3(w4, x3, n, t);
      for (int a = 0; a < 3; ++a)
        for (int c = 0; c < 4; ++c) out.f32()[(r + a) * out.cols + o + c] = t[a][c];
    }
    for (; r < x.rows; ++r)
      for (int c = 0; c < 4; ++c) out.f32()[r * out.cols + o + c] = dot_f32(w4[c], x.f32() + r * n, n);
  }
  for (; o < o1; ++o)
    for (int64_t r = 0; r < x.rows; ++r) out.f32()[r * out.cols + o] = dot_f32(wrow[o - o0], x.f32() + r * n, n);
}

}  // namespace

namespace fast {

void matmul(ThreadPool& pool, const HostTensor& w, const HostTensor& x, const HostTensor& out) {
  const int64_t n_in = w.cols;
  const size_t stride = w.row_stride();
#if defined(__AVX2__)
  if (w.dtype == DType::Q8_0) {
    const QuantX qx = quantize_x(x.f32(), x.rows, n_in);
    pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t r = 0; r < x.rows; ++r)
          out.f32()[r * out.cols + o] = dot_q8_q8(w.data + size_t(o) * stride, qx.q.data() + r * n_in,
                                                  qx.d.data() + r * (n_in / 32), n_in / 32);
    });
    return;
  }
#endif
  // Decode (one row of x): fused kernels straight from the weight bytes, the bandwidth-bound case.
  // Batches: dequantize each weight row once and reuse it across every row of x.
  if (x.rows >= 3) {
    // Batches: weight rows as floats (F32 in place, others dequantized per chunk), then tiles.
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
            dequantize_row(w.dtype, w.data + size_t(o) * stride, buf.data() + (o - c0) * n_in, n_in);
            rows[size_t(o - c0)] = buf.data() + (o - c0) * n_in;
          }
        }
        matmul_rows_f32(rows.data(), c0, c1, x, out);
      }
    });
    return;
  }
  pool.parallel_for(w.rows, [&](int64_t o0, int64_t o1) {
    std::vector<float> buf;
    for (int64_t o = o0; o < o1; ++o) {
      const uint8_t* wr = w.data + size_t(o) * stride;
      if (w.dtype == DType::F32) {
        for (int64_t r = 0; r < x.rows; ++r)
          out.f32()[r * out.cols + o] = dot_f32(reinterpret_cast<const float*>(wr), x.f32() + r * x.cols, n_in);
        continue;
      }
      if (x.rows == 1 && w.dtype == DType::Q8_0) {
        out.f32()[o] = dot_q8_0(wr, x.f32(), n_in);
        continue;
      }
#if defined(__F16C__)
      if (x.rows == 1 && w.dtype == DType::F16) {
        out.f32()[o] = dot_f16(wr, x.f32(), n_in);
        continue;
      }
#endif
      buf.resize(size_t(n_in));
      dequantize_row(w.dtype, wr, buf.data(), n_in);
      for (int64_t r = 0; r < x.rows; ++r)
        out.f32()[r * out.cols + o] = dot_f32(buf.data(), x.f32() + r * x.cols, n_in);
    }
  });
}

void paged_attention(ThreadPool& pool, const HostTensor& q, const HostTensor& kc, const HostTensor& vc,
                     const HostTensor& seqs, const HostTensor& bt, const HostTensor& out,
                     const AttentionParams& p) {
  const auto* info = reinterpret_cast<const SeqInfo*>(seqs.data);
  // Map each query row to its sequence so work can be split over (row, kv head) pairs.
  std::vector<int32_t> row_seq(size_t(q.rows), -1);
  for (int32_t s = 0; s < p.n_seqs; ++s)
    for (int32_t j = 0; j < info[s].q_len; ++j) row_seq[size_t(info[s].q_start + j)] = s;
  const int32_t group = p.n_heads / p.n_kv_heads;
  const bool f32_kv = kc.dtype == DType::F32;

  pool.parallel_for(q.rows * p.n_kv_heads, [&](int64_t i0, int64_t i1) {
    std::vector<float> scores;
    std::vector<float> kbuf(static_cast<size_t>(p.head_dim)), vbuf(static_cast<size_t>(p.head_dim));
    std::vector<float> acc(static_cast<size_t>(group * p.head_dim));
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t row = item / p.n_kv_heads;
      const int32_t kvh = int32_t(item % p.n_kv_heads);
      const int32_t s = row_seq[size_t(row)];
      if (s < 0) continue;
      const SeqInfo& si = info[s];
      const int32_t pos = si.ctx_len - si.q_len + int32_t(row - si.q_start);
      const int32_t n_ctx = pos + 1;
      scores.resize(size_t(group) * size_t(n_ctx));
      auto slot_of = [&](int32_t t) {
        return int64_t(bt.i32()[si.bt_offset + t / p.block_size]) * p.block_size + t % p.block_size;
      };
      for (int32_t t = 0; t < n_ctx; ++t) {
        const uint8_t* kr = kc.data + size_t(slot_of(t)) * kc.row_stride();
        const float* kh;
        if (f32_kv) {
          kh = reinterpret_cast<const float*>(kr) + kvh * p.head_dim;
        } else {
          dequantize_row(kc.dtype, kr + row_bytes(kc.dtype, kvh * p.head_dim), kbuf.data(), p.head_dim);
          kh = kbuf.data();
        }
        for (int32_t g = 0; g < group; ++g) {
          const float* qh = q.f32() + row * q.cols + (kvh * group + g) * p.head_dim;
          scores[size_t(g) * size_t(n_ctx) + size_t(t)] = dot_f32(qh, kh, p.head_dim) * p.scale;
        }
      }
      for (int32_t g = 0; g < group; ++g) {
        float* sc = scores.data() + size_t(g) * size_t(n_ctx);
        const float mx = *std::max_element(sc, sc + n_ctx);
        float sum = 0;
        for (int32_t t = 0; t < n_ctx; ++t) { sc[t] = std::exp(sc[t] - mx); sum += sc[t]; }
        const float inv = 1.0f / sum;
        for (int32_t t = 0; t < n_ctx; ++t) sc[t] *= inv;
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int32_t t = 0; t < n_ctx; ++t) {
        const uint8_t* vr = vc.data + size_t(slot_of(t)) * vc.row_stride();
        const float* vh;
        if (f32_kv) {
          vh = reinterpret_cast<const float*>(vr) + kvh * p.head_dim;
        } else {
          dequantize_row(vc.dtype, vr + row_bytes(vc.dtype, kvh * p.head_dim), vbuf.data(), p.head_dim);
          vh = vbuf.data();
        }
        for (int32_t g = 0; g < group; ++g) {
          const float w = scores[size_t(g) * size_t(n_ctx) + size_t(t)];
          float* a = acc.data() + g * p.head_dim;
          for (int32_t d = 0; d < p.head_dim; ++d) a[d] += w * vh[d];
        }
      }
      for (int32_t g = 0; g < group; ++g)
        std::memcpy(out.f32() + row * out.cols + (kvh * group + g) * p.head_dim, acc.data() + g * p.head_dim,
                    size_t(p.head_dim) * 4);
    }
  });
}

}  // namespace fast
}  // namespace pagoda
