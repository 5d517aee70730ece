// Sampling kernels: argmax, inverse-CDF sampling and speculative verification, one CTA per row or
// sequence. Semantics follow ref::argmax / ref::sample_probs / ref::verify exactly; the only
// difference is the order of the double-precision sums (tree instead of sequential), which can move
// a draw only when u * total lies within a few ulps of a CDF step.
#include <climits>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_kernels.h"

namespace pagoda::cuda {
namespace {

constexpr int kThreads = 1024;

struct Scratch {
  double d[32];
  float f[32];
  int i[32];
};

// Min or max of an int over the block; every thread receives the result.
__device__ int block_reduce_int(int v, int* sc, bool take_min) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const int other = __shfl_xor_sync(kFullMask, v, o);
    v = take_min ? min(v, other) : max(v, other);
  }
  __syncthreads();
  if (lane == 0) sc[warp] = v;
  __syncthreads();
  int r = lane < n_warps ? sc[lane] : (take_min ? INT_MAX : INT_MIN);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const int other = __shfl_xor_sync(kFullMask, r, o);
    r = take_min ? min(r, other) : max(r, other);
  }
  return r;
}

// Exclusive prefix sum over threads in index order.
__device__ double block_exclusive_scan(double v, double* sc) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double t = __shfl_up_sync(kFullMask, incl, o);
    if (lane >= o) incl += t;
  }
  double excl = __shfl_up_sync(kFullMask, incl, 1);
  if (lane == 0) excl = 0.0;
  __syncthreads();
  if (lane == 31) sc[warp] = incl;
  __syncthreads();
  double before = 0.0;
  for (int w = 0; w < warp; ++w) before += sc[w];
  return before + excl;
}

// (value, index) pair that wins an argmax: larger value, then smaller index. Index INT_MAX = none yet.
__device__ __forceinline__ void argmax_merge(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// Index of the row maximum, first on ties, exactly as ref::argmax: NaN entries never win, except
// that a NaN at index 0 pins the answer to 0 (the reference compares against x[best] = NaN).
__device__ int block_argmax(const float* x, int n, Scratch& sc) {
  float best = -INFINITY;
  int bi = INT_MAX;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = x[i];
    if (bi == INT_MAX ? !isnan(v) : v > best) {
      best = v;
      bi = i;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    argmax_merge(best, bi, __shfl_xor_sync(kFullMask, best, o), __shfl_xor_sync(kFullMask, bi, o));
  __syncthreads();
  if (lane == 0) {
    sc.f[warp] = best;
    sc.i[warp] = bi;
  }
  __syncthreads();
  float rv = lane < n_warps ? sc.f[lane] : -INFINITY;
  int ri = lane < n_warps ? sc.i[lane] : INT_MAX;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    argmax_merge(rv, ri, __shfl_xor_sync(kFullMask, rv, o), __shfl_xor_sync(kFullMask, ri, o));
  if (n <= 0 || ri == INT_MAX || isnan(x[0])) return 0;
  return ri;
}

// Inverse-CDF draw over an unnormalized row given by w(i), as ref's draw(): the smallest i whose
// running sum of positive entries exceeds u * (sum of all entries), else the last positive entry
// (else 0). Each thread owns a contiguous chunk so the running sum is a per-thread scan after a
// block-wide exclusive scan of chunk sums.
template <class W>
__device__ int block_draw(const W& w, int n, float u, Scratch& sc) {
  const int chunk = (n + int(blockDim.x) - 1) / int(blockDim.x);
  const int begin = min(n, int(threadIdx.x) * chunk), end = min(n, begin + chunk);
  double all = 0.0, positive = 0.0;
  int last = -1;
  for (int i = begin; i < end; ++i) {
    const float v = w(i);
    all += v;
    if (v <= 0.0f) continue;
    positive += v;
    last = i;
  }
  const double total = block_sum(all, sc.d);
  const double before = block_exclusive_scan(positive, sc.d);
  const int last_positive = block_reduce_int(last, sc.i, false);
  const double target = double(u) * total;
  int found = INT_MAX;
  double acc = before;
  for (int i = begin; i < end; ++i) {
    const float v = w(i);
    if (v <= 0.0f) continue;
    acc += v;
    if (acc > target) {
      found = i;
      break;
    }
  }
  found = block_reduce_int(found, sc.i, true);
  if (found != INT_MAX) return found;
  return last_positive >= 0 ? last_positive : 0;
}

struct RowWeights {
  const float* p;
  __device__ float operator()(int i) const { return p[i]; }
};

struct ResidualWeights {  // max(0, p - q), the distribution sampled after a rejection
  const float* p;
  const float* q;
  __device__ float operator()(int i) const { return fmaxf(0.0f, p[i] - q[i]); }
};

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ x, int cols, int32_t* out) {
  __shared__ Scratch sc;
  const int r = block_argmax(x + int64_t(blockIdx.x) * cols, cols, sc);
  if (threadIdx.x == 0) out[blockIdx.x] = r;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* __restrict__ probs, int cols, const float* __restrict__ u, int32_t* out) {
  __shared__ Scratch sc;
  const int r = block_draw(RowWeights{probs + int64_t(blockIdx.x) * cols}, cols, u[blockIdx.x], sc);
  if (threadIdx.x == 0) out[blockIdx.x] = r;
}

// One CTA per sequence. Every branch below depends only on values all threads read identically,
// so the block-wide helpers (which hold barriers) are reached uniformly.
__global__ void __launch_bounds__(kThreads) verify_kernel(VerifyArgs a) {
  __shared__ Scratch sc;
  const int s = blockIdx.x;
  const int32_t row0 = a.meta[s * 3], drow0 = a.meta[s * 3 + 1];
  const int32_t k = max(0, min(a.meta[s * 3 + 2], a.max_k));
  const int32_t* toks = a.draft_tokens + int64_t(s) * a.draft_tokens_stride;
  const float* u = a.greedy ? nullptr : a.uniforms + int64_t(s) * a.uniforms_stride;
  const int vocab = a.vocab;
  int32_t accepted = 0, next = -1;
  for (; accepted < k; ++accepted) {
    const float* pt = a.target + int64_t(row0 + accepted) * vocab;
    const int32_t tok = toks[accepted];
    if (a.greedy) {
      const int best = block_argmax(pt, vocab, sc);
      if (best != tok) {
        next = best;
        break;
      }
      continue;
    }
    const float* qd = a.draft_probs + int64_t(drow0 + accepted) * vocab;
    // Accept with probability min(1, p/q), written without a division (as the reference).
    // A token outside the vocabulary can never be accepted.
    const bool in_vocab = tok >= 0 && tok < vocab;
    if (in_vocab && u[accepted] * qd[tok] < pt[tok]) continue;
    double mass = 0.0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) mass += fmaxf(0.0f, pt[i] - qd[i]);
    mass = block_sum(mass, sc.d);
    next = mass > 0.0 ? block_draw(ResidualWeights{pt, qd}, vocab, u[k], sc)
                      : block_draw(RowWeights{pt}, vocab, u[k], sc);
    break;
  }
  if (accepted == k) {  // every draft accepted: the bonus token from the target's next row
    const float* pt = a.target + int64_t(row0 + k) * vocab;
    next = a.greedy ? block_argmax(pt, vocab, sc) : block_draw(RowWeights{pt}, vocab, u[k], sc);
  }
  if (threadIdx.x == 0) {
    a.out[s * 2] = accepted;
    a.out[s * 2 + 1] = next;
  }
}

}  // namespace

cudaError_t launch_argmax(cudaStream_t s, const float* x, int64_t rows, int64_t cols, int32_t* out) {
  argmax_kernel<<<unsigned(rows), kThreads, 0, s>>>(x, int(cols), out);
  return cudaGetLastError();
}

cudaError_t launch_sample_probs(cudaStream_t s, const float* probs, int64_t rows, int64_t cols, const float* u,
                                int32_t* out) {
  sample_kernel<<<unsigned(rows), kThreads, 0, s>>>(probs, int(cols), u, out);
  return cudaGetLastError();
}

cudaError_t launch_verify(cudaStream_t s, const VerifyArgs& a) {
  verify_kernel<<<unsigned(a.n_seqs), kThreads, 0, s>>>(a);
  return cudaGetLastError();
}

}  // namespace pagoda::cuda
