// paged_attention: causal attention over each row's sequence's paged K/V; decode rows and prefill
// chunks of many sequences share one dispatch. Row `row` belongs to sequence s with
// q_start <= row < q_start + q_len; it sits at position pos = ctx_len - q_len + (row - q_start)
// and attends to positions 0..pos, whose slots are
// block_tables[bt_offset + t / block_size] * block_size + t % block_size. Nothing at or past
// position pos + 1 (so nothing past ctx_len) is ever read. GQA: head h reads kv head
// h / (n_heads / n_kv_heads). window > 0 (sliding window): only positions pos - window + 1..pos
// are visited. softcap > 0: each scaled score s becomes softcap * tanh(s / softcap).
// One workgroup serves up to HGN (specialization constant, 1..4) query heads of one KV head (a
// chunk of its group), so each K and V element it reads feeds all of them: GQA models read their
// cache once per chunk instead of once per query head. Per-head values travel as vec4 components;
// the hot loops touch only the first HGN, so an MHA model (HGN = 1) does no wasted arithmetic.
// Keys are visited in tiles of the workgroup size: each invocation scores one key for the chunk's
// heads, the tile's softmax is merged into a running (max, sum, acc) per head (online softmax),
// then each invocation accumulates the weighted V for its own output dimensions
// d = lid + WG * j (head_dim <= 4 * WG).
// Split-K (n_splits > 1, when there are too few workgroups to fill the device): workgroup
// (row, kv head, chunk, split) covers positions [split * split_len, +split_len) (the last split
// runs to pos) and writes each head's unnormalized (max, sum, acc[head_dim]) to `parts`;
// attention_combine.comp merges the splits. An empty split writes (-inf, 0).
// Bindings: 0 q (float; q_off + row * q_stride + h * head_dim), 1 k_cache, 2 v_cache (uint
// words from kc_off / vc_off; slot rows of n_kv_heads * head_dim elements, F32 or F16),
// 3 seqs (int; seq_off + 4 * s = q_start, q_len, ctx_len, bt_offset), 4 block_tables (int; bt_off),
// 5 out (float; out_off + row * out_stride + h * head_dim), 6 parts (float; ((row * n_heads + h) *
// n_splits + split) * (head_dim + 2); bound to a dummy when n_splits == 1).
// Specialization: 1 = KV DType (F32 or F16), 2 = HGN. Workgroup size fixed at 64.
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
layout(constant_id = 2) const uint HGN = 4u;

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
  uint window;
  float softcap;
} p;

shared vec4 red4[WG];
shared vec4 q4[WG * MAX_PER_THREAD];  // q4[d][i]: element d of the chunk's head i (0 past the chunk)
shared vec4 prob_sh[WG];
shared uint slot_sh[WG];

#include "common.glsl"

#define NEG_INF uintBitsToFloat(0xff800000u)

// Workgroup reductions of one vec4 per invocation (component-wise); uniform control flow only.
vec4 wg_sum4(vec4 v) {
  const uint lid = gl_LocalInvocationID.x;
#ifdef NO_SUBGROUP
  barrier();
  red4[lid] = v;
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) red4[lid] += red4[lid + s];
    barrier();
  }
  return red4[0];
#else
  v = subgroupAdd(v);
  barrier();
  if (subgroupElect()) red4[gl_SubgroupID] = v;
  barrier();
  vec4 r = vec4(0.0);
  for (uint i = 0u; i < gl_NumSubgroups; ++i) r += red4[i];
  return r;
#endif
}

vec4 wg_max4(vec4 v) {
  const uint lid = gl_LocalInvocationID.x;
#ifdef NO_SUBGROUP
  barrier();
  red4[lid] = v;
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) red4[lid] = max(red4[lid], red4[lid + s]);
    barrier();
  }
  return red4[0];
#else
  v = subgroupMax(v);
  barrier();
  if (subgroupElect()) red4[gl_SubgroupID] = v;
  barrier();
  vec4 r = red4[0];
  for (uint i = 1u; i < gl_NumSubgroups; ++i) r = max(r, red4[i]);
  return r;
#endif
}

// Element d of kv head kvh in `slot` (F32 words, or F16 halves two per word).
float v_at(uint slot, uint kvh, uint d) {
  const uint e = (slot * p.n_kv_heads + kvh) * p.head_dim + d;
  if (KVTYPE == DT_F16) return unpackHalf2x16(vc[p.vc_off + (e >> 1)])[e & 1u];
  return uintBitsToFloat(vc[p.vc_off + e]);
}

// The chunk's scores for the key in `slot`: one pass over the K row feeds all four heads.
vec4 score4(uint slot, uint kvh) {
  vec4 dot_ = vec4(0.0);
  if (KVTYPE == DT_F16) {
    const uint w0 = p.kc_off + ((slot * p.n_kv_heads + kvh) * p.head_dim >> 1);
    for (uint d = 0u; d < p.head_dim; d += 2u) {
      const vec2 k2 = unpackHalf2x16(kc[w0 + (d >> 1)]);
      if (HGN == 4u) dot_ += q4[d] * k2.x + q4[d + 1u] * k2.y;  // whole-vector form compiles better
      else for (uint i = 0u; i < HGN; ++i) dot_[i] += q4[d][i] * k2.x + q4[d + 1u][i] * k2.y;
    }
  } else {
    const uint e0 = p.kc_off + (slot * p.n_kv_heads + kvh) * p.head_dim;
    for (uint d = 0u; d < p.head_dim; ++d) {
      const float k = uintBitsToFloat(kc[e0 + d]);
      if (HGN == 4u) dot_ += q4[d] * k;
      else for (uint i = 0u; i < HGN; ++i) dot_[i] += q4[d][i] * k;
    }
  }
  const vec4 sc = dot_ * p.scale;
  if (p.softcap <= 0.0) return sc;
  // cap * tanh(s / cap), with tanh(u) = 1 - 2 / (exp(2u) + 1), finite for every u.
  const vec4 u = clamp(sc / p.softcap, -30.0, 30.0);
  return p.softcap * (1.0 - 2.0 / (exp(2.0 * u) + 1.0));
}

// Marks head h's partial of this split empty: it contributes nothing to the merge.
void empty_part(uint row, uint h, uint split) {
  const uint pb = ((row * p.n_heads + h) * p.n_splits + split) * (p.head_dim + 2u);
  parts[pb] = NEG_INF;
  parts[pb + 1u] = 0.0;
}

void main() {
  const uint group = p.n_heads / p.n_kv_heads;
  const uint n_chunks = (group + HGN - 1u) / HGN;
  uint g = group_index();
  const uint split = g % p.n_splits;
  g /= p.n_splits;
  const uint chunk = g % n_chunks;
  g /= n_chunks;
  const uint kvh = g % p.n_kv_heads;
  const uint row = g / p.n_kv_heads;
  if (row >= p.n_tokens) return;
  const uint h0 = kvh * group + chunk * HGN, nh = min(HGN, group - chunk * HGN);
  const bool partial = p.n_splits > 1u;
  const uint lid = gl_LocalInvocationID.x;
  int s = -1;
  for (uint i = 0u; i < p.n_seqs; ++i) {
    const int q0 = seqs[p.seq_off + 4u * i], ql = seqs[p.seq_off + 4u * i + 1u];
    if (int(row) >= q0 && int(row) < q0 + ql) s = int(i);
  }
  if (s < 0) {  // a row of no sequence: nothing to attend
    if (partial && lid < nh) empty_part(row, h0 + lid, split);
    return;
  }
  const uint sb = p.seq_off + 4u * uint(s);
  const uint pos = uint(seqs[sb + 2u] - seqs[sb + 1u]) + (row - uint(seqs[sb]));
  const uint bt0 = p.bt_off + uint(seqs[sb + 3u]);
  // Positions [t_begin, t_end) of this workgroup; the last split runs to pos whatever split_len.
  const uint split_begin = partial ? split * p.split_len : 0u;
  const uint t_end = (partial && split + 1u < p.n_splits) ? min(split_begin + p.split_len, pos + 1u) : pos + 1u;
  // A sliding window starts the visit at pos - window + 1 (splits before it come out empty).
  const uint lo = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
  const uint t_begin = max(split_begin, lo);
  if (t_begin >= t_end) {
    if (lid < nh) empty_part(row, h0 + lid, split);
    return;
  }

  for (uint d = lid; d < p.head_dim; d += WG) {
    vec4 qv = vec4(0.0);
    for (uint i = 0u; i < nh; ++i) qv[i] = qs[p.q_off + row * p.q_stride + (h0 + i) * p.head_dim + d];
    q4[d] = qv;
  }
  barrier();

  vec4 m = vec4(NEG_INF), l = vec4(0.0);
  vec4 acc[MAX_PER_THREAD] = vec4[](vec4(0.0), vec4(0.0), vec4(0.0), vec4(0.0));
  for (uint t0 = t_begin; t0 < t_end; t0 += WG) {
    const uint t = t0 + lid;
    vec4 sc = vec4(NEG_INF);
    if (t < t_end) {
      const uint slot = uint(bt[bt0 + t / p.block_size]) * p.block_size + t % p.block_size;
      slot_sh[lid] = slot;
      sc = score4(slot, kvh);
    }
    const vec4 m_new = max(m, wg_max4(sc));
    // exp(-inf) is not required to be exactly 0 on every device, so the first tile is explicit.
    const vec4 alpha = t0 == t_begin ? vec4(0.0) : exp(m - m_new);
    const vec4 pr = t < t_end ? exp(sc - m_new) : vec4(0.0);
    prob_sh[lid] = pr;
    l = l * alpha + wg_sum4(pr);  // wg_sum4's barriers also publish prob_sh / slot_sh
    const uint n_valid = min(WG, t_end - t0);
    for (uint j = 0u; j < MAX_PER_THREAD; ++j) {
      const uint d = lid + WG * j;
      if (d >= p.head_dim) break;
      vec4 a = acc[j] * alpha;
      for (uint u = 0u; u < n_valid; ++u) {
        const float v = v_at(slot_sh[u], kvh, d);
        if (HGN == 4u) a += prob_sh[u] * v;
        else for (uint i = 0u; i < HGN; ++i) a[i] += prob_sh[u][i] * v;
      }
      acc[j] = a;
    }
    m = m_new;
    barrier();  // the next tile overwrites prob_sh / slot_sh
  }
  for (uint i = 0u; i < nh; ++i) {
    const uint h = h0 + i;
    if (partial) {
      const uint pb = ((row * p.n_heads + h) * p.n_splits + split) * (p.head_dim + 2u);
      if (lid == 0u) {
        parts[pb] = m[i];
        parts[pb + 1u] = l[i];
      }
      for (uint j = 0u; j < MAX_PER_THREAD; ++j) {
        const uint d = lid + WG * j;
        if (d < p.head_dim) parts[pb + 2u + d] = acc[j][i];
      }
    } else {
      const uint ob = p.out_off + row * p.out_stride + h * p.head_dim;
      for (uint j = 0u; j < MAX_PER_THREAD; ++j) {
        const uint d = lid + WG * j;
        if (d < p.head_dim) os[ob + d] = acc[j][i] / l[i];
      }
    }
  }
}
