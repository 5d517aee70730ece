#include "core/chat/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <unordered_set>

namespace pagoda::jinja {

void fail(std::string message) { throw TemplateError{std::move(message)}; }

namespace {
thread_local WorkBudget* g_budget = nullptr;
thread_local int g_nest = 0;
}  // namespace

size_t elements_bytes(const ValueList& items) {
  size_t n = 0;
  for (const auto& v : items) n += v.copy_bytes();
  return n;
}

WorkBudget::WorkBudget(int64_t bytes) : limit_(bytes), left_(bytes), outer_(g_budget) { g_budget = this; }
WorkBudget::~WorkBudget() { g_budget = outer_; }

void charge(size_t bytes) {
  WorkBudget* b = g_budget;
  if (!b) return;
  b->left_ -= int64_t(std::min<size_t>(bytes, size_t(INT64_MAX / 2)));
  if (b->left_ < 0)
    fail("template built more than " + std::to_string(b->limit_ >> 20) + " MiB of values (a string or list that "
         "keeps doubling?)");
}

NestGuard::NestGuard() {
  if (++g_nest > kMaxDepth) {
    g_nest = 0;  // the throw unwinds every guard below; they must not count it down below zero
    fail("value nested more than " + std::to_string(kMaxDepth) + " levels deep");
  }
}
NestGuard::~NestGuard() {
  if (g_nest > 0) --g_nest;
}

void Value::release_children() noexcept {
  // Whether v is the last owner of a list or dict, which its destruction would then recurse into.
  auto owns = [](const Value& v) { return (v.list_ && v.list_.use_count() == 1) || (v.dict_ && v.dict_.use_count() == 1); };
  bool nested = false;  // a flat list or dict is destroyed as usual, one level deep
  if (list_ && list_.use_count() == 1)
    for (const auto& e : *list_) nested = nested || owns(e);
  if (dict_ && dict_.use_count() == 1)
    for (const auto& [k, e] : dict_->entries) nested = nested || owns(e);
  if (!nested) return;
  // Take the tree apart level by level: each element's own list or dict is moved out before the
  // element is destroyed, so no destruction recurses. (Without memory for the work lists, what is
  // left is destroyed the usual way.)
  std::vector<std::shared_ptr<ValueList>> lists;
  std::vector<std::shared_ptr<ValueDict>> dicts;
  auto take = [&](Value& v) {
    if (v.list_ && v.list_.use_count() == 1) lists.push_back(std::move(v.list_));
    if (v.dict_ && v.dict_.use_count() == 1) dicts.push_back(std::move(v.dict_));
  };
  try {
    take(*this);
    while (!lists.empty() || !dicts.empty()) {
      if (!lists.empty()) {
        std::shared_ptr<ValueList> l = std::move(lists.back());
        lists.pop_back();
        for (auto& e : *l) take(e);
      } else {
        std::shared_ptr<ValueDict> d = std::move(dicts.back());
        dicts.pop_back();
        for (auto& [k, e] : d->entries) take(e);
      }
    }
  } catch (...) {
  }
}

const Value* ValueDict::find(const std::string& key) const {
  for (const auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}

void ValueDict::set(const std::string& key, Value v) {
  for (auto& [k, old] : entries)
    if (k == key) { old = std::move(v); return; }
  entries.emplace_back(key, std::move(v));
}

Value Value::list(ValueList items, Flavor fl) {
  charge(elements_bytes(items));
  Value v;
  v.kind_ = Kind::List;
  v.flavor_ = fl;
  v.list_ = std::make_shared<ValueList>(std::move(items));
  return v;
}

Value Value::dict(ValueDict d, Flavor fl) {
  for (const auto& [k, e] : d.entries) charge(k.size() + e.copy_bytes());
  Value v;
  v.kind_ = Kind::Dict;
  v.flavor_ = fl;
  v.dict_ = std::make_shared<ValueDict>(std::move(d));
  return v;
}

Value Value::function(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn) {
  Value v;
  v.kind_ = Kind::Function;
  v.fn_ = std::make_shared<Function>(Function{std::move(name), std::move(fn)});
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  const NestGuard nest;  // variables nested past the bound are an error, not a stack overflow
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: return integer(int64_t(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float: return number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      ValueDict d;
      for (const auto& [k, e] : j.items()) d.entries.emplace_back(k, from_json(e));
      return dict(std::move(d));
    }
    default: return none();
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool:
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0;
    case Kind::String: return !s_.empty();
    case Kind::List: return flavor_ == Flavor::Generator || !list_->empty();
    case Kind::Dict: return flavor_ == Flavor::Namespace || !dict_->entries.empty();
    case Kind::Function: return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List:
      return flavor_ == Flavor::Tuple ? "tuple" : flavor_ == Flavor::Generator ? "generator" : "list";
    case Kind::Dict: return flavor_ == Flavor::Namespace ? "Namespace" : "dict";
    case Kind::Function: return "function";
  }
  return "object";
}

std::string python_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp = std::stoi(sci.substr(e + 1));
  std::string sign;
  if (mant[0] == '-') { sign = "-"; mant.erase(0, 1); }
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  // Python switches to exponent notation outside 1e-4 <= |d| < 1e16.
  if (exp < -4 || exp >= 16) {
    std::string m = digits.substr(0, 1);
    if (digits.size() > 1) m += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    return sign + m + eb;
  }
  std::string out;
  if (exp < 0) {
    out = "0." + std::string(size_t(-exp - 1), '0') + digits;
  } else if (size_t(exp) + 1 >= digits.size()) {
    out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
  }
  return sign + out;
}

namespace {

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const char q = has_single && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == q || c == '\\') { out += '\\'; out += char(c); }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += char(c);
    }
  }
  return out + q;
}

}  // namespace

std::string Value::repr() const {
  const NestGuard nest;
  charge(copy_bytes());
  switch (kind_) {
    case Kind::String: return string_repr(s_);
    case Kind::Undefined: return "Undefined";
    case Kind::Function: return "<function " + fn_->name + ">";
    case Kind::List: {
      if (flavor_ == Flavor::Generator) return "<generator object>";
      const bool tuple = flavor_ == Flavor::Tuple;
      std::string out = tuple ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].repr();
      if (tuple && list_->size() == 1) out += ",";
      return out + (tuple ? ")" : "]");
    }
    case Kind::Dict: {
      std::string out = flavor_ == Flavor::Namespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, v] : dict_->entries) {
        out += (first ? "" : ", ") + string_repr(k) + ": " + v.repr();
        first = false;
      }
      return out + (flavor_ == Flavor::Namespace ? "}>" : "}");
    }
    default: return to_str();
  }
}

std::string Value::to_str() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return i_ ? "True" : "False";
    case Kind::Int: return std::to_string(i_);
    case Kind::Float: return python_float_repr(f_);
    case Kind::String: return s_;
    default: return repr();
  }
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

std::string Value::to_json(int indent, const std::string& item_sep, const std::string& key_sep, bool sort_keys) const {
  std::string out;
  json_into(out, indent, 0, item_sep, key_sep, sort_keys);
  return out;
}

void Value::json_into(std::string& out, int indent, int depth, const std::string& item_sep, const std::string& key_sep,
                      bool sort_keys) const {
  if (depth > NestGuard::kMaxDepth) fail("tojson: value nested too deeply");
  charge(copy_bytes() + (indent > 0 ? size_t(indent) * size_t(depth + 1) : 0));
  // Python's json with indent puts each item on its own line, indented one level deeper.
  auto open_item = [&](size_t i) {
    if (i) out += item_sep;
    if (indent >= 0) out.append(1, '\n').append(size_t(indent) * size_t(depth + 1), ' ');
  };
  auto close = [&](char c) {
    if (indent >= 0) out.append(1, '\n').append(size_t(indent) * size_t(depth), ' ');
    out += c;
  };
  switch (kind_) {
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += i_ ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(i_); return;
    case Kind::Float:
      out += std::isnan(f_) ? "NaN" : std::isinf(f_) ? (f_ < 0 ? "-Infinity" : "Infinity") : python_float_repr(f_);
      return;
    case Kind::String: out += json_quote(s_); return;
    case Kind::List:
      if (flavor_ == Flavor::Generator) break;
      if (list_->empty()) { out += "[]"; return; }
      out += '[';
      for (size_t i = 0; i < list_->size(); ++i) {
        open_item(i);
        (*list_)[i].json_into(out, indent, depth + 1, item_sep, key_sep, sort_keys);
      }
      close(']');
      return;
    case Kind::Dict: {
      if (flavor_ == Flavor::Namespace) break;
      if (dict_->entries.empty()) { out += "{}"; return; }
      std::vector<const std::pair<std::string, Value>*> order;
      for (const auto& e : dict_->entries) order.push_back(&e);
      if (sort_keys)
        std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < order.size(); ++i) {
        open_item(i);
        out += json_quote(order[i]->first) + key_sep;
        order[i]->second.json_into(out, indent, depth + 1, item_sep, key_sep, sort_keys);
      }
      close('}');
      return;
    }
    default: break;
  }
  fail("Object of type " + type_name() + " is not JSON serializable");
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    n = std::min(n, s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

ValueList Value::iterate() const {
  switch (kind_) {
    case Kind::Undefined: return {};
    case Kind::List: charge(elements_bytes(*list_)); return *list_;
    case Kind::Dict: {
      if (flavor_ == Flavor::Namespace) break;
      ValueList keys;
      charge(dict_->entries.size() * sizeof(Value));
      for (const auto& e : dict_->entries) keys.push_back(string(e.first));
      return keys;
    }
    case Kind::String: {
      ValueList chars;
      charge(s_.size() * sizeof(Value));
      for (auto& c : utf8_chars(s_)) chars.push_back(string(std::move(c)));
      return chars;
    }
    default: break;
  }
  fail("'" + type_name() + "' object is not iterable");
}

bool reaches_dict(const Value& v, const ValueDict* target) {
  std::vector<const Value*> todo{&v};
  std::unordered_set<const void*> seen;
  while (!todo.empty()) {
    const Value* x = todo.back();
    todo.pop_back();
    if (x->is_dict()) {
      const ValueDict* d = &x->entries();
      if (d == target) return true;
      if (seen.insert(d).second) {
        charge(d->entries.size() * sizeof(void*));
        for (const auto& [k, e] : d->entries) todo.push_back(&e);
      }
    } else if (x->is_list()) {
      if (seen.insert(&x->items()).second) {
        charge(x->items().size() * sizeof(void*));
        for (const auto& e : x->items()) todo.push_back(&e);
      }
    }
  }
  return false;
}

bool values_equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  const NestGuard nest;
  charge(sizeof(Value));
  if (a.is_number() && b.is_number()) {
    if (a.kind() == K::Float || b.kind() == K::Float) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::Undefined:
    case K::None: return true;
    case K::String: return a.str_ref() == b.str_ref();
    case K::List: {
      if ((a.flavor() == Value::Flavor::Tuple) != (b.flavor() == Value::Flavor::Tuple)) return false;
      if (a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i)
        if (!values_equal(a.items()[i], b.items()[i])) return false;
      return true;
    }
    case K::Dict: {
      if (a.entries().entries.size() != b.entries().entries.size()) return false;
      for (const auto& [k, v] : a.entries().entries) {
        const Value* o = b.entries().find(k);
        if (!o || !values_equal(v, *o)) return false;
      }
      return true;
    }
    case K::Function: return &a.fn() == &b.fn();
    default: return false;
  }
}

int compare_values(const Value& a, const Value& b) {
  const NestGuard nest;
  charge(sizeof(Value));
  if (a.is_number() && b.is_number()) {
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.str_ref().compare(b.str_ref()) < 0 ? -1 : a.str_ref() == b.str_ref() ? 0 : 1;
  if (a.is_list() && b.is_list()) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!values_equal(x[i], y[i])) return compare_values(x[i], y[i]);
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  fail("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

}  // namespace pagoda::jinja
