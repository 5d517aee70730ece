// Decoding of every block-quantized weight layout, shared by the CUDA kernels and a host test.
// A block is read in groups of 8 consecutive elements: quants8() gives a group's raw quant values
// q[8] and scale8() its affine pair, element = a * q + b, where b is zero for the symmetric types
// (Traits<T>::kHasMin false; the kernels then scale a whole dot product by a). A 16-aligned run of
// 16 elements shares one pair (ggml's sub-blocks hold 16 or 32), so a lane decodes it once per 16.
//
// Compiled by nvcc the functions are __host__ __device__; compiled as plain C++ (no CUDA headers)
// they are ordinary inline functions (the one intrinsic, __byte_perm, emulated exactly), so
// tests/cuda_dequant_test.cpp checks them element for element against the CPU reference
// dequantizer (backends/cpu/cpu_quants.cpp, which also documents the byte layouts) on a machine
// without a GPU. Blocks need only 2-byte alignment (Q3_K and Q6_K are 110 and 210 bytes), so
// multi-byte fields are read as 16-bit words.
#pragma once
#include <cstdint>
#include <cstring>

#include "backends/backend.h"
#include "core/util/half.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define PAGODA_QB __host__ __device__ __forceinline__
#else
#define PAGODA_QB inline
#endif

namespace pagoda::qblocks {

template <DType T>
struct Traits {
  static constexpr bool kQuant = false;
  static constexpr int kElems = 1;
  static constexpr int kBytes = 0;
  static constexpr bool kHasMin = false;
  static constexpr int kStagedAlign = 2;
};
// kStagedAlign: the alignment of a block that starts a whole number of blocks after a 16-byte
// boundary (as in a staged chunk); every words8() read of quants8() is aligned to it.
#define PAGODA_QB_TRAITS(T, elems, bytes, has_min)                                    \
  template <>                                                                         \
  struct Traits<DType::T> {                                                           \
    static constexpr bool kQuant = true;                                              \
    static constexpr int kElems = elems;                                              \
    static constexpr int kBytes = bytes;                                              \
    static constexpr bool kHasMin = has_min;                                          \
    static constexpr int kStagedAlign = bytes % 8 == 0 ? 8 : bytes % 4 == 0 ? 4 : 2; \
  };
PAGODA_QB_TRAITS(Q8_0, 32, 34, false)
PAGODA_QB_TRAITS(Q4_0, 32, 18, false)
PAGODA_QB_TRAITS(Q4_1, 32, 20, true)
PAGODA_QB_TRAITS(Q5_0, 32, 22, false)
PAGODA_QB_TRAITS(Q5_1, 32, 24, true)
PAGODA_QB_TRAITS(IQ4_NL, 32, 18, false)
PAGODA_QB_TRAITS(Q2_K, 256, 84, true)
PAGODA_QB_TRAITS(Q3_K, 256, 110, false)
PAGODA_QB_TRAITS(Q4_K, 256, 144, true)
PAGODA_QB_TRAITS(Q5_K, 256, 176, true)
PAGODA_QB_TRAITS(Q6_K, 256, 210, false)
#undef PAGODA_QB_TRAITS

struct Affine {
  float a;
  float b;
};

// Little-endian 16-bit word at p (2-byte aligned).
PAGODA_QB uint32_t u16_at(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}
// Little-endian 32-bit word at p (only 2-byte aligned).
PAGODA_QB uint32_t u32_at(const uint8_t* p) { return u16_at(p) | (u16_at(p + 2) << 16); }

PAGODA_QB float f16_at(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(static_cast<unsigned short>(u16_at(p))));
#else
  return half_to_float(uint16_t(u16_at(p)));
#endif
}

PAGODA_QB float bits_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

PAGODA_QB float bf16_float(uint32_t bits16) { return bits_float(bits16 << 16); }

// CUDA's __byte_perm: result byte i is byte (s >> 4i) & 7 of the pair (x = bytes 0..3, y = bytes
// 4..7). On the host an exact emulation, so the host test runs the selectors the device runs.
PAGODA_QB uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t in = uint64_t(y) << 32 | x;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t((in >> (8 * ((s >> (4 * i)) & 7u))) & 0xFFu) << (8 * i);
  return r;
#endif
}

// Byte k (0..3) of w as an exact float: the byte becomes the low mantissa bits of 2^23 (one byte
// permute puts it under the exponent byte 0x4B), and subtracting 2^23 leaves its value. A permute
// and an add instead of an int->float conversion, which runs at a quarter of the FP32 rate and
// would bound the decode rate.
PAGODA_QB float byte_float(uint32_t w, int k) {
  return bits_float(byte_perm(w, 0x4B000000u, 0x7540u | unsigned(k))) - 8388608.0f;
}
// Exact float of a small non-negative integer (< 2^23), the same way.
PAGODA_QB float small_float(uint32_t v) { return bits_float(0x4B000000u | v) - 8388608.0f; }

// IQ4_NL's 16 code values (int8), four to a little-endian word.
constexpr uint32_t pack4(int a, int b, int c, int d) {
  return uint32_t(uint8_t(a)) | uint32_t(uint8_t(b)) << 8 | uint32_t(uint8_t(c)) << 16 | uint32_t(uint8_t(d)) << 24;
}
// Scalars, not an array: device code may use a namespace-scope constexpr scalar, not an array.
constexpr uint32_t kIq4W0 = pack4(-127, -104, -83, -65), kIq4W1 = pack4(-49, -35, -22, -10);
constexpr uint32_t kIq4W2 = pack4(1, 13, 25, 38), kIq4W3 = pack4(53, 69, 89, 113);

// The IQ4_NL value of code `nib` (0..15), as its byte offset by 128 (0..255): two byte permutes
// over the table held in registers, no memory lookup.
PAGODA_QB uint32_t iq4nl_biased(uint32_t nib) {
  const uint32_t lo = byte_perm(kIq4W0, kIq4W1, nib & 7u), hi = byte_perm(kIq4W2, kIq4W3, nib & 7u);
  return ((nib & 8u ? hi : lo) & 0xFFu) ^ 0x80u;
}

// Six-bit scale i (0..15, stored offset by 32) of a Q3_K block's 12 scale bytes, as 0..63.
PAGODA_QB uint32_t q3k_scale_biased(const uint8_t* s, int i) {
  const uint32_t lo = i < 8 ? (s[i] & 0xFu) : (uint32_t(s[i - 8]) >> 4);
  const uint32_t hi = (uint32_t(s[8 + (i & 3)]) >> (2 * (i >> 2))) & 3u;
  return lo | (hi << 4);
}
// Six-bit scale and min j (0..7) of a Q4_K/Q5_K block's 12 scale bytes.
PAGODA_QB void k4_scale_min(const uint8_t* q, int j, uint32_t& sc, uint32_t& m) {
  if (j < 4) {
    sc = q[j] & 63u;
    m = q[j + 4] & 63u;
  } else {
    sc = (q[j + 4] & 0xFu) | ((uint32_t(q[j - 4]) >> 6) << 4);
    m = (uint32_t(q[j + 4]) >> 4) | ((uint32_t(q[j]) >> 6) << 4);
  }
}

// The 8 bytes at p as two little-endian words. kAlign: the alignment p is known to have (2, 4 or
// 8); on the device wider alignment means fewer loads (one 8-byte load instead of four 2-byte ones).
template <int kAlign>
PAGODA_QB void words8(const uint8_t* p, uint32_t& w0, uint32_t& w1) {
#if defined(__CUDA_ARCH__)
  if constexpr (kAlign >= 8) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    w0 = v.x;
    w1 = v.y;
  } else if constexpr (kAlign >= 4) {
    w0 = *reinterpret_cast<const uint32_t*>(p);
    w1 = *reinterpret_cast<const uint32_t*>(p + 4);
  } else {
    w0 = u32_at(p);
    w1 = u32_at(p + 4);
  }
#else
  w0 = u32_at(p);
  w1 = u32_at(p + 4);
#endif
}
// q[0..7] = bytes of (w0, w1) as floats, minus `bias`.
PAGODA_QB void bytes_to_floats(uint32_t w0, uint32_t w1, float bias, float q[8]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 0; k < 4; ++k) {
    q[k] = byte_float(w0, k) - bias;
    q[4 + k] = byte_float(w1, k) - bias;
  }
}

// Raw quant values of the group of 8 elements [sub, sub + 8) of one block of type T (sub a
// multiple of 8 below the block size); the element is a * q + b with (a, b) = scale8().
// kAlign: the alignment of blk (Traits<T>::kStagedAlign in a staged chunk; 2 is always safe).
template <DType T, int kAlign = 2>
PAGODA_QB void quants8(const uint8_t* blk, int sub, float q[8]) {
  uint32_t w0, w1;
  if constexpr (T == DType::Q8_0) {
    words8<kAlign>(blk + 2 + sub, w0, w1);
    bytes_to_floats(w0 ^ 0x80808080u, w1 ^ 0x80808080u, 128.0f, q);  // int8 -> offset binary
  } else if constexpr (T == DType::Q4_0 || T == DType::Q4_1 || T == DType::IQ4_NL) {
    // Elements 0..15 are the low nibbles of qs[0..15], 16..31 the high nibbles.
    const int shift = sub < 16 ? 0 : 4;
    words8<kAlign>(blk + (T == DType::Q4_1 ? 4 : 2) + (sub & 15), w0, w1);
    w0 = (w0 >> shift) & 0x0F0F0F0Fu;
    w1 = (w1 >> shift) & 0x0F0F0F0Fu;
    if constexpr (T == DType::IQ4_NL) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int k = 0; k < 4; ++k) {
        q[k] = small_float(iq4nl_biased((w0 >> (8 * k)) & 0xFu)) - 128.0f;
        q[4 + k] = small_float(iq4nl_biased((w1 >> (8 * k)) & 0xFu)) - 128.0f;
      }
    } else {
      bytes_to_floats(w0, w1, T == DType::Q4_0 ? 8.0f : 0.0f, q);
    }
  } else if constexpr (T == DType::Q5_0 || T == DType::Q5_1) {
    // As Q4_0/Q4_1, plus bit e of the 32-bit qh as the fifth bit of element e.
    const int hb = T == DType::Q5_1 ? 4 : 2;
    const int shift = sub < 16 ? 0 : 4;
    const uint32_t qh = u32_at(blk + hb) >> sub;
    words8<kAlign>(blk + hb + 4 + (sub & 15), w0, w1);
    // Spread the group's 8 high bits to bit 4 of each byte.
    uint32_t h0 = 0, h1 = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int k = 0; k < 4; ++k) {
      h0 |= ((qh >> k) & 1u) << (8 * k + 4);
      h1 |= ((qh >> (k + 4)) & 1u) << (8 * k + 4);
    }
    w0 = ((w0 >> shift) & 0x0F0F0F0Fu) | h0;
    w1 = ((w1 >> shift) & 0x0F0F0F0Fu) | h1;
    bytes_to_floats(w0, w1, T == DType::Q5_0 ? 16.0f : 0.0f, q);
  } else if constexpr (T == DType::Q2_K || T == DType::Q3_K) {
    // Element 128n + 32j + l: bits 2j..2j+1 of qs[32n + l].
    const int n = sub >> 7, j = (sub >> 5) & 3, l0 = sub & 31;
    words8<kAlign>(blk + (T == DType::Q2_K ? 16 : 32) + 32 * n + l0, w0, w1);
    w0 = (w0 >> (2 * j)) & 0x03030303u;
    w1 = (w1 >> (2 * j)) & 0x03030303u;
    if constexpr (T == DType::Q2_K) {
      bytes_to_floats(w0, w1, 0.0f, q);
    } else {
      // hmask[l] bit 4n + j set: +0, clear: -4. Stored as bit 2 of each byte, the value minus 4.
      uint32_t m0, m1;
      words8<kAlign>(blk + l0, m0, m1);
      w0 |= ((m0 >> (4 * n + j)) & 0x01010101u) << 2;
      w1 |= ((m1 >> (4 * n + j)) & 0x01010101u) << 2;
      bytes_to_floats(w0, w1, 4.0f, q);
    }
  } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
    // Element 64c + 32h + l: nibble h of qs[32c + l] (Q5_K: bit 2c + h of qh[l] above it).
    const int c = sub >> 6, h = (sub >> 5) & 1, l0 = sub & 31;
    words8<kAlign>(blk + (T == DType::Q5_K ? 48 : 16) + 32 * c + l0, w0, w1);
    w0 = (w0 >> (4 * h)) & 0x0F0F0F0Fu;
    w1 = (w1 >> (4 * h)) & 0x0F0F0F0Fu;
    if constexpr (T == DType::Q5_K) {
      uint32_t m0, m1;
      words8<kAlign>(blk + 16 + l0, m0, m1);
      w0 |= ((m0 >> (2 * c + h)) & 0x01010101u) << 4;
      w1 |= ((m1 >> (2 * c + h)) & 0x01010101u) << 4;
    }
    bytes_to_floats(w0, w1, 0.0f, q);
  } else {
    static_assert(T == DType::Q6_K, "quants8 covers every block-quantized type");
    // Element 128n + 32k + l: nibble (k >= 2) of ql[64n + 32(k & 1) + l], bits 2k..2k+1 of
    // qh[32n + l] above it, minus 32.
    const int n = sub >> 7, k = (sub >> 5) & 3, l0 = sub & 31;
    words8<kAlign>(blk + 64 * n + 32 * (k & 1) + l0, w0, w1);
    const int shift = k >= 2 ? 4 : 0;
    w0 = (w0 >> shift) & 0x0F0F0F0Fu;
    w1 = (w1 >> shift) & 0x0F0F0F0Fu;
    uint32_t h0, h1;
    words8<kAlign>(blk + 128 + 32 * n + l0, h0, h1);
    w0 |= ((h0 >> (2 * k)) & 0x03030303u) << 4;
    w1 |= ((h1 >> (2 * k)) & 0x03030303u) << 4;
    bytes_to_floats(w0, w1, 32.0f, q);
  }
}

// The (a, b) of the elements from `sub` (a multiple of 8) on: element = a * q + b, b = 0 unless
// Traits<T>::kHasMin. Every element of a 16-aligned run of 16 shares it (ggml's sub-blocks hold
// 16 or 32 elements), so a kernel may decode it once per 16 elements.
template <DType T>
PAGODA_QB Affine scale8(const uint8_t* blk, int sub) {
  if constexpr (T == DType::Q8_0 || T == DType::Q4_0 || T == DType::Q5_0 || T == DType::IQ4_NL) {
    return {f16_at(blk), 0.0f};
  } else if constexpr (T == DType::Q4_1 || T == DType::Q5_1) {
    return {f16_at(blk), f16_at(blk + 2)};
  } else if constexpr (T == DType::Q2_K || T == DType::Q3_K) {
    const int is = 8 * (sub >> 7) + 2 * ((sub >> 5) & 3) + ((sub & 31) >> 4);  // 16-element sub-block
    if constexpr (T == DType::Q2_K) {
      const uint32_t s = blk[is];
      return {f16_at(blk + 80) * small_float(s & 0xFu), -(f16_at(blk + 82) * small_float(s >> 4))};
    } else {
      return {f16_at(blk + 108) * (small_float(q3k_scale_biased(blk + 96, is)) - 32.0f), 0.0f};
    }
  } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
    uint32_t sc, m;
    k4_scale_min(blk + 4, sub >> 5, sc, m);  // 32-element sub-block 2c + h
    return {f16_at(blk) * small_float(sc), -(f16_at(blk + 2) * small_float(m))};
  } else {
    static_assert(T == DType::Q6_K, "scale8 covers every block-quantized type");
    const uint32_t s = blk[192 + (sub >> 4)];  // int8 scale of 16-element sub-block 8n + 2k + l/16
    return {f16_at(blk + 208) * (small_float(s ^ 0x80u) - 128.0f), 0.0f};
  }
}

template <DType T, int kAlign = 2>
PAGODA_QB Affine decode8(const uint8_t* blk, int sub, float q[8]) {
  quants8<T, kAlign>(blk, sub, q);
  return scale8<T>(blk, sub);
}

// The 8 dequantized elements [sub, sub + 8) of one block: y = a * q (+ b).
template <DType T>
PAGODA_QB void dequant8(const uint8_t* blk, int sub, float y[8]) {
  float q[8];
  const Affine g = decode8<T>(blk, sub, q);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < 8; ++i) {
    if constexpr (Traits<T>::kHasMin) y[i] = g.a * q[i] + g.b;
    else y[i] = g.a * q[i];
  }
}

}  // namespace pagoda::qblocks
