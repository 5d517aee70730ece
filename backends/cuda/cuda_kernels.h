// Host-side launchers for the CUDA kernels: raw device pointers in, one launch (or a few) on the
// given stream out. Shapes are validated by the caller (cuda_ops.cpp); launchers only report
// launch errors (cudaGetLastError) so the backend can surface them at the next sync().
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backends/backend.h"

namespace pagoda::cuda {

// ---- elementwise and row ops (cuda_elementwise.cu) ----
cudaError_t launch_embed(cudaStream_t s, DType table_type, const uint8_t* table, size_t table_stride,
                         int64_t table_rows, int64_t dim, const int32_t* ids, int64_t n, float* out,
                         int64_t out_stride);
cudaError_t launch_rms_norm(cudaStream_t s, const float* x, const float* w, float* out, int64_t rows,
                            int64_t cols, float eps);
// freqs: head_dim/2 frequencies theta^(-2i/head_dim) (device memory, computed on the host);
// factors: null, or head_dim/2 per-pair frequency divisors (Llama 3's rope_freqs).
cudaError_t launch_rope(cudaStream_t s, float* x, int64_t x_stride, const int32_t* pos, const float* freqs,
                        const float* factors, int64_t rows, int32_t n_heads, int32_t head_dim);
cudaError_t launch_silu_mul(cudaStream_t s, const float* gate, const float* up, float* out, int64_t n);
cudaError_t launch_gelu_mul(cudaStream_t s, const float* gate, const float* up, float* out, int64_t n);
// out = x * scale, or cap * tanh(x / cap) when cap > 0.
cudaError_t launch_scale(cudaStream_t s, const float* x, float* out, int64_t n, float scale, float cap);
cudaError_t launch_add(cudaStream_t s, const float* a, const float* b, float* out, int64_t n);
// Scatter rows of k/v ([rows, cols] F32) into caches of `cache_type` (F32 or F16) with `cache_rows` slots.
cudaError_t launch_kv_store(cudaStream_t s, const float* k, const float* v, int64_t rows, int64_t cols,
                            DType cache_type, uint8_t* k_cache, uint8_t* v_cache, int64_t cache_rows,
                            const int32_t* slots);
cudaError_t launch_softmax(cudaStream_t s, const float* x, float* out, int64_t rows, int64_t cols,
                           float temperature);

// ---- sampling (cuda_sampling.cu) ----
cudaError_t launch_argmax(cudaStream_t s, const float* x, int64_t rows, int64_t cols, int32_t* out);
cudaError_t launch_sample_probs(cudaStream_t s, const float* probs, int64_t rows, int64_t cols,
                                const float* u, int32_t* out);

struct VerifyArgs {
  const float* target = nullptr;       // [rows, vocab]
  const float* draft_probs = nullptr;  // [rows, vocab]; unused when greedy
  const int32_t* draft_tokens = nullptr;
  int64_t draft_tokens_stride = 0;     // elements per row of draft_tokens
  const int32_t* meta = nullptr;       // [n_seqs, 3]
  const float* uniforms = nullptr;     // unused when greedy
  int64_t uniforms_stride = 0;
  int32_t* out = nullptr;              // [n_seqs, 2]
  int32_t n_seqs = 0;
  int32_t vocab = 0;
  int32_t max_k = 0;
  bool greedy = false;
};
cudaError_t launch_verify(cudaStream_t s, const VerifyArgs& a);
// Backend::adjust_logits over n entries; Backend::filter_probs over rows x cols.
cudaError_t launch_adjust_logits(cudaStream_t s, float* logits, int64_t rows, int64_t cols, const LogitAdjust* adj,
                                 int64_t n);
cudaError_t launch_filter_probs(cudaStream_t s, const float* logits, float* probs, int64_t rows, int64_t cols,
                                const FilterParams* params);

// ---- matmul (cuda_matmul.cu) ----
struct MatmulArgs {
  DType wtype = DType::F32;
  const uint8_t* w = nullptr;  // [n_out, n_in] in wtype
  size_t w_stride = 0;         // bytes per weight row
  const float* x = nullptr;    // [n, n_in]
  int64_t x_stride = 0;        // elements
  float* out = nullptr;        // [n, n_out]
  int64_t out_stride = 0;      // elements
  int64_t n = 0;
  int64_t n_in = 0;
  int64_t n_out = 0;
};
// One matvec launch takes up to kMatvecMaxRows x rows. Batches up to kMatvecPassRows run as
// consecutive matvec passes of 8 rows; larger ones take the tiled tensor-core GEMM, whose 64-row
// tiles cost about the same from 9 rows to 64. On an H200 (1B Q4_K_M, 2026-12-04) a 16-token
// prompt took 29 ms through the GEMM and 14.3 through passes; 64 tokens took 53.5 through passes
// and 65 took 38.2 through the GEMM: the passes grow ~0.85 ms per token, so they stop at 32. A pass
// computes each x row exactly as a lone decode row (same lanes, same order), so up to 32 rows (a
// speculative verify batch, a short prompt) a row's result does not depend on its batch.
constexpr int64_t kMatvecMaxRows = 8;
constexpr int64_t kMatvecPassRows = 32;
cudaError_t launch_matmul(cudaStream_t s, const MatmulArgs& a);

// ---- paged attention (cuda_attention.cu) ----
struct AttentionArgs {
  const float* q = nullptr;
  int64_t q_stride = 0;  // elements per query row
  float* out = nullptr;
  int64_t out_stride = 0;
  DType kv_type = DType::F32;
  const uint8_t* k_cache = nullptr;
  const uint8_t* v_cache = nullptr;
  int64_t kv_stride = 0;  // bytes per cache row (slot)
  int64_t kv_slots = 0;   // rows of the caches; slots outside are treated as empty
  const SeqInfo* seqs = nullptr;
  const int32_t* block_tables = nullptr;
  int64_t block_table_len = 0;
  int32_t n_tokens = 0;  // rows of q / out
  AttentionParams p;
};

// How one attention call is cut into CTAs; computed on the host from shapes only.
struct AttentionPlan {
  int32_t q_tile = 1;        // query rows of one sequence per CTA (each with all heads of a KV group)
  int32_t n_tiles = 0;       // upper bound on query tiles over all sequences
  int32_t n_splits = 1;      // context splits (split-K); > 1 needs the scratch below
  int32_t split_len = 0;     // tokens per split (a multiple of the KV tile)
  size_t smem_bytes = 0;     // dynamic shared memory per CTA
  size_t scratch_bytes = 0;  // partial outputs + (max, sum) pairs when n_splits > 1
};
AttentionPlan plan_attention(const AttentionArgs& a, int num_sms, size_t max_scratch_bytes);
// `scratch` must hold plan.scratch_bytes (may be null when n_splits == 1).
cudaError_t launch_attention(cudaStream_t s, const AttentionArgs& a, const AttentionPlan& plan, void* scratch);

// Device-side check that this build carries code for the current device (false: no kernel image).
cudaError_t probe_kernels();

}  // namespace pagoda::cuda
