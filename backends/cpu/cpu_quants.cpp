// Reference (de)quantizers for every weight layout, byte-compatible with ggml's blocks. Dequantizing
// is exact and the definition of each format; quantizing is our own plain round-to-nearest with
// per-(sub)block ranges, used by tests, conformance inputs and `pagoda quantize`.
//
// Byte layouts (offsets within one block; "f16" = IEEE half, little-endian):
//   Q8_0   d f16 @0, int8 q[32] @2
//   Q4_0   d @0, qs[16] @2: byte j = elem j (low nibble) | elem j+16 (high nibble), value q-8
//   Q4_1   d @0, m @2, qs[16] @4 as Q4_0, value d*q + m
//   Q5_0   d @0, qh u32 @2 (bit j = 5th bit of elem j), qs[16] @6 as Q4_0, value d*(q-16)
//   Q5_1   d @0, m @2, qh u32 @4, qs[16] @8, value d*q + m
//   IQ4_NL d @0, qs[16] @2 as Q4_0, value d*kIq4nl[q]
//   Q2_K   scales[16] @0 (low nibble scale, high nibble min, per 16 elems), qs[64] @16,
//          d @80, dmin @82. Elem 128n+32j+l (l<32): (qs[32n+l] >> 2j) & 3, sub-block 8n+2j+l/16.
//   Q3_K   hmask[32] @0, qs[64] @32, scales[12] @96 (16 six-bit scales, offset 32), d @108.
//          Elem 128n+32j+l: low 2 bits as Q2_K, bit (4n+j) of hmask[l] set = +0 else -4.
//   Q4_K   d @0, dmin @2, scales[12] @4 (8 six-bit scales and mins per 32 elems), qs[128] @16.
//          Elem 64c+l: low nibble of qs[32c+l] (sub-block 2c); 64c+32+l: high nibble (2c+1).
//   Q5_K   as Q4_K with qh[32] @16 and qs[128] @48: bit 2c / 2c+1 of qh[l] is the 5th bit.
//   Q6_K   ql[128] @0, qh[64] @128, int8 scales[16] @192, d @208. Elem 128n+32k+l:
//          ql[64n+l+32(k&1)] nibble (k>=2: high), bits 2k..2k+1 of qh[32n+l], value q-32,
//          scale 8n+2k+l/16.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "core/util/half.h"

namespace pagoda {
namespace {

constexpr int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}
void put_f16(uint8_t* p, float v) {
  const uint16_t h = float_to_half(v);
  std::memcpy(p, &h, 2);
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // keep NaN a NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1)) >> 16);                  // round to nearest even
}

void put_scale_min_k4(int j, uint8_t* q, int sc, int m) {
  if (j < 4) {
    q[j] = uint8_t((q[j] & 0xC0) | sc);
    q[j + 4] = uint8_t((q[j + 4] & 0xC0) | m);
  } else {
    q[j + 4] = uint8_t((sc & 0xF) | ((m & 0xF) << 4));
    q[j - 4] = uint8_t((q[j - 4] & 63) | ((sc >> 4) << 6));
    q[j] = uint8_t((q[j] & 63) | ((m >> 4) << 6));
  }
}

// Six-bit scale i (0..15, stored +32) of a Q3_K block's 12 scale bytes: low nibbles in bytes
// 0..7 (i < 8 low half, else high half of byte i-8), the top two bits in bytes 8..11.
int scale_q3k(int i, const uint8_t* s) {
  const int lo = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
  const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}
void put_scale_q3k(int i, uint8_t* s, int v) {
  const int u = v + 32;
  if (i < 8) s[i] = uint8_t((s[i] & 0xF0) | (u & 0xF));
  else s[i - 8] = uint8_t((s[i - 8] & 0x0F) | ((u & 0xF) << 4));
  const int sh = 2 * (i / 4);
  s[8 + i % 4] = uint8_t((s[8 + i % 4] & ~(3 << sh)) | ((u >> 4) << sh));
}

// ---- dequantizers: one block of the type into out ----

void deq_q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(b[4 + j] & 0xF) + m;
    y[j + 16] = d * float(b[4 + j] >> 4) + m;
  }
}
void deq_q5(const uint8_t* b, float* y, bool with_min) {
  const float d = f16_at(b), m = with_min ? f16_at(b + 2) : 0.0f;
  const uint8_t* hb = b + (with_min ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, hb, 4);
  const uint8_t* qs = hb + 4;
  const int off = with_min ? 0 : 16;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0xF) | int(((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
    y[j] = d * float(lo - off) + m;
    y[j + 16] = d * float(hi - off) + m;
  }
}
void deq_iq4_nl(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(kIq4nl[b[2 + j] & 0xF]);
    y[j + 16] = d * float(kIq4nl[b[2 + j] >> 4]);
  }
}
void deq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* qs = b + 16;
  const float d = f16_at(b + 80), dmin = f16_at(b + 82);
  for (int n = 0; n < 2; ++n)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const int is = 8 * n + 2 * j + l / 16;
        const int q = (qs[32 * n + l] >> (2 * j)) & 3;
        y[128 * n + 32 * j + l] = d * float(sc[is] & 0xF) * float(q) - dmin * float(sc[is] >> 4);
      }
}
void deq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* qs = b + 32;
  const float d = f16_at(b + 108);
  for (int n = 0; n < 2; ++n)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const int is = 8 * n + 2 * j + l / 16;
        const int q = ((qs[32 * n + l] >> (2 * j)) & 3) - ((hm[l] >> (4 * n + j)) & 1 ? 0 : 4);
        y[128 * n + 32 * j + l] = d * float(scale_q3k(is, b + 96)) * float(q);
      }
}
void deq_q45_k(const uint8_t* b, float* y, bool five) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (five ? 48 : 16);
  for (int c = 0; c < 4; ++c)
    for (int half = 0; half < 2; ++half) {
      int sc, m;
      scale_min_k4(2 * c + half, scales, sc, m);
      const float dl = d * float(sc), ml = dmin * float(m);
      for (int l = 0; l < 32; ++l) {
        int q = half ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 0xF;
        if (five) q |= ((qh[l] >> (2 * c + half)) & 1) << 4;
        y[64 * c + 32 * half + l] = dl * float(q) - ml;
      }
    }
}
void deq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int n = 0; n < 2; ++n)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l) {
        const uint8_t lb = ql[64 * n + l + 32 * (k & 1)];
        const int lo = k >= 2 ? lb >> 4 : lb & 0xF;
        const int q = (lo | (((qh[32 * n + l] >> (2 * k)) & 3) << 4)) - 32;
        y[128 * n + 32 * k + l] = d * float(sc[8 * n + 2 * k + l / 16]) * float(q);
      }
}

// ---- quantizers: one block of the type from x ----

int nearest(float v, int lo, int hi) { return std::clamp(int(std::lround(v)), lo, hi); }

// Affine 32-blocks (Q4_1, Q5_1): d = range / levels, m = min.
void quant_affine32(const float* x, uint8_t* b, bool five) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < 32; ++j) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
  const int levels = five ? 31 : 15;
  const float d = (mx - mn) / float(levels), id = d > 0 ? 1.0f / d : 0.0f;
  put_f16(b, d);
  put_f16(b + 2, mn);
  uint8_t* qs = b + (five ? 8 : 4);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = nearest((x[j] - mn) * id, 0, levels), hi = nearest((x[j + 16] - mn) * id, 0, levels);
    qs[j] = uint8_t((lo & 0xF) | ((hi & 0xF) << 4));
    qh |= uint32_t(lo >> 4) << j | uint32_t(hi >> 4) << (j + 16);
  }
  if (five) std::memcpy(b + 4, &qh, 4);
}
// Q5_0: the element of largest magnitude maps to -16, as Q4_0 maps it to -8.
void quant_q5_0(const float* x, uint8_t* b) {
  float amax = 0, maxv = 0;
  for (int j = 0; j < 32; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), maxv = x[j];
  const float d = maxv / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
  put_f16(b, d);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int lo = nearest(x[j] * id + 16.0f, 0, 31), hi = nearest(x[j + 16] * id + 16.0f, 0, 31);
    b[6 + j] = uint8_t((lo & 0xF) | ((hi & 0xF) << 4));
    qh |= uint32_t(lo >> 4) << j | uint32_t(hi >> 4) << (j + 16);
  }
  std::memcpy(b + 2, &qh, 4);
}
int nearest_iq4(float v) {
  int best = 0;
  for (int k = 1; k < 16; ++k)
    if (std::fabs(v - float(kIq4nl[k])) < std::fabs(v - float(kIq4nl[best]))) best = k;
  return best;
}
// IQ4_NL: scale from the largest magnitude, then one least-squares refit of d to the chosen codes.
void quant_iq4_nl(const float* x, uint8_t* b) {
  float amax = 0, maxv = 0;
  for (int j = 0; j < 32; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), maxv = x[j];
  float d = maxv / float(kIq4nl[0]);
  int q[32];
  for (int pass = 0; pass < 2; ++pass) {
    const float id = d != 0 ? 1.0f / d : 0.0f;
    double sxv = 0, svv = 0;
    for (int j = 0; j < 32; ++j) {
      q[j] = nearest_iq4(x[j] * id);
      sxv += double(x[j]) * kIq4nl[q[j]];
      svv += double(kIq4nl[q[j]]) * kIq4nl[q[j]];
    }
    if (svv > 0) d = float(sxv / svv);
  }
  put_f16(b, d);
  for (int j = 0; j < 16; ++j) b[2 + j] = uint8_t(q[j] | (q[j + 16] << 4));
}

// Per sub-block (scale, min) for affine K-quants, min <= 0 folded into a non-negative offset.
void sub_ranges(const float* x, int n_sub, int sub_len, int levels, float* scale, float* offset) {
  for (int s = 0; s < n_sub; ++s) {
    float mn = 0, mx = 0;
    for (int l = 0; l < sub_len; ++l) mn = std::min(mn, x[s * sub_len + l]), mx = std::max(mx, x[s * sub_len + l]);
    scale[s] = (mx - mn) / float(levels);
    offset[s] = -mn;
  }
}
float max_of(const float* v, int n) { return *std::max_element(v, v + n); }

void quant_q2_k(const float* x, uint8_t* b) {
  float scale[16], offset[16];
  sub_ranges(x, 16, 16, 3, scale, offset);
  const float d = max_of(scale, 16) / 15.0f, dmin = max_of(offset, 16) / 15.0f;
  put_f16(b + 80, d);
  put_f16(b + 82, dmin);
  const float dq = f16_at(b + 80), mq = f16_at(b + 82);
  std::memset(b + 16, 0, 64);
  for (int s = 0; s < 16; ++s) {
    const int sc = dq > 0 ? nearest(scale[s] / dq, 0, 15) : 0, m = mq > 0 ? nearest(offset[s] / mq, 0, 15) : 0;
    b[s] = uint8_t(sc | (m << 4));
  }
  for (int n = 0; n < 2; ++n)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const int is = 8 * n + 2 * j + l / 16;
        const float step = dq * float(b[is] & 0xF);
        const float v = x[128 * n + 32 * j + l] + mq * float(b[is] >> 4);
        const int q = step > 0 ? nearest(v / step, 0, 3) : 0;
        b[16 + 32 * n + l] = uint8_t(b[16 + 32 * n + l] | (q << (2 * j)));
      }
}

// Symmetric sub-block scales: the sub-block's largest-magnitude value maps to `neg` (-4 or -32).
void sub_scales_sym(const float* x, int n_sub, int sub_len, float neg, float* scale) {
  for (int s = 0; s < n_sub; ++s) {
    float amax = 0, maxv = 0;
    for (int l = 0; l < sub_len; ++l)
      if (std::fabs(x[s * sub_len + l]) > amax) amax = std::fabs(x[s * sub_len + l]), maxv = x[s * sub_len + l];
    scale[s] = maxv / neg;
  }
}
float signed_amax(const float* v, int n) {
  float amax = 0, maxv = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(v[i]) > amax) amax = std::fabs(v[i]), maxv = v[i];
  return maxv;
}

void quant_q3_k(const float* x, uint8_t* b) {
  float scale[16];
  sub_scales_sym(x, 16, 16, -4.0f, scale);
  put_f16(b + 108, signed_amax(scale, 16) / -32.0f);
  const float d = f16_at(b + 108);
  std::memset(b, 0, 108);
  for (int s = 0; s < 16; ++s) put_scale_q3k(s, b + 96, d != 0 ? nearest(scale[s] / d, -32, 31) : 0);
  for (int n = 0; n < 2; ++n)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) {
        const float step = d * float(scale_q3k(8 * n + 2 * j + l / 16, b + 96));
        const int q = (step != 0 ? nearest(x[128 * n + 32 * j + l] / step, -4, 3) : 0) + 4;
        b[32 + 32 * n + l] = uint8_t(b[32 + 32 * n + l] | ((q & 3) << (2 * j)));
        if (q & 4) b[l] = uint8_t(b[l] | (1 << (4 * n + j)));
      }
}

void quant_q45_k(const float* x, uint8_t* b, bool five) {
  const int levels = five ? 31 : 15;
  float scale[8], offset[8];
  sub_ranges(x, 8, 32, levels, scale, offset);
  put_f16(b, max_of(scale, 8) / 63.0f);
  put_f16(b + 2, max_of(offset, 8) / 63.0f);
  const float d = f16_at(b), dmin = f16_at(b + 2);
  std::memset(b + 4, 0, size_t(five ? 172 : 140));
  for (int s = 0; s < 8; ++s)
    put_scale_min_k4(s, b + 4, d > 0 ? nearest(scale[s] / d, 0, 63) : 0, dmin > 0 ? nearest(offset[s] / dmin, 0, 63) : 0);
  uint8_t* qh = b + 16;
  uint8_t* qs = b + (five ? 48 : 16);
  for (int c = 0; c < 4; ++c)
    for (int half = 0; half < 2; ++half) {
      int sc, m;
      scale_min_k4(2 * c + half, b + 4, sc, m);
      const float step = d * float(sc), off = dmin * float(m);
      for (int l = 0; l < 32; ++l) {
        const int q = step > 0 ? nearest((x[64 * c + 32 * half + l] + off) / step, 0, levels) : 0;
        qs[32 * c + l] = uint8_t(qs[32 * c + l] | ((q & 0xF) << (4 * half)));
        if (five && (q & 16)) qh[l] = uint8_t(qh[l] | (1 << (2 * c + half)));
      }
    }
}

void quant_q6_k(const float* x, uint8_t* b) {
  float scale[16];
  sub_scales_sym(x, 16, 16, -32.0f, scale);
  put_f16(b + 208, signed_amax(scale, 16) / -128.0f);
  const float d = f16_at(b + 208);
  std::memset(b, 0, 192);
  auto* sc = reinterpret_cast<int8_t*>(b + 192);
  for (int s = 0; s < 16; ++s) sc[s] = int8_t(d != 0 ? nearest(scale[s] / d, -128, 127) : 0);
  for (int n = 0; n < 2; ++n)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l) {
        const float step = d * float(sc[8 * n + 2 * k + l / 16]);
        const int q = (step != 0 ? nearest(x[128 * n + 32 * k + l] / step, -32, 31) : 0) + 32;
        uint8_t& lb = b[64 * n + l + 32 * (k & 1)];
        lb = uint8_t(lb | ((q & 0xF) << (k >= 2 ? 4 : 0)));
        b[128 + 32 * n + l] = uint8_t(b[128 + 32 * n + l] | ((q >> 4) << (2 * k)));
      }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* out, int64_t cols) {
  const auto* b = static_cast<const uint8_t*>(src);
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  switch (t) {
    case DType::F32: std::memcpy(out, b, size_t(cols) * 4); return;
    case DType::F16:
    case DType::BF16: {
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        out[i] = t == DType::F16 ? half_to_float(h) : bf16_to_float(h);
      }
      return;
    }
    case DType::I32: {
      const auto* s = reinterpret_cast<const int32_t*>(b);
      for (int64_t i = 0; i < cols; ++i) out[i] = float(s[i]);
      return;
    }
    default: break;
  }
  for (int64_t blk = 0; blk < cols / be; ++blk, b += bb) {
    float* y = out + blk * be;
    switch (t) {
      case DType::Q8_0: {
        const float d = f16_at(b);
        for (int j = 0; j < 32; ++j) y[j] = d * float(int8_t(b[2 + j]));
        break;
      }
      case DType::Q4_0: {
        const float d = f16_at(b);
        for (int j = 0; j < 16; ++j) {
          y[j] = d * float(int(b[2 + j] & 0xF) - 8);
          y[j + 16] = d * float(int(b[2 + j] >> 4) - 8);
        }
        break;
      }
      case DType::Q4_1: deq_q4_1(b, y); break;
      case DType::Q5_0: deq_q5(b, y, false); break;
      case DType::Q5_1: deq_q5(b, y, true); break;
      case DType::IQ4_NL: deq_iq4_nl(b, y); break;
      case DType::Q2_K: deq_q2_k(b, y); break;
      case DType::Q3_K: deq_q3_k(b, y); break;
      case DType::Q4_K: deq_q45_k(b, y, false); break;
      case DType::Q5_K: deq_q45_k(b, y, true); break;
      case DType::Q6_K: deq_q6_k(b, y); break;
      default: return;
    }
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t cols) {
  auto* b = static_cast<uint8_t*>(dst);
  const int64_t be = dtype_block_elems(t), bb = dtype_block_bytes(t);
  switch (t) {
    case DType::F32: std::memcpy(b, src, size_t(cols) * 4); return;
    case DType::F16:
    case DType::BF16:
      for (int64_t i = 0; i < cols; ++i) {
        const uint16_t h = t == DType::F16 ? float_to_half(src[i]) : float_to_bf16(src[i]);
        std::memcpy(b + 2 * i, &h, 2);
      }
      return;
    case DType::I32: {
      auto* d = reinterpret_cast<int32_t*>(b);
      for (int64_t i = 0; i < cols; ++i) d[i] = int32_t(src[i]);
      return;
    }
    default: break;
  }
  for (int64_t blk = 0; blk < cols / be; ++blk, b += bb) {
    const float* x = src + blk * be;
    switch (t) {
      case DType::Q8_0: {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(std::lround(x[j] * id)));
        break;
      }
      case DType::Q4_0: {
        float amax = 0, maxv = 0;
        for (int j = 0; j < 32; ++j)
          if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), maxv = x[j];
        const float d = maxv / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 16; ++j) {
          const int lo = std::min(15, int(x[j] * id + 8.5f)), hi = std::min(15, int(x[j + 16] * id + 8.5f));
          b[2 + j] = uint8_t(lo | (hi << 4));
        }
        break;
      }
      case DType::Q4_1: quant_affine32(x, b, false); break;
      case DType::Q5_0: quant_q5_0(x, b); break;
      case DType::Q5_1: quant_affine32(x, b, true); break;
      case DType::IQ4_NL: quant_iq4_nl(x, b); break;
      case DType::Q2_K: quant_q2_k(x, b); break;
      case DType::Q3_K: quant_q3_k(x, b); break;
      case DType::Q4_K: quant_q45_k(x, b, false); break;
      case DType::Q5_K: quant_q45_k(x, b, true); break;
      case DType::Q6_K: quant_q6_k(x, b); break;
      default: return;
    }
  }
}

}  // namespace pagoda
