#include "core/model/rope_scaling.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace pagoda {

const char* rope_scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::Linear: return "linear";
    case RopeScalingType::Yarn: return "yarn";
    case RopeScalingType::LongRope: return "longrope";
    default: return "none";
  }
}

float yarn_corr_dim(int32_t head_dim, int32_t orig_ctx, float rotations, float theta) {
  constexpr float kPi = 3.14159265358979323846f;
  return float(head_dim) * std::log(float(orig_ctx) / (rotations * 2.0f * kPi)) / (2.0f * std::log(theta));
}

std::vector<float> RopeScaling::divisors(int32_t head_dim, float theta) const {
  const int32_t half = head_dim / 2;
  if (type == RopeScalingType::Linear && factor != 1.0f) return std::vector<float>(size_t(half), factor);
  if (type != RopeScalingType::Yarn) return {};
  // YaRN (Peng et al. 2023): pairs that turn fewer than beta_slow times over the original context
  // are interpolated (frequency / factor), pairs that turn more than beta_fast times keep their
  // frequency, and a linear ramp over the pair index joins the two. The ends are rounded outwards
  // and clamped to the head, as llama.cpp and HF do.
  const float lo = std::max(0.0f, std::floor(yarn_corr_dim(head_dim, orig_ctx, beta_fast, theta)));
  const float hi = std::min(float(head_dim - 1), std::ceil(yarn_corr_dim(head_dim, orig_ctx, beta_slow, theta)));
  std::vector<float> out(static_cast<size_t>(half));
  for (int32_t i = 0; i < half; ++i) {
    const float y = (float(i) - lo) / std::max(0.001f, hi - lo);
    const float extrapolate = 1.0f - std::clamp(y, 0.0f, 1.0f);  // 1 = keep the frequency
    out[size_t(i)] = 1.0f / (extrapolate + (1.0f - extrapolate) / factor);
  }
  return out;
}

std::string RopeScaling::signature() const {
  char buf[192];
  std::snprintf(buf, sizeof buf, " scaling=%s factor=%.9g orig=%d beta=%.9g/%.9g mag=%.9g long=%d", rope_scaling_name(type),
                double(factor), int(orig_ctx), double(beta_fast), double(beta_slow), double(magnitude), int(long_factors));
  return buf;
}

Result<RopeScaling> read_rope_scaling(const GgufFile& f, const std::string& p, int32_t ctx_len) {
  RopeScaling s;
  auto number = [&](const std::string& key, float& out, bool positive) -> Status {
    const auto* v = f.find(p + key);
    if (!v) return {};
    const auto x = v->as_float();
    if (!x || !std::isfinite(*x) || (positive ? !(*x > 0) : !(*x >= 0)))
      return make_error("metadata '" + p + key + "' must be a number " + (positive ? "> 0" : ">= 0"));
    out = float(*x);
    return {};
  };
  // The factor: rope.scaling.factor, else the old rope.scale_linear; 0 means none, as in llama.cpp.
  float factor = 0.0f;
  PAGODA_TRY(number("rope.scale_linear", factor, false));
  PAGODA_TRY(number("rope.scaling.factor", factor, false));
  if (factor == 0.0f) factor = 1.0f;
  std::string type = "linear";  // llama.cpp's default when the key is absent (a no-op at factor 1)
  if (const auto* v = f.find(p + "rope.scaling.type")) {
    const std::string* t = v->as_string();
    if (!t) return make_error("metadata '" + p + "rope.scaling.type' must be a string");
    type = *t;
  }
  const bool has_long = f.find_tensor("rope_factors_long.weight") != nullptr;
  const bool has_short = f.find_tensor("rope_factors_short.weight") != nullptr;
  if (has_long != has_short)
    return make_error(std::string("tensor 'rope_factors_") + (has_long ? "short" : "long") +
                      ".weight' is missing: LongRoPE needs both factor tensors");
  if (type == "none") {
    factor = 1.0f;  // llama.cpp never scales under "none", whatever the factor says
  } else if (type == "linear") {
    s.type = factor != 1.0f ? RopeScalingType::Linear : RopeScalingType::None;
    s.factor = factor;
  } else if (type == "yarn") {
    s.type = RopeScalingType::Yarn;
    s.factor = factor;
  } else if (type == "longrope") {
    if (!has_long) return make_error("metadata '" + p + "rope.scaling.type' = 'longrope' without rope_factors_long/short tensors");
  } else {
    return make_error("metadata '" + p + "rope.scaling.type' = '" + type +
                      "' is not implemented (none, linear, yarn and longrope are)");
  }
  if (has_long) {
    if (s.type != RopeScalingType::None)
      return make_error("metadata '" + p + "rope.scaling.type' = '" + type +
                        "' together with LongRoPE factor tensors is not implemented");
    s.type = RopeScalingType::LongRope;
  }
  s.orig_ctx = ctx_len;
  if (const auto* v = f.find(p + "rope.scaling.original_context_length")) {
    const auto n = v->as_int();
    if (!n || *n < 1 || *n > (int64_t(1) << 30))
      return make_error("metadata '" + p + "rope.scaling.original_context_length' must be a positive integer");
    s.orig_ctx = int32_t(*n);
  }
  PAGODA_TRY(number("rope.scaling.yarn_beta_fast", s.beta_fast, true));
  PAGODA_TRY(number("rope.scaling.yarn_beta_slow", s.beta_slow, true));
  float attn_factor = 1.0f;
  const bool has_attn = f.find(p + "rope.scaling.attn_factor") != nullptr;
  PAGODA_TRY(number("rope.scaling.attn_factor", attn_factor, true));
  s.magnitude = attn_factor;
  if (s.type == RopeScalingType::Yarn) {
    if (s.orig_ctx < 2) return make_error("metadata '" + p + "rope.scaling.original_context_length' must be at least 2 for yarn");
    s.magnitude *= 1.0f + 0.1f * std::log(s.factor);
  }
  if (s.type == RopeScalingType::LongRope) {
    s.long_factors = ctx_len > s.orig_ctx;
    const float scale = float(ctx_len) / float(s.orig_ctx);
    if (!has_attn && scale > 1.0f && s.orig_ctx > 1)
      s.magnitude = std::sqrt(1.0f + std::log(scale) / std::log(float(s.orig_ctx)));
  }
  return s;
}

}  // namespace pagoda
