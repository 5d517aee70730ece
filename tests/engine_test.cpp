// The paged engine end to end on the real model: batching, prefix reuse and preemption never
// change output; tenants and identities never share blocks; overload never leaks or hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "backends/cpu/cpu_backend.h"
#include "core/engine/engine.h"
#include "tests/generate_oracle.h"
#include "tests/test_models.h"
#include "core/telemetry/snapshot_json.h"
#include "fault_backend.h"

using namespace pagoda;

namespace {


// stories260K on the cpu backend, shared by every test here (tests/test_models.h).
struct Env {
  Backend& be;
  std::unique_ptr<LoadedModel>& m;
};

Env env() {
  auto& l = pagoda::testing::stories260K_on("cpu");
  return Env{*l.be, l.m};
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<float> logprob;  // when the request asked for log-probabilities
  std::string text;
  FinishReason reason = FinishReason::None;
  std::string error;
  RequestMetrics metrics;
  bool finished = false;
};

// Submits every request, steps the engine until all finish, returns outcomes in submit order.
std::vector<Outcome> run_all(Engine& e, const std::vector<Request>& reqs, std::vector<uint64_t>* ids = nullptr,
                             int max_steps = 100000) {
  std::vector<Outcome> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto r = e.submit(reqs[i], [&out, i](const TokenEvent& ev) {
      if (ev.token >= 0) out[i].tokens.push_back(ev.token);
      if (ev.has_logprobs) out[i].logprob.push_back(ev.logprob);
      out[i].text += ev.text;
      if (ev.finished) {
        out[i].finished = true;
        out[i].reason = ev.reason;
        out[i].error = ev.error;
        out[i].metrics = ev.metrics;
      }
    });
    if (!r.ok()) { out[i].finished = true; out[i].reason = FinishReason::Rejected; out[i].error = r.reason(); }
    if (ids) ids->push_back(r.id);
  }
  for (int s = 0; s < max_steps && !e.idle(); ++s) EXPECT_TRUE(e.step().ok());
  EXPECT_TRUE(e.idle()) << "engine did not finish its work";
  return out;
}

Request greedy_req(const std::string& prompt, int32_t n, const std::string& tenant = "") {
  Request r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.sampling.temperature = 0;
  r.tenant = tenant;
  r.stop_at_eos = false;
  return r;
}

std::unique_ptr<Engine> make_engine(EngineConfig cfg) {
  auto e = Engine::create(*env().m, env().be, cfg);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error());
  return std::move(*e);
}

void expect_no_leaks(Engine& e) {
  e.publish_snapshot();
  auto s = e.snapshot();
  EXPECT_EQ(s->blocks_in_use, 0) << "leaked KV blocks";
  EXPECT_EQ(s->blocks_free + s->blocks_cached, s->num_blocks);
  EXPECT_EQ(s->running + s->waiting, 0);
}

const std::string kSystem = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

#define REQUIRE_MODELS() \
  if (const auto& why = pagoda::testing::stories260K_on("cpu").why; !why.empty()) GTEST_SKIP() << why

// Many requests sharing prefixes in different ways: a common system prompt, multi-turn growth and
// overlaps that end mid-block.
std::vector<Request> sharing_workload() {
  std::vector<Request> v;
  const char* tails[] = {" One day, she saw a cat.", " Her friend Ben came over.", " It was a sunny day.", " She had a red ball."};
  for (const char* t : tails) v.push_back(greedy_req(kSystem + t, 24));
  std::string convo = kSystem;
  for (int turn = 0; turn < 3; ++turn) {
    convo += " Lily said hello to her mom number " + std::to_string(turn) + ".";
    v.push_back(greedy_req(convo, 16));
  }
  v.push_back(greedy_req(kSystem.substr(0, 37), 20));  // ends inside a block of the shared prefix
  v.push_back(greedy_req("A completely different story about a dog named Max.", 20));
  return v;
}

}  // namespace

TEST(Engine, BatchedOutputEqualsSingleSequenceGeneration) {
  REQUIRE_MODELS();
  auto reqs = sharing_workload();
  EngineConfig cfg;
  cfg.max_batch_tokens = 64;
  auto e = make_engine(cfg);
  auto got = run_all(*e, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto want = oracle_greedy(*env().m, env().be, env().m->tokenizer->encode(reqs[i].prompt, true), reqs[i].max_tokens);
    ASSERT_TRUE(want.ok()) << want.error();
    EXPECT_EQ(got[i].tokens, *want) << "request " << i;
    EXPECT_EQ(got[i].reason, FinishReason::Length);
  }
  expect_no_leaks(*e);
}

// complete(): one prompt run to its end on the caller's thread (pagoda run, bench decode, model
// conformance) gives the oracle's tokens, streams every event, and turns a rejection or a failed
// request into an error instead of waiting forever.
TEST(Engine, CompleteRunsOnePromptToItsEndLikeTheOracle) {
  REQUIRE_MODELS();
  auto e = make_engine(EngineConfig{});
  Request req = greedy_req("Once upon a time", 40);
  req.sampling.temperature = 0.9f;  // seeded sampling: the oracle draws the same Philox uniforms
  req.sampling.seed = 7;
  int events = 0;
  auto c = complete(*e, req, [&](const TokenEvent&) { ++events; });
  ASSERT_TRUE(c.ok()) << c.error();
  auto kv = KvCache::create(env().be, kv_shape(env().m->config, 16, DType::F32), 64);
  ModelRunner runner(env().be, env().m->config, env().m->weights);
  GenerateOptions g;
  g.max_new_tokens = 40;
  g.sampling = req.sampling;
  std::vector<int32_t> want;
  ASSERT_TRUE(generate(runner, *kv, env().m->tokenizer->encode(req.prompt, true), g, want).ok());
  EXPECT_EQ(c->tokens, want);
  EXPECT_EQ(c->reason, FinishReason::Length);
  EXPECT_EQ(events, 41);  // one per token, then the final event
  EXPECT_EQ(c->metrics.generated_tokens, 40);
  EXPECT_GT(c->metrics.ttft_s, 0);

  Request bad = greedy_req("Once", -1);
  auto r = complete(*e, bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("invalid_request"), std::string::npos) << r.error();
  expect_no_leaks(*e);
}

// Not only the same tokens: every token's log-probability is the same bits, although with reuse
// on the later requests compute only their uncached tails (other chunks, other batch mates).
TEST(Engine, PrefixReuseOnIsTokenIdenticalToOff) {
  REQUIRE_MODELS();
  auto reqs = sharing_workload();
  for (auto& r : reqs) r.logprobs = 0;  // the chosen token's log-probability
  EngineConfig on, off;
  on.max_batch_tokens = off.max_batch_tokens = 48;
  off.prefix_caching = false;
  // Submit in two waves so later requests find earlier ones' blocks cached.
  auto e_on = make_engine(on), e_off = make_engine(off);
  std::vector<Request> w1(reqs.begin(), reqs.begin() + 3), w2(reqs.begin() + 3, reqs.end());
  auto a1 = run_all(*e_on, w1), a2 = run_all(*e_on, w2);
  auto b1 = run_all(*e_off, w1), b2 = run_all(*e_off, w2);
  auto bits = [](const std::vector<float>& v) {
    std::vector<uint32_t> b;
    for (float f : v) b.push_back(std::bit_cast<uint32_t>(f));
    return b;
  };
  for (size_t i = 0; i < a1.size(); ++i) {
    EXPECT_EQ(a1[i].tokens, b1[i].tokens) << "wave 1 request " << i;
    EXPECT_EQ(bits(a1[i].logprob), bits(b1[i].logprob)) << "wave 1 request " << i;
  }
  for (size_t i = 0; i < a2.size(); ++i) {
    EXPECT_EQ(a2[i].tokens, b2[i].tokens) << "wave 2 request " << i;
    ASSERT_EQ(a2[i].logprob.size(), a2[i].tokens.size()) << "wave 2 request " << i;
    EXPECT_EQ(bits(a2[i].logprob), bits(b2[i].logprob)) << "wave 2 request " << i;
  }
  const auto s_on = e_on->snapshot(), s_off = e_off->snapshot();
  EXPECT_GT(s_on->counters.avoided_prefill_tokens, 0u);
  EXPECT_EQ(s_off->counters.avoided_prefill_tokens, 0u);
  // The exact count of avoided tokens is Engine.AvoidedTokensAreReportedExactly (predicted from
  // the resident blocks; summing the per-request metric here compared one value with itself).
  expect_no_leaks(*e_on);
  expect_no_leaks(*e_off);
}

TEST(Engine, SecondIdenticalRequestHitsEveryFullBlockButTheLastToken) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  auto r = greedy_req(kSystem, 4);
  run_all(*e, {r});
  auto second = run_all(*e, {r});
  const int32_t n = int32_t(env().m->tokenizer->encode(kSystem, true).size());
  EXPECT_EQ(second[0].metrics.cached_tokens, (n - 1) / 16 * 16);
}

// A model whose weights digest is hashed in the background (as `run`, `serve` and `chat` load
// one): the first request is served before the digest is known (held back here until its one
// token is out), and ends only once it is, so a second identical request hits exactly as with the
// digest known up front, under the same identity.
TEST(Engine, DigestInTheBackgroundKeysWhatTheFirstRequestComputed) {
  REQUIRE_MODELS();
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  auto release = [&] {
    std::lock_guard<std::mutex> lk(mu);
    open = true;
    cv.notify_all();
  };
  LoadOptions bg;
  bg.digest = LoadOptions::Digest::Background;
  bg.digest_gate = [&] {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return open; });
  };
  auto m = LoadedModel::load(pagoda::testing::stories260K_path(), env().be, {}, bg);
  ASSERT_TRUE(m.ok()) << m.error();
  struct Opener {  // whatever happens below, the hashing threads are let go before the model
    std::function<void()> f;
    ~Opener() { f(); }
  } opener{release};
  EXPECT_FALSE((*m)->weights.digest.ready());
  auto e = Engine::create(**m, env().be, {});
  ASSERT_TRUE(e.ok()) << e.error();
  EXPECT_FALSE((*e)->identity_known());
  EXPECT_TRUE((*e)->identity().weights_digest.empty());
  const auto r = greedy_req(kSystem, 1);
  std::vector<int32_t> first;
  bool known_at_first_token = true;
  auto sub = (*e)->submit(r, [&](const TokenEvent& ev) {
    if (ev.token < 0) return;
    if (first.empty()) {
      known_at_first_token = (*e)->identity_known();
      release();
    }
    first.push_back(ev.token);
  });
  ASSERT_TRUE(sub.ok());
  for (int s = 0; s < 1000 && !(*e)->idle(); ++s) ASSERT_TRUE((*e)->step().ok());
  EXPECT_FALSE(known_at_first_token) << "the first token waited for the digest";
  EXPECT_TRUE((*e)->identity_known());
  EXPECT_EQ((*e)->identity().weights_digest, env().m->weights.digest.get());
  auto second = run_all(**e, {r});
  const auto toks = env().m->tokenizer->encode(kSystem, true);
  EXPECT_EQ(second[0].metrics.cached_tokens, (int32_t(toks.size()) - 1) / 16 * 16)
      << "the first request's blocks were not keyed when it ended";
  auto want = oracle_greedy(*env().m, env().be, toks, 1);
  ASSERT_TRUE(want.ok()) << want.error();
  EXPECT_EQ(first, *want);
  EXPECT_EQ(second[0].tokens, *want);
  // The same keys as an engine whose model was hashed before loading returned.
  EXPECT_EQ(block_keys((*e)->identity(), toks), block_keys(make_engine({})->identity(), toks));
  expect_no_leaks(**e);
}

// A model loaded without its digest (a single prompt, a draft) serves with prefix caching off and
// is refused with it on: its blocks would be keyed without the weights that computed them.
TEST(Engine, ModelWithoutItsDigestIsRefusedByThePrefixCache) {
  REQUIRE_MODELS();
  LoadOptions none;
  none.digest = LoadOptions::Digest::Never;
  auto m = LoadedModel::load(pagoda::testing::stories260K_path(), env().be, {}, none);
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_TRUE((*m)->weights.digest.get().empty());
  auto refused = Engine::create(**m, env().be, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("without its weights digest"), std::string::npos) << refused.error();
  EngineConfig off;
  off.prefix_caching = false;
  auto e = Engine::create(**m, env().be, off);
  ASSERT_TRUE(e.ok()) << e.error();
  const auto out = run_all(**e, {greedy_req(kSystem, 6)});
  auto want = oracle_greedy(*env().m, env().be, env().m->tokenizer->encode(kSystem, true), 6);
  ASSERT_TRUE(want.ok()) << want.error();
  EXPECT_EQ(out[0].tokens, *want);
  expect_no_leaks(**e);
}

TEST(Engine, DifferentTenantNeverMatches) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  run_all(*e, {greedy_req(kSystem, 4, "alice")});
  auto bob = run_all(*e, {greedy_req(kSystem, 4, "bob")});
  EXPECT_EQ(bob[0].metrics.cached_tokens, 0);
  auto alice = run_all(*e, {greedy_req(kSystem, 4, "alice")});
  EXPECT_GT(alice[0].metrics.cached_tokens, 0);
}

TEST(Engine, PublicPrefixIsSharedAcrossTenantsButTenantTextIsNot) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.public_prefixes.push_back(env().m->tokenizer->encode(kSystem, true));
  auto e = make_engine(cfg);
  run_all(*e, {greedy_req(kSystem + " Alice's secret plan.", 4, "alice")});
  auto bob = run_all(*e, {greedy_req(kSystem + " Alice's secret plan.", 4, "bob")});
  const int32_t pub = int32_t(env().m->tokenizer->encode(kSystem, true).size());
  // Bob reuses exactly the blocks lying wholly inside the public prefix, nothing of Alice's text.
  EXPECT_EQ(bob[0].metrics.cached_tokens, pub / 16 * 16);
}

// Every identity field changes the root key, so an engine differing in any one finds no blocks
// keyed by another — checked on the keys themselves, field by field.
TEST(CacheIdentity, ChangingAnyFieldGivesZeroHits) {
  CacheIdentity base;
  base.weights_digest = "w";
  base.tokenizer_digest = "t";
  base.scope = "tenant";
  std::vector<int32_t> toks(64);
  for (int i = 0; i < 64; ++i) toks[size_t(i)] = i;
  const auto ref = block_keys(base, toks);
  auto vary = [&](auto mutate, const char* what) {
    CacheIdentity c = base;
    mutate(c);
    const auto k = block_keys(c, toks);
    for (size_t i = 0; i < k.size(); ++i) EXPECT_NE(k[i], ref[i]) << what << " block " << i;
  };
  vary([](CacheIdentity& c) { c.weights_digest = "w2"; }, "weights");
  vary([](CacheIdentity& c) { c.tokenizer_digest = "t2"; }, "tokenizer");
  vary([](CacheIdentity& c) { c.adapter_id = "lora"; }, "adapter");
  vary([](CacheIdentity& c) { c.kv_dtype = "f16"; }, "kv dtype");
  vary([](CacheIdentity& c) { c.rope_scaling = 2.0f; }, "rope scaling");
  vary([](CacheIdentity& c) { c.model_compute = "gemma2 window=4096"; }, "model compute (window, softcap)");
  vary([](CacheIdentity& c) { c.kernel_precision = "cuda"; }, "precision");
  vary([](CacheIdentity& c) { c.scope = "other"; }, "scope");
  EXPECT_EQ(block_keys(base, toks), ref);
}

TEST(Engine, OverloadCompletesOrRejectsAndLeaksNothing) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.num_blocks = 24;  // 384 tokens: about 4 of these requests at once
  cfg.max_waiting = 12;
  cfg.max_batch_tokens = 64;
  auto e = make_engine(cfg);
  std::vector<Request> reqs;
  for (int i = 0; i < 16; ++i) reqs.push_back(greedy_req(kSystem + " Story " + std::to_string(i) + ".", 48));
  auto out = run_all(*e, reqs);
  int done = 0, rejected = 0;
  for (const auto& o : out) {
    EXPECT_TRUE(o.finished);
    if (o.reason == FinishReason::Length) ++done;
    else if (o.reason == FinishReason::Rejected) { ++rejected; EXPECT_EQ(o.error, "queue_full"); }
    else ADD_FAILURE() << "unexpected finish " << finish_reason_name(o.reason);
  }
  EXPECT_EQ(done + rejected, 16);
  EXPECT_GE(rejected, 1);
  expect_no_leaks(*e);
}

// Admission is decided once, in submit(): a request it accepted is never rejected later by the
// engine thread (a server has already answered 200 to a stream by then). Many threads submit
// while the engine thread drains and schedules, so the queue bound is checked against a moving queue.
TEST(Engine, AcceptedRequestsAreNeverRejectedLater) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.max_waiting = 4;
  cfg.max_running = 2;
  auto e = make_engine(cfg);
  e->start();
  std::atomic<int> accepted{0}, rejected_at_submit{0}, finished{0}, rejected_later{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        auto r = e->submit(greedy_req("Story " + std::to_string(t * 1000 + i), 2), [&](const TokenEvent& ev) {
          if (!ev.finished) return;
          ++finished;
          if (ev.reason == FinishReason::Rejected) ++rejected_later;
        });
        if (r.ok()) ++accepted;
        else { EXPECT_EQ(r.rejection, Rejection::QueueFull); ++rejected_at_submit; }
      }
    });
  for (auto& th : ts) th.join();
  e->stop(true);
  EXPECT_GT(rejected_at_submit.load(), 0) << "a bound of 4 under 4 busy submitters should turn some away";
  EXPECT_EQ(rejected_later.load(), 0);
  EXPECT_EQ(finished.load(), accepted.load());
  expect_no_leaks(*e);
}

TEST(Engine, PreemptedRequestResumesWithIdenticalOutput) {
  REQUIRE_MODELS();
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy_req("Tom had a toy car number " + std::to_string(i) + ".", 80));
  for (auto& r : reqs) r.sampling = SamplingParams{.temperature = 0.9f, .seed = 7};
  EngineConfig big, small;
  big.num_blocks = 200;
  small.num_blocks = 14;  // forces preemption as sequences grow
  small.prefix_caching = big.prefix_caching = false;
  auto eb = make_engine(big), es = make_engine(small);
  auto want = run_all(*eb, reqs), got = run_all(*es, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
  EXPECT_GT(es->snapshot()->counters.preemptions, 0u) << "the small pool should have forced preemption";
  expect_no_leaks(*es);
}

TEST(Engine, DeadlineExpiresAndFreesBlocks) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  auto r = greedy_req(kSystem, 400);
  r.timeout_s = 0.02;
  std::vector<Outcome> out(1);
  e->submit(r, [&](const TokenEvent& ev) { if (ev.finished) { out[0].finished = true; out[0].reason = ev.reason; } });
  const auto t0 = std::chrono::steady_clock::now();
  while (!e->idle() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) ASSERT_TRUE(e->step().ok());
  ASSERT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].reason, FinishReason::DeadlineExceeded);
  expect_no_leaks(*e);
}

TEST(Engine, CancelAtAnyPointFreesEverything) {
  REQUIRE_MODELS();
  for (int cancel_after : {0, 1, 3, 10}) {
    auto e = make_engine({});
    bool finished = false;
    FinishReason why = FinishReason::None;
    auto r = e->submit(greedy_req(kSystem, 200), [&](const TokenEvent& ev) { if (ev.finished) { finished = true; why = ev.reason; } });
    for (int s = 0; s < cancel_after; ++s) ASSERT_TRUE(e->step().ok());
    e->cancel(r.id);
    for (int s = 0; s < 5 && !e->idle(); ++s) ASSERT_TRUE(e->step().ok());
    EXPECT_TRUE(finished) << cancel_after;
    EXPECT_EQ(why, FinishReason::Cancelled) << cancel_after;
    expect_no_leaks(*e);
  }
}

TEST(Engine, InvalidRequestsAreRejectedWithReasons) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  Request empty;
  empty.prompt = "";
  empty.add_bos = false;
  EXPECT_EQ(e->submit(empty, {}).rejection, Rejection::InvalidRequest);
  Request bad_tok;
  bad_tok.prompt_tokens = {1, 99999};
  EXPECT_EQ(e->submit(bad_tok, {}).rejection, Rejection::InvalidRequest);
  Request long_prompt;
  long_prompt.prompt_tokens.assign(size_t(env().m->config.ctx_len) + 5, 5);
  EXPECT_EQ(e->submit(long_prompt, {}).rejection, Rejection::PromptTooLong);
  Request bad_p;
  bad_p.prompt = "hi";
  bad_p.sampling.top_p = 2;
  EXPECT_EQ(e->submit(bad_p, {}).rejection, Rejection::InvalidRequest);
  EXPECT_EQ(e->snapshot()->counters.rejections.size(), 0u);  // published on the next step
  ASSERT_TRUE(e->step().ok());
  e->publish_snapshot();
  EXPECT_EQ(e->snapshot()->counters.rejections.at("invalid_request"), 3u);
}

// EngineConfig::max_context (llama.cpp's -c): a sequence holds at most that many tokens. A
// prompt that leaves no room is refused naming the cap; generation stops at it, with the tokens a
// full-context engine gives up to there; a cap past the model's context is an error.
TEST(Engine, ContextSizeCapsEverySequence) {
  REQUIRE_MODELS();
  EngineConfig capped;
  capped.max_context = 24;
  auto e = make_engine(capped);
  EXPECT_EQ(e->context_length(), 24);
  Request too_long;
  too_long.prompt_tokens.assign(24, 5);
  const auto r = e->submit(too_long, {});
  EXPECT_EQ(r.rejection, Rejection::PromptTooLong);
  EXPECT_NE(r.message.find("the context of 24"), std::string::npos) << r.message;

  const Request req = greedy_req("Once upon a time", 100);
  auto c = complete(*e, req);
  ASSERT_TRUE(c.ok()) << c.error();
  const int32_t prompt = c->metrics.prompt_tokens;
  EXPECT_EQ(prompt + int32_t(c->tokens.size()), 24);
  EXPECT_EQ(c->reason, FinishReason::Length);
  auto full = make_engine(EngineConfig{});
  EXPECT_EQ(full->context_length(), env().m->config.ctx_len);
  auto f = complete(*full, req);
  ASSERT_TRUE(f.ok()) << f.error();
  ASSERT_GT(f->tokens.size(), c->tokens.size());
  EXPECT_TRUE(std::equal(c->tokens.begin(), c->tokens.end(), f->tokens.begin()));
  expect_no_leaks(*e);

  EngineConfig past;
  past.max_context = env().m->config.ctx_len + 1;
  auto bad = Engine::create(*env().m, env().be, past);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("exceeds the model's context"), std::string::npos) << bad.error();
  EngineConfig negative;
  negative.max_context = -1;
  EXPECT_FALSE(Engine::create(*env().m, env().be, negative).ok());
}

TEST(Engine, BackgroundThreadServesConcurrentSubmitters) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  e->start();
  std::atomic<int> finished{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i)
        e->submit(greedy_req("Sue went to the shop " + std::to_string(t * 10 + i), 12),
                  [&](const TokenEvent& ev) { if (ev.finished) ++finished; });
    });
  for (auto& t : ts) t.join();
  e->stop(true);
  EXPECT_EQ(finished.load(), 12);
  expect_no_leaks(*e);
}

TEST(Telemetry, PrometheusTextHasTheContractNames) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  run_all(*e, {greedy_req(kSystem, 8), greedy_req(kSystem, 8)});
  e->publish_snapshot();
  const std::string text = render_prometheus(*e->snapshot());
  for (const char* n : {"pagoda:kv_usage_ratio", "pagoda:prefix_cache_hits_tokens_total", "pagoda:time_to_first_token_seconds_bucket",
                        "pagoda:spec_accepted_tokens_total", "pagoda:generation_tokens_total 16", "pagoda:stage_seconds_bucket{stage=\"decode\""})
    EXPECT_NE(text.find(n), std::string::npos) << n;
}

TEST(Engine, ContinuationTextKeepsItsLeadingSpace) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  auto out = run_all(*e, {greedy_req("Once upon a time, there", 3)});
  EXPECT_EQ(out[0].text.substr(0, 5), " was ") << out[0].text;
}

TEST(Telemetry, SnapshotJsonRoundTrips) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  run_all(*e, {greedy_req(kSystem, 8, "alice"), greedy_req(kSystem, 8, "bob")});
  e->publish_snapshot();
  const Snapshot& a = *e->snapshot();
  auto b = snapshot_from_json(snapshot_to_json(a));
  ASSERT_TRUE(b.ok()) << b.error();
  EXPECT_EQ(snapshot_to_json(*b).dump(), snapshot_to_json(a).dump());
  EXPECT_FALSE(snapshot_from_json(nlohmann::json{{"step", "not a number"}}).ok());
}

// ---- Configuration errors are clear, never a crash ----

// `--kv-memory 0` used to crash in ~Engine after the failed create; any budget under one block is an error.
TEST(Engine, KvBudgetUnderOneBlockIsAClearError) {
  REQUIRE_MODELS();
  const uint64_t per_block = env().m->config.kv_bytes_per_token(4) * 16;
  for (uint64_t bytes : {uint64_t(0), per_block - 1}) {
    EngineConfig cfg;
    cfg.kv_bytes = bytes;
    auto e = Engine::create(*env().m, env().be, cfg);
    ASSERT_FALSE(e.ok()) << bytes;
    EXPECT_NE(e.error().find("holds no KV block"), std::string::npos) << e.error();
    EXPECT_NE(e.error().find(std::to_string(per_block)), std::string::npos) << "names the size one block needs: " << e.error();
  }
  EngineConfig one;
  one.kv_bytes = per_block;
  EXPECT_TRUE(Engine::create(*env().m, env().be, one).ok());
}

TEST(Engine, InvalidConfigIsAClearErrorBeforeAnythingIsBuilt) {
  REQUIRE_MODELS();
  auto expect_error = [](EngineConfig cfg, const char* what) {
    auto e = Engine::create(*env().m, env().be, cfg);
    ASSERT_FALSE(e.ok()) << what;
    EXPECT_NE(e.error().find(what), std::string::npos) << e.error();
  };
  EngineConfig c;
  c.block_size = 0;
  expect_error(c, "block size");
  c = {};
  c.max_running = 0;
  expect_error(c, "max running");
  c = {};
  c.max_preemptions = -1;
  expect_error(c, "preemptions");
  c = {};
  c.kv_fraction = 1.5;
  expect_error(c, "free device memory");
  EXPECT_TRUE(parse_kv_dtype("f16").ok());
  EXPECT_FALSE(parse_kv_dtype("q8").ok());
  EXPECT_NE(parse_kv_dtype("q8").error().find("f32 or f16"), std::string::npos);
}

// ---- Counters under concurrency (run under TSan by setup.sh --test) ----

// Submitters record on their threads while the engine thread steps and publishes, and a reader
// takes snapshots throughout. Every count must come out exact. Before the fix the engine thread
// copied the counters submit() wrote under the lock without taking it (a data race TSan reports).
TEST(Engine, CountersStayExactUnderConcurrentSubmittersAndReaders) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.snapshot_interval_s = 0;  // publish every step: the most copying while submitters write
  auto e = make_engine(cfg);
  e->start();
  std::atomic<bool> reading{true};
  std::thread reader([&] {
    while (reading) {
      auto s = e->snapshot();
      (void)render_prometheus(*s);
    }
  });
  std::atomic<int> accepted{0}, invalid{0}, finished{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto r = greedy_req("Story " + std::to_string(t * 100 + i), 2);
        if (i % 2) r.sampling.top_p = 2;  // invalid: rejected in submit()
        auto res = e->submit(r, [&](const TokenEvent& ev) { if (ev.finished) ++finished; });
        if (res.ok()) ++accepted;
        else if (res.rejection == Rejection::InvalidRequest) ++invalid;
      }
    });
  for (auto& th : ts) th.join();
  e->stop(true);
  reading = false;
  reader.join();
  e->publish_snapshot();
  const auto s = e->snapshot();
  EXPECT_EQ(s->counters.requests_submitted, uint64_t(accepted.load()));
  EXPECT_EQ(s->counters.rejections.at("invalid_request"), uint64_t(invalid.load()));
  EXPECT_EQ(s->counters.requests_finished, uint64_t(accepted.load()));
  EXPECT_EQ(finished.load(), accepted.load());
  EXPECT_EQ(s->hist.stage[size_t(Stage::Normalize)].count(), uint64_t(accepted.load()));
}

// ---- Scheduling order ----

TEST(Engine, HigherPriorityRunsFirstAndEqualPrioritiesKeepArrivalOrder) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.max_running = 1;
  auto e = make_engine(cfg);
  std::vector<std::string> order;
  auto submit = [&](const std::string& name, int32_t prio) {
    auto r = greedy_req("The " + name + " went to the park.", 3);
    r.priority = prio;
    EXPECT_TRUE(e->submit(r, [&order, name](const TokenEvent& ev) { if (ev.finished) order.push_back(name); }).ok());
  };
  submit("first", 0);
  ASSERT_TRUE(e->step().ok());  // `first` takes the only running slot
  submit("low-a", 0);
  submit("high", 3);
  submit("low-b", 0);
  submit("mid", 1);
  for (int i = 0; i < 200 && !e->idle(); ++i) ASSERT_TRUE(e->step().ok());
  EXPECT_EQ(order, (std::vector<std::string>{"first", "high", "mid", "low-a", "low-b"}));
}

// ---- Prefix-cache accounting, counted independently ----

// The cached tokens each request should get are predicted from the blocks resident before it runs
// (their key prefixes in the snapshot against the request's own block keys), not read back from
// the counter under test; the counter and the per-request metric must both equal the prediction.
TEST(Engine, AvoidedTokensAreReportedExactly) {
  REQUIRE_MODELS();
  auto e = make_engine({});
  auto reqs = sharing_workload();
  uint64_t predicted = 0, reported = 0;
  for (const auto& r : reqs) {
    e->publish_snapshot();
    std::set<uint32_t> resident;
    for (const auto& b : e->snapshot()->blocks) if (b.key_prefix && b.state != 0) resident.insert(b.key_prefix);
    const auto toks = env().m->tokenizer->encode(r.prompt, true);
    const auto keys = block_keys(e->identity().with_scope(r.tenant), toks);
    const size_t usable = std::min(keys.size(), (toks.size() - 1) / 16);
    size_t hit = 0;
    while (hit < usable) {
      const auto& k = keys[hit];
      if (!resident.count(uint32_t(k[0]) << 24 | uint32_t(k[1]) << 16 | uint32_t(k[2]) << 8 | k[3])) break;
      ++hit;
    }
    predicted += hit * 16;
    auto out = run_all(*e, {r});
    EXPECT_EQ(uint64_t(out[0].metrics.cached_tokens), hit * 16) << r.prompt;
    reported += uint64_t(out[0].metrics.cached_tokens);
  }
  e->publish_snapshot();
  const auto& c = e->snapshot()->counters;
  EXPECT_GT(predicted, 0u);
  EXPECT_EQ(c.avoided_prefill_tokens, predicted);
  EXPECT_EQ(reported, predicted);
  // No preemption here, so every prompt token was either computed once or avoided.
  EXPECT_EQ(c.preemptions, 0u);
  EXPECT_EQ(c.prompt_tokens, c.computed_prefill_tokens + c.avoided_prefill_tokens);
}

// ---- Tenant-fair caching ----

// Tenant A caches a prefix; tenant B then sends far more distinct prompts than the pool holds.
// B's flood evicts B's own cached blocks, so A's prefix is still whole afterwards.
TEST(Engine, TenantCachedPrefixSurvivesAnotherTenantsFlood) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.num_blocks = 24;
  cfg.max_running = 2;
  auto e = make_engine(cfg);
  const std::string a_prompt = kSystem + " She had a big red ball and a small blue kite.";
  run_all(*e, {greedy_req(a_prompt, 4, "tenant-a")});
  std::vector<Request> flood;
  for (int i = 0; i < 14; ++i)
    flood.push_back(greedy_req("Tim number " + std::to_string(i) + " found a shiny stone by the river and took it home.", 24, "tenant-b"));
  run_all(*e, flood);
  EXPECT_GT(e->snapshot()->counters.evictions, 0u) << "the flood must have forced evictions";
  auto again = run_all(*e, {greedy_req(a_prompt, 4, "tenant-a")});
  const int32_t n = int32_t(env().m->tokenizer->encode(a_prompt, true).size());
  EXPECT_EQ(again[0].metrics.cached_tokens, (n - 1) / 16 * 16);
  expect_no_leaks(*e);
}

TEST(Engine, PerTenantCapBoundsCachedBlocks) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.tenant_cached_blocks = 3;
  auto e = make_engine(cfg);
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy_req(kSystem + " Part " + std::to_string(i) + ".", 20, "t"));
  run_all(*e, reqs);
  e->publish_snapshot();
  EXPECT_LE(e->snapshot()->blocks_cached, 3);
  EXPECT_GT(e->snapshot()->blocks_cached, 0);
  expect_no_leaks(*e);
}

// ---- Bounded preemption ----

TEST(Engine, RequestPreemptedPastTheBoundFailsWithAClearReason) {
  REQUIRE_MODELS();
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy_req("Tom had a toy car number " + std::to_string(i) + ".", 80));
  EngineConfig cfg;
  cfg.num_blocks = 14;
  cfg.prefix_caching = false;
  cfg.max_preemptions = 0;
  auto e = make_engine(cfg);
  auto out = run_all(*e, reqs);
  int failed = 0, done = 0;
  for (const auto& o : out) {
    if (o.reason == FinishReason::Error) {
      ++failed;
      EXPECT_EQ(o.error.rfind("preemption_limit:", 0), 0u) << o.error;
    } else {
      EXPECT_EQ(o.reason, FinishReason::Length);
      ++done;
    }
  }
  EXPECT_GE(failed, 1);
  EXPECT_GE(done, 1);
  EXPECT_EQ(e->snapshot()->counters.preemption_failures, uint64_t(failed));
  expect_no_leaks(*e);
}

// ---- Speculation accounting ----

// Six requests speculate together. The mean acceptance length is per sequence verify step, so it
// can never exceed k + 1 and equals the per-step histogram's mean; the old per-engine-step figure
// counts one step for six verifications and is inflated.
TEST(Engine, MeanAcceptanceLengthIsPerSequenceVerifyStep) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.spec.mode = "ngram";
  cfg.spec.k = 3;
  auto e = make_engine(cfg);
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy_req(kSystem + " " + kSystem, 40));
  auto out = run_all(*e, reqs);
  e->publish_snapshot();
  const auto s = e->snapshot();
  const Counters& c = s->counters;
  ASSERT_GT(c.spec_verify_steps, 0u);
  ASSERT_GT(c.spec_accepted, 0u) << "a repeated prompt should let n-gram drafts through";
  const double mean = mean_acceptance_length(c);
  EXPECT_LE(mean, 1.0 + cfg.spec.k);
  EXPECT_NEAR(mean, s->hist.accept_len.mean(), 1e-9);
  EXPECT_EQ(c.spec_verify_steps, s->hist.accept_len.count());
  uint64_t per_request_steps = 0, speculated = 0;
  double sum_of_means = 0;
  for (const auto& o : out) {
    per_request_steps += o.metrics.spec_steps;
    if (o.metrics.spec_steps == 0) continue;
    ++speculated;
    sum_of_means += 1.0 + double(o.metrics.spec_accepted) / double(o.metrics.spec_steps);
  }
  EXPECT_EQ(c.spec_verify_steps, per_request_steps);
  EXPECT_GT(c.spec_verify_steps, c.spec_steps) << "requests verified together in one engine step";
  // One observation per finished speculating request, of its own mean.
  ASSERT_GT(speculated, 1u);
  EXPECT_EQ(s->hist.request_accept_len.count(), speculated);
  EXPECT_NEAR(s->hist.request_accept_len.sum(), sum_of_means, 1e-9);
  const std::string prom = render_prometheus(*s);
  EXPECT_NE(prom.find("pagoda:spec_request_acceptance_length_count " + std::to_string(speculated)), std::string::npos);
  EXPECT_NE(snapshot_to_json(*s)["histograms"].count("request_accept_len"), 0u);
}

// ---- KV budget as a share of free device memory ----

TEST(Engine, KvMemoryFractionUsesTheBackendsReportedMemory) {
  REQUIRE_MODELS();
  EXPECT_EQ(*parse_kv_fraction("90%"), std::optional<double>(0.9));
  EXPECT_EQ(*parse_kv_fraction("512MiB"), std::nullopt);
  for (const char* bad : {"0%", "101%", "%", "x%", "-5%"}) EXPECT_FALSE(parse_kv_fraction(bad).ok()) << bad;
  EngineConfig cfg;
  cfg.kv_fraction = 0.5;
  auto cpu = Engine::create(*env().m, env().be, cfg);
  ASSERT_FALSE(cpu.ok());
  EXPECT_NE(cpu.error().find("does not report"), std::string::npos) << cpu.error();
  const uint64_t room = 8ull << 20;
  pagoda::testing::FaultBackend gpu_like(env().be, env().m->weights.bytes + room);
  auto e = Engine::create(*env().m, gpu_like, cfg);
  ASSERT_TRUE(e.ok()) << e.error();
  EXPECT_EQ((*e)->snapshot()->num_blocks, kv_blocks_for_budget(kv_shape(env().m->config, 16, DType::F32), room / 2));
}

// ---- Fault containment ----

// A backend op fails mid-generation: every request ends with an engine_unavailable error, the
// engine reports degraded with the reason and refuses new work with a typed rejection; a probe
// after the fault clears brings it back, and it then generates exactly what a fresh engine does.
TEST(Engine, BackendFaultDegradesRefusesThenRecoversByProbe) {
  REQUIRE_MODELS();
  for (auto fault : {pagoda::testing::FaultBackend::Fault::Throw, pagoda::testing::FaultBackend::Fault::SyncError}) {
    pagoda::testing::FaultBackend fb(env().be);
    EngineConfig cfg;
    cfg.probe_interval_s = 0.01;
    auto made = Engine::create(*env().m, fb, cfg);
    ASSERT_TRUE(made.ok()) << made.error();
    Engine& e = **made;
    std::vector<Outcome> out(3);
    for (size_t i = 0; i < out.size(); ++i)
      e.submit(greedy_req(kSystem + " Number " + std::to_string(i), 30), [&out, i](const TokenEvent& ev) {
        if (ev.token >= 0) out[i].tokens.push_back(ev.token);
        if (ev.finished) { out[i].finished = true; out[i].reason = ev.reason; out[i].error = ev.error; }
      });
    ASSERT_TRUE(e.step().ok());
    ASSERT_TRUE(e.step().ok());
    fb.inject(fault);
    EXPECT_FALSE(e.step().ok());
    for (const auto& o : out) {
      EXPECT_TRUE(o.finished);
      EXPECT_EQ(o.reason, FinishReason::Error);
      EXPECT_EQ(o.error.rfind("engine_unavailable:", 0), 0u) << o.error;
      EXPECT_NE(o.error.find("injected"), std::string::npos) << o.error;
    }
    EXPECT_TRUE(e.idle());
    EXPECT_TRUE(e.health().degraded);
    EXPECT_NE(e.health().reason.find("injected"), std::string::npos) << e.health().reason;
    EXPECT_TRUE(e.snapshot()->degraded);
    const auto refused = e.submit(greedy_req(kSystem, 4), {});
    EXPECT_EQ(refused.rejection, Rejection::EngineUnavailable);
    EXPECT_NE(refused.message.find("injected"), std::string::npos) << refused.message;
    // Still failing: probes run and fail, the engine stays degraded.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(e.step().ok());
    EXPECT_TRUE(e.health().degraded);
    EXPECT_GE(e.health().probes, 1u);
    fb.inject(pagoda::testing::FaultBackend::Fault::None);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(e.step().ok());
    EXPECT_FALSE(e.health().degraded);
    EXPECT_EQ(e.health().recoveries, 1u);
    e.publish_snapshot();
    EXPECT_FALSE(e.snapshot()->degraded);
    EXPECT_EQ(e.snapshot()->counters.backend_faults, 1u);
    // Recovered: output equals a fresh engine's, and no cached prefix from before the fault is trusted.
    auto after = run_all(e, {greedy_req(kSystem + " Number 0", 12)});
    auto fresh = make_engine({});
    auto want = run_all(*fresh, {greedy_req(kSystem + " Number 0", 12)});
    EXPECT_EQ(after[0].tokens, want[0].tokens);
    EXPECT_EQ(after[0].metrics.cached_tokens, 0);
    expect_no_leaks(e);
  }
}

// The same on the engine's own thread: a streaming request sees the error, the loop probes by
// itself and serves again once the backend works.
TEST(Engine, BackgroundEngineRecoversFromAFaultOnItsOwn) {
  REQUIRE_MODELS();
  pagoda::testing::FaultBackend fb(env().be);
  EngineConfig cfg;
  cfg.probe_interval_s = 0.01;
  auto made = Engine::create(*env().m, fb, cfg);
  ASSERT_TRUE(made.ok()) << made.error();
  Engine& e = **made;
  fb.inject(pagoda::testing::FaultBackend::Fault::Throw);
  e.start();
  std::atomic<bool> done{false};
  std::string error;
  e.submit(greedy_req(kSystem, 8), [&](const TokenEvent& ev) { if (ev.finished) { error = ev.error; done = true; } });
  for (int i = 0; i < 500 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_TRUE(done);
  EXPECT_EQ(error.rfind("engine_unavailable:", 0), 0u) << error;
  EXPECT_TRUE(e.health().degraded);
  fb.inject(pagoda::testing::FaultBackend::Fault::None);
  for (int i = 0; i < 500 && e.health().degraded; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_FALSE(e.health().degraded);
  std::atomic<bool> ok{false};
  const auto r = e.submit(greedy_req(kSystem, 4), [&](const TokenEvent& ev) { if (ev.finished) ok = ev.reason == FinishReason::Length; });
  EXPECT_TRUE(r.ok()) << r.reason();
  e.stop(true);
  EXPECT_TRUE(ok);
}

// A tenant name is caller-influenced text: in a label it must stay one escaped value, never end
// the label early or forge a second series.
TEST(Telemetry, TenantNamesAreEscapedInPrometheusLabels) {
  Snapshot s;
  s.counters.per_tenant["evil\"} 1\npagoda:forged 9\\"]["generated"] = 3;
  const std::string text = render_prometheus(s);
  EXPECT_NE(text.find("pagoda:tenant_tokens_total{tenant=\"evil\\\"} 1\\npagoda:forged 9\\\\\",kind=\"generated\"} 3\n"),
            std::string::npos) << text;
  EXPECT_EQ(text.find("\npagoda:forged"), std::string::npos);
}

// ---- Stage timings ----

// Every request reports where its wall time went; the stages partition arrival -> final event,
// so they sum to the engine's own e2e measure, and each stage a request passed through shows.
TEST(Engine, RequestStageTimesSumToItsWallTimeAndEachStageAppears) {
  REQUIRE_MODELS();
  for (const bool spec : {false, true}) {
    SCOPED_TRACE(spec ? "ngram speculation" : "plain decode");
    EngineConfig cfg;
    cfg.max_batch_tokens = 32;  // several prefill chunks: requests also wait beside each other
    if (spec) cfg.spec = *make_spec_config(false, 2, "4");
    auto e = make_engine(cfg);
    std::vector<Request> reqs;
    for (int i = 0; i < 4; ++i) reqs.push_back(greedy_req(kSystem + " " + kSystem + " Story " + std::to_string(i), 24));
    const auto out = run_all(*e, reqs);
    bool any_verify = false;
    for (const auto& o : out) {
      ASSERT_EQ(o.reason, FinishReason::Length);
      const RequestStages& st = o.metrics.stages;
      EXPECT_NEAR(st.sum(), o.metrics.e2e_s, 1e-6 + 1e-3 * o.metrics.e2e_s);
      EXPECT_GT(st.normalize, 0);
      EXPECT_GT(st.queue, 0);
      EXPECT_GT(st.schedule, 0);
      EXPECT_GT(st.decode, 0);
      EXPECT_GT(st.emit, 0);
      EXPECT_GT(st.postprocess, 0);
      if (spec) EXPECT_GT(st.draft, 0);
      else EXPECT_EQ(st.draft, 0);
      any_verify = any_verify || st.verify > 0;
    }
    EXPECT_EQ(any_verify, spec);
    e->publish_snapshot();
    const auto snap = e->snapshot();
    EXPECT_GT(snap->hist.stage[size_t(Stage::Emit)].count(), 0u);
    EXPECT_GT(snap->hist.stage[size_t(Stage::Postprocess)].count(), 0u);
    EXPECT_EQ(snap->hist.stage[size_t(Stage::Draft)].count() > 0, spec);
    EXPECT_NE(render_prometheus(*snap).find("stage=\"emit\""), std::string::npos);
  }
}

// ---- Sliding-window block release ----

const std::string kGemma2 = std::string(PAGODA_MODELS_DIR) + "/parity/gemma2-f32.gguf";

// Gemma 2 interleaves global layers with its windowed ones: no block can ever be released. With
// every layer windowed (the same file, its description changed: a synthetic all-windowed model)
// a long generation holds a bounded number of blocks, and its output is what generate() gives
// with every block kept.
TEST(Engine, AllLayersWindowedKeepsKvBoundedAndOutputUnchanged) {
  if (!std::filesystem::exists(kGemma2)) GTEST_SKIP() << "missing " << kGemma2;
  CpuBackend be;
  auto m = LoadedModel::load(kGemma2, be);
  ASSERT_TRUE(m.ok()) << m.error();
  LoadedModel& lm = **m;
  const int32_t window = lm.config.desc.window;
  ASSERT_GT(window, 0);
  EXPECT_EQ(kv_shape(lm.config, 4, DType::F32).window, 0) << "global layers: nothing may be released";
  lm.config.desc.window_period = 0;  // every layer windowed
  ASSERT_EQ(kv_shape(lm.config, 4, DType::F32).window, window);

  // 35 tokens in chunks of 8 against a window of 8: the later chunks run after blocks behind the
  // window were released, so their rows must not look up the released entries.
  const std::vector<int32_t> prompt = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 403, 407, 261, 378, 432, 383, 286,
                                       261, 376, 298, 261, 378, 432, 383, 286, 261, 376, 298, 403, 407, 261, 378, 432, 383};
  constexpr int32_t kNew = 120;
  EngineConfig cfg;
  cfg.block_size = 4;
  cfg.num_blocks = 64;
  cfg.prefix_caching = false;
  cfg.max_batch_tokens = 8;  // a chunked prefill crosses the window too
  auto e = Engine::create(lm, be, cfg);
  ASSERT_TRUE(e.ok()) << e.error();
  Request r;
  r.prompt_tokens = prompt;
  r.max_tokens = kNew;
  r.sampling.temperature = 0;
  r.stop_at_eos = false;
  std::vector<int32_t> got;
  bool done = false;
  ASSERT_TRUE((*e)->submit(r, [&](const TokenEvent& ev) {
    if (ev.token >= 0) got.push_back(ev.token);
    done = done || ev.finished;
  }).ok());
  int32_t peak = 0;
  while (!done) {
    ASSERT_TRUE((*e)->step().ok());
    (*e)->publish_snapshot();
    peak = std::max(peak, (*e)->snapshot()->blocks_in_use);
  }
  ASSERT_EQ(int32_t(got.size()), kNew);
  // The window, plus the block being written and a prefill chunk's reach, whatever the length.
  EXPECT_LE(peak, (window + cfg.max_batch_tokens) / cfg.block_size + 2);
  EXPECT_LT(peak, (int32_t(prompt.size()) + kNew) / cfg.block_size);
  expect_no_leaks(**e);

  // The oracle: generate() never releases a block. Same chunks as the engine: the same arithmetic.
  auto want = oracle_greedy(lm, be, prompt, kNew, DType::F32, 4, cfg.max_batch_tokens);
  ASSERT_TRUE(want.ok()) << want.error();
  EXPECT_EQ(got, *want);
}

// The rows of a step are sampled on the backend's host threads (the CPU backend's pool); each
// request draws exactly what the serial loop draws. The reference runs the same batch through a
// forwarding backend, which samples on the engine thread (Backend's default host_parallel_for)
// over the very same kernels.
TEST(Engine, RowsSampledOnTheHostThreadsDrawWhatTheSerialLoopDraws) {
  REQUIRE_MODELS();
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "one hardware thread: the CPU pool has no worker to sample on";
  auto make = [] {
    std::vector<Request> v;
    for (int i = 0; i < 8; ++i) {
      Request r = greedy_req(kSystem + (i % 2 ? " One day" : " The sun was"), 24);
      r.sampling.temperature = 0.9f;
      r.sampling.seed = 7 + uint64_t(i);
      r.sampling.top_k = i % 3 == 0 ? 0 : 40;
      r.sampling.top_p = i % 4 == 1 ? 0.9f : 1.0f;
      r.sampling.min_p = i % 4 == 2 ? 0.05f : 0.0f;
      if (i == 5) r.sampling.repeat_penalty = 1.2f;
      v.push_back(r);
    }
    return v;
  };
  auto parallel = make_engine(EngineConfig{});
  const auto got = run_all(*parallel, make());
  pagoda::testing::FaultBackend serial_be(env().be);
  auto serial = Engine::create(*env().m, serial_be, EngineConfig{});
  ASSERT_TRUE(serial.ok()) << serial.error();
  const auto want = run_all(**serial, make());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
    EXPECT_EQ(got[i].tokens.size(), 24u) << "request " << i;
  }
  expect_no_leaks(*parallel);
}

// ---- Forked prompts (a server's n choices) ----

// Requests naming an earlier one in prefill_from share its prompt blocks instead of computing the
// prompt again, and sample exactly what separate requests with their seeds sample.
// A group (a server's n choices) is queued under one lock: on an engine running on its own
// thread, request 0 cannot finish before the others are waiting to fork it, so the prompt is
// computed once however the threads are scheduled (submitted one by one, a short request 0 could
// end first and the others prefilled again). A group that does not fit the queue is refused whole.
TEST(Engine, SubmitGroupForksTheFirstPromptOnAnEngineThreadAndIsAllOrNothing) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.prefix_caching = false;  // only the fork may avoid prefill
  cfg.max_waiting = 3;
  auto e = make_engine(cfg);
  for (int round = 0; round < 20; ++round) {
    std::vector<Request> group(3, greedy_req(kSystem + " One day", 2));  // request 0 still runs when the forks are admitted
    std::mutex mu;
    std::condition_variable cv;
    int finished = 0;
    int32_t prompt = 0;
    e->publish_snapshot();  // the engine is stopped between rounds: snapshots are read here
    const uint64_t before = e->snapshot()->counters.computed_prefill_tokens;
    e->start();
    const auto res = e->submit_group(group, [&](const TokenEvent& ev) {
      if (!ev.finished) return;
      std::lock_guard<std::mutex> lk(mu);
      prompt = ev.metrics.prompt_tokens;
      ++finished;
      cv.notify_all();
    }, true);
    ASSERT_EQ(res.size(), 3u);
    for (size_t i = 0; i < res.size(); ++i) ASSERT_TRUE(res[i].ok()) << res[i].message;
    EXPECT_EQ(res[1].id, res[0].id + 1);
    std::unique_lock<std::mutex> lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(30), [&] { return finished == 3; }));
    lk.unlock();
    e->stop();  // drains, then joins the engine thread
    e->publish_snapshot();
    EXPECT_EQ(e->snapshot()->counters.computed_prefill_tokens - before, uint64_t(prompt + 2)) << "round " << round;
  }
  std::vector<Request> big(4, greedy_req("Once", 2));
  const auto refused = e->submit_group(big, [](const TokenEvent&) {}, true);
  ASSERT_EQ(refused.size(), 4u);
  for (const auto& r : refused) EXPECT_EQ(r.rejection, Rejection::QueueFull);
  EXPECT_TRUE(e->idle()) << "a refused group queues nothing";
  expect_no_leaks(*e);
}

// Requests 1.. name request 0 in prefill_from; stepped to the end on a fresh engine, each must
// produce `want`'s tokens and have computed only the last prompt token itself, so the engine
// computed the prompt once, and no block may be left held.
void run_forked_and_compare(Engine& e, std::vector<Request> reqs, const std::vector<Outcome>& want, int32_t prompt) {
  std::vector<Outcome> got(reqs.size());
  uint64_t first = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].prefill_from = first;
    const auto r = e.submit(reqs[i], [&got, i](const TokenEvent& ev) {
      if (ev.token >= 0) got[i].tokens.push_back(ev.token);
      if (ev.finished) got[i].metrics = ev.metrics;
    });
    ASSERT_TRUE(r.ok());
    if (i == 0) first = r.id;
  }
  while (!e.idle()) ASSERT_TRUE(e.step().ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
    if (i > 0) {
      EXPECT_EQ(got[i].metrics.cached_tokens, prompt - 1) << "request " << i;
    }
  }
  e.publish_snapshot();
  EXPECT_EQ(e.snapshot()->counters.computed_prefill_tokens, uint64_t(prompt) + reqs.size() - 1);
  expect_no_leaks(e);
}

TEST(Engine, ForkedPromptIsComputedOnceAndChangesNoOutput) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.prefix_caching = false;  // only the fork may avoid prefill
  cfg.block_size = 8;          // the prompt ends inside a block: the forks copy it on write
  auto make_reqs = [] {
    std::vector<Request> v;
    for (int i = 0; i < 4; ++i) {
      Request r = greedy_req(kSystem + " One day", 20);
      r.sampling.temperature = 0.8f;
      r.sampling.seed = 100 + uint64_t(i);
      v.push_back(r);
    }
    return v;
  };
  auto separate = make_engine(cfg);
  const auto want = run_all(*separate, make_reqs());
  const int32_t prompt = want[0].metrics.prompt_tokens;
  ASSERT_GT(prompt % cfg.block_size, 0) << "pick a prompt that ends mid-block";
  separate->publish_snapshot();
  EXPECT_EQ(separate->snapshot()->counters.computed_prefill_tokens, uint64_t(4 * prompt));

  auto forked = make_engine(cfg);
  run_forked_and_compare(*forked, make_reqs(), want, prompt);
}

// n choices with max_tokens 1: request 0 samples its one token in the step that computes the
// prompt and ends there, before the others are admitted. Its blocks (the partial last one
// included) are held for them, so the prompt is still computed once; forks that are cancelled
// instead leave nothing held.
TEST(Engine, ForkOfARequestThatEndedInItsPrefillStepStillSharesThePrompt) {
  REQUIRE_MODELS();
  EngineConfig cfg;
  cfg.prefix_caching = false;  // only the fork may avoid prefill
  cfg.block_size = 8;
  auto separate = make_engine(cfg);
  const auto want = run_all(*separate, std::vector<Request>(4, greedy_req(kSystem + " One day", 1)));
  const int32_t prompt = want[0].metrics.prompt_tokens;
  ASSERT_GT(prompt % cfg.block_size, 0) << "pick a prompt that ends mid-block";

  auto forked = make_engine(cfg);
  run_forked_and_compare(*forked, std::vector<Request>(4, greedy_req(kSystem + " One day", 1)), want, prompt);

  // The forks are cancelled while request 0's blocks wait for them: nothing stays held.
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    Request r = greedy_req(kSystem + " One day", 1);
    r.prefill_from = ids.empty() ? 0 : ids[0];
    const auto res = forked->submit(r, [](const TokenEvent&) {});
    ASSERT_TRUE(res.ok());
    ids.push_back(res.id);
  }
  ASSERT_TRUE(forked->step().ok());  // request 0 computes the prompt and ends
  forked->cancel(ids[1]);
  forked->cancel(ids[2]);
  while (!forked->idle()) ASSERT_TRUE(forked->step().ok());
  expect_no_leaks(*forked);
}
