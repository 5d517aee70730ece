// Server-sent events: the framing of OpenAI streams and the inspector feed, and an incremental
// parser for clients (tests, the remote inspector) that read them back.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda::server {

// JSON text that never throws: invalid UTF-8 (from a client's bytes echoed in an error) becomes
// U+FFFD instead of aborting the response.
std::string dump_json(const nlohmann::json& j);

std::string sse_data(const nlohmann::json& j);  // "data: {...}\n\n"
std::string sse_data_raw(std::string_view payload);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
// A comment line: ignored by clients, but writing it reveals a client that has gone away.
inline constexpr std::string_view kSseKeepAlive = ": keep-alive\n\n";

// Feed bytes as they arrive; get back the data payload of every event completed so far.
class SseParser {
 public:
  std::vector<std::string> feed(std::string_view bytes);

 private:
  std::string buf_;
  std::string data_;
  bool has_data_ = false;
};

}  // namespace pagoda::server
