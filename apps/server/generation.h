// The hand-off between the engine thread and an HTTP worker for one request, and the text-level
// stop-sequence matching applied to what the engine emits.
#pragma once
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/engine/engine.h"

namespace pagoda::server {

// Token events for one request. The engine thread only appends under a short lock and notifies;
// it never waits on a socket, however slow the client is.
class RequestChannel {
 public:
  // The callback to give Engine::submit; it keeps the channel alive until the engine drops it.
  static TokenCallback callback_for(const std::shared_ptr<RequestChannel>& ch);
  void push(const TokenEvent& ev);
  // Moves queued events into `out`, waiting up to `timeout` for at least one. False when none came
  // or the channel was aborted.
  bool take(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout);
  // Wakes a waiting worker for good (shutdown with an engine that no longer answers).
  void abort();
  bool aborted() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<TokenEvent> events_;
  bool aborted_ = false;
};

// Finds stop sequences in streamed text. Text that could be the start of a stop sequence is held
// back until later pieces settle it, so a client never sees part of a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops = {}) : stops_(std::move(stops)) {}
  // Returns the text that is safe to emit now. When a stop sequence completes, the text before it
  // is returned, stopped() turns true and everything after is dropped.
  std::string push(std::string_view piece);
  std::string flush();  // at the end of generation: whatever was held back
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace pagoda::server
