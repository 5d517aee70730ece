#include "apps/server/server.h"

#include <fmt/core.h>

#include <csignal>
#include <cstdlib>
#include <random>

#include "apps/server/server_internal.h"
#include "apps/server/sse.h"
#include "core/telemetry/snapshot_json.h"

namespace pagoda::server {

using nlohmann::json;

namespace {

ParseLimits limits_for(const Engine& e, const ServerConfig& c) {
  ParseLimits l;
  l.ctx_len = e.config().ctx_len;
  l.vocab = e.config().vocab;
  l.default_max_tokens = c.default_max_tokens;
  return l;
}

// Every streaming request occupies a worker for its whole life; `serve` sizes the pool to what
// the engine can hold (running + queued) so an admitted request never waits for a thread.
size_t pool_size(const ServerConfig& c) { return c.http_threads > 0 ? size_t(c.http_threads) : 64; }

std::string default_error_message(const httplib::Request& req, int status, size_t max_body) {
  switch (status) {
    case 404: return fmt::format("no route for {} {}", req.method, req.path);
    case 413:
      // httplib caps form-encoded bodies at 8 KiB; `curl -d` sends that type unless told otherwise.
      if (req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0)
        return "request body too large for Content-Type application/x-www-form-urlencoded (limit 8 KiB); "
               "send it with Content-Type: application/json";
      return fmt::format("request body exceeds the limit of {} bytes", max_body);
    case 400: return "malformed HTTP request";
    default: return fmt::format("HTTP error {}", status);
  }
}

}  // namespace

Server::Impl::Impl(Engine& e, ServerConfig c)
    : engine(e), cfg(std::move(c)), chat(e.tokenizer(), cfg.chat_template), limits(limits_for(e, cfg)) {
  nonce = uint32_t(std::random_device{}());
}

Server::Server(Engine& engine, ServerConfig cfg) : impl_(std::make_unique<Impl>(engine, std::move(cfg))) {}

Server::~Server() { stop(0); }

void Server::Impl::setup() {
  const size_t threads = pool_size(cfg);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(cfg.max_body_bytes);
  http.set_keep_alive_timeout(cfg.keep_alive_timeout_s);
  http.set_read_timeout(10, 0);
  http.set_tcp_nodelay(true);  // SSE writes are small; Nagle would hold tokens back
  http.set_socket_options([this](socket_t sock) {
    // SO_REUSEADDR lets a restarted server rebind at once. httplib's default (SO_REUSEPORT) would
    // also let a second server bind the same port without error and silently split the traffic.
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = int(sock);
  });
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    // Errors httplib produces itself (404, 413, unparsable HTTP) get the same JSON shape as ours.
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string type = res.status == 404 ? "not_found_error" : "invalid_request_error";
    res.set_content(dump_json(error_json({res.status, default_error_message(req, res.status, cfg.max_body_bytes), type, ""})),
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, {500, "internal error: " + what, "server_error", "internal_error"});
  });
  http.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    std::lock_guard<std::mutex> lk(stats_mu);
    ++responses[res.status];
  });
  route_monitoring();
  route_openai();
}

Result<int> Server::start(const std::string& host, int port) {
  Impl& d = *impl_;
  if (d.started) return make_error("the server is already started");
  // A client that hangs up mid-write must surface as a failed write, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  d.setup();
  const int bound = port == 0 ? d.http.bind_to_any_port(host) : (d.http.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) return make_error(fmt::format("cannot listen on {}:{} (port in use, or not a local address?)", host, port));
  // httplib listens with a backlog of 5: a burst of clients overflows it and their connections
  // wait out a 1 s SYN retransmit. Calling listen() again on the bound socket widens it.
  if (d.listen_fd >= 0) ::listen(d.listen_fd, SOMAXCONN);
  d.port = bound;
  d.started = true;
  d.listener = std::thread([&d] { d.http.listen_after_bind(); });
  return bound;
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
  // Keep the listener open while draining: httplib cuts every running stream off the moment it
  // stops, so closing it first would truncate responses mid-sentence. New requests get 503.
  begin_shutdown();
  d.wait_idle(grace_s);
  d.cancel_all();
  // Cancelled requests end within a step; an engine that no longer steps must not hang us.
  if (!d.wait_idle(5.0)) d.abort_all();
  d.wait_idle(2.0);
  d.http.stop();
  if (d.listener.joinable()) d.listener.join();
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
  cv.notify_all();
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

void Server::Impl::send_json(httplib::Response& res, const json& j, int status) {
  res.status = status;
  res.set_content(dump_json(j), "application/json");
}

void Server::Impl::send_error(httplib::Response& res, const HttpError& e) { send_json(res, error_json(e), e.status); }

std::optional<std::string> Server::Impl::authenticate(const httplib::Request& req, httplib::Response& res) {
  if (cfg.api_keys.empty()) return std::string();  // single tenant: everyone shares scope ""
  const std::string key = bearer_token(req.get_header_value("Authorization"));
  if (auto tenant = cfg.api_keys.tenant_of(key)) return tenant;
  res.set_header("WWW-Authenticate", "Bearer");
  send_error(res, {401, key.empty() ? "missing API key: send 'Authorization: Bearer KEY'" : "invalid API key",
                   "authentication_error", "invalid_api_key"});
  return std::nullopt;
}

// The engine's Prometheus text plus what only the HTTP layer sees.
std::string Server::Impl::metrics_text() {
  std::string o = render_prometheus(*engine.snapshot());
  std::lock_guard<std::mutex> lk(stats_mu);
  o += "# HELP pagoda:http_responses_total HTTP responses, by status code.\n# TYPE pagoda:http_responses_total counter\n";
  for (const auto& [code, n] : responses) o += fmt::format("pagoda:http_responses_total{{code=\"{}\"}} {}\n", code, n);
  o += "# HELP pagoda:http_client_disconnects_total Streams cancelled because the client went away.\n"
       "# TYPE pagoda:http_client_disconnects_total counter\n";
  o += fmt::format("pagoda:http_client_disconnects_total {}\n", disconnects);
  size_t n = 0;
  {
    std::lock_guard<std::mutex> lk2(mu);
    n = active.size();
  }
  o += "# HELP pagoda:http_requests_in_flight Generation requests being served.\n# TYPE pagoda:http_requests_in_flight gauge\n";
  o += fmt::format("pagoda:http_requests_in_flight {}\n", n);
  return o;
}

// Snapshots as SSE at a steady rate for the remote inspector; ends on shutdown or when the
// client goes away. Each connection holds one worker, like a generation stream.
void Server::Impl::serve_inspect_stream(const httplib::Request& req, httplib::Response& res) {
  const bool blocks = req.get_param_value("blocks") != "0";
  double interval = cfg.inspect_interval_s;
  if (req.has_param("interval_ms")) {
    const double ms = std::atof(req.get_param_value("interval_ms").c_str());
    if (ms >= 10 && ms <= 10000) interval = ms / 1e3;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider("text/event-stream", [this, blocks, interval](size_t, httplib::DataSink& sink) {
    if (stopping) {
      sink.done();
      return true;
    }
    const std::string ev = sse_data(snapshot_to_json(*engine.snapshot(), blocks));
    if (!sink.write(ev.data(), ev.size())) return false;
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, std::chrono::duration<double>(interval), [&] { return stopping.load(); });
    return true;
  });
}

void Server::Impl::route_monitoring() {
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const auto s = engine.snapshot();
    const bool down = stopping;
    send_json(res, {{"status", down ? "shutting_down" : "ok"}, {"model", cfg.model_name}, {"uptime_s", s->uptime_s},
                    {"running", s->running}, {"waiting", s->waiting}, {"kv_usage", s->kv_usage}},
              down ? 503 : 200);
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  http.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authenticate(req, res)) return;
    json m = {{"id", cfg.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "pagoda"},
              {"context_length", engine.config().ctx_len}, {"chat_format", chat_format_name(chat.format())}};
    send_json(res, {{"object", "list"}, {"data", json::array({m})}});
  });
  // The inspector endpoints show every tenant's request metadata (never text), so with keys
  // configured they need a valid key like the rest of /v1.
  http.Get("/v1/inspect", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authenticate(req, res)) return;
    send_json(res, snapshot_to_json(*engine.snapshot(), req.get_param_value("blocks") != "0"));
  });
  http.Get("/v1/inspect/stream", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authenticate(req, res)) return;
    serve_inspect_stream(req, res);
  });
}

}  // namespace pagoda::server
