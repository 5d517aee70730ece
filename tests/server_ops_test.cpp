// Operating `pagoda serve`: API conventions (404 model_not_found, a /metrics exposition that
// promtool accepts), serve flags for every engine option, public prefixes shared across tenants,
// Retry-After from the measured drain rate, and one trace identity per request (traceparent,
// /v1/inspect, the access log). Real HTTP on loopback, like server_test.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "apps/server/config.h"
#include "apps/server/public_prefix.h"
#include "apps/server/retry_after.h"
#include "apps/server/server.h"
#include "apps/server/trace.h"
#include "backends/cpu/cpu_backend.h"
#include "core/engine/engine.h"
#include "shell.h"
#include "server_harness.h"

using namespace pagoda;
using namespace pagoda::server;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {


pagoda::testing::StoriesModel& model() { return pagoda::testing::stories_model(); }

EngineConfig small_engine(int32_t max_running = 8, int32_t max_waiting = 32, int32_t num_blocks = 256) {
  EngineConfig c;
  c.num_blocks = num_blocks;
  c.max_running = max_running;
  c.max_waiting = max_waiting;
  return c;
}

struct Harness : pagoda::testing::ServerUnderTest {
  explicit Harness(EngineConfig ec = small_engine(), ServerConfig sc = {})
      : ServerUnderTest(*model().m, model().be, ec, std::move(sc)) {}
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const json& body, const httplib::Headers& h = {}) const {
    return client().Post(path.c_str(), h, body.dump(), "application/json");
  }
  httplib::Result get(const std::string& path, const httplib::Headers& h = {}) const { return client().Get(path.c_str(), h); }
};

json body_of(const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); }
httplib::Headers bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

json completion(const std::string& prompt, int max_tokens) {
  return {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()))).string();
}

// ---------------------------------------------------------------------------------------------
// Part 8: API conventions.

TEST(ServerOps, UnknownModelIs404ModelNotFound) {
  Harness h;
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    json b = completion("Once upon a time", 2);
    if (std::string(path) == "/v1/chat/completions") {
      b.erase("prompt");
      b["messages"] = json::array({{{"role", "user"}, {"content", "hi"}}});
    }
    b["model"] = "gpt-4o";
    auto r = h.post(path, b);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << r->body;
    const json e = body_of(r)["error"];
    EXPECT_EQ(e["code"], "model_not_found") << r->body;
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_NE(e["message"].get<std::string>().find("gpt-4o"), std::string::npos);
    b["model"] = "stories260K";  // the id /v1/models lists
    auto ok = h.post(path, b);
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200) << ok->body;
    b.erase("model");  // naming none means the served one
    auto none = h.post(path, b);
    ASSERT_TRUE(none);
    EXPECT_EQ(none->status, 200) << none->body;
  }
}

// Parses the exposition's TYPE lines: name -> type.
std::map<std::string, std::string> metric_types(const std::string& text) {
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    std::istringstream l(line.substr(7));
    std::string name, type;
    l >> name >> type;
    types[name] = type;
  }
  return types;
}

std::string metrics_after_traffic(Harness& h) {
  for (int i = 0; i < 2; ++i) {
    auto r = h.post("/v1/completions", completion("Once upon a time", 4));
    EXPECT_TRUE(r && r->status == 200);
  }
  auto bad = h.post("/v1/completions", json{{"prompt", "x"}, {"model", "nope"}});
  EXPECT_TRUE(bad && bad->status == 404);
  auto m = h.get("/metrics");
  EXPECT_TRUE(m && m->status == 200);
  return m ? m->body : "";
}

// Counters end in _total and nothing else does (a gauge named like a counter misleads rate()).
TEST(ServerOps, OnlyCountersEndInTotal) {
  Harness h;
  const auto types = metric_types(metrics_after_traffic(h));
  ASSERT_FALSE(types.empty());
  EXPECT_TRUE(types.count("pagoda:kv_blocks_capacity"));
  for (const auto& [name, type] : types) {
    const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    EXPECT_EQ(total, type == "counter") << name << " is a " << type;
  }
}

// `promtool check metrics` (Debian's prometheus package) finds nothing but the colons of the
// vLLM-style names. Skips, saying so, where promtool is not installed.
TEST(ServerOps, MetricsPassPromtool) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool is not on the PATH (apt-get install prometheus); the /metrics lint was not run";
  Harness h;
  const std::string file = temp_path("pagoda_metrics.txt"), report = temp_path("pagoda_promtool.txt");
  {
    std::ofstream f(file, std::ios::binary);
    f << metrics_after_traffic(h);
  }
  const int rc = std::system(("promtool check metrics < " + file + " > " + report + " 2>&1").c_str());
  std::ifstream r(report);
  std::string line, all;
  int findings = 0;
  while (std::getline(r, line)) {
    if (line.empty()) continue;
    all += line + "\n";
    ++findings;
    EXPECT_NE(line.find("should not contain ':'"), std::string::npos) << "promtool finding other than a colon: " << line;
  }
  EXPECT_TRUE(rc == 0 || findings > 0) << "promtool failed without a finding:\n" << all;
  std::filesystem::remove(file);
  std::filesystem::remove(report);
}

// ---------------------------------------------------------------------------------------------
// Serve flags for every engine option, in the config file too.

TEST(ServerOps, EngineOptionsFromFlagsAndConfig) {
  ServeSettings s;
  s.model = "m.gguf";
  auto j = json::parse(R"({"max-preemptions":3,"tenant-cache-blocks":12,"spec-latency-slo":25.5,"probe-interval":0.25,
                           "public-prefix":["a.txt","b.txt"],"retry-after-max":9,"access-log":"-","ngram":3,"spec-k":"auto"})");
  ASSERT_TRUE(apply_config_json(j, s, nullptr).ok());
  ASSERT_TRUE(validate_settings(s).ok());
  s.kv_memory = "1MiB";
  auto ecr = engine_config(s);
  ASSERT_TRUE(ecr.ok()) << ecr.error();
  const EngineConfig& ec = *ecr;
  EXPECT_EQ(ec.kv_bytes, 1u << 20);
  EXPECT_EQ(ec.max_preemptions, 3);
  EXPECT_EQ(ec.tenant_cached_blocks, 12);
  EXPECT_DOUBLE_EQ(ec.spec.latency_slo_s, 0.0255);
  EXPECT_TRUE(ec.spec.adaptive);
  EXPECT_DOUBLE_EQ(ec.probe_interval_s, 0.25);
  EXPECT_TRUE(validate_engine_config(ec).ok());
  EXPECT_EQ(s.public_prefix, (std::vector<std::string>{"a.txt", "b.txt"}));
  EXPECT_EQ(s.retry_after_max, 9);
  EXPECT_EQ(s.access_log, "-");
  ASSERT_TRUE(apply_config_json(json::parse(R"({"public-prefix":"one.txt"})"), s, nullptr).ok());
  EXPECT_EQ(s.public_prefix, std::vector<std::string>{"one.txt"});
  // Wrong types and ranges name the key.
  for (const char* bad : {R"({"public-prefix":[1]})", R"({"max-preemptions":"x"})", R"({"probe-interval":"1"})"}) {
    ServeSettings t;
    auto st = apply_config_json(json::parse(bad), t, nullptr);
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.error().find(json::parse(bad).begin().key()), std::string::npos) << st.error();
  }
  auto out_of_range = [&](auto mutate, const char* key) {
    ServeSettings t;
    t.model = "m.gguf";
    mutate(t);
    auto st = validate_settings(t);
    ASSERT_FALSE(st.ok()) << key;
    EXPECT_NE(st.error().find(key), std::string::npos) << st.error();
  };
  out_of_range([](ServeSettings& t) { t.max_preemptions = -1; }, "max-preemptions");
  out_of_range([](ServeSettings& t) { t.tenant_cache_blocks = -5; }, "tenant-cache-blocks");
  out_of_range([](ServeSettings& t) { t.spec_latency_slo = -1; }, "spec-latency-slo");
  out_of_range([](ServeSettings& t) { t.probe_interval = 0; }, "probe-interval");
  out_of_range([](ServeSettings& t) { t.retry_after_max = 0; }, "retry-after-max");
  out_of_range([](ServeSettings& t) { t.ctx_size = -1; }, "ctx-size");
}

// Every config key is a flag `pagoda serve --help` lists (the keys are the flag names).
TEST(ServerOps, HelpListsEveryConfigKey) {
  const auto r = pagoda::testing::run_shell(std::string(PAGODA_BINARY_DIR) + "/pagoda serve --help");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const auto& key : serve_config_keys()) EXPECT_NE(r.out.find("--" + key), std::string::npos) << "--" << key << " missing";
  for (const char* engine_flag : {"--max-preemptions", "--tenant-cache-blocks", "--spec-latency-slo", "--probe-interval",
                                  "--public-prefix", "--access-log", "--retry-after-max"})
    EXPECT_NE(r.out.find(engine_flag), std::string::npos) << engine_flag;
}

// ---------------------------------------------------------------------------------------------
// Public prefixes: tenant B hits the blocks of tenant A's public system prompt, never A's own text.

const std::string kSystemPrompt =
    "You are a storyteller for small children. Every story has a girl named Lily, a friendly dog, a big red ball, "
    "and a happy ending in the park.";

TEST(ServerOps, PublicPrefixIsSharedAcrossTenantsPrivateTextIsNot) {
  const std::string file = temp_path("pagoda_public_prefix.txt");
  {
    std::ofstream f(file, std::ios::binary);
    f << kSystemPrompt << "\n";
  }
  EngineConfig ec = small_engine();
  ASSERT_TRUE(add_public_prefixes({file}, *model().m->tokenizer, "", ec).ok());
  std::filesystem::remove(file);
  ASSERT_EQ(ec.public_prefixes.size(), 2u);  // completions and chat
  const int32_t completion_pub = int32_t(ec.public_prefixes[0].size());
  ASSERT_GE(completion_pub, 32) << "the test needs a public prefix of at least two blocks";
  EXPECT_FALSE(add_public_prefixes({"/nonexistent/prompt.txt"}, *model().m->tokenizer, "", ec).ok());

  ServerConfig sc;
  sc.api_keys = *ApiKeys::parse("key-a alice\nkey-b bob\n");
  Harness h(ec, sc);
  auto cached = [&](const std::string& key, const json& body, const char* path = "/v1/completions") {
    auto r = h.post(path, body, bearer(key));
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    return r && r->status == 200 ? body_of(r)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>() : -1;
  };
  // The same prompt from both tenants: the system prompt, then alice's private text.
  const json prompt = completion(kSystemPrompt + " Alice's secret: the treasure is under the old oak tree by the river.", 2);
  EXPECT_EQ(cached("key-a", prompt), 0);
  const int alice_again = cached("key-a", prompt);
  const int bob = cached("key-b", prompt);
  // Bob gets exactly the full blocks inside the public prefix; alice, in her own scope, more.
  EXPECT_EQ(bob, completion_pub / 16 * 16);
  EXPECT_GT(alice_again, bob);

  // Chat: the system message is public, the user's message is not.
  auto chat = [](const std::string& user) {
    return json{{"messages", json::array({{{"role", "system"}, {"content", kSystemPrompt}}, {{"role", "user"}, {"content", user}}})},
                {"max_tokens", 2}, {"temperature", 0}};
  };
  const int32_t chat_pub = int32_t(ec.public_prefixes[1].size());
  const json secret = chat("My private note: the code to the garden gate is four four two one, keep it safe for me.");
  cached("key-a", secret, "/v1/chat/completions");
  EXPECT_EQ(cached("key-b", secret, "/v1/chat/completions"), chat_pub / 16 * 16);
}

TEST(ServerOps, WithoutPublicPrefixTenantsShareNothing) {
  ServerConfig sc;
  sc.api_keys = *ApiKeys::parse("key-a alice\nkey-b bob\n");
  Harness h(small_engine(), sc);
  const json prompt = completion(kSystemPrompt + " Alice's secret.", 2);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(h.post("/v1/completions", prompt, bearer("key-a")));
  auto r = h.post("/v1/completions", prompt, bearer("key-b"));
  ASSERT_TRUE(r && r->status == 200);
  EXPECT_EQ(body_of(r)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

// ---------------------------------------------------------------------------------------------
// Retry-After from the measured drain rate.

TEST(ServerOps, RetryAfterFollowsQueueAndDrainRate) {
  EXPECT_EQ(retry_after_seconds(9, 2.0, 0.0, 1, 30), 5);     // (9 + 1) / 2
  EXPECT_EQ(retry_after_seconds(9, 2.0, 0.999, 1, 30), 8);   // stretched by up to half
  EXPECT_EQ(retry_after_seconds(0, 100.0, 0.5, 1, 30), 1);   // never under the floor
  EXPECT_EQ(retry_after_seconds(1000, 1.0, 0.0, 1, 30), 30); // never over the bound
  EXPECT_EQ(retry_after_seconds(5, 0.0, 0.0, 1, 30), 30);    // nothing drained lately
  // Jitter spreads the answers of clients refused at the same moment.
  std::set<int> seen;
  for (int i = 0; i < 10; ++i) seen.insert(retry_after_seconds(39, 4.0, i / 10.0, 1, 60));
  EXPECT_GE(seen.size(), 4u);

  const auto t0 = SteadyClock::now();
  DrainMeter m(10, t0);
  for (int i = 0; i < 20; ++i) m.completed(t0 + std::chrono::milliseconds(100 * i));
  EXPECT_NEAR(m.rate(t0 + std::chrono::seconds(2)), 10.0, 1e-9);  // 20 in the 2 s measured so far
  // The window is (now - 10 s, now]: at 10 s the completion at 0 has just left it.
  EXPECT_NEAR(m.rate(t0 + std::chrono::seconds(10)), 1.9, 1e-9);
  EXPECT_NEAR(m.rate(t0 + std::chrono::milliseconds(11500)), 0.4, 1e-9);  // 1.6 .. 1.9 s remain
  EXPECT_EQ(m.rate(t0 + std::chrono::seconds(30)), 0.0);
}

// A full queue's 429 answers from the drain measured just now; a stalled engine, the bound.
TEST(ServerOps, RetryAfterOnAFullQueueComesFromTheDrainRate) {
  ServerConfig sc;
  sc.retry_after_max_s = 7;
  sc.drain_window_s = 1.0;
  Harness h(small_engine(1, 2), sc);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(h.post("/v1/completions", completion("Once upon a time", 2)));
  h.engine->set_paused(true);
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; ++i) ts.emplace_back([&] { h.post("/v1/completions", completion("Once upon a time", 2)); });
  while (h.srv->in_flight() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto full = h.post("/v1/completions", completion("Once upon a time", 2));
  ASSERT_TRUE(full);
  ASSERT_EQ(full->status, 429) << full->body;
  // Six finished within the last second: 2 queued ahead drain in well under the bound.
  const int fast = std::stoi(full->get_header_value("Retry-After"));
  EXPECT_GE(fast, 1);
  EXPECT_LT(fast, 7);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // nothing finishes: the window empties
  auto stalled = h.post("/v1/completions", completion("Once upon a time", 2));
  ASSERT_TRUE(stalled && stalled->status == 429);
  EXPECT_EQ(stalled->get_header_value("Retry-After"), "7");
  h.engine->set_paused(false);
  for (auto& t : ts) t.join();
}

// ---------------------------------------------------------------------------------------------
// Trace identity, build_info, the oldest waiting request, the access log.

TEST(ServerOps, TraceparentParsing) {
  const std::string ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto t = parse_traceparent(ok);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(t->flags, 1);
  EXPECT_TRUE(parse_traceparent(" " + ok + " "));
  EXPECT_TRUE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));  // a later version
  for (const std::string bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",     // 00 takes no more
                                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",           // zero trace
                                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",           // zero parent
                                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",           // uppercase
                                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",           // version ff
                                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "garbage"})
    EXPECT_FALSE(parse_traceparent(bad)) << bad;
  const TraceContext kept = trace_for(ok), fresh = trace_for("nonsense");
  EXPECT_EQ(kept.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_NE(kept.span_id, "00f067aa0ba902b7");  // our own span
  EXPECT_TRUE(parse_traceparent(kept.header()));
  EXPECT_TRUE(parse_traceparent(fresh.header()));
  EXPECT_NE(fresh.trace_id, trace_for("").trace_id);
}

std::vector<json> read_lines(const std::string& path) {
  std::vector<json> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

TEST(ServerOps, OneTraceIdFromHeaderThroughInspectAndAccessLog) {
  const std::string log = temp_path("pagoda_access.log");
  std::filesystem::remove(log);
  ServerConfig sc;
  sc.access_log = log;
  sc.backend = "cpu";
  sc.device = "test \"cpu\"";
  sc.version = "abc123";
  sc.api_keys = *ApiKeys::parse("key-a alice\nkey-ops ops role=admin\n");
  {
    Harness h(small_engine(), sc);
    const std::string trace = "0af7651916cd43dd8448eb211c80319c";
    httplib::Headers hd = bearer("key-a");
    hd.emplace("traceparent", "00-" + trace + "-b7ad6b7169203331-01");
    // Held in the queue by a paused engine: /v1/inspect shows the trace id on the waiting request,
    // and /metrics the age of the oldest waiting request.
    h.engine->set_paused(true);
    int held_status = 0;
    std::string held_trace, held_body;
    struct Joiner {  // an early ASSERT return must neither leave the engine paused nor the thread unjoined
      Engine* e = nullptr;
      std::thread t;
      ~Joiner() {
        e->set_paused(false);
        if (t.joinable()) t.join();
      }
    };
    Joiner holder{h.engine.get(), {}};
    auto& t = holder.t;
    t = std::thread([&] {
      auto r = h.post("/v1/completions", completion("Once upon a time", 3), hd);
      if (!r) return;
      held_status = r->status;
      held_trace = r->get_header_value("traceparent");
      held_body = r->body;
    });
    json seen, last;
    for (int i = 0; i < 200 && seen.is_null(); ++i) {
      auto r = h.get("/v1/inspect?blocks=0", bearer("key-ops"));
      last = body_of(r);
      if (r && r->status == 200)
        for (const auto& q : last["requests"])
          if (q.value("trace_id", "") == trace) seen = q;
      if (seen.is_null()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(seen.is_object()) << "the trace id never showed in /v1/inspect: " << last.value("requests", json()).dump()
                                  << " waiting " << last.value("waiting", -1);
    EXPECT_EQ(seen.value("state", ""), "waiting") << seen.dump();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto m = h.get("/metrics");
    ASSERT_TRUE(m && m->status == 200);
    const std::string gauge = "\npagoda:oldest_waiting_request_age_seconds ";
    const auto at = m->body.find(gauge);
    ASSERT_NE(at, std::string::npos);
    EXPECT_GE(std::stod(m->body.substr(at + gauge.size())), 0.2);
    EXPECT_NE(m->body.find("pagoda:build_info{model=\"stories260K\",backend=\"cpu\",device=\"test \\\"cpu\\\"\",version=\"abc123\"} 1"),
              std::string::npos);
    h.engine->set_paused(false);
    t.join();
    ASSERT_EQ(held_status, 200) << held_body;
    auto back = parse_traceparent(held_trace);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->trace_id, trace);

    // No header: the server makes a trace and returns it; a refusal carries one too.
    auto plain = h.post("/v1/completions", completion("Once upon a time", 2), bearer("key-a"));
    ASSERT_TRUE(plain && plain->status == 200);
    auto made = parse_traceparent(plain->get_header_value("traceparent"));
    ASSERT_TRUE(made);
    EXPECT_NE(made->trace_id, trace);
    auto refused = h.post("/v1/completions", json{{"prompt", "x"}, {"model", "other"}}, bearer("key-a"));
    ASSERT_TRUE(refused && refused->status == 404);
    EXPECT_TRUE(parse_traceparent(refused->get_header_value("traceparent")));
  }
  const auto lines = read_lines(log);
  std::filesystem::remove(log);
  ASSERT_EQ(lines.size(), 3u);
  const json& first = lines[0];
  EXPECT_EQ(first["trace_id"], "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(first["tenant"], "alice");
  EXPECT_EQ(first["status"], 200);
  EXPECT_EQ(first["outcome"], "length");
  EXPECT_EQ(first["completion_tokens"], 3);
  EXPECT_GT(first["prompt_tokens"].get<int>(), 0);
  EXPECT_GE(first["stages_ms"]["queue"].get<double>(), 200.0);  // it waited behind the paused engine
  for (const char* k : {"prefill", "decode", "e2e", "ttft"}) EXPECT_TRUE(first["stages_ms"].contains(k)) << k;
  EXPECT_EQ(lines[1]["trace_id"].get<std::string>().size(), 32u);  // the one the server made
  EXPECT_NE(lines[1]["trace_id"], first["trace_id"]);
  EXPECT_EQ(lines[2]["status"], 404);
  EXPECT_EQ(lines[2]["outcome"], "model_not_found");
}

TEST(ServerOps, AccessLogThatCannotOpenFailsStart) {
  auto e = Engine::create(*model().m, model().be, small_engine());
  ASSERT_TRUE(e.ok());
  ServerConfig sc;
  sc.access_log = "/nonexistent-dir/access.log";
  Server srv(**e, sc);
  auto p = srv.start("127.0.0.1", 0);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().find("access-log"), std::string::npos);
}

}  // namespace
