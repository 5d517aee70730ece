// One trace identity per request (W3C Trace Context) and the structured access log.
// The server takes a caller's `traceparent` header (version 00: 32 hex trace id, 16 hex parent
// id, 2 hex flags; all-zero ids are invalid) or makes a fresh trace id, gives the request a span
// id of its own, returns `traceparent` naming that span, and carries the trace id into the
// engine (Request::trace_id: /v1/inspect, the final metrics) and into one JSON access-log line.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/util/result.h"

namespace pagoda::server {

struct TraceContext {
  std::string trace_id;  // 32 lowercase hex digits
  std::string span_id;   // 16 lowercase hex digits: this server's span for the request
  uint8_t flags = 0;     // trace-flags from the caller (bit 0: sampled); 0 for a new trace
  bool from_caller = false;
  std::string header() const;  // "00-<trace_id>-<span_id>-<flags>"
};

// Parses a traceparent header value; nullopt when it is malformed (the caller then starts a new
// trace, as the specification asks of a receiver that cannot parse it).
std::optional<TraceContext> parse_traceparent(std::string_view value);
// The caller's trace with a new span of ours, or a new trace when `header` is absent or invalid.
TraceContext trace_for(std::string_view header);

// A JSON line per finished request, written whole under a lock (lines never interleave) and
// flushed, so `tail -f` and log shippers see each request as it ends.
class AccessLog {
 public:
  // "-" writes to stdout; anything else is a file opened for appending.
  static Result<std::unique_ptr<AccessLog>> open(const std::string& where);
  ~AccessLog();
  void write(const nlohmann::json& line);

 private:
  explicit AccessLog(std::FILE* f, bool owned) : f_(f), owned_(owned) {}
  std::mutex mu_;
  std::FILE* f_ = nullptr;
  bool owned_ = false;
};

}  // namespace pagoda::server
