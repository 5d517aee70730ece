// Jinja2's built-in filters that chat templates use, with Jinja2's semantics (generators where
// Jinja2 returns one, Undefined handling, argument names) so outputs match byte for byte.
#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>

#include "core/chat/builtins_util.h"
#include "core/chat/interpreter.h"

namespace pagoda::jinja {
namespace {

using Filter = Value (*)(Interpreter&, const Value&, CallArgs&);

Value generator(ValueList items) { return Value::list(std::move(items), Value::Flavor::Generator); }

// `attribute` may be dotted ("function.name"); integer parts index lists.
Value attr_path(Interpreter& in, const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    cur = numeric ? in.get_item(cur, Value::integer(std::stoll(part))) : in.get_item(cur, Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value f_tojson(Interpreter&, const Value& v, CallArgs& a) {
  const Value indent = arg(a, 0, "indent", Value::none());
  const Value seps = arg(a, 1, "separators", Value::none());
  const bool sort_keys = arg(a, 2, "sort_keys", Value::boolean(false)).truthy();
  if (!indent.is_none() && (indent.kind() != Value::Kind::Int || indent.as_int() > 64))
    fail("tojson: indent must be an integer up to 64");
  std::string item_sep = indent.is_none() ? ", " : ",", key_sep = ": ";
  if (!seps.is_none()) {
    if (!seps.is_list() || seps.items().size() != 2) fail("tojson: separators must be a pair of strings");
    item_sep = seps.items()[0].to_str();
    key_sep = seps.items()[1].to_str();
  }
  return Value::string(v.to_json(indent.is_none() ? -1 : int(std::max<int64_t>(indent.as_int(), 0)), item_sep, key_sep, sort_keys));
}

Value f_length(Interpreter&, const Value& v, CallArgs&) {
  if (v.is_string()) return Value::integer(int64_t(utf8_length(v.str_ref())));
  if (v.is_list() && v.flavor() != Value::Flavor::Generator) return Value::integer(int64_t(v.items().size()));
  if (v.is_dict() && v.flavor() != Value::Flavor::Namespace) return Value::integer(int64_t(v.entries().entries.size()));
  if (v.is_undefined()) return Value::integer(0);
  fail("object of type '" + v.type_name() + "' has no len()");
}

Value f_string(Interpreter&, const Value& v, CallArgs&) { return Value::string(v.to_str()); }
Value f_safe(Interpreter&, const Value& v, CallArgs&) { return Value::string(v.to_str(), Value::Flavor::Markup); }

Value f_trim(Interpreter&, const Value& v, CallArgs& a) {
  return Value::string(py_strip(v.to_str(), arg(a, 0, "chars"), StripSide::Both));
}

Value f_default(Interpreter&, const Value& v, CallArgs& a) {
  const bool boolean = arg(a, 1, "boolean", Value::boolean(false)).truthy();
  if (v.is_undefined() || (boolean && !v.truthy())) return arg(a, 0, "default_value", Value::string(""));
  return v;
}

Value f_items(Interpreter&, const Value& v, CallArgs&) {
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) fail("can only get item pairs from a mapping");
  ValueList out;
  for (const auto& [k, x] : v.entries().entries) out.push_back(Value::list({Value::string(k), x}, Value::Flavor::Tuple));
  return Value::list(std::move(out));
}

Value f_join(Interpreter& in, const Value& v, CallArgs& a) {
  const std::string sep = arg_str(a, 0, "d", "");
  const Value attr = arg(a, 1, "attribute");
  std::string out;
  bool first = true;
  for (const auto& x : v.iterate()) {
    out += (first ? "" : sep) + (attr.is_undefined() ? x : attr_path(in, x, attr.to_str())).to_str();
    first = false;
  }
  return Value::string(out);
}

Value f_list(Interpreter&, const Value& v, CallArgs&) { return Value::list(v.iterate()); }
Value f_upper(Interpreter&, const Value& v, CallArgs&) { return Value::string(ascii_upper(v.to_str())); }
Value f_lower(Interpreter&, const Value& v, CallArgs&) { return Value::string(ascii_lower(v.to_str())); }
Value f_capitalize(Interpreter&, const Value& v, CallArgs&) { return Value::string(py_capitalize(v.to_str())); }

// Jinja's title capitalizes each chunk after '-', whitespace or an opening bracket.
Value f_title(Interpreter&, const Value& v, CallArgs&) {
  std::string s = v.to_str(), out;
  bool start = true;
  for (char c : s) {
    const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || std::isspace(static_cast<unsigned char>(c));
    out += char(start && !sep ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
    start = sep;
  }
  return Value::string(out);
}

Value f_replace(Interpreter&, const Value& v, CallArgs& a) {
  const Value count = arg(a, 2, "count", Value::none());
  return Value::string(py_replace(v.to_str(), arg_str(a, 0, "old", ""), arg_str(a, 1, "new", ""), count.is_none() ? -1 : count.as_int()));
}

// selectattr / rejectattr / select / reject share one loop: test each item (or its attribute).
Value select_impl(Interpreter& in, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  const size_t first_test_arg = by_attr ? 1 : 0;
  const std::string attr = by_attr ? arg_str(a, 0, "attribute", "") : "";
  const Value test = first_test_arg < a.pos.size() ? a.pos[first_test_arg] : Value();
  CallArgs targs;
  for (size_t i = first_test_arg + 1; i < a.pos.size(); ++i) targs.pos.push_back(a.pos[i]);
  ValueList out;
  if (!v.truthy()) return generator({});
  for (const auto& x : v.iterate()) {
    const Value subject = by_attr ? attr_path(in, x, attr) : x;
    const bool pass = test.is_undefined() ? subject.truthy() : apply_test(in, test.to_str(), subject, targs);
    if (pass == keep) out.push_back(x);
  }
  return generator(std::move(out));
}
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, false); }
Value f_select(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, true); }
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, false); }

Value f_map(Interpreter& in, const Value& v, CallArgs& a) {
  ValueList out;
  if (!v.truthy()) return generator({});
  const Value attr = arg(a, size_t(-1), "attribute");
  if (!attr.is_undefined()) {
    const Value def = arg(a, size_t(-1), "default");
    for (const auto& x : v.iterate()) {
      Value r = attr_path(in, x, attr.to_str());
      out.push_back(r.is_undefined() && !def.is_undefined() ? def : r);
    }
    return generator(std::move(out));
  }
  if (a.pos.empty()) fail("map requires a filter name or attribute=");
  const std::string filter = a.pos[0].to_str();
  CallArgs fargs;
  fargs.pos.assign(a.pos.begin() + 1, a.pos.end());
  fargs.kw = a.kw;
  for (const auto& x : v.iterate()) {
    CallArgs copy = fargs;
    out.push_back(apply_filter(in, filter, x, copy));
  }
  return generator(std::move(out));
}

std::string sort_key(const Value& v, bool case_sensitive) {
  return v.is_string() && !case_sensitive ? ascii_lower(v.str_ref()) : v.str_ref();
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& a) {
  const bool cs = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attr = arg(a, 1, "attribute");
  ValueList out, seen;
  for (const auto& x : v.iterate()) {
    Value key = attr.is_undefined() ? x : attr_path(in, x, attr.to_str());
    if (key.is_string() && !cs) key = Value::string(ascii_lower(key.str_ref()));
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return values_equal(s, key); })) {
      seen.push_back(key);
      out.push_back(x);
    }
  }
  return generator(std::move(out));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& a) {
  const bool reverse = arg(a, 0, "reverse", Value::boolean(false)).truthy();
  const bool cs = arg(a, 1, "case_sensitive", Value::boolean(false)).truthy();
  const Value attr = arg(a, 2, "attribute");
  ValueList items = v.iterate();
  auto key = [&](const Value& x) {
    Value k = attr.is_undefined() ? x : attr_path(in, x, attr.to_str());
    return k.is_string() && !cs ? Value::string(sort_key(k, cs)) : k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const int c = compare_values(key(x), key(y));
    return reverse ? c > 0 : c < 0;
  });
  return Value::list(std::move(items));
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& a) {
  const bool cs = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const std::string by = arg_str(a, 1, "by", "key");
  const bool reverse = arg(a, 2, "reverse", Value::boolean(false)).truthy();
  if (!v.is_dict()) fail("dictsort needs a mapping, got " + v.type_name());
  ValueList items;
  for (const auto& [k, x] : v.entries().entries) items.push_back(Value::list({Value::string(k), x}, Value::Flavor::Tuple));
  const size_t idx = by == "value" ? 1 : 0;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value kx = x.items()[idx], ky = y.items()[idx];
    if (!cs && kx.is_string()) kx = Value::string(ascii_lower(kx.str_ref()));
    if (!cs && ky.is_string()) ky = Value::string(ascii_lower(ky.str_ref()));
    const int c = compare_values(kx, ky);
    return reverse ? c > 0 : c < 0;
  });
  return Value::list(std::move(items));
}

Value f_first(Interpreter&, const Value& v, CallArgs&) {
  const ValueList items = v.iterate();
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter&, const Value& v, CallArgs&) {
  if (v.is_list() && v.flavor() == Value::Flavor::Generator) fail("'generator' object is not reversible");
  const ValueList items = v.iterate();
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_reverse(Interpreter&, const Value& v, CallArgs&) {
  if (v.is_string()) {
    auto chars = utf8_chars(v.str_ref());
    std::string out;
    for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
    return Value::string(out);
  }
  ValueList items = v.iterate();
  std::reverse(items.begin(), items.end());
  return generator(std::move(items));
}

Value f_int(Interpreter&, const Value& v, CallArgs& a) {
  const Value def = arg(a, 0, "default", Value::integer(0));
  if (v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Bool) return Value::integer(v.as_int());
  if (v.kind() == Value::Kind::Float) return std::isfinite(v.as_double()) ? Value::integer(v.as_int()) : def;
  if (!v.is_string()) return def;
  const std::string s = py_strip(v.str_ref(), Value(), StripSide::Both);
  try {
    size_t used = 0;
    const long long i = std::stoll(s, &used, int(arg(a, 1, "base", Value::integer(10)).as_int()));
    if (used == s.size()) return Value::integer(i);
    const double d = std::stod(s, &used);
    if (used == s.size() && std::isfinite(d)) return Value::integer(Value::number(d).as_int());
  } catch (...) {
  }
  return def;
}

Value f_float(Interpreter&, const Value& v, CallArgs& a) {
  const Value def = arg(a, 0, "default", Value::number(0.0));
  if (v.is_number()) return Value::number(v.as_double());
  if (!v.is_string()) return def;
  const std::string s = py_strip(v.str_ref(), Value(), StripSide::Both);
  try {
    size_t used = 0;
    const double d = std::stod(s, &used);
    if (used == s.size()) return Value::number(d);
  } catch (...) {
  }
  return def;
}

Value f_round(Interpreter&, const Value& v, CallArgs& a) {
  const int64_t precision = arg(a, 0, "precision", Value::integer(0)).as_int();
  const std::string method = arg_str(a, 1, "method", "common");
  if (!v.is_number()) fail("round needs a number, got " + v.type_name());
  const double m = std::pow(10.0, double(precision));
  const double x = v.as_double() * m;
  const double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::nearbyint(x);
  return Value::number(r / m);
}

Value f_abs(Interpreter&, const Value& v, CallArgs&) {
  if (v.kind() == Value::Kind::Float) return Value::number(std::fabs(v.as_double()));
  if (v.is_number()) {
    if (v.as_int() == INT64_MIN) fail("integer overflow");
    return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  fail("bad operand type for abs(): '" + v.type_name() + "'");
}

// Jinja's indent: every line but the first (unless first=True) gains the prefix; blank lines
// only with blank=True.
Value f_indent(Interpreter&, const Value& v, CallArgs& a) {
  const Value width = arg(a, 0, "width", Value::integer(4));
  const bool first = arg(a, 1, "first", Value::boolean(false)).truthy();
  const bool blank = arg(a, 2, "blank", Value::boolean(false)).truthy();
  if (!width.is_string() && width.as_int() > 1024) fail("indent: width over 1024");
  const std::string pad = width.is_string() ? width.str_ref() : std::string(size_t(std::max<int64_t>(width.as_int(), 0)), ' ');
  std::vector<std::string> lines = py_split(v.to_str() + "\n", Value::string("\n"), -1);
  lines.pop_back();  // the text ended with the "\n" appended above
  charge(lines.size() * pad.size());  // before padding every line
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    const bool indent_it = (i > 0 || first) && (blank || !lines[i].empty());
    out += (indent_it ? pad : "") + lines[i];
  }
  return Value::string(out);
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs&) {
  int64_t n = 0;
  bool in_word = false;
  for (unsigned char c : v.to_str()) {
    const bool w = std::isalnum(c) || c == '_' || c >= 0x80;
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) fail("integer overflow");
  return r;
}

Value f_sum(Interpreter& in, const Value& v, CallArgs& a) {
  const Value attr = arg(a, 0, "attribute");
  Value total = arg(a, 1, "start", Value::integer(0));
  for (const auto& x : v.iterate()) {
    const Value y = attr.is_undefined() ? x : attr_path(in, x, attr.to_str());
    if (!y.is_number() || !total.is_number()) fail("sum: unsupported operand type '" + y.type_name() + "'");
    total = total.kind() == Value::Kind::Float || y.kind() == Value::Kind::Float
                ? Value::number(total.as_double() + y.as_double())
                : Value::integer(checked_add(total.as_int(), y.as_int()));
  }
  return total;
}

Value minmax(const Value& v, bool want_max) {
  const ValueList items = v.iterate();
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  Value best = items[0];
  for (const auto& x : items)
    if ((compare_values(x, best) > 0) == want_max && !values_equal(x, best)) best = x;
  return best;
}
Value f_min(Interpreter&, const Value& v, CallArgs&) { return minmax(v, false); }
Value f_max(Interpreter&, const Value& v, CallArgs&) { return minmax(v, true); }

Value f_escape(Interpreter&, const Value& v, CallArgs&) {
  if (v.flavor() == Value::Flavor::Markup) return v;
  return Value::string(html_escape(v.to_str()), Value::Flavor::Markup);
}

Value f_format(Interpreter&, const Value& v, CallArgs& a) {
  return Value::string(python_percent_format(v.to_str(), Value::list(a.pos, Value::Flavor::Tuple)));
}

Value f_attr(Interpreter& in, const Value& v, CallArgs& a) { return in.get_attr(v, arg_str(a, 0, "name", "")); }

Value f_center(Interpreter&, const Value& v, CallArgs& a) {
  const std::string s = v.to_str();
  const int64_t width = arg(a, 0, "width", Value::integer(80)).as_int();
  const int64_t len = int64_t(utf8_length(s));
  if (width <= len) return Value::string(s);
  if (width > 1'000'000) fail("center: width over 1000000");
  const int64_t total = width - len, left = total / 2 + (total & width & 1);
  return Value::string(std::string(size_t(left), ' ') + s + std::string(size_t(total - left), ' '));
}

struct FilterEntry {
  const char* name;
  Filter fn;
};

constexpr FilterEntry kFilters[] = {
    {"tojson", f_tojson},       {"length", f_length},         {"count", f_length},       {"string", f_string},
    {"safe", f_safe},           {"trim", f_trim},             {"default", f_default},    {"d", f_default},
    {"items", f_items},         {"join", f_join},             {"list", f_list},          {"upper", f_upper},
    {"lower", f_lower},         {"capitalize", f_capitalize}, {"title", f_title},        {"replace", f_replace},
    {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr}, {"select", f_select},  {"reject", f_reject},
    {"map", f_map},             {"unique", f_unique},         {"sort", f_sort},          {"dictsort", f_dictsort},
    {"first", f_first},         {"last", f_last},             {"reverse", f_reverse},    {"int", f_int},
    {"float", f_float},         {"round", f_round},           {"abs", f_abs},            {"indent", f_indent},
    {"wordcount", f_wordcount}, {"sum", f_sum},               {"min", f_min},            {"max", f_max},
    {"escape", f_escape},       {"e", f_escape},              {"forceescape", f_escape}, {"format", f_format},
    {"attr", f_attr},           {"center", f_center},
};

}  // namespace

Value apply_filter(Interpreter& in, const std::string& name, const Value& subject, CallArgs& args) {
  for (const auto& f : kFilters)
    if (name == f.name) {
      in.step();
      return f.fn(in, subject, args);
    }
  fail("no filter named '" + name + "'");
}

}  // namespace pagoda::jinja
