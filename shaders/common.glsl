// Helpers shared by every Pagoda compute shader (included, never compiled alone).
// Grids: the host folds a 1-D group count into (x <= 65535, y) because 65535 is the only
// per-dimension size Vulkan guarantees; group_index() undoes the fold.
#ifndef PAGODA_COMMON_GLSL
#define PAGODA_COMMON_GLSL

uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// Element types, numbered as pagoda::DType.
const uint DT_F32 = 0u;
const uint DT_F16 = 1u;
const uint DT_Q8_0 = 2u;
const uint DT_Q4_0 = 3u;
const uint DT_BF16 = 5u;
const uint DT_Q4_1 = 6u;
const uint DT_Q5_0 = 7u;
const uint DT_Q5_1 = 8u;
const uint DT_IQ4_NL = 9u;
const uint DT_Q2_K = 10u;
const uint DT_Q3_K = 11u;
const uint DT_Q4_K = 12u;
const uint DT_Q5_K = 13u;
const uint DT_Q6_K = 14u;

// float -> IEEE half bits, round-to-nearest-even. packHalf2x16 leaves the rounding mode to the
// implementation; doing it by hand makes F16 KV caches bit-identical to the CPU reference.
uint f32_to_f16(float f) {
  const uint x = floatBitsToUint(f);
  const uint sign = (x >> 16) & 0x8000u;
  const uint a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u);  // inf / nan
  if (a >= 0x477ff000u) return sign | 0x7c00u;                                   // overflow
  if (a < 0x38800000u) {                                                         // half subnormal
    if (a < 0x33000000u) return sign;
    const uint e = a >> 23;
    const uint m = (a & 0x7fffffu) | 0x800000u;
    const uint shift = 126u - e;
    uint r = m >> shift;
    const uint rem = m & ((1u << shift) - 1u);
    const uint halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (r & 1u) != 0u)) r += 1u;
    return sign | r;
  }
  uint r = (a >> 13) - (112u << 10);
  const uint rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) != 0u)) r += 1u;
  return sign | r;
}

#endif
