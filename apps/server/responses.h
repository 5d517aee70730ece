// The JSON shapes of OpenAI-compatible responses: completions, chat completions, their stream
// chunks, usage and errors. Built in one place so streaming and non-streaming cannot drift apart.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "apps/server/request_parse.h"
#include "apps/server/tool_calls.h"
#include "core/engine/engine.h"
#include "core/sched/sequence.h"
#include "core/tokenizer/tokenizer.h"

namespace pagoda::server {

// What an HTTP client is told about a request that did not (or could not) complete normally.
struct HttpError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";  // OpenAI's error.type
  std::string code;                            // machine-readable reason ("" = null)
};

nlohmann::json error_json(const HttpError& e);

// Identity shared by every chunk and the final response of one request.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::Completions;
  std::string id;
  int64_t created = 0;
  std::string model;
};

nlohmann::json usage_json(const RequestMetrics& m);
// A request's stage times (RequestMetrics::stages) in milliseconds, for the "pagoda" extension.
nlohmann::json stages_json(const RequestStages& s);

// One choice's token log-probabilities in OpenAI's shape for its endpoint. Chat:
// {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}],
// "refusal": null}. Completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}]
// (the top N plus the sampled token, as OpenAI's legacy API), "text_offset"}. A token string is
// its bytes when they are valid UTF-8, else "bytes:\xNN..." (a token holding part of a character).
class LogprobsBuilder {
 public:
  LogprobsBuilder() = default;
  // `prev`: the token before the first one added (the prompt's last), so a word-initial space shows.
  LogprobsBuilder(Endpoint ep, const Tokenizer* tok, int32_t prev) : ep_(ep), tok_(tok), prev_(prev) {}
  // One generated token; `text_offset`: characters (code points) of the choice's text before it.
  void add(const TokenEvent& ev, size_t text_offset);
  bool empty() const { return n_ == 0; }
  // Everything added since the last take(), in the endpoint's shape (a stream chunk carries the
  // tokens of its own text); null when nothing was added.
  nlohmann::json take();

 private:
  std::string token_text(int32_t id, int32_t prev) const;
  Endpoint ep_ = Endpoint::Completions;
  const Tokenizer* tok_ = nullptr;
  int32_t prev_ = -1;
  size_t n_ = 0;
  nlohmann::json content_ = nlohmann::json::array();  // chat
  nlohmann::json tokens_ = nlohmann::json::array(), token_logprobs_ = nlohmann::json::array(),
                 top_ = nlohmann::json::array(), offsets_ = nlohmann::json::array();  // completions
};

// Characters (Unicode code points) in UTF-8 text: OpenAI's text_offset unit.
size_t utf8_chars(std::string_view s);

// One finished choice of a non-streaming response.
struct ChoiceResult {
  std::string text;
  nlohmann::json logprobs = nullptr;  // LogprobsBuilder::take(), or null
  const char* finish_reason = nullptr;
  RequestMetrics metrics;
  uint64_t engine_id = 0;
  std::vector<ToolCall> tool_calls;  // chat: message.tool_calls (content null when `text` is empty)
};
// Usage of a response with several choices: the first choice's prompt counts (every choice has
// the same prompt, counted once) and the completion tokens of all of them.
RequestMetrics usage_total(const std::vector<RequestMetrics>& choices);
// The non-streaming response body: choices in index order; usage as usage_total.
nlohmann::json completion_json(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices);
// One stream chunk of choice `index`. `text` goes into its .text (completions) or .delta.content
// (chat); `role_only` emits the opening chat chunk {"role":"assistant"}; a non-null finish reason
// makes the closing chunk.
nlohmann::json chunk_json(const ResponseMeta& meta, int32_t index, const std::string& text, const char* finish_reason,
                          bool role_only = false, const nlohmann::json& logprobs = nullptr);
// A chat stream chunk whose delta carries tool calls (each with its index, id, type and the whole
// function name and arguments).
nlohmann::json tool_calls_chunk_json(const ResponseMeta& meta, int32_t index, const std::vector<ToolCall>& calls);
// The extra chunk stream_options.include_usage asks for: no choices, just usage.
nlohmann::json usage_chunk_json(const ResponseMeta& meta, const RequestMetrics& m);

// How a finished request is reported: a finish reason for the client (stop, length), or an error.
struct Outcome {
  const char* finish_reason = nullptr;  // set when the request produced a normal response
  std::optional<HttpError> error;
};
// `stopped_by_sequence`: the server ended it at a stop sequence (its engine reason is then
// "cancelled", which the client must see as "stop").
Outcome outcome_of(const TokenEvent& final_event, bool stopped_by_sequence, double timeout_s);
// The engine's admission answer (SubmitResult::rejection) as HTTP: queue_full 429, kv_capacity 413,
// prompt_too_long 400 (context_length_exceeded), invalid_request 400, engine_unavailable 503.
HttpError rejection_error(Rejection reason, const std::string& message);

}  // namespace pagoda::server
