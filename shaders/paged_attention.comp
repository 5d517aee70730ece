// paged_attention: causal attention of one query row and one head per workgroup over the row's
// sequence's paged K/V; decode rows and prefill chunks of many sequences share one dispatch.
// Row `row` belongs to sequence s with q_start <= row < q_start + q_len; it sits at position
// pos = ctx_len - q_len + (row - q_start) and attends to positions 0..pos, whose slots are
// block_tables[bt_offset + t / block_size] * block_size + t % block_size. Nothing at or past
// position pos + 1 (so nothing past ctx_len) is ever read. GQA: head h reads kv head
// h / (n_heads / n_kv_heads).
// Keys are visited in tiles of the workgroup size: each invocation scores one key, the tile's
// softmax is merged into a running (max, sum, acc) (online softmax), then each invocation
// accumulates the weighted V for its own output dimensions d = lid + WG * j (head_dim <= 4 * WG).
// Split-K (n_splits > 1, when rows x heads alone cannot fill the device): workgroup
// (row, head, split) covers positions [split * split_len, +split_len) (the last split runs to pos)
// and writes its unnormalized (max, sum, acc[head_dim]) to `parts`; attention_combine.comp merges
// the splits. An empty split writes (-inf, 0).
// Bindings: 0 q (float; q_off + row * q_stride + h * head_dim), 1 k_cache, 2 v_cache (uint
// words from kc_off / vc_off; slot rows of n_kv_heads * head_dim elements, F32 or F16),
// 3 seqs (int; seq_off + 4 * s = q_start, q_len, ctx_len, bt_offset), 4 block_tables (int; bt_off),
// 5 out (float; out_off + row * out_stride + h * head_dim), 6 parts (float; ((row * n_heads + h) *
// n_splits + split) * (head_dim + 2); bound to a dummy when n_splits == 1).
// Specialization: 1 = KV DType (F32 or F16). Workgroup size fixed at 64.
//! variant nosg NO_SUBGROUP
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#define WG 64u
#define MAX_PER_THREAD 4u
layout(local_size_x = 64) in;
layout(constant_id = 1) const uint KVTYPE = 0u;

layout(binding = 0) readonly buffer Q { float qs[]; };
layout(binding = 1) readonly buffer KC { uint kc[]; };
layout(binding = 2) readonly buffer VC { uint vc[]; };
layout(binding = 3) readonly buffer Seqs { int seqs[]; };
layout(binding = 4) readonly buffer BT { int bt[]; };
layout(binding = 5) writeonly buffer Out { float os[]; };
layout(binding = 6) writeonly buffer Parts { float parts[]; };

layout(push_constant) uniform Params {
  uint q_off;
  uint kc_off;
  uint vc_off;
  uint seq_off;
  uint bt_off;
  uint out_off;
  uint n_tokens;
  uint n_seqs;
  uint n_heads;
  uint n_kv_heads;
  uint head_dim;
  uint block_size;
  uint q_stride;
  uint out_stride;
  float scale;
  uint n_splits;
  uint split_len;
} p;

shared float red[WG];
shared float q_sh[WG * MAX_PER_THREAD];
shared float prob_sh[WG];
shared uint slot_sh[WG];

#include "common.glsl"
#include "reduce.glsl"

#define NEG_INF uintBitsToFloat(0xff800000u)

// Element d of kv head kvh in `slot` (F32 words, or F16 halves two per word).
float v_at(uint slot, uint kvh, uint d) {
  const uint e = (slot * p.n_kv_heads + kvh) * p.head_dim + d;
  if (KVTYPE == DT_F16) return unpackHalf2x16(vc[p.vc_off + (e >> 1)])[e & 1u];
  return uintBitsToFloat(vc[p.vc_off + e]);
}

float score(uint slot, uint kvh) {
  float dot_ = 0.0;
  if (KVTYPE == DT_F16) {
    const uint w0 = p.kc_off + ((slot * p.n_kv_heads + kvh) * p.head_dim >> 1);
    for (uint d = 0u; d < p.head_dim; d += 2u) {
      const vec2 k2 = unpackHalf2x16(kc[w0 + (d >> 1)]);
      dot_ += q_sh[d] * k2.x + q_sh[d + 1u] * k2.y;
    }
  } else {
    const uint e0 = p.kc_off + (slot * p.n_kv_heads + kvh) * p.head_dim;
    for (uint d = 0u; d < p.head_dim; ++d) dot_ += q_sh[d] * uintBitsToFloat(kc[e0 + d]);
  }
  return dot_ * p.scale;
}

// An empty partial: contributes nothing to the merge.
void empty_part(uint pb) {
  if (gl_LocalInvocationID.x == 0u) {
    parts[pb] = NEG_INF;
    parts[pb + 1u] = 0.0;
  }
}

void main() {
  const uint g = group_index();
  const uint split = g % p.n_splits;
  const uint h = (g / p.n_splits) % p.n_heads;
  const uint row = g / p.n_splits / p.n_heads;
  if (row >= p.n_tokens) return;
  const bool partial = p.n_splits > 1u;
  const uint pb = ((row * p.n_heads + h) * p.n_splits + split) * (p.head_dim + 2u);
  int s = -1;
  for (uint i = 0u; i < p.n_seqs; ++i) {
    const int q0 = seqs[p.seq_off + 4u * i], ql = seqs[p.seq_off + 4u * i + 1u];
    if (int(row) >= q0 && int(row) < q0 + ql) s = int(i);
  }
  if (s < 0) {  // a row of no sequence: nothing to attend
    if (partial) empty_part(pb);
    return;
  }
  const uint sb = p.seq_off + 4u * uint(s);
  const uint pos = uint(seqs[sb + 2u] - seqs[sb + 1u]) + (row - uint(seqs[sb]));
  const uint bt0 = p.bt_off + uint(seqs[sb + 3u]);
  const uint kvh = h / (p.n_heads / p.n_kv_heads);
  const uint lid = gl_LocalInvocationID.x;
  // Positions [t_begin, t_end) of this workgroup; the last split runs to pos whatever split_len.
  const uint t_begin = partial ? split * p.split_len : 0u;
  const uint t_end = (partial && split + 1u < p.n_splits) ? min(t_begin + p.split_len, pos + 1u) : pos + 1u;
  if (t_begin >= t_end) {
    empty_part(pb);
    return;
  }

  for (uint d = lid; d < p.head_dim; d += WG) q_sh[d] = qs[p.q_off + row * p.q_stride + h * p.head_dim + d];
  barrier();

  float m = NEG_INF, l = 0.0;
  float acc[MAX_PER_THREAD] = float[](0.0, 0.0, 0.0, 0.0);
  for (uint t0 = t_begin; t0 < t_end; t0 += WG) {
    const uint t = t0 + lid;
    float sc = NEG_INF;
    if (t < t_end) {
      const uint slot = uint(bt[bt0 + t / p.block_size]) * p.block_size + t % p.block_size;
      slot_sh[lid] = slot;
      sc = score(slot, kvh);
    }
    const float m_new = max(m, wg_max(sc));
    // exp(-inf) is not required to be exactly 0 on every device, so the first tile is explicit.
    const float alpha = t0 == t_begin ? 0.0 : exp(m - m_new);
    const float pr = t < t_end ? exp(sc - m_new) : 0.0;
    prob_sh[lid] = pr;
    l = l * alpha + wg_sum(pr);  // wg_sum's barriers also publish prob_sh / slot_sh
    const uint n_valid = min(WG, t_end - t0);
    for (uint j = 0u; j < MAX_PER_THREAD; ++j) {
      const uint d = lid + WG * j;
      if (d >= p.head_dim) break;
      float a = acc[j] * alpha;
      for (uint u = 0u; u < n_valid; ++u) a += prob_sh[u] * v_at(slot_sh[u], kvh, d);
      acc[j] = a;
    }
    m = m_new;
    barrier();  // the next tile overwrites prob_sh / slot_sh
  }
  if (partial) {
    if (lid == 0u) {
      parts[pb] = m;
      parts[pb + 1u] = l;
    }
    for (uint j = 0u; j < MAX_PER_THREAD; ++j) {
      const uint d = lid + WG * j;
      if (d < p.head_dim) parts[pb + 2u + d] = acc[j];
    }
    return;
  }
  const uint ob = p.out_off + row * p.out_stride + h * p.head_dim;
  for (uint j = 0u; j < MAX_PER_THREAD; ++j) {
    const uint d = lid + WG * j;
    if (d < p.head_dim) os[ob + d] = acc[j] / l;
  }
}
