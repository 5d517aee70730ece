// Helpers shared by the built-in filters, tests and methods: argument access by position or
// keyword, and the Python string operations several of them need.
#pragma once
#include <string>
#include <vector>

#include "core/chat/value.h"

namespace pagoda::jinja {

// Argument `i` (positional) or `name` (keyword), else `def`.
inline Value arg(const CallArgs& a, size_t i, const char* name, Value def = Value()) {
  if (i < a.pos.size()) return a.pos[i];
  for (const auto& [k, v] : a.kw)
    if (k == name) return v;
  return def;
}

inline std::string arg_str(const CallArgs& a, size_t i, const char* name, const std::string& def) {
  const Value v = arg(a, i, name);
  return v.is_undefined() || v.is_none() ? def : v.to_str();
}

enum class StripSide : uint8_t { Both, Left, Right };
std::string py_strip(const std::string& s, const Value& chars, StripSide side);
std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit);
std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);
std::string ascii_upper(std::string s);
std::string ascii_lower(std::string s);
std::string py_title(const std::string& s);
std::string py_capitalize(const std::string& s);
std::string python_percent_format(const std::string& fmt, const Value& args);
std::string python_str_format(const std::string& fmt, const CallArgs& args);

}  // namespace pagoda::jinja
