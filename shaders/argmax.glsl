// Workgroup argmax over argmax_value(0 .. n-1), the first index on ties. Requires, before
// inclusion: `float argmax_value(uint i)`, shared float am_v[gl_WorkGroupSize.x] and shared uint
// am_i[gl_WorkGroupSize.x], a power-of-two workgroup size, workgroup-uniform control flow.
#ifndef PAGODA_ARGMAX_GLSL
#define PAGODA_ARGMAX_GLSL

const uint AM_NONE = 0xffffffffu;

// Whether candidate (v, i) beats the current best (bv, bi).
bool am_better(float v, uint i, float bv, uint bi) {
  return i != AM_NONE && (bi == AM_NONE || v > bv || (v == bv && i < bi));
}

uint wg_argmax(uint n) {
  const uint lid = gl_LocalInvocationID.x;
  float bv = 0.0;
  uint bi = AM_NONE;
  // Ascending scan with a strict '>' keeps each invocation's first maximum.
  for (uint i = lid; i < n; i += gl_WorkGroupSize.x) {
    const float v = argmax_value(i);
    if (bi == AM_NONE || v > bv) { bv = v; bi = i; }
  }
  barrier();  // earlier readers of am_v / am_i are done
  am_v[lid] = bv;
  am_i[lid] = bi;
  barrier();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1u) {
    if (lid < s && am_better(am_v[lid + s], am_i[lid + s], am_v[lid], am_i[lid])) {
      am_v[lid] = am_v[lid + s];
      am_i[lid] = am_i[lid + s];
    }
    barrier();
  }
  return am_i[0];
}

#endif
