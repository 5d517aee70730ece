#include "apps/server/responses.h"

#include <fmt/core.h>

#include "core/tokenizer/unicode.h"

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

json stages_json(const RequestStages& s) {
  return {{"normalize", s.normalize * 1e3}, {"queue", s.queue * 1e3},   {"schedule", s.schedule * 1e3},
          {"draft", s.draft * 1e3},         {"decode", s.decode * 1e3}, {"verify", s.verify * 1e3},
          {"emit", s.emit * 1e3},           {"postprocess", s.postprocess * 1e3}};
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

size_t utf8_chars(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (uint8_t(c) & 0xC0) != 0x80;
  return n;
}

namespace {
json bytes_json(std::string_view s) {
  json a = json::array();
  for (char c : s) a.push_back(int(uint8_t(c)));
  return a;
}
}  // namespace

std::string LogprobsBuilder::token_text(int32_t id, int32_t prev) const {
  std::string b = tok_ ? tok_->token_bytes(prev, id) : std::string();
  if (tok_ && b.empty() && tok_->is_special(id)) b = tok_->piece(id);  // a control token shows its name
  return b;
}

void LogprobsBuilder::add(const TokenEvent& ev, size_t text_offset) {
  auto shown = [](const std::string& b) {
    if (tok::utf8_valid(b)) return b;
    std::string out = "bytes:";
    for (char c : b) out += fmt::format("\\x{:02x}", uint8_t(c));
    return out;
  };
  const std::string b = token_text(ev.token, prev_);
  ++n_;
  if (ep_ == Endpoint::Chat) {
    json top = json::array();
    for (const auto& [id, lp] : ev.top_logprobs) {
      const std::string tb = token_text(id, prev_);
      top.push_back({{"token", shown(tb)}, {"logprob", lp}, {"bytes", bytes_json(tb)}});
    }
    content_.push_back({{"token", shown(b)}, {"logprob", ev.logprob}, {"bytes", bytes_json(b)}, {"top_logprobs", std::move(top)}});
  } else {
    tokens_.push_back(shown(b));
    token_logprobs_.push_back(ev.logprob);
    json top = json::object();
    for (const auto& [id, lp] : ev.top_logprobs) top[shown(token_text(id, prev_))] = lp;
    top[shown(b)] = ev.logprob;
    top_.push_back(std::move(top));
    offsets_.push_back(text_offset);
  }
  prev_ = ev.token;
}

json LogprobsBuilder::take() {
  if (n_ == 0) return nullptr;
  json j;
  if (ep_ == Endpoint::Chat) {
    j = {{"content", std::move(content_)}, {"refusal", nullptr}};
    content_ = json::array();
  } else {
    j = {{"tokens", std::move(tokens_)}, {"token_logprobs", std::move(token_logprobs_)}, {"top_logprobs", std::move(top_)},
         {"text_offset", std::move(offsets_)}};
    tokens_ = json::array(), token_logprobs_ = json::array(), top_ = json::array(), offsets_ = json::array();
  }
  n_ = 0;
  return j;
}

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
    json choice = {{"index", i}, {"logprobs", c.logprobs}, {"finish_reason", finish_json(c.finish_reason)}};
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
                   {"mean_itl_ms", m.mean_itl_s * 1e3}, {"e2e_ms", m.e2e_s * 1e3}, {"preemptions", m.preemptions},
                   {"stages_ms", stages_json(m.stages)}};
    if (choices.size() > 1) {
      j["pagoda"]["request_ids"] = json::array();
      for (const auto& c : choices) j["pagoda"]["request_ids"].push_back(c.engine_id);
    }
  }
  return j;
}

json chunk_json(const ResponseMeta& meta, int32_t index, const std::string& text, const char* finish_reason, bool role_only,
                const json& logprobs) {
  json j = envelope(meta, true);
  json choice = {{"index", index}, {"logprobs", logprobs}, {"finish_reason", finish_json(finish_reason)}};
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

HttpError rejection_error(Rejection reason, const std::string& message) {
  const std::string name = rejection_name(reason);
  const std::string msg = message.empty() ? "request rejected: " + name : message;
  switch (reason) {
    case Rejection::QueueFull: return {429, msg, "rate_limit_error", name};
    case Rejection::KvCapacity: return {413, msg, "invalid_request_error", name};
    case Rejection::PromptTooLong: return {400, msg, "invalid_request_error", "context_length_exceeded"};
    case Rejection::InvalidRequest: return {400, msg, "invalid_request_error", ""};
    case Rejection::EngineUnavailable: return {503, msg, "server_error", name};
    case Rejection::None: break;
  }
  return {500, "rejection_error called for an admitted request", "server_error", ""};
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
    case FinishReason::Rejected:  // not produced by the engine today (admission answers at submit)
      o.error = HttpError{400, "request rejected: " + ev.error, "invalid_request_error", ev.error};
      break;
    case FinishReason::Error:
    case FinishReason::None:
      o.error = HttpError{500, "generation failed: " + (ev.error.empty() ? std::string("unknown error") : ev.error), "server_error",
                          "engine_error"};
      break;
  }
  return o;
}

}  // namespace pagoda::server
