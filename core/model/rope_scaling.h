// RoPE scaling read from GGUF metadata (and Phi-3's LongRoPE factor tensors), expressed as what
// the one rope kernel already takes: a divisor per rotation pair (the `rope_freqs` input, as Llama
// 3's factors) plus a magnitude that multiplies q and k, folded into the attention scale. No
// backend needs an op of its own for it (docs/architectures.md, "RoPE scaling").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/gguf/gguf.h"
#include "core/util/result.h"

namespace pagoda {

enum class RopeScalingType : uint8_t { None, Linear, Yarn, LongRope };
const char* rope_scaling_name(RopeScalingType t);

struct RopeScaling {
  RopeScalingType type = RopeScalingType::None;
  float factor = 1.0f;        // rope.scaling.factor (linear, yarn): context extension ratio
  int32_t orig_ctx = 0;       // rope.scaling.original_context_length (yarn, longrope)
  float beta_fast = 32.0f;    // yarn: the ramp's ends, in rotations over orig_ctx (llama.cpp's
  float beta_slow = 1.0f;     // defaults; rope.scaling.yarn_beta_fast / _slow when given)
  // The magnitude q and k are multiplied by (cos and sin scaled, as llama.cpp and HF do):
  // rope.scaling.attn_factor (default 1), times 1 + 0.1 ln(factor) for yarn; for longrope without
  // the key, HF's sqrt(1 + ln(ctx / orig_ctx) / ln(orig_ctx)).
  float magnitude = 1.0f;
  bool long_factors = false;  // longrope: rope_factors_long (context_length > orig_ctx), else _short

  // Per-pair frequency divisors from the type and its scalars (linear: factor everywhere; yarn:
  // the ramp between interpolation and extrapolation), head_dim / 2 of them; empty when every one
  // is 1. LongRoPE's come from the file's tensors instead.
  std::vector<float> divisors(int32_t head_dim, float theta) const;
  std::string signature() const;
};

// llama.cpp's YaRN correction dimension: the (fractional) pair index whose wavelength completes
// `rotations` turns over orig_ctx positions: head_dim * ln(orig_ctx / (rotations * 2 pi)) / (2 ln theta).
float yarn_corr_dim(int32_t head_dim, int32_t orig_ctx, float rotations, float theta);

// The scaling a file asks for under `prefix` ("<arch>."), with ctx_len its context_length. An
// unknown type or a bad value is an error naming the key.
Result<RopeScaling> read_rope_scaling(const GgufFile& f, const std::string& prefix, int32_t ctx_len);

}  // namespace pagoda
