// adjust_logits: for each entry e of the adjustment list, in place,
//   l = logits[e.row, e.token]; l += bias; l *= (l > 0 ? pos_scale : neg_scale); l -= subtract
// (Backend::adjust_logits; the host sampler's adjust_logit in backends/backend.h). `precise`
// keeps the three steps separately rounded, as on the host: no multiply-add may be fused.
// Bindings: 0 logits (float, l_off + row * cols), 1 entries (6 ints each, a_off + 6 * i).
// Specialization: 0 = workgroup size.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(binding = 0) buffer Logits { float ls[]; };
layout(binding = 1) readonly buffer Adjust { int as_[]; };

layout(push_constant) uniform Params {
  uint l_off;
  uint a_off;
  uint n;       // entries
  uint n_rows;  // logits rows
  uint cols;
} p;

#include "common.glsl"

void main() {
  const uint i = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n) return;
  const uint e = p.a_off + 6u * i;
  const int row = as_[e], tok = as_[e + 1u];
  if (row < 0 || uint(row) >= p.n_rows || tok < 0 || uint(tok) >= p.cols) return;
  const uint at = p.l_off + uint(row) * p.cols + uint(tok);
  precise float l = ls[at] + intBitsToFloat(as_[e + 2u]);
  precise float scaled = l > 0.0 ? l * intBitsToFloat(as_[e + 3u]) : l * intBitsToFloat(as_[e + 4u]);
  precise float out_ = scaled - intBitsToFloat(as_[e + 5u]);
  ls[at] = out_;
}
