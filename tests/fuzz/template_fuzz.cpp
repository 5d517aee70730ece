// libFuzzer target for the chat-template engine (core/chat). A GGUF's tokenizer.chat_template is
// untrusted input that `run`, `chat` and `serve` render: any source must parse or fail with a
// message, and any parsed template must render or fail with a message, within the render limits
// (no crash, no hang, no unbounded memory).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "core/chat/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  auto t = pagoda::ChatTemplate::parse(source);
  if (!t) {
    if (t.error().empty()) std::abort();
    return 0;
  }
  static const nlohmann::ordered_json vars = nlohmann::ordered_json::parse(R"({
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \u00e9"},
                 {"role": "assistant", "content": "Hello.", "tool_calls": [{"type": "function",
                  "function": {"name": "f", "arguments": {"a": 1}}}]}, {"role": "tool", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})");
  pagoda::ChatRenderOptions opt;
  opt.now = std::tm{};
  // Smaller than the defaults so each input runs quickly; the limits' checks are what is tested.
  opt.limits.max_output = 1u << 20;
  opt.limits.max_steps = 200'000;
  opt.limits.max_work = 16 << 20;
  auto r = t->render(vars, opt);
  if (!r && r.error().empty()) std::abort();
  if (r && r->size() > opt.limits.max_output) std::abort();
  return 0;
}
