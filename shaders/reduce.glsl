// Workgroup reductions over one float per invocation. Requires, before inclusion:
//   shared float red[gl_WorkGroupSize.x];  and a power-of-two workgroup size.
// With subgroup arithmetic each subgroup reduces in registers and only one value per subgroup
// goes through shared memory; the NO_SUBGROUP variant is a plain shared-memory tree for devices
// without subgroup arithmetic. Every call must be in workgroup-uniform control flow.
#ifndef PAGODA_REDUCE_GLSL
#define PAGODA_REDUCE_GLSL

float wg_sum(float v) {
  const uint lid = gl_LocalInvocationID.x;
#ifdef NO_SUBGROUP
  barrier();  // earlier readers of red[] are done
  red[lid] = v;
  barrier();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1u) {
    if (lid < s) red[lid] += red[lid + s];
    barrier();
  }
  return red[0];
#else
  v = subgroupAdd(v);
  barrier();
  if (subgroupElect()) red[gl_SubgroupID] = v;
  barrier();
  float r = 0.0;
  for (uint i = 0u; i < gl_NumSubgroups; ++i) r += red[i];
  return r;
#endif
}

float wg_max(float v) {
  const uint lid = gl_LocalInvocationID.x;
#ifdef NO_SUBGROUP
  barrier();
  red[lid] = v;
  barrier();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1u) {
    if (lid < s) red[lid] = max(red[lid], red[lid + s]);
    barrier();
  }
  return red[0];
#else
  v = subgroupMax(v);
  barrier();
  if (subgroupElect()) red[gl_SubgroupID] = v;
  barrier();
  float r = red[0];
  for (uint i = 1u; i < gl_NumSubgroups; ++i) r = max(r, red[i]);
  return r;
#endif
}

#endif
