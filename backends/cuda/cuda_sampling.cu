// Sampling kernels: argmax, inverse-CDF sampling, speculative verification and the sampling
// filters (adjust_logits, filter_probs), one CTA per row or sequence. Semantics follow ref::argmax / ref::sample_probs / ref::verify exactly; the only
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

// adjust_logits: one thread per entry. The _rn intrinsics are never fused into a multiply-add,
// so the three steps round as the host's adjust_logit does (backends/backend.h).
__global__ void adjust_kernel(float* logits, int64_t rows, int64_t cols, const LogitAdjust* adj, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const LogitAdjust a = adj[i];
  if (a.row < 0 || a.row >= rows || a.token < 0 || a.token >= cols) return;
  float& l = logits[int64_t(a.row) * cols + a.token];
  const float biased = __fadd_rn(l, a.bias);
  const float scaled = biased > 0.0f ? __fmul_rn(biased, a.pos_scale) : __fmul_rn(biased, a.neg_scale);
  l = __fsub_rn(scaled, a.subtract);
}

// filter_probs, as shaders/filter_probs.comp: each filter narrows the candidate-order prefix
// (key > t, or key == t and index <= i) by bisection over the key (stopping once the bracket holds
// only the boundary element), then over the index among ties; every step is one pass over the row
// and block sums, in a fixed order.
__device__ __forceinline__ uint32_t candidate_key(float x) {
  if (isnan(x)) return 0u;
  const uint32_t b = x == 0.0f ? 0u : __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// key > t, or key == t and index <= i (-1: none at t).
struct Domain {
  uint32_t t = 0;
  int i = INT_MAX;
  __device__ bool has(uint32_t k, int idx) const { return k > t || (k == t && idx <= i); }
};

struct FilterRow {
  const float* l;
  float* p;
  int n;
  Domain d;
  float* sc;
  // (count, probability) of the domain's elements with key >= t, or (tie) with key == t and
  // index <= idx.
  __device__ float2 measure(uint32_t t, bool tie, int idx) const {
    float c = 0.0f, m = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const uint32_t k = candidate_key(l[i]);
      if ((tie ? (k == t && i <= idx) : k >= t) && d.has(k, i)) {
        c += 1.0f;
        m += p[i];
      }
    }
    c = block_sum(c, sc);
    m = block_sum(m, sc);
    return make_float2(c, m);
  }
  // Narrows the domain to its shortest prefix whose measure reaches `need` (unchanged if it
  // cannot); the same steps as shaders/filter_probs.comp's cut().
  __device__ void cut(float need, bool mass) {
    const float2 whole = measure(0u, false, 0);
    if ((mass ? whole.y : whole.x) < need) return;
    uint32_t lo = 0u, hi = 0xffffffffu;
    float c_lo = whole.x, c_hi = 0.0f, m_hi = 0.0f;
    while (lo < hi) {
      if (c_lo - c_hi <= 1.0f || (!mass && c_lo == need)) {
        if (lo > d.t) {
          d.t = lo - 1u;
          d.i = -1;
        }
        return;
      }
      const uint32_t mid = lo + ((hi - lo) >> 1) + ((hi - lo) & 1u);
      const float2 m = measure(mid, false, 0);
      if ((mass ? m.y : m.x) >= need) {
        lo = mid;
        c_lo = m.x;
      } else {
        hi = mid - 1u;
        c_hi = m.x;
        m_hi = m.y;
      }
    }
    if (c_lo - c_hi > 1.0f) {
      const float above = mass ? m_hi : c_hi;
      int ilo = 0, ihi = n - 1;
      while (ilo < ihi) {
        const int mid = (ilo + ihi) >> 1;
        const float2 m = measure(lo, true, mid);
        if (__fadd_rn(above, mass ? m.y : m.x) >= need) ihi = mid;
        else ilo = mid + 1;
      }
      d.t = lo;
      d.i = ilo;
    } else if (lo != d.t) {
      d.t = lo;
      d.i = INT_MAX;
    }
  }
};

__global__ void __launch_bounds__(kThreads)
    filter_kernel(const float* __restrict__ logits, float* probs, int cols, const FilterParams* params) {
  __shared__ float sc[32];
  const FilterParams f = params[blockIdx.x];
  const bool k_on = f.top_k > 0 && f.top_k < cols;
  if (!k_on && !(f.top_p < 1.0f) && !(f.min_p > 0.0f)) return;
  FilterRow r{logits + int64_t(blockIdx.x) * cols, probs + int64_t(blockIdx.x) * cols, cols, Domain{}, sc};
  if (k_on) r.cut(float(f.top_k), false);
  if (f.top_p < 1.0f) r.cut(__fmul_rn(f.top_p, r.measure(0u, false, 0).y), true);
  float mx = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) mx = fmaxf(mx, r.p[i]);
  mx = block_max(mx, sc);
  const float thr = f.min_p > 0.0f ? __fmul_rn(f.min_p, mx) : 0.0f;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x)
    if (r.d.has(candidate_key(r.l[i]), i) && r.p[i] >= thr) sum += r.p[i];
  sum = block_sum(sum, sc);
  if (!(sum > 0.0f)) return;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = r.p[i];
    r.p[i] = r.d.has(candidate_key(r.l[i]), i) && v >= thr ? v / sum : 0.0f;
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

cudaError_t launch_adjust_logits(cudaStream_t s, float* logits, int64_t rows, int64_t cols, const LogitAdjust* adj,
                                 int64_t n) {
  constexpr int kBlock = 256;
  adjust_kernel<<<unsigned((n + kBlock - 1) / kBlock), kBlock, 0, s>>>(logits, rows, cols, adj, n);
  return cudaGetLastError();
}

cudaError_t launch_filter_probs(cudaStream_t s, const float* logits, float* probs, int64_t rows, int64_t cols,
                                const FilterParams* params) {
  filter_kernel<<<unsigned(rows), kThreads, 0, s>>>(logits, probs, int(cols), params);
  return cudaGetLastError();
}

cudaError_t launch_verify(cudaStream_t s, const VerifyArgs& a) {
  verify_kernel<<<unsigned(a.n_seqs), kThreads, 0, s>>>(a);
  return cudaGetLastError();
}

}  // namespace pagoda::cuda
