#include "core/chat/template.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/chat/parser.h"

namespace pagoda {
namespace {

// The bytes of a JSON value's strings and keys: what its text costs a template to copy once.
// (Past the nesting a render accepts, Value::from_json refuses the variables anyway.)
int64_t string_bytes(const nlohmann::ordered_json& j, int depth = 0) {
  if (j.is_string()) return int64_t(j.get_ref<const std::string&>().size());
  int64_t n = 0;
  if (depth > jinja::NestGuard::kMaxDepth) return n;
  if (j.is_object())
    for (const auto& [k, v] : j.items()) n += int64_t(k.size()) + string_bytes(v, depth + 1);
  else if (j.is_array())
    for (const auto& v : j) n += string_bytes(v, depth + 1);
  return n;
}

}  // namespace

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
  jinja::RenderLimits limits = opt.limits;
  limits.max_work = std::max(limits.max_work, jinja::RenderLimits::kWorkPerInputByte * string_bytes(vars));
  jinja::Interpreter in(limits, now);
  jinja::Value v;
  try {
    v = jinja::Value::from_json(vars);
  } catch (const jinja::TemplateError& e) {
    return make_error("template variables: " + e.message);
  } catch (const std::exception& e) {
    return make_error(std::string("template variables: ") + e.what());
  }
  try {
    return in.render(*body_, v.entries());
  } catch (const jinja::TemplateError& e) {
    return make_error("template line " + std::to_string(in.line()) + ": " + e.message);
  } catch (const std::exception& e) {  // e.g. out of memory: still an error, never a crash
    return make_error("template line " + std::to_string(in.line()) + ": " + e.what());
  }
}

}  // namespace pagoda
