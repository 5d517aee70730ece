// Device-resident decode (core/engine/device_decode.h): with device sampling on, greedy output is
// the host's and the cpu backend's (with penalties and logit_bias too, bit for bit), speculation
// verified on the device changes nothing under greedy, seeded runs are reproducible under every
// filter, device draws follow the host sampler's distribution for temperature, top-k, top-p and
// min-p (chi-squared), sampled speculation verified on the device draws the second token from the
// target's distribution, and a request the device ops cannot serve (logprobs) falls back to the
// host in the same step. The Vulkan and CUDA tests skip, saying why, where no such device exists;
// the same checks run on the cpu backend forced on (its ops are the reference implementations).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "backends/backend.h"
#include "core/engine/device_decode.h"
#include "core/engine/engine.h"
#include "core/sample/sampler.h"
#include "tests/test_models.h"

using namespace pagoda;

namespace {

// stories260K on a backend, shared by the tests here (tests/test_models.h).
using Loaded = pagoda::testing::LoadedOn;
Loaded& loaded(const std::string& backend) { return pagoda::testing::stories260K_on(backend); }

#define REQUIRE_BACKEND(name)                                                  \
  Loaded& L = loaded(name);                                                    \
  if (!L.why.empty()) GTEST_SKIP() << L.why;

struct Served {
  std::vector<std::vector<int32_t>> tokens;
  Counters counters;
};

// share_prompt: every request after the first prefills from it (Request::prefill_from), which
// keeps thousands of one-prompt draws cheap.
Served run_all(Loaded& l, EngineConfig cfg, const std::vector<Request>& reqs, bool share_prompt = false) {
  Served out;
  auto e = Engine::create(*l.m, *l.be, cfg);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error());
  if (!e) return out;
  out.tokens.resize(reqs.size());
  uint64_t first_id = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    Request rq = reqs[i];
    if (share_prompt) rq.prefill_from = first_id;
    auto r = (*e)->submit(rq, [&out, i](const TokenEvent& ev) {
      if (ev.token >= 0) out.tokens[i].push_back(ev.token);
      if (ev.finished) {
        EXPECT_TRUE(ev.reason == FinishReason::Length || ev.reason == FinishReason::Eos) << ev.error;
      }
    });
    EXPECT_TRUE(r.ok()) << r.message;
    if (i == 0) first_id = r.id;
  }
  for (int s = 0; s < 100000 && !(*e)->idle(); ++s) EXPECT_TRUE((*e)->step().ok());
  EXPECT_TRUE((*e)->idle());
  (*e)->publish_snapshot();
  out.counters = (*e)->snapshot()->counters;
  return out;
}

Request req(const std::string& prompt, int32_t n, float temperature, uint64_t seed = 0) {
  Request r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.stop_at_eos = false;
  r.sampling.temperature = temperature;
  r.sampling.top_k = 0;
  r.sampling.top_p = 1.0f;
  r.sampling.min_p = 0.0f;
  r.sampling.seed = seed;
  return r;
}

std::vector<Request> greedy_workload() {
  std::vector<Request> v;
  for (const char* p : {"Once upon a time", "Lily and Ben went to the park", "The little dog", "One day, a cat saw"})
    v.push_back(req(p, 40, 0.0f));
  return v;
}

EngineConfig with_device(const std::string& mode) {
  EngineConfig c;
  c.max_batch_tokens = 64;
  c.max_waiting = 4096;  // the distribution test submits thousands of one-token requests at once
  c.device_sampling = mode;
  return c;
}

// Chi-squared of counts against probabilities, bins with expectation under 5 pooled into one;
// returns (statistic, degrees of freedom).
std::pair<double, int> chi2(const std::vector<uint64_t>& counts, const std::vector<float>& p, uint64_t n) {
  double x = 0, pooled_e = 0, pooled_c = 0;
  int bins = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = double(p[i]) * double(n);
    if (e < 5) {
      pooled_e += e;
      pooled_c += double(counts[i]);
      continue;
    }
    x += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
    ++bins;
  }
  if (pooled_e > 0) {
    x += (pooled_c - pooled_e) * (pooled_c - pooled_e) / pooled_e;
    ++bins;
  }
  return {x, bins - 1};
}

// Upper 0.1% point of chi-squared with `df` degrees of freedom (Wilson-Hilferty).
double chi2_crit_001(int df) {
  const double z = 3.0902, d = double(df);
  const double t = 1.0 - 2.0 / (9.0 * d) + z * std::sqrt(2.0 / (9.0 * d));
  return d * t * t * t;
}

// The host sampler's distribution for the token after `toks` (prompt plus `generated` model
// tokens), from the cpu backend's logits.
std::vector<float> host_distribution(const std::vector<int32_t>& toks, const SamplingParams& sp, size_t generated) {
  Loaded& cpu = loaded("cpu");
  EXPECT_TRUE(cpu.why.empty()) << cpu.why;
  if (!cpu.why.empty()) return {};
  auto kv = KvCache::create(*cpu.be, kv_shape(cpu.m->config, 16, DType::F32), 16);
  EXPECT_TRUE(kv.ok());
  if (!kv) return {};
  ModelRunner runner(*cpu.be, cpu.m->config, cpu.m->weights);
  BlockTable table;
  EXPECT_TRUE(kv->grow(table, int32_t(toks.size())).ok());
  ForwardBatch fb;
  fb.add_sequence(toks.data(), int32_t(toks.size()), 0, table, kv->block_size(), 1);
  std::vector<float> logits;
  EXPECT_TRUE(runner.forward(fb, *kv, &logits).ok());
  kv->release(table);
  return sampling_distribution(logits, toks, sp, generated);
}

// The filter settings the device must reproduce: each filter alone, then the defaults with
// penalties, at temperature 1.5 so that several tokens survive on the small model.
std::vector<std::pair<std::string, SamplingParams>> filter_settings() {
  std::vector<std::pair<std::string, SamplingParams>> v;
  SamplingParams base = req("", 1, 1.5f).sampling;
  SamplingParams k = base, p = base, m = base, all;
  all.temperature = 1.5f;
  k.top_k = 8;
  p.top_p = 0.7f;
  m.min_p = 0.1f;
  all.repeat_penalty = 1.1f;
  all.presence_penalty = 0.2f;
  all.frequency_penalty = 0.1f;
  v.emplace_back("top_k 8", k);
  v.emplace_back("top_p 0.7", p);
  v.emplace_back("min_p 0.1", m);
  v.emplace_back("defaults + penalties", all);
  return v;
}

}  // namespace

TEST(DeviceDecode, Settings) {
  BackendInfo gpu, host;
  gpu.name = "vulkan";
  gpu.is_gpu = true;
  host.name = "vulkan";  // a CPU Vulkan driver (lavapipe) reports is_gpu false, as cpu and cpu-ref do
  EXPECT_TRUE(*resolve_device_sampling("auto", gpu));
  EXPECT_FALSE(*resolve_device_sampling("auto", host));
  EXPECT_TRUE(*resolve_device_sampling("on", host));
  EXPECT_FALSE(*resolve_device_sampling("off", gpu));
  for (const char* name : {"cpu", "cpu-ref"}) {
    auto be = create_backend(name);
    ASSERT_TRUE(be.ok());
    EXPECT_FALSE(*resolve_device_sampling("auto", (*be)->info())) << name;
  }
  auto bad = resolve_device_sampling("yes", gpu);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("auto, on or off"), std::string::npos);
  EngineConfig c;
  c.device_sampling = "maybe";
  EXPECT_FALSE(validate_engine_config(c).ok());

  Sequence s;
  s.sampling.temperature = 0;
  EXPECT_TRUE(device_samplable(s, 512));
  s.sampling.temperature = 0.8f;  // the defaults filter with top-k, top-p and min-p
  EXPECT_TRUE(device_samplable(s, 512));
  EXPECT_FALSE(device_samplable(s, 512, true, false)) << "a backend without filter_probs";
  EXPECT_TRUE(device_filters(s.sampling).active(512));
  s.sampling.top_k = 0;
  s.sampling.top_p = 1;
  s.sampling.min_p = 0;
  EXPECT_FALSE(device_filters(s.sampling).active(512));
  EXPECT_TRUE(device_samplable(s, 512, false, false)) << "plain temperature needs neither new op";
  s.sampling.presence_penalty = 0.5f;
  EXPECT_TRUE(device_samplable(s, 512));
  EXPECT_FALSE(device_samplable(s, 512, false, true)) << "a backend without adjust_logits";
  s.sampling.presence_penalty = 0;
  s.logprobs = 0;
  EXPECT_FALSE(device_samplable(s, 512)) << "logprobs read the raw row on the host";
  s.logprobs = -1;
  s.sampling.temperature = 0;
  s.sampling.top_k = 3;
  EXPECT_FALSE(device_filters(s.sampling).active(512)) << "greedy ignores the filters";
}

class DeviceDecodeOn : public ::testing::TestWithParam<std::string> {};

TEST_P(DeviceDecodeOn, GreedyEqualsHostAndCpu) {
  REQUIRE_BACKEND(GetParam());
  const auto reqs = greedy_workload();
  const Served on = run_all(L, with_device("on"), reqs);
  const Served off = run_all(L, with_device("off"), reqs);
  Loaded& cpu = loaded("cpu");
  ASSERT_TRUE(cpu.why.empty()) << cpu.why;
  const Served ref = run_all(cpu, with_device("off"), reqs);
  ASSERT_EQ(on.tokens.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(on.tokens[i].size(), 40u);
    EXPECT_EQ(on.tokens[i], off.tokens[i]) << "request " << i << ": device vs host sampling";
    EXPECT_EQ(on.tokens[i], ref.tokens[i]) << "request " << i << ": vs the cpu backend";
  }
  EXPECT_EQ(on.counters.device_sampled_tokens, on.counters.generated_tokens) << "every token chosen on the device";
  EXPECT_EQ(on.counters.generated_tokens, 160u);
  EXPECT_EQ(off.counters.device_sampled_tokens, 0u);
}

TEST_P(DeviceDecodeOn, GreedySpeculationVerifiedOnDeviceEqualsNoSpeculation) {
  REQUIRE_BACKEND(GetParam());
  const auto reqs = greedy_workload();
  const Served plain = run_all(L, with_device("off"), reqs);
  EngineConfig cfg = with_device("on");
  cfg.spec.mode = "ngram";
  cfg.spec.k = 4;
  const Served spec = run_all(L, cfg, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(spec.tokens[i], plain.tokens[i]) << "request " << i;
  EXPECT_GT(spec.counters.spec_verify_steps, 0u);
  EXPECT_GT(spec.counters.spec_accepted, 0u) << "the n-gram drafter never hit: the test would not exercise acceptance";
  EXPECT_EQ(spec.counters.device_sampled_tokens, spec.counters.generated_tokens);
}

TEST_P(DeviceDecodeOn, SeededSamplingIsReproducibleAndMatchesTheHostSampler) {
  REQUIRE_BACKEND(GetParam());
  // Reproducible: the same seeds give the same tokens run after run, with speculation verified on
  // the device (rejection sampling with the host verifier's uniforms) too.
  std::vector<Request> reqs;
  for (uint64_t s = 0; s < 4; ++s) reqs.push_back(req("Once upon a time", 24, 0.8f, 1000 + s));
  const Served a = run_all(L, with_device("on"), reqs), b = run_all(L, with_device("on"), reqs);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.counters.device_sampled_tokens, a.counters.generated_tokens);
  EngineConfig sc = with_device("on");
  sc.spec.mode = "ngram";
  sc.spec.k = 3;
  sc.spec.ngram_n = 1;  // order 1: drafts on most steps, so sampled verification runs
  const Served sa = run_all(L, sc, reqs), sb = run_all(L, sc, reqs);
  EXPECT_EQ(sa.tokens, sb.tokens);
  EXPECT_GT(sa.counters.spec_verify_steps, 0u);
  EXPECT_EQ(sa.counters.device_sampled_tokens, sa.counters.generated_tokens);
  for (const auto& t : sa.tokens) EXPECT_EQ(t.size(), 24u);
  // Distribution: the first token of many seeded draws against softmax(logits / 0.8) from the host.
  const std::string prompt = "Lily went to the";
  SamplingParams sp = req(prompt, 1, 0.8f).sampling;
  ASSERT_FALSE(has_penalties(sp));  // the prompt as history changes nothing
  const std::vector<float> p = host_distribution(L.m->tokenizer->encode(prompt, true), sp, 0);
  ASSERT_FALSE(p.empty());

  constexpr uint64_t kDraws = 600;  // lavapipe runs 64-request steps slowly: ~1 min here
  std::vector<Request> draws;
  for (uint64_t s = 0; s < kDraws; ++s) draws.push_back(req(prompt, 1, 0.8f, 7 + s * 7919));
  const Served d = run_all(L, with_device("on"), draws, true);
  EXPECT_EQ(d.counters.device_sampled_tokens, kDraws);
  // Same Philox uniform as the host sampler: with the same seed the host draws the same token (it
  // could only differ where float rounding moves a CDF boundary across the uniform).
  const Served h = run_all(L, with_device("off"), draws, true);
  size_t same = 0;
  for (size_t i = 0; i < draws.size(); ++i) same += d.tokens[i] == h.tokens[i] ? 1 : 0;
  EXPECT_GE(double(same), 0.99 * double(kDraws)) << same << " of " << kDraws << " seeded draws agree with the host";
  std::vector<uint64_t> counts(p.size(), 0);
  for (const auto& t : d.tokens) {
    ASSERT_EQ(t.size(), 1u);
    ++counts[size_t(t[0])];
  }
  const auto [x, df] = chi2(counts, p, kDraws);
  ASSERT_GE(df, 3) << "the distribution is too peaked to test";
  EXPECT_LT(x, chi2_crit_001(df)) << "chi2 " << x << " with " << df << " degrees of freedom";
}

TEST_P(DeviceDecodeOn, UnsupportedSettingsFallBackToTheHostInTheSameStep) {
  REQUIRE_BACKEND(GetParam());
  std::vector<Request> reqs = {req("Once upon a time", 20, 0.0f), req("The little dog", 20, 0.0f),
                               req("One day, a cat saw", 20, 0.0f)};
  reqs[1].sampling.frequency_penalty = 0.5f;  // on the device (adjust_logits)
  reqs[2].logprobs = 2;                       // logprobs: the host reads its rows
  const Served on = run_all(L, with_device("on"), reqs);
  const Served off = run_all(L, with_device("off"), reqs);
  EXPECT_EQ(on.tokens, off.tokens);
  EXPECT_EQ(on.counters.device_sampled_tokens, 40u) << "all but the logprobs request on the device";
  EXPECT_EQ(on.counters.generated_tokens, 60u);
  // Once the device request ends, steps hold only the host request, on the same row: nothing of
  // the device request's logit adjustments may reach it. Its logit_bias bans every token the host
  // request produces, so a leftover list would change them.
  std::vector<Request> pair = {req("Once upon a time", 4, 0.0f), req("The little dog", 20, 0.0f)};
  pair[1].logprobs = 1;
  const Served alone = run_all(L, with_device("off"), {pair[1]});
  for (int32_t t : alone.tokens[0]) pair[0].sampling.logit_bias.emplace_back(t, -100.0f);
  std::sort(pair[0].sampling.logit_bias.begin(), pair[0].sampling.logit_bias.end());
  pair[0].sampling.logit_bias.erase(std::unique(pair[0].sampling.logit_bias.begin(), pair[0].sampling.logit_bias.end()),
                                    pair[0].sampling.logit_bias.end());
  const Served mixed = run_all(L, with_device("on"), pair);
  EXPECT_EQ(mixed.tokens[1], alone.tokens[0]);
  EXPECT_EQ(mixed.counters.device_sampled_tokens, 4u);
}

TEST_P(DeviceDecodeOn, GreedyWithPenaltiesAndLogitBiasEqualsTheHostBitForBit) {
  REQUIRE_BACKEND(GetParam());
  auto reqs = greedy_workload();
  const Served plain = run_all(L, with_device("off"), reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_GE(plain.tokens[i].size(), 3u);
    SamplingParams& sp = reqs[i].sampling;
    sp.repeat_penalty = 1.3f;
    sp.repeat_last_n = 16;
    sp.frequency_penalty = 0.3f + 0.1f * float(i);
    sp.presence_penalty = 0.4f;
    // Ban the token plain greedy chose first, favour its third.
    const int32_t ban = plain.tokens[i][0], favour = plain.tokens[i][2];
    if (ban != favour) sp.logit_bias = {{ban, -100.0f}, {favour, 2.5f}};
    else sp.logit_bias = {{ban, -100.0f}};
    std::sort(sp.logit_bias.begin(), sp.logit_bias.end());
  }
  const Served on = run_all(L, with_device("on"), reqs), off = run_all(L, with_device("off"), reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(on.tokens[i], off.tokens[i]) << "request " << i << ": device vs host penalties";
    EXPECT_NE(on.tokens[i], plain.tokens[i]) << "request " << i << ": the penalties changed nothing, the test is void";
  }
  EXPECT_EQ(on.counters.device_sampled_tokens, on.counters.generated_tokens) << "every token chosen on the device";
  // Verified on the device: each draft row is penalized with the drafts before it in its history.
  EngineConfig cfg = with_device("on");
  cfg.spec.mode = "ngram";
  cfg.spec.k = 4;
  cfg.spec.ngram_n = 1;
  const Served spec = run_all(L, cfg, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(spec.tokens[i], off.tokens[i]) << "request " << i;
  EXPECT_GT(spec.counters.spec_verify_steps, 0u);
  EXPECT_GT(spec.counters.spec_accepted, 0u) << "no draft accepted: later draft rows were never checked";
  EXPECT_EQ(spec.counters.device_sampled_tokens, spec.counters.generated_tokens);
}

TEST_P(DeviceDecodeOn, FilteredSamplingIsReproducible) {
  REQUIRE_BACKEND(GetParam());
  EngineConfig sc = with_device("on");
  sc.spec.mode = "ngram";
  sc.spec.k = 3;
  sc.spec.ngram_n = 1;
  for (const auto& [name, sp] : filter_settings()) {
    std::vector<Request> reqs;
    for (uint64_t s = 0; s < 4; ++s) {
      reqs.push_back(req("Once upon a time", 24, sp.temperature, 500 + s));
      reqs.back().sampling = sp;
      reqs.back().sampling.seed = 500 + s;
    }
    const Served a = run_all(L, with_device("on"), reqs), b = run_all(L, with_device("on"), reqs);
    EXPECT_EQ(a.tokens, b.tokens) << name;
    EXPECT_EQ(a.counters.device_sampled_tokens, a.counters.generated_tokens) << name;
    const Served sa = run_all(L, sc, reqs), sb = run_all(L, sc, reqs);
    EXPECT_EQ(sa.tokens, sb.tokens) << name << " with speculation";
    EXPECT_GT(sa.counters.spec_verify_steps, 0u) << name;
    EXPECT_EQ(sa.counters.device_sampled_tokens, sa.counters.generated_tokens) << name;
  }
}

TEST_P(DeviceDecodeOn, FilteredDrawsFollowTheHostDistribution) {
  REQUIRE_BACKEND(GetParam());
  const std::string prompt = "Lily went to the";
  const auto toks = L.m->tokenizer->encode(prompt, true);
  constexpr uint64_t kDraws = 400;
  for (const auto& [name, sp] : filter_settings()) {
    const std::vector<float> p = host_distribution(toks, sp, 0);
    ASSERT_FALSE(p.empty());
    std::vector<Request> draws;
    for (uint64_t s = 0; s < kDraws; ++s) {
      draws.push_back(req(prompt, 1, sp.temperature));
      draws.back().sampling = sp;
      draws.back().sampling.seed = 11 + s * 7919;
    }
    const Served d = run_all(L, with_device("on"), draws, true);
    EXPECT_EQ(d.counters.device_sampled_tokens, kDraws) << name;
    const Served h = run_all(L, with_device("off"), draws, true);
    size_t same = 0, outside = 0;
    std::vector<uint64_t> counts(p.size(), 0);
    for (size_t i = 0; i < draws.size(); ++i) {
      ASSERT_EQ(d.tokens[i].size(), 1u);
      const int32_t t = d.tokens[i][0];
      same += h.tokens[i] == d.tokens[i] ? 1 : 0;
      outside += p[size_t(t)] > 0.0f ? 0 : 1;
      ++counts[size_t(t)];
    }
    EXPECT_EQ(outside, 0u) << name << ": drew tokens the host filter drops";
    EXPECT_GE(double(same), 0.97 * double(kDraws)) << name << ": " << same << " of " << kDraws
                                                   << " seeded draws agree with the host";
    const auto [x, df] = chi2(counts, p, kDraws);
    ASSERT_GE(df, 2) << name << ": the distribution is too peaked to test (" << x << ")";
    EXPECT_LT(x, chi2_crit_001(df)) << name << ": chi2 " << x << " with " << df << " degrees of freedom";
  }
}

// Sampled speculation verified on the device against the target: the first token of each request
// is drawn from the prompt's row, the second mostly by verify (rejection sampling of n-gram
// drafts). The second token, grouped by the first, must follow the host sampler's distribution
// after prompt + first token.
TEST_P(DeviceDecodeOn, SampledSpeculationVerifiedOnTheDeviceDrawsTheTargetDistribution) {
  REQUIRE_BACKEND(GetParam());
  const std::string prompt = "Lily went to the park. Lily went to the";
  const auto toks = L.m->tokenizer->encode(prompt, true);
  const SamplingParams sp = req(prompt, 1, 1.5f).sampling;  // warm: the small model is sure of itself
  constexpr uint64_t kDraws = 600;
  std::vector<Request> draws;
  for (uint64_t s = 0; s < kDraws; ++s) draws.push_back(req(prompt, 5, 1.5f, 3 + s * 104729));
  EngineConfig cfg = with_device("on");
  cfg.spec.mode = "ngram";
  cfg.spec.k = 3;
  cfg.spec.ngram_n = 1;
  const Served d = run_all(L, cfg, draws, true);
  EXPECT_EQ(d.counters.device_sampled_tokens, d.counters.generated_tokens);
  EXPECT_GE(d.counters.spec_verify_steps, kDraws / 2) << "the second token was rarely verified";
  EXPECT_GT(d.counters.spec_accepted, 0u);
  std::map<int32_t, std::vector<uint64_t>> by_first;
  const size_t V = size_t(L.m->config.vocab);
  for (const auto& t : d.tokens) {
    ASSERT_GE(t.size(), 2u);
    auto& c = by_first[t[0]];
    c.resize(V, 0);
    ++c[size_t(t[1])];
  }
  double x = 0;
  int df = 0, groups = 0;
  for (const auto& [first, counts] : by_first) {
    uint64_t n = 0;
    for (uint64_t c : counts) n += c;
    if (n < 40) continue;
    std::vector<int32_t> ctx = toks;
    ctx.push_back(first);
    const auto [gx, gdf] = chi2(counts, host_distribution(ctx, sp, 1), n);
    x += gx;
    df += gdf;
    ++groups;
  }
  ASSERT_GE(groups, 1) << "no first token was drawn often enough";
  ASSERT_GE(df, 2) << "the distributions are too peaked to test";
  EXPECT_LT(x, chi2_crit_001(df)) << "chi2 " << x << " with " << df << " degrees of freedom over " << groups
                                  << " first tokens";
}

// Each backend skips, saying why, where it is not built or has no device (cuda without a GPU).
INSTANTIATE_TEST_SUITE_P(Backends, DeviceDecodeOn, ::testing::Values("cpu", "vulkan", "cuda"), [](const auto& info) {
  return info.param == "cpu" ? std::string("Cpu") : info.param == "vulkan" ? std::string("Vulkan") : std::string("Cuda");
});
