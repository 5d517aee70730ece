// gelu_mul: out[i] = gelu(gate[i]) * up[i] for i < n, GELU in its tanh form:
// gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (Gemma's gated FFN).
// Bindings: 0 gate, 1 up, 2 out (float, each at its own *_off). out may alias gate.
// Specialization: 0 = workgroup size.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer Gate { float gs[]; };
layout(binding = 1) readonly buffer Up { float us[]; };
layout(binding = 2) writeonly buffer Out { float os[]; };

layout(push_constant) uniform Params {
  uint gate_off;
  uint up_off;
  uint out_off;
  uint n;
} p;

#include "common.glsl"

void main() {
  const uint i = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n) return;
  const float g = gs[p.gate_off + i];
  // 0.5 g (1 + tanh(u)) = g * sigmoid(2u): no cancellation for very negative g (as the reference).
  const float u = 0.7978845608028654 * (g + 0.044715 * g * g * g);
  os[p.out_off + i] = g / (1.0 + exp(-2.0 * u)) * us[p.up_off + i];
}
