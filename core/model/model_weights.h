// ModelWeights: every tensor of a GGUF uploaded to a backend, shape-checked against the
// config, plus the SHA-256 digest of the weight bytes that the prefix cache identity binds to.
#pragma once
#include <functional>
#include <memory>
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

// The weights digest: hex SHA-256 over tensor names, types and shapes and the SHA-256 of each
// one's bytes, the part of the prefix cache identity that says which weights computed a block.
// Loading may leave it to threads of its own at a lower priority (LoadOptions): with the weights
// used where the file is mapped, one pass over the whole file is most of a cold start, and only
// the prefix cache needs the digest, so the first token need not wait for it. Copies share the
// one computation; the last copy to go stops threads still hashing.
class WeightsDigest {
 public:
  struct State;
  WeightsDigest() = default;  // known and empty (a model that was not loaded from a file)
  explicit WeightsDigest(std::shared_ptr<State> s) : s_(std::move(s)) {}
  // The digest, waiting for the hashing threads if they are still at work.
  const std::string& get() const;
  // Whether get() would return without waiting.
  bool ready() const;
  // Seconds the hashing took, from its start to the digest (waits as get() does; 0 when known
  // from the start).
  double seconds() const;

 private:
  std::shared_ptr<State> s_;
};

struct LoadOptions {
  // When the weights digest is hashed: before load returns; on background threads (nice 10),
  // so that the first token does not wait for it; or never, for a model whose KV blocks nothing
  // will key (a single prompt, a draft model): get() is empty, and an Engine with prefix caching
  // refuses the model.
  enum class Digest { Load, Background, Never };
  Digest digest = Digest::Load;
  // Tests: called on each hashing thread before it hashes anything (to hold the digest back).
  std::function<void()> digest_gate;
};

struct ModelWeights {
  Tensor tok_embd, output_norm, output;
  // RoPE frequency divisors of the global layers [1, head_dim/2] F32: Llama 3's rope_freqs.weight,
  // LongRoPE's factors and the scaling type's (linear, YaRN) multiplied; buf null when all are 1.
  Tensor rope_freqs;
  std::vector<LayerWeights> layers;
  std::vector<BufferPtr> buffers;  // owners of the tensors above
  WeightsDigest digest;
  uint64_t bytes = 0;              // total weight bytes on the device
  // Of `bytes`, those used in place where the file is mapped (Backend::adopt_host; the CPU
  // backend): no copy in memory. The rest were copied (a GPU, or rows permuted at load).
  uint64_t mapped_bytes = 0;

  // progress(done_bytes, total_bytes) is called while tensors upload (for a progress bar).
  static Result<ModelWeights> load(const GgufFile& f, const ModelConfig& c, Backend& be,
                                   const std::function<void(uint64_t, uint64_t)>& progress = {},
                                   const LoadOptions& opt = {});
};

// The backend dtype of a GGUF tensor type; the error reads "type X, which Pagoda does not support".
Result<DType> dtype_from_ggml(GgmlType t);
GgmlType ggml_from_dtype(DType t);
// Every tensor of the file has a type Pagoda can run (checked before anything is uploaded).
Status check_tensor_types(const GgufFile& f);

}  // namespace pagoda
