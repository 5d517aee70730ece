// ModelWeights: every tensor of a GGUF uploaded to a backend, shape-checked against the
// config, plus the SHA-256 digest of the weight bytes that the prefix cache identity binds to.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/gguf/gguf.h"
#include "core/model/model_config.h"

namespace pagoda {

// One block. Tensors an architecture does not have keep buf == nullptr. Fused GGUF tensors
// (Phi-3's attn_qkv, ffn_up with gate and up) are uploaded as their parts. For RoPE in NEOX
// pairing (ArchDesc::rope) the rows of Wq and Wk (and their biases and q/k norm gains) are
// permuted within each head at load, so that pairs (i, i + head_dim/2) land on (2i, 2i+1) and
// the one rope kernel serves both styles; q·k, and so attention, is unchanged by the permutation.
struct LayerWeights {
  Tensor attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
  Tensor bq, bk, bv;                    // [1, width] F32 biases (qkv_bias)
  Tensor q_norm, k_norm;                // [1, head_dim] F32 gains (qk_norm)
  Tensor post_attn_norm, post_ffn_norm; // [1, dim] F32 gains (post_norms)
};

struct ModelWeights {
  Tensor tok_embd, output_norm, output;
  // RoPE frequency divisors of the global layers [1, head_dim/2] F32: Llama 3's rope_freqs.weight,
  // LongRoPE's factors and the scaling type's (linear, YaRN) multiplied; buf null when all are 1.
  Tensor rope_freqs;
  std::vector<LayerWeights> layers;
  std::vector<BufferPtr> buffers;  // owners of the tensors above
  std::string digest;              // hex SHA-256 over tensor names, types, shapes and each one's bytes' SHA-256
  uint64_t bytes = 0;              // total weight bytes on the device
  // Of `bytes`, those used in place where the file is mapped (Backend::adopt_host; the CPU
  // backend): no copy in memory. The rest were copied (a GPU, or rows permuted at load).
  uint64_t mapped_bytes = 0;

  // progress(done_bytes, total_bytes) is called while tensors upload (for a progress bar).
  static Result<ModelWeights> load(const GgufFile& f, const ModelConfig& c, Backend& be,
                                   const std::function<void(uint64_t, uint64_t)>& progress = {});
};

// The backend dtype of a GGUF tensor type; the error reads "type X, which Pagoda does not support".
Result<DType> dtype_from_ggml(GgmlType t);
GgmlType ggml_from_dtype(DType t);
// Every tensor of the file has a type Pagoda can run (checked before anything is uploaded).
Status check_tensor_types(const GgufFile& f);

}  // namespace pagoda
