#include "core/chat/template.h"

#include <nlohmann/json.hpp>

#include "core/chat/parser.h"

namespace pagoda {

Result<ChatTemplate> ChatTemplate::parse(const std::string& source) {
  try {
    ChatTemplate t;
    t.body_ = std::make_shared<const jinja::Body>(jinja::parse_template(source));
    return t;
  } catch (const jinja::TemplateError& e) {
    return make_error("template " + e.message);
  } catch (const std::exception& e) {
    return make_error(std::string("template: ") + e.what());
  }
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& vars, const ChatRenderOptions& opt) const {
  if (!vars.is_object()) return make_error("template variables must be a JSON object");
  std::tm now{};
  if (opt.now) {
    now = *opt.now;
  } else {
    const std::time_t t = std::time(nullptr);
    localtime_r(&t, &now);
  }
  jinja::Interpreter in(opt.limits, now);
  try {
    const jinja::Value v = jinja::Value::from_json(vars);
    return in.render(*body_, v.entries());
  } catch (const jinja::TemplateError& e) {
    return make_error("template line " + std::to_string(in.line()) + ": " + e.message);
  } catch (const std::exception& e) {  // e.g. out of memory: still an error, never a crash
    return make_error("template line " + std::to_string(in.line()) + ": " + e.what());
  }
}

}  // namespace pagoda
