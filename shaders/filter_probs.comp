// filter_probs: top-k, top-p and min-p in place on probability rows (Backend::filter_probs), one
// workgroup per row. No sort: each filter narrows a "domain", the candidate-order prefix
//   key > dom_t, or key == dom_t and index <= dom_i
// (key: the logit as an order-preserving uint, ref::candidate_key), by bisection over the key:
// the boundary key, whose domain elements with key >= it reach the filter's need (a count for
// top-k, probability mass for top-p), takes at most 32 passes over the row, each a workgroup sum,
// and stops early once the bracket holds only the boundary element (usually well before); ties at
// the boundary key are then cut by bisection over the index. Counts are exact (floats below
// 2^24); every sum is in a fixed order, so a row filters the same way every run.
// Bindings: 0 logits (float, l_off + r * cols), 1 probs (float, p_off + r * cols, in place),
// 2 params (int, q_off + 3 * r: top_k, top_p bits, min_p bits).
// Specialization: 0 = workgroup size (power of two).
//! variant nosg NO_SUBGROUP
#version 450
#extension GL_GOOGLE_include_directive : require
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;

layout(binding = 0) readonly buffer Logits { float ls[]; };
layout(binding = 1) buffer Probs { float ps[]; };
layout(binding = 2) readonly buffer FParams { int qs[]; };

layout(push_constant) uniform Params {
  uint l_off;
  uint p_off;
  uint q_off;
  uint n_rows;
  uint cols;
} p;

shared float red[gl_WorkGroupSize.x];
shared vec2 red2[gl_WorkGroupSize.x];

#include "common.glsl"
#include "reduce.glsl"

// wg_sum on two values at once (one barrier pair instead of two).
vec2 wg_sum2(vec2 v) {
  const uint lid = gl_LocalInvocationID.x;
#ifdef NO_SUBGROUP
  barrier();
  red2[lid] = v;
  barrier();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1u) {
    if (lid < s) red2[lid] += red2[lid + s];
    barrier();
  }
  return red2[0];
#else
  v = subgroupAdd(v);
  barrier();
  if (subgroupElect()) red2[gl_SubgroupID] = v;
  barrier();
  vec2 r = vec2(0.0);
  for (uint i = 0u; i < gl_NumSubgroups; ++i) r += red2[i];
  return r;
#endif
}

uint g_l, g_p;

uint ckey(float x) {
  if (isnan(x)) return 0u;
  const uint b = x == 0.0 ? 0u : floatBitsToUint(x);
  return (b & 0x80000000u) != 0u ? ~b : (b | 0x80000000u);
}

// The domain: key > dt, or key == dt and index <= di (-1: none at dt). It is passed around rather
// than kept in globals (lavapipe miscompiled the global version).
bool in_domain(uint k, uint i, uint dt, int di) { return k > dt || (k == dt && int(i) <= di); }

// (count, probability) of the domain's elements with key >= t, or (tie) with key == t and
// index <= idx: one pass over the row.
vec2 measure(uint t, bool tie, uint idx, uint dt, int di) {
  float c = 0.0, m = 0.0;
  for (uint i = gl_LocalInvocationID.x; i < p.cols; i += gl_WorkGroupSize.x) {
    const uint k = ckey(ls[g_l + i]);
    if ((tie ? (k == t && i <= idx) : k >= t) && in_domain(k, i, dt, di)) {
      c += 1.0;
      m += ps[g_p + i];
    }
  }
  return wg_sum2(vec2(c, m));
}

// Narrows the domain to its shortest candidate prefix whose measure (count, or probability when
// `mass`) reaches `need`; unchanged when the whole domain falls short of it.
void cut(float need, bool mass, inout uint dom_t, inout int dom_i) {
  const vec2 whole = measure(0u, false, 0u, dom_t, dom_i);
  // Bisection over the key: measure(key >= lo) reaches need, measure(key > hi) does not. No early
  // return anywhere: every invocation runs the same barriers in the same loops.
  uint lo = 0u, hi = 0xffffffffu;
  float c_lo = whole.x, c_hi = 0.0, m_hi = 0.0;  // count of keys >= lo; count and mass of keys > hi
  const bool reachable = (mass ? whole.y : whole.x) >= need;
  // bracketed: [lo, hi] holds only the boundary element, or exactly what top-k needs.
  bool bracketed = !reachable || c_lo - c_hi <= 1.0 || (!mass && c_lo == need);
  while (lo < hi && !bracketed) {
    const uint mid = lo + ((hi - lo) >> 1) + ((hi - lo) & 1u);
    const vec2 m = measure(mid, false, 0u, dom_t, dom_i);
    if ((mass ? m.y : m.x) >= need) {
      lo = mid;
      c_lo = m.x;
    } else {
      hi = mid - 1u;
      c_hi = m.x;
      m_hi = m.y;
    }
    bracketed = c_lo - c_hi <= 1.0 || (!mass && c_lo == need);
  }
  if (!reachable) {
    // the whole domain falls short of `need`: it stays as it is
  } else if (bracketed) {
    if (lo > dom_t) {  // keep key >= lo
      dom_t = lo - 1u;
      dom_i = -1;
    }
  } else if (c_lo - c_hi > 1.0) {
    // lo is the boundary's key. Among the domain's elements with that key, keep the fewest (in
    // index order) that still reach `need`.
    const float above = mass ? m_hi : c_hi;
    uint ilo = 0u, ihi = p.cols - 1u;
    while (ilo < ihi) {
      const uint mid = (ilo + ihi) >> 1;
      const vec2 m = measure(lo, true, mid, dom_t, dom_i);
      if (above + (mass ? m.y : m.x) >= need) ihi = mid;
      else ilo = mid + 1u;
    }
    dom_t = lo;
    dom_i = int(ilo);
  } else if (lo != dom_t) {
    dom_t = lo;
    dom_i = 0x7fffffff;
  }
}

void main() {
  const uint row = group_index();
  if (row >= p.n_rows) return;
  const uint lid = gl_LocalInvocationID.x, wg = gl_WorkGroupSize.x;
  g_l = p.l_off + row * p.cols;
  g_p = p.p_off + row * p.cols;
  const int top_k = qs[p.q_off + 3u * row];
  const float top_p = intBitsToFloat(qs[p.q_off + 3u * row + 1u]);
  const float min_p = intBitsToFloat(qs[p.q_off + 3u * row + 2u]);
  const bool k_on = top_k > 0 && uint(top_k) < p.cols;
  if (!k_on && !(top_p < 1.0) && !(min_p > 0.0)) return;
  uint dom_t = 0u;
  int dom_i = 0x7fffffff;  // the whole row
  if (k_on) cut(float(top_k), false, dom_t, dom_i);
  if (top_p < 1.0) cut(top_p * measure(0u, false, 0u, dom_t, dom_i).y, true, dom_t, dom_i);
  float mx = 0.0;
  for (uint i = lid; i < p.cols; i += wg) mx = max(mx, ps[g_p + i]);
  mx = wg_max(mx);
  const float thr = min_p > 0.0 ? min_p * mx : 0.0;
  float sum = 0.0;
  for (uint i = lid; i < p.cols; i += wg) {
    const float v = ps[g_p + i];
    if (in_domain(ckey(ls[g_l + i]), i, dom_t, dom_i) && v >= thr) sum += v;
  }
  sum = wg_sum(sum);
  if (!(sum > 0.0)) return;
  for (uint i = lid; i < p.cols; i += wg) {
    const float v = ps[g_p + i];
    ps[g_p + i] = in_domain(ckey(ls[g_l + i]), i, dom_t, dom_i) && v >= thr ? v / sum : 0.0;
  }
}
