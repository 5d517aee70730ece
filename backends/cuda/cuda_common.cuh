// Device helpers shared by the CUDA kernels: warp/block reductions and decoding of the F16, Q8_0 and
// Q4_0 layouts (ggml blocks of 32: f16 scale, then 32 int8 or 16 bytes of nibbles, low nibbles first).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/backend.h"

namespace pagoda::cuda {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kQ8Bytes = 34;  // bytes of one Q8_0 block
constexpr int kQ4Bytes = 18;  // bytes of one Q4_0 block

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

// One element of a row in any weight layout (scalar path: embed and unaligned fallbacks).
__device__ __forceinline__ float load_element(DType t, const uint8_t* row, int64_t i) {
  switch (t) {
    case DType::F32: return __ldg(reinterpret_cast<const float*>(row) + i);
    case DType::F16: return half_bits_to_float(ld_u16(row + 2 * i));
    case DType::Q8_0: {
      const uint8_t* b = row + (i >> 5) * kQ8Bytes;
      const float d = half_bits_to_float(ld_u16(b));
      return d * float(static_cast<int8_t>(__ldg(b + 2 + (i & 31))));
    }
    case DType::Q4_0: {
      const uint8_t* b = row + (i >> 5) * kQ4Bytes;
      const float d = half_bits_to_float(ld_u16(b));
      const int j = int(i & 31);
      const uint8_t byte = __ldg(b + 2 + (j & 15));
      return d * float(int(j < 16 ? (byte & 0xF) : (byte >> 4)) - 8);
    }
    default: return 0.0f;
  }
}

// The two int8 values packed in a little-endian 16-bit word.
__device__ __forceinline__ void unpack_i8x2(uint16_t v, float& lo, float& hi) {
  lo = float(static_cast<int8_t>(v & 0xFF));
  hi = float(static_cast<int8_t>(v >> 8));
}

// Eight consecutive quant values (no scale) of a Q8_0 block starting at element `sub` (multiple of 8).
// `blk` points at the block (2-byte aligned), generic address space (shared or global).
__device__ __forceinline__ void q8_0_values8(const uint8_t* blk, int sub, float w[8]) {
  const uint16_t* q = reinterpret_cast<const uint16_t*>(blk + 2 + sub);
#pragma unroll
  for (int i = 0; i < 4; ++i) unpack_i8x2(q[i], w[2 * i], w[2 * i + 1]);
}

// Eight consecutive values (minus 8, no scale) of a Q4_0 block starting at element `sub` (multiple of 8):
// elements 0..15 are low nibbles of bytes 0..15, elements 16..31 the high nibbles.
__device__ __forceinline__ void q4_0_values8(const uint8_t* blk, int sub, float w[8]) {
  const uint16_t* q = reinterpret_cast<const uint16_t*>(blk + 2 + (sub & 15));
  const int shift = sub < 16 ? 0 : 4;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = q[i];
    w[2 * i] = float(int((v >> shift) & 0xF) - 8);
    w[2 * i + 1] = float(int((v >> (8 + shift)) & 0xF) - 8);
  }
}

__device__ __forceinline__ float block_scale(const uint8_t* blk) {
  return half_bits_to_float(*reinterpret_cast<const uint16_t*>(blk));
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

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

inline unsigned ceil_div_u(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace pagoda::cuda
