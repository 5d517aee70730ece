// silu_mul: out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up   for i < n.
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
  os[p.out_off + i] = g / (1.0 + exp(-g)) * us[p.up_off + i];
}
