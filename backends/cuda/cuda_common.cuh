// Device helpers shared by the CUDA kernels: warp/block reductions and loads of the dense layouts
// (F32, F16, BF16). The block-quantized layouts are decoded by cuda_quant_blocks.h.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/backend.h"

namespace pagoda::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32); every thread receives the total.
// `scratch` holds 32 values; the leading barrier lets callers reuse it back to back.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < n_warps ? scratch[lane] : T(0);
  return warp_sum(r);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < n_warps ? scratch[lane] : -INFINITY;
  return warp_max(r);
}

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Loads through the read-only path; p must be aligned to the type.
__device__ __forceinline__ uint16_t ld_u16(const uint8_t* p) { return __ldg(reinterpret_cast<const unsigned short*>(p)); }

// One element of a row of a dense weight layout (F32, F16, BF16): the scalar path of embed and the
// unaligned fallbacks. Block-quantized rows are decoded a group at a time (cuda_quant_blocks.h).
__device__ __forceinline__ float load_element(DType t, const uint8_t* row, int64_t i) {
  switch (t) {
    case DType::F32: return __ldg(reinterpret_cast<const float*>(row) + i);
    case DType::F16: return half_bits_to_float(ld_u16(row + 2 * i));
    case DType::BF16: return __uint_as_float(uint32_t(ld_u16(row + 2 * i)) << 16);
    default: return 0.0f;
  }
}

// Eight halves in a 16-byte vector -> floats.
__device__ __forceinline__ void halves8(const uint4& v, float w[8]) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    w[2 * i] = f.x;
    w[2 * i + 1] = f.y;
  }
}

// Eight bfloat16 values in a 16-byte vector -> floats (each is the top half of an F32).
__device__ __forceinline__ void bf16s8(const uint4& v, float w[8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[2 * i] = __uint_as_float(u[i] << 16);
    w[2 * i + 1] = __uint_as_float(u[i] & 0xFFFF0000u);
  }
}

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

inline unsigned ceil_div_u(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace pagoda::cuda
