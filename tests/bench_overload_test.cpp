// `bench overload`: phase rows, refusals by reason, recovery windows (from synthetic samples, so
// the arithmetic is checked exactly), and one short real run against the queue bound.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "backends/cpu/cpu_backend.h"
#include "apps/bench/bench_overload.h"
#include "shell.h"

using namespace pagoda;

namespace {

OverloadSample sample(const char* phase, double arrival, const char* outcome, double ttft_ms = -1) {
  OverloadSample s;
  s.phase = phase;
  s.arrival_s = arrival;
  s.outcome = outcome;
  s.ttft_ms = ttft_ms;
  s.e2e_ms = ttft_ms < 0 ? -1 : ttft_ms + 10;
  s.mean_itl_ms = ttft_ms < 0 ? -1 : 1;
  s.met_slo = std::string(outcome) == "completed" && ttft_ms <= 100;
  return s;
}

TEST(BenchOverload, PhasesRefusalsAndRecoveryFromSamples) {
  OverloadConfig c;
  c.burst_s = 1;
  c.after_s = 2;
  c.window_s = 0.5;
  c.slo_ttft_ms = 100;
  std::vector<OverloadSample> v = {
      sample("warmup", 0, "completed", 50), sample("warmup", 0, "completed", 70),
      sample("burst", 0.1, "completed", 80), sample("burst", 0.2, "completed", 400), sample("burst", 0.3, "queue_full"),
      sample("burst", 0.4, "queue_full"), sample("burst", 0.5, "preemption_limit"),
      // after: window 0 [1.0, 1.5) still slow, window 1 refuses one, windows 2 and 3 are fine.
      sample("after", 1.1, "completed", 300), sample("after", 1.6, "completed", 50), sample("after", 1.7, "queue_full"),
      sample("after", 2.1, "completed", 60), sample("after", 2.7, "completed", 40)};
  const OverloadResult r = summarize_overload(c, v);
  ASSERT_EQ(r.phases.size(), 3u);
  EXPECT_EQ(r.phases[0].name, "warmup");
  EXPECT_EQ(r.phases[0].completed, 2);
  const OverloadPhase& b = r.phases[1];
  EXPECT_EQ(b.arrivals, 5);
  EXPECT_EQ(b.completed, 2);
  EXPECT_EQ(b.met_slo, 1);
  EXPECT_EQ(b.refused.at("queue_full"), 2);
  EXPECT_EQ(b.refused.at("preemption_limit"), 1);
  EXPECT_DOUBLE_EQ(b.goodput_req_s, 1.0);  // one request within the SLO over the 1 s burst
  const OverloadPhase& a = r.phases[2];
  EXPECT_EQ(a.arrivals, 5);
  EXPECT_EQ(a.met_slo, 3);
  EXPECT_DOUBLE_EQ(a.goodput_req_s, 1.5);
  ASSERT_EQ(r.windows.size(), 4u);
  EXPECT_FALSE(r.windows[0].ok);
  EXPECT_FALSE(r.windows[1].ok);
  EXPECT_EQ(r.windows[1].refused, 1);
  EXPECT_TRUE(r.windows[2].ok && r.windows[3].ok);
  EXPECT_DOUBLE_EQ(r.recovery_s, 1.0);
  // A slow last window means it never recovered for good.
  v.push_back(sample("after", 2.8, "completed", 900));
  EXPECT_LT(summarize_overload(c, v).recovery_s, 0);
}

TEST(BenchOverload, BadConfigurationsAreNamed) {
  OverloadConfig c;
  c.burst_rate = 0;
  EXPECT_FALSE(check_overload_config(c, 512).ok());
  c = {};
  c.window_s = 0;
  EXPECT_NE(check_overload_config(c, 512).error().find("window"), std::string::npos);
  c = {};
  c.prompt_len = {400, 400};
  c.gen_len = {200, 200};
  EXPECT_NE(check_overload_config(c, 512).error().find("context"), std::string::npos);
}

// A real burst against a queue bound of 2: some arrivals are refused with queue_full, warm-up is
// its own row, every arrival has a raw sample.
TEST(BenchOverload, ShortRunKeepsTheQueueBound) {
  CpuBackend be{CpuOptions{.threads = 1}};
  auto m = LoadedModel::load(std::string(PAGODA_STORIES_GGUF), be);
  if (!m) GTEST_SKIP() << "stories260K not found: " << m.error();
  OverloadConfig c;
  // ~200 arrivals in 50 ms: far past what two running slots serve (a request of this model takes
  // 2-3 ms, so at 400/s a lucky Poisson draw let one run in six drain the queue of 2 in time).
  c.burst_rate = 4000;
  c.burst_s = 0.05;
  c.after_rate = 4;
  c.after_s = 1;
  c.warmup = 2;
  c.prompt_len = {16, 16};
  c.gen_len = {16, 16};
  EngineConfig ec;
  ec.max_running = 2;
  ec.max_waiting = 2;
  auto r = bench_overload(**m, be, c, ec);
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->phases.size(), 3u);
  EXPECT_EQ(r->phases[0].arrivals, 2);
  EXPECT_EQ(r->phases[0].completed, 2);
  const OverloadPhase& b = r->phases[1];
  EXPECT_GT(b.refused.count("queue_full") ? b.refused.at("queue_full") : 0, 0) << "a 4000/s burst must overflow a queue of 2";
  int32_t arrivals = 0;
  for (const auto& p : r->phases) arrivals += p.arrivals;
  EXPECT_EQ(size_t(arrivals), r->samples.size());
  for (const auto& s : r->samples) {
    if (s.outcome == "completed") {
      EXPECT_EQ(s.generated, 16);
    }
  }
}

// The command: its --json has the phase rows, a raw sample per arrival, and the envelope names the
// tokenizer digest, the non-default engine settings and the build flags.
TEST(BenchOverload, CommandJsonHasSamplesAndFullEnvelope) {
  const std::string model = std::string(PAGODA_STORIES_GGUF);
  const auto r = pagoda::testing::run_shell(std::string(PAGODA_BINARY_DIR) + "/pagoda bench overload -m " + model +
                                                " -t 1 --burst-rate 200 --burst-s 0.2 --after-rate 5 --after-s 0.6 --warmup 1"
                                                " --max-waiting 4 --max-running 2 --prompt-len 8 --gen-len 8 --json",
                                            false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["workload"], "overload");
  EXPECT_EQ(j["tokenizer_digest"].get<std::string>().size(), 16u);
  EXPECT_FALSE(j["build_flags"].get<std::string>().empty());
  EXPECT_EQ(j["engine_non_default"]["max_waiting"], 4);  // what the run changed, and only that
  EXPECT_EQ(j["engine_non_default"]["max_running"], 2);
  EXPECT_EQ(j["engine_non_default"].size(), 2u);
  ASSERT_EQ(j["phases"].size(), 3u);
  int arrivals = 0;
  for (const auto& p : j["phases"]) arrivals += p["arrivals"].get<int>();
  EXPECT_EQ(size_t(arrivals), j["samples"].size());
  EXPECT_EQ(j["phases"][0]["phase"], "warmup");
  EXPECT_EQ(j["phases"][0]["arrivals"], 1);
  EXPECT_FALSE(j["windows"].empty());
  EXPECT_NE(pagoda::testing::run_shell(std::string(PAGODA_BINARY_DIR) + "/pagoda bench overload --burst-rate 0").code, 0);
  // The recovery chart renders from the same JSON.
  const std::string json_path = ::testing::TempDir() + "overload.json", png = ::testing::TempDir() + "overload.png";
  {
    std::FILE* f = std::fopen(json_path.c_str(), "w");
    ASSERT_TRUE(f);
    std::fwrite(r.out.data(), 1, r.out.size(), f);
    std::fclose(f);
  }
  std::remove(png.c_str());
  const auto plot = pagoda::testing::run_shell(std::string(PAGODA_BINARY_DIR) + "/pagoda bench plot " + json_path + " -o " + png);
  EXPECT_EQ(plot.code, 0) << plot.out;
  std::FILE* img = std::fopen(png.c_str(), "rb");
  ASSERT_TRUE(img) << "no chart written";
  char sig[8] = {};
  EXPECT_EQ(std::fread(sig, 1, 8, img), 8u);
  std::fclose(img);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
  std::remove(png.c_str());
  std::remove(json_path.c_str());
}

}  // namespace
