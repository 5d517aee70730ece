#include "core/model/model_config.h"

namespace pagoda {

namespace {

// Metadata that changes the function the model computes but that the runner does not implement:
// a file using it is refused rather than run wrongly. (Llama 3's RoPE scaling comes as the
// rope_freqs.weight tensor, which is applied; HF-style scaling keys are not.)
Status refuse_unapplied(const GgufFile& f, const std::string& p, int32_t head_dim) {
  if (const auto* v = f.find(p + "rope.scaling.type")) {
    const std::string* s = v->as_string();
    if (!s || *s != "none")
      return make_error("metadata '" + p + "rope.scaling.type' = '" + (s ? *s : std::string("?")) +
                        "' is not implemented (only Llama 3 rope_freqs.weight scaling is)");
  }
  for (const char* key : {"rope.scaling.factor", "rope.scale_linear"}) {
    const double v = f.get_float_or(p + key, 1.0);
    if (v != 1.0 && v != 0.0)
      return make_error("metadata '" + p + key + "' = " + std::to_string(v) + " (position scaling) is not implemented");
  }
  if (const auto* v = f.find(p + "rope.dimension_count"); v && v->as_int() != head_dim)
    return make_error("metadata '" + p + "rope.dimension_count' differs from the head dimension " +
                      std::to_string(head_dim) + ": partial rotary embeddings are not implemented");
  for (const char* key : {"attention.key_length", "attention.value_length"})
    if (const auto* v = f.find(p + key); v && v->as_int() != head_dim)
      return make_error("metadata '" + p + key + "' differs from embedding_length / head_count = " +
                        std::to_string(head_dim) + ": a separate head size is not implemented");
  return {};
}

}  // namespace

Result<ModelConfig> ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  auto arch = f.get_string("general.architecture");
  if (!arch) return arch.take_error();
  if (*arch != "llama")
    return make_error("architecture '" + *arch + "' not supported (general.architecture): Pagoda runs llama only");
  c.arch = *arch;
  if (auto n = f.get_string("general.name")) c.name = *n;
  const std::string p = c.arch + ".";
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
  if (c.dim % c.n_heads != 0) return make_error("embedding_length is not a multiple of attention.head_count");
  if (c.n_heads % c.n_kv_heads != 0) return make_error("attention.head_count is not a multiple of head_count_kv");
  c.head_dim = c.dim / c.n_heads;
  if (c.head_dim % 2 != 0) return make_error("head dimension must be even for rotary embeddings");
  c.rope_theta = float(f.get_float_or(p + "rope.freq_base", 10000.0));
  c.rms_eps = float(f.get_float_or(p + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(c.rope_theta > 0) || !(c.rms_eps > 0)) return make_error("rope.freq_base and layer_norm_rms_epsilon must be positive");

  PAGODA_TRY(refuse_unapplied(f, p, c.head_dim));

  const auto* emb = f.find_tensor("token_embd.weight");
  if (!emb) return make_error("missing tensor 'token_embd.weight'");
  if (emb->dims.size() != 2 || emb->dims[0] != uint64_t(c.dim))
    return make_error("tensor 'token_embd.weight' must be [embedding_length, vocab]");
  c.vocab = int32_t(emb->dims[1]);
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace pagoda
