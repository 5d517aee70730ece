// `pagoda serve` against hostile clients and curious tenants, over raw sockets on 127.0.0.1:
// bodies without a key, compressed and oversized bodies, slow headers, pipelining, NUL and BOM
// tricks, duplicate JSON members, tenants reading each other's state, priority and metrics
// access, label injection, and a client hanging up on a non-streaming request. Every loop is
// bounded in count and time. The server runs in this process, so its RSS is this process's.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "apps/server/auth.h"
#include "apps/server/request_parse.h"
#include "apps/server/server.h"
#include "apps/server/views.h"
#include "backends/cpu/cpu_backend.h"
#include "core/engine/engine.h"
#include "server_harness.h"

using namespace pagoda;
using namespace pagoda::server;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {


double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

pagoda::testing::StoriesModel& model() { return pagoda::testing::stories_model(); }

EngineConfig hostile_engine() {
  EngineConfig ec;
  ec.num_blocks = 256;
  ec.max_running = 8;
  ec.max_waiting = 32;
  return ec;
}

struct Harness : pagoda::testing::ServerUnderTest {
  explicit Harness(ServerConfig sc = {}) : ServerUnderTest(*model().m, model().be, hostile_engine(), std::move(sc)) {}
};

// A blocking TCP client with bounded waits; no HTTP library, so nothing is smoothed over.
struct Raw {
  int fd = -1;
  std::string in;  // bytes received and not yet consumed by read_response
  explicit Raw(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  ~Raw() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  bool send(std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(size_t(n));
    }
    return true;
  }
  // Reads whatever arrives within `timeout_s`; false on EOF/error (connection closed).
  bool pull(double timeout_s) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, int(timeout_s * 1000)) <= 0) return true;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in.append(buf, size_t(n));
    return true;
  }
  bool readable_now() {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  // One response with a Content-Length body; status 0 when none arrived within `timeout_s`.
  struct Resp {
    int status = 0;
    std::string head, body;
  };
  Resp read_response(double timeout_s = 10) {
    const auto t0 = Clock::now();
    Resp r;
    while (since(t0) < timeout_s) {
      const size_t end = in.find("\r\n\r\n");
      if (end != std::string::npos) {
        r.head = in.substr(0, end);
        size_t len = 0;
        if (auto cl = r.head.find("Content-Length: "); cl != std::string::npos) len = std::stoul(r.head.substr(cl + 16));
        if (in.size() >= end + 4 + len) {
          r.status = std::atoi(r.head.c_str() + 9);
          r.body = in.substr(end + 4, len);
          in.erase(0, end + 4 + len);
          return r;
        }
      }
      if (!pull(0.05)) break;
    }
    return r;
  }
};

std::string request(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::string& extra_headers = "") {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers;
  if (!body.empty() || method == "POST") r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

std::string auth(const std::string& key) { return "Authorization: Bearer " + key + "\r\n"; }

Raw::Resp roundtrip(int port, const std::string& req, double timeout_s = 30) {
  Raw c(port);
  c.send(req);
  return c.read_response(timeout_s);
}

json body_json(const Raw::Resp& r) { return json::parse(r.body, nullptr, false); }

std::string completion(const std::string& prompt, int max_tokens, const std::string& extra = "") {
  return R"({"prompt":")" + prompt + R"(","max_tokens":)" + std::to_string(max_tokens) + R"(,"temperature":0)" + extra + "}";
}

size_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;
  return 0;
}

ServerConfig keyed(const std::string& keys_text) {
  ServerConfig sc;
  auto k = ApiKeys::parse(keys_text);
  EXPECT_TRUE(k.ok()) << (k ? "" : k.error());
  if (k) sc.api_keys = std::move(*k);
  return sc;
}

const char* kKeys = "key-a alice\nkey-b bob\nkey-root ops role=admin\n";

// Sends a chunked body in 256 KiB chunks until the server answers, a send fails, or `total`
// bytes are out. Returns the bytes sent.
size_t send_chunks_until_answered(Raw& c, size_t total) {
  const std::string chunk_data(256 << 10, 'a');
  const std::string chunk = fmt::format("{:x}\r\n", chunk_data.size()) + chunk_data + "\r\n";
  size_t sent = 0;
  while (sent < total && !c.readable_now()) {
    if (!c.send(chunk)) break;
    sent += chunk_data.size();
  }
  return sent;
}

}  // namespace

// 64 MiB of chunked body with no key: the 401 comes from the headers alone while the body is
// still arriving, and the server's memory does not grow with what the client sends.
TEST(ServerHostile, ChunkedBodyWithoutKeyIsRefusedBeforeItIsRead) {
  Harness h(keyed(kKeys));
  const size_t rss0 = rss_bytes();
  Raw c(h.port);
  ASSERT_TRUE(c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"));
  const auto t0 = Clock::now();
  const size_t sent = send_chunks_until_answered(c, size_t(64) << 20);
  const Raw::Resp r = c.read_response(3);
  EXPECT_EQ(r.status, 401) << r.head;
  EXPECT_LT(since(t0), 3.0);
  EXPECT_LT(sent, size_t(64) << 20) << "the server kept reading an unauthenticated body";
  const size_t grown = rss_bytes() > rss0 ? rss_bytes() - rss0 : 0;
  EXPECT_LT(grown, size_t(16) << 20) << "RSS grew by " << grown << " bytes";
}

// With a key, a chunked body is limited by its decoded size while it is read: 413 once past
// --max-body, long before the client's 64 MiB are out.
TEST(ServerHostile, ChunkedBodyOverTheLimitIsCutOffWhileReading) {
  ServerConfig sc = keyed(kKeys);
  sc.max_body_bytes = 1 << 20;
  Harness h(sc);
  const size_t rss0 = rss_bytes();
  Raw c(h.port);
  ASSERT_TRUE(c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth("key-a") +
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"));
  const size_t sent = send_chunks_until_answered(c, size_t(64) << 20);
  const Raw::Resp r = c.read_response(3);
  EXPECT_EQ(r.status, 413) << r.head;
  EXPECT_NE(r.body.find("1048576"), std::string::npos) << r.body;
  EXPECT_LT(sent, size_t(64) << 20);
  const size_t grown = rss_bytes() > rss0 ? rss_bytes() - rss0 : 0;
  EXPECT_LT(grown, size_t(16) << 20) << "RSS grew by " << grown << " bytes";
  // A declared Content-Length over the limit is refused from the headers alone.
  Raw d(h.port);
  d.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth("key-a") + "Content-Length: 99999999\r\n\r\n");
  EXPECT_EQ(d.read_response(3).status, 413);
}

// A compressed body is never inflated (its decoded size is unbounded by its wire size): 415.
TEST(ServerHostile, CompressedBodiesAreRefused) {
  Harness h(keyed(kKeys));
  const std::string fake_gzip("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
  const Raw::Resp r = roundtrip(h.port, request("POST", "/v1/completions", fake_gzip, auth("key-a") + "Content-Encoding: gzip\r\n"));
  EXPECT_EQ(r.status, 415) << r.head;
  EXPECT_NE(r.body.find("gzip"), std::string::npos) << r.body;
  const Raw::Resp ok = roundtrip(h.port, request("POST", "/v1/completions", completion("Once upon a time", 2),
                                                 auth("key-a") + "Content-Encoding: identity\r\n"));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

// Slowloris: connections trickling a header byte every 100 ms are closed by the total header
// deadline, the connection bound answers 503 at once while they hold every slot, and /health
// answers again as soon as they are gone.
TEST(ServerHostile, SlowHeadersAreCutOffAndTheServerStaysUp) {
  ServerConfig sc;
  sc.header_timeout_s = 1.0;
  sc.http_threads = 4;  // the connection bound
  Harness h(sc);
  std::vector<std::unique_ptr<Raw>> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(std::make_unique<Raw>(h.port));
    slow.back()->send("GET /health HTTP/1.1\r\nX-Slow: ");
  }
  sleep_ms(100);
  const Raw::Resp full = roundtrip(h.port, request("GET", "/health"), 3);
  EXPECT_EQ(full.status, 503) << full.head;
  const auto t0 = Clock::now();
  std::vector<double> closed_at(slow.size(), -1);
  for (int tick = 0; tick < 40; ++tick) {  // at most 4 s
    for (size_t i = 0; i < slow.size(); ++i) {
      if (closed_at[i] >= 0) continue;
      slow[i]->send("a");
      if (!slow[i]->pull(0.02) || slow[i]->in.find("408") != std::string::npos) closed_at[i] = since(t0);
    }
    if (std::all_of(closed_at.begin(), closed_at.end(), [](double t) { return t >= 0; })) break;
    sleep_ms(80);
  }
  for (double t : closed_at) {
    EXPECT_GE(t, 0) << "a slow connection was still open after 4 s";
    EXPECT_LT(t, 2.5);
  }
  sleep_ms(200);  // the closed slots are reaped
  EXPECT_EQ(roundtrip(h.port, request("GET", "/health"), 3).status, 200);
}

// Stop is a hard stop: a connection stuck half-way through its headers does not hold it up.
TEST(ServerHostile, StopDoesNotWaitForSlowClients) {
  Harness h;
  Raw stuck(h.port);
  stuck.send("GET /health HTTP/1.1\r\nX-Slow: a");
  sleep_ms(100);
  const auto t0 = Clock::now();
  h.srv->stop(0.1);
  EXPECT_LT(since(t0), 2.0);
}

// Two requests in one write get two responses, in order.
TEST(ServerHostile, PipelinedRequestsAreAllAnswered) {
  Harness h(keyed(kKeys));
  Raw c(h.port);
  ASSERT_TRUE(c.send(request("GET", "/health") +
                     request("POST", "/v1/completions", completion("Once upon a time", 3), auth("key-a")) +
                     request("GET", "/v1/models", "", auth("key-b"))));
  const Raw::Resp a = c.read_response(), b = c.read_response(), m = c.read_response();
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(body_json(a).value("status", ""), "ok");
  EXPECT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(body_json(b)["object"], "text_completion");
  EXPECT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(body_json(m)["object"], "list");
}

// A NUL after a valid key must not authenticate ("key-a\0garbage" is not "key-a").
TEST(ServerHostile, NulInBearerTokenIsRejected) {
  Harness h(keyed(kKeys));
  const std::string nul_header = std::string("Authorization: Bearer key-a") + '\0' + "garbage\r\n";
  const Raw::Resp r = roundtrip(h.port, request("POST", "/v1/completions", completion("Once upon a time", 2), nul_header));
  // Beast refuses a control character in a header value (400) before authentication looks at it;
  // bearer_token() refuses it too, for any path that reached it.
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(bearer_token(std::string("Bearer key-a\0garbage", 21)), "");
  EXPECT_EQ(bearer_token("Bearer key-a\x01"), "");
  EXPECT_EQ(roundtrip(h.port, request("POST", "/v1/completions", completion("Once upon a time", 2), auth("key-a"))).status, 200);
}

// A keys file saved with a UTF-8 byte-order mark keeps its first key.
TEST(ServerHostile, KeysFileWithByteOrderMark) {
  const std::string path = ::testing::TempDir() + "/pagoda_bom_keys.txt";
  {
    std::ofstream f(path, std::ios::binary);
    f << "\xEF\xBB\xBFkey-a alice\nkey-b bob\n";
  }
  auto keys = ApiKeys::load(path);
  ASSERT_TRUE(keys.ok()) << keys.error();
  EXPECT_EQ(keys->tenant_of("key-a").value_or(""), "alice");
  auto json_keys = ApiKeys::parse("\xEF\xBB\xBF{\"key-a\": \"alice\"}");
  ASSERT_TRUE(json_keys.ok()) << json_keys.error();
  EXPECT_EQ(json_keys->tenant_of("key-a").value_or(""), "alice");
  ServerConfig sc;
  sc.api_keys = std::move(*keys);
  Harness h(sc);
  EXPECT_EQ(roundtrip(h.port, request("GET", "/v1/models", "", auth("key-a"))).status, 200);
  std::remove(path.c_str());
}

// The keys file's roles and priority ceilings, in all three forms; old files mean what they meant.
TEST(ServerHostile, KeysFileRolesAndPriorityCeilings) {
  auto t = ApiKeys::parse("k1 alice\nk2 ops role=admin\nk3 bob max_priority=7 role=tenant\nk4 root role=admin max_priority=3\n");
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->find("k1")->role, Role::Tenant);
  EXPECT_EQ(t->find("k1")->max_priority, 0);
  EXPECT_EQ(t->find("k2")->role, Role::Admin);
  EXPECT_EQ(t->find("k2")->max_priority, kMaxPriority);
  EXPECT_EQ(t->find("k3")->max_priority, 7);
  EXPECT_EQ(t->find("k4")->max_priority, 3);
  auto o = ApiKeys::parse(R"({"k1":"alice","k2":{"tenant":"ops","role":"admin"},"k3":{"tenant":"bob","max_priority":2}})");
  ASSERT_TRUE(o.ok()) << o.error();
  EXPECT_EQ(o->find("k2")->role, Role::Admin);
  EXPECT_EQ(o->find("k3")->max_priority, 2);
  auto a = ApiKeys::parse(R"([{"key":"k1","tenant":"alice","role":"admin","max_priority":9}])");
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->find("k1")->max_priority, 9);
  for (const char* bad : {"k1 alice role=root\n", "k1 alice max_priority=-1\n", "k1 alice max_priority=x\n", "k1 alice colour=red\n",
                          "k1 alice extra\n", R"({"k1":{"tenant":"a","rol":"admin"}})", R"({"k1":{"role":"admin"}})",
                          R"([{"key":"k1","tenant":"a","max_priority":2000000}])", "k\x01y alice\n"}) {
    auto r = ApiKeys::parse(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().find("api keys"), std::string::npos) << r.error();
    }
  }
}

// A JSON object naming a member twice is refused, in request bodies and in keys files.
TEST(ServerHostile, DuplicateJsonMembersAreRefused) {
  Harness h;
  const Raw::Resp r = roundtrip(h.port, request("POST", "/v1/completions", R"({"prompt":"Once","max_tokens":2,"max_tokens":900000})"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("duplicate member \\\"max_tokens\\\""), std::string::npos) << r.body;
  EXPECT_FALSE(parse_json_strict(R"({"a":{"b":1,"b":2}})").ok());
  EXPECT_TRUE(parse_json_strict(R"({"a":{"b":1},"c":[{"b":1},{"b":2}]})").ok());  // same name, different objects
  auto keys = ApiKeys::parse(R"({"k1":"alice","k1":"bob"})");
  ASSERT_FALSE(keys.ok());
  EXPECT_NE(keys.error().find("duplicate"), std::string::npos) << keys.error();
}

// A tenant's /v1/inspect shows its own requests and blocks only; an admin sees everyone, with
// block keys only as an HMAC (never the engine's key bits).
TEST(ServerHostile, InspectShowsATenantOnlyItsOwnState) {
  Harness h(keyed(kKeys));
  const std::string prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.";
  // Alice caches a prompt, then runs long requests; bob, alice and the admin sample /v1/inspect
  // while they run, and the long requests are cancelled once every view has been seen.
  ASSERT_EQ(roundtrip(h.port, request("POST", "/v1/completions", completion(prompt, 2), auth("key-a"))).status, 200);
  std::vector<std::thread> alice_runs;
  for (int i = 0; i < 3; ++i)
    alice_runs.emplace_back([&] {
      roundtrip(h.port, request("POST", "/v1/completions", completion(prompt, 400, R"(,"ignore_eos":true)"), auth("key-a")));
    });
  bool root_saw_alice = false, alice_saw_own = false;
  int bob_samples_while_alice_seen = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < 400 && since(t0) < 20 && bob_samples_while_alice_seen < 3; ++i) {
    const json bob = body_json(roundtrip(h.port, request("GET", "/v1/inspect", "", auth("key-b"))));
    ASSERT_TRUE(bob.contains("requests")) << bob.dump();
    EXPECT_TRUE(bob["requests"].empty()) << bob["requests"].dump();
    EXPECT_FALSE(bob["counters"]["per_tenant"].contains("alice"));
    for (const auto& k : bob["blocks"]["key_prefix"]) ASSERT_EQ(k, 0);
    for (const auto& t : bob["blocks"]["tenant"]) ASSERT_EQ(t, 0);
    for (const auto& o : bob["blocks"]["owner"]) ASSERT_EQ(o, 0);
    const json alice = body_json(roundtrip(h.port, request("GET", "/v1/inspect?blocks=0", "", auth("key-a"))));
    for (const auto& r : alice["requests"]) EXPECT_EQ(r["tenant"], "alice");
    alice_saw_own = alice_saw_own || !alice["requests"].empty();
    const json root = body_json(roundtrip(h.port, request("GET", "/v1/inspect?blocks=0", "", auth("key-root"))));
    root_saw_alice = root_saw_alice || !root["requests"].empty();
    if (root_saw_alice && alice_saw_own) ++bob_samples_while_alice_seen;
    sleep_ms(2);
  }
  h.srv->cancel_all();
  for (auto& t : alice_runs) t.join();
  EXPECT_TRUE(root_saw_alice) << "the admin never saw alice's requests: the sampling proved nothing";
  EXPECT_TRUE(alice_saw_own);

  // Block keys: the admin sees as many keyed blocks as the engine holds, none with its raw key.
  json root;
  std::set<uint32_t> raw_keys, shown;
  for (int i = 0; i < 100; ++i) {  // wait for the snapshot after the last request
    root = body_json(roundtrip(h.port, request("GET", "/v1/inspect", "", auth("key-root"))));
    if (root.value("blocks_in_use", -1) == 0 && root["counters"]["requests_finished"] == 4) break;
    sleep_ms(20);
  }
  for (const BlockInfo& b : h.engine->snapshot()->blocks)
    if (b.key_prefix) raw_keys.insert(b.key_prefix);
  for (const auto& k : root["blocks"]["key_prefix"])
    if (k != 0) shown.insert(k.get<uint32_t>());
  EXPECT_FALSE(raw_keys.empty());
  EXPECT_EQ(shown.size(), raw_keys.size());
  for (uint32_t k : shown) EXPECT_EQ(raw_keys.count(k), 0u) << "a raw block key was shown";
  EXPECT_TRUE(root["counters"]["per_tenant"].contains("alice"));

  // The stream applies the same filter.
  Raw c(h.port);
  c.send(request("GET", "/v1/inspect/stream?blocks=1", "", auth("key-b")));
  for (int i = 0; i < 20 && c.in.find("\n\n", c.in.find("data: ")) == std::string::npos; ++i) c.pull(0.1);
  const size_t d = c.in.find("data: ");
  ASSERT_NE(d, std::string::npos) << c.in;
  const json ev = json::parse(c.in.substr(d + 6, c.in.find('\n', d) - d - 6), nullptr, false);
  EXPECT_FALSE(ev["counters"]["per_tenant"].contains("alice")) << ev.dump();
  for (const auto& k : ev["blocks"]["key_prefix"]) EXPECT_EQ(k, 0);
}

// The keys file grants each key a priority ceiling; a body cannot climb over it.
TEST(ServerHostile, PriorityIsCappedByTheKey) {
  Harness h(keyed("key-a alice max_priority=5\nkey-b bob\nkey-root ops role=admin\n"));
  const std::vector<std::pair<std::string, int>> asks = {{"key-a", 100}, {"key-b", 7}, {"key-b", -3}};
  std::vector<std::thread> ts;
  for (const auto& [key, prio] : asks)
    ts.emplace_back([&h, key = key, prio = prio] {
      roundtrip(h.port, request("POST", "/v1/completions",
                                completion("Once", 400, R"(,"ignore_eos":true,"priority":)" + std::to_string(prio)), auth(key)));
    });
  std::map<uint64_t, std::pair<std::string, int>> seen;  // request id -> (tenant, priority)
  const auto t0 = Clock::now();
  for (int i = 0; i < 400 && seen.size() < 3 && since(t0) < 20; ++i) {
    const json root = body_json(roundtrip(h.port, request("GET", "/v1/inspect?blocks=0", "", auth("key-root"))));
    for (const auto& r : root["requests"]) seen[r["id"].get<uint64_t>()] = {r["tenant"], r["priority"].get<int>()};
    sleep_ms(2);
  }
  h.srv->cancel_all();  // seen enough; no need to generate the rest
  for (auto& t : ts) t.join();
  std::multiset<std::pair<std::string, int>> got;
  for (const auto& [id, tp] : seen) got.insert(tp);
  EXPECT_EQ(got, (std::multiset<std::pair<std::string, int>>{{"alice", 5}, {"bob", 0}, {"bob", -3}}));
}

// --metrics-key closes /metrics to everyone but that key and admin API keys.
TEST(ServerHostile, MetricsKeyIsRequiredWhenSet) {
  ServerConfig sc = keyed(kKeys);
  sc.metrics_key = "scrape-me";
  Harness h(sc);
  EXPECT_EQ(roundtrip(h.port, request("GET", "/metrics")).status, 401);
  EXPECT_EQ(roundtrip(h.port, request("GET", "/metrics", "", auth("key-a"))).status, 401);
  EXPECT_EQ(roundtrip(h.port, request("GET", "/metrics", "", auth("scrape-me"))).status, 200);
  EXPECT_EQ(roundtrip(h.port, request("GET", "/metrics", "", auth("key-root"))).status, 200);
  EXPECT_EQ(roundtrip(h.port, request("GET", "/health")).status, 200);  // health stays open
}

// Tenant names are label values: a quote or newline in one cannot forge a metric line.
TEST(ServerHostile, TenantLabelsAreEscaped) {
  EXPECT_EQ(prometheus_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  ServerConfig sc = keyed(R"({"k-evil": "x\"} 1\nfake_metric{a=\"b"})");
  Harness h(sc);
  ASSERT_EQ(roundtrip(h.port, request("POST", "/v1/completions", completion("Once", 2), auth("k-evil"))).status, 200);
  std::string text;
  for (int i = 0; i < 100 && text.find("tenant_tokens_total{") == std::string::npos; ++i) {
    text = roundtrip(h.port, request("GET", "/metrics")).body;
    sleep_ms(20);
  }
  EXPECT_NE(text.find(R"(pagoda:tenant_tokens_total{tenant="x\"} 1\nfake_metric{a=\"b",kind=)"), std::string::npos) << text;
  EXPECT_EQ(text.find("\nfake_metric"), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '#') > 0, true);
  EXPECT_EQ(text.find("# TYPE pagoda:tenant_tokens_total"), text.rfind("# TYPE pagoda:tenant_tokens_total"));
}

// A non-streaming client that hangs up has its request cancelled and its blocks freed.
TEST(ServerHostile, HangUpOnNonStreamingRequestCancelsIt) {
  Harness h;
  h.engine->set_paused(true);
  {
    Raw c(h.port);
    c.send(request("POST", "/v1/completions", completion("Once upon a time", 300, R"(,"ignore_eos":true)")));
    while (h.srv->in_flight() < 1) sleep_ms(5);
  }  // the client closes its socket without reading anything
  sleep_ms(400);
  h.engine->set_paused(false);
  json s;
  for (int i = 0; i < 200; ++i) {
    s = body_json(roundtrip(h.port, request("GET", "/v1/inspect?blocks=0")));
    if (s.contains("counters") && s["counters"]["requests_finished"] == 1 && s["blocks_in_use"] == 0) break;
    sleep_ms(25);
  }
  EXPECT_EQ(s["counters"]["finished"].value("cancelled", 0), 1) << s["counters"].dump();
  EXPECT_LT(s["counters"]["generated_tokens"].get<int>(), 300);
  EXPECT_EQ(s["blocks_in_use"], 0);
  for (int i = 0; i < 100 && h.srv->in_flight() > 0; ++i) sleep_ms(10);  // the worker notices its final event
  EXPECT_EQ(h.srv->in_flight(), 0u);
}

// Inspector streams are few: past the bound a client gets 429, not another held thread.
TEST(ServerHostile, InspectStreamsAreBounded) {
  ServerConfig sc;
  sc.max_inspect_streams = 2;
  Harness h(sc);
  std::vector<std::unique_ptr<Raw>> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(std::make_unique<Raw>(h.port));
    open.back()->send(request("GET", "/v1/inspect/stream?blocks=0&interval_ms=10"));
    for (int k = 0; k < 20 && open.back()->in.find("data: ") == std::string::npos; ++k) open.back()->pull(0.1);
    EXPECT_NE(open.back()->in.find("200 OK"), std::string::npos);
  }
  const Raw::Resp third = roundtrip(h.port, request("GET", "/v1/inspect/stream?blocks=0"), 3);
  EXPECT_EQ(third.status, 429) << third.head;
  // The rate floor: 10 ms asked, at most one snapshot per 50 ms delivered.
  Raw& s = *open.front();
  s.in.clear();
  const auto t0 = Clock::now();
  while (since(t0) < 0.5) s.pull(0.05);
  size_t events = 0;
  for (size_t p = s.in.find("data: "); p != std::string::npos; p = s.in.find("data: ", p + 1)) ++events;
  EXPECT_LE(events, 13u);
  open.clear();
  sleep_ms(300);  // closed streams release their slots at their next write
  const Raw::Resp again = [&] {
    Raw c(h.port);
    c.send(request("GET", "/v1/inspect/stream?blocks=0"));
    for (int k = 0; k < 20 && c.in.find("\r\n\r\n") == std::string::npos; ++k) c.pull(0.1);
    return Raw::Resp{std::atoi(c.in.c_str() + 9), "", ""};
  }();
  EXPECT_EQ(again.status, 200);
}
