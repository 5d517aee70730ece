// Weight layouts: hand-built blocks decode to values worked out by hand from ggml's block
// definitions, every type round-trips through our quantizer within its expected error, and the
// type tables agree with each other.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backends/cpu/cpu_ops.h"
#include "core/gguf/gguf.h"
#include "core/model/model_weights.h"
#include "core/util/half.h"

using namespace pagoda;

namespace {

void put_half(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = float_to_half(v);
  std::memcpy(b.data() + at, &h, 2);
}

std::vector<float> decode(DType t, const std::vector<uint8_t>& block) {
  std::vector<float> out(size_t(dtype_block_elems(t)));
  dequantize_row(t, block.data(), out.data(), dtype_block_elems(t));
  return out;
}

const DType kQuantTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL,
                             DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

}  // namespace

TEST(Quant, TypeTableMatchesGgmlSizes) {
  for (int i = 0; i < int(DType::kCount); ++i) {
    const DType t = DType(i);
    if (t == DType::I32) continue;
    const GgmlType g = ggml_from_dtype(t);
    EXPECT_EQ(dtype_block_elems(t), ggml_block_elems(g)) << dtype_name(t);
    EXPECT_EQ(dtype_block_bytes(t), ggml_block_bytes(g)) << dtype_name(t);
    auto back = dtype_from_ggml(g);
    ASSERT_TRUE(back.ok()) << dtype_name(t);
    EXPECT_EQ(*back, t);
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  }
  EXPECT_EQ(dtype_block_bytes(DType::Q4_K), 144);
  EXPECT_EQ(dtype_block_bytes(DType::Q6_K), 210);
  EXPECT_FALSE(dtype_from_name("q7_k").has_value());
}

TEST(Quant, UnknownGgmlTypesAreNamedAndRefused) {
  EXPECT_STREQ(ggml_type_name(GgmlType::IQ2_XXS), "IQ2_XXS");
  EXPECT_TRUE(ggml_type_known(16));
  EXPECT_FALSE(ggml_type_known(31));  // a removed code
  auto r = dtype_from_ggml(GgmlType::IQ2_XXS);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "type IQ2_XXS, which Pagoda does not support");
}

TEST(Quant, Bf16IsTheTopHalfOfF32) {
  std::vector<uint8_t> b = {0x80, 0x3f, 0x40, 0xc0};  // 1.0, -3.0
  std::vector<float> out(2);
  dequantize_row(DType::BF16, b.data(), out.data(), 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -3.0f);
  const float x[2] = {1.00390625f, 3.14159f};  // halfway case rounds to even; pi rounds to 3.140625
  quantize_row(DType::BF16, x, b.data(), 2);
  dequantize_row(DType::BF16, b.data(), out.data(), 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 3.140625f);
}

TEST(Quant, Q4_1AndQ5BlocksDecodeByHand) {
  std::vector<uint8_t> b(20, 0);
  put_half(b, 0, 0.5f);   // d
  put_half(b, 2, -1.0f);  // m
  b[4 + 3] = 0x7A;        // elem 3 = 10, elem 19 = 7
  auto y = decode(DType::Q4_1, b);
  EXPECT_FLOAT_EQ(y[3], 0.5f * 10 - 1.0f);
  EXPECT_FLOAT_EQ(y[19], 0.5f * 7 - 1.0f);
  EXPECT_FLOAT_EQ(y[0], -1.0f);

  std::vector<uint8_t> q5(22, 0);
  put_half(q5, 0, 2.0f);
  const uint32_t qh = (1u << 5) | (1u << 21);  // fifth bit of elem 5 and elem 21
  std::memcpy(q5.data() + 2, &qh, 4);
  q5[6 + 5] = 0x31;  // elem 5 low nibble 1, elem 21 high nibble 3
  y = decode(DType::Q5_0, q5);
  EXPECT_FLOAT_EQ(y[5], 2.0f * ((16 + 1) - 16));
  EXPECT_FLOAT_EQ(y[21], 2.0f * ((16 + 3) - 16));
  EXPECT_FLOAT_EQ(y[0], 2.0f * -16);

  std::vector<uint8_t> q51(24, 0);
  put_half(q51, 0, 0.25f);
  put_half(q51, 2, 1.0f);
  std::memcpy(q51.data() + 4, &qh, 4);
  q51[8 + 5] = 0xF2;
  y = decode(DType::Q5_1, q51);
  EXPECT_FLOAT_EQ(y[5], 0.25f * 18 + 1.0f);
  EXPECT_FLOAT_EQ(y[21], 0.25f * 31 + 1.0f);
}

TEST(Quant, Iq4NlUsesTheNonLinearTable) {
  std::vector<uint8_t> b(18, 0);
  put_half(b, 0, 0.5f);
  b[2] = 0xF0;  // elem 0 -> code 0 (-127), elem 16 -> code 15 (113)
  b[3] = 0x98;  // elem 1 -> code 8 (1), elem 17 -> code 9 (13)
  const auto y = decode(DType::IQ4_NL, b);
  EXPECT_FLOAT_EQ(y[0], 0.5f * -127);
  EXPECT_FLOAT_EQ(y[16], 0.5f * 113);
  EXPECT_FLOAT_EQ(y[1], 0.5f * 1);
  EXPECT_FLOAT_EQ(y[17], 0.5f * 13);
}

TEST(Quant, Q2KBlockDecodesByHand) {
  std::vector<uint8_t> b(84, 0);
  put_half(b, 80, 0.5f);   // d
  put_half(b, 82, 0.25f);  // dmin
  // Elem 128 + 32*2 + 17 = 209: half n=1, shift group j=2, sub-block 8+4+1 = 13.
  b[13] = (0x3 << 4) | 0x6;           // scale 6, min 3
  b[16 + 32 + 17] = uint8_t(2 << 4);  // q = 2 at shift 4
  const auto y = decode(DType::Q2_K, b);
  EXPECT_FLOAT_EQ(y[209], 0.5f * 6 * 2 - 0.25f * 3);
  EXPECT_FLOAT_EQ(y[208], -0.25f * 3);  // same sub-block, q 0: only the min remains
  EXPECT_FLOAT_EQ(y[207], 0.0f);         // sub-block 12: scale and min 0
}

TEST(Quant, Q3KBlockDecodesByHand) {
  std::vector<uint8_t> b(110, 0);
  put_half(b, 108, 0.5f);
  // Sub-block 13 (elem 128 + 64 + 16..31): 6-bit value 40 -> scale 8. Low nibble in the high half
  // of byte 13-8 = 5, top bits (40 >> 4 = 2) at bits 6..7 of byte 8 + 13 % 4 = 9.
  b[96 + 5] = uint8_t(8 << 4);
  b[96 + 9] = uint8_t(2 << 6);
  // Elem 209 = 128 + 32*2 + 17: low bits (qs[32+17] >> 4) & 3 = 3, hmask[17] bit 4+2 set: q = 3.
  b[32 + 32 + 17] = uint8_t(3 << 4);
  b[17] = uint8_t(1 << 6);
  // Elem 208: low bits 1, high bit clear: q = 1 - 4 = -3.
  b[32 + 32 + 16] = uint8_t(1 << 4);
  const auto y = decode(DType::Q3_K, b);
  EXPECT_FLOAT_EQ(y[209], 0.5f * 8 * 3);
  EXPECT_FLOAT_EQ(y[208], 0.5f * 8 * -3);
  EXPECT_FLOAT_EQ(y[0], 0.5f * -32 * -4);  // every other scale is 0 - 32, q = 0 - 4
}

TEST(Quant, Q4KAndQ5KBlocksDecodeByHand) {
  std::vector<uint8_t> b(144, 0);
  put_half(b, 0, 0.5f);
  put_half(b, 2, 0.125f);
  // Sub-block 1 (j < 4): scale in byte 4+1 low 6 bits, min in byte 4+5.
  b[4 + 1] = 9;
  b[4 + 5] = 4;
  // Sub-block 6 (j >= 4): scale = (byte 4+10 & 15) | (byte 4+2 >> 6) << 4 = 3 | 1<<4 = 19,
  // min = (byte 4+10 >> 4) | (byte 4+6 >> 6) << 4 = 5 | 2<<4 = 37.
  b[4 + 10] = 0x53;
  b[4 + 2] = 0x40;
  b[4 + 6] = 0x80;
  b[16 + 0 * 32 + 3] = 0x70;  // elem 32+3 (sub-block 1, high nibble) = 7
  b[16 + 3 * 32 + 4] = 0x0B;  // elem 192+4 (sub-block 6, low nibble) = 11
  auto y = decode(DType::Q4_K, b);
  EXPECT_FLOAT_EQ(y[35], 0.5f * 9 * 7 - 0.125f * 4);
  EXPECT_FLOAT_EQ(y[196], 0.5f * 19 * 11 - 0.125f * 37);

  std::vector<uint8_t> q5(176, 0);
  std::memcpy(q5.data(), b.data(), 16);  // same d, dmin and scales
  q5[48 + 0 * 32 + 3] = 0x70;
  q5[48 + 3 * 32 + 4] = 0x0B;
  q5[16 + 3] = 1 << 1;  // fifth bit of elem 32+3 (chunk 0, high half)
  q5[16 + 4] = 1 << 6;  // fifth bit of elem 192+4 (chunk 3, low half)
  y = decode(DType::Q5_K, q5);
  EXPECT_FLOAT_EQ(y[35], 0.5f * 9 * 23 - 0.125f * 4);
  EXPECT_FLOAT_EQ(y[196], 0.5f * 19 * 27 - 0.125f * 37);
}

TEST(Quant, Q6KBlockDecodesByHand) {
  std::vector<uint8_t> b(210, 0);
  put_half(b, 208, 0.5f);
  auto* sc = reinterpret_cast<int8_t*>(b.data() + 192);
  // Elem 128 + 64 + 5 = 197: n=1, k=2 (high nibble of ql[64+5]), qh[32+5] bits 4..5, scale 8+4+0.
  sc[12] = -3;
  b[64 + 5] = 0xA0;                 // high nibble 10
  b[128 + 32 + 5] = uint8_t(2 << 4);  // top bits 2: q = 10 | 32 = 42, value 42 - 32 = 10
  // Elem 128 + 96 + 20 = 244: k=3 (high nibble of ql[64+32+20]), qh bits 6..7, scale 8+6+1.
  sc[15] = 7;
  b[64 + 32 + 20] = 0x10;  // high nibble 1, top bits 0: 1 - 32 = -31
  const auto y = decode(DType::Q6_K, b);
  EXPECT_FLOAT_EQ(y[197], 0.5f * -3 * 10);
  EXPECT_FLOAT_EQ(y[244], 0.5f * 7 * -31);
}

// Quantize random rows and decode them: relative RMS error within what the bit width allows
// (measured for this quantizer, with margin), and every type distinguishes a permuted row.
TEST(Quant, EveryTypeRoundTripsWithinItsBitBudget) {
  const uint64_t seed = 20261201;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t cols = 1024;
  std::vector<float> x(cols), y(cols);
  for (auto& v : x) v = nd(rng);
  struct Bound { DType t; double rel_rms; };
  const Bound bounds[] = {
      {DType::F16, 1e-3},  {DType::BF16, 5e-3}, {DType::Q8_0, 0.01}, {DType::Q6_K, 0.04}, {DType::Q5_0, 0.06},
      {DType::Q5_1, 0.06}, {DType::Q5_K, 0.06}, {DType::Q4_0, 0.12}, {DType::Q4_1, 0.12}, {DType::IQ4_NL, 0.12},
      {DType::Q4_K, 0.12}, {DType::Q3_K, 0.25}, {DType::Q2_K, 0.5},
  };
  for (const auto& b : bounds) {
    std::vector<uint8_t> q(row_bytes(b.t, cols));
    quantize_row(b.t, x.data(), q.data(), cols);
    dequantize_row(b.t, q.data(), y.data(), cols);
    double num = 0, den = 0;
    for (int64_t i = 0; i < cols; ++i) num += double(y[size_t(i)] - x[size_t(i)]) * (y[size_t(i)] - x[size_t(i)]), den += double(x[size_t(i)]) * x[size_t(i)];
    const double rel = std::sqrt(num / den);
    EXPECT_LT(rel, b.rel_rms) << dtype_name(b.t) << " seed " << seed;
    EXPECT_GT(rel, 0.0) << dtype_name(b.t) << " is lossy: an exact round trip means nothing was quantized";
  }
}

// A constant row and an all-zero row (zero scales) decode without NaN for every type.
TEST(Quant, DegenerateRowsStayFinite) {
  const int64_t cols = 256;
  for (DType t : kQuantTypes) {
    for (float c : {0.0f, 0.75f, -2.0f}) {
      std::vector<float> x(cols, c), y(cols);
      std::vector<uint8_t> q(row_bytes(t, cols));
      quantize_row(t, x.data(), q.data(), cols);
      dequantize_row(t, q.data(), y.data(), cols);
      for (int64_t i = 0; i < cols; ++i) {
        ASSERT_TRUE(std::isfinite(y[size_t(i)])) << dtype_name(t) << " const " << c;
        EXPECT_NEAR(y[size_t(i)], c, 0.15 * std::fabs(c) + 1e-6) << dtype_name(t) << " const " << c << " at " << i;
      }
    }
  }
}
