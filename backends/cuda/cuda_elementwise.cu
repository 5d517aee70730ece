// Row-wise and elementwise kernels: embed (every weight type), rms_norm, rope (with Llama 3 frequency
// factors or without), silu_mul, gelu_mul, scale, softcap, add,
// kv_store, softmax.
// Each mirrors the CPU reference (backends/cpu/cpu_ref_ops.cpp) formula for formula, with accurate
// libm calls (no fast-math) so results match to float rounding of the reduction order.
#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_quant_blocks.h"

namespace pagoda::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kSoftmaxThreads = 1024;
constexpr int kElemThreads = 256;

// Grid size for a grid-stride elementwise loop: enough CTAs to fill the GPU, never more than needed.
unsigned elem_grid(int64_t n) {
  const int64_t blocks = (n + kElemThreads - 1) / kElemThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);
}

__global__ void embed_kernel(DType t, const uint8_t* __restrict__ table, size_t table_stride, int64_t table_rows,
                             int64_t dim, const int32_t* __restrict__ ids, float* __restrict__ out,
                             int64_t out_stride) {
  const int64_t r = blockIdx.x;
  const int32_t id = ids[r];
  float* o = out + r * out_stride;
  // An id outside the table would read foreign memory; write zeros instead (the caller's bug stays visible).
  if (id < 0 || id >= table_rows) {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = 0.0f;
    return;
  }
  const uint8_t* row = table + size_t(id) * table_stride;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = load_element(t, row, i);
}

// Block-quantized tables: each thread decodes 8-element groups of the row (dim is a whole number
// of blocks, so a multiple of 32).
template <DType T>
__global__ void embed_quant_kernel(const uint8_t* __restrict__ table, size_t table_stride, int64_t table_rows,
                                   int64_t dim, const int32_t* __restrict__ ids, float* __restrict__ out,
                                   int64_t out_stride) {
  using B = qblocks::Traits<T>;
  const int64_t r = blockIdx.x;
  const int32_t id = ids[r];
  float* o = out + r * out_stride;
  if (id < 0 || id >= table_rows) {  // as embed_kernel: zeros, never a foreign read
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = 0.0f;
    return;
  }
  const uint8_t* row = table + size_t(id) * table_stride;
  for (int64_t e = int64_t(threadIdx.x) * 8; e < dim; e += int64_t(blockDim.x) * 8) {
    float y[8];
    qblocks::dequant8<T>(row + (e / B::kElems) * B::kBytes, int(e % B::kElems), y);
#pragma unroll
    for (int i = 0; i < 8; ++i) o[e + i] = y[i];
  }
}

// Rows up to kNormCached * kRowThreads (4096) keep each thread's values in registers: their loads
// issue together, and the scaling pass reads no x after the barrier. Reading x again there (out may
// alias x, so no load can pass an earlier store) made a 2048-wide row eight dependent round trips,
// 8 us of a 1B model's 2.8 ms token on an H200 (ncu). The sum's order is the same in both paths.
constexpr int kNormCached = 16;

__global__ void rms_norm_kernel(const float* x, const float* __restrict__ w, float* out, int64_t cols, float eps) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * cols;
  float* o = out + blockIdx.x * cols;
  const bool cached = cols <= int64_t(kNormCached) * blockDim.x;
  float v[kNormCached];
  float ss = 0.0f;
  if (cached) {
#pragma unroll
    for (int k = 0; k < kNormCached; ++k) {
      const int64_t i = threadIdx.x + int64_t(k) * blockDim.x;
      v[k] = i < cols ? xr[i] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kNormCached; ++k) ss += v[k] * v[k];  // the padding adds exact zeros
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
  }
  ss = block_sum(ss, scratch);  // every read of xr happens before this barrier, so out may alias x
  const float scale = 1.0f / sqrtf(ss / float(cols) + eps);
  if (cached) {
#pragma unroll
    for (int k = 0; k < kNormCached; ++k) {
      const int64_t i = threadIdx.x + int64_t(k) * blockDim.x;
      if (i < cols) o[i] = v[k] * scale * w[i];
    }
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = xr[i] * scale * w[i];
  }
}

// freqs: theta^(-2i/head_dim) per pair, computed on the host with the reference's expression
// (the device powf is not correctly rounded, and at position 32768 one ulp of a frequency turns a
// pair by ~2e-3 rad). factors (nullable): Llama 3's per-pair frequency divisors, divided as the CPU
// reference divides them. The rotation is in double as the reference's: each product of two floats
// is exact there, so fusing a product into the sum cannot change the rounded result.
__global__ void rope_kernel(float* x, int64_t x_stride, const int32_t* __restrict__ pos,
                            const float* __restrict__ freqs, const float* __restrict__ factors, int64_t rows,
                            int32_t n_heads, int32_t head_dim) {
  const int32_t half_dim = head_dim / 2;
  const int64_t total = rows * n_heads * half_dim;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int32_t pair = int32_t(idx % half_dim);
    const int64_t rh = idx / half_dim;
    const int32_t h = int32_t(rh % n_heads);
    const int64_t r = rh / n_heads;
    const int32_t i = 2 * pair;
    float freq = freqs[pair];
    if (factors) freq /= factors[pair];
    const float a = float(pos[r]) * freq;
    float s, c;
    sincosf(a, &s, &c);
    float* v = x + r * x_stride + int64_t(h) * head_dim + i;
    const double v0 = v[0], v1 = v[1];
    v[0] = float(v0 * c - v1 * s);
    v[1] = float(v0 * s + v1 * c);
  }
}

__global__ void silu_mul_kernel(const float* gate, const float* __restrict__ up, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// GELU in its tanh form (Gemma's gated FFN).
__global__ void gelu_mul_kernel(const float* gate, const float* __restrict__ up, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    const float u = 0.7978845608028654f * (g + 0.044715f * g * g * g);
    out[i] = g / (1.0f + expf(-2.0f * u)) * up[i];  // = 0.5 g (1 + tanh(u)), without cancellation
  }
}

// out = x * s, or cap * tanh(x / cap) when cap > 0.
__global__ void scale_kernel(const float* x, float* out, int64_t n, float s, float cap) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = cap > 0.0f ? cap * tanhf(x[i] / cap) : x[i] * s;
}

__global__ void add_kernel(const float* a, const float* __restrict__ b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

template <bool kHalf>
__global__ void kv_store_kernel(const float* __restrict__ k, const float* __restrict__ v, int64_t cols,
                                uint8_t* k_cache, uint8_t* v_cache, int64_t cache_rows,
                                const int32_t* __restrict__ slots) {
  const int64_t r = blockIdx.x;
  const int32_t slot = slots[r];
  if (slot < 0 || slot >= cache_rows) return;  // negative = padding; past the pool = never write
  const float* kr = k + r * cols;
  const float* vr = v + r * cols;
  if constexpr (kHalf) {
    __half* kc = reinterpret_cast<__half*>(k_cache) + int64_t(slot) * cols;
    __half* vc = reinterpret_cast<__half*>(v_cache) + int64_t(slot) * cols;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      kc[i] = __float2half_rn(kr[i]);  // round-to-nearest-even, as float_to_half
      vc[i] = __float2half_rn(vr[i]);
    }
  } else {
    float* kc = reinterpret_cast<float*>(k_cache) + int64_t(slot) * cols;
    float* vc = reinterpret_cast<float*>(v_cache) + int64_t(slot) * cols;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      kc[i] = kr[i];
      vc[i] = vr[i];
    }
  }
}

// Three passes over one row per CTA. Each thread touches the same indices in every pass, so writing
// exp() into out in pass 2 is safe even when out aliases x.
__global__ void __launch_bounds__(kSoftmaxThreads)
    softmax_kernel(const float* x, float* out, int64_t cols, float temperature) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * cols;
  float* o = out + blockIdx.x * cols;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) mx = fmaxf(mx, xr[i]);
  mx = block_max(mx, scratch);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float e = expf((xr[i] - mx) / temperature);
    o[i] = e;
    sum += e;
  }
  sum = block_sum(sum, scratch);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = o[i] / sum;
}

}  // namespace

cudaError_t launch_embed(cudaStream_t s, DType table_type, const uint8_t* table, size_t table_stride,
                         int64_t table_rows, int64_t dim, const int32_t* ids, int64_t n, float* out,
                         int64_t out_stride) {
  const unsigned grid = unsigned(n);
#define PAGODA_EMBED_QUANT(T)                                                                           \
  case DType::T:                                                                                        \
    embed_quant_kernel<DType::T><<<grid, kRowThreads, 0, s>>>(table, table_stride, table_rows, dim, ids, \
                                                              out, out_stride);                         \
    break;
  switch (table_type) {
    PAGODA_EMBED_QUANT(Q8_0)
    PAGODA_EMBED_QUANT(Q4_0)
    PAGODA_EMBED_QUANT(Q4_1)
    PAGODA_EMBED_QUANT(Q5_0)
    PAGODA_EMBED_QUANT(Q5_1)
    PAGODA_EMBED_QUANT(IQ4_NL)
    PAGODA_EMBED_QUANT(Q2_K)
    PAGODA_EMBED_QUANT(Q3_K)
    PAGODA_EMBED_QUANT(Q4_K)
    PAGODA_EMBED_QUANT(Q5_K)
    PAGODA_EMBED_QUANT(Q6_K)
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      embed_kernel<<<grid, kRowThreads, 0, s>>>(table_type, table, table_stride, table_rows, dim, ids, out, out_stride);
      break;
    default: return cudaErrorInvalidValue;
  }
#undef PAGODA_EMBED_QUANT
  return cudaGetLastError();
}

cudaError_t launch_rms_norm(cudaStream_t s, const float* x, const float* w, float* out, int64_t rows,
                            int64_t cols, float eps) {
  rms_norm_kernel<<<unsigned(rows), kRowThreads, 0, s>>>(x, w, out, cols, eps);
  return cudaGetLastError();
}

cudaError_t launch_rope(cudaStream_t s, float* x, int64_t x_stride, const int32_t* pos, const float* freqs,
                        const float* factors, int64_t rows, int32_t n_heads, int32_t head_dim) {
  const int64_t total = rows * n_heads * (head_dim / 2);
  rope_kernel<<<elem_grid(total), kElemThreads, 0, s>>>(x, x_stride, pos, freqs, factors, rows, n_heads, head_dim);
  return cudaGetLastError();
}

cudaError_t launch_silu_mul(cudaStream_t s, const float* gate, const float* up, float* out, int64_t n) {
  silu_mul_kernel<<<elem_grid(n), kElemThreads, 0, s>>>(gate, up, out, n);
  return cudaGetLastError();
}

cudaError_t launch_gelu_mul(cudaStream_t s, const float* gate, const float* up, float* out, int64_t n) {
  gelu_mul_kernel<<<elem_grid(n), kElemThreads, 0, s>>>(gate, up, out, n);
  return cudaGetLastError();
}

cudaError_t launch_scale(cudaStream_t s, const float* x, float* out, int64_t n, float scale, float cap) {
  scale_kernel<<<elem_grid(n), kElemThreads, 0, s>>>(x, out, n, scale, cap);
  return cudaGetLastError();
}

cudaError_t launch_add(cudaStream_t s, const float* a, const float* b, float* out, int64_t n) {
  add_kernel<<<elem_grid(n), kElemThreads, 0, s>>>(a, b, out, n);
  return cudaGetLastError();
}

cudaError_t launch_kv_store(cudaStream_t s, const float* k, const float* v, int64_t rows, int64_t cols,
                            DType cache_type, uint8_t* k_cache, uint8_t* v_cache, int64_t cache_rows,
                            const int32_t* slots) {
  if (cache_type == DType::F16)
    kv_store_kernel<true><<<unsigned(rows), kRowThreads, 0, s>>>(k, v, cols, k_cache, v_cache, cache_rows, slots);
  else
    kv_store_kernel<false><<<unsigned(rows), kRowThreads, 0, s>>>(k, v, cols, k_cache, v_cache, cache_rows, slots);
  return cudaGetLastError();
}

cudaError_t launch_softmax(cudaStream_t s, const float* x, float* out, int64_t rows, int64_t cols,
                           float temperature) {
  softmax_kernel<<<unsigned(rows), kSoftmaxThreads, 0, s>>>(x, out, cols, temperature);
  return cudaGetLastError();
}

cudaError_t probe_kernels() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, add_kernel);
}

}  // namespace pagoda::cuda
