// OpenAI-style request bodies -> what the engine needs. A pure function of its input (no engine,
// no tokenizer, no I/O), so it can be fuzzed with arbitrary bytes: every input gives either a
// ParsedRequest whose fields are all in range, or an error message naming the offending field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/grammar/grammar.h"
#include "apps/server/tool_calls.h"
#include "core/sample/sampler.h"
#include "core/util/result.h"

namespace pagoda::server {

enum class Endpoint : uint8_t { Completions, Chat };

struct ChatMessage {
  std::string role;  // system, user, assistant, tool (developer is folded into system)
  std::string content;
};

struct ParseLimits {
  int32_t ctx_len = 2048;            // max_tokens above the context is an error, not a silent clamp
  int32_t vocab = 0;                 // token-id prompts must lie inside it (0: unchecked)
  int32_t default_max_tokens = 256;  // when the body names none (clamped to the context later)
  size_t max_stop = 4;               // OpenAI's limit on stop sequences
  int32_t max_n = 16;                // choices per request
  size_t max_stop_bytes = 256;
  size_t max_messages = 4096;
  int max_depth = 32;                // JSON nesting; deeper bodies are refused before parsing
};

struct ParsedRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;                  // as sent ("" when absent); the server serves one model
  std::string prompt;                 // completions: text ...
  std::vector<int32_t> prompt_tokens; // ... or token ids (used when non-empty)
  std::vector<ChatMessage> messages;  // chat
  // Chat, for the model's template: the messages as sent, key order kept (tool_calls and all;
  // text parts joined into one content string, developer -> system), and `tools` (null if absent).
  nlohmann::ordered_json chat_messages;
  nlohmann::ordered_json chat_tools;
  ToolSpec tools;                     // chat: tools, tool_choice, parallel_tool_calls
  bool echo = false;                  // completions: the prompt text comes back before the completion
  // Chat with tool_choice `required` or a named function: the JSON Schema the output must match
  // (forced_call_schema; null otherwise). Set by the server after parsing; sampling under it is
  // the structured-output path's job.
  nlohmann::ordered_json tool_schema;
  int32_t max_tokens = 0;
  bool max_tokens_set = false;
  int32_t n = 1;                      // choices: n engine requests on one prompt, seeds seed, seed+1, ...
  SamplingParams sampling;            // OpenAI defaults: temperature 1, no top-k/top-p/min-p filtering
  bool seed_set = false;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage: a final usage chunk
  bool ignore_eos = false;            // extension: generate through EOS up to max_tokens (benchmarks)
  std::vector<std::string> stop;
  int32_t priority = 0;               // extension: higher runs first, is preempted last
  double timeout_s = 0;               // extension: deadline in seconds (0 = none)
  // Log-probabilities: -1 none; else how many top alternatives per token (chat: `logprobs: true`
  // with `top_logprobs`; completions: `logprobs: N`).
  int32_t logprobs = -1;
  // Structured output: `response_format` (json_object / json_schema) or the `grammar` extension,
  // compiled; null when unconstrained. `grammar_text` is the grammar's source (a cache key).
  std::shared_ptr<const grammar::Grammar> grammar;
  std::string grammar_text;
};

Result<ParsedRequest> parse_request(std::string_view body, Endpoint endpoint, const ParseLimits& limits);

// The X-Request-Timeout header: seconds as a positive decimal number.
Result<double> parse_timeout_header(std::string_view value);

// JSON text -> value, refusing an object that names a member twice (the error names it).
Result<nlohmann::json> parse_json_strict(std::string_view text);

// Deepest nesting of [ and { outside strings; used to refuse pathological bodies cheaply.
int json_nesting_depth(std::string_view text);

}  // namespace pagoda::server
