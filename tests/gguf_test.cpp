// GGUF reader/writer: round trips, and every malformed-input class gives a clear error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/gguf/gguf.h"
#include "core/gguf/gguf_writer.h"

using namespace pagoda;

namespace {

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("pagoda_gguf_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::vector<uint8_t> read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// A small valid file: a few metadata types and two tensors.
std::vector<uint8_t> sample_file() {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  std::vector<uint8_t> d(4 * 8 * 2);
  for (size_t i = 0; i < d.size(); ++i) d[i] = uint8_t(i);
  w.add_tensor("t0", GgmlType::F32, {8, 2}, d);
  w.add_tensor("t1", GgmlType::Q8_0, {32}, std::vector<uint8_t>(34, 7));
  const auto p = tmp_path("sample.gguf");
  EXPECT_TRUE(w.write(p).ok());
  auto bytes = read_file(p);
  std::filesystem::remove(p);
  return bytes;
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
  auto r = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_FALSE(r.ok()) << "expected an error mentioning '" << needle << "'";
  EXPECT_NE(r.error().find(needle), std::string::npos) << "error was: " << r.error();
}

template <typename T>
void poke(std::vector<uint8_t>& b, size_t off, T v) { std::memcpy(b.data() + off, &v, sizeof(T)); }

}  // namespace

TEST(Gguf, WriterOutputRoundTrips) {
  auto bytes = sample_file();
  auto f = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_TRUE(f.ok()) << f.error();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ(*(*f)->get_string("general.architecture"), "llama");
  EXPECT_EQ(*(*f)->get_int("llama.block_count"), 2);
  EXPECT_FLOAT_EQ(float(*(*f)->get_float("llama.rope.freq_base")), 10000.0f);
  ASSERT_EQ((*f)->find("tokenizer.ggml.tokens")->as_array()->items.size(), 3u);
  const auto* t0 = (*f)->find_tensor("t0");
  ASSERT_NE(t0, nullptr);
  EXPECT_EQ(t0->n_bytes, 64u);
  EXPECT_EQ((*f)->tensor_data(*t0)[5], 5);
  const auto* t1 = (*f)->find_tensor("t1");
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->type, GgmlType::Q8_0);
  EXPECT_EQ(t1->n_bytes, 34u);
}

TEST(Gguf, RealModelOpens) {
  const std::string p = std::string(PAGODA_STORIES_GGUF);
  if (!std::filesystem::exists(p)) GTEST_SKIP() << "missing " << p;
  auto f = GgufFile::open(p);
  ASSERT_TRUE(f.ok()) << f.error();
  EXPECT_EQ((*f)->tensors().size(), 48u);
}

TEST(Gguf, MissingFileIsClearError) {
  auto f = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().find("cannot open"), std::string::npos);
}

TEST(Gguf, WrongMagicIsRejected) {
  auto b = sample_file();
  b[0] = 'X';
  expect_error(b, "bad magic");
}

TEST(Gguf, UnsupportedVersionIsRejected) {
  auto b = sample_file();
  poke<uint32_t>(b, 4, 7);
  expect_error(b, "version 7");
}

TEST(Gguf, EveryTruncationIsAnErrorNotACrash) {
  const auto full = sample_file();
  // Cutting only the trailing alignment padding leaves a valid file; anything shorter must fail.
  auto whole = GgufFile::parse(full.data(), full.size());
  ASSERT_TRUE(whole.ok());
  uint64_t needed = 0;
  for (const auto& t : (*whole)->tensors()) needed = std::max(needed, (*whole)->data_offset() + t.offset + t.n_bytes);
  for (size_t n = 0; n < needed; ++n) {
    std::vector<uint8_t> b(full.begin(), full.begin() + long(n));
    auto r = GgufFile::parse(b.data(), b.size());
    EXPECT_FALSE(r.ok()) << "truncated to " << n << " bytes was accepted";
  }
}

TEST(Gguf, AbsurdTensorCountIsRejected) {
  auto b = sample_file();
  poke<uint64_t>(b, 8, uint64_t(1) << 60);
  expect_error(b, "tensor count");
}

TEST(Gguf, AbsurdMetadataCountIsRejected) {
  auto b = sample_file();
  poke<uint64_t>(b, 16, uint64_t(1) << 60);
  expect_error(b, "metadata count");
}

TEST(Gguf, HugeStringLengthIsRejected) {
  auto b = sample_file();
  poke<uint64_t>(b, 24, uint64_t(1) << 62);  // length of the first key
  expect_error(b, "exceeds the file");
}

// Locates a tensor info record by name in the raw bytes (name length prefix, name, n_dims...).
size_t find_tensor_info(const std::vector<uint8_t>& b, const std::string& name) {
  for (size_t i = 8; i + name.size() < b.size(); ++i) {
    uint64_t len;
    std::memcpy(&len, &b[i - 8], 8);
    if (len == name.size() && std::memcmp(&b[i], name.data(), name.size()) == 0) return i + name.size();
  }
  return 0;
}

TEST(Gguf, TensorExtentPastEofIsRejected) {
  auto b = sample_file();
  const size_t info = find_tensor_info(b, "t1");
  ASSERT_GT(info, 0u);
  // layout after the name: n_dims u32, dims u64[1], type u32, offset u64
  poke<uint64_t>(b, info + 4 + 8 + 4, uint64_t(1) << 20);
  expect_error(b, "past the end of the file");
}

TEST(Gguf, UnknownTensorTypeIsRejected) {
  auto b = sample_file();
  const size_t info = find_tensor_info(b, "t0");
  poke<uint32_t>(b, info + 4 + 16, 99);
  expect_error(b, "unsupported type code 99");
}

TEST(Gguf, TooManyDimensionsIsRejected) {
  auto b = sample_file();
  const size_t info = find_tensor_info(b, "t0");
  poke<uint32_t>(b, info, 9);
  expect_error(b, "dimensions");
}

TEST(Gguf, UnknownValueTypeIsRejected) {
  auto b = sample_file();
  // first kv: key length (8) + "general.architecture" (20) then the type
  poke<uint32_t>(b, 24 + 8 + 20, 77);
  expect_error(b, "unknown metadata value type 77");
}

TEST(Gguf, MissingKeyIsClearError) {
  auto bytes = sample_file();
  auto f = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_TRUE(f.ok());
  auto r = (*f)->get_int("llama.embedding_length");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("missing metadata key 'llama.embedding_length'"), std::string::npos);
}

// Random byte flips must never crash or hang the parser (run under ASan in CI).
TEST(Gguf, RandomCorruptionNeverCrashes) {
  const auto full = sample_file();
  uint64_t s = 0x1234567;
  const uint64_t seed = s;
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = full;
    for (int k = 0; k < 4; ++k) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      b[(s >> 33) % b.size()] = uint8_t(s >> 13);
    }
    auto r = GgufFile::parse(b.data(), b.size());
    if (r.ok()) {
      ++accepted;
      // Whatever is accepted must keep every tensor inside the file.
      for (const auto& t : (*r)->tensors()) ASSERT_LE(t.offset + t.n_bytes, (*r)->file_size());
    }
  }
  SUCCEED() << "seed " << seed << ", accepted " << accepted;
}

// A U8 array the file really holds (one byte per element) still becomes one parsed value per
// element, dozens of bytes each: its length is capped by the memory it would take, with an error
// naming the key, instead of reserve() throwing bad_alloc.
TEST(Gguf, ArrayTooLargeForMemoryIsRejected) {
  const uint64_t n = (256ull << 20) / sizeof(GgufValue) + 1;
  const std::string key = "big.array";
  std::vector<uint8_t> b;
  auto put = [&](const void* p, size_t len) { b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + len); };
  const uint32_t version = 3, array_type = uint32_t(GgufValueType::ARRAY), u8_type = uint32_t(GgufValueType::U8);
  const uint64_t n_tensors = 0, n_kv = 1, key_len = key.size();
  put("GGUF", 4);
  put(&version, 4);
  put(&n_tensors, 8);
  put(&n_kv, 8);
  put(&key_len, 8);
  put(key.data(), key.size());
  put(&array_type, 4);
  put(&u8_type, 4);
  put(&n, 8);
  b.resize(b.size() + n, 1);  // every element present: the file-size check passes
  expect_error(b, "would take");
  expect_error(b, "big.array");
}

// The CPU backend computes on the mapping: prefer_huge_pages() may drop the file's cached pages
// and read them again through it, and must leave every byte where it was. Whether the kernel gives
// 2 MiB pages depends on its THP settings, so the test checks the answer agrees with the mapping
// rather than asking for huge pages.
TEST(Gguf, HugePagePreferenceKeepsTheBytesAndTheMappingAligned) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  std::vector<uint8_t> d(size_t(66) << 20);  // past the 64 MiB below which nothing is re-read
  for (size_t i = 0; i < d.size(); ++i) d[i] = uint8_t(i * 2654435761u >> 13);
  w.add_tensor("w", GgmlType::F32, {uint64_t(d.size() / 4)}, d);
  const auto p = tmp_path("huge.gguf");
  ASSERT_TRUE(w.write(p).ok());
  auto f = GgufFile::open(p);
  ASSERT_TRUE(f.ok()) << f.error();
  const GgufTensorInfo* t = (*f)->find_tensor("w");
  ASSERT_NE(t, nullptr);
  const uint8_t* base = (*f)->tensor_data(*t) - (*f)->data_offset() - t->offset;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(base) % (size_t(2) << 20), 0u) << "the mapping starts at a 2 MiB boundary";
  const bool huge = (*f)->prefer_huge_pages();
  EXPECT_EQ(huge, (*f)->huge_page_share() >= 0.9);
  std::printf("huge pages: %s (%.0f%% of the file in 2 MiB entries)\n", huge ? "yes" : "no", 100 * (*f)->huge_page_share());
  EXPECT_EQ(std::memcmp((*f)->tensor_data(*t), d.data(), d.size()), 0);
  std::filesystem::remove(p);

  auto bytes = sample_file();
  const auto sp = tmp_path("small.gguf");  // below 64 MiB: left as it is
  std::ofstream(sp, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  auto small = GgufFile::open(sp);
  ASSERT_TRUE(small.ok()) << small.error();
  EXPECT_FALSE((*small)->prefer_huge_pages());
  std::filesystem::remove(sp);
  // An in-memory image has no mapping to prefer anything for.
  auto g = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE((*g)->prefer_huge_pages());
  EXPECT_EQ((*g)->huge_page_share(), 0.0);
}
