#include "core/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <cstdio>

namespace pagoda {

namespace {

// Metadata that changes the function the model computes but that the runner does not implement:
// a file using it is refused rather than run wrongly. (RoPE scaling is read by read_rope_scaling,
// which refuses the types it does not implement.)
Status refuse_unapplied(const GgufFile& f, const std::string& p, int32_t head_dim) {
  if (const auto* v = f.find(p + "rope.dimension_count"); v && v->as_int() != head_dim)
    return make_error("metadata '" + p + "rope.dimension_count' differs from the head dimension " +
                      std::to_string(head_dim) + ": partial rotary embeddings are not implemented");
  return {};
}

// Keys under "<arch>." that every description reads (or checks against what it computes).
const char* const kCommonKeys[] = {
    "context_length", "embedding_length", "feed_forward_length", "block_count", "attention.head_count",
    "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.dimension_count",
    "attention.key_length", "attention.value_length", "vocab_size", "rope.scaling.type", "rope.scaling.factor",
    "rope.scale_linear", "rope.scaling.original_context_length", "rope.scaling.attn_factor",
    "rope.scaling.yarn_beta_fast", "rope.scaling.yarn_beta_slow",
    // Informational only (llama.cpp reads it and computes nothing from it).
    "rope.scaling.finetuned"};

// Any other key under the architecture's prefix is a hyperparameter the runner would ignore
// (YaRN's log multiplier, experts, a window on an architecture without one):
// refused by name rather than run as if absent.
Status refuse_unknown_keys(const GgufFile& f, const std::string& p, const ArchDesc& d) {
  for (const auto& [key, value] : f.metadata()) {
    if (key.compare(0, p.size(), p) != 0) continue;
    const std::string k = key.substr(p.size());
    const bool known = std::find(std::begin(kCommonKeys), std::end(kCommonKeys), k) != std::end(kCommonKeys) ||
                       std::find(d.keys.begin(), d.keys.end(), k) != d.keys.end();
    if (!known)
      return make_error("metadata '" + key + "' is not applied by Pagoda's " + d.name +
                        " runner; refusing the file rather than computing something else");
  }
  return {};
}

}  // namespace

Result<ModelConfig> ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  auto arch = f.get_string("general.architecture");
  if (!arch) return arch.take_error();
  auto desc = arch_desc(*arch);
  if (!desc) return desc.take_error();
  c.desc = std::move(*desc);
  c.arch = *arch;
  if (auto n = f.get_string("general.name")) c.name = *n;
  const std::string p = c.arch + ".";
  PAGODA_TRY(refuse_unknown_keys(f, p, c.desc));
  auto need = [&](const std::string& key, int32_t& out, int64_t lo, int64_t hi) -> Status {
    auto v = f.get_int(p + key);
    if (!v) return v.take_error();
    if (*v < lo || *v > hi)
      return make_error("metadata '" + p + key + "' = " + std::to_string(*v) + " is out of range [" +
                        std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out = int32_t(*v);
    return {};
  };
  PAGODA_TRY(need("embedding_length", c.dim, 1, 1 << 16));
  PAGODA_TRY(need("feed_forward_length", c.ffn_dim, 1, 1 << 18));
  PAGODA_TRY(need("block_count", c.n_layers, 1, 1024));
  PAGODA_TRY(need("attention.head_count", c.n_heads, 1, 1024));
  PAGODA_TRY(need("context_length", c.ctx_len, 1, 1 << 24));
  c.n_kv_heads = c.n_heads;
  if (f.find(p + "attention.head_count_kv")) PAGODA_TRY(need("attention.head_count_kv", c.n_kv_heads, 1, c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0) return make_error("attention.head_count is not a multiple of head_count_kv");
  // The head size: attention.key_length when the file gives it (Qwen 3, Gemma), else dim / heads.
  if (f.find(p + "attention.key_length")) {
    PAGODA_TRY(need("attention.key_length", c.head_dim, 2, 1 << 12));
    int32_t v_len = c.head_dim;
    if (f.find(p + "attention.value_length")) PAGODA_TRY(need("attention.value_length", v_len, 1, 1 << 12));
    if (v_len != c.head_dim)
      return make_error("metadata '" + p + "attention.value_length' differs from attention.key_length: "
                        "different key and value head sizes are not implemented");
  } else {
    if (f.find(p + "attention.value_length"))
      return make_error("metadata '" + p + "attention.value_length' without attention.key_length");
    if (c.dim % c.n_heads != 0) return make_error("embedding_length is not a multiple of attention.head_count");
    c.head_dim = c.dim / c.n_heads;
  }
  if (c.head_dim % 2 != 0) return make_error("head dimension must be even for rotary embeddings");
  c.rope_theta = float(f.get_float_or(p + "rope.freq_base", 10000.0));
  c.rms_eps = float(f.get_float_or(p + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(c.rope_theta > 0) || !(c.rms_eps > 0)) return make_error("rope.freq_base and layer_norm_rms_epsilon must be positive");

  PAGODA_TRY(refuse_unapplied(f, p, c.head_dim));
  auto scaling = read_rope_scaling(f, p, c.ctx_len);
  if (!scaling) return scaling.take_error();
  c.rope_scaling = *scaling;

  // The description's scalars.
  ArchDesc& d = c.desc;
  if (d.embed_scale_sqrt_dim) d.embed_scale = std::sqrt(float(c.dim));
  auto positive = [&](const std::string& key, float& out) -> Status {
    const auto* v = f.find(p + key);
    if (!v) return {};
    const auto x = v->as_float();
    if (!x || !(*x >= 0) || !std::isfinite(*x)) return make_error("metadata '" + p + key + "' must be a number >= 0");
    out = float(*x);
    return {};
  };
  PAGODA_TRY(positive("attn_logit_softcapping", d.attn_softcap));
  PAGODA_TRY(positive("final_logit_softcapping", d.final_softcap));
  if (f.find(p + "attention.sliding_window")) PAGODA_TRY(need("attention.sliding_window", d.window, 0, 1 << 24));
  else if (d.local_rope_base > 0)  // local/global layers are defined by their window (llama.cpp requires it too)
    return make_error("missing metadata '" + p + "attention.sliding_window', which " + d.name + " needs");
  // Some converters write the local:global period (llama.cpp's swa pattern: layer l is local iff
  // l % P < P - 1); where the description reads it, it replaces the description's default.
  if (std::find(d.keys.begin(), d.keys.end(), "attention.sliding_window_pattern") != d.keys.end() &&
      f.find(p + "attention.sliding_window_pattern")) {
    if (!f.find(p + "attention.sliding_window_pattern")->as_int())
      return make_error("metadata '" + p + "attention.sliding_window_pattern' as a per-layer array is not implemented "
                        "(a period is)");
    PAGODA_TRY(need("attention.sliding_window_pattern", d.window_period, 1, 1 << 16));
  }
  if (d.wide_query_scale_layers > 0 && c.n_layers == d.wide_query_scale_layers)
    d.query_scale = 1.0f / std::sqrt(float(c.dim / c.n_heads));

  const auto* emb = f.find_tensor("token_embd.weight");
  if (!emb) return make_error("missing tensor 'token_embd.weight'");
  if (emb->dims.size() != 2 || emb->dims[0] != uint64_t(c.dim))
    return make_error("tensor 'token_embd.weight' must be [embedding_length, vocab]");
  c.vocab = int32_t(emb->dims[1]);
  if (const auto* v = f.find(p + "vocab_size"); v && v->as_int() != c.vocab)
    return make_error("metadata '" + p + "vocab_size' differs from the rows of token_embd.weight (" +
                      std::to_string(c.vocab) + ")");
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  return c;
}

std::string ModelConfig::compute_signature() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, " theta=%.9g eps=%.9g head_dim=%d", double(rope_theta), double(rms_eps), int(head_dim));
  return desc.signature() + buf + rope_scaling.signature();
}

}  // namespace pagoda
