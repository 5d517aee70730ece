// `pagoda synth`: llama-shaped GGUF models with random weights (clearly labelled as such) at
// realistic sizes, for speed measurements. Their text is noise; never use them for quality claims.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/gguf/gguf.h"
#include "core/util/result.h"

namespace pagoda {

struct SynthShape {
  std::string preset;
  int32_t dim, ffn_dim, n_layers, n_heads, n_kv_heads, ctx_len;
};

// Presets: "tiny" (unit tests), "15M", "110M", "1B" (TinyLlama-like, GQA).
Result<SynthShape> synth_preset(const std::string& name);
std::vector<std::string> synth_presets();

struct SynthOptions {
  SynthShape shape;
  GgmlType dtype = GgmlType::F32;  // matmul weights; norms stay F32
  std::optional<GgmlType> output_dtype;  // output.weight when it differs (Q6_K in a "Q4_K_M" mix)
  std::string vocab_from;          // a GGUF whose tokenizer.* metadata is copied
  std::string output;
  uint64_t seed = 1;
  // general.architecture: llama, qwen2, qwen3, gemma2, gemma3 or phi3, each with its own tensors
  // (biases, q/k norms, post-norms, fused projections) and keys at the preset's shape.
  std::string arch = "llama";
};

std::vector<std::string> synth_architectures();

Status synth_model(const SynthOptions& opt);

}  // namespace pagoda
