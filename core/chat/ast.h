// The parsed template: expression and statement trees, each node tagged with its source line so
// that every error names where it happened.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/chat/value.h"

namespace pagoda::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind : uint8_t {
    Literal,  // value
    Name,     // name
    List,     // args = elements
    Tuple,    // args = elements
    Dict,     // args = key0, value0, key1, value1, ...
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]] (absent parts are null)
    Call,     // args[0](args[1..], kwargs)
    Filter,   // args[0] | name(args[1..], kwargs); args[0] is null inside a {% filter %} chain
    Test,     // args[0] is [not] name(args[1..])
    Unary,    // name ("-", "+") args[0]
    Binary,   // args[0] name args[1]
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    And,
    Or,
    Not,
    Cond,  // args[0] if args[1] else args[2] (null: Undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind : uint8_t {
    Text,         // text
    Output,       // {{ exprs[0] }}
    If,           // exprs[i] guards bodies[i]; one extra body is the else branch
    For,          // for targets in exprs[0] [if exprs[1]]: bodies[0], else bodies[1]
    Set,          // targets = exprs[0]; or targets[0].name = exprs[0] (namespace attribute)
    SetBlock,     // targets[0] = rendered bodies[0], through the filter chain exprs[0] if any
    Macro,        // name(targets with defaults) bodies[0]
    CallBlock,    // exprs[0] is the call; bodies[0] is `caller(targets...)`
    FilterBlock,  // exprs[0] (a filter chain) applied to rendered bodies[0]
    Break,
    Continue,
    Scope,  // {% generation %}: renders bodies[0]
  };
  Kind kind;
  int line = 0;
  std::string text;
  std::string name;
  std::vector<ExprPtr> exprs;
  std::vector<Body> bodies;
  std::vector<std::string> targets;
  std::vector<ExprPtr> defaults;  // Macro / CallBlock parameters: default or null
};

}  // namespace pagoda::jinja
