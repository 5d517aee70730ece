// The HTTP front end of `pagoda serve`: OpenAI-compatible completions and chat (plain and SSE
// streaming), models, health, Prometheus metrics, and the inspector's snapshot feed, over an
// Engine that the caller created and started. The transport stays out of this header (pimpl).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "apps/server/auth.h"
#include "core/engine/engine.h"
#include "core/util/result.h"

namespace pagoda::server {

struct ServerConfig {
  std::string model_name = "pagoda";  // the id /v1/models lists and responses echo
  std::string chat_template;          // tokenizer.chat_template from the GGUF ("" = plain transcript)
  ApiKeys api_keys;                   // empty: single tenant, no authentication
  size_t max_body_bytes = 1 << 20;    // larger bodies get 413 before they are parsed
  int http_threads = 0;               // open connections (one thread each); 0: 64. More get 503
  int32_t default_max_tokens = 256;   // when a request names none
  double sse_keepalive_s = 1.0;       // idle streams send a comment this often (finds gone clients)
  double inspect_interval_s = 0.1;    // /v1/inspect/stream period (~10 Hz)
  int retry_after_s = 1;              // Retry-After on 503 and a full inspector-stream pool
  // A full queue's 429 computes Retry-After from the drain rate measured over drain_window_s
  // (retry_after.h), with jitter, in [1, retry_after_max_s].
  int retry_after_max_s = 30;
  double drain_window_s = 10;
  int keep_alive_timeout_s = 2;       // idle keep-alive connections
  // Limits on what a client without a valid key can hold (see docs/server.md, "Threat model").
  double header_timeout_s = 10;       // a request's whole head, however slowly it trickles in
  double body_timeout_s = 30;         // a request's whole body, after its head
  double write_timeout_s = 10;        // a write making no progress this long ends the connection
  std::string metrics_key;            // non-empty: /metrics needs "Bearer KEY" or an admin API key
  int max_inspect_streams = 4;        // concurrent /v1/inspect/stream connections (more: 429)
  double inspect_min_interval_s = 0.05;  // fastest snapshot rate a stream may ask for
  // A JSON line per generation request (trace id, tenant, tokens, stage times, outcome): a file
  // to append to, "-" for standard output, "" for none. start() fails if it cannot be opened.
  std::string access_log;
  // Labels of the pagoda:build_info gauge (the model's is model_name).
  std::string backend = "unknown", device = "unknown", version = "unknown";
};

class Server {
 public:
  Server(Engine& engine, ServerConfig cfg);
  ~Server();  // stop(0)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving on a background thread; returns the bound port (port 0 picks a free
  // one). The engine must already be started.
  Result<int> start(const std::string& host, int port);
  // Graceful stop: new requests get 503 at once; in-flight ones get up to `grace_s` to finish,
  // then are cancelled (their blocks freed, streams closed with an error event); then the
  // listener and every connection close at once (a hard stop: no client, however slow, keeps the
  // process alive past that). Never waits on an engine that has stopped answering. Idempotent.
  void stop(double grace_s = 0);
  // First half of stop(): refuse new work, leave in-flight requests running.
  void begin_shutdown();
  // Cancels every in-flight generation now (a second Ctrl-C during a graceful stop).
  void cancel_all();
  int port() const;
  size_t in_flight() const;  // generation requests between submit and their response's end

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagoda::server
