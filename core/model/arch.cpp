#include "core/model/arch.h"

#include <cstdio>

namespace pagoda {

const char* rope_style_name(RopeStyle s) { return s == RopeStyle::Neox ? "neox" : "norm"; }
const char* ffn_activation_name(FfnActivation a) { return a == FfnActivation::GeluTanh ? "gelu_tanh" : "silu"; }

namespace {

// The architectures Pagoda runs. Each entry is what the model's published reference code computes
// (Hugging Face transformers' modeling files and the model cards), in GGUF's tensor names.
std::vector<ArchDesc> registry() {
  std::vector<ArchDesc> v;
  {
    ArchDesc d;  // Llama 1-3, Mistral (GGUFs of Mistral say "llama")
    d.name = "llama";
    d.rope_freqs = true;
    v.push_back(d);
  }
  {
    ArchDesc d;  // Qwen 2 / 2.5: biases on the q, k, v projections
    d.name = "qwen2";
    d.rope = RopeStyle::Neox;
    d.qkv_bias = true;
    v.push_back(d);
  }
  {
    ArchDesc d;  // Qwen 3 (dense): per-head RMSNorm of q and k, no biases
    d.name = "qwen3";
    d.rope = RopeStyle::Neox;
    d.qk_norm = true;
    v.push_back(d);
  }
  {
    ArchDesc d;  // Gemma 2
    d.name = "gemma2";
    d.rope = RopeStyle::Neox;
    d.activation = FfnActivation::GeluTanh;
    d.post_norms = true;
    d.embed_scale_sqrt_dim = true;
    d.window_period = 2;
    d.wide_query_scale_layers = 46;  // 27B
    d.keys = {"attention.sliding_window", "attn_logit_softcapping", "final_logit_softcapping"};
    v.push_back(d);
  }
  {
    ArchDesc d;  // Gemma 3 (text): Gemma 2's block plus per-head q/k norms, no soft caps, 5 local
                 // layers (window, RoPE base 10000) to 1 global (rope.freq_base and its scaling)
    d.name = "gemma3";
    d.rope = RopeStyle::Neox;
    d.activation = FfnActivation::GeluTanh;
    d.qk_norm = true;
    d.post_norms = true;
    d.embed_scale_sqrt_dim = true;
    d.window_period = 6;
    d.local_rope_base = 10000.0f;
    d.wide_query_scale_layers = 62;  // 27B
    d.keys = {"attention.sliding_window", "attention.sliding_window_pattern"};
    v.push_back(d);
  }
  {
    ArchDesc d;  // Phi-3 (mini/medium; the 128k files' LongRoPE factors are RoPE scaling, model_config)
    d.name = "phi3";
    d.rope = RopeStyle::Neox;
    d.fused_qkv = true;
    d.fused_gate_up = true;
    d.keys = {"attention.sliding_window"};
    v.push_back(d);
  }
  return v;
}

}  // namespace

std::vector<std::string> known_architectures() {
  std::vector<std::string> out;
  for (const auto& d : registry()) out.push_back(d.name);
  return out;
}

Result<ArchDesc> arch_desc(const std::string& arch) {
  for (const auto& d : registry())
    if (d.name == arch) return d;
  std::string known;
  for (const auto& n : known_architectures()) known += (known.empty() ? "" : ", ") + n;
  return make_error("architecture '" + arch + "' not supported (general.architecture): Pagoda runs " + known);
}

std::string ArchDesc::signature() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s rope=%s act=%s bias=%d qknorm=%d post=%d fqkv=%d fgu=%d escale=%.9g acap=%.9g fcap=%.9g "
                "window=%d period=%d lbase=%.9g qscale=%.9g",
                name.c_str(), rope_style_name(rope), ffn_activation_name(activation), int(qkv_bias), int(qk_norm),
                int(post_norms), int(fused_qkv), int(fused_gate_up), double(embed_scale), double(attn_softcap),
                double(final_softcap), int(window), int(window_period), double(local_rope_base), double(query_scale));
  return buf;
}

}  // namespace pagoda
