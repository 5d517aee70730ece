// Tool calls: the request's `tools` / `tool_choice`, the JSON Schema that forces a call when the
// choice is `required` or a named function, and the parser that finds calls in model output in the
// common formats (Qwen/Hermes <tool_call> tags, Llama 3.1 JSON, Mistral [TOOL_CALLS]), whole or
// streamed. Pure functions of their inputs: no engine, no tokenizer.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/util/result.h"

namespace pagoda::server {

enum class ToolChoice : uint8_t { None, Auto, Required, Named };

// What the request asked for, as request_parse reads it.
struct ToolSpec {
  ToolChoice choice = ToolChoice::None;  // None also when the request has no tools
  std::vector<std::string> names;        // declared function names, in order
  std::string forced;                    // Named: the function that must be called
  bool parallel = true;                  // parallel_tool_calls: false keeps only the first call
  nlohmann::ordered_json tools;          // the validated `tools` array (null when absent)
};

// Reads `tools`, `tool_choice` and `parallel_tool_calls` from a chat body. Errors name the field.
// The default choice is `auto` when tools are given, `none` otherwise, as OpenAI's.
Result<ToolSpec> read_tool_spec(const nlohmann::ordered_json& body);

// For `required` and named choices: the schema of the output that is exactly the call(s), as
// bare JSON the parser below reads — named: {"name": NAME, "arguments": PARAMETERS}; required: an
// array of one or more such objects over the declared tools (one object when parallel calls are
// off). Null for `auto` and `none`. The caller compiles it (core/grammar) and answers 400 with the
// compiler's error when a tool's parameters use a keyword it does not support.
Result<nlohmann::ordered_json> forced_call_schema(const ToolSpec& spec);

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text, as OpenAI's `function.arguments`
};

struct ToolParse {
  std::string content;          // the text outside the calls (all of it when there are none)
  std::vector<ToolCall> calls;  // empty: the output is plain content
};

// Finds tool calls in a whole output. Recognized: `<tool_call>{json}</tool_call>` blocks (the
// closing tag may be cut off at the end), `[TOOL_CALLS]` then a JSON array (or `name[ARGS]{json}`
// runs), `<|python_tag|>` then JSON objects separated by `;`, and output that is nothing but such a
// JSON object or array (Llama 3.1 style; also what the forced-call schema produces). A call is an
// object with a string "name" and "arguments" or "parameters" (an object, or JSON text). Calls
// must name a declared function (`names`; empty: any). Anything malformed: no calls, the whole
// text is content. Text after the calls is dropped.
ToolParse parse_tool_calls(std::string_view text, const std::vector<std::string>& names);

// The streaming side of parse_tool_calls: passes content through as it arrives until a call may
// have started (a marker, or output opening with `{` / `[`), holds everything from there, and at
// the end parses the whole text. A partial marker is held back until the next piece settles it.
// Emitted content + finish().content always equals parse_tool_calls(all text).content.
class ToolCallStream {
 public:
  explicit ToolCallStream(std::vector<std::string> names = {}) : names_(std::move(names)) {}
  std::string push(std::string_view piece);  // content safe to send now
  ToolParse finish();                        // content not sent yet, and the calls

 private:
  std::vector<std::string> names_;
  std::string all_;
  size_t sent_ = 0;
  bool holding_ = false;  // a call may have started at sent_: hold the rest
};

// OpenAI's shapes: `message.tool_calls` entries and the `delta.tool_calls` entries of a stream.
// `ids` are the calls' ids ("call_" + 24 random characters, from new_tool_call_id()).
nlohmann::json tool_calls_json(const std::vector<ToolCall>& calls, const std::vector<std::string>& ids, bool delta);
std::string new_tool_call_id();

}  // namespace pagoda::server
