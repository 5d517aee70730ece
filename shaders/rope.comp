// rope: in place on x [n_rows, row_stride]: for each row r, head h and pair i < head_dim / 2,
// (x[2i], x[2i+1]) of the head is rotated by angle pos[r] * freqs[i], freqs[i] = theta^(-2i/head_dim).
// With has_factors (the rope_freqs op: Llama 3's rope_freqs.weight, or any per-pair divisors)
// freqs[i] is divided by factors[i] first, as the reference does.
// The host computes freqs (bit-identical to the reference's powf) and the shader reduces the
// angle modulo 2*pi itself, because GPU sin/cos lose accuracy for the large angles of long contexts.
// Bindings: 0 x (float, x_off + r * row_stride + h * 2 * half_dim + 2i), 1 pos (int, pos_off + r),
//           2 freqs (float, freq_off + i), 3 factors (float, factor_off + i; unused without has_factors).
// Specialization: 0 = workgroup size.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;

layout(binding = 0) buffer X { float xs[]; };
layout(binding = 1) readonly buffer Pos { int pos[]; };
layout(binding = 2) readonly buffer Freqs { float freqs[]; };
layout(binding = 3) readonly buffer Factors { float factors[]; };

layout(push_constant) uniform Params {
  uint x_off;
  uint pos_off;
  uint freq_off;
  uint factor_off;
  uint n_rows;
  uint row_stride;
  uint n_heads;
  uint half_dim;
  uint has_factors;
} p;

#include "common.glsl"

// a mod 2*pi by Cody-Waite: 2*pi = C1 + C2 + C3 with C1, C2 short enough (8 significant bits)
// that k * C1 and k * C2 are exact for k < 2^16, i.e. angles up to ~400k radians.
float reduce_angle(float a) {
  precise float k = round(a * 0.15915494309189535);
  precise float r = a - k * 6.28125;
  r = r - k * 0.00193023681640625;
  r = r - k * 5.0703633860e-06;
  return r;
}

// a / b rounded as the reference's IEEE division. Vulkan allows OpFDiv 2.5 ulp and does not
// promise that fma() is fused, but it does round +, -, * correctly: the quotient gets one
// correction from the exact residual a - q*b, with q*b split exactly into p + e (Dekker's product
// on 12-bit halves; `precise` keeps every step unfused and in order).
float div_rounded(float a, float b) {
  const float q = a / b;
  precise float cq = 4097.0 * q, qh = cq - (cq - q), ql = q - qh;
  precise float cb = 4097.0 * b, bh = cb - (cb - b), bl = b - bh;
  precise float prod = q * b;
  precise float err = ((qh * bh - prod) + qh * bl + ql * bh) + ql * bl;
  precise float r = (a - prod) - err;
  precise float res = q + r / b;
  return res;
}

void main() {
  const uint idx = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint per_row = p.n_heads * p.half_dim;
  if (idx >= p.n_rows * per_row) return;
  const uint r = idx / per_row;
  const uint rem = idx - r * per_row;
  const uint h = rem / p.half_dim;
  const uint i = rem - h * p.half_dim;
  float freq = freqs[p.freq_off + i];
  if (p.has_factors != 0u) freq = div_rounded(freq, factors[p.factor_off + i]);
  const float a = reduce_angle(float(pos[p.pos_off + r]) * freq);
  const float c = cos(a), s = sin(a);
  const uint base = p.x_off + r * p.row_stride + h * 2u * p.half_dim + 2u * i;
  const float v0 = xs[base], v1 = xs[base + 1u];
  xs[base] = v0 * c - v1 * s;
  xs[base + 1u] = v0 * s + v1 * c;
}
