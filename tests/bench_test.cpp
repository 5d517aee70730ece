// `pagoda bench mixed | ops | attention | plot` as a user runs them: results, JSON fields, PNG output and
// errors. Nothing here asserts on how fast anything ran.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sys/wait.h>

#include "tests/shell.h"

namespace {

const std::string kBin = std::string(PAGODA_BINARY_DIR) + "/pagoda";
const std::string kStories = std::string(PAGODA_STORIES_GGUF);

using Run = pagoda::testing::ShellResult;
namespace fs = std::filesystem;

// `merge_stderr` false keeps stdout alone so JSON parses.
Run sh(const std::string& args, bool merge_stderr = true) { return pagoda::testing::run_shell(kBin + " " + args, merge_stderr); }

std::filesystem::path temp_dir() {
  auto d = std::filesystem::temp_directory_path() / ("pagoda_bench_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d;
}

// Width and height from a PNG's IHDR, after checking the signature and the chunk type.
bool png_size(const std::filesystem::path& f, uint32_t& w, uint32_t& h) {
  std::ifstream in(f, std::ios::binary);
  std::array<unsigned char, 24> b{};
  if (!in.read(reinterpret_cast<char*>(b.data()), b.size())) return false;
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!std::equal(sig, sig + 8, b.begin())) return false;
  if (std::string(b.begin() + 12, b.begin() + 16) != "IHDR") return false;
  auto be32 = [&](int o) { return uint32_t(b[o]) << 24 | uint32_t(b[o + 1]) << 16 | uint32_t(b[o + 2]) << 8 | uint32_t(b[o + 3]); };
  w = be32(16);
  h = be32(20);
  return true;
}

#define REQUIRE_MODELS() \
  if (!std::filesystem::exists(kStories)) GTEST_SKIP() << "missing " << kStories

const std::string kSmallTrace = " --requests 10 --warmup 1 --prompt-len 4:24 --gen-len 4:12 --seed 7";

}  // namespace

TEST(Bench, MixedFinishesEveryRequestWithOrderedPercentiles) {
  REQUIRE_MODELS();
  auto r = sh("bench mixed -m " + kStories + " --rate 40,200" + kSmallTrace + " --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["workload"], "mixed");
  for (const char* k : {"backend", "device", "weights_digest", "git_commit", "build_type", "trace", "slo", "clock"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  ASSERT_EQ(j["points"].size(), 2u);
  for (const auto& p : j["points"]) {
    for (const char* k : {"rate", "requests", "completed", "met_slo", "throughput_req_s", "gen_tok_s", "goodput_req_s",
                          "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "queue_p50_ms", "duration_s"}) {
      ASSERT_TRUE(p.contains(k)) << k;
    }
    EXPECT_EQ(p["requests"].get<int>(), 10);
    EXPECT_EQ(p["completed"].get<int>(), 10);
    EXPECT_LE(p["met_slo"].get<int>(), p["completed"].get<int>());
    EXPECT_GT(p["throughput_req_s"].get<double>(), 0);
    EXPECT_GT(p["gen_tok_s"].get<double>(), 0);
    EXPECT_LE(p["goodput_req_s"].get<double>(), p["throughput_req_s"].get<double>());
    EXPECT_GT(p["ttft_p50_ms"].get<double>(), 0);
    EXPECT_LE(p["ttft_p50_ms"].get<double>(), p["ttft_p99_ms"].get<double>());
    EXPECT_LE(p["itl_p50_ms"].get<double>(), p["itl_p99_ms"].get<double>());
    EXPECT_GE(p["queue_p50_ms"].get<double>(), 0);
    // Every request generates exactly its drawn length (EOS ignored): within the 4:12 range.
    EXPECT_GE(p["generated_tokens"].get<int>(), 10 * 4);
    EXPECT_LE(p["generated_tokens"].get<int>(), 10 * 12);
  }
  // Same seed at both rates: the same lengths, so the same token totals.
  EXPECT_EQ(j["points"][0]["generated_tokens"], j["points"][1]["generated_tokens"]);
}

TEST(Bench, MixedTinySloGivesZeroGoodput) {
  REQUIRE_MODELS();
  auto r = sh("bench mixed -m " + kStories + " --rate 100" + kSmallTrace + " --slo-ttft-ms 0.000001 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto p = nlohmann::json::parse(r.out)["points"][0];
  EXPECT_EQ(p["completed"].get<int>(), 10);
  EXPECT_EQ(p["met_slo"].get<int>(), 0);
  EXPECT_EQ(p["goodput_req_s"].get<double>(), 0.0);
  EXPECT_GT(p["throughput_req_s"].get<double>(), 0);
}

TEST(Bench, MixedTextTableAndHelp) {
  REQUIRE_MODELS();
  auto r = sh("bench mixed -m " + kStories + " --rate 100" + kSmallTrace + " --len-dist lognormal");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* k : {"envelope:", "Poisson", "goodput", "TTFT p50/p99"}) EXPECT_NE(r.out.find(k), std::string::npos) << k;
  auto h = sh("bench mixed --help");
  EXPECT_EQ(h.code, 0);
  for (const char* k : {"--rate", "--prompt-len", "--gen-len", "--slo-ttft-ms", "--slo-itl-ms", "lognormal", "wall clock"}) {
    EXPECT_NE(h.out.find(k), std::string::npos) << k;
  }
}

TEST(Bench, MixedRejectsBadInput) {
  struct Bad {
    std::string args, says;
  };
  const Bad cases[] = {{"--prompt-len 5:2", "--prompt-len"}, {"--gen-len 0:4", "--gen-len"}, {"--prompt-len x", "--prompt-len"},
                       {"--rate 0", "--rate"},             {"--rate -3", "--rate"},     {"--rate 2,abc", "--rate"},
                       {"--len-dist zipf", "--len-dist"}};
  for (const auto& c : cases) {
    auto r = sh("bench mixed -m " + kStories + " --requests 2 " + c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.out.find("error"), std::string::npos) << c.args << ": " << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << ": " << r.out;
  }
}

TEST(Bench, OpsReportsEveryOpWithPositiveTime) {
  auto r = sh("bench ops --backend cpu -r 2 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["workload"], "ops");
  ASSERT_EQ(j["backends"].size(), 1u);
  EXPECT_EQ(j["backends"][0]["backend"], "cpu");
  std::set<std::string> ops;
  for (const auto& row : j["backends"][0]["ops"]) {
    ops.insert(row["op"].get<std::string>());
    ASSERT_EQ(row["status"], "ok") << row.dump();
    EXPECT_GT(row["median_ms"].get<double>(), 0) << row.dump();
    EXPECT_GE(row["p99_ms"].get<double>(), row["median_ms"].get<double>()) << row.dump();
    EXPECT_EQ(row["repeats"].get<int>(), 2);
  }
  for (const char* op : {"embed", "rms_norm", "matmul", "rope", "silu_mul", "add", "kv_store", "paged_attention", "softmax",
                         "argmax", "sample_probs", "verify", "copy"}) {
    EXPECT_TRUE(ops.count(op)) << op;
  }
  auto t = sh("bench ops --backend cpu -r 1 --filter rms_norm");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("median ms"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("rms_norm"), std::string::npos) << t.out;
  EXPECT_EQ(t.out.find("matmul"), std::string::npos) << t.out;
  EXPECT_NE(sh("bench ops --backend nosuch -r 1").code, 0);
  EXPECT_NE(sh("bench ops --backend cpu --filter nothing-matches").code, 0);
}

TEST(Bench, DecodeReportsMemoryAndComputeRooflinesWithItsEnvelope) {
  REQUIRE_MODELS();
  auto r = sh("bench decode -m " + kStories + " --prompt-tokens 32 -n 8 -r 1 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["workload"], "decode");
  for (const char* k : {"backend", "device", "weights_digest", "git_commit", "build_type", "kv_dtype"})
    EXPECT_TRUE(j.contains(k) && j[k].is_string() && !j[k].get<std::string>().empty()) << k;
  EXPECT_GT(j["decode_tok_s"]["median"].get<double>(), 0);
  for (const char* k : {"read_bandwidth_gb_s", "roofline_tok_s", "fraction_of_roofline", "matmul_gflop_s",
                        "prefill_compute_roofline_tok_s", "prefill_fraction_of_compute_roofline"})
    EXPECT_GT(j[k].get<double>(), 0) << k;
  EXPECT_EQ(j["roofline_bandwidth"], "host read");
  // The roofline counts the bytes a step streams, by part, not every weight byte: the embedding
  // table contributes one row, the K/V term is the mean context's, and the parts add up.
  const auto& b = j["byte_budget"];
  uint64_t parts = 0;
  for (const char* k : {"matmul_weights", "embedding_row", "norms", "kv_read", "kv_write"}) {
    EXPECT_GT(b[k].get<uint64_t>(), 0u) << k;
    parts += b[k].get<uint64_t>();
  }
  EXPECT_EQ(b["total"].get<uint64_t>(), parts);
  EXPECT_LT(b["embedding_row"].get<uint64_t>(), 4096u);  // one row of a 64-wide F32 table: 256 bytes
  EXPECT_DOUBLE_EQ(b["kv_context_mean"].get<double>(), 32 + 8 / 2.0);
  EXPECT_NEAR(j["roofline_tok_s"].get<double>(), j["read_bandwidth_gb_s"].get<double>() * 1e9 / double(parts),
              1e-6 * j["roofline_tok_s"].get<double>());
  EXPECT_GT(j["fma_peak"]["gflop_s"].get<double>(), 0);
  EXPECT_EQ(j["prefill_compute_roof"], "fma peak");
  EXPECT_NEAR(j["prefill_compute_roofline_tok_s"].get<double>(),
              j["fma_peak"]["gflop_s"].get<double>() * 1e9 / j["prefill_flop_per_token"].get<double>(), 1e-6 * j["prefill_compute_roofline_tok_s"].get<double>());
  // The envelope records the threads that ran and the cache's real block size.
  EXPECT_GT(j["threads"].get<int>(), 0);
  EXPECT_EQ(j["threads"], j["read_bandwidth_threads"]);
  EXPECT_EQ(j["block_size"].get<int>(), 16);
  EXPECT_EQ(j["weight_dtype"], "f32");
  auto t2 = sh("bench decode -m " + kStories + " -n 4 -r 1 -t 1 --backend cpu --json", false);
  ASSERT_EQ(t2.code, 0) << t2.out;
  EXPECT_EQ(nlohmann::json::parse(t2.out)["threads"].get<int>(), 1);
  EXPECT_FALSE(nlohmann::json::parse(t2.out).contains("host_pool"));  // one thread: nothing to share
  // Two threads: each one's share of the decode rows, summing to 1, and the waiting as a fraction.
  auto t3 = sh("bench decode -m " + kStories + " -n 4 -r 1 -t 2 --backend cpu --json", false);
  ASSERT_EQ(t3.code, 0) << t3.out;
  const auto p = nlohmann::json::parse(t3.out)["host_pool"];
  ASSERT_EQ(p["shares"].size(), 2u) << t3.out;
  EXPECT_NEAR(p["shares"][0].get<double>() + p["shares"][1].get<double>(), 1.0, 1e-9);
  EXPECT_GE(p["balanced_jobs"].get<int64_t>(), 0);
  EXPECT_GE(p["idle_fraction"].get<double>(), 0.0);
  EXPECT_LE(p["idle_fraction"].get<double>(), 1.0);
  auto t = sh("bench decode -m " + kStories + " -n 4 -r 1");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("of roofline"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("prefill roof"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("bytes per decoded token"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("FMA peak"), std::string::npos) << t.out;
  EXPECT_NE(sh("bench decode -m /nonexistent.gguf -r 1").code, 0);
  auto kv = sh("bench decode -m " + kStories + " -n 4 -r 1 --kv-dtype q4");
  EXPECT_NE(kv.code, 0);
  EXPECT_NE(kv.out.find("--kv-dtype"), std::string::npos) << kv.out;
}

// Number lists are parsed strictly (every item whole), sizes too; valid forms still work.
TEST(Bench, NumberListsAndSizesAreStrict) {
  REQUIRE_MODELS();
  struct Bad {
    std::string args, says;
  };
  const Bad cases[] = {{"batch --streams 4x", "--streams"},       {"batch --streams 1,,2", "--streams"},
                       {"batch --streams 2.5", "--streams"},      {"batch --streams 0", "--streams"},
                       {"attention --ctx 1024k", "--ctx"},        {"capacity --kv-memory 1.2.3MiB", "invalid size"},
                       {"capacity --kv-memory .MiB", "invalid size"},
                       {"capacity --kv-memory 99999999999GiB", "too large"}};
  for (const auto& c : cases) {
    const bool attention = c.args.rfind("attention", 0) == 0;  // no model, no -n
    auto r = sh("bench " + c.args + (attention ? "" : " -m " + kStories + " -n 2") + " -r 1");
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << ": " << r.out;
  }
  auto ok = sh("bench batch -m " + kStories + " --streams 1,2 -n 2 -r 1 --json", false);
  ASSERT_EQ(ok.code, 0) << ok.out;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["points"].size(), 2u);
}

// The same trace served to completion three ways; a budget too small for the trace's peak makes
// the paged pool preempt, and that work is reported, not hidden.
TEST(Bench, CapacityServesOneTraceAndReportsPreemptions) {
  REQUIRE_MODELS();
  auto r = sh("bench capacity -m " + kStories + " --requests 16 --kv-memory 3MiB -r 1 -t 1 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["workload"], "capacity");
  EXPECT_EQ(j["requests"], 16);
  const auto& p = j["paged"];
  const auto& fair = j["contiguous_longest_request"];
  const auto& ctx = j["contiguous_context"];
  for (const auto* side : {&p, &fair, &ctx}) {
    EXPECT_EQ((*side)["completed"], 16) << side->dump();
    EXPECT_GT((*side)["mean_concurrent"].get<double>(), 0) << side->dump();
    EXPECT_LE((*side)["mean_concurrent"].get<double>(), (*side)["peak_concurrent"].get<double>() + 1e-9) << side->dump();
  }
  EXPECT_EQ(p["generated_tokens"], fair["generated_tokens"]);  // the same work on every side
  EXPECT_EQ(p["generated_tokens"], ctx["generated_tokens"]);
  EXPECT_GT(p["preemptions"].get<int>(), 0);
  EXPECT_GT(p["recomputed_tokens"].get<int>(), 0);
  EXPECT_EQ(fair["preemptions"], 0);
  EXPECT_EQ(ctx["preemptions"], 0);
  const int longest = j["longest_request_tokens"].get<int>();
  EXPECT_EQ(fair["slot_tokens"], longest);
  EXPECT_EQ(fair["slots"].get<int64_t>(), int64_t((3 << 20) / (j["bytes_per_token"].get<int64_t>() * longest)));
  EXPECT_EQ(ctx["slot_tokens"], j["context"]);
  EXPECT_LE(fair["peak_concurrent"].get<int>(), fair["slots"].get<int>());
  EXPECT_LE(ctx["peak_concurrent"].get<int>(), ctx["slots"].get<int>());
  EXPECT_NEAR(j["ratio_vs_longest_request"].get<double>(),
              p["mean_concurrent"].get<double>() / fair["mean_concurrent"].get<double>(), 1e-9);
  EXPECT_NEAR(j["ratio_vs_context"].get<double>(), p["mean_concurrent"].get<double>() / ctx["mean_concurrent"].get<double>(), 1e-9);
  auto t = sh("bench capacity -m " + kStories + " --requests 4 --kv-memory 3MiB -r 1 -t 1");
  ASSERT_EQ(t.code, 0) << t.out;
  for (const char* k : {"mean conc", "preempt", "recomputed", "vs longest-request slots", "vs context slots"})
    EXPECT_NE(t.out.find(k), std::string::npos) << k << "\n" << t.out;
}

TEST(Bench, PrefixSweepAndMultiTurnChat) {
  REQUIRE_MODELS();
  const fs::path dir = temp_dir() / "prefix";
  fs::create_directories(dir);
  auto r = sh("bench prefix -m " + kStories + " --prompt-tokens 96 --cached 0,0.5,0.9 -r 1 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["points"].size(), 3u);
  EXPECT_EQ(j["points"][0]["cached_tokens"], 0);
  // Reuse is whole 16-token blocks: 48 of 96 and 80 of 86.4.
  EXPECT_EQ(j["points"][1]["cached_tokens"], 48);
  EXPECT_EQ(j["points"][2]["cached_tokens"], 80);
  EXPECT_EQ(j["points"][2]["avoided_prefill_tokens"], 80);
  std::ofstream(dir / "prefix.json") << r.out;

  auto t = sh("bench prefix -m " + kStories + " --turns 4 --system-tokens 16 --user-tokens 8 --reply-tokens 8 -r 1 --json", false);
  ASSERT_EQ(t.code, 0) << t.out;
  const auto c = nlohmann::json::parse(t.out);
  ASSERT_EQ(c["turns"].size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const auto& turn = c["turns"][i];
    EXPECT_EQ(turn["turn"], i + 1);
    EXPECT_EQ(turn["prompt_tokens"], 16 + 8 * (i + 1) + 8 * i) << "the history grows by a message and a reply";
    EXPECT_GT(turn["ttft_on_ms"].get<double>(), 0);
    EXPECT_GT(turn["ttft_off_ms"].get<double>(), 0);
    // With the cache on every turn after the first reuses the full blocks of the earlier turn's prompt.
    if (i > 0) EXPECT_GE(turn["cached_tokens"].get<int>(), 16 * ((16 + 16 * i - 8) / 16)) << turn.dump();
    else EXPECT_EQ(turn["cached_tokens"], 0);
  }
  std::ofstream(dir / "chat.json") << t.out;
  auto p = sh("bench plot --dir " + dir.string() + " --out " + dir.string());
  ASSERT_EQ(p.code, 0) << p.out;
  uint32_t w = 0, h = 0;
  EXPECT_TRUE(png_size(dir / "prefix.png", w, h) && w > 0 && h > 0);
  EXPECT_TRUE(png_size(dir / "chat.png", w, h) && w > 0 && h > 0);

  for (const std::string bad : {"--cached 1.5", "--cached 0.2,x", "--turns 100 --system-tokens 400"}) {
    auto b = sh("bench prefix -m " + kStories + " -r 1 " + bad);
    EXPECT_NE(b.code, 0) << bad;
    EXPECT_NE(b.out.find("error"), std::string::npos) << bad << ": " << b.out;
  }
  fs::remove_all(temp_dir());
}

TEST(Bench, AttentionReportsBandwidthPerContext) {
  // Small: two contexts, one inside a CPU decode span and one past it, reference backend as well.
  for (const char* be : {"cpu", "cpu-ref"}) {
    auto r = sh(std::string("bench attention --backend ") + be + " --ctx 100,700 --seqs 3 --heads 8 --kv-heads 2 --head-dim 64 -r 2 --json",
                false);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["workload"], "attention");
    EXPECT_EQ(j["backend"], be);
    EXPECT_GT(j["copy_bandwidth_gb_s"].get<double>(), 0);
    ASSERT_EQ(j["contexts"].size(), 2u);
    for (const auto& c : j["contexts"]) {
      EXPECT_EQ(c["n_seqs"], 3);
      // 3 sequences x ctx x 2 KV heads x 64 dims x 2 bytes (F16) x 2 (K and V).
      EXPECT_DOUBLE_EQ(c["kv_bytes"].get<double>(), 3.0 * c["ctx"].get<double>() * 2 * 64 * 2 * 2);
      EXPECT_GT(c["gb_s"].get<double>(), 0);
      EXPECT_LE(c["nmse"].get<double>(), 1e-4);
    }
  }
  auto t = sh("bench attention --ctx 64 --seqs 1 --kv-dtype f32 -r 1");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("of copy"), std::string::npos) << t.out;
  const std::pair<std::string, std::string> bad[] = {{"--ctx 0", "context"},           {"--ctx 12,x", "--ctx"},
                                                      {"--heads 6 --kv-heads 4", "n_kv_heads"}, {"--kv-dtype q8_0", "--kv-dtype"},
                                                      {"--backend nosuch", "nosuch"}};
  for (const auto& [args, says] : bad) {
    auto b = sh("bench attention -r 1 --seqs 1 " + args);
    EXPECT_NE(b.code, 0) << args;
    EXPECT_NE(b.out.find(says), std::string::npos) << args << ": " << b.out;
  }
}

TEST(Bench, PlotWritesValidPngs) {
  const auto dir = temp_dir();
  nlohmann::json mixed = {{"workload", "mixed"}, {"backend", "cpu"}, {"points", nlohmann::json::array()}};
  for (double rate : {1.0, 2.0, 4.0}) {
    mixed["points"].push_back({{"rate", rate}, {"ttft_p50_ms", 10 * rate}, {"ttft_p99_ms", 30 * rate}, {"itl_p99_ms", 4.0},
                               {"throughput_req_s", rate * 0.9}, {"goodput_req_s", rate * 0.5}});
  }
  nlohmann::json batch = {{"workload", "batch"}, {"points", nlohmann::json::array()}};
  for (int s : {1, 2, 4, 8}) batch["points"].push_back({{"streams", s}, {"gen_tok_s", 100.0 * s}, {"speedup_vs_1", double(s)}});
  nlohmann::json spec = {{"workload", "spec"}, {"points", nlohmann::json::array()}};
  for (const char* k : {"off", "k=1", "k=2", "auto"}) spec["points"].push_back({{"k", k}, {"speedup", 1.5}});
  nlohmann::json ops = {{"workload", "ops"}, {"backends", nlohmann::json::array()}};
  for (const char* b : {"cpu", "vulkan"}) {
    ops["backends"].push_back({{"backend", b}, {"ops", {{{"op", "matmul"}, {"dtype", "f32"}, {"shape", "x"}, {"status", "ok"}, {"median_ms", 0.5}},
                                                        {{"op", "add"}, {"dtype", "f32"}, {"shape", "y"}, {"status", "ok"}, {"median_ms", 0.01}}}}});
  }
  nlohmann::json decode = {{"workload", "decode"}};  // no chart: skipped by --dir
  for (auto& [name, j] : std::vector<std::pair<std::string, nlohmann::json>>{{"mixed", mixed}, {"batch", batch}, {"spec", spec}, {"ops", ops}, {"decode", decode}}) {
    std::ofstream(dir / (name + ".json")) << j.dump();
  }
  auto r = sh("bench plot " + (dir / "mixed.json").string() + " -o " + (dir / "one.png").string());
  ASSERT_EQ(r.code, 0) << r.out;
  uint32_t w = 0, h = 0;
  ASSERT_TRUE(png_size(dir / "one.png", w, h));
  EXPECT_EQ(w, 900u);
  EXPECT_EQ(h, 880u);  // two panels: latency, then throughput and goodput
  const auto out = dir / "plots";
  r = sh("bench plot --dir " + dir.string() + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* name : {"mixed", "batch", "spec", "ops"}) {
    ASSERT_TRUE(png_size(out / (std::string(name) + ".png"), w, h)) << name;
    EXPECT_EQ(w, 900u) << name;
    EXPECT_GT(h, 100u) << name;
    EXPECT_GT(std::filesystem::file_size(out / (std::string(name) + ".png")), 1000u) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(out / "decode.png"));
  std::filesystem::remove_all(dir);
}

TEST(Bench, PlotRejectsUnknownOrBrokenInput) {
  const auto dir = temp_dir();
  std::ofstream(dir / "weird.json") << R"({"workload": "teleport", "points": []})";
  std::ofstream(dir / "broken.json") << "{not json";
  std::ofstream(dir / "nopoints.json") << R"({"workload": "batch"})";
  auto r = sh("bench plot " + (dir / "weird.json").string() + " -o " + (dir / "w.png").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("no chart for workload 'teleport'"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "w.png"));
  r = sh("bench plot " + (dir / "broken.json").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("not valid JSON"), std::string::npos) << r.out;
  r = sh("bench plot " + (dir / "nopoints.json").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("points"), std::string::npos) << r.out;
  r = sh("bench plot " + (dir / "missing.json").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("cannot open"), std::string::npos) << r.out;
  EXPECT_NE(sh("bench plot").code, 0);
  std::filesystem::remove_all(dir);
}
