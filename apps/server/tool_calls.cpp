#include "apps/server/tool_calls.h"

#include <fmt/core.h>

#include <algorithm>
#include <random>

namespace pagoda::server {
namespace {

using nlohmann::ordered_json;
// Parsed with key order kept: a call's arguments go back to the client as the model wrote them.
using json = nlohmann::ordered_json;

constexpr std::string_view kTagOpen = "<tool_call>", kTagClose = "</tool_call>";
constexpr std::string_view kMistral = "[TOOL_CALLS]", kPythonTag = "<|python_tag|>", kArgs = "[ARGS]";
constexpr std::string_view kMarkers[] = {kTagOpen, kMistral, kPythonTag};

Error bad(const char* key, const std::string& what) { return make_error(fmt::format("'{}' {}", key, what)); }

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

// One past the end of the JSON object or array opening at `start`, by bracket matching outside
// strings (the value itself is checked by the JSON parser after); npos when it never closes.
size_t json_value_end(std::string_view s, size_t start) {
  if (start >= s.size() || (s[start] != '{' && s[start] != '[')) return std::string_view::npos;
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

bool declared(const std::vector<std::string>& names, const std::string& name) {
  return names.empty() || std::find(names.begin(), names.end(), name) != names.end();
}

// {"name": ..., "arguments" | "parameters": ...} -> a call; arguments given as JSON text are kept
// as that text when it parses.
bool call_of(const json& j, const std::vector<std::string>& names, std::vector<ToolCall>& out) {
  if (!j.is_object()) return false;
  const auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) return false;
  if (!declared(names, name->get<std::string>())) return false;
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  ToolCall c{name->get<std::string>(), "{}"};
  if (args != j.end() && !args->is_null()) {
    if (args->is_object()) c.arguments = args->dump();
    else if (args->is_string() && json::accept(args->get_ref<const std::string&>())) c.arguments = args->get<std::string>();
    else return false;
  }
  out.push_back(std::move(c));
  return true;
}

// A call object, or an array of them.
bool calls_of(const json& j, const std::vector<std::string>& names, std::vector<ToolCall>& out) {
  if (!j.is_array()) return call_of(j, names, out);
  if (j.empty()) return false;
  for (const auto& e : j)
    if (!call_of(e, names, out)) return false;
  return true;
}

// JSON values from `i` on, each a call or an array of calls, separated by whitespace or `;`.
// Trailing text after the last value is allowed only when `allow_trailing`.
bool json_calls_from(std::string_view s, size_t i, const std::vector<std::string>& names, std::vector<ToolCall>& out,
                     bool allow_trailing) {
  bool any = false;
  for (i = skip_space(s, i); i < s.size(); i = skip_space(s, i)) {
    if (s[i] == ';' && any) {
      ++i;
      continue;
    }
    const size_t end = json_value_end(s, i);
    if (end == std::string_view::npos) {
      if (any && allow_trailing) break;
      return false;
    }
    const json j = json::parse(s.substr(i, end - i), nullptr, false);
    if (j.is_discarded() || !calls_of(j, names, out)) return false;
    any = true;
    i = end;
  }
  return any;
}

// `<tool_call>{...}</tool_call>` blocks from `first` (the first opening tag) on.
bool hermes_calls(std::string_view s, size_t first, const std::vector<std::string>& names, std::vector<ToolCall>& out) {
  size_t i = first;
  while (i < s.size()) {
    i = skip_space(s, i);
    if (i >= s.size()) break;
    if (s.compare(i, kTagOpen.size(), kTagOpen) != 0) break;  // text after the calls is dropped
    i += kTagOpen.size();
    const size_t close = s.find(kTagClose, i);
    const std::string_view body = s.substr(i, close == std::string_view::npos ? std::string_view::npos : close - i);
    const json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !calls_of(j, names, out)) return false;
    if (close == std::string_view::npos) break;  // generation ended before the closing tag
    i = close + kTagClose.size();
  }
  return !out.empty();
}

// After [TOOL_CALLS]: a JSON array of calls, or `name[ARGS]{...}` runs (newer Mistral templates).
bool mistral_calls(std::string_view s, size_t i, const std::vector<std::string>& names, std::vector<ToolCall>& out) {
  i = skip_space(s, i);
  if (i < s.size() && (s[i] == '[' || s[i] == '{')) return json_calls_from(s, i, names, out, true);
  while (i < s.size()) {
    const size_t args = s.find(kArgs, i);
    if (args == std::string_view::npos) return false;
    std::string name(s.substr(i, args - i));
    while (!name.empty() && is_space(name.back())) name.pop_back();
    const size_t start = skip_space(s, args + kArgs.size());
    const size_t end = json_value_end(s, start);
    if (end == std::string_view::npos || name.empty()) return false;
    const json a = json::parse(s.substr(start, end - start), nullptr, false);
    if (a.is_discarded() || !call_of(json{{"name", name}, {"arguments", a}}, names, out)) return false;
    i = skip_space(s, end);
    if (s.compare(i, kMistral.size(), kMistral) == 0) i = skip_space(s, i + kMistral.size());
    else break;
  }
  return !out.empty();
}

// Where a call starts: the first marker, or (no marker) the start of output that opens with
// JSON. npos: the text cannot hold a call.
size_t call_start(std::string_view s, std::string_view& marker) {
  size_t best = std::string_view::npos;
  for (std::string_view m : kMarkers) {
    const size_t p = s.find(m);
    if (p < best) best = p, marker = m;
  }
  if (best != std::string_view::npos) return best;
  marker = {};
  const size_t i = skip_space(s, 0);
  return i < s.size() && (s[i] == '{' || s[i] == '[') ? 0 : std::string_view::npos;
}

Result<ordered_json> call_schema(const ordered_json& tool, ordered_json& defs) {
  const ordered_json& fn = tool["function"];
  ordered_json params = fn.contains("parameters") ? fn["parameters"] : ordered_json{{"type", "object"}};
  // $ref paths point at the root of the parameters; the wrapper becomes the root, so their
  // definitions move up to it.
  for (const char* key : {"$defs", "definitions"}) {
    if (!params.contains(key)) continue;
    for (const auto& [name, def] : params[key].items()) {
      if (defs[key].contains(name) && defs[key][name] != def)
        return make_error(fmt::format("'tools' define '{}' differently in two functions' parameters", name));
      defs[key][name] = def;
    }
    params.erase(key);
  }
  return ordered_json{{"type", "object"},
                      {"properties", {{"name", {{"const", fn["name"]}}}, {"arguments", params}}},
                      {"required", {"name", "arguments"}},
                      {"additionalProperties", false}};
}

}  // namespace

Result<ToolSpec> read_tool_spec(const ordered_json& body) {
  ToolSpec spec;
  const auto tools = body.find("tools");
  if (tools != body.end() && !tools->is_null()) {
    if (!tools->is_array()) return bad("tools", "must be an array of tool definitions");
    for (const auto& t : *tools) {
      if (!t.is_object() || !t.contains("type") || t["type"] != "function")
        return bad("tools", "entries must be {\"type\": \"function\", \"function\": {...}}");
      const auto fn = t.find("function");
      if (fn == t.end() || !fn->is_object()) return bad("tools", "entries need a 'function' object");
      const auto name = fn->find("name");
      if (name == fn->end() || !name->is_string() || name->get_ref<const std::string&>().empty())
        return bad("tools", "functions need a non-empty 'name' string");
      const auto params = fn->find("parameters");
      if (params != fn->end() && !params->is_null() && !params->is_object())
        return bad("tools", fmt::format("'parameters' of '{}' must be a JSON Schema object", name->get<std::string>()));
      if (std::find(spec.names.begin(), spec.names.end(), name->get<std::string>()) != spec.names.end())
        return bad("tools", fmt::format("declare '{}' twice", name->get<std::string>()));
      spec.names.push_back(name->get<std::string>());
    }
    spec.tools = *tools;
  }
  const bool have = !spec.names.empty();
  spec.choice = have ? ToolChoice::Auto : ToolChoice::None;
  const auto choice = body.find("tool_choice");
  if (choice != body.end() && !choice->is_null()) {
    if (choice->is_string()) {
      const std::string& c = choice->get_ref<const std::string&>();
      if (c == "none") spec.choice = ToolChoice::None;
      else if (c == "auto") spec.choice = have ? ToolChoice::Auto : ToolChoice::None;
      else if (c == "required") spec.choice = ToolChoice::Required;
      else return bad("tool_choice", "must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    } else if (choice->is_object() && choice->contains("function") && (*choice)["function"].is_object() &&
               (*choice)["function"].contains("name") && (*choice)["function"]["name"].is_string()) {
      spec.choice = ToolChoice::Named;
      spec.forced = (*choice)["function"]["name"].get<std::string>();
      if (have && !declared(spec.names, spec.forced))
        return bad("tool_choice", fmt::format("names '{}', which is not in 'tools'", spec.forced));
    } else {
      return bad("tool_choice", "must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if ((spec.choice == ToolChoice::Required || spec.choice == ToolChoice::Named) && !have)
      return bad("tool_choice", "asks for a tool call but the request declares no 'tools'");
  }
  const auto parallel = body.find("parallel_tool_calls");
  if (parallel != body.end() && !parallel->is_null()) {
    if (!parallel->is_boolean()) return bad("parallel_tool_calls", "must be a boolean");
    spec.parallel = parallel->get<bool>();
  }
  return spec;
}

Result<ordered_json> forced_call_schema(const ToolSpec& spec) {
  if (spec.choice != ToolChoice::Required && spec.choice != ToolChoice::Named) return ordered_json();
  ordered_json defs = ordered_json::object(), alternatives = ordered_json::array();
  for (const auto& t : spec.tools) {
    if (spec.choice == ToolChoice::Named && t["function"]["name"] != spec.forced) continue;
    auto s = call_schema(t, defs);
    if (!s) return s.take_error();
    alternatives.push_back(std::move(*s));
  }
  ordered_json schema;
  if (spec.choice == ToolChoice::Named) schema = alternatives.at(0);
  else if (spec.parallel) schema = {{"type", "array"}, {"items", {{"anyOf", alternatives}}}, {"minItems", 1}};
  else schema = {{"anyOf", alternatives}};
  for (const auto& [key, value] : defs.items()) schema[key] = value;
  return schema;
}

ToolParse parse_tool_calls(std::string_view text, const std::vector<std::string>& names) {
  ToolParse out;
  std::string_view marker;
  const size_t start = call_start(text, marker);
  bool ok = false;
  if (start != std::string_view::npos) {
    if (marker == kTagOpen) ok = hermes_calls(text, start, names, out.calls);
    else if (marker == kMistral) ok = mistral_calls(text, start + kMistral.size(), names, out.calls);
    else if (marker == kPythonTag) ok = json_calls_from(text, start + kPythonTag.size(), names, out.calls, true);
    else ok = json_calls_from(text, start, names, out.calls, false);  // bare JSON must be the whole output
  }
  if (!ok) {
    out.calls.clear();
    out.content = std::string(text);
    return out;
  }
  out.content = std::string(text.substr(0, start));
  return out;
}

std::string ToolCallStream::push(std::string_view piece) {
  all_ += piece;
  if (holding_) return "";
  const std::string_view rest = std::string_view(all_).substr(sent_);
  std::string_view marker;
  size_t start = std::string_view::npos;
  for (std::string_view m : kMarkers) start = std::min(start, rest.find(m));
  // Output that opens with JSON may be a bare call: nothing of it goes out until the end.
  if (sent_ == 0 && start == std::string_view::npos) {
    const size_t i = skip_space(rest, 0);
    if (i == rest.size()) return "";  // only whitespace so far: not decided yet
    if (rest[i] == '{' || rest[i] == '[') start = 0;
  }
  if (start != std::string_view::npos) {
    holding_ = true;
    sent_ += start;
    return std::string(rest.substr(0, start));
  }
  // Hold back the longest tail that could still grow into a marker.
  size_t keep = 0;
  for (std::string_view m : kMarkers)
    for (size_t len = std::min(m.size() - 1, rest.size()); len > keep; --len)
      if (rest.compare(rest.size() - len, len, m, 0, len) == 0) {
        keep = len;
        break;
      }
  sent_ += rest.size() - keep;
  return std::string(rest.substr(0, rest.size() - keep));
}

ToolParse ToolCallStream::finish() {
  ToolParse p = parse_tool_calls(all_, names_);
  // Content already sent is the prefix of p.content (calls start at or after sent_).
  p.content = sent_ <= p.content.size() ? p.content.substr(sent_) : std::string();
  return p;
}

std::string new_tool_call_id() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{(uint64_t(std::random_device{}()) << 32) ^ std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

nlohmann::json tool_calls_json(const std::vector<ToolCall>& calls, const std::vector<std::string>& ids, bool delta) {
  nlohmann::json arr = nlohmann::json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    nlohmann::json c = {{"id", i < ids.size() ? ids[i] : new_tool_call_id()},
              {"type", "function"},
              {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (delta) c["index"] = i;
    arr.push_back(std::move(c));
  }
  return arr;
}

}  // namespace pagoda::server
