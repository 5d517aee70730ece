// Reads weights of any pagoda::DType from a byte-addressed table. Requires, before inclusion:
//   a buffer `W` declared as uint W[] and a constant uint WTYPE (a DT_* value).
// Layouts (ggml): F32 4 bytes; F16 2 bytes; Q8_0 blocks of 34 bytes = f16 scale + 32 int8;
// Q4_0 blocks of 18 bytes = f16 scale + 16 bytes, element j in the low nibble of byte j and
// element j+16 in the high nibble, value (nibble - 8) * scale. Byte addresses of F16/Q8_0/Q4_0
// data are even, so a 16-bit read never straddles two words.
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

uint w_block_bytes() { return WTYPE == DT_Q8_0 ? 34u : 18u; }

// Element c of the row whose first byte is at address `row`.
float w_elem(uint row, uint c) {
  if (WTYPE == DT_F32) return uintBitsToFloat(W[(row >> 2) + c]);
  if (WTYPE == DT_F16) return w_half(row + 2u * c);
  const uint blk = row + (c >> 5) * w_block_bytes();
  const float d = w_half(blk);
  const uint j = c & 31u;
  if (WTYPE == DT_Q8_0) return d * float(bitfieldExtract(int(w_u8(blk + 2u + j)), 0, 8));
  const uint b = w_u8(blk + 2u + (j & 15u));
  return d * float(int(j < 16u ? (b & 15u) : (b >> 4)) - 8);
}

#endif
