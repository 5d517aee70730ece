#include "apps/bench/widen.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/gguf/gguf_writer.h"
#include "core/model/model_config.h"

namespace pagoda {
namespace {

// Copies an original [rows x cols] F32 matrix into the top-left corner of a zero [R x C] one.
std::vector<uint8_t> pad(const float* src, int64_t rows, int64_t cols, int64_t R, int64_t C, float scale = 1.0f) {
  std::vector<float> out(size_t(R * C), 0.0f);
  if (src)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) out[size_t(r * C + c)] = src[r * cols + c] * scale;
  std::vector<uint8_t> bytes(out.size() * 4);
  std::memcpy(bytes.data(), out.data(), bytes.size());
  return bytes;
}

}  // namespace

Status widen_model(const WidenOptions& o) {
  auto f = GgufFile::open(o.input);
  if (!f) return f.take_error();
  auto cfg_r = ModelConfig::from_gguf(**f);
  if (!cfg_r) return cfg_r.take_error();
  const ModelConfig& c = *cfg_r;
  for (const auto& t : (*f)->tensors())
    if (t.type != GgmlType::F32) return make_error("widening needs an F32 model ('" + t.name + "' is not F32)");
  if (o.heads < c.n_heads || o.heads % (c.n_heads / c.n_kv_heads) != 0 || o.ffn_dim < c.ffn_dim || o.layers < c.n_layers)
    return make_error("the widened shape must contain the original (and keep its query/kv head ratio)");
  const int64_t hd = c.head_dim, d = c.dim, D = int64_t(o.heads) * hd;
  const int64_t kvd = int64_t(c.n_kv_heads) * hd, KV = D / (c.n_heads / c.n_kv_heads);
  const int64_t ff = c.ffn_dim, FF = o.ffn_dim, V = c.vocab;
  // RMSNorm over D dims of which d are nonzero: scaling gains by sqrt(d/D) and eps by d/D keeps
  // x / sqrt(mean(x^2) + eps) * g exactly the same for the original dims.
  const float gscale = std::sqrt(float(d) / float(D));

  GgufWriter w;
  for (const auto& [k, v] : (*f)->metadata()) w.set_value(k, v);
  w.set_string("general.name", c.name + "-widened (function-preserving)");
  w.set_u32("llama.embedding_length", uint32_t(D));
  w.set_u32("llama.feed_forward_length", uint32_t(FF));
  w.set_u32("llama.block_count", uint32_t(o.layers));
  w.set_u32("llama.attention.head_count", uint32_t(o.heads));
  w.set_u32("llama.attention.head_count_kv", uint32_t(KV / hd));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", c.rms_eps * float(d) / float(D));
  auto data = [&](const std::string& n) -> const float* {
    const auto* t = (*f)->find_tensor(n);
    return t ? reinterpret_cast<const float*>((*f)->tensor_data(*t)) : nullptr;
  };
  auto mat = [&](const std::string& n, const float* src, int64_t rows, int64_t cols, int64_t R, int64_t C, float s = 1.0f) {
    w.add_tensor(n, GgmlType::F32, R > 1 ? std::vector<uint64_t>{uint64_t(C), uint64_t(R)} : std::vector<uint64_t>{uint64_t(C)},
                 pad(src, rows, cols, R, C, s));
  };
  mat("token_embd.weight", data("token_embd.weight"), V, d, V, D);
  for (int32_t l = 0; l < o.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const bool orig = l < c.n_layers;
    auto src = [&](const char* n) { return orig ? data(p + n) : nullptr; };
    // Extra layers keep unit gains (their outputs are zeroed by wo and ffn_down anyway).
    std::vector<float> ones(size_t(d), 1.0f);
    mat(p + "attn_norm.weight", orig ? src("attn_norm.weight") : ones.data(), 1, d, 1, D, gscale);
    mat(p + "attn_q.weight", src("attn_q.weight"), d, d, D, D);
    mat(p + "attn_k.weight", src("attn_k.weight"), kvd, d, KV, D);
    mat(p + "attn_v.weight", src("attn_v.weight"), kvd, d, KV, D);
    mat(p + "attn_output.weight", src("attn_output.weight"), d, d, D, D);
    mat(p + "ffn_norm.weight", orig ? src("ffn_norm.weight") : ones.data(), 1, d, 1, D, gscale);
    mat(p + "ffn_gate.weight", src("ffn_gate.weight"), ff, d, FF, D);
    mat(p + "ffn_up.weight", src("ffn_up.weight"), ff, d, FF, D);
    mat(p + "ffn_down.weight", src("ffn_down.weight"), d, ff, D, FF);
  }
  mat("output_norm.weight", data("output_norm.weight"), 1, d, 1, D, gscale);
  mat("output.weight", data(c.tied_output ? "token_embd.weight" : "output.weight"), V, d, V, D);
  return w.write(o.output);
}

}  // namespace pagoda
