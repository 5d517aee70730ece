#include "apps/bench/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "core/gguf/gguf_writer.h"
#include "core/model/model_weights.h"

namespace pagoda {

std::vector<std::string> synth_presets() { return {"tiny", "15M", "110M", "1B"}; }
std::vector<std::string> synth_architectures() { return {"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"}; }

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
  const std::string& a = opt.arch;
  const auto archs = synth_architectures();
  if (std::find(archs.begin(), archs.end(), a) == archs.end())
    return make_error("synth: unknown architecture '" + a + "' (choose llama, qwen2, qwen3, gemma2, gemma3 or phi3)");
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

  const bool gemma = a == "gemma2" || a == "gemma3";
  const bool bias = a == "qwen2", qk_norm = a == "qwen3" || a == "gemma3", fused = a == "phi3";
  const int64_t head_dim = s.dim / s.n_heads;
  GgufWriter w;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "synthetic-" + a + "-" + s.preset + " (random weights)");
  w.set_string("general.description", "Random weights for speed measurement only; its text is noise.");
  const std::string k = a + ".";
  w.set_u32(k + "context_length", uint32_t(s.ctx_len));
  w.set_u32(k + "embedding_length", uint32_t(s.dim));
  w.set_u32(k + "feed_forward_length", uint32_t(s.ffn_dim));
  w.set_u32(k + "block_count", uint32_t(s.n_layers));
  w.set_u32(k + "attention.head_count", uint32_t(s.n_heads));
  w.set_u32(k + "attention.head_count_kv", uint32_t(s.n_kv_heads));
  w.set_u32(k + "rope.dimension_count", uint32_t(head_dim));
  w.set_f32(k + "attention.layer_norm_rms_epsilon", gemma ? 1e-6f : 1e-5f);
  // The published models' RoPE bases and windows (Gemma 2: 4096; Gemma 3 1B: 512, global base 1e6).
  w.set_f32(k + "rope.freq_base", a == "gemma3" || a == "qwen2" || a == "qwen3" ? 1000000.0f : 10000.0f);
  if (a == "qwen3" || gemma) {
    w.set_u32(k + "attention.key_length", uint32_t(head_dim));
    w.set_u32(k + "attention.value_length", uint32_t(head_dim));
  }
  if (gemma) w.set_u32(k + "attention.sliding_window", a == "gemma2" ? 4096u : 512u);
  if (a == "gemma2") {
    w.set_f32(k + "attn_logit_softcapping", 50.0f);
    w.set_f32(k + "final_logit_softcapping", 30.0f);
  }
  for (const auto& [key, v] : (*vf)->metadata())
    if (key.rfind("tokenizer.", 0) == 0) w.set_value(key, v);

  Noise rng{opt.seed * 0x9E3779B97F4A7C15ull + 1};
  const int64_t kv_dim = head_dim * s.n_kv_heads;
  auto mat = [&](const std::string& n, int64_t rows, int64_t cols, bool output = false) {
    const DType t = output ? *out_dt : *dt;
    w.add_tensor(n, ggml_from_dtype(t), {uint64_t(cols), uint64_t(rows)}, random_tensor(rng, t, rows, cols));
  };
  auto vec = [&](const std::string& n, int64_t cols) { w.add_tensor(n, GgmlType::F32, {uint64_t(cols)}, ones(cols)); };
  mat("token_embd.weight", vocab, s.dim);
  for (int32_t l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vec(p + "attn_norm.weight", s.dim);
    if (fused) {
      mat(p + "attn_qkv.weight", s.dim + 2 * kv_dim, s.dim);
    } else {
      mat(p + "attn_q.weight", s.dim, s.dim);
      mat(p + "attn_k.weight", kv_dim, s.dim);
      mat(p + "attn_v.weight", kv_dim, s.dim);
    }
    if (bias) {
      w.add_tensor(p + "attn_q.bias", GgmlType::F32, {uint64_t(s.dim)}, random_tensor(rng, DType::F32, 1, s.dim));
      w.add_tensor(p + "attn_k.bias", GgmlType::F32, {uint64_t(kv_dim)}, random_tensor(rng, DType::F32, 1, kv_dim));
      w.add_tensor(p + "attn_v.bias", GgmlType::F32, {uint64_t(kv_dim)}, random_tensor(rng, DType::F32, 1, kv_dim));
    }
    if (qk_norm) {
      vec(p + "attn_q_norm.weight", head_dim);
      vec(p + "attn_k_norm.weight", head_dim);
    }
    mat(p + "attn_output.weight", s.dim, s.dim);
    if (gemma) vec(p + "post_attention_norm.weight", s.dim);
    vec(p + "ffn_norm.weight", s.dim);
    if (fused) {
      mat(p + "ffn_up.weight", 2 * int64_t(s.ffn_dim), s.dim);
    } else {
      mat(p + "ffn_gate.weight", s.ffn_dim, s.dim);
      mat(p + "ffn_up.weight", s.ffn_dim, s.dim);
    }
    mat(p + "ffn_down.weight", s.dim, s.ffn_dim);
    if (gemma) vec(p + "post_ffw_norm.weight", s.dim);
  }
  vec("output_norm.weight", s.dim);
  mat("output.weight", vocab, s.dim, true);
  return w.write(opt.output);
}

}  // namespace pagoda
