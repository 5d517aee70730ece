// A chat template: Jinja source parsed once, rendered with the variables a chat supplies
// (messages, tools, add_generation_prompt, bos_token, eos_token, ...). Renders as Jinja2 does with
// trim_blocks, lstrip_blocks, loop controls and the hub's extras (raise_exception, strftime_now,
// tojson with non-ASCII kept, {% generation %}). Errors name the template line; never a crash.
#pragma once
#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/chat/interpreter.h"
#include "core/util/result.h"

namespace pagoda {

struct ChatRenderOptions {
  std::optional<std::tm> now;  // what strftime_now formats; unset: the local time at render
  jinja::RenderLimits limits;
};

class ChatTemplate {
 public:
  // A syntax error is "template line N: ...".
  static Result<ChatTemplate> parse(const std::string& source);
  // `vars` must be a JSON object; its key order is kept (tojson output depends on it).
  Result<std::string> render(const nlohmann::ordered_json& vars, const ChatRenderOptions& opt = {}) const;

 private:
  std::shared_ptr<const jinja::Body> body_;
};

}  // namespace pagoda
