// The CUDA kernels' block decoding (backends/cuda/cuda_quant_blocks.h), compiled here as plain host
// C++ (with __byte_perm emulated, so the same byte selectors run), against the CPU reference
// dequantizer: every block-quantized type, every 8-element group of
// thousands of blocks, compared exactly (float ==, or NaN on both sides). The blocks are random
// bytes, so every bit of every field is exercised (including f16 scales that are NaN, infinite or
// subnormal), plus blocks the reference quantizer wrote from Gaussian rows. Needs no GPU: it proves
// the layouts the kernels read; tests/cuda_test.cpp and `pagoda conformance --backend cuda` check the
// kernels themselves where a GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cuda/cuda_quant_blocks.h"

using namespace pagoda;

namespace {

bool same(float got, float want) { return got == want || (std::isnan(got) && std::isnan(want)); }

uint64_t fresh_seed() {
  const uint64_t s = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(s));
  return s;
}

std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// Decodes `blocks` (a whole number of T blocks) group by group with the CUDA decoder and compares
// each element with the reference; reports the first mismatches with their place.
template <DType T>
void expect_reference(const std::vector<uint8_t>& blocks, const std::string& what) {
  using Tr = qblocks::Traits<T>;
  static_assert(Tr::kQuant);
  ASSERT_EQ(dtype_block_elems(T), Tr::kElems) << dtype_name(T);
  ASSERT_EQ(dtype_block_bytes(T), Tr::kBytes) << dtype_name(T);
  const int64_t n_blocks = int64_t(blocks.size()) / Tr::kBytes, cols = n_blocks * Tr::kElems;
  std::vector<float> want(static_cast<size_t>(cols));
  dequantize_row(T, blocks.data(), want.data(), cols);
  int64_t bad = 0, nonzero_b = 0, unshared = 0;
  auto same_bits = [](float x, float y) { return std::memcmp(&x, &y, 4) == 0; };
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const uint8_t* b = blocks.data() + blk * Tr::kBytes;
    for (int sub = 0; sub < Tr::kElems; sub += 8) {
      float y[8];
      qblocks::dequant8<T>(b, sub, y);
      // The kernels drop b for the symmetric types (they scale a whole dot product by a)...
      const qblocks::Affine g = qblocks::scale8<T>(b, sub);
      if (!Tr::kHasMin && g.b != 0.0f) ++nonzero_b;
      // ...and decode one (a, b) per 16-aligned run of 16 elements.
      const qblocks::Affine run = qblocks::scale8<T>(b, sub & ~15);
      if (!same_bits(g.a, run.a) || !same_bits(g.b, run.b)) ++unshared;
      for (int i = 0; i < 8; ++i) {
        const int64_t e = blk * Tr::kElems + sub + i;
        if (same(y[i], want[size_t(e)])) continue;
        if (++bad <= 5)
          ADD_FAILURE() << dtype_name(T) << " " << what << ": block " << blk << " element " << sub + i << ": cuda decode "
                        << y[i] << ", reference " << want[size_t(e)];
      }
    }
  }
  EXPECT_EQ(bad, 0) << dtype_name(T) << " " << what << ": mismatching elements of " << cols;
  EXPECT_EQ(nonzero_b, 0) << dtype_name(T) << " has no min, yet scale8 returned one";
  EXPECT_EQ(unshared, 0) << dtype_name(T) << ": groups of a 16-element run with different scales";
}

template <DType T>
void check_type(std::mt19937_64& rng) {
  using Tr = qblocks::Traits<T>;
  // Random bytes: 4096 blocks, every field and bit pattern.
  expect_reference<T>(random_bytes(rng, size_t(4096) * Tr::kBytes), "random bytes");
  // Blocks as the reference quantizer writes them from real-valued rows (rows of 8 blocks).
  const int64_t cols = 8 * Tr::kElems;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint8_t> all;
  for (int r = 0; r < 64; ++r) {
    std::vector<float> x(static_cast<size_t>(cols));
    for (auto& v : x) v = nd(rng) * (r % 4 == 0 ? 1e-3f : 1.0f);
    std::vector<uint8_t> row(row_bytes(T, cols));
    quantize_row(T, x.data(), row.data(), cols);
    all.insert(all.end(), row.begin(), row.end());
  }
  expect_reference<T>(all, "quantized rows");
}

TEST(CudaDequant, EveryBlockTypeMatchesTheReferenceExactly) {
  std::mt19937_64 rng(fresh_seed());
  check_type<DType::Q8_0>(rng);
  check_type<DType::Q4_0>(rng);
  check_type<DType::Q4_1>(rng);
  check_type<DType::Q5_0>(rng);
  check_type<DType::Q5_1>(rng);
  check_type<DType::IQ4_NL>(rng);
  check_type<DType::Q2_K>(rng);
  check_type<DType::Q3_K>(rng);
  check_type<DType::Q4_K>(rng);
  check_type<DType::Q5_K>(rng);
  check_type<DType::Q6_K>(rng);
}

// Every block-quantized DType has a decoder (a type added to DType without one fails here).
TEST(CudaDequant, TraitsCoverEveryQuantizedType) {
  const bool covered[] = {
      qblocks::Traits<DType::F32>::kQuant,  qblocks::Traits<DType::F16>::kQuant,  qblocks::Traits<DType::Q8_0>::kQuant,
      qblocks::Traits<DType::Q4_0>::kQuant, qblocks::Traits<DType::I32>::kQuant,  qblocks::Traits<DType::BF16>::kQuant,
      qblocks::Traits<DType::Q4_1>::kQuant, qblocks::Traits<DType::Q5_0>::kQuant, qblocks::Traits<DType::Q5_1>::kQuant,
      qblocks::Traits<DType::IQ4_NL>::kQuant, qblocks::Traits<DType::Q2_K>::kQuant, qblocks::Traits<DType::Q3_K>::kQuant,
      qblocks::Traits<DType::Q4_K>::kQuant, qblocks::Traits<DType::Q5_K>::kQuant, qblocks::Traits<DType::Q6_K>::kQuant,
  };
  static_assert(sizeof(covered) / sizeof(covered[0]) == size_t(DType::kCount), "one entry per DType");
  for (size_t i = 0; i < size_t(DType::kCount); ++i)
    EXPECT_EQ(covered[i], dtype_info(DType(i)).quantized) << dtype_name(DType(i));
}

// BF16 (a dense type: the kernels widen it in place) for all 65536 bit patterns.
TEST(CudaDequant, Bf16MatchesTheReferenceForEveryBitPattern) {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
  std::vector<float> want(all.size());
  dequantize_row(DType::BF16, all.data(), want.data(), int64_t(all.size()));
  int64_t bad = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (!same(qblocks::bf16_float(all[i]), want[i]) && ++bad <= 5)
      ADD_FAILURE() << "bf16 0x" << std::hex << i << std::dec << ": " << qblocks::bf16_float(all[i]) << " vs " << want[i];
  EXPECT_EQ(bad, 0);
}

// The host emulation of __byte_perm follows CUDA's definition (selector nibbles, low 3 bits used).
TEST(CudaDequant, BytePermEmulationFollowsCudaDefinition) {
  const uint32_t x = 0x33221100u, y = 0x77665544u;
  EXPECT_EQ(qblocks::byte_perm(x, y, 0x3210u), 0x33221100u);
  EXPECT_EQ(qblocks::byte_perm(x, y, 0x7654u), 0x77665544u);
  EXPECT_EQ(qblocks::byte_perm(x, y, 0x0123u), 0x00112233u);
  EXPECT_EQ(qblocks::byte_perm(x, y, 0xFEDCu), 0x77665544u);  // bit 3 of a selector is ignored
  EXPECT_EQ(qblocks::byte_perm(x, y, 0x7540u | 2u), 0x77554422u);
}

// The exact small-integer conversion the decoders use instead of an int->float instruction.
TEST(CudaDequant, ByteAndSmallIntegerConversionsAreExact) {
  for (uint32_t v = 0; v < 256; ++v) {
    const uint32_t w = v << 16 | 0xA5u;
    EXPECT_EQ(qblocks::byte_float(w, 2), float(v));
    EXPECT_EQ(qblocks::small_float(v * 4099u), float(v * 4099u));
  }
  EXPECT_EQ(qblocks::small_float((1u << 23) - 1), float((1u << 23) - 1));
}

}  // namespace
