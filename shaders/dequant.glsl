// Reads weights of any pagoda::DType from a byte-addressed table. Requires, before inclusion:
//   a buffer `W` declared as uint W[] and a constant uint WTYPE (a DT_* value).
//
// Float types are read element by element (w_elem). Block-quantized types are read a *unit* at a
// time: the 16 (32-element blocks) or 32 (256-element K-quant super-blocks) elements that one run
// of bytes holds, decoded together so that every quantized byte is read once. A unit is made of
// runs of 8 consecutive elements: element i of the decoded v[] is block element
// w_run_start(t, i / 8) + i % 8, of value scale[i / 8] * v[i] + offset[i / 8] (each run lies in
// one (sub-)block, so a dot product multiplies by its scale once per run, not per element).
// Every block is an even number of bytes long and tables start at even byte offsets, so every
// field below sits at an even address: 16-bit reads never straddle two words and 32-bit reads go
// through w_u32_even.
//
// Layouts (ggml's, byte offsets within a block; the CPU reference cpu_quants.cpp is the ground
// truth), and the unit t of a block each type decodes:
//   F32    4 B/elem; F16 2 B/elem (IEEE half); BF16 2 B/elem (top half of an F32)
//   Q8_0   34 B: d f16 @0, int8 q[32] @2                            x = d*q
//   Q4_0   18 B: d @0, qs[16] @2: byte j = elem j (low nibble) | elem j+16 (high)   x = d*(q-8)
//   Q4_1   20 B: d @0, m @2, qs[16] @4                                x = d*q + m
//   Q5_0   22 B: d @0, qh u32 @2 (bit j = 5th bit of elem j), qs[16] @6   x = d*(q-16)
//   Q5_1   24 B: d @0, m @2, qh u32 @4, qs[16] @8                     x = d*q + m
//   IQ4_NL 18 B: d @0, qs[16] @2                                      x = d*kIq4nl[q]
//          32-element blocks, unit t < 2: Q8_0 elems 16t..16t+15; nibble types bytes 8t..8t+7
//          of qs, i.e. elems 8t.. (low nibbles) and 16+8t.. (high nibbles).
//   Q2_K   84 B: scales[16] @0 (low nibble scale, high nibble min, per 16 elems), qs[64] @16,
//          d @80, dmin @82. Elem 128n+32j+l: (qs[32n+l] >> 2j) & 3, sub-block 8n+2j+l/16,
//          x = d*sc*q - dmin*m.
//   Q3_K   110 B: hmask[32] @0, qs[64] @32, scales[12] @96 (16 six-bit scales, offset 32),
//          d @108. Elem 128n+32j+l: 2 low bits as Q2_K, minus 4 unless bit 4n+j of hmask[l].
//   Q6_K   210 B: ql[128] @0, qh[64] @128, int8 scales[16] @192, d @208. Elem 128n+32k+l:
//          ql[64n+32(k&1)+l] nibble (high for k >= 2), bits 2k of qh[32n+l], x = d*sc*(q-32).
//          Q2_K, Q3_K, Q6_K unit t < 8: n = t/4, l = 8(t%4) .. +7, all four j (or k): the
//          bytes qs (ql, qh, hmask) at those l, runs 128n+32r+l.
//   Q4_K   144 B: d @0, dmin @2, scales[12] @4 (8 six-bit scales and mins), qs[128] @16.
//          Elem 64c+l (l < 32): low nibble of qs[32c+l], sub-block 2c; 64c+32+l: high, 2c+1.
//   Q5_K   176 B: as Q4_K with qh[32] @16 and qs[128] @48; bit 2c (2c+1) of qh[l] is the 5th bit.
//          Q4_K, Q5_K unit t < 8: c = t/2, the 16 bytes qs[32c+16(t%2)..]: runs 64c+16(t%2)
//          (+8) from the low nibbles and 64c+32+16(t%2) (+8) from the high ones.
#ifndef PAGODA_DEQUANT_GLSL
#define PAGODA_DEQUANT_GLSL

uint w_u8(uint a) { return (W[a >> 2] >> ((a & 3u) << 3)) & 0xffu; }
uint w_u16(uint a) { return (W[a >> 2] >> ((a & 2u) << 3)) & 0xffffu; }
float w_half(uint a) { return unpackHalf2x16(w_u16(a)).x; }
// Four bytes starting at an even address, which may straddle two words.
uint w_u32_even(uint a) {
  const uint i = a >> 2;
  return (a & 2u) == 0u ? W[i] : ((W[i] >> 16) | (W[i + 1u] << 16));
}
float bf16_lo(uint v) { return uintBitsToFloat(v << 16); }
float bf16_hi(uint v) { return uintBitsToFloat(v & 0xffff0000u); }

// ---- the table of layouts ----

bool w_kquant() { return WTYPE >= DT_Q2_K && WTYPE <= DT_Q6_K; }
uint w_block_elems() { return w_kquant() ? 256u : 32u; }
uint w_block_bytes() {
  switch (WTYPE) {
    case DT_Q8_0: return 34u;
    case DT_Q4_1: return 20u;
    case DT_Q5_0: return 22u;
    case DT_Q5_1: return 24u;
    case DT_Q2_K: return 84u;
    case DT_Q3_K: return 110u;
    case DT_Q4_K: return 144u;
    case DT_Q5_K: return 176u;
    case DT_Q6_K: return 210u;
    default: return 18u;  // Q4_0, IQ4_NL
  }
}
uint w_unit_elems() { return w_kquant() ? 32u : 16u; }
uint w_units_per_block() { return w_block_elems() / w_unit_elems(); }

uint w_run_start(uint t, uint r) {
  if (WTYPE == DT_Q4_K || WTYPE == DT_Q5_K) return 64u * (t >> 1) + 16u * (t & 1u) + 32u * (r >> 1) + 8u * (r & 1u);
  if (w_kquant()) return 128u * (t >> 2) + 32u * r + 8u * (t & 3u);
  if (WTYPE == DT_Q8_0) return 16u * t + 8u * r;
  return 8u * t + 16u * r;
}

const float kIq4nl[16] = float[](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0,
                                 53.0, 69.0, 89.0, 113.0);

// 32-element blocks. Q8_0: 16 int8 from byte 2 + 16t. The nibble types: 8 bytes of qs from 8t.
void unit_block32(uint blk, uint t, out float v[32], out vec4 scale, out vec4 offset) {
  const bool has_min = WTYPE == DT_Q4_1 || WTYPE == DT_Q5_1;
  scale = vec4(w_half(blk));
  offset = vec4(has_min ? w_half(blk + 2u) : 0.0);
  if (WTYPE == DT_Q8_0) {
    for (uint k = 0u; k < 4u; ++k) {
      const int q = int(w_u32_even(blk + 2u + 16u * t + 4u * k));
      for (uint b = 0u; b < 4u; ++b) v[4u * k + b] = float(bitfieldExtract(q, int(8u * b), 8));
    }
    return;
  }
  const bool has_high = WTYPE == DT_Q5_0 || WTYPE == DT_Q5_1;
  const uint qh = has_high ? w_u32_even(blk + (has_min ? 4u : 2u)) : 0u;
  const uint qs = blk + (has_min ? 4u : 2u) + (has_high ? 4u : 0u);
  const int zero = WTYPE == DT_Q4_0 ? 8 : WTYPE == DT_Q5_0 ? 16 : 0;
  for (uint k = 0u; k < 2u; ++k) {
    const uint q = w_u32_even(qs + 8u * t + 4u * k);
    for (uint b = 0u; b < 4u; ++b) {
      const uint j = 8u * t + 4u * k + b;
      const uint lo = ((q >> (8u * b)) & 15u) | (((qh >> j) & 1u) << 4);
      const uint hi = ((q >> (8u * b + 4u)) & 15u) | (((qh >> (j + 16u)) & 1u) << 4);
      v[4u * k + b] = WTYPE == DT_IQ4_NL ? kIq4nl[lo] : float(int(lo) - zero);
      v[8u + 4u * k + b] = WTYPE == DT_IQ4_NL ? kIq4nl[hi] : float(int(hi) - zero);
    }
  }
}

// Six-bit scale i (0..15, stored +32) of a Q3_K block's 12 scale bytes at s.
int scale_q3k(uint s, uint i) {
  const uint lo = i < 8u ? (w_u8(s + i) & 15u) : (w_u8(s + i - 8u) >> 4);
  const uint hi = (w_u8(s + 8u + (i & 3u)) >> (2u * (i >> 2))) & 3u;
  return int(lo | (hi << 4)) - 32;
}

// Q2_K, Q3_K, Q6_K: unit t covers l = l0..l0+7 of half n; run r is j (k) = r.
void unit_k_2bit_lanes(uint blk, uint t, out float v[32], out vec4 scale, out vec4 offset) {
  const uint n = t >> 2, l0 = 8u * (t & 3u);
  // The 8 bytes each field holds for these l: two words per field.
  uvec2 qs, hm = uvec2(0u), ql1 = uvec2(0u);
  if (WTYPE == DT_Q6_K) {
    qs = uvec2(w_u32_even(blk + 64u * n + l0), w_u32_even(blk + 64u * n + l0 + 4u));
    ql1 = uvec2(w_u32_even(blk + 64u * n + 32u + l0), w_u32_even(blk + 64u * n + 36u + l0));
    hm = uvec2(w_u32_even(blk + 128u + 32u * n + l0), w_u32_even(blk + 132u + 32u * n + l0));
  } else {
    const uint qa = blk + (WTYPE == DT_Q2_K ? 16u : 32u) + 32u * n + l0;
    qs = uvec2(w_u32_even(qa), w_u32_even(qa + 4u));
    if (WTYPE == DT_Q3_K) hm = uvec2(w_u32_even(blk + l0), w_u32_even(blk + l0 + 4u));
  }
  for (uint r = 0u; r < 4u; ++r) {
    const uint is = 8u * n + 2u * r + (l0 >> 4);  // sub-block of 16 elements
    float dl, ml = 0.0;
    if (WTYPE == DT_Q2_K) {
      const uint sc = w_u8(blk + is);
      dl = w_half(blk + 80u) * float(sc & 15u);
      ml = w_half(blk + 82u) * float(sc >> 4);
    } else if (WTYPE == DT_Q3_K) {
      dl = w_half(blk + 108u) * float(scale_q3k(blk + 96u, is));
    } else {
      dl = w_half(blk + 208u) * float(bitfieldExtract(int(w_u8(blk + 192u + is)), 0, 8));
    }
    for (uint i = 0u; i < 8u; ++i) {
      const uint w = i >> 2, sh = 8u * (i & 3u);
      int q;
      if (WTYPE == DT_Q6_K) {
        const uint lb = (((r & 1u) != 0u ? ql1[w] : qs[w]) >> sh) & 0xffu;
        const uint lo = r >= 2u ? lb >> 4 : lb & 15u;
        q = int(lo | (((hm[w] >> (sh + 2u * r)) & 3u) << 4)) - 32;
      } else {
        q = int((qs[w] >> (sh + 2u * r)) & 3u);
        if (WTYPE == DT_Q3_K && ((hm[w] >> (sh + 4u * n + r)) & 1u) == 0u) q -= 4;
      }
      v[8u * r + i] = float(q);
    }
    scale[r] = dl;
    offset[r] = -ml;
  }
}

// Six-bit scale and min j (0..7) of a Q4_K/Q5_K block's 12 scale bytes at s.
uvec2 scale_min_k4(uint s, uint j) {
  if (j < 4u) return uvec2(w_u8(s + j) & 63u, w_u8(s + j + 4u) & 63u);
  const uint b = w_u8(s + j + 4u);
  return uvec2((b & 15u) | ((w_u8(s + j - 4u) >> 6) << 4), (b >> 4) | ((w_u8(s + j) >> 6) << 4));
}

// Q4_K, Q5_K: unit t is the 16 bytes qs[32c + 16h ..], c = t/2, h = t%2.
void unit_k_nibbles(uint blk, uint t, out float v[32], out vec4 scale, out vec4 offset) {
  const uint c = t >> 1, h = t & 1u;
  const bool five = WTYPE == DT_Q5_K;
  const float d = w_half(blk), dmin = w_half(blk + 2u);
  const uint qs = blk + (five ? 48u : 16u) + 32u * c + 16u * h;
  for (uint half_ = 0u; half_ < 2u; ++half_) {  // low nibbles: sub-block 2c, high: 2c+1
    const uvec2 sm = scale_min_k4(blk + 4u, 2u * c + half_);
    scale[2u * half_] = scale[2u * half_ + 1u] = d * float(sm.x);
    offset[2u * half_] = offset[2u * half_ + 1u] = -(dmin * float(sm.y));
    for (uint k = 0u; k < 4u; ++k) {
      const uint q = w_u32_even(qs + 4u * k);
      const uint qh = five ? w_u32_even(blk + 16u + 16u * h + 4u * k) : 0u;
      for (uint b = 0u; b < 4u; ++b) {
        uint x = (q >> (8u * b + 4u * half_)) & 15u;
        if (five) x |= ((qh >> (8u * b + 2u * c + half_)) & 1u) << 4;
        v[16u * half_ + 4u * k + b] = float(x);
      }
    }
  }
}

// Decodes unit t (< w_units_per_block()) of the block at byte address blk: v[0 .. w_unit_elems())
// and the scale and offset of each run of 8.
void w_unit(uint blk, uint t, out float v[32], out vec4 scale, out vec4 offset) {
  if (WTYPE == DT_Q4_K || WTYPE == DT_Q5_K) unit_k_nibbles(blk, t, v, scale, offset);
  else if (w_kquant()) unit_k_2bit_lanes(blk, t, v, scale, offset);
  else unit_block32(blk, t, v, scale, offset);
}
// Whether any run may have a nonzero offset (the types with minimums).
bool w_has_offset() {
  return WTYPE == DT_Q4_1 || WTYPE == DT_Q5_1 || WTYPE == DT_Q2_K || WTYPE == DT_Q4_K || WTYPE == DT_Q5_K;
}

// Element c of a float-typed (F32, F16, BF16) row whose first byte is at address `row`.
float w_elem(uint row, uint c) {
  if (WTYPE == DT_F32) return uintBitsToFloat(W[(row >> 2) + c]);
  if (WTYPE == DT_BF16) return bf16_lo(w_u16(row + 2u * c));
  return w_half(row + 2u * c);
}

#endif
