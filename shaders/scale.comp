// scale: out[i] = x[i] * s for i < n (Gemma's embedding scale; cap != 0 selects the soft cap
// out[i] = cap * tanh(x[i] / cap) instead, for Gemma 2's final logits).
// Bindings: 0 x, 1 out (float, each at its own *_off). out may alias x.
// Specialization: 0 = workgroup size.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer X { float xs[]; };
layout(binding = 1) writeonly buffer Out { float os[]; };

layout(push_constant) uniform Params {
  uint x_off;
  uint out_off;
  uint n;
  float s;
  float cap;
} p;

#include "common.glsl"

void main() {
  const uint i = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n) return;
  const float x = xs[p.x_off + i];
  if (p.cap > 0.0) {
    const float u = clamp(x / p.cap, -30.0, 30.0);
    os[p.out_off + i] = p.cap * (1.0 - 2.0 / (exp(2.0 * u) + 1.0));
  } else {
    os[p.out_off + i] = x * p.s;
  }
}
