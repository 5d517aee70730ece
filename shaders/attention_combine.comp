// attention_combine: merges paged_attention's split-K partials. Workgroup (row, head) reads the
// n_splits partials (max m_i, sum l_i, unnormalized acc_i[head_dim]) of that row and head and
// writes out[d] = sum_i exp(m_i - M) acc_i[d] / sum_i exp(m_i - M) l_i, M = max over non-empty
// splits. A row whose every split is empty (a row of no sequence) is left untouched, as the
// unsplit kernel leaves it.
// Bindings: 0 parts (float; ((row * n_heads + h) * n_splits + i) * (head_dim + 2)), 1 out (float;
// out_off + row * out_stride + h * head_dim).
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 64) in;

layout(binding = 0) readonly buffer Parts { float parts[]; };
layout(binding = 1) writeonly buffer Out { float os[]; };

layout(push_constant) uniform Params {
  uint out_off;
  uint n_tokens;
  uint n_heads;
  uint head_dim;
  uint n_splits;
  uint out_stride;
} p;

#include "common.glsl"

#define NEG_INF uintBitsToFloat(0xff800000u)

void main() {
  const uint g = group_index();
  const uint h = g % p.n_heads;
  const uint row = g / p.n_heads;
  if (row >= p.n_tokens) return;
  const uint stride = p.head_dim + 2u;
  const uint base = (row * p.n_heads + h) * p.n_splits * stride;
  float M = NEG_INF;
  for (uint i = 0u; i < p.n_splits; ++i)
    if (parts[base + i * stride + 1u] > 0.0) M = max(M, parts[base + i * stride]);
  float L = 0.0;
  for (uint i = 0u; i < p.n_splits; ++i) {
    const float l = parts[base + i * stride + 1u];
    if (l > 0.0) L += exp(parts[base + i * stride] - M) * l;
  }
  if (!(L > 0.0)) return;
  const uint ob = p.out_off + row * p.out_stride + h * p.head_dim;
  for (uint d = gl_LocalInvocationID.x; d < p.head_dim; d += 64u) {
    float a = 0.0;
    for (uint i = 0u; i < p.n_splits; ++i) {
      const float l = parts[base + i * stride + 1u];
      if (l > 0.0) a += exp(parts[base + i * stride] - M) * parts[base + i * stride + 2u + d];
    }
    os[ob + d] = a / L;
  }
}
