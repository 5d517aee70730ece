// Server internals shared by server.cpp (lifecycle, plumbing, monitoring routes) and
// routes_openai.cpp (completions and chat). Not part of the library's interface.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "apps/server/chat_template.h"
#include "apps/server/generation.h"
#include "apps/server/http.h"
#include "apps/server/responses.h"
#include "apps/server/retry_after.h"
#include "apps/server/trace.h"
#include "apps/server/tool_calls.h"
#include "apps/server/server.h"
#include "apps/server/views.h"

namespace pagoda::server {

// One choice of a response: one engine request.
struct Choice {
  int32_t index = 0;
  uint64_t engine_id = 0;
  StopMatcher stop;
  std::string text;        // non-streaming: the whole completion
  bool role_sent = false;  // chat streams open each choice with a {"role":"assistant"} chunk
  bool stopped = false;    // ended by a stop sequence
  bool cancelled = false;  // engine.cancel() already sent
  bool done = false;       // final event handled (or given up on)
  TokenEvent final_event;
  LogprobsBuilder logprobs;  // tokens up to (and including) the one that completed a stop sequence
  size_t chars = 0;          // code points the engine has emitted for this choice (text_offset)
  ToolCallStream tools;    // chat with tools: content passes, a call is held until the end
};

// One HTTP request's generation as its worker tracks it: `n` choices whose engine events share
// one channel. Only that worker touches it (handler, then the stream's content provider and
// releaser, all on the same thread), so it needs no lock.
struct Generation {
  std::shared_ptr<RequestChannel> channel = std::make_shared<RequestChannel>();
  ResponseMeta meta;
  TraceContext trace;
  std::string tenant;
  bool stream = false;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  bool include_usage = false;
  double timeout_s = 0;
  std::vector<Choice> choices;
  bool done = false;  // every choice finished, or the response ended on an error
  std::string echo;        // completions with echo: the prompt text, sent before each choice's text
  bool echo_sent = false;  // streams send it once, at the start
  ToolSpec tools;          // chat: output is parsed for tool calls unless the choice is None

  Choice* find(uint64_t engine_id) {
    for (Choice& c : choices)
      if (c.engine_id == engine_id) return &c;
    return nullptr;
  }
  bool all_done() const {
    for (const Choice& c : choices)
      if (!c.done) return false;
    return true;
  }
};

struct Server::Impl {
  Impl(Engine& e, ServerConfig c);

  Engine& engine;
  ServerConfig cfg;
  ChatRenderer chat;
  ParseLimits limits;
  http::Transport transport;
  int port = 0;
  bool started = false, stopped = false;
  uint32_t nonce = 0;  // makes response ids unique across server restarts
  ViewSecret view_secret = random_view_secret();  // keys the block-key HMAC in /v1/inspect

  mutable std::mutex mu;  // guards `active` and `stopping` transitions
  std::condition_variable cv;  // `active` shrank, or shutdown began
  std::atomic<bool> stopping{false};
  std::unordered_map<uint64_t, std::shared_ptr<RequestChannel>> active;
  std::atomic<int> inspect_streams{0};

  // Compiled grammars by source text, most recent first (a few: each keeps its mask caches alive in
  // the engine), so requests repeating a schema share warm masks.
  std::mutex grammar_mu;
  std::vector<std::pair<std::string, std::shared_ptr<const grammar::Grammar>>> grammars;
  std::shared_ptr<const grammar::Grammar> shared_grammar(const ParsedRequest& p);

  std::mutex stats_mu;
  std::map<int, uint64_t> responses;  // HTTP status -> count
  uint64_t disconnects = 0;           // requests cancelled because the client went away
  DrainMeter drain{cfg.drain_window_s};  // engine requests leaving the server, for Retry-After
  std::unique_ptr<AccessLog> access_log;  // null: --access-log not given

  // server.cpp
  void setup();
  void route_monitoring();
  std::optional<http::Response> check_headers(const http::Request& req);
  std::optional<Principal> principal_of(const http::Request& req, HttpError& why) const;
  std::optional<Principal> authenticate(const http::Request& req, http::Response& res);
  void send_json(http::Response& res, const nlohmann::json& j, int status = 200);
  void send_error(http::Response& res, const HttpError& e);
  void count_disconnect();
  void track(const Generation& g);
  void untrack(const Generation& g);
  int retry_after_queue_full();
  void log_access(const Generation& g, int status, const std::string& error_code);
  bool wait_idle(double seconds);
  void cancel_all();
  void abort_all();
  std::string metrics_text();
  void serve_inspect_stream(const http::Request& req, http::Response& res, const Principal& who);

  // routes_openai.cpp
  void route_openai();
  void handle_generate(const http::Request& req, http::Response& res, Endpoint ep);
  std::optional<HttpError> build_request(const ParsedRequest& p, const Principal& who, Request& out);
  std::string consume(Choice& c, TokenEvent& ev);
  void respond_blocking(const http::Request& req, http::Response& res, Generation& g);
  void respond_stream(http::Response& res, const std::shared_ptr<Generation>& g);
  bool pump_stream(Generation& g, http::DataSink& sink);
  std::string stream_events(Generation& g, std::vector<TokenEvent>& evs);
  std::string closing_events(Generation& g, Choice& c);
  void cancel(Choice& c);
  void cancel_all(Generation& g);
  std::optional<HttpError> prepare_tools(ParsedRequest& p);

  // routes_tokenize.cpp
  void route_tokenize();
  std::string detokenize(const std::vector<int32_t>& ids) const;
};

}  // namespace pagoda::server
