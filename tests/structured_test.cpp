// Issue 17 parts 1-3 end to end: structured output (grammar masks in the sampler, the drafters and
// the verifier), token log-probabilities, and penalties under speculation. Engine-level tests
// check that speculation changes nothing under greedy decoding (tokens and log-probabilities);
// server tests check OpenAI's shapes and that 100 sampled schema outputs validate with an
// independent validator (Debian's python3-jsonschema).
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "apps/server/request_parse.h"
#include "apps/server/server.h"
#include "backends/cpu/cpu_backend.h"
#include "apps/bench/batch_run.h"
#include "core/grammar/json_schema.h"
#include "core/grammar/matcher.h"
#include "core/model/llama2c_import.h"
#include "core/sample/sampler.h"
#include "server_harness.h"
#include "spec_models.h"

using namespace pagoda;
using nlohmann::json;

namespace {

const std::string kModels = PAGODA_MODELS_DIR;
const std::string kStories = PAGODA_STORIES_GGUF;

// A schema whose documents are bounded (string lengths, item counts, enums), so a model sampling
// at temperature 1 always finishes one within the token budget.
const char* kSchema = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer"},
    "mood": {"enum": ["happy", "sad", "sleepy"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
    "pet": {"type": "object", "properties": {"kind": {"type": "string", "maxLength": 10}, "legs": {"type": "integer"}},
            "required": ["kind"], "additionalProperties": false},
    "ok": {"type": "boolean"}
  },
  "required": ["name", "age", "mood", "ok"],
  "additionalProperties": false
})";

std::shared_ptr<const grammar::Grammar> schema_grammar(const char* schema) {
  auto g = grammar::compile_json_schema(nlohmann::ordered_json::parse(schema));
  EXPECT_TRUE(g.ok()) << (g ? "" : g.error());
  return g ? std::make_shared<const grammar::Grammar>(std::move(*g)) : nullptr;
}

// stories260K and, as its draft, llama2xs-260K (same vocabulary) converted from llama2.c.
using Env = pagoda::testing::SpecModels;
Env& env() {
  static Env e(CpuOptions{.threads = 1}, "structured");
  return e;
}

#define REQUIRE_MODELS() REQUIRE_SPEC_MODELS(env())

// Everything a request produced, log-probabilities included.
struct Run {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason reason = FinishReason::None;
  std::string error;
  std::vector<float> logprob;
  std::vector<std::vector<std::pair<int32_t, float>>> top;
};

// Runs `reqs` to the end on a fresh engine stepped from this thread; `snap` gets its counters.
std::vector<Run> run(const EngineConfig& cfg, const std::vector<Request>& reqs, LoadedModel* draft = nullptr,
                     Snapshot* snap = nullptr) {
  auto e = Engine::create(*env().target, env().be, cfg, draft);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error());
  if (!e) return {};
  std::vector<Run> out(reqs.size());
  size_t remaining = reqs.size();
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto sr = (*e)->submit(reqs[i], [&, i](const TokenEvent& ev) {
      Run& r = out[i];
      if (ev.token >= 0) r.tokens.push_back(ev.token);
      r.text += ev.text;
      if (ev.has_logprobs) {
        r.logprob.push_back(ev.logprob);
        r.top.push_back(ev.top_logprobs);
      }
      if (ev.finished) {
        r.reason = ev.reason;
        r.error = ev.error;
        --remaining;
      }
    });
    EXPECT_TRUE(sr.ok()) << sr.message;
  }
  while (remaining > 0)
    if (!(*e)->step()) break;
  (*e)->publish_snapshot();
  EXPECT_EQ((*e)->snapshot()->blocks_in_use, 0) << "target KV leaked";
  if (snap) *snap = *(*e)->snapshot();
  return out;
}

std::vector<Request> prompts(int32_t max_tokens, float temperature = 0) {
  std::vector<Request> v;
  for (const char* p : {"Once upon a time", "Lily and Ben went to the park. Lily and Ben went to the",
                        "Tom had a red ball. Tom had a red ball. Tom had a"}) {
    Request r;
    r.prompt = p;
    r.max_tokens = max_tokens;
    r.sampling.temperature = temperature;
    r.sampling.seed = 77;
    v.push_back(r);
  }
  return v;
}

EngineConfig spec_config(const std::string& mode, int32_t k) {
  EngineConfig c;
  c.spec.mode = mode;
  c.spec.k = k;
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Log-probabilities: the values themselves.

TEST(Logprobs, LogSoftmaxAfterTemperatureWithTopSorted) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f};
  for (const float t : {1.0f, 2.0f, 0.0f}) {  // 0: greedy reports the untempered distribution
    const double inv = t > 0 ? 1.0 / t : 1.0;
    double z = 0;
    for (float x : l) z += std::exp(double(x) * inv);
    const auto lp = token_logprobs(l, t, 2, 3);
    EXPECT_NEAR(lp.chosen, 2.0 * inv - std::log(z), 1e-6);
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.top[0].first, 1);  // ties: lower id first
    EXPECT_EQ(lp.top[1].first, 3);
    EXPECT_EQ(lp.top[2].first, 2);
    EXPECT_NEAR(lp.top[0].second, 3.0 * inv - std::log(z), 1e-6);
  }
  // A banned (-inf) logit has probability 0 and reports the most negative float, never -inf or NaN.
  const std::vector<float> banned = {0.0f, -INFINITY};
  EXPECT_EQ(token_logprobs(banned, 1.0f, 1, 0).chosen, std::numeric_limits<float>::lowest());
  EXPECT_NEAR(token_logprobs(banned, 1.0f, 0, 0).chosen, 0.0, 1e-7);
}

// The engine's values equal an independent log-softmax over one forward pass of the whole
// generated sequence (every row's logits at once), and do not depend on penalties.
TEST(Logprobs, EngineValuesMatchAFullForwardPass) {
  REQUIRE_MODELS();
  Request r = prompts(24, 0.7f)[0];
  r.logprobs = 3;
  r.sampling.presence_penalty = 1.5f;  // changes which tokens are drawn, not what is reported
  const auto got = run(EngineConfig{}, {r});
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].logprob.size(), got[0].tokens.size());
  const LoadedModel& m = *env().target;
  std::vector<int32_t> seq = m.tokenizer->encode(r.prompt, true);
  const size_t prompt_len = seq.size();
  seq.insert(seq.end(), got[0].tokens.begin(), got[0].tokens.end());
  auto kv = KvCache::create(env().be, kv_shape(m.config, 16, DType::F32), 64);
  ASSERT_TRUE(kv.ok());
  BlockTable table;
  for (int32_t b = 0; b * 16 < int32_t(seq.size()); ++b) table.blocks.push_back(*kv->pool().allocate());
  ModelRunner runner(env().be, m.config, m.weights);
  ForwardBatch b;
  b.add_sequence(seq.data(), int32_t(seq.size()), 0, table, 16, 2);
  std::vector<float> logits;
  ASSERT_TRUE(runner.forward(b, *kv, &logits).ok());
  const size_t V = size_t(m.config.vocab);
  for (size_t i = 0; i < got[0].tokens.size(); ++i) {
    const float* row = logits.data() + (prompt_len - 1 + i) * V;
    double mx = -INFINITY, z = 0;
    for (size_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]) / 0.7);
    for (size_t v = 0; v < V; ++v) z += std::exp(double(row[v]) / 0.7 - mx);
    const double want = double(row[size_t(got[0].tokens[i])]) / 0.7 - mx - std::log(z);
    EXPECT_NEAR(got[0].logprob[i], want, 2e-4) << "token " << i;
    ASSERT_EQ(got[0].top[i].size(), 3u);
    EXPECT_GE(got[0].top[i][0].second, got[0].top[i][1].second);
    EXPECT_GE(got[0].top[i][1].second, got[0].top[i][2].second);
  }
}

// Accepted draft tokens report the target's log-probabilities: with a draft model or n-gram
// drafts, every token's value and top list equal a run without speculation, bit for bit. The two
// runs put different rows in one matmul and one attention call (a verify pass is k+1 rows per
// stream, and the streams of either run share their steps); until the twentieth session the F32
// GEMM and the prompt attention rounded differently from the decode kernels, and the values only
// agreed to a few parts in a million (~2e-6 for the tokens, ~1e-5 for top-list entries near -7).
TEST(Logprobs, SpeculationReportsTheSameValues) {
  REQUIRE_MODELS();
  auto reqs = prompts(40);
  for (auto& r : reqs) r.logprobs = 5;
  const auto base = run(EngineConfig{}, reqs);
  auto near = [](double) { return 0.0; };  // exactly equal
  for (const auto& [mode, draft] : {std::pair<std::string, LoadedModel*>{"draft", env().draft.get()}, {"ngram", nullptr}}) {
    Snapshot s;
    const auto spec = run(spec_config(mode, 3), reqs, draft, &s);
    EXPECT_GT(s.counters.spec_accepted, 0u) << mode;
    ASSERT_EQ(spec.size(), base.size());
    double worst = 0, worst_top = 0;
    for (size_t i = 0; i < base.size(); ++i) {
      EXPECT_EQ(spec[i].tokens, base[i].tokens) << mode;
      for (size_t j = 0; j < std::min(spec[i].logprob.size(), base[i].logprob.size()); ++j)
        worst = std::max(worst, std::fabs(double(spec[i].logprob[j]) - double(base[i].logprob[j])));
      ASSERT_EQ(spec[i].logprob.size(), base[i].logprob.size()) << mode;
      for (size_t j = 0; j < base[i].logprob.size(); ++j) {
        EXPECT_NEAR(spec[i].logprob[j], base[i].logprob[j], near(base[i].logprob[j])) << mode << " request " << i << " token " << j;
        ASSERT_EQ(spec[i].top[j].size(), 5u);
        for (size_t t = 0; t < 5; ++t) {
          EXPECT_EQ(spec[i].top[j][t].first, base[i].top[j][t].first) << mode;
          EXPECT_NEAR(spec[i].top[j][t].second, base[i].top[j][t].second, near(base[i].top[j][t].second)) << mode;
          worst_top = std::max(worst_top, std::fabs(double(spec[i].top[j][t].second) - double(base[i].top[j][t].second)));
        }
      }
    }
    std::printf("%s: largest log-probability difference to no speculation %.3g (top lists: %.3g)\n", mode.c_str(), worst, worst_top);
  }
}

// ---------------------------------------------------------------------------------------------
// Penalties in the verifier.

// presence/frequency penalties and logit_bias shape the target distribution the verifier checks
// drafts against, so greedy output with a draft equals greedy output without one.
TEST(Penalties, GreedySpeculationWithPenaltiesEqualsWithout) {
  REQUIRE_MODELS();
  auto reqs = prompts(48);
  const auto plain = run(EngineConfig{}, reqs);
  for (auto& r : reqs) {
    r.sampling.presence_penalty = 0.8f;
    r.sampling.frequency_penalty = 0.6f;
    r.sampling.logit_bias = {{plain[0].tokens[1], -100.0f}, {plain[1].tokens[2], 4.0f}};
  }
  const auto base = run(EngineConfig{}, reqs);
  EXPECT_NE(base[0].tokens, plain[0].tokens) << "the penalties must change the output for this test to mean anything";
  for (const auto& [mode, draft] : {std::pair<std::string, LoadedModel*>{"draft", env().draft.get()}, {"ngram", nullptr}}) {
    Snapshot s;
    const auto spec = run(spec_config(mode, 4), reqs, draft, &s);
    EXPECT_GT(s.counters.spec_accepted, 0u) << mode;
    for (size_t i = 0; i < base.size(); ++i) EXPECT_EQ(spec[i].tokens, base[i].tokens) << mode << " request " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Structured output in the engine.

// Under a schema, greedy output with a draft model (or n-gram drafts) is token-identical to
// output without, is valid JSON, and ends with EOS; the drafts still get accepted.
TEST(Structured, GreedyWithDraftEqualsWithoutUnderASchema) {
  REQUIRE_MODELS();
  auto g = schema_grammar(kSchema);
  ASSERT_TRUE(g);
  auto reqs = prompts(400);
  for (auto& r : reqs) r.grammar = g;
  const auto base = run(EngineConfig{}, reqs);
  for (const auto& r : base) {
    EXPECT_EQ(r.reason, FinishReason::Eos) << r.text << " " << r.error;
    const auto j = json::parse(r.text, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.text;
    EXPECT_TRUE(j.is_object() && j.contains("name") && j.contains("mood")) << r.text;
  }
  for (const auto& [mode, draft] : {std::pair<std::string, LoadedModel*>{"draft", env().draft.get()}, {"ngram", nullptr}}) {
    Snapshot s;
    const auto spec = run(spec_config(mode, 4), reqs, draft, &s);
    for (size_t i = 0; i < base.size(); ++i) {
      EXPECT_EQ(spec[i].tokens, base[i].tokens) << mode << " request " << i;
      EXPECT_EQ(spec[i].text, base[i].text) << mode;
    }
    EXPECT_GT(s.counters.spec_accepted, 0u) << mode << ": speculation must still pay under a grammar";
  }
}

// Seeded sampling under a grammar with a draft reproduces, and every output is complete JSON.
TEST(Structured, SampledWithDraftStaysValidAndReproduces) {
  REQUIRE_MODELS();
  auto g = schema_grammar(kSchema);
  ASSERT_TRUE(g);
  auto reqs = prompts(600, 1.0f);
  for (auto& r : reqs) {
    r.grammar = g;
    r.sampling.top_k = 0, r.sampling.top_p = 1.0f, r.sampling.min_p = 0.0f;
  }
  const auto a = run(spec_config("draft", 3), reqs, env().draft.get());
  const auto b = run(spec_config("draft", 3), reqs, env().draft.get());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens);
    EXPECT_EQ(a[i].reason, FinishReason::Eos) << a[i].text;
    EXPECT_FALSE(json::parse(a[i].text, nullptr, false).is_discarded()) << a[i].text;
  }
}

// A grammar's end ends the request even when EOS would not (stop_at_eos off), and a grammar that
// is complete with no way to continue ends it too; nothing after the end is generated.
TEST(Structured, GrammarEndEndsTheRequest) {
  REQUIRE_MODELS();
  auto g = grammar::Grammar::parse(R"(root ::= "yes" | "no")");
  ASSERT_TRUE(g.ok());
  std::vector<Request> reqs = {prompts(50)[0]};
  reqs[0].grammar = std::make_shared<const grammar::Grammar>(std::move(*g));
  reqs[0].stop_at_eos = false;
  const auto out = run(EngineConfig{}, reqs);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].reason, FinishReason::Eos);
  EXPECT_TRUE(out[0].text == "yes" || out[0].text == "no") << out[0].text;
  EXPECT_LE(out[0].tokens.size(), 4u);
}

// ---------------------------------------------------------------------------------------------
// The server: request fields, errors, response shapes.

namespace {

server::ParseLimits limits() {
  server::ParseLimits l;
  l.ctx_len = 2048;
  l.vocab = 512;
  return l;
}

EngineConfig with_blocks(EngineConfig ec) {
  ec.num_blocks = 512;
  return ec;
}

struct Harness : pagoda::testing::ServerUnderTest {
  explicit Harness(EngineConfig ec = {}, LoadedModel* draft = nullptr)
      : ServerUnderTest(*env().target, env().be, with_blocks(ec), server::ServerConfig{}, draft) {}
  json post(const std::string& path, const json& body, int* status = nullptr) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    if (status) *status = r ? r->status : -1;
    return r ? json::parse(r->body, nullptr, false) : json();
  }
  // The parsed data events of a streamed request ([DONE] excluded).
  std::vector<json> stream(const std::string& path, json body) const {
    body["stream"] = true;
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    std::vector<json> out;
    if (!r) return out;
    size_t pos = 0;
    while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
      const size_t end = r->body.find("\n\n", pos);
      const std::string ev = r->body.substr(pos + 6, end - pos - 6);
      pos = end;
      if (ev != "[DONE]") out.push_back(json::parse(ev));
    }
    return out;
  }
};

json chat(int max_tokens) {
  return {{"messages", json::array({{{"role", "user"}, {"content", "Tell me about a cat."}}})},
          {"max_tokens", max_tokens}, {"temperature", 0}};
}
json completion(int max_tokens) {
  return {{"prompt", "Once upon a time"}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

}  // namespace

TEST(StructuredServer, FieldsParseAndBadOnesNameTheProblem) {
  using server::Endpoint;
  auto ok = server::parse_request(R"({"prompt":"x","logprobs":3})", Endpoint::Completions, limits());
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_EQ(ok->logprobs, 3);
  auto c = server::parse_request(R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":2})",
                                 Endpoint::Chat, limits());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->logprobs, 2);
  auto off = server::parse_request(R"({"messages":[{"role":"user","content":"x"}],"logprobs":false})", Endpoint::Chat, limits());
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->logprobs, -1);
  auto js = server::parse_request(
      R"({"prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"b":{"type":"integer"},"a":{"type":"string"}}}}}})",
      Endpoint::Completions, limits());
  ASSERT_TRUE(js.ok()) << js.error();
  ASSERT_TRUE(js->grammar);
  EXPECT_LT(js->grammar_text.find("\\\"b\\\""), js->grammar_text.find("\\\"a\\\"")) << "properties keep the schema's order";
  auto jo = server::parse_request(R"({"prompt":"x","response_format":{"type":"json_object"}})", Endpoint::Completions, limits());
  ASSERT_TRUE(jo.ok() && jo->grammar);
  auto text = server::parse_request(R"({"prompt":"x","response_format":{"type":"text"}})", Endpoint::Completions, limits());
  ASSERT_TRUE(text.ok());
  EXPECT_FALSE(text->grammar);
  auto gr = server::parse_request(R"({"prompt":"x","grammar":"root ::= \"a\"+"})", Endpoint::Completions, limits());
  ASSERT_TRUE(gr.ok() && gr->grammar);

  const std::vector<std::tuple<Endpoint, std::string, std::string>> bad = {
      {Endpoint::Completions, R"({"prompt":"x","logprobs":21})", "'logprobs'"},
      {Endpoint::Completions, R"({"prompt":"x","logprobs":true})", "'logprobs'"},
      {Endpoint::Completions, R"({"prompt":"x","top_logprobs":2})", "'top_logprobs'"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":"x"}],"logprobs":3})", "'logprobs'"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "requires 'logprobs': true"},
      {Endpoint::Chat, R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})", "'top_logprobs'"},
      {Endpoint::Completions, R"({"prompt":"x","response_format":{"type":"xml"}})", "'response_format'"},
      {Endpoint::Completions, R"({"prompt":"x","response_format":"json"})", "'response_format'"},
      {Endpoint::Completions, R"({"prompt":"x","response_format":{"type":"json_schema"}})", "'json_schema'"},
      {Endpoint::Completions,
       R"({"prompt":"x","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"integer","minimum":3}}}})",
       "unsupported keyword 'minimum'"},
      {Endpoint::Chat,
       R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","properties":{"a":{"not":{}}}}}}})",
       "unsupported keyword 'not'"},
      {Endpoint::Completions, R"({"prompt":"x","grammar":"root ::= y"})", "undefined rule 'y'"},
      {Endpoint::Completions, R"({"prompt":"x","grammar":5})", "'grammar'"},
      {Endpoint::Completions, R"({"prompt":"x","grammar":"root ::= \"a\"","response_format":{"type":"json_object"}})", "'grammar'"},
  };
  for (const auto& [ep, body, want] : bad) {
    auto r = server::parse_request(body, ep, limits());
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_NE(r.error().find(want), std::string::npos) << body << " -> " << r.error();
  }
}

TEST(StructuredServer, LogprobsInOpenAIShapesPlainAndStreamed) {
  REQUIRE_MODELS();
  Harness h;
  // Chat, plain.
  json cb = chat(12);
  cb["logprobs"] = true;
  cb["top_logprobs"] = 3;
  int status = 0;
  const json cr = h.post("/v1/chat/completions", cb, &status);
  ASSERT_EQ(status, 200) << cr.dump();
  const json& content = cr["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(content.is_array() && !content.empty()) << cr.dump();
  std::string joined;
  for (const auto& e : content) {
    ASSERT_TRUE(e["token"].is_string() && e["logprob"].is_number() && e["bytes"].is_array()) << e.dump();
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    ASSERT_EQ(e["top_logprobs"].size(), 3u);
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(e["top_logprobs"][0]["token"], e["token"]);
    EXPECT_DOUBLE_EQ(e["top_logprobs"][0]["logprob"].get<double>(), e["logprob"].get<double>());
    for (const auto& b : e["bytes"]) joined += char(b.get<int>());
  }
  std::string msg = cr["choices"][0]["message"]["content"];
  auto ltrim = [](std::string x) { return x.erase(0, x.find_first_not_of(' ')); };
  EXPECT_EQ(ltrim(joined), ltrim(msg)) << "the tokens' bytes spell the message";
  EXPECT_TRUE(cr["choices"][0]["logprobs"]["refusal"].is_null());

  // Chat, streamed: the same entries, spread over the chunks. The second request's prompt comes
  // from the prefix cache, so its logits come from a differently shaped forward pass: equal
  // tokens, values equal to float rounding.
  json streamed_content = json::array();
  for (const auto& ch : h.stream("/v1/chat/completions", cb))
    if (!ch["choices"].empty() && ch["choices"][0]["logprobs"].is_object())
      for (const auto& e : ch["choices"][0]["logprobs"]["content"]) streamed_content.push_back(e);
  ASSERT_EQ(streamed_content.size(), content.size());
  for (size_t i = 0; i < content.size(); ++i) {
    EXPECT_EQ(streamed_content[i]["token"], content[i]["token"]);
    EXPECT_EQ(streamed_content[i]["bytes"], content[i]["bytes"]);
    EXPECT_NEAR(streamed_content[i]["logprob"].get<double>(), content[i]["logprob"].get<double>(), 1e-4);
    ASSERT_EQ(streamed_content[i]["top_logprobs"].size(), 3u);
  }

  // Without logprobs the field is null.
  const json none = h.post("/v1/chat/completions", chat(4));
  EXPECT_TRUE(none["choices"][0]["logprobs"].is_null());

  // Completions, plain: tokens, token_logprobs, top_logprobs (top N plus the sampled token), text_offset.
  json pb = completion(16);
  pb["logprobs"] = 2;
  const json pr = h.post("/v1/completions", pb, &status);
  ASSERT_EQ(status, 200) << pr.dump();
  const json& lp = pr["choices"][0]["logprobs"];
  const std::string text = pr["choices"][0]["text"];
  ASSERT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
  ASSERT_EQ(lp["tokens"].size(), lp["top_logprobs"].size());
  ASSERT_EQ(lp["tokens"].size(), lp["text_offset"].size());
  ASSERT_FALSE(lp["tokens"].empty());
  size_t prev = 0;
  for (size_t i = 0; i < lp["tokens"].size(); ++i) {
    const size_t off = lp["text_offset"][i];
    EXPECT_GE(off, prev);
    EXPECT_LE(off, text.size());
    prev = off;
    EXPECT_TRUE(lp["top_logprobs"][i].is_object());
    EXPECT_LE(lp["top_logprobs"][i].size(), 3u);
    EXPECT_TRUE(lp["top_logprobs"][i].contains(lp["tokens"][i].get<std::string>()));
  }
  EXPECT_EQ(lp["text_offset"][0], 0);

  // Completions, streamed: the concatenated chunk logprobs equal the plain response's.
  json tokens = json::array(), offsets = json::array();
  for (const auto& ch : h.stream("/v1/completions", pb))
    if (!ch["choices"].empty() && ch["choices"][0]["logprobs"].is_object()) {
      for (const auto& t : ch["choices"][0]["logprobs"]["tokens"]) tokens.push_back(t);
      for (const auto& t : ch["choices"][0]["logprobs"]["text_offset"]) offsets.push_back(t);
    }
  EXPECT_EQ(tokens, lp["tokens"]);
  EXPECT_EQ(offsets, lp["text_offset"]);
}

// json_object and json_schema on chat and completions, streamed too; an unsupported keyword is a
// 400 naming it.
TEST(StructuredServer, ResponseFormatGivesJsonOnBothEndpoints) {
  REQUIRE_MODELS();
  Harness h(spec_config("draft", 3), env().draft.get());
  json schema_body = completion(400);
  schema_body["response_format"] = {{"type", "json_schema"},
                                    {"json_schema", {{"name", "p"}, {"schema", json::parse(kSchema)}, {"strict", true}}}};
  int status = 0;
  const json r = h.post("/v1/completions", schema_body, &status);
  ASSERT_EQ(status, 200) << r.dump();
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  const json doc = json::parse(r["choices"][0]["text"].get<std::string>(), nullptr, false);
  EXPECT_TRUE(doc.is_object() && doc.contains("age")) << r.dump();

  json chat_body = chat(400);
  chat_body["response_format"] = schema_body["response_format"];
  const json c = h.post("/v1/chat/completions", chat_body, &status);
  ASSERT_EQ(status, 200) << c.dump();
  EXPECT_EQ(c["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(json::parse(c["choices"][0]["message"]["content"].get<std::string>(), nullptr, false).is_object()) << c.dump();

  std::string streamed;
  for (const auto& ch : h.stream("/v1/chat/completions", chat_body))
    if (!ch["choices"].empty() && ch["choices"][0]["delta"].contains("content"))
      streamed += ch["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(streamed, c["choices"][0]["message"]["content"]);

  // json_object: any object, whose strings are unbounded, so this little story model may still be
  // inside one at max_tokens; the text is then a valid prefix of a JSON object, and complete
  // (and parsed) when it stopped.
  json obj_body = completion(200);
  obj_body["response_format"] = {{"type", "json_object"}};
  const json o = h.post("/v1/completions", obj_body, &status);
  ASSERT_EQ(status, 200) << o.dump();
  const std::string otext = o["choices"][0]["text"];
  auto og = grammar::Grammar::parse(grammar::json_object_grammar());
  ASSERT_TRUE(og.ok());
  grammar::GrammarMatcher om(std::make_shared<const grammar::Grammar>(std::move(*og)));
  EXPECT_TRUE(om.accept_bytes(otext)) << otext;
  EXPECT_EQ(otext.front(), '{');
  if (o["choices"][0]["finish_reason"] == "stop") EXPECT_TRUE(json::parse(otext, nullptr, false).is_object()) << otext;
  else EXPECT_EQ(o["choices"][0]["finish_reason"], "length");

  json bad = completion(10);
  bad["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"schema", {{"type", "string"}, {"format", "hostname"}}}}}};
  const json e = h.post("/v1/completions", bad, &status);
  EXPECT_EQ(status, 400);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("format"), std::string::npos) << e.dump();
}

// 100 sampled requests at temperature 1 under a schema: every output parses and validates against
// the schema with an independent validator (Debian's python3-jsonschema).
TEST(StructuredServer, HundredSampledOutputsValidateWithJsonschema) {
  REQUIRE_MODELS();
  if (std::system("python3 -c 'import jsonschema' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 with the jsonschema module is needed (apt-get install python3-jsonschema)";
  Harness h(spec_config("draft", 3), env().draft.get());
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("pagoda_structured_" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/schema.json") << kSchema;
  std::ofstream outs(dir + "/outputs.jsonl");
  int stopped = 0;
  for (int i = 0; i < 20; ++i) {  // 20 requests of 5 choices each
    json b = chat(1000);
    b["temperature"] = 1.0;
    b["n"] = 5;
    b["seed"] = 1000 + i;
    b["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "p"}, {"schema", json::parse(kSchema)}}}};
    int status = 0;
    const json r = h.post("/v1/chat/completions", b, &status);
    ASSERT_EQ(status, 200) << r.dump();
    for (const auto& ch : r["choices"]) {
      stopped += ch["finish_reason"] == "stop";
      outs << json(ch["message"]["content"].get<std::string>()).dump() << "\n";
    }
  }
  outs.close();
  EXPECT_EQ(stopped, 100) << "every document must be complete within the token budget";
  const std::string script = R"(
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
bad = 0
n = 0
for line in open(sys.argv[2]):
    n += 1
    text = json.loads(line)
    try:
        jsonschema.validate(json.loads(text), schema)
    except Exception as e:
        bad += 1
        print("INVALID:", text, "--", str(e).splitlines()[0])
print("validated", n, "documents,", bad, "invalid")
sys.exit(1 if bad or n != 100 else 0)
)";
  std::ofstream(dir + "/validate.py") << script;
  const std::string cmd = "python3 " + dir + "/validate.py " + dir + "/schema.json " + dir + "/outputs.jsonl 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string report;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) report += buf;
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << report;
  std::printf("%s", report.c_str());
  std::filesystem::remove_all(dir);
}
