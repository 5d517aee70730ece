// Weights in place (issue 13 part 7): on the CPU backend the model's tensors are the bytes of the
// mapped file, with no second copy in memory, and they stay valid after the GgufFile is gone. The
// float matmul weights are the exception once decoding starts: packed once into panels
// (CpuBackend::repack_matmul_weight) in memory that replaces their mapped pages, so the resident
// set is still about one file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_ops.h"
#include "tests/generate_oracle.h"
#include "core/model/loaded_model.h"
#include "apps/bench/synth.h"
#include "tests/test_models.h"

namespace pagoda {
namespace {

// A resident-set field of /proc/self/status ("VmRSS", "RssFile"...) in bytes.
uint64_t status_bytes(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
  return 0;
}

// A random-weight model of ~40 MB at F32 (big enough that a copy shows in the resident set),
// written into `dir` (which removes it however the test ends); "" if the vocabulary is missing.
std::string synth_file(GgmlType dtype, const testing::ScratchDir& dir) {
  const std::string vocab = PAGODA_STORIES_GGUF;
  if (!std::filesystem::exists(vocab)) return {};
  SynthOptions o;
  o.shape = SynthShape{"test", 512, 1536, 3, 8, 4, 256};
  o.dtype = dtype;
  o.vocab_from = vocab;
  o.output = dir / (std::string(ggml_type_name(dtype)) + ".gguf");
  EXPECT_TRUE(synth_model(o).ok());
  return o.output;
}

std::vector<int32_t> greedy(LoadedModel& m, Backend& be, int32_t n) {
  auto out = oracle_greedy(m, be, {1, 403, 407, 12, 99}, n);
  EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error());
  return out.ok() ? *out : std::vector<int32_t>{};
}

class WeightsInPlace : public ::testing::TestWithParam<GgmlType> {};

TEST_P(WeightsInPlace, CpuTensorsAreTheMappedFileBytes) {
  const testing::ScratchDir dir("weights_bytes");
  const std::string path = synth_file(GetParam(), dir);
  if (path.empty()) GTEST_SKIP() << "missing " << PAGODA_STORIES_GGUF;
  CpuBackend be;
  auto m = LoadedModel::load(path, be);
  ASSERT_TRUE(m.ok()) << m.error();
  const GgufFile& f = *(*m)->file;
  const ModelWeights& w = (*m)->weights;
  // Float matmul weights go into panels later, as do the types with kept panels (fast::kept_panels:
  // Q8_0 and Q4_K in AVX2 builds); only the float ones are `packable` (multiplied as if packed) before.
  const bool floats = GetParam() == GgmlType::F32, packs = floats || fast::kept_panels(*dtype_from_ggml(GetParam()));
  const std::pair<const Tensor*, const char*> matrices[] = {
      {&w.output, "output.weight"}, {&w.layers[0].wq, "blk.0.attn_q.weight"}, {&w.layers[2].w_down, "blk.2.ffn_down.weight"}};
  const std::pair<const Tensor*, const char*> others[] = {{&w.tok_embd, "token_embd.weight"}};
  // Vectors are copied (a few KiB; in place each would pin its 2 MiB page of the mapping once the
  // matrices around it are packed and their pages dropped).
  const GgufTensorInfo* norm = f.find_tensor("blk.1.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_NE(CpuBackend::host(w.layers[1].attn_norm).data, f.tensor_data(*norm));
  uint64_t vector_bytes = 0;
  for (const auto& L : w.layers) vector_bytes += L.attn_norm.bytes() + L.ffn_norm.bytes();
  vector_bytes += w.output_norm.bytes();
  EXPECT_EQ(w.mapped_bytes, w.bytes - vector_bytes) << "every matrix should be used where the file is mapped";
  // After loading, every matrix is the mapped bytes; those planned for panels are packed by the
  // first decode steps (a prompt before them multiplies the mapped bytes).
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) greedy(**m, be, 3);
    for (const auto& [t, name] : matrices) {
      const GgufTensorInfo* info = f.find_tensor(name);
      ASSERT_NE(info, nullptr) << name;
      const HostTensor h = CpuBackend::host(*t);
      EXPECT_EQ(h.panels, packs && pass == 1) << name << " after " << (pass ? "decode" : "loading");
      EXPECT_EQ(h.packable, floats && pass == 0) << name << " after " << (pass ? "decode" : "loading");
      if (h.panels) EXPECT_NE(h.data, f.tensor_data(*info)) << name << " should be packed, not the mapped bytes";
      else EXPECT_EQ(h.data, f.tensor_data(*info)) << name << " is a copy, not the mapped bytes";
    }
    for (const auto& [t, name] : others) {
      const GgufTensorInfo* info = f.find_tensor(name);
      ASSERT_NE(info, nullptr) << name;
      EXPECT_FALSE(CpuBackend::host(*t).panels) << name;
      EXPECT_EQ(CpuBackend::host(*t).data, f.tensor_data(*info)) << name << " is a copy, not the mapped bytes";
    }
  }
}

TEST_P(WeightsInPlace, ResidentSetAfterLoadIsAboutOneFile) {
  const testing::ScratchDir dir("weights_rss");
  const std::string path = synth_file(GetParam(), dir);
  if (path.empty()) GTEST_SKIP() << "missing " << PAGODA_STORIES_GGUF;
  const uint64_t file = std::filesystem::file_size(path);
  CpuBackend be(CpuOptions{false, 1});
  const uint64_t before = status_bytes("VmRSS");
  if (before == 0) GTEST_SKIP() << "no /proc/self/status";
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's shadow memory and quarantine grow the resident set with every allocation
  // (the hashing threads, the decode's activations), so RSS says nothing about a second copy here;
  // CpuTensorsAreTheMappedFileBytes still checks the pointers under ASan.
  GTEST_SKIP() << "resident-set bound not meaningful under AddressSanitizer";
#endif
  // Both ways of hashing: with the digest in the background, a page the packing dropped and the
  // hashing then read would stay resident next to its panel.
  for (const bool background : {false, true}) {
    LoadOptions opt;
    opt.digest = background ? LoadOptions::Digest::Background : LoadOptions::Digest::Load;
    auto m = LoadedModel::load(path, be, {}, opt);
    ASSERT_TRUE(m.ok()) << m.error();
    greedy(**m, be, 2);  // every weight read once more, as decode does
    (*m)->weights.digest.get();
    const uint64_t grown = status_bytes("VmRSS") - std::min(before, status_bytes("VmRSS"));
    // A copy of the weights next to the mapping (what loading did before) doubles this; so would
    // the F32 weights' panels if the mapped pages they were packed from stayed resident.
    EXPECT_LT(double(grown), 1.25 * double(file) + double(4 << 20))
        << "resident set grew " << grown << " bytes for a " << file << "-byte file, digest in the "
        << (background ? "background" : "foreground");
  }
}

TEST_P(WeightsInPlace, WeightsOutliveTheGgufFile) {
  const testing::ScratchDir dir("weights_life");
  const std::string path = synth_file(GetParam(), dir);
  if (path.empty()) GTEST_SKIP() << "missing " << PAGODA_STORIES_GGUF;
  CpuBackend be(CpuOptions{false, 2});
  auto m = LoadedModel::load(path, be);
  ASSERT_TRUE(m.ok()) << m.error();
  const std::vector<int32_t> expected = greedy(**m, be, 6);
  (*m)->file.reset();  // the tensors' buffers keep the mapping alive
  std::filesystem::remove(path);
  EXPECT_EQ(greedy(**m, be, 6), expected);
}

// The digest hashed in the background is the digest hashed before loading returns, and the
// model computes the same tokens meanwhile (the F32 weights' packing waits for the hashing to
// have read their pages before dropping them).
TEST_P(WeightsInPlace, DigestInTheBackgroundIsTheSameDigest) {
  const testing::ScratchDir dir("weights_digest");
  const std::string path = synth_file(GetParam(), dir);
  if (path.empty()) GTEST_SKIP() << "missing " << PAGODA_STORIES_GGUF;
  CpuBackend be(CpuOptions{false, 2});
  auto a = LoadedModel::load(path, be);
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_TRUE((*a)->weights.digest.ready());
  const std::string digest = (*a)->weights.digest.get();
  ASSERT_EQ(digest.size(), 64u);
  const std::vector<int32_t> expected = greedy(**a, be, 4);
  a->reset();
  LoadOptions bg;
  bg.digest = LoadOptions::Digest::Background;
  auto b = LoadedModel::load(path, be, {}, bg);
  ASSERT_TRUE(b.ok()) << b.error();
  EXPECT_EQ(greedy(**b, be, 4), expected);
  EXPECT_EQ((*b)->weights.digest.get(), digest);
  EXPECT_TRUE((*b)->weights.digest.ready());
  EXPECT_GE((*b)->weights.digest.seconds(), 0.0);
  // A model freed while its digest is still being hashed stops the hashing threads (they read
  // the mapping, which goes with it) instead of leaving them running.
  for (int i = 0; i < 3; ++i) {
    auto c = LoadedModel::load(path, be, {}, bg);
    ASSERT_TRUE(c.ok()) << c.error();
  }
}

INSTANTIATE_TEST_SUITE_P(Types, WeightsInPlace, ::testing::Values(GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_K),
                         [](const auto& i) { return std::string(ggml_type_name(i.param)); });

}  // namespace
}  // namespace pagoda
