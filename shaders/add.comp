// add: out[i] = a[i] + b[i]   for i < n.
// Bindings: 0 a, 1 b, 2 out (float, each at its own *_off). out may alias a.
// Specialization: 0 = workgroup size.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer A { float as_[]; };
layout(binding = 1) readonly buffer B { float bs[]; };
layout(binding = 2) writeonly buffer Out { float os[]; };

layout(push_constant) uniform Params {
  uint a_off;
  uint b_off;
  uint out_off;
  uint n;
} p;

#include "common.glsl"

void main() {
  const uint i = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n) return;
  os[p.out_off + i] = as_[p.a_off + i] + bs[p.b_off + i];
}
