#include "core/grammar/json_schema.h"

#include "core/grammar/regex_pattern.h"

#include <fmt/format.h>

#include <cassert>
#include <cctype>
#include <map>
#include <set>
#include <vector>

namespace pagoda::grammar {
namespace {

using Json = nlohmann::ordered_json;

// The shared building blocks; each is added to the grammar the first time something uses it.
const std::map<std::string, std::string>& base_rules() {
  static const std::map<std::string, std::string> rules = {
      {"ws", fmt::format("([ ] | [\\n] [ \\t]{{0,{}}})?", kMaxIndent)},
      {"value", "object | array | string | number | boolean | null"},
      {"object", "\"{\" ws ( member ( \",\" ws member )* )? \"}\""},
      {"member", "string ws \":\" ws value ws"},
      {"array", "\"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\""},
      {"string", "\"\\\"\" char* \"\\\"\""},
      {"char", "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" hex{4} )"},
      {"hex", "[0-9a-fA-F]"},
      // Digit runs are bounded (16 significant digits is all a double holds) so a model cannot
      // emit an endless number; two exponent digits keep every number a finite double.
      {"number", "\"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?"},
      {"integer", "\"-\"? ( \"0\" | [1-9] [0-9]{0,15} )"},
      {"boolean", "\"true\" | \"false\""},
      {"null", "\"null\""},
      {"date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )"},
      {"time", "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,9} )? "
               "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )"},
      {"date-time", "date \"T\" time"},
      {"uuid", "hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}"},
      {"email", "[a-zA-Z0-9._%+-]{1,64} \"@\" email-label ( \".\" email-label ){1,8}"},
      {"email-label", "[a-zA-Z0-9] [a-zA-Z0-9-]{0,62}"},
  };
  return rules;
}

const std::set<std::string> kSupported = {"type",    "properties", "required", "additionalProperties", "items",
                                          "minItems", "maxItems",  "enum",     "const",   "anyOf",
                                          "oneOf",   "allOf",      "$ref",     "$defs",   "definitions",
                                          "format",  "minLength",  "maxLength", "pattern"};
// Annotations: they describe, they do not constrain, so they are accepted and ignored.
const std::set<std::string> kAnnotations = {"title",      "description", "default",  "examples",
                                            "$schema",    "$id",         "$comment", "deprecated",
                                            "readOnly",   "writeOnly",   "$anchor"};
const std::set<std::string> kFormats = {"date", "time", "date-time", "uuid", "email"};

// A JSON value as a grammar literal.
std::string literal(const Json& v) {
  const std::string text = v.dump(-1, ' ', false);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string pointer_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

Error unsupported(const std::string& keyword, const std::string& path, const std::string& why = "") {
  return make_error(fmt::format("json_schema: unsupported keyword '{}' at {}{}", keyword, path, why.empty() ? "" : ": " + why));
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const Json& root) : root_(root) {}

  Result<std::string> run() {
    auto top = visit(root_, "#");
    if (!top) return top;
    std::string text = "root ::= " + *top + "\n";
    for (const auto& [name, body] : rules_) text += name + " ::= " + body + "\n";
    return text;
  }

 private:
  // Names a base rule, adding it (and the base rules it uses) on first use.
  std::string use(const std::string& name) {
    if (!defined_.insert(name).second) return name;
    const std::string& body = base_rules().at(name);
    rules_.push_back({name, body});
    for (const auto& [dep, unused] : base_rules())
      if (dep != name && mentions(body, dep)) use(dep);
    return name;
  }
  static bool mentions(const std::string& body, const std::string& name) {
    for (size_t p = body.find(name); p != std::string::npos; p = body.find(name, p + 1)) {
      auto word = [](char c) { return std::isalnum(uint8_t(c)) || c == '-' || c == '_'; };
      const bool left_ok = p == 0 || (!word(body[p - 1]) && body[p - 1] != '"');
      const bool right_ok = p + name.size() >= body.size() || (!word(body[p + name.size()]) && body[p + name.size()] != '"');
      if (left_ok && right_ok) return true;
    }
    return false;
  }

  std::string add_rule(const std::string& hint, std::string body) {
    std::string name = fmt::format("s{}-{}", rules_.size(), hint);
    rules_.push_back({name, std::move(body)});
    defined_.insert(name);
    return name;
  }

  Result<std::string> visit(const Json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return use("value");
      return make_error("json_schema: the schema at " + path + " is false, which no value matches");
    }
    if (!s.is_object()) return make_error("json_schema: the schema at " + path + " must be an object or a boolean");
    for (const auto& [k, unused] : s.items())
      if (!kSupported.count(k) && !kAnnotations.count(k) && k.rfind("x-", 0) != 0) return unsupported(k, path);
    if (s.contains("$ref")) return visit_ref(s["$ref"], path);
    if (s.contains("const")) return literal(s["const"]);
    if (s.contains("enum")) return visit_enum(s["enum"], path);
    if (s.contains("anyOf")) return visit_alternatives(s["anyOf"], path + "/anyOf");
    if (s.contains("oneOf")) return visit_alternatives(s["oneOf"], path + "/oneOf");
    if (s.contains("allOf")) {
      const Json& all = s["allOf"];
      if (!all.is_array() || all.size() != 1) return unsupported("allOf", path, "only a single-schema allOf is supported");
      return visit(all[0], path + "/allOf/0");
    }
    if (!s.contains("type")) {
      if (s.contains("properties") || s.contains("additionalProperties")) return visit_object(s, path);
      if (s.contains("items")) return visit_array(s, path);
      return use("value");
    }
    const Json& t = s["type"];
    if (t.is_string()) return visit_typed(s, t.get<std::string>(), path);
    if (!t.is_array() || t.empty()) return make_error("json_schema: 'type' at " + path + " must be a string or a non-empty array");
    std::string alt;
    for (const auto& one : t) {
      if (!one.is_string()) return make_error("json_schema: 'type' at " + path + " lists a non-string");
      auto r = visit_typed(s, one.get<std::string>(), path);
      if (!r) return r;
      alt += (alt.empty() ? "( " : " | ") + *r;
    }
    return alt + " )";
  }

  Result<std::string> visit_typed(const Json& s, const std::string& type, const std::string& path) {
    if (type == "object") return visit_object(s, path);
    if (type == "array") return visit_array(s, path);
    if (type == "string") return visit_string(s, path);
    if (type == "number" || type == "integer" || type == "boolean" || type == "null") return use(type);
    return make_error("json_schema: unknown type '" + type + "' at " + path);
  }

  Result<std::string> visit_ref(const Json& ref, const std::string& path) {
    if (!ref.is_string()) return make_error("json_schema: '$ref' at " + path + " must be a string");
    const std::string r = ref.get<std::string>();
    if (r == "#") return std::string("root");
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      const std::string p = prefix;
      if (r.rfind(p, 0) != 0) continue;
      const std::string name = unescape_pointer(r.substr(p.size()));
      const std::string section = p.substr(2, p.size() - 3);
      if (!root_.contains(section) || !root_[section].contains(name))
        return make_error("json_schema: '$ref' at " + path + " points to '" + r + "', which is not defined");
      auto it = ref_rules_.find(r);
      if (it != ref_rules_.end()) return it->second;
      // Reserve the rule before compiling its body so recursive schemas refer to it by name.
      const std::string rule = add_rule("ref", "");
      ref_rules_[r] = rule;
      const size_t slot = rules_.size() - 1;
      auto body = visit(root_[section][name], r);
      if (!body) return body;
      rules_[slot].second = *body;
      return rule;
    }
    return unsupported("$ref", path, "only local references '#', '#/$defs/NAME' and '#/definitions/NAME' are supported, not '" + r + "'");
  }

  static std::string unescape_pointer(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '~' && i + 1 < s.size()) {
        out += s[i + 1] == '1' ? '/' : '~';
        ++i;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  Result<std::string> visit_enum(const Json& e, const std::string& path) {
    if (!e.is_array() || e.empty()) return make_error("json_schema: 'enum' at " + path + " must be a non-empty array");
    std::string alt;
    for (const auto& v : e) alt += (alt.empty() ? "( " : " | ") + literal(v);
    return alt + " )";
  }

  Result<std::string> visit_alternatives(const Json& list, const std::string& path) {
    if (!list.is_array() || list.empty()) return make_error("json_schema: " + path + " must be a non-empty array");
    std::string alt;
    for (size_t i = 0; i < list.size(); ++i) {
      auto r = visit(list[i], path + "/" + std::to_string(i));
      if (!r) return r;
      alt += (alt.empty() ? "( " : " | ") + *r;
    }
    return alt + " )";
  }

  Result<std::string> visit_object(const Json& s, const std::string& path);
  Result<std::string> visit_map(const Json& s, const std::string& path);
  Result<std::string> visit_array(const Json& s, const std::string& path);
  Result<std::string> visit_string(const Json& s, const std::string& path);
  Result<std::string> visit_pattern(const Json& s, const std::string& path);

  static Result<int64_t> count(const Json& s, const char* key, int64_t fallback, const std::string& path) {
    if (!s.contains(key)) return fallback;
    const Json& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 100000)
      return make_error(fmt::format("json_schema: '{}' at {} must be an integer in 0..100000", key, path));
    return v.get<int64_t>();
  }

  const Json& root_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> defined_;
  std::map<std::string, std::string> ref_rules_;
};

// Properties come in schema order, each optional one may be skipped. `first_i` reads members
// i.. when none has been written yet (no leading comma), `rest_i` after one has.
Result<std::string> SchemaCompiler::visit_object(const Json& s, const std::string& path) {
  const bool has_props = s.contains("properties");
  const Json extra = s.contains("additionalProperties") ? s["additionalProperties"] : Json();
  if (!has_props) {
    if (extra.is_null() || extra == Json(true)) return use("object");
    return visit_map(s, path);
  }
  if (!extra.is_null() && extra != Json(false))
    return unsupported("additionalProperties", path, "extra properties next to 'properties' are not supported (use false or leave it out)");
  const Json& props = s["properties"];
  if (!props.is_object()) return make_error("json_schema: 'properties' at " + path + " must be an object");
  std::set<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) return make_error("json_schema: 'required' at " + path + " must be an array");
    for (const auto& r : s["required"]) {
      if (!r.is_string() || !props.contains(r.get<std::string>()))
        return unsupported("required", path, "'" + r.dump() + "' is not one of the listed properties");
      required.insert(r.get<std::string>());
    }
  }
  std::vector<std::string> members;
  std::vector<bool> optional;
  for (const auto& [key, sub] : props.items()) {
    auto v = visit(sub, path + "/properties/" + pointer_escape(key));
    if (!v) return v;
    members.push_back(add_rule("member", literal(Json(key)) + " " + use("ws") + " \":\" ws " + *v + " ws"));
    optional.push_back(!required.count(key));
  }
  std::string first = "", rest = "";  // the rules for i == n match nothing
  for (size_t i = members.size(); i-- > 0;) {
    const std::string m = members[i];
    const std::string rest_next = rest.empty() ? "" : " " + rest;
    const std::string first_next = first.empty() ? "" : first;
    const std::string rest_body = optional[i] ? "( \",\" ws " + m + " )?" + rest_next : "\",\" ws " + m + rest_next;
    std::string first_body = m + rest_next;
    if (optional[i]) first_body = "( " + first_body + " )" + (first_next.empty() ? "?" : " | " + first_next);
    first = add_rule("first", first_body);
    rest = add_rule("rest", rest_body);
  }
  return add_rule("object", "\"{\" " + use("ws") + " " + first + " \"}\"");
}

// {"additionalProperties": SCHEMA} without properties: a dictionary of SCHEMA values.
Result<std::string> SchemaCompiler::visit_map(const Json& s, const std::string& path) {
  const Json& extra = s["additionalProperties"];
  if (extra == Json(false)) return std::string("\"{\" " + use("ws") + " \"}\"");
  auto v = visit(extra, path + "/additionalProperties");
  if (!v) return v;
  const std::string kv = add_rule("entry", use("string") + " " + use("ws") + " \":\" ws " + *v + " ws");
  return add_rule("map", "\"{\" ws ( " + kv + " ( \",\" ws " + kv + " )* )? \"}\"");
}

Result<std::string> SchemaCompiler::visit_array(const Json& s, const std::string& path) {
  auto lo = count(s, "minItems", 0, path);
  if (!lo) return lo.take_error();
  auto hi = count(s, "maxItems", -1, path);
  if (!hi) return hi.take_error();
  if (*hi >= 0 && *hi < *lo) return make_error("json_schema: maxItems < minItems at " + path);
  std::string item = use("value");
  if (s.contains("items")) {
    auto v = visit(s["items"], path + "/items");
    if (!v) return v;
    item = *v;
  }
  const std::string ws = use("ws");
  if (*hi == 0) return add_rule("array", "\"[\" ws \"]\"");
  const std::string tail_lo = std::to_string(std::max<int64_t>(*lo - 1, 0));
  const std::string tail_hi = *hi < 0 ? "" : std::to_string(*hi - 1);
  const std::string items = item + " ws ( \",\" ws " + item + " ws ){" + tail_lo + "," + tail_hi + "}";
  return add_rule("array", "\"[\" ws " + (*lo == 0 ? "( " + items + " )?" : items) + " \"]\"");
}

Result<std::string> SchemaCompiler::visit_string(const Json& s, const std::string& path) {
  auto lo = count(s, "minLength", 0, path);
  if (!lo) return lo.take_error();
  auto hi = count(s, "maxLength", -1, path);
  if (!hi) return hi.take_error();
  if (*hi >= 0 && *hi < *lo) return make_error("json_schema: maxLength < minLength at " + path);
  if (s.contains("pattern")) return visit_pattern(s, path);
  if (s.contains("format")) {
    const Json& f = s["format"];
    if (!f.is_string() || !kFormats.count(f.get<std::string>()))
      return unsupported("format", path, "format " + f.dump() + " is not one of date, time, date-time, uuid, email");
    if (s.contains("minLength") || s.contains("maxLength"))
      return unsupported(s.contains("minLength") ? "minLength" : "maxLength", path, "length limits together with format");
    return add_rule("string", fmt::format(R"("\"" {} "\"")", use(f.get<std::string>())));
  }
  if (*lo == 0 && *hi < 0) return use("string");
  const std::string max = *hi < 0 ? "" : std::to_string(*hi);
  return add_rule("string", fmt::format(R"("\"" {}{{{},{}}} "\"")", use("char"), *lo, max));
}

Result<std::string> SchemaCompiler::visit_pattern(const Json& s, const std::string& path) {
  if (!s["pattern"].is_string()) return make_error("json_schema: 'pattern' at " + path + " must be a string");
  for (const char* other : {"format", "minLength", "maxLength"})
    if (s.contains(other)) return unsupported(other, path, "together with pattern");
  auto body = regex_to_grammar(s["pattern"].get<std::string>(), use("char"));
  if (!body) return unsupported("pattern", path, body.error());
  return add_rule("pattern", fmt::format(R"("\"" {} "\"")", *body));
}

}  // namespace

Result<std::string> json_schema_grammar(const nlohmann::ordered_json& schema) { return SchemaCompiler(schema).run(); }

Result<std::string> json_schema_grammar(std::string_view schema_text) {
  Json schema = Json::parse(schema_text, nullptr, false);
  if (schema.is_discarded()) return make_error("json_schema: the schema is not valid JSON");
  return json_schema_grammar(schema);
}

std::string json_object_grammar() {
  auto r = json_schema_grammar(Json{{"type", "object"}});
  assert(r.ok());
  return *r;
}

Result<Grammar> compile_json_schema(const nlohmann::ordered_json& schema) {
  auto text = json_schema_grammar(schema);
  if (!text) return text.take_error();
  auto g = Grammar::parse(*text);
  if (!g) return make_error("json_schema: internal grammar error: " + g.error() + "\n" + *text);
  return g;
}

}  // namespace pagoda::grammar
