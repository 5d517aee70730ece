// The Jinja interpreter's value: Python's data model as chat templates see it (None, bool, int,
// float, str, list/tuple, dict, callables, namespace) plus Jinja2's default Undefined.
#pragma once
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace pagoda::jinja {

class Value;
class Interpreter;
using ValueList = std::vector<Value>;

// Positional and keyword arguments of a call, as written at the call site.
struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Function {
  std::string name;
  std::function<Value(Interpreter&, CallArgs&)> call;
};

// Insertion-ordered string-keyed map (Python dicts keep insertion order; JSON keys are strings).
struct ValueDict {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

// Thrown inside the interpreter; the public API turns it into a Result naming the template line.
struct TemplateError {
  std::string message;
};
[[noreturn]] void fail(std::string message);

// The work a render may do building values, in bytes: strings made or copied, list and dict
// slots, and every element a repr, tojson or comparison visits. A GGUF's chat template is
// untrusted input, and doubling a string or list in a loop, or nesting one shared list in itself,
// reaches terabytes (and, through sharing, exponentially many elements to visit) within a few
// dozen loop steps: the steps and output limits do not bound it. The budget of the render running
// on this thread is set by a WorkBudget for its lifetime; outside a render nothing is counted.
class WorkBudget {
 public:
  explicit WorkBudget(int64_t bytes);
  ~WorkBudget();
  WorkBudget(const WorkBudget&) = delete;
  WorkBudget& operator=(const WorkBudget&) = delete;

 private:
  int64_t limit_, left_;
  WorkBudget* outer_;
  friend void charge(size_t bytes);
};
// Counts bytes against the current render's budget; fails once it is spent.
void charge(size_t bytes);
// Bounds the nesting depth of a walk over a value (repr, tojson, comparison, reading the
// variables): a value can be grown a level per loop step through a namespace, and walking one
// thousands of levels deep must end in an error, not in a stack overflow. (A namespace inside
// itself, the infinitely deep case, is refused where it would be made: Interpreter::exec_set.)
class NestGuard {
 public:
  NestGuard();
  ~NestGuard();
  NestGuard(const NestGuard&) = delete;
  NestGuard& operator=(const NestGuard&) = delete;
  static constexpr int kMaxDepth = 200;
};

class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Function };
  // Lists may be tuples (repr differs) or generators (Python's lazy results of map/select:
  // always truthy, no len(), not JSON-serializable). Dicts may be a namespace(). Strings may be
  // Markup (from |safe or |escape): adding a plain string to Markup HTML-escapes the plain one.
  enum class Flavor : uint8_t { Plain, Tuple, Generator, Namespace, Markup };

  Value() = default;  // Undefined
  Value(const Value&) = default;
  Value(Value&&) noexcept = default;
  Value& operator=(const Value&) = default;
  Value& operator=(Value&&) noexcept = default;
  // A list nested in a list a few hundred thousand times deep (one loop step a level) would be
  // destroyed by as deep a recursion, past the stack: the last owner of nested lists or dicts takes
  // them apart level by level instead.
  ~Value() {
    if (list_ || dict_) release_children();
  }
  static Value undefined(std::string hint) { Value v; v.s_ = std::move(hint); return v; }
  static Value none() { Value v; v.kind_ = Kind::None; return v; }
  static Value boolean(bool b) { Value v; v.kind_ = Kind::Bool; v.i_ = b; return v; }
  static Value integer(int64_t i) { Value v; v.kind_ = Kind::Int; v.i_ = i; return v; }
  static Value number(double f) { Value v; v.kind_ = Kind::Float; v.f_ = f; return v; }
  static Value string(std::string s, Flavor fl = Flavor::Plain) {
    Value v;
    charge(s.size());
    v.kind_ = Kind::String;
    v.flavor_ = fl;
    v.s_ = std::move(s);
    return v;
  }
  static Value list(ValueList items, Flavor fl = Flavor::Plain);
  static Value dict(ValueDict d = {}, Flavor fl = Flavor::Plain);
  static Value function(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn);
  static Value from_json(const nlohmann::ordered_json& j);  // keeps key order, as Python does

  Kind kind() const { return kind_; }
  Flavor flavor() const { return flavor_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_callable() const { return kind_ == Kind::Function; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const {  // floats truncate, saturating instead of overflowing
    if (kind_ != Kind::Float) return i_;
    if (!(f_ > -9.2e18)) return f_ != f_ ? 0 : INT64_MIN;
    return f_ < 9.2e18 ? int64_t(f_) : INT64_MAX;
  }
  double as_double() const { return kind_ == Kind::Float ? f_ : double(i_); }
  const std::string& str_ref() const { return s_; }  // the string; for Undefined, the hint
  const ValueList& items() const { return *list_; }
  ValueList& items_mut() { return *list_; }
  const ValueDict& entries() const { return *dict_; }
  ValueDict& entries_mut() { return *dict_; }
  const Function& fn() const { return *fn_; }

  bool truthy() const;
  std::string type_name() const;  // Python's name for error messages: 'str', 'dict', ...
  std::string to_str() const;     // Python's str(); Undefined is ""
  std::string repr() const;       // Python's repr()
  // json.dumps as render.py configures it: non-ASCII kept, optional indent/separators/sort_keys.
  std::string to_json(int indent, const std::string& item_sep, const std::string& key_sep, bool sort_keys) const;
  // The values iteration yields: list items, dict keys, string characters, nothing for Undefined.
  ValueList iterate() const;
  // The bytes a copy of this value holds apart from what it shares: a string's bytes, one slot
  // for anything else (a list or dict copy shares its elements).
  size_t copy_bytes() const { return kind_ == Kind::String ? sizeof(Value) + s_.size() : sizeof(Value); }

 private:
  void json_into(std::string& out, int indent, int depth, const std::string& item_sep, const std::string& key_sep,
                 bool sort_keys) const;
  void release_children() noexcept;

  Kind kind_ = Kind::Undefined;
  Flavor flavor_ = Flavor::Plain;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<Function> fn_;
};

bool values_equal(const Value& a, const Value& b);
// The bytes a list's elements hold as copies (Value::copy_bytes each): what copying it costs.
size_t elements_bytes(const ValueList& items);
// Whether `target` is v's own dict or reachable through v's lists and dicts. Namespaces are the
// only containers a template can change, so refusing an assignment that would put a namespace
// inside itself keeps values acyclic (a cycle of shared pointers is never freed). Each container
// is visited once, however often it is shared, and the visits count against the work budget (a
// value grown by one level a step would otherwise make each step's check longer).
bool reaches_dict(const Value& v, const ValueDict* target);
int compare_values(const Value& a, const Value& b);  // <0, 0, >0; fails on unorderable types
std::string python_float_repr(double d);
std::string json_quote(const std::string& s);
std::string html_escape(const std::string& s);

// UTF-8 helpers: strings index and slice by code point, as Python's str does.
std::vector<std::string> utf8_chars(const std::string& s);
size_t utf8_length(const std::string& s);

}  // namespace pagoda::jinja
