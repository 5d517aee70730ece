// matmul: out[n, o] = sum_i x[n, i] * w[o, i]   for n < n_rows, o < n_out (one chunk of w's rows).
// One workgroup computes 4 consecutive x rows (1 in the ROWS1 variant, for decode) against one
// weight row, so each weight element is dequantized once per 4 rows. Invocations stride over the
// row in units (one element for F32,
// two for F16, half a block = 16 elements for Q8_0/Q4_0) and the 4 partial sums are reduced
// over the workgroup. Groups are ordered weight-row-major: g = row_block * n_out + o.
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

acc_t dot_f16(uint wrow) {
  acc_t acc = acc_t(0.0);
  const uint pairs = p.n_in >> 1;
  for (uint k = gl_LocalInvocationID.x; k < pairs; k += gl_WorkGroupSize.x) {
    const vec2 h = unpackHalf2x16(w_u32_even(wrow + 4u * k));
    acc += h.x * xv(2u * k) + h.y * xv(2u * k + 1u);
  }
  if ((p.n_in & 1u) != 0u && gl_LocalInvocationID.x == 0u)
    acc += w_half(wrow + 2u * (p.n_in - 1u)) * xv(p.n_in - 1u);
  return acc;
}

// Half block u: Q8_0 holds its 16 int8 in 4 words at byte 2 + 16 * (u & 1) of the block.
acc_t dot_q8_0(uint wrow) {
  acc_t acc = acc_t(0.0);
  const uint units = p.n_in >> 4;
  for (uint u = gl_LocalInvocationID.x; u < units; u += gl_WorkGroupSize.x) {
    const uint blk = wrow + (u >> 1) * 34u;
    const uint qa = blk + 2u + 16u * (u & 1u);
    const uint e0 = u * 16u;
    acc_t s = acc_t(0.0);
    for (uint k = 0u; k < 4u; ++k) {
      const int q = int(w_u32_even(qa + 4u * k));
      for (uint b = 0u; b < 4u; ++b) s += float(bitfieldExtract(q, int(8u * b), 8)) * xv(e0 + 4u * k + b);
    }
    acc += w_half(blk) * s;
  }
  return acc;
}

// Half block u of Q4_0: bytes 8 * (u & 1) .. +7 of the 16 nibble bytes; low nibbles are elements
// 8 * (u & 1) + j, high nibbles elements 16 + 8 * (u & 1) + j.
acc_t dot_q4_0(uint wrow) {
  acc_t acc = acc_t(0.0);
  const uint units = p.n_in >> 4;
  for (uint u = gl_LocalInvocationID.x; u < units; u += gl_WorkGroupSize.x) {
    const uint blk = wrow + (u >> 1) * 18u;
    const uint h = u & 1u;
    const uint e0 = (u >> 1) * 32u + 8u * h;
    acc_t s = acc_t(0.0);
    for (uint k = 0u; k < 2u; ++k) {
      const uint q = w_u32_even(blk + 2u + 8u * h + 4u * k);
      for (uint b = 0u; b < 4u; ++b) {
        const uint byte_ = (q >> (8u * b)) & 0xffu;
        const uint j = 4u * k + b;
        s += float(int(byte_ & 15u) - 8) * xv(e0 + j) + float(int(byte_ >> 4) - 8) * xv(e0 + 16u + j);
      }
    }
    acc += w_half(blk) * s;
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
  else if (WTYPE == DT_F16) acc = dot_f16(wrow);
  else if (WTYPE == DT_Q8_0) acc = dot_q8_0(wrow);
  else acc = dot_q4_0(wrow);
  acc = wg_sum4(acc);
  if (gl_LocalInvocationID.x == 0u) {
    for (uint k = 0u; k < NX && r0 + k < p.n_rows; ++k) os[p.out_off + (r0 + k) * p.out_stride + o] = lane(acc, k);
  }
}
