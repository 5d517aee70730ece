// Paged causal attention with GQA. One CTA handles one query tile (q_tile consecutive query rows of
// one sequence, times the `group` query heads that share a KV head) over one slice of the context
// (split-K). K/V rows are gathered through the block table into shared memory once per 32-token
// tile and shared by every query row of the CTA; softmax is online (running max and sum), so each
// slot is read once. With several splits, each CTA writes an unnormalized partial and a combine
// kernel merges them. Only positions <= the query's own position are read: nothing past ctx_len.
#include <algorithm>
#include <climits>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_kernels.h"

namespace pagoda::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kKvTile = 32;  // tokens per shared-memory tile; equals the warp size (softmax step)
constexpr int kRowChunk = 4;  // query rows whose scores one thread accumulates while reusing K
constexpr int kMinSplitLen = 256;
constexpr int kMaxSplits = 64;
static_assert(kKvTile == 32, "the softmax step maps one tile token to one lane");

struct Args {
  const float* q;
  int64_t q_stride;
  float* out;
  int64_t out_stride;
  const uint8_t* kc;
  const uint8_t* vc;
  int64_t kv_stride;
  int64_t kv_slots;
  const int32_t* seqs;  // SeqInfo as 4 ints (q_start, q_len, ctx_len, bt_offset)
  const int32_t* bt;
  int64_t bt_len;
  int n_seqs, n_tokens, n_heads, group, head_dim, block_size, q_tile, n_splits, split_len;
  float scale;
  int window;     // sliding window (0 = none): key t visible to the row at pos iff pos - t < window
  float softcap;  // > 0: scaled scores become softcap * tanh(s / softcap)
  bool kv_vec;  // K/V rows loadable as 16-byte vectors
  float* part_o;
  float2* part_ml;
};

// Shared-memory layout of the attention CTA, in 4-byte words (every region a multiple of 4 words so
// float4 accesses stay aligned). Used by the host to size the launch.
struct Layout {
  int dp, ldk, nq;
  int q, o, k, v, p, m, l, alpha, pos, slot, total;
};

__host__ __device__ inline int round4(int x) { return (x + 3) & ~3; }

__host__ __device__ inline Layout make_layout(int head_dim, int nq) {
  Layout L{};
  L.dp = round4(head_dim);
  L.ldk = L.dp + 4;  // pad: rows of K land on different banks for the per-token float4 reads
  L.nq = nq;
  int off = 0;
  L.q = off; off += nq * L.dp;
  L.o = off; off += nq * L.dp;
  L.k = off; off += kKvTile * L.ldk;
  L.v = off; off += kKvTile * L.ldk;
  L.p = off; off += nq * kKvTile;
  L.m = off; off += round4(nq);
  L.l = off; off += round4(nq);
  L.alpha = off; off += round4(nq);
  L.pos = off; off += round4(nq);
  L.slot = off; off += kKvTile;
  L.total = off;
  return L;
}

__device__ __forceinline__ bool seq_valid(const Args& a, const int32_t* si) {
  return si[1] > 0 && si[0] >= 0 && int64_t(si[0]) + si[1] <= a.n_tokens && si[2] >= si[1] && si[3] >= 0;
}

// Maps this CTA's tile index to (sequence, first query row within it) by a block-wide scan over the
// per-sequence tile counts; the host only knows an upper bound on the number of tiles. Returns false
// (uniformly) for CTAs past the last tile.
__device__ bool find_tile(const Args& a, int tile, int& seq, int& j0, int* sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) sh[kWarps] = -1;
  __syncthreads();
  int carry = 0;
  for (int base = 0; base < a.n_seqs; base += kThreads) {
    const int s = base + tid;
    int cnt = 0;
    if (s < a.n_seqs && seq_valid(a, a.seqs + 4 * s)) cnt = (a.seqs[4 * s + 1] + a.q_tile - 1) / a.q_tile;
    int incl = cnt;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int t = __shfl_up_sync(kFullMask, incl, o);
      if (lane >= o) incl += t;
    }
    __syncthreads();  // previous round's reads of sh[0..kWarps) are done
    if (lane == 31) sh[warp] = incl;
    __syncthreads();
    int first = carry, total = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) first += sh[w];
      total += sh[w];
    }
    first += incl - cnt;
    if (cnt > 0 && tile >= first && tile < first + cnt) {
      sh[kWarps] = s;
      sh[kWarps + 1] = (tile - first) * a.q_tile;
    }
    carry += total;
    __syncthreads();
    if (sh[kWarps] >= 0 || carry > tile) break;  // both uniform across the block
  }
  seq = sh[kWarps];
  j0 = sh[kWarps + 1];
  return seq >= 0;
}

// Gathers K and V rows of the tile's tokens (slot < 0: zeros) into shared memory as floats.
template <bool kHalf>
__device__ void load_kv_tile(const Args& a, const Layout& L, const int* slots, float* ks, float* vs, int kvh) {
  constexpr int kElem = kHalf ? 2 : 4;
  const int D = a.head_dim;
  const size_t head_off = size_t(kvh) * D * kElem;
  if (a.kv_vec) {
    constexpr int kVec = 16 / kElem;
    const int nvec = D / kVec;
    for (int idx = threadIdx.x; idx < kKvTile * nvec; idx += kThreads) {
      const int t = idx / nvec, c = idx % nvec;
      const int slot = slots[t];
      float kv[8] = {}, vv[8] = {};
      if (slot >= 0) {
        const size_t off = size_t(slot) * a.kv_stride + head_off + size_t(c) * 16;
        const uint4 kr = __ldg(reinterpret_cast<const uint4*>(a.kc + off));
        const uint4 vr = __ldg(reinterpret_cast<const uint4*>(a.vc + off));
        if constexpr (kHalf) {
          halves8(kr, kv);
          halves8(vr, vv);
        } else {
          kv[0] = __uint_as_float(kr.x); kv[1] = __uint_as_float(kr.y);
          kv[2] = __uint_as_float(kr.z); kv[3] = __uint_as_float(kr.w);
          vv[0] = __uint_as_float(vr.x); vv[1] = __uint_as_float(vr.y);
          vv[2] = __uint_as_float(vr.z); vv[3] = __uint_as_float(vr.w);
        }
      }
      float* kd = ks + t * L.ldk + c * kVec;
      float* vd = vs + t * L.ldk + c * kVec;
#pragma unroll
      for (int i = 0; i < kVec; i += 4) {
        *reinterpret_cast<float4*>(kd + i) = make_float4(kv[i], kv[i + 1], kv[i + 2], kv[i + 3]);
        *reinterpret_cast<float4*>(vd + i) = make_float4(vv[i], vv[i + 1], vv[i + 2], vv[i + 3]);
      }
    }
  } else {
    for (int idx = threadIdx.x; idx < kKvTile * L.dp; idx += kThreads) {
      const int t = idx / L.dp, d = idx % L.dp;
      const int slot = slots[t];
      float kv = 0.0f, vv = 0.0f;
      if (slot >= 0 && d < D) {
        const size_t off = size_t(slot) * a.kv_stride + head_off + size_t(d) * kElem;
        if constexpr (kHalf) {
          kv = half_bits_to_float(ld_u16(a.kc + off));
          vv = half_bits_to_float(ld_u16(a.vc + off));
        } else {
          kv = __ldg(reinterpret_cast<const float*>(a.kc + off));
          vv = __ldg(reinterpret_cast<const float*>(a.vc + off));
        }
      }
      ks[t * L.ldk + d] = kv;
      vs[t * L.ldk + d] = vv;
    }
  }
}

// Scores of every (query row, tile token); masked entries (past the row's position, outside its
// sliding window, or no slot) = -inf.
__device__ void tile_scores(const Args& a, const Layout& L, const float* qs, const float* ks, float* ps,
                            const int* slots, const int* vpos, int t0, int n_t) {
  const int chunks = (L.nq + kRowChunk - 1) / kRowChunk;
  for (int idx = threadIdx.x; idx < kKvTile * chunks; idx += kThreads) {
    const int t = idx % kKvTile, c = idx / kKvTile;
    float acc[kRowChunk] = {};
    const float4* krow = reinterpret_cast<const float4*>(ks + t * L.ldk);
    for (int d4 = 0; d4 < L.dp / 4; ++d4) {
      const float4 k4 = krow[d4];
#pragma unroll
      for (int j = 0; j < kRowChunk; ++j) {
        const int vr = c * kRowChunk + j;
        if (vr < L.nq) {
          const float4 q4 = reinterpret_cast<const float4*>(qs + vr * L.dp)[d4];
          acc[j] = fmaf(k4.x, q4.x, fmaf(k4.y, q4.y, fmaf(k4.z, q4.z, fmaf(k4.w, q4.w, acc[j]))));
        }
      }
    }
    const bool token_ok = t < n_t && slots[t] >= 0;
#pragma unroll
    for (int j = 0; j < kRowChunk; ++j) {
      const int vr = c * kRowChunk + j;
      if (vr >= L.nq) continue;
      const bool visible = token_ok && t0 + t <= vpos[vr] && (a.window <= 0 || vpos[vr] - (t0 + t) < a.window);
      const float sc = a.softcap > 0.0f ? a.softcap * tanhf(acc[j] / a.softcap) : acc[j];
      ps[vr * kKvTile + t] = visible ? sc : -INFINITY;
    }
  }
}

// Online softmax step: one warp per query row, one lane per tile token. Scores become weights;
// alpha rescales what the row accumulated before this tile.
__device__ void tile_softmax(const Layout& L, float* ps, float* ms, float* ls, float* alpha) {
  const int lane = threadIdx.x & 31;
  for (int vr = threadIdx.x >> 5; vr < L.nq; vr += kWarps) {
    const float s = ps[vr * kKvTile + lane];
    const float m_old = ms[vr];
    const float m_new = fmaxf(m_old, warp_max(s));
    const float p = s == -INFINITY ? 0.0f : expf(s - m_new);
    const float sum = warp_sum(p);
    ps[vr * kKvTile + lane] = p;
    if (lane == 0) {
      const float al = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
      alpha[vr] = al;
      ls[vr] = ls[vr] * al + sum;
      ms[vr] = m_new;
    }
  }
}

// O = O * alpha + P V for every query row; one thread per (column, chunk of rows) reuses each V value.
__device__ void tile_pv(const Layout& L, const float* ps, const float* vs, const float* alpha, float* os, int n_t) {
  const int chunks = (L.nq + kRowChunk - 1) / kRowChunk;
  for (int idx = threadIdx.x; idx < L.dp * chunks; idx += kThreads) {
    const int d = idx % L.dp, c = idx / L.dp;
    float acc[kRowChunk] = {};
    for (int t = 0; t < n_t; ++t) {
      const float v = vs[t * L.ldk + d];
#pragma unroll
      for (int j = 0; j < kRowChunk; ++j) {
        const int vr = c * kRowChunk + j;
        if (vr < L.nq) acc[j] = fmaf(ps[vr * kKvTile + t], v, acc[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < kRowChunk; ++j) {
      const int vr = c * kRowChunk + j;
      if (vr < L.nq) os[vr * L.dp + d] = os[vr * L.dp + d] * alpha[vr] + acc[j];
    }
  }
}

// Which query rows a CTA owns: rows [j0, j0 + rows) of sequence `seq`, at positions pos0...
struct Tile {
  int q_start, rows, pos0, bt_off;
};

// Q (pre-scaled), zeroed O, running max/sum, and each virtual row's causal limit. Virtual row
// vr = jj * G + g is query row jj of the tile with head g of the KV group.
__device__ void init_tile(const Args& a, const Layout& L, const Tile& t, int j0, int kvh, float* qs, float* os,
                          float* ms, float* ls, int* vpos) {
  const int G = a.group, D = a.head_dim;
  for (int idx = threadIdx.x; idx < L.nq * L.dp; idx += kThreads) {
    const int vr = idx / L.dp, d = idx % L.dp, jj = vr / G, g = vr % G;
    float v = 0.0f;
    if (jj < t.rows && d < D)
      v = a.q[int64_t(t.q_start + j0 + jj) * a.q_stride + int64_t(kvh * G + g) * D + d] * a.scale;
    qs[idx] = v;
    os[idx] = 0.0f;
  }
  for (int vr = threadIdx.x; vr < L.nq; vr += kThreads) {
    ms[vr] = -INFINITY;
    ls[vr] = 0.0f;
    vpos[vr] = vr / G < t.rows ? t.pos0 + vr / G : -1;
  }
}

// Slot of each token of the KV tile through the block table; -1 past the tile or for an entry
// outside the block table or the cache.
__device__ void tile_slots(const Args& a, const Tile& t, int t0, int n_t, int* slots) {
  if (threadIdx.x >= kKvTile) return;
  int slot = -1;
  if (int(threadIdx.x) < n_t) {
    const int pos = t0 + threadIdx.x;
    const int64_t bi = int64_t(t.bt_off) + pos / a.block_size;
    if (bi < a.bt_len) {
      const int64_t s = int64_t(a.bt[bi]) * a.block_size + pos % a.block_size;
      if (s >= 0 && s < a.kv_slots) slot = int(s);
    }
  }
  slots[threadIdx.x] = slot;
}

// Normalized rows to out (one split), or the unnormalized partial plus (max, sum) (several).
__device__ void write_tile(const Args& a, const Layout& L, const Tile& t, int j0, int kvh, int split,
                           const float* os, const float* ms, const float* ls) {
  const int G = a.group, D = a.head_dim;
  for (int idx = threadIdx.x; idx < L.nq * D; idx += kThreads) {
    const int vr = idx / D, d = idx % D, jj = vr / G, g = vr % G;
    if (jj >= t.rows) continue;
    const int64_t r = t.q_start + j0 + jj;
    const int h = kvh * G + g;
    const float o = os[vr * L.dp + d];
    if (a.n_splits == 1) {
      const float l = ls[vr];
      a.out[r * a.out_stride + int64_t(h) * D + d] = l > 0.0f ? o / l : 0.0f;
    } else {
      const size_t pi = (size_t(r) * a.n_heads + h) * a.n_splits + split;
      a.part_o[pi * D + d] = o;
      if (d == 0) a.part_ml[pi] = make_float2(ms[vr], ls[vr]);
    }
  }
}

template <bool kHalf>
__global__ void __launch_bounds__(kThreads) attention_kernel(Args a) {
  extern __shared__ __align__(16) float smem[];
  __shared__ int sh[kWarps + 2];
  int seq, j0;
  if (!find_tile(a, int(blockIdx.x), seq, j0, sh)) return;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int32_t* si = a.seqs + 4 * seq;  // q_start, q_len, ctx_len, bt_offset
  const int rows = min(a.q_tile, si[1] - j0);
  const Tile t{si[0], rows, si[2] - si[1] + j0, si[3]};
  const Layout L = make_layout(a.head_dim, a.q_tile * a.group);
  float* qs = smem + L.q;
  float* os = smem + L.o;
  float* ks = smem + L.k;
  float* vs = smem + L.v;
  float* ps = smem + L.p;
  float* ms = smem + L.m;
  float* ls = smem + L.l;
  float* alpha = smem + L.alpha;
  int* vpos = reinterpret_cast<int*>(smem + L.pos);
  int* slots = reinterpret_cast<int*>(smem + L.slot);
  init_tile(a, L, t, j0, kvh, qs, os, ms, ls, vpos);

  // This split's slice of the context; the last split runs to the end even if max_ctx_len undercounts.
  int t_begin = split * a.split_len;
  int t_end = t.pos0 + t.rows;  // one past the last query row's position
  if (split + 1 < a.n_splits) t_end = min(t_end, t_begin + a.split_len);
  // Keys before the first row's window are invisible to every row of the tile.
  if (a.window > 0) t_begin = max(t_begin, t.pos0 - a.window + 1);
  __syncthreads();

  for (int t0 = t_begin; t0 < t_end; t0 += kKvTile) {
    const int n_t = min(kKvTile, t_end - t0);
    tile_slots(a, t, t0, n_t, slots);
    __syncthreads();
    load_kv_tile<kHalf>(a, L, slots, ks, vs, kvh);
    __syncthreads();
    tile_scores(a, L, qs, ks, ps, slots, vpos, t0, n_t);
    __syncthreads();
    tile_softmax(L, ps, ms, ls, alpha);
    __syncthreads();
    tile_pv(L, ps, vs, alpha, os, n_t);
    __syncthreads();
  }
  write_tile(a, L, t, j0, kvh, split, os, ms, ls);
}

// Merges the splits of each (query row, head): out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M).
__global__ void __launch_bounds__(kThreads) combine_kernel(Args a) {
  __shared__ int sh[kWarps + 2];
  int seq, j0;
  if (!find_tile(a, int(blockIdx.x), seq, j0, sh)) return;
  const int h = blockIdx.y, D = a.head_dim;
  const int32_t* si = a.seqs + 4 * seq;
  const int rows = min(a.q_tile, si[1] - j0);
  for (int jj = 0; jj < rows; ++jj) {
    const int64_t r = si[0] + j0 + jj;
    const size_t base = (size_t(r) * a.n_heads + h) * a.n_splits;
    float mx = -INFINITY;
    for (int s = 0; s < a.n_splits; ++s) mx = fmaxf(mx, a.part_ml[base + s].x);
    float l = 0.0f;
    for (int s = 0; s < a.n_splits; ++s) {
      const float2 ml = a.part_ml[base + s];
      if (ml.x != -INFINITY) l += ml.y * expf(ml.x - mx);
    }
    for (int d = threadIdx.x; d < D; d += kThreads) {
      float o = 0.0f;
      for (int s = 0; s < a.n_splits; ++s) {
        const float2 ml = a.part_ml[base + s];
        if (ml.x != -INFINITY) o += a.part_o[(base + s) * D + d] * expf(ml.x - mx);
      }
      a.out[r * a.out_stride + int64_t(h) * D + d] = l > 0.0f ? o / l : 0.0f;
    }
  }
}

size_t partial_floats(const AttentionArgs& a, int splits) {
  return size_t(a.n_tokens) * size_t(a.p.n_heads) * size_t(splits) * size_t(a.p.head_dim);
}

size_t scratch_for(const AttentionArgs& a, int splits) {
  if (splits <= 1) return 0;
  const size_t o_bytes = (partial_floats(a, splits) * 4 + 15) / 16 * 16;
  return o_bytes + size_t(a.n_tokens) * size_t(a.p.n_heads) * size_t(splits) * sizeof(float2);
}

}  // namespace

AttentionPlan plan_attention(const AttentionArgs& a, int num_sms, size_t max_scratch_bytes) {
  const AttentionParams& p = a.p;
  AttentionPlan plan;
  const int group = p.n_heads / p.n_kv_heads;
  // Rows per tile: enough to share each K/V load across ~32 query rows in prefill, 1 in decode.
  const int nq_target = p.head_dim <= 128 ? 32 : 16;
  const int cap = std::max(1, nq_target / group);
  const int64_t avg_q = (int64_t(a.n_tokens) + p.n_seqs - 1) / std::max(1, p.n_seqs);
  int qt = 1;
  while (qt < avg_q && qt * 2 <= cap) qt *= 2;
  plan.q_tile = qt;
  const int64_t tiles = (int64_t(a.n_tokens) + int64_t(p.n_seqs) * (qt - 1) + qt - 1) / qt;
  plan.n_tiles = int32_t(std::min<int64_t>(tiles, INT_MAX));

  // Split the context when the tiles alone cannot fill the GPU (decode at long context).
  const int64_t ctas = int64_t(plan.n_tiles) * p.n_kv_heads;
  const int64_t target = 4LL * std::max(1, num_sms);
  int splits = 1;
  if (ctas < target && p.max_ctx_len > kMinSplitLen) {
    const int64_t want = (target + ctas - 1) / ctas;
    const int64_t by_len = (p.max_ctx_len + kMinSplitLen - 1) / kMinSplitLen;
    splits = int(std::min<int64_t>({want, by_len, kMaxSplits}));
  }
  while (splits > 1 && scratch_for(a, splits) > max_scratch_bytes) splits /= 2;
  if (splits > 1) {
    int len = (p.max_ctx_len + splits - 1) / splits;
    len = (len + kKvTile - 1) / kKvTile * kKvTile;
    splits = (p.max_ctx_len + len - 1) / len;
    plan.split_len = len;
  } else {
    plan.split_len = std::max(p.max_ctx_len, 1);
  }
  plan.n_splits = splits;
  plan.scratch_bytes = scratch_for(a, splits);
  plan.smem_bytes = size_t(make_layout(p.head_dim, qt * group).total) * 4;
  return plan;
}

cudaError_t launch_attention(cudaStream_t s, const AttentionArgs& a, const AttentionPlan& plan, void* scratch) {
  const AttentionParams& p = a.p;
  Args k{};
  k.q = a.q;
  k.q_stride = a.q_stride;
  k.out = a.out;
  k.out_stride = a.out_stride;
  k.kc = a.k_cache;
  k.vc = a.v_cache;
  k.kv_stride = a.kv_stride;
  k.kv_slots = a.kv_slots;
  k.seqs = reinterpret_cast<const int32_t*>(a.seqs);
  k.bt = a.block_tables;
  k.bt_len = a.block_table_len;
  k.n_seqs = p.n_seqs;
  k.n_tokens = a.n_tokens;
  k.n_heads = p.n_heads;
  k.group = p.n_heads / p.n_kv_heads;
  k.head_dim = p.head_dim;
  k.block_size = p.block_size;
  k.q_tile = plan.q_tile;
  k.n_splits = plan.n_splits;
  k.split_len = plan.split_len;
  k.scale = p.scale;
  k.window = p.window;
  k.softcap = p.softcap;
  const bool half = a.kv_type == DType::F16;
  const int vec_elems = half ? 8 : 4;
  const auto aligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; };
  k.kv_vec = p.head_dim % vec_elems == 0 && aligned(a.k_cache) && aligned(a.v_cache) && a.kv_stride % 16 == 0;
  if (plan.n_splits > 1) {
    auto* base = static_cast<uint8_t*>(scratch);
    k.part_o = reinterpret_cast<float*>(base);
    k.part_ml = reinterpret_cast<float2*>(base + (partial_floats(a, plan.n_splits) * 4 + 15) / 16 * 16);
  }
  const void* fn = half ? reinterpret_cast<const void*>(attention_kernel<true>)
                        : reinterpret_cast<const void*>(attention_kernel<false>);
  // Beyond 48 KiB (static + dynamic) a kernel must opt in; the margin covers the static `sh` array.
  if (plan.smem_bytes + 1024 > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(plan.smem_bytes));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(unsigned(plan.n_tiles), unsigned(p.n_kv_heads), unsigned(plan.n_splits));
  if (half) attention_kernel<true><<<grid, kThreads, plan.smem_bytes, s>>>(k);
  else attention_kernel<false><<<grid, kThreads, plan.smem_bytes, s>>>(k);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || plan.n_splits == 1) return e;
  combine_kernel<<<dim3(unsigned(plan.n_tiles), unsigned(p.n_heads)), kThreads, 0, s>>>(k);
  return cudaGetLastError();
}

}  // namespace pagoda::cuda
