// matmul: out[n, o] = sum_i x[n, i] * w[o, i]   for n < n_rows, o < n_out (one chunk of w's rows).
// One workgroup computes 4 consecutive x rows (1 in the ROWS1 variant, for decode) against one
// weight row, so each weight element is dequantized once per 4 rows. Invocations stride over the
// row in units (one element for F32,
// two for F16/BF16, and for block-quantized types dequant.glsl's units: half a 32-element block,
// or 32 elements of a K-quant super-block, each decoded from its bytes once) and the 4 partial
// sums are reduced over the workgroup. Groups are ordered weight-row-major: g = row_block * n_out + o.
// Bindings: 0 w (uint words; weight row o starts at byte w_off + o * w_row_bytes),
//           1 x (float; x_off + n * n_in + i), 2 out (float; out_off + n * out_stride + o).
// Specialization: 0 = workgroup size (power of two), 1 = weight DType.
//! variant nosg NO_SUBGROUP
//! variant r1 ROWS1
//! variant r1_nosg ROWS1 NO_SUBGROUP
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint WTYPE = 0u;

layout(binding = 0) readonly buffer Weights { uint W[]; };
layout(binding = 1) readonly buffer X { float xs[]; };
layout(binding = 2) writeonly buffer Out { float os[]; };

layout(push_constant) uniform Params {
  uint w_off;
  uint x_off;
  uint out_off;
  uint n_rows;
  uint n_in;
  uint n_out;
  uint out_stride;
  uint w_row_bytes;
} p;

#ifdef ROWS1
#define NX 1u
#define acc_t float
#else
#define NX 4u
#define acc_t vec4
#endif

shared acc_t red4[gl_WorkGroupSize.x];

#include "common.glsl"
#include "dequant.glsl"

uvec4 xrow;  // start of each of the x rows (clamped to the last row so loads stay in bounds)

#ifdef ROWS1
acc_t xv(uint i) { return xs[xrow.x + i]; }
float lane(acc_t a, uint k) { return a; }
#else
acc_t xv(uint i) { return vec4(xs[xrow.x + i], xs[xrow.y + i], xs[xrow.z + i], xs[xrow.w + i]); }
float lane(acc_t a, uint k) { return a[k]; }
#endif

acc_t wg_sum4(acc_t v) {
  const uint lid = gl_LocalInvocationID.x;
#ifdef NO_SUBGROUP
  red4[lid] = v;
  barrier();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1u) {
    if (lid < s) red4[lid] += red4[lid + s];
    barrier();
  }
  return red4[0];
#else
  v = subgroupAdd(v);
  if (subgroupElect()) red4[gl_SubgroupID] = v;
  barrier();
  acc_t r = acc_t(0.0);
  for (uint i = 0u; i < gl_NumSubgroups; ++i) r += red4[i];
  return r;
#endif
}

acc_t dot_f32(uint wrow) {
  acc_t acc = acc_t(0.0);
  for (uint i = gl_LocalInvocationID.x; i < p.n_in; i += gl_WorkGroupSize.x)
    acc += uintBitsToFloat(W[(wrow >> 2) + i]) * xv(i);
  return acc;
}

// F16 and BF16: two 16-bit elements per word read.
vec2 w_pair(uint a) {
  const uint u = w_u32_even(a);
  return WTYPE == DT_BF16 ? vec2(bf16_lo(u), bf16_hi(u)) : unpackHalf2x16(u);
}

acc_t dot_f16(uint wrow) {
  acc_t acc = acc_t(0.0);
  const uint pairs = p.n_in >> 1;
  for (uint k = gl_LocalInvocationID.x; k < pairs; k += gl_WorkGroupSize.x) {
    const vec2 h = w_pair(wrow + 4u * k);
    acc += h.x * xv(2u * k) + h.y * xv(2u * k + 1u);
  }
  if ((p.n_in & 1u) != 0u && gl_LocalInvocationID.x == 0u)
    acc += w_elem(wrow, p.n_in - 1u) * xv(p.n_in - 1u);
  return acc;
}

// Block-quantized weights: invocations stride over the row's units (dequant.glsl), each decoded
// once and dotted with the matching x elements of all NX rows; a run's scale (and minimum)
// multiplies its partial sum (and the sum of its x) once.
acc_t dot_quant(uint wrow) {
  acc_t acc = acc_t(0.0);
  const uint per_block = w_units_per_block(), bytes = w_block_bytes(), elems = w_block_elems();
  const uint units = (p.n_in / elems) * per_block;
  for (uint u = gl_LocalInvocationID.x; u < units; u += gl_WorkGroupSize.x) {
    const uint b = u / per_block, t = u - b * per_block;
    float v[32];
    vec4 scale, offset;
    w_unit(wrow + b * bytes, t, v, scale, offset);
    for (uint r = 0u; r < w_unit_elems() / 8u; ++r) {
      const uint e0 = b * elems + w_run_start(t, r);
      acc_t s = acc_t(0.0), sx = acc_t(0.0);
      for (uint i = 0u; i < 8u; ++i) {
        const acc_t x = xv(e0 + i);
        s += v[8u * r + i] * x;
        if (w_has_offset()) sx += x;
      }
      acc += scale[r] * s;
      if (w_has_offset()) acc += offset[r] * sx;
    }
  }
  return acc;
}

void main() {
  const uint g = group_index();
  const uint o = g % p.n_out;
  const uint r0 = (g / p.n_out) * NX;
  if (r0 >= p.n_rows) return;
  const uint last = p.n_rows - 1u;
  xrow = p.x_off + uvec4(min(r0, last), min(r0 + 1u, last), min(r0 + 2u, last), min(r0 + 3u, last)) * p.n_in;
  const uint wrow = p.w_off + o * p.w_row_bytes;
  acc_t acc;
  if (WTYPE == DT_F32) acc = dot_f32(wrow);
  else if (WTYPE == DT_F16 || WTYPE == DT_BF16) acc = dot_f16(wrow);
  else acc = dot_quant(wrow);
  acc = wg_sum4(acc);
  if (gl_LocalInvocationID.x == 0u) {
    for (uint k = 0u; k < NX && r0 + k < p.n_rows; ++k) os[p.out_off + (r0 + k) * p.out_stride + o] = lane(acc, k);
  }
}
