#include "apps/bench/synth.h"

#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "core/gguf/gguf_writer.h"
#include "core/model/model_weights.h"

namespace pagoda {

std::vector<std::string> synth_presets() { return {"tiny", "15M", "110M", "1B"}; }

Result<SynthShape> synth_preset(const std::string& n) {
  if (n == "tiny") return SynthShape{n, 64, 160, 2, 4, 2, 256};
  if (n == "15M") return SynthShape{n, 288, 768, 6, 6, 6, 256};
  if (n == "110M") return SynthShape{n, 768, 2048, 12, 12, 12, 1024};
  if (n == "1B") return SynthShape{n, 2048, 5632, 22, 32, 4, 2048};
  return make_error("unknown synth preset '" + n + "' (choose tiny, 15M, 110M or 1B)");
}

namespace {

// xorshift64*: fast, reproducible uniform noise; weights ~ U(-a, a) with std 0.02.
struct Noise {
  uint64_t s;
  float next() {
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    const uint64_t r = s * 2685821657736338717ull;
    return (float(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 0.0346f;
  }
};

std::vector<uint8_t> random_tensor(Noise& rng, DType dt, int64_t rows, int64_t cols) {
  std::vector<uint8_t> out(row_bytes(dt, cols) * size_t(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& x : row) x = rng.next();
    quantize_row(dt, row.data(), out.data() + size_t(r) * row_bytes(dt, cols), cols);
  }
  return out;
}

std::vector<uint8_t> ones(int64_t n) {
  std::vector<float> v(size_t(n), 1.0f);
  std::vector<uint8_t> out(size_t(n) * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace

Status synth_model(const SynthOptions& opt) {
  const SynthShape& s = opt.shape;
  auto dt = dtype_from_ggml(opt.dtype);
  if (!dt) return dt.take_error();
  const int64_t blk = dtype_block_elems(*dt);
  if (s.dim % blk || s.ffn_dim % blk)
    return make_error(std::string("synth in ") + dtype_name(*dt) + " needs dimensions that are multiples of " + std::to_string(blk));
  auto out_dt = dtype_from_ggml(opt.output_dtype.value_or(opt.dtype));
  if (!out_dt) return out_dt.take_error();
  auto vf = GgufFile::open(opt.vocab_from);
  if (!vf) return make_error("vocabulary source: " + vf.error());
  const auto* toks = (*vf)->find("tokenizer.ggml.tokens");
  if (!toks || !toks->as_array()) return make_error("vocabulary source '" + opt.vocab_from + "' has no tokenizer.ggml.tokens");
  const int64_t vocab = int64_t(toks->as_array()->items.size());

  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "synthetic-" + s.preset + " (random weights)");
  w.set_string("general.description", "Random weights for speed measurement only; its text is noise.");
  w.set_u32("llama.context_length", uint32_t(s.ctx_len));
  w.set_u32("llama.embedding_length", uint32_t(s.dim));
  w.set_u32("llama.feed_forward_length", uint32_t(s.ffn_dim));
  w.set_u32("llama.block_count", uint32_t(s.n_layers));
  w.set_u32("llama.attention.head_count", uint32_t(s.n_heads));
  w.set_u32("llama.attention.head_count_kv", uint32_t(s.n_kv_heads));
  w.set_u32("llama.rope.dimension_count", uint32_t(s.dim / s.n_heads));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  for (const auto& [k, v] : (*vf)->metadata())
    if (k.rfind("tokenizer.", 0) == 0) w.set_value(k, v);

  Noise rng{opt.seed * 0x9E3779B97F4A7C15ull + 1};
  const int64_t kv_dim = int64_t(s.dim / s.n_heads) * s.n_kv_heads;
  auto mat = [&](const std::string& n, int64_t rows, int64_t cols, bool output = false) {
    const DType t = output ? *out_dt : *dt;
    w.add_tensor(n, ggml_from_dtype(t), {uint64_t(cols), uint64_t(rows)}, random_tensor(rng, t, rows, cols));
  };
  mat("token_embd.weight", vocab, s.dim);
  for (int32_t l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    w.add_tensor(p + "attn_norm.weight", GgmlType::F32, {uint64_t(s.dim)}, ones(s.dim));
    mat(p + "attn_q.weight", s.dim, s.dim);
    mat(p + "attn_k.weight", kv_dim, s.dim);
    mat(p + "attn_v.weight", kv_dim, s.dim);
    mat(p + "attn_output.weight", s.dim, s.dim);
    w.add_tensor(p + "ffn_norm.weight", GgmlType::F32, {uint64_t(s.dim)}, ones(s.dim));
    mat(p + "ffn_gate.weight", s.ffn_dim, s.dim);
    mat(p + "ffn_up.weight", s.ffn_dim, s.dim);
    mat(p + "ffn_down.weight", s.dim, s.ffn_dim);
  }
  w.add_tensor("output_norm.weight", GgmlType::F32, {uint64_t(s.dim)}, ones(s.dim));
  mat("output.weight", vocab, s.dim, true);
  return w.write(opt.output);
}

}  // namespace pagoda
