// sample_probs: out[r] = smallest i with cumsum(probs[r, :i+1]) > u[r] * sum(probs[r, :]) (one
// workgroup per row; probs need not be normalized, non-positive entries are never chosen).
// Bindings: 0 probs (float, p_off + r * cols), 1 u (float, u_off + r), 2 out (int, out_off + r).
// Specialization: 0 = workgroup size (power of two).
//! variant nosg NO_SUBGROUP
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer Probs { float ps[]; };
layout(binding = 1) readonly buffer U { float us[]; };
layout(binding = 2) writeonly buffer Out { int os[]; };

layout(push_constant) uniform Params {
  uint p_off;
  uint u_off;
  uint out_off;
  uint n_rows;
  uint cols;
} p;

shared float red[gl_WorkGroupSize.x];
shared float draw_pre[gl_WorkGroupSize.x];
shared uint draw_found;
shared int draw_last;

#include "common.glsl"
#include "reduce.glsl"

uint g_base;
float draw_weight(uint i) { return ps[g_base + i]; }

#include "draw.glsl"

void main() {
  const uint row = group_index();
  if (row >= p.n_rows) return;
  g_base = p.p_off + row * p.cols;
  const int tok = wg_draw(p.cols, us[p.u_off + row]);
  if (gl_LocalInvocationID.x == 0u) os[p.out_off + row] = tok;
}
