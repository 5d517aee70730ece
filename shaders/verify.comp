// verify: speculative verification of one sequence per workgroup (see VerifyParams).
// For draft i < k: greedy accepts iff argmax(target[row_start + i]) == token i (else next = that
// argmax); sampling accepts iff u[i] * q[tok] < p[tok] (min(1, p/q) without a division), and on
// the first rejection draws next from normalize(max(0, p - q)) with u[k] (from p if that residual
// has no mass). If all k are accepted, next is the argmax / a draw with u[k] from row_start + k.
// Out: (accepted, next).
// Bindings: 0 target (float rows of vocab, t_off), 1 draft probs (float rows of vocab, d_off),
// 2 draft tokens (int, tok_off + s * tok_stride + i), 3 meta (int, meta_off + 3 * s = row_start,
// draft_row_start, draft_len), 4 uniforms (float, u_off + s * u_stride + i), 5 out (int, out_off + 2 * s).
// Specialization: 0 = workgroup size (power of two).
//! variant nosg NO_SUBGROUP
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer Target { float ts[]; };
layout(binding = 1) readonly buffer Draft { float ds[]; };
layout(binding = 2) readonly buffer Tokens { int toks[]; };
layout(binding = 3) readonly buffer Meta { int meta[]; };
layout(binding = 4) readonly buffer Uniforms { float us[]; };
layout(binding = 5) writeonly buffer Out { int os[]; };

layout(push_constant) uniform Params {
  uint t_off;
  uint d_off;
  uint tok_off;
  uint meta_off;
  uint u_off;
  uint out_off;
  uint n_seqs;
  uint vocab;
  uint tok_stride;
  uint u_stride;
  uint greedy;
} p;

shared float red[gl_WorkGroupSize.x];
shared float draw_pre[gl_WorkGroupSize.x];
shared uint draw_found;
shared int draw_last;
shared float am_v[gl_WorkGroupSize.x];
shared uint am_i[gl_WorkGroupSize.x];

#include "common.glsl"
#include "reduce.glsl"

uint g_trow, g_drow;  // first element of the current target / draft row
bool g_residual;      // draw from max(0, p - q) instead of p

float argmax_value(uint i) { return ts[g_trow + i]; }
float draw_weight(uint i) {
  return g_residual ? max(0.0, ts[g_trow + i] - ds[g_drow + i]) : ts[g_trow + i];
}

#include "argmax.glsl"
#include "draw.glsl"

// Draw after rejecting draft i: from the residual if it has mass, else from p.
int draw_rejected(float u) {
  float mass = 0.0;
  for (uint i = gl_LocalInvocationID.x; i < p.vocab; i += gl_WorkGroupSize.x)
    mass += max(0.0, ts[g_trow + i] - ds[g_drow + i]);
  g_residual = wg_sum(mass) > 0.0;
  return wg_draw(p.vocab, u);
}

void main() {
  const uint s = group_index();
  if (s >= p.n_seqs) return;
  const uint mb = p.meta_off + 3u * s;
  const uint row0 = uint(meta[mb]), drow0 = uint(meta[mb + 1u]), k = uint(meta[mb + 2u]);
  const uint ub = p.u_off + s * p.u_stride;
  uint accepted = 0u;
  int next = -1;
  g_residual = false;
  for (; accepted < k; ++accepted) {
    g_trow = p.t_off + (row0 + accepted) * p.vocab;
    const int tok = toks[p.tok_off + s * p.tok_stride + accepted];
    if (p.greedy != 0u) {
      const int best = int(wg_argmax(p.vocab));
      if (best != tok) { next = best; break; }
      continue;
    }
    g_drow = p.d_off + (drow0 + accepted) * p.vocab;
    if (us[ub + accepted] * ds[g_drow + uint(tok)] < ts[g_trow + uint(tok)]) continue;
    next = draw_rejected(us[ub + k]);
    break;
  }
  if (accepted == k) {  // every draft accepted: a bonus token from the target's next row
    g_trow = p.t_off + (row0 + k) * p.vocab;
    next = p.greedy != 0u ? int(wg_argmax(p.vocab)) : wg_draw(p.vocab, us[ub + k]);
  }
  if (gl_LocalInvocationID.x == 0u) {
    os[p.out_off + 2u * s] = int(accepted);
    os[p.out_off + 2u * s + 1u] = next;
  }
}
