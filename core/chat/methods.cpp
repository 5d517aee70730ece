// Methods of str, dict and list as templates call them (`s.strip()`, `d.get(k)`), Jinja tests
// (`x is string`), the global functions, and the Python string operations behind them.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>

#include "core/chat/builtins_util.h"
#include "core/chat/interpreter.h"

namespace pagoda::jinja {
namespace {

bool py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

std::string py_strip(const std::string& s, const Value& chars, StripSide side) {
  std::vector<std::string> cs = utf8_chars(s);
  std::vector<std::string> set;
  const bool ws = chars.is_undefined() || chars.is_none();
  if (!ws) set = utf8_chars(chars.to_str());
  auto strip_me = [&](const std::string& c) {
    return ws ? (c.size() == 1 && py_space(c[0])) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t lo = 0, hi = cs.size();
  if (side != StripSide::Right)
    while (lo < hi && strip_me(cs[lo])) ++lo;
  if (side != StripSide::Left)
    while (hi > lo && strip_me(cs[hi - 1])) --hi;
  std::string out;
  for (size_t i = lo; i < hi; ++i) out += cs[i];
  return out;
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_undefined() || sep.is_none()) {  // runs of whitespace, ends ignored
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && py_space(s[i])) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
        std::string rest = s.substr(i);
        while (!rest.empty() && py_space(rest.back())) rest.pop_back();
        out.push_back(rest);
        break;
      }
      size_t j = i;
      while (j < s.size() && !py_space(s[j])) ++j;
      out.push_back(s.substr(i, j - i));
      i = j;
    }
    return out;
  }
  const std::string d = sep.to_str();
  if (d.empty()) fail("empty separator");
  size_t start = 0;
  for (size_t p; (maxsplit < 0 || int64_t(out.size()) < maxsplit) && (p = s.find(d, start)) != std::string::npos;) {
    out.push_back(s.substr(start, p - start));
    start = p + d.size();
  }
  out.push_back(s.substr(start));
  return out;
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  size_t start = 0;
  int64_t done = 0;
  if (from.empty()) {  // Python inserts `to` between every character
    for (const auto& c : utf8_chars(s)) {
      if (count < 0 || done < count) { charge(to.size()); out += to; ++done; }
      out += c;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  for (size_t p; (count < 0 || done < count) && (p = s.find(from, start)) != std::string::npos; ++done) {
    charge(p - start + to.size());  // as it grows: each `to` may be as long as the budget allows
    out += s.substr(start, p - start) + to;
    start = p + from.size();
  }
  return out + s.substr(start);
}

std::string ascii_upper(std::string s) {
  for (auto& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (auto& c : out) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    c = char(alpha && !prev_cased ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
    prev_cased = alpha;
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out = ascii_lower(s);
  if (!out.empty()) out[0] = char(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string python_percent_format(const std::string& fmt, const Value& args) {
  ValueList vals = args.is_list() && args.flavor() == Value::Flavor::Tuple ? args.items() : ValueList{args};
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') { out += fmt[i]; continue; }
    if (++i >= fmt.size()) fail("incomplete format");
    if (fmt[i] == '%') { out += '%'; continue; }
    int precision = -1;
    if (fmt[i] == '.') {
      precision = 0;
      while (++i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) precision = precision * 10 + (fmt[i] - '0');
    }
    if (i >= fmt.size()) fail("incomplete format");
    if (next >= vals.size()) fail("not enough arguments for format string");
    const Value& v = vals[next++];
    const char conv = fmt[i];
    if (conv == 's') out += v.to_str();
    else if (conv == 'r') out += v.repr();
    else if (conv == 'd' || conv == 'i') {
      if (!v.is_number()) fail("%d format: a real number is required, not " + v.type_name());
      out += std::to_string(v.as_int());
    } else if (conv == 'f') {
      if (!v.is_number()) fail("%f format: a real number is required, not " + v.type_name());
      char b[64];
      std::snprintf(b, sizeof b, "%.*f", precision < 0 ? 6 : precision, v.as_double());
      out += b;
    } else {
      fail(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (next < vals.size() && !(vals.size() == 1 && next == 0))
    fail("not all arguments converted during string formatting");
  return out;
}

std::string python_str_format(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if ((c == '{' || c == '}') && i + 1 < fmt.size() && fmt[i + 1] == c) { out += c; ++i; continue; }
    if (c != '{') { out += c; continue; }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) fail("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    if (auto colon = field.find(':'); colon != std::string::npos) field.resize(colon);  // specs ignored
    Value v;
    if (field.empty()) v = arg(args, auto_index++, "");
    else if (std::isdigit(static_cast<unsigned char>(field[0]))) v = arg(args, size_t(std::stoul(field)), "");
    else v = arg(args, size_t(-1), field.c_str());
    if (v.is_undefined()) fail("format: no argument for field '{" + field + "}'");
    const std::string text = v.to_str();
    charge(text.size());  // a field may name the same argument any number of times
    out += text;
    i = close;
  }
  return out;
}

namespace {

Value method(const std::string& name, std::function<Value(CallArgs&)> fn) {
  return Value::function(name, [fn = std::move(fn)](Interpreter&, CallArgs& a) { return fn(a); });
}

Value str_list(const std::vector<std::string>& parts) {
  ValueList out;
  for (const auto& p : parts) out.push_back(Value::string(p));
  return Value::list(std::move(out));
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  const ValueList options = affix.is_list() ? affix.items() : ValueList{affix};
  for (const auto& o : options) {
    if (!o.is_string()) fail(std::string(prefix ? "startswith" : "endswith") + " first arg must be str or a tuple of str");
    const std::string& x = o.str_ref();
    if (x.size() <= s.size() && (prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0))
      return true;
  }
  return false;
}

Value string_method(const std::string& s, const std::string& name) {
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const StripSide side = name == "strip" ? StripSide::Both : name == "lstrip" ? StripSide::Left : StripSide::Right;
    return method(name, [s, side](CallArgs& a) { return Value::string(py_strip(s, arg(a, 0, "chars"), side)); });
  }
  if (name == "startswith" || name == "endswith")
    return method(name, [s, name](CallArgs& a) { return Value::boolean(affix_match(s, arg(a, 0, "prefix"), name[0] == 's')); });
  if (name == "split")
    return method(name, [s](CallArgs& a) {
      const Value m = arg(a, 1, "maxsplit", Value::integer(-1));
      return str_list(py_split(s, arg(a, 0, "sep"), m.as_int()));
    });
  if (name == "splitlines")
    return method(name, [s](CallArgs&) {
      std::vector<std::string> lines = py_split(s, Value::string("\n"), -1);
      if (!lines.empty() && lines.back().empty()) lines.pop_back();
      for (auto& l : lines)
        if (!l.empty() && l.back() == '\r') l.pop_back();
      return str_list(lines);
    });
  if (name == "replace")
    return method(name, [s](CallArgs& a) {
      return Value::string(py_replace(s, arg_str(a, 0, "old", ""), arg_str(a, 1, "new", ""), arg(a, 2, "count", Value::integer(-1)).as_int()));
    });
  if (name == "upper") return method(name, [s](CallArgs&) { return Value::string(ascii_upper(s)); });
  if (name == "lower") return method(name, [s](CallArgs&) { return Value::string(ascii_lower(s)); });
  if (name == "title") return method(name, [s](CallArgs&) { return Value::string(py_title(s)); });
  if (name == "capitalize") return method(name, [s](CallArgs&) { return Value::string(py_capitalize(s)); });
  if (name == "find" || name == "rfind" || name == "index" || name == "count")
    return method(name, [s, name](CallArgs& a) {
      const std::string sub = arg_str(a, 0, "sub", "");
      if (name == "count") {
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos && !sub.empty(); p = s.find(sub, p + sub.size())) ++n;
        return Value::integer(sub.empty() ? int64_t(utf8_length(s)) + 1 : n);
      }
      const size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos && name == "index") fail("substring not found");
      return Value::integer(p == std::string::npos ? -1 : int64_t(utf8_length(s.substr(0, p))));
    });
  if (name == "join")
    return method(name, [s](CallArgs& a) {
      std::string out;
      bool first = true;
      for (const auto& v : arg(a, 0, "iterable").iterate()) {
        if (!v.is_string()) fail("sequence item: expected str instance, " + v.type_name() + " found");
        out += (first ? "" : s) + v.str_ref();
        first = false;
      }
      return Value::string(out);
    });
  if (name == "format") return method(name, [s](CallArgs& a) { return Value::string(python_str_format(s, a)); });
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" || name == "islower" ||
      name == "isupper")
    return method(name, [s, name](CallArgs&) {
      bool ok = !s.empty();
      for (unsigned char c : s) {
        const bool r = name == "isdigit" ? std::isdigit(c) : name == "isalpha" ? std::isalpha(c)
                       : name == "isspace" ? std::isspace(c) : name == "isalnum" ? std::isalnum(c)
                       : name == "islower" ? !std::isupper(c) : !std::islower(c);
        ok = ok && r;
      }
      return Value::boolean(ok);
    });
  return Value();
}

Value unsafe(const std::string& type, const std::string& name) {
  return method(name, [type, name](CallArgs&) -> Value {
    fail("access to attribute '" + name + "' of '" + type + "' object is unsafe.");
  });
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "get")
    return method(name, [d](CallArgs& a) {
      const Value key = arg(a, 0, "key");
      const Value* v = key.is_string() ? d.entries().find(key.str_ref()) : nullptr;
      return v ? *v : arg(a, 1, "default", Value::none());
    });
  if (name == "items" || name == "keys" || name == "values")
    return method(name, [d, name](CallArgs&) {
      ValueList out;
      for (const auto& [k, v] : d.entries().entries) {
        if (name == "items") out.push_back(Value::list({Value::string(k), v}, Value::Flavor::Tuple));
        else out.push_back(name == "keys" ? Value::string(k) : v);
      }
      return Value::list(std::move(out));
    });
  if (name == "update" || name == "pop" || name == "popitem" || name == "setdefault" || name == "clear")
    return unsafe("dict", name);
  return Value();
}

Value list_method(const Value& l, const std::string& name) {
  if (name == "index" || name == "count")
    return method(name, [l, name](CallArgs& a) {
      const Value x = arg(a, 0, "value");
      int64_t n = 0;
      for (size_t i = 0; i < l.items().size(); ++i) {
        if (!values_equal(l.items()[i], x)) continue;
        if (name == "index") return Value::integer(int64_t(i));
        ++n;
      }
      if (name == "index") fail(x.repr() + " is not in list");
      return Value::integer(n);
    });
  if (name == "append" || name == "pop" || name == "extend" || name == "insert" || name == "remove" ||
      name == "sort" || name == "reverse" || name == "clear")
    return unsafe(l.type_name(), name);
  return Value();
}

}  // namespace

Value bound_method(const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj.str_ref(), name);
  if (obj.is_dict() && obj.flavor() != Value::Flavor::Namespace) return dict_method(obj, name);
  if (obj.is_list() && obj.flavor() != Value::Flavor::Generator) return list_method(obj, name);
  return Value();
}

bool apply_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& a) {
  using K = Value::Kind;
  const Value x = arg(a, 0, "other");
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict() && v.flavor() != Value::Flavor::Namespace;
  if (name == "iterable")
    return v.is_list() || v.is_string() || v.is_undefined() || (v.is_dict() && v.flavor() != Value::Flavor::Namespace);
  if (name == "sequence")
    return (v.is_list() && v.flavor() != Value::Flavor::Generator) || v.is_string() || v.is_undefined() ||
           (v.is_dict() && v.flavor() != Value::Flavor::Namespace);
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind() == K::Int;
  if (name == "float") return v.kind() == K::Float;
  if (name == "boolean") return v.kind() == K::Bool;
  if (name == "true") return v.kind() == K::Bool && v.as_bool();
  if (name == "false") return v.kind() == K::Bool && !v.as_bool();
  if (name == "callable") return v.is_callable();
  if (name == "lower" || name == "upper")
    return v.is_string() && (name == "lower" ? ascii_lower(v.str_ref()) : ascii_upper(v.str_ref())) == v.str_ref();
  if (name == "even" || name == "odd" || name == "divisibleby") {
    if (!v.is_number()) fail("test '" + name + "' needs a number, got " + v.type_name());
    if (name == "divisibleby") {
      if (!x.is_number() || x.as_int() == 0) fail("divisibleby needs a non-zero number");
      return v.as_int() % x.as_int() == 0;
    }
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "eq" || name == "equalto" || name == "==") return values_equal(v, x);
  if (name == "ne" || name == "!=") return !values_equal(v, x);
  if (name == "lt" || name == "lessthan" || name == "<") return compare_values(v, x) < 0;
  if (name == "le" || name == "<=") return compare_values(v, x) <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare_values(v, x) > 0;
  if (name == "ge" || name == ">=") return compare_values(v, x) >= 0;
  if (name == "in") {
    const Value seq = arg(a, 0, "seq");
    if (seq.is_string()) return v.is_string() && seq.str_ref().find(v.str_ref()) != std::string::npos;
    if (seq.is_dict()) return v.is_string() && seq.entries().find(v.str_ref());
    for (const auto& e : seq.iterate())
      if (values_equal(e, v)) return true;
    return false;
  }
  if (name == "sameas") {
    if (v.kind() != x.kind()) return false;
    if (v.is_none() || v.kind() == K::Bool) return v.is_none() || v.as_bool() == x.as_bool();
    return values_equal(v, x) && (v.is_number() || v.is_string());
  }
  (void)in;
  fail("no test named '" + name + "'");
}

namespace {

Value range_fn(Interpreter&, CallArgs& a) {
  int64_t start = 0, stop, step = 1;
  if (a.pos.empty() || a.pos.size() > 3) fail("range expected 1 to 3 arguments");
  for (const auto& v : a.pos)
    if (v.kind() != Value::Kind::Int && v.kind() != Value::Kind::Bool) fail("range() integer argument expected, got " + v.type_name());
  if (a.pos.size() == 1) {
    stop = a.pos[0].as_int();
  } else {
    start = a.pos[0].as_int();
    stop = a.pos[1].as_int();
    if (a.pos.size() == 3) step = a.pos[2].as_int();
  }
  if (step == 0) fail("range() arg 3 must not be zero");
  ValueList out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (out.size() >= 1'000'000) fail("range too big (more than 1000000 items)");
    out.push_back(Value::integer(i));
  }
  return Value::list(std::move(out));
}

Value namespace_fn(Interpreter&, CallArgs& a) {
  ValueDict d;
  for (const auto& p : a.pos) {
    if (!p.is_dict()) fail("namespace() takes a mapping as positional argument");
    for (const auto& [k, v] : p.entries().entries) d.set(k, v);
  }
  for (const auto& [k, v] : a.kw) d.set(k, v);
  return Value::dict(std::move(d), Value::Flavor::Namespace);
}

Value dict_fn(Interpreter&, CallArgs& a) {
  ValueDict d;
  for (const auto& p : a.pos) {
    if (p.is_dict()) {
      for (const auto& [k, v] : p.entries().entries) d.set(k, v);
    } else {
      for (const auto& kv : p.iterate()) {
        const ValueList pair = kv.iterate();
        if (pair.size() != 2) fail("dict() sequence elements must be pairs");
        d.set(pair[0].to_str(), pair[1]);
      }
    }
  }
  for (const auto& [k, v] : a.kw) d.set(k, v);
  return Value::dict(std::move(d));
}

}  // namespace

void install_globals(std::unordered_map<std::string, Value>& g) {
  g["range"] = Value::function("range", range_fn);
  g["namespace"] = Value::function("namespace", namespace_fn);
  g["dict"] = Value::function("dict", dict_fn);
  g["raise_exception"] = Value::function("raise_exception", [](Interpreter&, CallArgs& a) -> Value {
    fail(arg_str(a, 0, "message", "raise_exception called"));
  });
  g["strftime_now"] = Value::function("strftime_now", [](Interpreter& in, CallArgs& a) {
    const std::string fmt = arg_str(a, 0, "format", "");
    char buf[256];
    const size_t n = fmt.empty() ? 0 : std::strftime(buf, sizeof buf, fmt.c_str(), &in.now());
    return Value::string(std::string(buf, n));
  });
}

}  // namespace pagoda::jinja
