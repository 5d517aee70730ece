// Test helpers for structured output: random instances of a JSON Schema written the way the
// schema grammar generates them (schema property order, bounded whitespace), and a small
// JSON Schema validator, written independently of the grammar compiler.
#pragma once
#include <nlohmann/json.hpp>

#include <random>
#include <cctype>
#include <string>

namespace pagoda::grammar::testing {

using Json = nlohmann::ordered_json;

class InstanceGen {
 public:
  InstanceGen(const Json& root, uint64_t seed) : root_(root), rng_(seed) {}

  // A random valid instance of `s`, as text.
  std::string gen(const Json& s, int depth = 0) {
    if (s.is_boolean() || s.empty()) return any_value(depth);
    if (s.contains("$ref")) return gen(resolve(s["$ref"].get<std::string>()), depth + 1);
    if (s.contains("const")) return s["const"].dump(-1, ' ', false);
    if (s.contains("enum")) return s["enum"][pick(s["enum"].size())].dump(-1, ' ', false);
    if (s.contains("anyOf")) return gen(s["anyOf"][pick(s["anyOf"].size())], depth);
    if (s.contains("oneOf")) return gen(s["oneOf"][pick(s["oneOf"].size())], depth);
    if (s.contains("allOf")) return gen(s["allOf"][0], depth);
    std::string type = s.contains("properties") ? "object" : s.contains("items") ? "array" : "";
    if (s.contains("type")) type = s["type"].is_array() ? s["type"][pick(s["type"].size())].get<std::string>()
                                                          : s["type"].get<std::string>();
    if (type == "object") return s.contains("properties") ? object(s, depth) : s.contains("additionalProperties") ? map(s, depth) : any_object(depth);
    if (type == "array") return array(s, depth);
    if (type == "string") return string(s);
    if (type == "integer") return integer();
    if (type == "number") return number();
    if (type == "boolean") return coin() ? "true" : "false";
    if (type == "null") return "null";
    return any_value(depth);
  }

  std::string ws() {
    switch (pick(4)) {
      case 0: case 1: return "";
      case 2: return " ";
      default: return std::string("\n") + std::string(pick(21), pick(2) ? ' ' : '\t');
    }
  }

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool coin() { return pick(2) == 0; }
  std::mt19937_64& rng() { return rng_; }

 private:
  const Json& resolve(const std::string& ref) {
    if (ref == "#") return root_;
    const auto slash = ref.rfind('/');
    return root_[ref.substr(2, slash - 2)][ref.substr(slash + 1)];
  }

  std::string object(const Json& s, int depth) {
    std::vector<std::string> required;
    if (s.contains("required")) required = s["required"].get<std::vector<std::string>>();
    std::string out = std::string("{") + ws();
    bool first = true;
    for (const auto& [k, sub] : s["properties"].items()) {
      const bool req = std::find(required.begin(), required.end(), k) != required.end();
      if (!req && (depth > 3 || coin())) continue;
      if (!first) out += std::string(",") + ws();
      first = false;
      out += Json(k).dump(-1, ' ', false) + ws() + std::string(":") + ws() + gen(sub, depth + 1) + ws();
    }
    return out + "}";
  }

  std::string map(const Json& s, int depth) {
    std::string out = std::string("{") + ws();
    const size_t n = depth > 3 ? 0 : pick(4);
    for (size_t i = 0; i < n; ++i)
      out += (i ? std::string(",") + ws() : "") + string(Json::object()) + ws() + std::string(":") + ws() + gen(s["additionalProperties"], depth + 1) + ws();
    return out + "}";
  }

  std::string array(const Json& s, int depth) {
    const size_t lo = s.value("minItems", 0), hi = s.value("maxItems", lo + 4);
    const size_t n = depth > 3 ? lo : lo + pick(std::min(hi, lo + 4) - lo + 1);
    const Json item = s.contains("items") ? s["items"] : Json(true);
    std::string out = std::string("[") + ws();
    for (size_t i = 0; i < n; ++i) out += (i ? std::string(",") + ws() : "") + gen(item, depth + 1) + ws();
    return out + "]";
  }

  std::string string(const Json& s) {
    if (s.contains("format")) return std::string("\"") + format(s["format"].get<std::string>()) + "\"";
    const size_t lo = s.value("minLength", 0), hi = s.value("maxLength", lo + 12);
    const size_t n = lo + pick(std::min(hi, lo + 12) - lo + 1);
    static const char* chars[] = {"a", "Z", "0", " ", "\\\"", "\\\\", "\\n", "\\u00e9", "\xC3\xA9", "\xE4\xB8\xAD",
                                  "\xF0\x9F\x98\x80", "\\/", "{", "}", ",", ":", "\\t", "x", "y"};
    std::string out = "\"";
    for (size_t i = 0; i < n; ++i) out += chars[pick(std::size(chars))];
    return out + "\"";
  }

  std::string digits(size_t n) {
    std::string d;
    for (size_t i = 0; i < n; ++i) d += char('0' + pick(10));
    return d;
  }
  std::string integer() {
    std::string out = coin() ? "-" : "";
    if (pick(4) == 0) return out + "0";
    return out + char('1' + pick(9)) + digits(pick(8));
  }
  std::string number() {
    std::string out = integer();
    if (coin()) out += std::string(".") + digits(1 + pick(6));
    if (pick(3) == 0) out += std::string(coin() ? "e" : "E") + (coin() ? "-" : coin() ? "+" : "") + digits(1 + pick(2));
    return out;
  }
  std::string two(int lo, int hi) {
    const int v = lo + int(pick(size_t(hi - lo + 1)));
    return std::string(1, char('0' + v / 10)) + char('0' + v % 10);
  }
  std::string format(const std::string& f) {
    if (f == "date") return digits(4) + std::string("-") + two(1, 12) + std::string("-") + two(1, 31);
    if (f == "time") {
      std::string t = two(0, 23) + std::string(":") + two(0, 59) + std::string(":") + two(0, 59);
      if (coin()) t += std::string(".") + digits(1 + pick(6));
      return t + (coin() ? "Z" : std::string(coin() ? "+" : "-") + two(0, 23) + std::string(":") + two(0, 59));
    }
    if (f == "date-time") return format("date") + std::string("T") + format("time");
    if (f == "uuid") {
      auto hex = [&](size_t n) {
        std::string h;
        for (size_t i = 0; i < n; ++i) h += "0123456789abcdefABCDEF"[pick(22)];
        return h;
      };
      return hex(8) + "-" + hex(4) + "-" + hex(4) + "-" + hex(4) + "-" + hex(12);
    }
    return "user.name+" + digits(2) + "@mail-" + digits(1) + ".example.org";  // email
  }

  std::string any_object(int depth) {
    std::string out = std::string("{") + ws();
    const size_t n = depth > 2 ? 0 : pick(4);
    for (size_t i = 0; i < n; ++i)
      out += (i ? std::string(",") + ws() : "") + string(Json::object()) + ws() + std::string(":") + ws() + any_value(depth + 1) + ws();
    return out + "}";
  }
  std::string any_value(int depth) {
    switch (depth > 2 ? 2 + pick(5) : pick(7)) {
      case 0: return any_object(depth + 1);
      case 1: return array(Json::object(), depth + 1);
      case 2: return string(Json::object());
      case 3: return number();
      case 4: return "true";
      case 5: return "false";
      default: return "null";
    }
  }

  const Json& root_;
  std::mt19937_64 rng_;
};

// Code points in a (valid UTF-8) string.
inline size_t code_points(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += (uint8_t(c) & 0xC0) != 0x80;
  return n;
}

// JSON Schema validation of the keywords structured output supports (extra properties are
// allowed when additionalProperties is absent, as the standard says).
class Validator {
 public:
  explicit Validator(const Json& root) : root_(root) {}

  bool valid(const Json& s, const Json& v) const {
    if (s.is_boolean()) return s.get<bool>();
    if (s.contains("$ref")) return valid(resolve(s["$ref"].get<std::string>()), v);
    if (s.contains("const") && s["const"] != v) return false;
    if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) return false;
    if (s.contains("anyOf") && std::none_of(s["anyOf"].begin(), s["anyOf"].end(), [&](const Json& a) { return valid(a, v); }))
      return false;
    if (s.contains("oneOf") && std::count_if(s["oneOf"].begin(), s["oneOf"].end(), [&](const Json& a) { return valid(a, v); }) != 1)
      return false;
    if (s.contains("allOf") && !std::all_of(s["allOf"].begin(), s["allOf"].end(), [&](const Json& a) { return valid(a, v); }))
      return false;
    if (s.contains("type")) {
      const Json& t = s["type"];
      const bool ok = t.is_array() ? std::any_of(t.begin(), t.end(), [&](const Json& x) { return has_type(x, v); }) : has_type(t, v);
      if (!ok) return false;
    }
    if (v.is_object()) return valid_object(s, v);
    if (v.is_array()) return valid_array(s, v);
    if (v.is_string()) return valid_string(s, v.get<std::string>());
    return true;
  }

 private:
  const Json& resolve(const std::string& ref) const {
    if (ref == "#") return root_;
    const auto slash = ref.rfind('/');
    return root_[ref.substr(2, slash - 2)][ref.substr(slash + 1)];
  }
  static bool has_type(const Json& t, const Json& v) {
    const std::string n = t.get<std::string>();
    if (n == "integer") return v.is_number_integer();
    if (n == "number") return v.is_number();
    if (n == "string") return v.is_string();
    if (n == "boolean") return v.is_boolean();
    if (n == "null") return v.is_null();
    if (n == "array") return v.is_array();
    return n == "object" && v.is_object();
  }
  bool valid_object(const Json& s, const Json& v) const {
    if (s.contains("required"))
      for (const auto& r : s["required"])
        if (!v.contains(r.get<std::string>())) return false;
    for (const auto& [k, x] : v.items()) {
      if (s.contains("properties") && s["properties"].contains(k)) {
        if (!valid(s["properties"][k], x)) return false;
      } else if (s.contains("additionalProperties") && !valid(s["additionalProperties"], x)) {
        return false;
      }
    }
    return true;
  }
  bool valid_array(const Json& s, const Json& v) const {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return false;
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return false;
    if (s.contains("items"))
      for (const auto& x : v)
        if (!valid(s["items"], x)) return false;
    return true;
  }
  static bool valid_string(const Json& s, const std::string& v) {
    if (s.contains("minLength") && code_points(v) < s["minLength"].get<size_t>()) return false;
    if (s.contains("maxLength") && code_points(v) > s["maxLength"].get<size_t>()) return false;
    if (!s.contains("format")) return true;
    const std::string f = s["format"].get<std::string>();
    if (f == "date") return is_date(v);
    if (f == "time") return is_time(v);
    if (f == "date-time") return v.size() > 11 && v[10] == 'T' && is_date(v.substr(0, 10)) && is_time(v.substr(11));
    if (f == "uuid") return is_uuid(v);
    if (f == "email") {
      const size_t at = v.find('@');
      return at != std::string::npos && at > 0 && v.find('@', at + 1) == std::string::npos &&
             v.find('.', at + 2) != std::string::npos && v.back() != '.';
    }
    return false;
  }

  // Hand-written format checks (std::regex trips GCC 12's -Wmaybe-uninitialized under ASan).
  static bool digits_at(const std::string& v, size_t at, size_t n) {
    if (at + n > v.size()) return false;
    for (size_t i = at; i < at + n; ++i)
      if (!std::isdigit(uint8_t(v[i]))) return false;
    return true;
  }
  static int num(const std::string& v, size_t at, size_t n) { return std::stoi(v.substr(at, n)); }
  static bool is_date(const std::string& v) {
    return v.size() == 10 && digits_at(v, 0, 4) && v[4] == '-' && digits_at(v, 5, 2) && v[7] == '-' &&
           digits_at(v, 8, 2) && num(v, 5, 2) >= 1 && num(v, 5, 2) <= 12 && num(v, 8, 2) >= 1 && num(v, 8, 2) <= 31;
  }
  static bool is_hh_mm(const std::string& v, size_t at) {
    return digits_at(v, at, 2) && v[at + 2] == ':' && digits_at(v, at + 3, 2) && num(v, at, 2) <= 23 && num(v, at + 3, 2) <= 59;
  }
  static bool is_time(const std::string& v) {
    if (v.size() < 9 || !is_hh_mm(v, 0) || v[5] != ':' || !digits_at(v, 6, 2) || num(v, 6, 2) > 59) return false;
    size_t i = 8;
    if (i < v.size() && v[i] == '.') {
      const size_t start = ++i;
      while (i < v.size() && std::isdigit(uint8_t(v[i]))) ++i;
      if (i == start) return false;
    }
    if (i < v.size() && v[i] == 'Z') return i + 1 == v.size();
    return i + 6 == v.size() && (v[i] == '+' || v[i] == '-') && is_hh_mm(v, i + 1);
  }
  static bool is_uuid(const std::string& v) {
    if (v.size() != 36) return false;
    for (size_t i = 0; i < v.size(); ++i) {
      const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
      if (dash ? v[i] != '-' : !std::isxdigit(uint8_t(v[i]))) return false;
    }
    return true;
  }

  const Json& root_;
};

}  // namespace pagoda::grammar::testing
