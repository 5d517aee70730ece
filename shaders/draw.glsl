// Workgroup inverse-CDF draw, the GPU form of the reference's draw(): over weights
// draw_weight(0 .. n-1) returns the smallest i with (sum of the positive weights up to i) >
// u * (sum of all weights), skipping non-positive weights; if rounding leaves no such i, the last
// positive index (0 if there is none). Each invocation owns one contiguous chunk; an exclusive
// scan of the chunk sums gives every chunk its starting prefix, and the first chunk whose running
// sum crosses the target wins. Requires, before inclusion: `float draw_weight(uint i)`, reduce.glsl
// (its `red` array), shared float draw_pre[gl_WorkGroupSize.x], shared uint draw_found,
// shared int draw_last; workgroup-uniform control flow.
#ifndef PAGODA_DRAW_GLSL
#define PAGODA_DRAW_GLSL

int wg_draw(uint n, float u) {
  const uint lid = gl_LocalInvocationID.x, wg = gl_WorkGroupSize.x;
  const uint chunk = (n + wg - 1u) / wg;
  const uint lo = min(n, lid * chunk), hi = min(n, lo + chunk);
  float positive = 0.0, all_ = 0.0;
  int last = -1;
  for (uint i = lo; i < hi; ++i) {
    const float w = draw_weight(i);
    all_ += w;
    if (w > 0.0) { positive += w; last = int(i); }
  }
  const float total = wg_sum(all_);
  draw_pre[lid] = positive;
  if (lid == 0u) { draw_found = 0xffffffffu; draw_last = -1; }
  barrier();
  if (lid == 0u) {  // exclusive scan; wg is small, a serial pass is cheaper than a tree here
    float run = 0.0;
    for (uint k = 0u; k < wg; ++k) { const float c = draw_pre[k]; draw_pre[k] = run; run += c; }
  }
  barrier();
  const float target = u * total;
  float acc = draw_pre[lid];
  for (uint i = lo; i < hi; ++i) {
    const float w = draw_weight(i);
    if (w <= 0.0) continue;
    acc += w;
    if (acc > target) { atomicMin(draw_found, i); break; }
  }
  if (last >= 0) atomicMax(draw_last, last);
  barrier();
  const int r = draw_found != 0xffffffffu ? int(draw_found) : max(draw_last, 0);
  barrier();  // everyone has read the result before a later call resets it
  return r;
}

#endif
