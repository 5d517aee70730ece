// out[n, o] = sum_i x[n, i] * w[o, i] for every weight type: F32, F16, BF16 and the ggml blocks
// (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K).
// Decode and short batches (n <= 32, in passes of up to 8 rows): one warp per weight row, every x
// row reusing that row's weights from registers;
// quantized rows are staged through shared memory with coalesced 16-byte (or 4-byte) loads because
// their blocks (18 to 210 bytes) are only 2-byte aligned, then each lane decodes 8 consecutive elements in
// registers (cuda_quant_blocks.h) 16 at a time (one scale decode per 16), and the warp reduces with
// shuffles. Each row's loads are issued before the previous chunk is decoded (two chunks in
// flight). Prefill (n > 32): 64x64 output tiles on tensor cores, weights dequantized into shared
// memory once per tile. Each operand is split into a TF32 high part and a TF32 remainder and three
// products are accumulated in F32 (hi*hi + hi*lo + lo*hi, "3xTF32"): plain TF32 keeps 10 mantissa
// bits (~5e-4 relative per product), which would make a token's logits depend on whether it was
// computed in a batch of 32 rows (matvec passes) or 33 (this kernel); the split brings the products
// to about F32's accuracy.
#include <mma.h>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_quant_blocks.h"

namespace pagoda::cuda {
namespace {

struct MmArgs {
  const uint8_t* w;
  size_t w_stride;
  const float* x;
  int64_t x_stride;
  float* out;
  int64_t out_stride;
  int64_t n, n_in, n_out;
  bool w_vec;  // every weight row 16-byte aligned (dense types: vector loads allowed)
  bool x_vec;  // every x row 16-byte aligned and n_in % 4 == 0
};

// Eight consecutive x values starting at p.
__device__ __forceinline__ void load_x8(const float* p, bool vec, float v[8]) {
  if (vec) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __ldg(p + i);
  }
}

__device__ __forceinline__ float dot8(const float a[8], const float b[8]) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) s = fmaf(a[i], b[i], s);
  return s;
}

// Eight weights of a dense row starting at element e (all in range).
template <DType T>
__device__ __forceinline__ void load_dense8(const uint8_t* row, int64_t e, bool vec, float w[8]) {
  if constexpr (T == DType::F32) {
    load_x8(reinterpret_cast<const float*>(row) + e, vec, w);
  } else if constexpr (T == DType::BF16) {
    if (vec) {
      bf16s8(__ldg(reinterpret_cast<const uint4*>(row + 2 * e)), w);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) w[i] = __uint_as_float(uint32_t(ld_u16(row + 2 * (e + i))) << 16);
    }
  } else {
    if (vec) {
      halves8(__ldg(reinterpret_cast<const uint4*>(row + 2 * e)), w);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) w[i] = half_bits_to_float(ld_u16(row + 2 * (e + i)));
    }
  }
}

template <int NX>
__device__ __forceinline__ void reduce_and_store(float acc[NX], const MmArgs& a, int64_t row, int lane) {
#pragma unroll
  for (int j = 0; j < NX; ++j) {
    const float v = warp_sum(acc[j]);
    if (lane == 0 && j < a.n) a.out[j * a.out_stride + row] = v;
  }
}

template <DType T, int NX>
__device__ void matvec_dense_row(const MmArgs& a, int64_t row, int lane) {
  const uint8_t* wrow = a.w + row * a.w_stride;
  float acc[NX] = {};
  const int64_t groups = a.n_in / 8;
  for (int64_t g = lane; g < groups; g += 32) {
    const int64_t e = g * 8;
    float w[8];
    load_dense8<T>(wrow, e, a.w_vec, w);
#pragma unroll
    for (int j = 0; j < NX; ++j) {
      if (j < a.n) {
        float xv[8];
        load_x8(a.x + j * a.x_stride + e, a.x_vec, xv);
        acc[j] += dot8(w, xv);
      }
    }
  }
  for (int64_t e = groups * 8 + lane; e < a.n_in; e += 32) {
    const float wv = load_element(T, wrow, e);
#pragma unroll
    for (int j = 0; j < NX; ++j)
      if (j < a.n) acc[j] = fmaf(wv, __ldg(a.x + j * a.x_stride + e), acc[j]);
  }
  reduce_and_store<NX>(acc, a, row, lane);
}

// Copies `bytes` from global to shared memory with the whole warp in 2-byte words (single bytes
// for an odd source). Only for rows no wider load fits: 4-byte aligned rows take the pipelined
// register path, and a chunk starts as aligned as its row.
__device__ __forceinline__ void warp_copy_narrow(uint8_t* dst, const uint8_t* src, int bytes, int lane) {
  if ((reinterpret_cast<uintptr_t>(src) & 1) == 0) {
    for (int i = lane; i < (bytes >> 1); i += 32) reinterpret_cast<uint16_t*>(dst)[i] = ld_u16(src + 2 * i);
    if ((bytes & 1) && lane == 0) dst[bytes - 1] = __ldg(src + bytes - 1);
  } else {
    for (int i = lane; i < bytes; i += 32) dst[i] = __ldg(src + i);
  }
}

constexpr int kMvWarps = 8;
constexpr int kMvThreads = kMvWarps * 32;

// Per weight type: dense (no blocks), and the elements of one row staged per warp per chunk: 1024
// (32 lanes x 16 elements x 2 steps), or 2048 where four super-blocks are not a multiple of 16 bytes (Q3_K
// 110 B, Q6_K 210 B): eight are, so every chunk of a 16-byte aligned row keeps the 16-byte loads.
// (Members, not constexpr functions: nvcc does not let device code call those.)
template <DType T>
struct Dense {
  static constexpr bool value = T == DType::F32 || T == DType::F16 || T == DType::BF16;
};
template <DType T>
struct Stage {
  using B = qblocks::Traits<T>;
  static constexpr int kElems = B::kElems == 32 || (4 * B::kBytes) % 16 == 0 ? 1024 : 2048;
  static constexpr int kBlocks = kElems / B::kElems;  // a chunk's blocks
  static constexpr int kBytes = kBlocks * B::kBytes;
};

// Decodes the nblk blocks staged for blocks b0.. of the row against the x rows into acc.
template <DType T, int NX>
__device__ __forceinline__ void decode_chunk(const MmArgs& a, const uint8_t* stage, int b0, int nblk, int lane,
                                             float acc[NX]) {
  using B = qblocks::Traits<T>;
  constexpr int kBB = B::kBytes, kBE = B::kElems;
  constexpr int kSteps = Stage<T>::kElems / 512;
  constexpr int kAlign = B::kStagedAlign;  // blocks sit at 16-byte boundary + n * kBB in the stage
  const int x_stride = int(a.x_stride);
  // Each lane decodes a run of 16 consecutive elements per step (one scale decode for 16; two
  // lanes per 32-element block, sixteen per super-block); a step covers 512 elements.
#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    const int e = step * 512 + lane * 16;
    const int bl = e / kBE;
    if (bl < nblk) {
      const uint8_t* blk = stage + bl * kBB;
      const int sub = e % kBE;
      const qblocks::Affine g = qblocks::scale8<T>(blk, sub);
      const float* xe = a.x + b0 * kBE + e;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float q[8];
        qblocks::quants8<T, kAlign>(blk, sub + 8 * h, q);
        if constexpr (B::kHasMin) {
          // y = a*q + b: dequantize once, then one dot per x row.
          float w[8];
#pragma unroll
          for (int i = 0; i < 8; ++i) w[i] = fmaf(g.a, q[i], g.b);
#pragma unroll
          for (int j = 0; j < NX; ++j) {
            if (j < a.n) {
              float xv[8];
              load_x8(xe + j * x_stride + 8 * h, a.x_vec, xv);
              acc[j] += dot8(w, xv);
            }
          }
        } else {
#pragma unroll
          for (int j = 0; j < NX; ++j) {
            if (j < a.n) {
              float xv[8];
              load_x8(xe + j * x_stride + 8 * h, a.x_vec, xv);
              acc[j] = fmaf(g.a, dot8(q, xv), acc[j]);
            }
          }
        }
      }
    }
  }
}

// One staged chunk of a row held in registers between its load and its store to the stage: V is
// the load width the row's alignment allows (16 or 4 bytes; chunks are multiples of 16 bytes, so
// every chunk of a row shares the row's alignment).
template <DType T, typename V>
struct ChunkRegs {
  static constexpr int kPer = (Stage<T>::kBytes / int(sizeof(V)) + 31) / 32;
  V v[kPer];
};

template <DType T, typename V>
__device__ __forceinline__ void chunk_load(ChunkRegs<T, V>& c, const uint8_t* src, int bytes, int lane) {
  const int n = bytes / int(sizeof(V));
#pragma unroll
  for (int i = 0; i < ChunkRegs<T, V>::kPer; ++i) {
    const int k = lane + 32 * i;
    if (k < n) c.v[i] = __ldg(reinterpret_cast<const V*>(src) + k);
  }
}

// Stores the chunk to the stage; a short last chunk's bytes past the last whole V (blocks are an
// even number of bytes) are copied as 2-byte words straight from the row.
template <DType T, typename V>
__device__ __forceinline__ void chunk_store(uint8_t* stage, const ChunkRegs<T, V>& c, const uint8_t* src, int bytes,
                                            int lane) {
  const int n = bytes / int(sizeof(V));
#pragma unroll
  for (int i = 0; i < ChunkRegs<T, V>::kPer; ++i) {
    const int k = lane + 32 * i;
    if (k < n) reinterpret_cast<V*>(stage)[k] = c.v[i];
  }
  for (int i = n * int(sizeof(V)) / 2 + lane; i < bytes / 2; i += 32)
    reinterpret_cast<uint16_t*>(stage)[i] = ld_u16(src + 2 * i);
}

// A row whose start is V-aligned, software-pipelined: the loads of chunk c+1 are issued before
// chunk c is stored and decoded, so two chunks' memory latencies overlap instead of adding up (a
// 2048-wide row is two chunks: one round trip to memory instead of two). Two register buffers
// alternate by unrolling the loop twice; a copy between them would wait for the pending loads.
template <DType T, int NX, typename V>
__device__ __forceinline__ void matvec_quant_pipelined(const MmArgs& a, const uint8_t* wrow, int nb, int lane,
                                                       uint8_t* stage, float acc[NX]) {
  constexpr int kSB = Stage<T>::kBlocks, kBB = qblocks::Traits<T>::kBytes;
  const auto blocks_at = [nb](int b) { return min(kSB, nb - b); };
  ChunkRegs<T, V> c0, c1;
  chunk_load(c0, wrow, blocks_at(0) * kBB, lane);
  for (int b0 = 0; b0 < nb; b0 += 2 * kSB) {
    const int b1 = b0 + kSB;
    if (b1 < nb) chunk_load(c1, wrow + size_t(b1) * kBB, blocks_at(b1) * kBB, lane);
    chunk_store(stage, c0, wrow + size_t(b0) * kBB, blocks_at(b0) * kBB, lane);
    __syncwarp();
    decode_chunk<T, NX>(a, stage, b0, blocks_at(b0), lane, acc);
    __syncwarp();  // the next store overwrites the stage
    if (b1 >= nb) break;
    const int b2 = b1 + kSB;
    if (b2 < nb) chunk_load(c0, wrow + size_t(b2) * kBB, blocks_at(b2) * kBB, lane);
    chunk_store(stage, c1, wrow + size_t(b1) * kBB, blocks_at(b1) * kBB, lane);
    __syncwarp();
    decode_chunk<T, NX>(a, stage, b1, blocks_at(b1), lane, acc);
    __syncwarp();
  }
}

template <DType T, int NX>
__device__ void matvec_quant_row(const MmArgs& a, int64_t row, int lane, uint8_t* stage) {
  using B = qblocks::Traits<T>;
  constexpr int kBB = B::kBytes, kStageBlocks = Stage<T>::kBlocks;
  static_assert(Stage<T>::kBytes % 16 == 0, "every chunk of a row keeps the row's alignment");
  const uint8_t* wrow = a.w + row * a.w_stride;
  // 32-bit indices within the row keep register pressure down (n_in < 2^31 is checked on the host).
  const int nb = int(a.n_in / B::kElems);
  float acc[NX] = {};
  const auto addr = reinterpret_cast<uintptr_t>(wrow);
  if ((addr & 15) == 0) {
    matvec_quant_pipelined<T, NX, uint4>(a, wrow, nb, lane, stage, acc);
  } else if ((addr & 3) == 0) {
    matvec_quant_pipelined<T, NX, unsigned>(a, wrow, nb, lane, stage, acc);
  } else {
    for (int b0 = 0; b0 < nb; b0 += kStageBlocks) {
      const int nblk = min(kStageBlocks, nb - b0);
      warp_copy_narrow(stage, wrow + size_t(b0) * kBB, nblk * kBB, lane);
      __syncwarp();
      decode_chunk<T, NX>(a, stage, b0, nblk, lane, acc);
      __syncwarp();  // the next copy overwrites the stage
    }
  }
  reduce_and_store<NX>(acc, a, row, lane);
}

// No __launch_bounds__: with it ptxas trims registers for occupancy and spills the accumulators.
template <DType T, int NX>
__global__ void matvec_kernel(MmArgs a) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kMvWarps + warp;
  if (row >= a.n_out) return;  // whole warps exit; only __syncwarp is used below
  if constexpr (Dense<T>::value) {
    matvec_dense_row<T, NX>(a, row, lane);
  } else {
    __shared__ __align__(16) uint8_t stage[kMvWarps][Stage<T>::kBytes];
    matvec_quant_row<T, NX>(a, row, lane, stage[warp]);
  }
}

// ---- tiled GEMM ----
namespace wmma = nvcuda::wmma;
constexpr int kTileN = 64;        // x rows (tokens) per CTA
constexpr int kTileO = 64;        // outputs per CTA
constexpr int kTileK = 64;        // reduction slice per step (two quant blocks)
constexpr int kLd = kTileK + 4;   // smem row pitch in floats: multiple of 4 (wmma) and breaks bank aliasing
constexpr int kGemmThreads = 128;  // 4 warps in a 2x2 grid, each 32x32 outputs

__device__ __forceinline__ void store8(float* dst, const float v[8]) {
  reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

// X tile [kTileN][kTileK] from rows tok0.. and columns k0..; zeros outside x.
__device__ void load_x_tile(const MmArgs& a, float* xs, int64_t tok0, int64_t k0) {
  for (int idx = threadIdx.x; idx < kTileN * (kTileK / 4); idx += kGemmThreads) {
    const int r = idx / (kTileK / 4), c = (idx % (kTileK / 4)) * 4;
    const int64_t t = tok0 + r, k = k0 + c;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (t < a.n) {
      const float* src = a.x + t * a.x_stride + k;
      if (a.x_vec && k + 4 <= a.n_in) {
        v = __ldg(reinterpret_cast<const float4*>(src));
      } else {
        if (k < a.n_in) v.x = src[0];
        if (k + 1 < a.n_in) v.y = src[1];
        if (k + 2 < a.n_in) v.z = src[2];
        if (k + 3 < a.n_in) v.w = src[3];
      }
    }
    *reinterpret_cast<float4*>(xs + r * kLd + c) = v;
  }
}

// W tile [kTileO][kTileK], dequantized to float; zeros outside w. Thread t fills 32 elements of
// row t/2 (a 32-element block, or a quarter of a 256-element super-block's slice: k0 is a
// multiple of 64 and n_in a multiple of the block, so the 32 elements lie in one block).
template <DType T>
__device__ void load_w_tile(const MmArgs& a, float* ws, int64_t out0, int64_t k0) {
  const int r = threadIdx.x >> 1, part = threadIdx.x & 1;
  const int64_t o = out0 + r, k = k0 + part * 32;
  float* dst = ws + r * kLd + part * 32;
  float w[8];
  if (o >= a.n_out || k >= a.n_in) {
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = 0.0f;
#pragma unroll
    for (int g = 0; g < 4; ++g) store8(dst + 8 * g, w);
    return;
  }
  const uint8_t* row = a.w + o * a.w_stride;
  if constexpr (!Dense<T>::value) {
    using B = qblocks::Traits<T>;
    const uint8_t* blk = row + (k / B::kElems) * B::kBytes;
    const int sub = int(k % B::kElems);
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      qblocks::dequant8<T>(blk, sub + 8 * g, w);
      store8(dst + 8 * g, w);
    }
  } else {
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const int64_t e = k + 8 * g;
      if (a.w_vec && e + 8 <= a.n_in) {
        load_dense8<T>(row, e, true, w);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) w[i] = e + i < a.n_in ? load_element(T, row, e + i) : 0.0f;
      }
      store8(dst + 8 * g, w);
    }
  }
}

// hi = v rounded to TF32, lo = the remainder v - hi (exact in F32) rounded to TF32, per element.
template <typename Frag>
__device__ __forceinline__ void split_tf32(Frag& hi, Frag& lo) {
#pragma unroll
  for (int t = 0; t < hi.num_elements; ++t) {
    const float v = hi.x[t], h = wmma::__float_to_tf32(v);
    hi.x[t] = h;
    lo.x[t] = wmma::__float_to_tf32(v - h);
  }
}

template <DType T>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(MmArgs a) {
  __shared__ __align__(128) float smem[(kTileN + kTileO) * kLd];
  float* xs = smem;
  float* ws = smem + kTileN * kLd;
  const int64_t tok0 = int64_t(blockIdx.y) * kTileN, out0 = int64_t(blockIdx.x) * kTileO;
  const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < a.n_in; k0 += kTileK) {
    load_x_tile(a, xs, tok0, k0);
    load_w_tile<T>(a, ws, out0, k0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 8) {
      // A = x rows (row-major), B = w^T: element (k, o) sits at ws[o * kLd + k], i.e. column-major.
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2], fa_lo[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb[2], fb_lo[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], xs + (wm * 32 + i * 16) * kLd + kk, kLd);
        split_tf32(fa[i], fa_lo[i]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(fb[j], ws + (wn * 32 + j * 16) * kLd + kk, kLd);
        split_tf32(fb[j], fb_lo[j]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) {  // the small terms first
          wmma::mma_sync(acc[i][j], fa_lo[i], fb[j], acc[i][j]);
          wmma::mma_sync(acc[i][j], fa[i], fb_lo[j], acc[i][j]);
          wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
    }
    __syncthreads();  // the next step overwrites xs/ws
  }

  // Stage the 64x64 result through shared memory so the global writes are bounds-checked and coalesced.
  float* cs = smem;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * kLd + wn * 32 + j * 16, acc[i][j], kLd, wmma::mem_row_major);
  __syncthreads();
  for (int idx = threadIdx.x; idx < kTileN * kTileO; idx += kGemmThreads) {
    const int i = idx / kTileO, j = idx % kTileO;
    if (tok0 + i < a.n && out0 + j < a.n_out) a.out[(tok0 + i) * a.out_stride + out0 + j] = cs[i * kLd + j];
  }
}

template <DType T>
void launch_matvec(cudaStream_t s, const MmArgs& a) {
  const unsigned grid = ceil_div_u(a.n_out, kMvWarps);
  if (a.n <= 1) matvec_kernel<T, 1><<<grid, kMvThreads, 0, s>>>(a);
  else if (a.n <= 2) matvec_kernel<T, 2><<<grid, kMvThreads, 0, s>>>(a);
  else if (a.n <= 4) matvec_kernel<T, 4><<<grid, kMvThreads, 0, s>>>(a);
  else matvec_kernel<T, 8><<<grid, kMvThreads, 0, s>>>(a);
}

template <DType T>
cudaError_t launch_typed(cudaStream_t s, const MmArgs& a) {
  if (a.n > kMatvecPassRows) {
    const dim3 grid(ceil_div_u(a.n_out, kTileO), ceil_div_u(a.n, kTileN));
    gemm_kernel<T><<<grid, kGemmThreads, 0, s>>>(a);
  } else {
    // Passes of 8 rows (x_stride % 4 == 0 keeps every pass's rows as aligned as the first's).
    for (int64_t r0 = 0; r0 < a.n; r0 += kMatvecMaxRows) {
      MmArgs p = a;
      p.x = a.x + r0 * a.x_stride;
      p.out = a.out + r0 * a.out_stride;
      p.n = a.n - r0 < kMatvecMaxRows ? a.n - r0 : kMatvecMaxRows;
      launch_matvec<T>(s, p);
    }
  }
  return cudaGetLastError();
}

bool host_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

cudaError_t launch_matmul(cudaStream_t s, const MatmulArgs& m) {
  MmArgs a{m.w, m.w_stride, m.x, m.x_stride, m.out, m.out_stride, m.n, m.n_in, m.n_out, false, false};
  a.w_vec = host_aligned16(m.w) && m.w_stride % 16 == 0;
  a.x_vec = host_aligned16(m.x) && m.x_stride % 4 == 0 && m.n_in % 4 == 0;
  static_assert(kMatvecMaxRows == 8, "matvec instantiates NX up to 8");
  switch (m.wtype) {
    case DType::F32: return launch_typed<DType::F32>(s, a);
    case DType::F16: return launch_typed<DType::F16>(s, a);
    case DType::BF16: return launch_typed<DType::BF16>(s, a);
    case DType::Q8_0: return launch_typed<DType::Q8_0>(s, a);
    case DType::Q4_0: return launch_typed<DType::Q4_0>(s, a);
    case DType::Q4_1: return launch_typed<DType::Q4_1>(s, a);
    case DType::Q5_0: return launch_typed<DType::Q5_0>(s, a);
    case DType::Q5_1: return launch_typed<DType::Q5_1>(s, a);
    case DType::IQ4_NL: return launch_typed<DType::IQ4_NL>(s, a);
    case DType::Q2_K: return launch_typed<DType::Q2_K>(s, a);
    case DType::Q3_K: return launch_typed<DType::Q3_K>(s, a);
    case DType::Q4_K: return launch_typed<DType::Q4_K>(s, a);
    case DType::Q5_K: return launch_typed<DType::Q5_K>(s, a);
    case DType::Q6_K: return launch_typed<DType::Q6_K>(s, a);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace pagoda::cuda
