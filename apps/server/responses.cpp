#include "apps/server/responses.h"

#include <fmt/core.h>

namespace pagoda::server {

using nlohmann::json;

json error_json(const HttpError& e) {
  return {{"error", {{"message", e.message}, {"type", e.type}, {"param", nullptr},
                     {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

json usage_json(const RequestMetrics& m) {
  return {{"prompt_tokens", m.prompt_tokens},
          {"completion_tokens", m.generated_tokens},
          {"total_tokens", m.prompt_tokens + m.generated_tokens},
          {"prompt_tokens_details", {{"cached_tokens", m.cached_tokens}}}};
}

namespace {

const char* object_name(Endpoint e, bool chunk) {
  if (e == Endpoint::Chat) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";
}

json envelope(const ResponseMeta& meta, bool chunk) {
  return {{"id", meta.id}, {"object", object_name(meta.endpoint, chunk)}, {"created", meta.created}, {"model", meta.model}};
}

json finish_json(const char* r) { return r ? json(r) : json(nullptr); }

}  // namespace

RequestMetrics usage_total(const std::vector<RequestMetrics>& choices) {
  RequestMetrics total = choices.empty() ? RequestMetrics{} : choices.front();
  total.generated_tokens = 0;
  for (const RequestMetrics& m : choices) total.generated_tokens += m.generated_tokens;
  return total;
}

json completion_json(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices) {
  json j = envelope(meta, false);
  j["choices"] = json::array();
  std::vector<RequestMetrics> per_choice;
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    json choice = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", finish_json(c.finish_reason)}};
    if (meta.endpoint == Endpoint::Chat && !c.tool_calls.empty()) {
      std::vector<std::string> ids;
      for (size_t k = 0; k < c.tool_calls.size(); ++k) ids.push_back(new_tool_call_id());
      choice["message"] = {{"role", "assistant"}, {"content", c.text.empty() ? json(nullptr) : json(c.text)},
                           {"tool_calls", tool_calls_json(c.tool_calls, ids, false)}};
    } else if (meta.endpoint == Endpoint::Chat) choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else choice["text"] = c.text;
    j["choices"].push_back(std::move(choice));
    per_choice.push_back(c.metrics);
  }
  j["usage"] = usage_json(usage_total(per_choice));
  // Extension: where the time went, as the engine measured it (queue time apart from compute),
  // for the first choice; every choice's engine request id.
  if (!choices.empty()) {
    const RequestMetrics& m = choices.front().metrics;
    j["pagoda"] = {{"request_id", choices.front().engine_id}, {"queue_ms", m.queue_s * 1e3}, {"ttft_ms", m.ttft_s * 1e3},
                   {"mean_itl_ms", m.mean_itl_s * 1e3}, {"e2e_ms", m.e2e_s * 1e3}, {"preemptions", m.preemptions}};
    if (choices.size() > 1) {
      j["pagoda"]["request_ids"] = json::array();
      for (const auto& c : choices) j["pagoda"]["request_ids"].push_back(c.engine_id);
    }
  }
  return j;
}

json chunk_json(const ResponseMeta& meta, int32_t index, const std::string& text, const char* finish_reason, bool role_only) {
  json j = envelope(meta, true);
  json choice = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish_json(finish_reason)}};
  if (meta.endpoint == Endpoint::Chat) {
    if (role_only) choice["delta"] = {{"role", "assistant"}, {"content", ""}};
    else if (finish_reason && text.empty()) choice["delta"] = json::object();
    else choice["delta"] = {{"content", text}};
  } else {
    choice["text"] = text;
  }
  j["choices"] = json::array({choice});
  return j;
}

json tool_calls_chunk_json(const ResponseMeta& meta, int32_t index, const std::vector<ToolCall>& calls) {
  std::vector<std::string> ids;
  for (size_t k = 0; k < calls.size(); ++k) ids.push_back(new_tool_call_id());
  json j = envelope(meta, true);
  json choice = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", nullptr},
                 {"delta", {{"tool_calls", tool_calls_json(calls, ids, true)}}}};
  j["choices"] = json::array({choice});
  return j;
}

json usage_chunk_json(const ResponseMeta& meta, const RequestMetrics& m) {
  json j = envelope(meta, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(m);
  return j;
}

HttpError rejection_error(const std::string& reason, const std::string& message) {
  const std::string msg = message.empty() ? "request rejected: " + reason : message;
  if (reason == "queue_full") return {429, msg, "rate_limit_error", reason};
  if (reason == "kv_capacity") return {413, msg, "invalid_request_error", reason};
  if (reason == "prompt_too_long") return {400, msg, "invalid_request_error", "context_length_exceeded"};
  if (reason == "invalid_request") return {400, msg, "invalid_request_error", ""};
  if (reason == "engine_unavailable") return {503, msg, "server_error", reason};
  return {400, msg, "invalid_request_error", reason};
}

Outcome outcome_of(const TokenEvent& ev, bool stopped_by_sequence, double timeout_s) {
  Outcome o;
  if (stopped_by_sequence) {
    o.finish_reason = "stop";
    return o;
  }
  switch (ev.reason) {
    case FinishReason::Eos: o.finish_reason = "stop"; break;
    case FinishReason::Length: o.finish_reason = "length"; break;
    case FinishReason::DeadlineExceeded:
      o.error = HttpError{504, fmt::format("the request did not finish within its deadline of {:g} s", timeout_s),
                          "timeout_error", "deadline_exceeded"};
      break;
    case FinishReason::Cancelled:
      o.error = HttpError{503, "the request was cancelled (the server is shutting down)", "server_error", "cancelled"};
      break;
    case FinishReason::Rejected: o.error = rejection_error(ev.error, ev.error.empty() ? "" : "request rejected: " + ev.error); break;
    case FinishReason::Error:
    case FinishReason::None:
      o.error = HttpError{500, "generation failed: " + (ev.error.empty() ? std::string("unknown error") : ev.error), "server_error",
                          "engine_error"};
      break;
  }
  return o;
}

}  // namespace pagoda::server
