// The grammar text form: `name ::= alternatives`, see docs/structured_output.md for the syntax.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "core/grammar/grammar.h"
#include "core/tokenizer/unicode.h"

namespace pagoda::grammar {
namespace {

bool is_name_char(char c) { return std::isalnum(uint8_t(c)) || c == '_' || c == '-'; }

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < s_.size(); ++i)
      if (s_[i] == '\n') line_starts_.push_back(i + 1);
  }

  Result<std::vector<RuleDef>> parse_rules() {
    std::vector<RuleDef> rules;
    skip_space();
    while (pos_ < s_.size()) {
      RuleDef d;
      set_where(d.line, d.col);
      d.name = read_name();
      if (d.name.empty()) return err("expected a rule name");
      skip_space();
      if (s_.substr(pos_, 3) != "::=") return err("expected '::=' after rule name '" + d.name + "'");
      pos_ += 3;
      auto body = parse_alternatives(0);
      if (!body) return body.take_error();
      d.body = std::move(*body);
      rules.push_back(std::move(d));
      skip_space();
    }
    if (rules.empty()) return err("the grammar has no rules");
    return rules;
  }

 private:
  Error err(const std::string& what) const {
    int line = 0, col = 0;
    set_where(line, col);
    return make_error(fmt::format("grammar:{}:{}: {}", line, col, what));
  }
  void set_where(int& line, int& col) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos_) - 1;
    line = int(it - line_starts_.begin()) + 1;
    col = int(pos_ - *it) + 1;
  }

  void skip_space() {
    while (pos_ < s_.size()) {
      if (std::isspace(uint8_t(s_[pos_]))) {
        ++pos_;
      } else if (s_[pos_] == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string read_name() {
    const size_t start = pos_;
    while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }

  // A name followed by '::=' starts the next rule, which ends the current one.
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < s_.size() && is_name_char(s_[p])) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t' || s_[p] == '\r' || s_[p] == '\n')) ++p;
    return s_.substr(p, 3) == "::=";
  }

  Result<Expr> parse_alternatives(int depth) {
    if (depth > 200) return err("groups nested too deeply");
    Expr alt;
    alt.kind = Expr::Kind::kAlt;
    for (;;) {
      auto seq = parse_sequence(depth);
      if (!seq) return seq;
      alt.children.push_back(std::move(*seq));
      skip_space();
      if (pos_ < s_.size() && s_[pos_] == '|') {
        ++pos_;
        continue;
      }
      break;
    }
    if (alt.children.size() == 1) return std::move(alt.children[0]);
    return alt;
  }

  Result<Expr> parse_sequence(int depth) {
    Expr seq;
    seq.kind = Expr::Kind::kSeq;
    for (;;) {
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] == '|' || s_[pos_] == ')' || at_rule_start()) break;
      auto item = parse_item(depth);
      if (!item) return item;
      auto rep = parse_postfix(std::move(*item));
      if (!rep) return rep;
      seq.children.push_back(std::move(*rep));
    }
    return seq;
  }

  Result<Expr> parse_item(int depth) {
    Expr e;
    set_where(e.line, e.col);
    const char c = s_[pos_];
    if (c == '"') return parse_literal();
    if (c == '[') return parse_class();
    if (c == '.') {
      ++pos_;
      e.kind = Expr::Kind::kClass;
      e.negated = true;  // the empty negated class: any code point
      return e;
    }
    if (c == '(') {
      ++pos_;
      auto inner = parse_alternatives(depth + 1);
      if (!inner) return inner;
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != ')') return err("expected ')' to close the group");
      ++pos_;
      return inner;
    }
    if (is_name_char(c)) {
      e.kind = Expr::Kind::kRef;
      e.text = read_name();
      return e;
    }
    return err(fmt::format("unexpected character '{}'", c));
  }

  Result<Expr> parse_postfix(Expr item) {
    for (;;) {
      if (pos_ >= s_.size()) return item;
      const char c = s_[pos_];
      Expr rep;
      set_where(rep.line, rep.col);
      rep.kind = Expr::Kind::kRepeat;
      if (c == '*' || c == '+' || c == '?') {
        ++pos_;
        rep.min = c == '+' ? 1 : 0;
        rep.max = c == '?' ? 1 : -1;
      } else if (c == '{') {
        ++pos_;
        auto lo = read_int();
        if (!lo) return lo.take_error();
        rep.min = rep.max = *lo;
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          rep.max = -1;
          if (pos_ < s_.size() && s_[pos_] != '}') {
            auto hi = read_int();
            if (!hi) return hi.take_error();
            rep.max = *hi;
          }
        }
        if (pos_ >= s_.size() || s_[pos_] != '}') return err("expected '}' to close the repetition");
        ++pos_;
      } else {
        return item;
      }
      rep.children.push_back(std::move(item));
      item = std::move(rep);
    }
  }

  Result<int32_t> read_int() {
    const size_t start = pos_;
    int64_t v = 0;
    while (pos_ < s_.size() && std::isdigit(uint8_t(s_[pos_])) && v < (int64_t(1) << 31)) v = v * 10 + (s_[pos_++] - '0');
    if (pos_ == start) return err("expected a number in the repetition");
    if (v >= (int64_t(1) << 31)) return err("repetition count too large");
    return int32_t(v);
  }

  // One character of a literal or class: an escape, or one UTF-8 encoded code point.
  Result<uint32_t> read_char() {
    if (pos_ >= s_.size()) return err("unexpected end of grammar");
    const uint8_t c = uint8_t(s_[pos_]);
    if (c == '\\') return read_escape();
    int n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (n == 0 || pos_ + size_t(n) > s_.size()) return err("invalid UTF-8 in the grammar");
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int i = 1; i < n; ++i) {
      const uint8_t b = uint8_t(s_[pos_ + size_t(i)]);
      if ((b & 0xC0) != 0x80) return err("invalid UTF-8 in the grammar");
      cp = (cp << 6) | (b & 0x3F);
    }
    pos_ += size_t(n);
    return cp;
  }

  Result<uint32_t> read_escape() {
    const size_t start = pos_++;  // the backslash
    if (pos_ >= s_.size()) return err("unfinished escape");
    const char c = s_[pos_++];
    switch (c) {
      case 'n': return uint32_t('\n');
      case 'r': return uint32_t('\r');
      case 't': return uint32_t('\t');
      case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': return uint32_t(uint8_t(c));
      case 'x': return read_hex(2);
      case 'u': return read_hex(4);
      case 'U': return read_hex(8);
      default: pos_ = start; return err(fmt::format("unknown escape '\\{}'", c));
    }
  }

  Result<uint32_t> read_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      if (pos_ >= s_.size() || !std::isxdigit(uint8_t(s_[pos_]))) return err(fmt::format("expected {} hex digits", digits));
      const char h = char(std::tolower(uint8_t(s_[pos_++])));
      v = v * 16 + uint32_t(h <= '9' ? h - '0' : h - 'a' + 10);
    }
    if (v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF)) return err(fmt::format("U+{:X} is not a Unicode scalar value", v));
    return v;
  }

  Result<Expr> parse_literal() {
    Expr e;
    set_where(e.line, e.col);
    e.kind = Expr::Kind::kLiteral;
    ++pos_;
    for (;;) {
      if (pos_ >= s_.size()) return make_error(fmt::format("grammar:{}:{}: unterminated string literal", e.line, e.col));
      if (s_[pos_] == '"') break;
      auto cp = read_char();
      if (!cp) return cp.take_error();
      tok::utf8_append(e.text, *cp);
    }
    ++pos_;
    return e;
  }

  Result<Expr> parse_class() {
    Expr e;
    set_where(e.line, e.col);
    e.kind = Expr::Kind::kClass;
    ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '^') {
      e.negated = true;
      ++pos_;
    }
    for (;;) {
      if (pos_ >= s_.size()) return make_error(fmt::format("grammar:{}:{}: unterminated character class", e.line, e.col));
      if (s_[pos_] == ']') break;
      auto lo = read_char();
      if (!lo) return lo.take_error();
      uint32_t hi = *lo;
      if (pos_ + 1 < s_.size() && s_[pos_] == '-' && s_[pos_ + 1] != ']') {
        ++pos_;
        auto h = read_char();
        if (!h) return h.take_error();
        hi = *h;
        if (hi < *lo) return err("character range is reversed");
      }
      e.ranges.push_back({*lo, hi});
    }
    ++pos_;
    return e;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::vector<size_t> line_starts_;
};

}  // namespace

Result<Grammar> Grammar::parse(std::string_view text) {
  auto rules = Parser(text).parse_rules();
  if (!rules) return rules.take_error();
  return build(*rules, "root");
}

}  // namespace pagoda::grammar
