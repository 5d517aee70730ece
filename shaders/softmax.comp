// softmax: out[r, :] = exp((x[r, :] - max) / temperature) / sum   (one workgroup per row).
// Bindings: 0 x (float, x_off + r * cols), 1 out (float, out_off + r * cols). out may alias x:
// every invocation only rereads elements it wrote itself.
// Specialization: 0 = workgroup size (power of two).
//! variant nosg NO_SUBGROUP
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer X { float xs[]; };
layout(binding = 1) buffer Out { float os[]; };

layout(push_constant) uniform Params {
  uint x_off;
  uint out_off;
  uint n_rows;
  uint cols;
  float temperature;
} p;

shared float red[gl_WorkGroupSize.x];

#include "common.glsl"
#include "reduce.glsl"

void main() {
  const uint row = group_index();
  if (row >= p.n_rows) return;
  const uint lid = gl_LocalInvocationID.x, wg = gl_WorkGroupSize.x;
  const uint xb = p.x_off + row * p.cols, ob = p.out_off + row * p.cols;
  float mx = uintBitsToFloat(0xff800000u);
  for (uint i = lid; i < p.cols; i += wg) mx = max(mx, xs[xb + i]);
  mx = wg_max(mx);
  float sum = 0.0;
  for (uint i = lid; i < p.cols; i += wg) {
    const float e = exp((xs[xb + i] - mx) / p.temperature);
    os[ob + i] = e;
    sum += e;
  }
  sum = wg_sum(sum);
  for (uint i = lid; i < p.cols; i += wg) os[ob + i] = os[ob + i] / sum;
}
