#include "core/chat/parser.h"

#include <algorithm>

#include "core/chat/lexer.h"

namespace pagoda::jinja {
namespace {

constexpr int kMaxNesting = 200;  // deeper expressions or blocks are refused, not recursed into

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body parse_all() {
    Body b = parse_body({});
    if (peek().kind != Tok::Eof) error("unexpected tag");
    return b;
  }

 private:
  // ---- token helpers ----
  const Token& peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  const Token& next() {
    const Token& t = t_[p_];
    if (p_ + 1 < t_.size()) ++p_;
    return t;
  }
  [[noreturn]] void error(const std::string& msg) const {
    fail("line " + std::to_string(peek().line) + ": " + msg);
  }
  bool at_op(const char* op, size_t ahead = 0) const { return peek(ahead).kind == Tok::Op && peek(ahead).text == op; }
  bool at_name(const char* n, size_t ahead = 0) const {
    return peek(ahead).kind == Tok::Name && peek(ahead).text == n;
  }
  bool skip_op(const char* op) { return at_op(op) ? (next(), true) : false; }
  bool skip_name(const char* n) { return at_name(n) ? (next(), true) : false; }
  void expect_op(const char* op) {
    if (!skip_op(op)) error(std::string("expected '") + op + "'" + found());
  }
  std::string expect_name() {
    if (peek().kind != Tok::Name) error("expected a name" + found());
    return next().text;
  }
  void expect_block_end() {
    if (peek().kind != Tok::BlockEnd) error("expected end of statement block" + found());
    next();
  }
  std::string found() const {
    const Token& t = peek();
    switch (t.kind) {
      case Tok::Eof: return ", found end of template";
      case Tok::BlockEnd:
      case Tok::VarEnd: return ", found end of tag";
      default: return ", found '" + t.text + "'";
    }
  }
  ExprPtr node(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& pp) : p(pp) {
      if (++p.depth_ > kMaxNesting) p.error("template nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // ---- statements ----
  bool at_block(const std::vector<std::string>& names) const {
    return peek().kind == Tok::BlockBegin && peek(1).kind == Tok::Name &&
           std::find(names.begin(), names.end(), peek(1).text) != names.end();
  }

  Body parse_body(const std::vector<std::string>& end_names) {
    DepthGuard g(*this);
    Body body;
    for (;;) {
      const Token& t = peek();
      if (t.kind == Tok::Eof) {
        if (!end_names.empty()) error("unexpected end of template, expected '" + end_names.back() + "'");
        return body;
      }
      if (at_block(end_names)) return body;
      auto s = std::make_unique<Stmt>();
      s->line = t.line;
      if (t.kind == Tok::Text) {
        s->kind = Stmt::Kind::Text;
        s->text = next().text;
      } else if (t.kind == Tok::VarBegin) {
        next();
        s->kind = Stmt::Kind::Output;
        s->exprs.push_back(parse_tuple());
        if (peek().kind != Tok::VarEnd) error("expected end of print statement" + found());
        next();
      } else if (t.kind == Tok::BlockBegin) {
        next();
        parse_statement(*s);
      } else {
        error("unexpected token" + found());
      }
      body.push_back(std::move(s));
    }
  }

  // Consumes `{% name %}` for a closing or middle tag already recognised by at_block.
  void close_tag(const char* name) {
    if (!at_block({name})) error(std::string("expected '") + name + "'" + found());
    next();
    next();
    expect_block_end();
  }

  void parse_statement(Stmt& s) {
    const std::string kw = expect_name();
    if (kw == "if") return parse_if(s);
    if (kw == "for") return parse_for(s);
    if (kw == "set") return parse_set(s);
    if (kw == "macro") return parse_macro(s);
    if (kw == "call") return parse_call_block(s);
    if (kw == "filter") {
      s.kind = Stmt::Kind::FilterBlock;
      s.exprs.push_back(parse_filters(nullptr));
      expect_block_end();
      s.bodies.push_back(parse_body({"endfilter"}));
      return close_tag("endfilter");
    }
    if (kw == "break" || kw == "continue") {
      s.kind = kw == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue;
      return expect_block_end();
    }
    if (kw == "generation") {
      s.kind = Stmt::Kind::Scope;
      expect_block_end();
      s.bodies.push_back(parse_body({"endgeneration"}));
      return close_tag("endgeneration");
    }
    fail("line " + std::to_string(s.line) + ": unknown tag '" + kw + "'");
  }

  void parse_if(Stmt& s) {
    s.kind = Stmt::Kind::If;
    s.exprs.push_back(parse_expression());
    expect_block_end();
    s.bodies.push_back(parse_body({"elif", "else", "endif"}));
    while (at_block({"elif"})) {
      next();
      next();
      s.exprs.push_back(parse_expression());
      expect_block_end();
      s.bodies.push_back(parse_body({"elif", "else", "endif"}));
    }
    if (at_block({"else"})) {
      close_tag("else");
      s.bodies.push_back(parse_body({"endif"}));
    }
    close_tag("endif");
  }

  void parse_for(Stmt& s) {
    s.kind = Stmt::Kind::For;
    s.targets.push_back(expect_name());
    while (skip_op(",")) s.targets.push_back(expect_name());
    if (!skip_name("in")) error("expected 'in'" + found());
    s.exprs.push_back(parse_tuple(false));
    if (skip_name("if")) s.exprs.push_back(parse_expression());
    if (skip_name("recursive")) error("recursive for loops are not supported");
    expect_block_end();
    s.bodies.push_back(parse_body({"else", "endfor"}));
    s.bodies.emplace_back();
    if (at_block({"else"})) {
      close_tag("else");
      s.bodies[1] = parse_body({"endfor"});
    }
    close_tag("endfor");
  }

  void parse_set(Stmt& s) {
    s.targets.push_back(expect_name());
    if (skip_op(".")) s.name = expect_name();
    while (s.name.empty() && skip_op(",")) s.targets.push_back(expect_name());
    if (skip_op("=")) {
      s.kind = Stmt::Kind::Set;
      s.exprs.push_back(parse_tuple());
      return expect_block_end();
    }
    if (!s.name.empty() || s.targets.size() != 1) error("expected '='" + found());
    s.kind = Stmt::Kind::SetBlock;
    if (at_op("|")) s.exprs.push_back(parse_filters(nullptr));
    expect_block_end();
    s.bodies.push_back(parse_body({"endset"}));
    close_tag("endset");
  }

  void parse_params(Stmt& s) {
    expect_op("(");
    while (!at_op(")")) {
      if (!s.targets.empty()) expect_op(",");
      if (at_op(")")) break;
      s.targets.push_back(expect_name());
      s.defaults.push_back(skip_op("=") ? parse_expression() : nullptr);
    }
    expect_op(")");
  }

  void parse_macro(Stmt& s) {
    s.kind = Stmt::Kind::Macro;
    s.name = expect_name();
    parse_params(s);
    expect_block_end();
    s.bodies.push_back(parse_body({"endmacro"}));
    close_tag("endmacro");
  }

  void parse_call_block(Stmt& s) {
    s.kind = Stmt::Kind::CallBlock;
    if (at_op("(")) parse_params(s);
    ExprPtr call = parse_expression();
    if (call->kind != Expr::Kind::Call) error("expected a call after 'call'");
    s.exprs.push_back(std::move(call));
    expect_block_end();
    s.bodies.push_back(parse_body({"endcall"}));
    close_tag("endcall");
  }

  // ---- expressions (precedence climbs from conditional to primary, as in Jinja2) ----
  // A comma-separated list becomes a tuple: `{{ a, b }}`, `for x in a, b`.
  ExprPtr parse_tuple(bool with_cond = true) {
    const int line = peek().line;
    ExprPtr first = with_cond ? parse_expression() : parse_or();
    if (!at_op(",")) return first;
    auto t = node(Expr::Kind::Tuple, line);
    t->args.push_back(std::move(first));
    while (skip_op(",")) {
      if (peek().kind == Tok::BlockEnd || peek().kind == Tok::VarEnd || at_op(")") || at_op("=")) break;
      t->args.push_back(with_cond ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    DepthGuard g(*this);
    ExprPtr e = parse_or();
    while (at_name("if")) {
      const int line = next().line;
      auto c = node(Expr::Kind::Cond, line);
      ExprPtr cond = parse_or();
      ExprPtr other = skip_name("else") ? parse_expression() : nullptr;
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(Expr::Kind k, std::string op, ExprPtr a, ExprPtr b, int line) {
    auto e = node(k, line);
    e->name = std::move(op);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (at_name("or")) e = binary(Expr::Kind::Or, "or", std::move(e), (next(), parse_and()), peek().line);
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (at_name("and")) e = binary(Expr::Kind::And, "and", std::move(e), (next(), parse_not()), peek().line);
    return e;
  }
  ExprPtr parse_not() {
    if (!at_name("not")) return parse_compare();
    DepthGuard g(*this);
    auto e = node(Expr::Kind::Not, next().line);
    e->args.push_back(parse_not());
    return e;
  }

  ExprPtr parse_compare() {
    const int line = peek().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    for (;;) {
      std::string op;
      if (peek().kind == Tok::Op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                     peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (at_name("in")) {
        next();
        op = "in";
      } else if (at_name("not") && at_name("in", 1)) {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(Expr::Kind::Compare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& op = next();
      e = binary(Expr::Kind::Binary, op.text, std::move(e), parse_concat(), op.line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (at_op("~")) {
      const int line = next().line;
      e = binary(Expr::Kind::Binary, "~", std::move(e), parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& op = next();
      e = binary(Expr::Kind::Binary, op.text, std::move(e), parse_pow(), op.line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (at_op("**")) {
      const int line = next().line;
      e = binary(Expr::Kind::Binary, "**", std::move(e), parse_unary(true), line);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    ExprPtr e;
    if (at_op("-") || at_op("+")) {
      const Token& op = next();
      e = node(Expr::Kind::Unary, op.line);
      e->name = op.text;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    return with_filter ? parse_filter_tests(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    const int line = t.line;
    if (t.kind == Tok::Name) {
      next();
      auto e = node(Expr::Kind::Literal, line);
      if (t.text == "true" || t.text == "True") e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False") e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None") e->value = Value::none();
      else { e->kind = Expr::Kind::Name; e->name = t.text; }
      return e;
    }
    if (t.kind == Tok::String) {
      std::string s;
      while (peek().kind == Tok::String) s += next().text;  // adjacent literals concatenate
      auto e = node(Expr::Kind::Literal, line);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (t.kind == Tok::Int || t.kind == Tok::Float) {
      next();
      auto e = node(Expr::Kind::Literal, line);
      e->value = t.kind == Tok::Int ? Value::integer(t.ival) : Value::number(t.fval);
      return e;
    }
    if (skip_op("(")) {
      if (skip_op(")")) return node(Expr::Kind::Tuple, line);
      ExprPtr e = parse_tuple();
      expect_op(")");
      return e;
    }
    if (skip_op("[")) {
      auto e = node(Expr::Kind::List, line);
      while (!at_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (at_op("]")) break;
        e->args.push_back(parse_expression());
      }
      expect_op("]");
      return e;
    }
    if (skip_op("{")) {
      auto e = node(Expr::Kind::Dict, line);
      while (!at_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (at_op("}")) break;
        e->args.push_back(parse_expression());
        expect_op(":");
        e->args.push_back(parse_expression());
      }
      expect_op("}");
      return e;
    }
    error("unexpected token" + found());
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (;;) {
      const int line = peek().line;
      if (skip_op(".")) {
        if (peek().kind == Tok::Int) {
          auto item = node(Expr::Kind::Item, line);
          auto key = node(Expr::Kind::Literal, line);
          key->value = Value::integer(next().ival);
          item->args.push_back(std::move(e));
          item->args.push_back(std::move(key));
          e = std::move(item);
          continue;
        }
        auto a = node(Expr::Kind::Attr, line);
        a->name = expect_name();
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (skip_op("[")) {
        e = parse_subscript(std::move(e), line);
      } else if (at_op("(")) {
        auto c = node(Expr::Kind::Call, line);
        c->args.push_back(std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    bool slice = false;
    for (int i = 0; i < 3; ++i) {
      if (!at_op(":") && !at_op("]")) parts[i] = parse_expression();
      if (i == 2 || !skip_op(":")) break;
      slice = true;
    }
    expect_op("]");
    auto e = node(slice ? Expr::Kind::Slice : Expr::Kind::Item, line);
    e->args.push_back(std::move(obj));
    if (!slice) {
      if (!parts[0]) error("empty subscript");
      e->args.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) e->args.push_back(std::move(p));
    }
    return e;
  }

  // `(a, b, key=value)`; positional arguments go after args[0] (the callee or the subject).
  void parse_call_args(Expr& call) {
    expect_op("(");
    bool first = true;
    while (!at_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (at_op(")")) break;
      if (peek().kind == Tok::Name && at_op("=", 1)) {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!call.kwargs.empty()) error("positional argument after keyword argument");
        call.args.push_back(parse_expression());
      }
    }
    expect_op(")");
  }

  ExprPtr parse_filters(ExprPtr subject) {
    if (subject) {
      if (!skip_op("|")) return subject;
    }
    do {
      auto f = node(Expr::Kind::Filter, peek().line);
      f->name = expect_name();
      while (skip_op(".")) f->name.append(1, '.').append(expect_name());
      f->args.push_back(std::move(subject));
      if (at_op("(")) parse_call_args(*f);
      subject = std::move(f);
    } while (skip_op("|"));
    return subject;
  }

  ExprPtr parse_filter_tests(ExprPtr e) {
    for (;;) {
      if (at_op("|")) {
        e = parse_filters(std::move(e));
      } else if (at_name("is")) {
        auto t = node(Expr::Kind::Test, next().line);
        t->negated = skip_name("not");
        t->name = expect_name();
        while (skip_op(".")) t->name.append(1, '.').append(expect_name());
        t->args.push_back(std::move(e));
        const Token& n = peek();
        if (at_op("(")) {
          parse_call_args(*t);
        } else if ((n.kind == Tok::Name || n.kind == Tok::String || n.kind == Tok::Int || n.kind == Tok::Float ||
                    at_op("[") || at_op("{")) &&
                   !at_name("else") && !at_name("or") && !at_name("and")) {
          // One bare argument, as in `x is divisibleby 3` or `x is sameas none`.
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0;
};

}  // namespace

Body parse_template(const std::string& src) { return Parser(lex(src)).parse_all(); }

}  // namespace pagoda::jinja
