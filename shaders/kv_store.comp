// kv_store: k_cache[slots[r], :] = k[r, :] and v_cache[slots[r], :] = v[r, :] for r < n_rows with
// slots[r] >= 0 (negative slots are padding and store nothing).
// F32 caches: one invocation per element. F16 caches: one invocation per element pair, written as
// one word of two halves rounded to nearest even (kv_cols is even, cache rows are word-aligned).
// Bindings: 0 k, 1 v (float, *_off + r * kv_cols + c), 2 k_cache, 3 v_cache (uint words from
// kc_off / vc_off, rows of kv_cols elements), 4 slots (int, slots_off + r).
// Specialization: 0 = workgroup size, 1 = cache DType (F32 or F16).
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint KVTYPE = 0u;

layout(binding = 0) readonly buffer K { float ks[]; };
layout(binding = 1) readonly buffer V { float vs[]; };
layout(binding = 2) writeonly buffer KC { uint kc[]; };
layout(binding = 3) writeonly buffer VC { uint vc[]; };
layout(binding = 4) readonly buffer Slots { int slots[]; };

layout(push_constant) uniform Params {
  uint k_off;
  uint v_off;
  uint kc_off;
  uint vc_off;
  uint slots_off;
  uint n_rows;
  uint kv_cols;
} p;

#include "common.glsl"

void main() {
  const uint idx = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint per_row = KVTYPE == DT_F16 ? p.kv_cols / 2u : p.kv_cols;
  if (idx >= p.n_rows * per_row) return;
  const uint r = idx / per_row;
  const uint j = idx - r * per_row;
  const int slot = slots[p.slots_off + r];
  if (slot < 0) return;
  const uint dst = uint(slot) * per_row + j;
  if (KVTYPE == DT_F16) {
    const uint src = r * p.kv_cols + 2u * j;
    kc[p.kc_off + dst] = f32_to_f16(ks[p.k_off + src]) | (f32_to_f16(ks[p.k_off + src + 1u]) << 16);
    vc[p.vc_off + dst] = f32_to_f16(vs[p.v_off + src]) | (f32_to_f16(vs[p.v_off + src + 1u]) << 16);
  } else {
    const uint src = r * p.kv_cols + j;
    kc[p.kc_off + dst] = floatBitsToUint(ks[p.k_off + src]);
    vc[p.vc_off + dst] = floatBitsToUint(vs[p.v_off + src]);
  }
}
