#include "apps/server/server.h"

#include <fmt/core.h>

#include <csignal>
#include <cstdlib>
#include <ctime>
#include <random>

#include "apps/server/server_internal.h"
#include "apps/server/sse.h"
#include "core/telemetry/snapshot_json.h"

namespace pagoda::server {

using nlohmann::json;

namespace {

ParseLimits limits_for(const Engine& e, const ServerConfig& c) {
  ParseLimits l;
  l.ctx_len = e.context_length();
  l.vocab = e.config().vocab;
  l.default_max_tokens = c.default_max_tokens;
  return l;
}

http::TransportConfig transport_config(const ServerConfig& c) {
  http::TransportConfig t;
  t.max_body = c.max_body_bytes;
  // Every connection holds a thread (a stream holds it for its whole life); `serve` sizes this to
  // what the engine can hold (running + queued) plus slack for health checks and inspectors.
  t.max_connections = c.http_threads > 0 ? size_t(c.http_threads) : 64;
  t.header_timeout_s = c.header_timeout_s;
  t.body_timeout_s = c.body_timeout_s;
  t.keep_alive_s = c.keep_alive_timeout_s;
  t.write_timeout_s = c.write_timeout_s;
  return t;
}

std::string error_type_for(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 408: return "timeout_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

Server::Impl::Impl(Engine& e, ServerConfig c)
    : engine(e),
      cfg(std::move(c)),
      chat(e.tokenizer(), cfg.chat_template),
      limits(limits_for(e, cfg)),
      transport([this] {
        http::TransportConfig t = transport_config(cfg);
        // Errors the transport answers itself (404, 408, 413, 415, 503 ...) get our JSON shape.
        t.error_body = [](int status, const std::string& message) {
          return dump_json(error_json({status, message, error_type_for(status), ""}));
        };
        t.on_response = [this](int status) {
          std::lock_guard<std::mutex> lk(stats_mu);
          ++responses[status];
        };
        return t;
      }()) {
  nonce = uint32_t(std::random_device{}());
}

Server::Server(Engine& engine, ServerConfig cfg) : impl_(std::make_unique<Impl>(engine, std::move(cfg))) {}

Server::~Server() { stop(0); }

void Server::Impl::setup() {
  transport.set_header_check([this](const http::Request& req) { return check_headers(req); });
  route_monitoring();
  route_openai();
  route_tokenize();
}

Result<int> Server::start(const std::string& host, int port) {
  Impl& d = *impl_;
  if (d.started) return make_error("the server is already started");
  // A client that hangs up mid-write must surface as a failed write, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  if (!d.cfg.access_log.empty()) {
    auto log = AccessLog::open(d.cfg.access_log);
    if (!log) return log.take_error();
    d.access_log = std::move(*log);
  }
  d.setup();
  auto bound = d.transport.bind(host, port);
  if (!bound) return bound.take_error();
  d.port = *bound;
  d.started = true;
  d.transport.start();
  return *bound;
}

void Server::begin_shutdown() {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
}

void Server::stop(double grace_s) {
  Impl& d = *impl_;
  if (!d.started || d.stopped) return;
  d.stopped = true;
  // Keep the listener open while draining: stopping the transport cuts every running stream
  // off, so closing it first would truncate responses mid-sentence. New requests get 503.
  begin_shutdown();
  d.wait_idle(grace_s);
  d.cancel_all();
  // Cancelled requests end within a step; an engine that no longer steps must not hang us.
  if (!d.wait_idle(5.0)) d.abort_all();
  d.wait_idle(2.0);
  d.transport.stop();  // the hard part: every remaining connection, however slow, is closed
}

void Server::cancel_all() { impl_->cancel_all(); }

int Server::port() const { return impl_->port; }

size_t Server::in_flight() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->active.size();
}

void Server::Impl::track(const Generation& g) {
  bool late = false;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (const Choice& c : g.choices) active[c.engine_id] = g.channel;
    late = stopping;
  }
  // Admitted in the instant shutdown began, after stop() looked at `active`: end it right away.
  if (late)
    for (const Choice& c : g.choices) engine.cancel(c.engine_id);
}

void Server::Impl::untrack(const Generation& g) {
  {
    std::lock_guard<std::mutex> lk(mu);
    for (const Choice& c : g.choices) active.erase(c.engine_id);
  }
  drain.completed(SteadyClock::now(), g.choices.size());
  cv.notify_all();
}

// One JSON line per generation request: who (tenant, trace), what it cost (tokens), where the
// time went (the engine's stage times of the first choice), and how it ended.
void Server::Impl::log_access(const Generation& g, int status, const std::string& error_code) {
  if (!access_log) return;
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = std::time_t(ms / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  json line = {{"time", fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                                    utc.tm_hour, utc.tm_min, utc.tm_sec, ms % 1000)},
               {"trace_id", g.trace.trace_id}, {"span_id", g.trace.span_id},
               {"endpoint", g.meta.endpoint == Endpoint::Chat ? "/v1/chat/completions" : "/v1/completions"},
               {"tenant", g.tenant}, {"status", status}, {"stream", g.stream},
               {"duration_ms", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - g.start).count()}};
  std::string outcome = error_code;
  json reasons = json::array(), ids = json::array();
  int64_t completion = 0;
  for (const Choice& c : g.choices) {
    ids.push_back(c.engine_id);
    if (!c.done) {
      reasons.push_back(nullptr);
      continue;
    }
    const Outcome o = outcome_of(c.final_event, c.stopped, g.timeout_s);
    reasons.push_back(o.error ? o.error->code : std::string(o.finish_reason ? o.finish_reason : ""));
    if (outcome.empty() && o.error) outcome = o.error->code.empty() ? o.error->type : o.error->code;
    completion += c.final_event.metrics.generated_tokens;
  }
  if (outcome.empty()) outcome = reasons.empty() || reasons[0].is_null() ? "unknown" : reasons[0].get<std::string>();
  line["outcome"] = outcome;
  line["request_ids"] = ids;
  line["finish_reasons"] = reasons;
  if (!g.choices.empty() && g.choices.front().done) {
    const RequestMetrics& m = g.choices.front().final_event.metrics;
    line["prompt_tokens"] = m.prompt_tokens;
    line["cached_tokens"] = m.cached_tokens;
    line["completion_tokens"] = completion;
    line["preemptions"] = m.preemptions;
    // Stages as the engine measured them: queued, prefill until the first token, then decode.
    const bool first = m.generated_tokens > 0;
    line["stages_ms"] = {{"queue", m.queue_s * 1e3}, {"prefill", first ? (m.ttft_s - m.queue_s) * 1e3 : 0.0},
                         {"decode", first ? (m.e2e_s - m.ttft_s) * 1e3 : 0.0}, {"e2e", m.e2e_s * 1e3},
                         {"ttft", first ? m.ttft_s * 1e3 : -1.0}};
  }
  access_log->write(line);
}

int Server::Impl::retry_after_queue_full() {
  thread_local std::mt19937 rng{std::random_device{}()};
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  return retry_after_seconds(engine.snapshot()->waiting, drain.rate(SteadyClock::now()), u, 1, cfg.retry_after_max_s);
}

bool Server::Impl::wait_idle(double seconds) {
  std::unique_lock<std::mutex> lk(mu);
  return cv.wait_for(lk, std::chrono::duration<double>(std::max(0.0, seconds)), [&] { return active.empty(); });
}

void Server::Impl::cancel_all() {
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (const auto& [id, ch] : active) ids.push_back(id);
  }
  for (uint64_t id : ids) engine.cancel(id);
}

void Server::Impl::abort_all() {
  std::lock_guard<std::mutex> lk(mu);
  for (const auto& [id, ch] : active) ch->abort();
}

void Server::Impl::send_json(http::Response& res, const json& j, int status) {
  res.status = status;
  res.set_content(dump_json(j), "application/json");
}

void Server::Impl::send_error(http::Response& res, const HttpError& e) { send_json(res, error_json(e), e.status); }

void Server::Impl::count_disconnect() {
  std::lock_guard<std::mutex> lk(stats_mu);
  ++disconnects;
}

// Who is calling, from the Authorization header. Without configured keys everyone is the one
// admin of a single-tenant server (scope "").
std::optional<Principal> Server::Impl::principal_of(const http::Request& req, HttpError& why) const {
  if (cfg.api_keys.empty()) return Principal{"", Role::Admin, kMaxPriority};
  const std::string header = req.get_header_value("Authorization");
  if (auto p = cfg.api_keys.find(bearer_token(header))) return p;
  why = {401, header.empty() ? "missing API key: send 'Authorization: Bearer KEY'" : "invalid API key",
         "authentication_error", "invalid_api_key"};
  return std::nullopt;
}

std::optional<Principal> Server::Impl::authenticate(const http::Request& req, http::Response& res) {
  HttpError why;
  auto p = principal_of(req, why);
  if (p) return p;
  res.set_header("WWW-Authenticate", "Bearer");
  send_error(res, why);
  return std::nullopt;
}

// Runs on the request head, before a body byte is read: a client without a valid key, or one
// arriving during shutdown, costs us a header parse and nothing more.
std::optional<http::Response> Server::Impl::check_headers(const http::Request& req) {
  http::Response res;
  if (req.path == "/health") return std::nullopt;
  if (req.path == "/metrics") {
    if (cfg.metrics_key.empty()) return std::nullopt;
    const std::string key = bearer_token(req.get_header_value("Authorization"));
    const auto p = cfg.api_keys.find(key);
    if (equal_secret(key, cfg.metrics_key) || (p && p->role == Role::Admin)) return std::nullopt;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, {401, "/metrics needs 'Authorization: Bearer METRICS_KEY'", "authentication_error", "invalid_api_key"});
    return res;
  }
  if (req.method == "POST" && stopping) {
    send_error(res, {503, "the server is shutting down", "server_error", "shutting_down"});
    return res;
  }
  if (!authenticate(req, res)) return res;
  return std::nullopt;
}

// The engine's Prometheus text plus what only the HTTP layer sees.
std::string Server::Impl::metrics_text() {
  std::string o = render_prometheus(*engine.snapshot());
  std::lock_guard<std::mutex> lk(stats_mu);
  o += "# HELP pagoda:http_responses_total HTTP responses, by status code.\n# TYPE pagoda:http_responses_total counter\n";
  for (const auto& [code, n] : responses) o += fmt::format("pagoda:http_responses_total{{code=\"{}\"}} {}\n", code, n);
  o += "# HELP pagoda:http_client_disconnects_total Requests cancelled because the client went away.\n"
       "# TYPE pagoda:http_client_disconnects_total counter\n";
  o += fmt::format("pagoda:http_client_disconnects_total {}\n", disconnects);
  size_t n = 0;
  {
    std::lock_guard<std::mutex> lk2(mu);
    n = active.size();
  }
  o += "# HELP pagoda:http_requests_in_flight Generation requests being served.\n# TYPE pagoda:http_requests_in_flight gauge\n";
  o += fmt::format("pagoda:http_requests_in_flight {}\n", n);
  o += "# HELP pagoda:build_info What is serving: model, backend, device and version (always 1).\n"
       "# TYPE pagoda:build_info gauge\n";
  o += fmt::format("pagoda:build_info{{model=\"{}\",backend=\"{}\",device=\"{}\",version=\"{}\"}} 1\n",
                   prometheus_label_value(cfg.model_name), prometheus_label_value(cfg.backend),
                   prometheus_label_value(cfg.device), prometheus_label_value(cfg.version));
  return o;
}

// Snapshots as SSE at a steady rate for the remote inspector; ends on shutdown or when the
// client goes away. Each stream holds a connection (and its thread), so their number is capped
// and their rate floored: inspectors cannot crowd out generation clients.
void Server::Impl::serve_inspect_stream(const http::Request& req, http::Response& res, const Principal& who) {
  const bool blocks = req.get_param_value("blocks") != "0";
  double interval = cfg.inspect_interval_s;
  if (req.has_param("interval_ms")) {
    const double ms = std::atof(req.get_param_value("interval_ms").c_str());
    if (ms >= 10 && ms <= 10000) interval = ms / 1e3;
  }
  interval = std::max(interval, cfg.inspect_min_interval_s);
  if (inspect_streams.fetch_add(1) >= cfg.max_inspect_streams) {
    inspect_streams.fetch_sub(1);
    res.set_header("Retry-After", std::to_string(cfg.retry_after_s));
    return send_error(res, {429, fmt::format("too many /v1/inspect/stream connections (limit {})", cfg.max_inspect_streams),
                            "rate_limit_error", "inspect_streams"});
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, blocks, interval, who](size_t, http::DataSink& sink) {
        if (stopping) {
          sink.done();
          return true;
        }
        const std::string ev = sse_data(snapshot_to_json(view_for(*engine.snapshot(), who, view_secret), blocks));
        if (!sink.write(ev.data(), ev.size())) return false;
        std::unique_lock<std::mutex> lk(mu);
        cv.wait_for(lk, std::chrono::duration<double>(interval), [&] { return stopping.load(); });
        return true;
      },
      [this](bool) { inspect_streams.fetch_sub(1); });
}

void Server::Impl::route_monitoring() {
  transport.route("GET", "/health", [this](const http::Request&, http::Response& res) {
    const auto s = engine.snapshot();
    const bool down = stopping;
    // A backend fault puts the engine in a degraded state (it fails what it held, refuses new work
    // with engine_unavailable, and probes until the backend works again): /health says so, with why.
    const EngineHealth eh = engine.health();
    json body = {{"status", down ? "shutting_down" : eh.degraded ? "degraded" : "ok"}, {"model", cfg.model_name},
                 {"uptime_s", s->uptime_s}, {"running", s->running}, {"waiting", s->waiting},
                 {"kv_usage", s->kv_usage}, {"faults", eh.faults}, {"recoveries", eh.recoveries}};
    if (eh.degraded) body["reason"] = eh.reason;
    send_json(res, body, down || eh.degraded ? 503 : 200);
  });
  // Access to /metrics is decided in check_headers (open, or --metrics-key).
  transport.route("GET", "/metrics", [this](const http::Request&, http::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  transport.route("GET", "/v1/models", [this](const http::Request& req, http::Response& res) {
    if (!authenticate(req, res)) return;
    json m = {{"id", cfg.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "pagoda"},
              {"context_length", engine.context_length()}, {"chat_format", chat_format_name(chat.format())}};
    send_json(res, {{"object", "list"}, {"data", json::array({m})}});
  });
  // Request metadata (never text), filtered by the caller's role: see views.h.
  transport.route("GET", "/v1/inspect", [this](const http::Request& req, http::Response& res) {
    const auto who = authenticate(req, res);
    if (!who) return;
    send_json(res, snapshot_to_json(view_for(*engine.snapshot(), *who, view_secret), req.get_param_value("blocks") != "0"));
  });
  transport.route("GET", "/v1/inspect/stream", [this](const http::Request& req, http::Response& res) {
    const auto who = authenticate(req, res);
    if (!who) return;
    serve_inspect_stream(req, res, *who);
  });
}

}  // namespace pagoda::server
