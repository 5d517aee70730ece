// argmax: out[r] = index of the maximum of x[r, :], the first one on ties (one workgroup per row).
// Bindings: 0 x (float, x_off + r * cols), 1 out (int, out_off + r).
// Specialization: 0 = workgroup size (power of two).
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer X { float xs[]; };
layout(binding = 1) writeonly buffer Out { int os[]; };

layout(push_constant) uniform Params {
  uint x_off;
  uint out_off;
  uint n_rows;
  uint cols;
} p;

shared float am_v[gl_WorkGroupSize.x];
shared uint am_i[gl_WorkGroupSize.x];

#include "common.glsl"

uint g_base;
float argmax_value(uint i) { return xs[g_base + i]; }

#include "argmax.glsl"

void main() {
  const uint row = group_index();
  if (row >= p.n_rows) return;
  g_base = p.x_off + row * p.cols;
  const uint best = wg_argmax(p.cols);
  if (gl_LocalInvocationID.x == 0u) os[p.out_off + row] = int(best == AM_NONE ? 0u : best);
}
