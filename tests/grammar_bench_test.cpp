// The grammar mask benchmark's report: every case measured, times positive and ordered.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/bench/bench_grammar.h"

namespace pagoda::cli {
namespace {

TEST(GrammarBench, JsonReportHasEveryCaseWithMedianAndP99) {
  const std::string vocab = std::string(PAGODA_MODELS_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";
  if (!std::ifstream(vocab).good()) GTEST_SKIP() << vocab << " not found";
  GrammarBenchOptions o;
  o.vocab = vocab;  // the library's default is relative to the repository root, where users run `pagoda`
  o.repeats = 1;
  o.json = true;
  ::testing::internal::CaptureStdout();
  const int rc = run_grammar_bench(o);
  const std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["workload"], "grammar");
  EXPECT_EQ(j["vocab_size"], 32000);
  ASSERT_EQ(j["cases"].size(), 4u);
  for (const auto& c : j["cases"]) {
    EXPECT_GT(c["tokens"].get<int>(), 10) << c["name"];
    for (const char* regime : {"cold", "generation", "cached"}) {
      EXPECT_GT(c[regime]["median_us"].get<double>(), 0.0) << c["name"] << " " << regime;
      EXPECT_GE(c[regime]["p99_us"].get<double>(), c[regime]["median_us"].get<double>()) << c["name"] << " " << regime;
      EXPECT_EQ(c[regime]["masks"].get<size_t>(), c["tokens"].get<size_t>() + 1) << c["name"] << " " << regime;
    }
  }
}

TEST(GrammarBench, MissingVocabularyIsAnError) {
  GrammarBenchOptions o;
  o.vocab = "/nonexistent/vocab.gguf";
  ::testing::internal::CaptureStderr();
  EXPECT_NE(run_grammar_bench(o), 0);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("/nonexistent/vocab.gguf"), std::string::npos);
}

}  // namespace
}  // namespace pagoda::cli
