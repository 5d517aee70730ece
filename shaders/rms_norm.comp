// rms_norm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w   (one workgroup per row).
// Bindings: 0 x (float, x_off + r * dim), 1 w (float, w_off), 2 out (float, out_off + r * dim).
// out may alias x: each invocation reads an element before writing the same element.
// Specialization: 0 = workgroup size (power of two).
//! variant nosg NO_SUBGROUP
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer X { float xs[]; };
layout(binding = 1) readonly buffer Wt { float ws[]; };
layout(binding = 2) writeonly buffer Out { float os[]; };

layout(push_constant) uniform Params {
  uint x_off;
  uint w_off;
  uint out_off;
  uint n_rows;
  uint dim;
  float eps;
} p;

shared float red[gl_WorkGroupSize.x];

#include "common.glsl"
#include "reduce.glsl"

void main() {
  const uint row = group_index();
  if (row >= p.n_rows) return;
  const uint lid = gl_LocalInvocationID.x;
  const uint xb = p.x_off + row * p.dim;
  float ss = 0.0;
  for (uint i = lid; i < p.dim; i += gl_WorkGroupSize.x) ss += xs[xb + i] * xs[xb + i];
  ss = wg_sum(ss);
  const float scale = 1.0 / sqrt(ss / float(p.dim) + p.eps);
  const uint ob = p.out_off + row * p.dim;
  for (uint i = lid; i < p.dim; i += gl_WorkGroupSize.x) os[ob + i] = xs[xb + i] * scale * ws[p.w_off + i];
}
