#include "core/chat/interpreter.h"

#include <algorithm>
#include <climits>
#include <cmath>

namespace pagoda::jinja {

std::string python_percent_format(const std::string& fmt, const Value& args);  // builtins.cpp

namespace {

struct DepthGuard {
  int& d;
  DepthGuard(int& depth, int limit) : d(depth) {
    if (++d > limit) fail("macro calls nested deeper than " + std::to_string(limit));
  }
  ~DepthGuard() { --d; }
};

bool is_int_like(const Value& v) { return v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Bool; }

// Integer arithmetic that fails cleanly instead of overflowing (Python ints never overflow).
int64_t add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) fail("integer overflow");
  return r;
}
int64_t sub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) fail("integer overflow");
  return r;
}
int64_t mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) fail("integer overflow");
  return r;
}

int64_t floor_div(int64_t a, int64_t b) {
  if (a == INT64_MIN && b == -1) fail("integer overflow");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// Python's slice.indices(): clamps start/stop for a sequence of length n and the given step.
void slice_bounds(int64_t n, const Value& start, const Value& stop, int64_t step, int64_t& lo, int64_t& hi) {
  auto clamp = [&](const Value& v, int64_t def_pos, int64_t def_neg) -> int64_t {
    if (v.is_none() || v.is_undefined()) return step > 0 ? def_pos : def_neg;
    if (!is_int_like(v)) fail("slice indices must be integers or None");
    int64_t i = v.as_int();
    if (i < 0) i += n;
    if (step > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  lo = clamp(start, 0, n - 1);
  hi = clamp(stop, n, -1);
}

}  // namespace

void Interpreter::step() {
  if (++steps_ > limits_.max_steps) fail("template ran more than " + std::to_string(limits_.max_steps) + " steps");
}

std::string Interpreter::render(const Body& body, const ValueDict& vars) {
  const WorkBudget budget(limits_.max_work);
  auto globals = std::make_shared<Frame>();
  install_globals(*globals);
  for (const auto& [k, v] : vars.entries) (*globals)[k] = v;
  stack_ = {globals, std::make_shared<Frame>()};
  std::string out;
  out_ = &out;
  exec_body(body);
  return out;
}

void Interpreter::emit(const std::string& text) {
  total_out_ += text.size();
  if (total_out_ > limits_.max_output)
    fail("rendered output exceeds " + std::to_string(limits_.max_output) + " bytes");
  *out_ += text;
}

std::string Interpreter::capture(const Body& body) {
  std::string buf;
  std::string* saved = out_;
  out_ = &buf;
  exec_body(body);
  out_ = saved;
  return buf;
}

Interpreter::Flow Interpreter::exec_body(const Body& body) {
  for (const auto& s : body) {
    const Flow f = exec(*s);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  line_ = s.line;
  step();
  switch (s.kind) {
    case Stmt::Kind::Text: emit(s.text); break;
    case Stmt::Kind::Output: {
      const Value v = eval(*s.exprs[0]);
      emit(v.to_str());
      break;
    }
    case Stmt::Kind::If: return exec_if(s);
    case Stmt::Kind::For: exec_for(s); break;
    case Stmt::Kind::Set: exec_set(s); break;
    case Stmt::Kind::SetBlock: {
      Value v = Value::string(capture(s.bodies[0]));
      if (!s.exprs.empty()) v = eval_filter(*s.exprs[0], &v);
      bind(s.targets[0], std::move(v));
      break;
    }
    case Stmt::Kind::Macro: bind(s.name, make_macro(s)); break;
    case Stmt::Kind::CallBlock: exec_call_block(s); break;
    case Stmt::Kind::FilterBlock: {
      const Value text = Value::string(capture(s.bodies[0]));
      emit(eval_filter(*s.exprs[0], &text).to_str());
      break;
    }
    case Stmt::Kind::Break: return Flow::Break;
    case Stmt::Kind::Continue: return Flow::Continue;
    case Stmt::Kind::Scope: return exec_body(s.bodies[0]);
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_if(const Stmt& s) {
  for (size_t i = 0; i < s.exprs.size(); ++i) {
    line_ = s.exprs[i]->line;
    if (eval(*s.exprs[i]).truthy()) return exec_body(s.bodies[i]);
  }
  if (s.bodies.size() > s.exprs.size()) return exec_body(s.bodies.back());
  return Flow::Normal;
}

void Interpreter::exec_for(const Stmt& s) {
  const Value seq = eval(*s.exprs[0]);
  ValueList items = seq.iterate();
  stack_.push_back(std::make_shared<Frame>());
  auto bind_targets = [&](const Value& item) {
    if (s.targets.size() == 1) return bind(s.targets[0], item);
    const ValueList parts = item.iterate();
    if (parts.size() != s.targets.size())
      fail("cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(s.targets.size()));
    for (size_t k = 0; k < parts.size(); ++k) bind(s.targets[k], parts[k]);
  };
  if (s.exprs.size() > 1) {  // `for x in xs if cond`: the loop sees only the items that pass
    ValueList kept;
    for (const auto& it : items) {
      step();
      bind_targets(it);
      if (eval(*s.exprs[1]).truthy()) kept.push_back(it);
    }
    items = std::move(kept);
  }
  const int64_t n = int64_t(items.size());
  for (int64_t i = 0; i < n; ++i) {
    step();
    bind_targets(items[size_t(i)]);
    ValueDict loop;
    loop.set("index", Value::integer(i + 1));
    loop.set("index0", Value::integer(i));
    loop.set("revindex", Value::integer(n - i));
    loop.set("revindex0", Value::integer(n - i - 1));
    loop.set("first", Value::boolean(i == 0));
    loop.set("last", Value::boolean(i == n - 1));
    loop.set("length", Value::integer(n));
    loop.set("depth", Value::integer(1));
    loop.set("depth0", Value::integer(0));
    loop.set("previtem", i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item"));
    loop.set("nextitem", i + 1 < n ? items[size_t(i + 1)] : Value::undefined("there is no next item"));
    const int64_t idx = i;
    loop.set("cycle", Value::function("cycle", [idx](Interpreter&, CallArgs& a) {
      if (a.pos.empty()) fail("no items for cycling given");
      return a.pos[size_t(idx % int64_t(a.pos.size()))];
    }));
    bind("loop", Value::dict(std::move(loop)));
    if (exec_body(s.bodies[0]) == Flow::Break) break;
  }
  stack_.pop_back();
  if (n == 0) exec_body(s.bodies[1]);
}

void Interpreter::exec_set(const Stmt& s) {
  Value v = eval(*s.exprs[0]);
  if (!s.name.empty()) {
    Value ns = lookup(s.targets[0]);
    if (!ns.is_dict() || ns.flavor() != Value::Flavor::Namespace)
      fail("cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
    if (reaches_dict(v, &ns.entries()))
      fail("setting " + s.targets[0] + "." + s.name + " would make the namespace contain itself");
    ns.entries_mut().set(s.name, std::move(v));
    return;
  }
  if (s.targets.size() == 1) return bind(s.targets[0], std::move(v));
  const ValueList parts = v.iterate();
  if (parts.size() != s.targets.size())
    fail("cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(s.targets.size()));
  for (size_t k = 0; k < parts.size(); ++k) bind(s.targets[k], parts[k]);
}

Value Interpreter::make_macro(const Stmt& s) {
  const Stmt* def = &s;
  return Value::function(s.name, [def, scope = closure()](Interpreter& in, CallArgs& args) {
    return in.invoke_macro(*def, scope, args, false);
  });
}

// Binds parameters (positional, then keywords, then defaults) in a fresh frame over the
// definition's scope and renders the body; the result is the rendered text.
Value Interpreter::invoke_macro(const Stmt& s, const Closure& closure, CallArgs& args, bool is_caller) {
  DepthGuard g(call_depth_, limits_.max_call_depth);
  step();
  const std::string what = is_caller ? "caller" : "macro '" + s.name + "'";
  if (args.pos.size() > s.targets.size())
    fail(what + " takes not more than " + std::to_string(s.targets.size()) + " argument(s)");
  Stack saved = std::move(stack_);
  const int saved_line = line_;
  stack_.clear();
  for (const auto& w : closure)
    if (auto f = w.lock()) stack_.push_back(std::move(f));  // a scope that has ended is gone
  stack_.push_back(std::make_shared<Frame>());
  for (auto& [k, v] : args.kw) {
    const bool known = std::find(s.targets.begin(), s.targets.end(), k) != s.targets.end();
    if (!known && k != "caller") fail(what + " has no argument named '" + k + "'");
    bind(k, v);
  }
  for (size_t i = 0; i < s.targets.size(); ++i) {
    if (i < args.pos.size()) bind(s.targets[i], args.pos[i]);
    else if (!stack_.back()->count(s.targets[i]))
      bind(s.targets[i], s.defaults[i] ? eval(*s.defaults[i]) : Value::undefined("'" + s.targets[i] + "' is undefined"));
  }
  std::string text = capture(s.bodies[0]);
  stack_ = std::move(saved);
  line_ = saved_line;
  return Value::string(std::move(text));
}

void Interpreter::exec_call_block(const Stmt& s) {
  const Stmt* def = &s;
  const Value caller = Value::function("caller", [def, scope = closure()](Interpreter& in, CallArgs& args) {
    return in.invoke_macro(*def, scope, args, true);
  });
  emit(eval_call(*s.exprs[0], &caller).to_str());
}

Value Interpreter::lookup(const std::string& name) const {
  for (auto it = stack_.rbegin(); it != stack_.rend(); ++it) {
    auto f = (*it)->find(name);
    if (f != (*it)->end()) return f->second;
  }
  return Value::undefined("'" + name + "' is undefined");
}

Value Interpreter::call(const Value& fn, CallArgs& args) {
  if (fn.is_undefined()) fail(fn.str_ref());
  if (!fn.is_callable()) fail("'" + fn.type_name() + "' object is not callable");
  step();
  return fn.fn().call(*this, args);
}

CallArgs Interpreter::eval_args(const Expr& e) {
  CallArgs a;
  for (size_t i = 1; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i]));
  for (const auto& [k, v] : e.kwargs) a.kw.emplace_back(k, eval(*v));
  return a;
}

Value Interpreter::eval_call(const Expr& e, const Value* caller) {
  const Value fn = eval(*e.args[0]);
  CallArgs a = eval_args(e);
  if (caller) a.kw.emplace_back("caller", *caller);
  line_ = e.line;
  return call(fn, a);
}

Value Interpreter::eval_filter(const Expr& e, const Value* block_text) {
  Value subject = !e.args[0] ? *block_text
                  : e.args[0]->kind == Expr::Kind::Filter ? eval_filter(*e.args[0], block_text)
                                                          : eval(*e.args[0]);
  CallArgs a = eval_args(e);
  line_ = e.line;
  return apply_filter(*this, e.name, subject, a);
}

Value Interpreter::get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail(obj.str_ref());
  if (obj.is_dict()) {
    if (obj.flavor() != Value::Flavor::Namespace) {
      Value m = bound_method(obj, name);
      if (!m.is_undefined()) return m;
    }
    if (const Value* v = obj.entries().find(name)) return *v;
    return Value::undefined("'" + obj.type_name() + " object' has no attribute '" + name + "'");
  }
  Value m = bound_method(obj, name);
  if (!m.is_undefined()) return m;
  return Value::undefined("'" + obj.type_name() + " object' has no attribute '" + name + "'");
}

Value Interpreter::get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail(obj.str_ref());
  if (obj.is_dict()) {
    if (key.is_string())
      if (const Value* v = obj.entries().find(key.str_ref())) return *v;
    return Value::undefined("'" + obj.type_name() + " object' has no attribute '" + key.to_str() + "'");
  }
  if ((obj.is_list() && obj.flavor() != Value::Flavor::Generator) || obj.is_string()) {
    if (!is_int_like(key)) {
      if (key.is_string()) return get_attr(obj, key.str_ref());
      fail(obj.type_name() + " indices must be integers");
    }
    if (obj.is_list()) {
      const auto n = int64_t(obj.items().size());
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.items()[size_t(i)];
    } else {
      auto chars = utf8_chars(obj.str_ref());
      const auto n = int64_t(chars.size());
      int64_t i = key.as_int();
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value::string(chars[size_t(i)]);
    }
    return Value::undefined(obj.type_name() + " index out of range");
  }
  if (obj.is_list()) fail("'generator' object is not subscriptable");
  return Value::undefined("'" + obj.type_name() + " object' has no attribute '" + key.to_str() + "'");
}

Value Interpreter::eval_slice(const Expr& e) {
  const Value obj = eval(*e.args[0]);
  if (obj.is_undefined()) fail(obj.str_ref());
  const Value start = e.args[1] ? eval(*e.args[1]) : Value::none();
  const Value stop = e.args[2] ? eval(*e.args[2]) : Value::none();
  const Value stepv = e.args[3] ? eval(*e.args[3]) : Value::none();
  int64_t step = 1;
  if (!stepv.is_none()) {
    if (!is_int_like(stepv)) fail("slice indices must be integers or None");
    step = stepv.as_int();
    if (step == 0) fail("slice step cannot be zero");
  }
  const bool is_str = obj.is_string();
  if (!is_str && !(obj.is_list() && obj.flavor() != Value::Flavor::Generator))
    fail("'" + obj.type_name() + "' object is not subscriptable");
  std::vector<std::string> chars;
  if (is_str) chars = utf8_chars(obj.str_ref());
  const int64_t n = is_str ? int64_t(chars.size()) : int64_t(obj.items().size());
  int64_t lo = 0, hi = 0;
  slice_bounds(n, start, stop, step, lo, hi);
  std::string s;
  ValueList out;
  for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
    if (is_str) s += chars[size_t(i)];
    else out.push_back(obj.items()[size_t(i)]);
  }
  return is_str ? Value::string(std::move(s)) : Value::list(std::move(out), obj.flavor());
}

Value Interpreter::eval(const Expr& e) {
  line_ = e.line;
  switch (e.kind) {
    case Expr::Kind::Literal: return e.value;
    case Expr::Kind::Name: {  // a copy: a string's bytes are copied, a list or dict is shared
      Value v = lookup(e.name);
      charge(v.copy_bytes());
      return v;
    }
    case Expr::Kind::List:
    case Expr::Kind::Tuple: {
      ValueList items;
      for (const auto& a : e.args) items.push_back(eval(*a));
      return Value::list(std::move(items), e.kind == Expr::Kind::Tuple ? Value::Flavor::Tuple : Value::Flavor::Plain);
    }
    case Expr::Kind::Dict: {
      ValueDict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) d.set(eval(*e.args[i]).to_str(), eval(*e.args[i + 1]));
      return Value::dict(std::move(d));
    }
    case Expr::Kind::Attr: {
      const Value obj = eval(*e.args[0]);
      line_ = e.line;
      Value v = get_attr(obj, e.name);
      charge(v.copy_bytes());
      return v;
    }
    case Expr::Kind::Item: {
      const Value obj = eval(*e.args[0]);
      const Value key = eval(*e.args[1]);
      line_ = e.line;
      Value v = get_item(obj, key);
      charge(v.copy_bytes());
      return v;
    }
    case Expr::Kind::Slice: return eval_slice(e);
    case Expr::Kind::Call: return eval_call(e, nullptr);
    case Expr::Kind::Filter: return eval_filter(e, nullptr);
    case Expr::Kind::Test: {
      const Value subject = eval(*e.args[0]);
      CallArgs a = eval_args(e);
      line_ = e.line;
      return Value::boolean(apply_test(*this, e.name, subject, a) != e.negated);
    }
    case Expr::Kind::Unary: {
      const Value v = eval(*e.args[0]);
      if (v.is_undefined()) fail(v.str_ref());
      if (!v.is_number()) fail("bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
      if (e.name == "+") return v.kind() == Value::Kind::Bool ? Value::integer(v.as_int()) : v;
      return v.kind() == Value::Kind::Float ? Value::number(-v.as_double()) : Value::integer(sub(0, v.as_int()));
    }
    case Expr::Kind::Binary: {
      const Value a = eval(*e.args[0]);
      const Value b = eval(*e.args[1]);
      line_ = e.line;
      return eval_binary(e.name, a, b);
    }
    case Expr::Kind::Compare: return eval_compare(e);
    case Expr::Kind::And: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    case Expr::Kind::Or: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    case Expr::Kind::Not: return Value::boolean(!eval(*e.args[0]).truthy());
    case Expr::Kind::Cond:
      if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
      return e.args[2] ? eval(*e.args[2]) : Value::undefined("the inline if-expression on line " +
                                                             std::to_string(e.line) + " evaluated to false");
  }
  return Value();
}

namespace {

bool contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) fail("'in <string>' requires string as left operand, not " + item.type_name());
    return container.str_ref().find(item.str_ref()) != std::string::npos;
  }
  if (container.is_dict() && container.flavor() != Value::Flavor::Namespace)
    return item.is_string() && container.entries().find(item.str_ref()) != nullptr;
  for (const auto& v : container.iterate())
    if (values_equal(v, item)) return true;
  return false;
}

}  // namespace

Value Interpreter::eval_compare(const Expr& e) {
  Value left = eval(*e.args[0]);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1]);
    line_ = e.line;
    const std::string& op = e.ops[i];
    bool r;
    if (op == "==") r = values_equal(left, right);
    else if (op == "!=") r = !values_equal(left, right);
    else if (op == "in") r = contains(right, left);
    else if (op == "notin") r = !contains(right, left);
    else {
      if (left.is_undefined()) fail(left.str_ref());
      if (right.is_undefined()) fail(right.str_ref());
      const int c = compare_values(left, right);
      r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!r) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::eval_binary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(a.to_str() + b.to_str());
  if (a.is_undefined()) fail(a.str_ref());
  if (b.is_undefined()) fail(b.str_ref());
  const bool nums = a.is_number() && b.is_number();
  const bool ints = is_int_like(a) && is_int_like(b);
  auto unsupported = [&]() -> Value {
    fail("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
  };
  if (op == "+") {
    if (nums) return ints ? Value::integer(add(a.as_int(), b.as_int())) : Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      const auto markup = Value::Flavor::Markup;
      if (a.flavor() != markup && b.flavor() != markup) return Value::string(a.str_ref() + b.str_ref());
      auto esc = [&](const Value& x) { return x.flavor() == markup ? x.str_ref() : html_escape(x.str_ref()); };
      return Value::string(esc(a) + esc(b), markup);
    }
    if (a.is_list() && b.is_list() && a.flavor() == b.flavor() && a.flavor() != Value::Flavor::Generator) {
      charge(elements_bytes(a.items()) + elements_bytes(b.items()));  // before the copy, as for *
      ValueList out = a.items();
      out.insert(out.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(out), a.flavor());
    }
    if (a.is_string() || a.is_list())
      fail("can only concatenate " + a.type_name() + " (not \"" + b.type_name() + "\") to " + a.type_name());
    return unsupported();
  }
  if (op == "*") {
    if (nums) return ints ? Value::integer(mul(a.as_int(), b.as_int())) : Value::number(a.as_double() * b.as_double());
    const Value& seq = a.is_number() ? b : a;
    const Value& count = a.is_number() ? a : b;
    if (!is_int_like(count) || !(seq.is_string() || seq.is_list())) return unsupported();
    const int64_t n = std::max<int64_t>(count.as_int(), 0);
    const size_t unit = seq.is_string() ? seq.str_ref().size() : seq.items().size();
    if (unit > 0 && size_t(n) > limits_.max_output / unit) fail("repetition result too large");
    // Before building it: n copies of the sequence (a list's elements hold strings of their own).
    const size_t each = seq.is_string() ? unit : elements_bytes(seq.items());
    if (n > 0) charge(each > SIZE_MAX / size_t(n) ? SIZE_MAX : each * size_t(n));
    if (seq.is_string()) {
      std::string s;
      for (int64_t i = 0; i < n; ++i) s += seq.str_ref();
      return Value::string(std::move(s));
    }
    ValueList out;
    for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
    return Value::list(std::move(out), seq.flavor());
  }
  if (op == "%" && a.is_string()) return Value::string(python_percent_format(a.str_ref(), b));
  if (!nums) return unsupported();
  const double x = a.as_double(), y = b.as_double();
  if (op == "-") return ints ? Value::integer(sub(a.as_int(), b.as_int())) : Value::number(x - y);
  if ((op == "/" || op == "//" || op == "%") && y == 0) fail("division by zero");
  if (op == "/") return Value::number(x / y);
  if (op == "//") return ints ? Value::integer(floor_div(a.as_int(), b.as_int())) : Value::number(std::floor(x / y));
  if (op == "%") {
    if (ints) return Value::integer(sub(a.as_int(), mul(b.as_int(), floor_div(a.as_int(), b.as_int()))));
    return Value::number(x - y * std::floor(x / y));
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      const int64_t base = a.as_int(), ex = b.as_int();
      if (base == 0 || base == 1) return Value::integer(ex == 0 ? 1 : base);
      if (base == -1) return Value::integer(ex % 2 ? -1 : 1);
      int64_t r = 1;
      for (int64_t i = 0; i < ex; ++i) r = mul(r, base);  // overflows within 63 rounds
      return Value::integer(r);
    }
    return Value::number(std::pow(x, y));
  }
  return unsupported();
}

}  // namespace pagoda::jinja
