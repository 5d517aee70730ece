// Executes a parsed template: scopes, loops, macros, output. Errors are thrown as TemplateError
// and carry the line of the node being evaluated; the public API (template.h) catches them.
#pragma once
#include <ctime>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/chat/ast.h"
#include "core/chat/value.h"

namespace pagoda::jinja {

struct RenderLimits {
  size_t max_output = 64u << 20;  // bytes of rendered text
  int max_call_depth = 64;        // nested macro calls (recursion ends here, not in a stack overflow)
  int64_t max_steps = 20'000'000;  // loop iterations + calls + outputs
  // Bytes of values built (WorkBudget), and at least kWorkPerInputByte per byte of the variables'
  // strings: the 40 real templates build 4-16 bytes of values per byte of message content.
  int64_t max_work = 256 << 20;
  static constexpr int64_t kWorkPerInputByte = 32;
};

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits, const std::tm& now) : limits_(limits), now_(now) {}

  std::string render(const Body& body, const ValueDict& vars);

  // Used by the built-in filters, tests and methods.
  Value call(const Value& fn, CallArgs& args);
  Value get_attr(const Value& obj, const std::string& name);
  Value get_item(const Value& obj, const Value& key);
  const std::tm& now() const { return now_; }
  void step();
  int line() const { return line_; }

 private:
  using Frame = std::unordered_map<std::string, Value>;
  using Stack = std::vector<std::shared_ptr<Frame>>;
  // Macros and caller() see their defining scopes through weak references: a macro lives in one
  // of those frames, so owning them would be a reference cycle (and a leak).
  using Closure = std::vector<std::weak_ptr<Frame>>;
  enum class Flow : uint8_t { Normal, Break, Continue };

  Flow exec_body(const Body& body);
  Flow exec(const Stmt& s);
  Flow exec_if(const Stmt& s);
  void exec_for(const Stmt& s);
  void exec_set(const Stmt& s);
  void exec_call_block(const Stmt& s);
  std::string capture(const Body& body);
  void emit(const std::string& text);
  Value make_macro(const Stmt& s);
  Value invoke_macro(const Stmt& s, const Closure& closure, CallArgs& args, bool is_caller);
  Closure closure() const { return Closure(stack_.begin(), stack_.end()); }

  Value eval(const Expr& e);
  Value eval_call(const Expr& e, const Value* caller);
  Value eval_filter(const Expr& e, const Value* block_text);
  Value eval_binary(const std::string& op, const Value& a, const Value& b);
  Value eval_compare(const Expr& e);
  Value eval_slice(const Expr& e);
  CallArgs eval_args(const Expr& e);
  Value lookup(const std::string& name) const;
  void bind(const std::string& name, Value v) { (*stack_.back())[name] = std::move(v); }

  RenderLimits limits_;
  std::tm now_;
  Stack stack_;
  std::string* out_ = nullptr;
  size_t total_out_ = 0;
  int call_depth_ = 0;
  int64_t steps_ = 0;
  int line_ = 0;
};

// The built-ins: filters, tests, methods of str/dict/list, and global functions.
Value apply_filter(Interpreter& in, const std::string& name, const Value& subject, CallArgs& args);
bool apply_test(Interpreter& in, const std::string& name, const Value& subject, CallArgs& args);
Value bound_method(const Value& obj, const std::string& name);  // Undefined when obj has no such method
void install_globals(std::unordered_map<std::string, Value>& frame);

}  // namespace pagoda::jinja
