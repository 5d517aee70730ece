// ModelConfig: the hyperparameters read from GGUF metadata, with the architecture's description
// (core/model/arch.h), validated so that every later size computation (KV capacity, scratch
// buffers) can trust them.
#pragma once
#include <cstdint>
#include <string>

#include "core/gguf/gguf.h"
#include "core/model/arch.h"
#include "core/model/rope_scaling.h"
#include "core/util/result.h"

namespace pagoda {

struct ModelConfig {
  std::string arch = "llama";
  std::string name;
  int32_t dim = 0;
  int32_t ffn_dim = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;  // attention.key_length when present, else embedding_length / head_count
  int32_t vocab = 0;
  int32_t ctx_len = 0;
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_output = false;
  ArchDesc desc;  // what the architecture computes, values filled from the file
  RopeScaling rope_scaling;  // applied to the global layers (every layer but desc.layer_local_rope ones)

  int32_t q_dim() const { return n_heads * head_dim; }
  int32_t kv_dim() const { return n_kv_heads * head_dim; }

  static Result<ModelConfig> from_gguf(const GgufFile& f);
  // Everything besides the tensors that decides the K/V bytes and logits (the description, RoPE
  // base and scaling, eps, head size), as one line for the prefix-cache identity.
  std::string compute_signature() const;
  // The capacity equation: bytes of K and V one token occupies across all layers.
  uint64_t kv_bytes_per_token(uint32_t bytes_per_element) const {
    return 2ull * uint64_t(n_layers) * uint64_t(n_kv_heads) * uint64_t(head_dim) * bytes_per_element;
  }
};

}  // namespace pagoda
