#include "core/model/model_config.h"

namespace pagoda {

Result<ModelConfig> ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  auto arch = f.get_string("general.architecture");
  if (!arch) return arch.take_error();
  if (*arch != "llama")
    return make_error("unsupported architecture '" + *arch + "' (general.architecture): only llama-family models run");
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

  const auto* emb = f.find_tensor("token_embd.weight");
  if (!emb) return make_error("missing tensor 'token_embd.weight'");
  if (emb->dims.size() != 2 || emb->dims[0] != uint64_t(c.dim))
    return make_error("tensor 'token_embd.weight' must be [embedding_length, vocab]");
  c.vocab = int32_t(emb->dims[1]);
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace pagoda
