// ArchDesc: what one model architecture computes, as data. ModelRunner executes a description;
// it has no per-architecture branches. A description says which tensors a block has (biases,
// per-head q/k norms, post-norms, fused projections), how they combine (FFN activation, RoPE
// pairing) and which GGUF keys feed its scalars (soft caps, sliding window). Adding an
// architecture is a table entry plus tests (docs/architectures.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/util/result.h"

namespace pagoda {

// How RoPE pairs the dimensions of a head: Norm rotates (2i, 2i+1) (Llama, GPT-J); Neox rotates
// (i, i + head_dim/2) (GPT-NeoX, Qwen, Gemma, Phi-3). Pair i turns by pos * theta^(-2i/head_dim) in both.
enum class RopeStyle : uint8_t { Norm, Neox };
// The gate activation of the gated FFN: down(act(gate(x)) * up(x)).
enum class FfnActivation : uint8_t { Silu, GeluTanh };

const char* rope_style_name(RopeStyle s);
const char* ffn_activation_name(FfnActivation a);

struct ArchDesc {
  // ---- structure (fixed per architecture) ----
  std::string name;                               // general.architecture
  RopeStyle rope = RopeStyle::Norm;
  FfnActivation activation = FfnActivation::Silu;
  bool qkv_bias = false;             // blk.N.attn_{q,k,v}.bias, added after the projections
  bool qk_norm = false;              // blk.N.attn_{q,k}_norm [head_dim]: RMSNorm of each head before RoPE
  bool post_norms = false;           // blk.N.post_attention_norm / post_ffw_norm on the sublayer outputs
  bool fused_qkv = false;            // blk.N.attn_qkv rows: Q, then K, then V
  bool fused_gate_up = false;        // blk.N.ffn_up has 2*n_ff rows: gate, then up
  bool embed_scale_sqrt_dim = false; // token embeddings multiplied by sqrt(embedding_length)
  bool rope_freqs = false;           // may carry rope_freqs.weight (Llama 3 frequency divisors)
  // Which layers a sliding window (when the file sets one) applies to: 0 = every layer;
  // P > 0 = layer l is windowed iff l % P != P - 1 (Gemma 2: P = 2, the even layers; Gemma 3:
  // P = 6, five local layers to one global one).
  int32_t window_period = 0;
  // The RoPE base of the local (windowed-pattern) layers when they have their own (Gemma 3: 10000);
  // 0 = every layer uses rope.freq_base. Local layers take no RoPE scaling (only global ones do).
  float local_rope_base = 0.0f;
  // A model with exactly this many layers scales queries by 1/sqrt(embedding_length / head_count)
  // instead of 1/sqrt(head_dim) (Gemma 2 and 3 27B: query_pre_attn_scalar, which GGUF does not
  // carry; llama.cpp identifies the model by its layer count the same way). 0 = never.
  int32_t wide_query_scale_layers = 0;
  // GGUF keys (without the "<arch>." prefix) this architecture reads beyond the common ones.
  std::vector<std::string> keys;

  // ---- values read from the file ----
  float embed_scale = 1.0f;     // sqrt(dim) where embed_scale_sqrt_dim
  float attn_softcap = 0.0f;    // attn_logit_softcapping (0 = none)
  float final_softcap = 0.0f;   // final_logit_softcapping (0 = none)
  int32_t window = 0;           // attention.sliding_window (0 = none)
  float query_scale = 0.0f;     // the attention scale when it is not 1/sqrt(head_dim) (0 = that)

  // Whether the pattern makes `layer` a local one (every layer when window_period == 0).
  bool layer_local(int32_t layer) const { return window_period == 0 || layer % window_period != window_period - 1; }
  bool layer_windowed(int32_t layer) const { return window > 0 && layer_local(layer); }
  // Whether `layer` rotates with local_rope_base (and without the file's RoPE scaling).
  bool layer_local_rope(int32_t layer) const { return local_rope_base > 0 && layer_local(layer); }
  // Whether every layer attends through the window (then KV blocks that left it can be released).
  bool all_layers_windowed() const { return window > 0 && window_period == 0; }
  // A canonical one-line text of everything above; part of the prefix-cache identity.
  std::string signature() const;
};

// The registered description of `arch`, values unset; an error names an unknown architecture and
// lists the known ones.
Result<ArchDesc> arch_desc(const std::string& arch);
std::vector<std::string> known_architectures();

}  // namespace pagoda
