// The HTTP front end of `pagoda serve`: OpenAI-compatible completions and chat (plain and SSE
// streaming), models, health, Prometheus metrics, and the inspector's snapshot feed, over an
// Engine that the caller created and started. httplib stays out of this header (pimpl).
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
  int http_threads = 0;               // 0: one per request the engine can hold, plus slack
  int32_t default_max_tokens = 256;   // when a request names none
  double sse_keepalive_s = 1.0;       // idle streams send a comment this often (finds gone clients)
  double inspect_interval_s = 0.1;    // /v1/inspect/stream period (~10 Hz)
  int retry_after_s = 1;              // Retry-After on 429
  int keep_alive_timeout_s = 2;       // idle keep-alive connections; bounds how long stop() waits on them
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
  // listener closes. Never waits on an engine that has stopped answering. Idempotent.
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
