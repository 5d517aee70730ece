#include "core/chat/lexer.h"

#include <cctype>
#include <string_view>

#include "core/chat/value.h"
#include "core/tokenizer/unicode.h"

namespace pagoda::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

class Lexer {
 public:
  explicit Lexer(const std::string& src) : s_(src) {}

  std::vector<Token> run() {
    while (pos_ < s_.size()) {
      const size_t start = find_tag(pos_);
      std::string text = s_.substr(pos_, start - pos_);
      if (start == s_.size()) {
        emit_text(std::move(text));
        advance_to(start);
        break;
      }
      const char kind = s_[start + 1];  // '{', '%' or '#'
      const char marker = start + 2 < s_.size() ? s_[start + 2] : '\0';
      if (marker == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (marker != '+' && kind != '{') {
        lstrip_block(text, pos_);
      }
      emit_text(std::move(text));
      advance_to(start);
      pos_ += 2 + (marker == '-' || marker == '+');
      if (kind == '#') skip_comment();
      else if (kind == '%' && try_raw()) continue;
      else lex_tag(kind == '%');
    }
    tokens_.push_back(Token{Tok::Eof, "", line_, 0, 0});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(const std::string& msg) { fail("line " + std::to_string(line_) + ": " + msg); }

  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < s_.size(); ++i)
      if (s_[i] == '{' && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return s_.size();
  }

  void advance_to(size_t p) {
    for (; pos_ < p; ++pos_)
      if (s_[pos_] == '\n') ++line_;
  }

  void emit_text(std::string text) {
    if (!text.empty()) tokens_.push_back(Token{Tok::Text, std::move(text), line_, 0, 0});
  }

  // lstrip_blocks: spaces and tabs between a line start and a block or comment tag go away.
  void lstrip_block(std::string& text, size_t text_start) const {
    size_t i = text.size();
    while (i > 0 && (text[i - 1] == ' ' || text[i - 1] == '\t')) --i;
    const bool at_line_start = i > 0 ? text[i - 1] == '\n' : (text_start == 0 || s_[text_start - 1] == '\n');
    if (at_line_start) text.resize(i);
  }

  // After a tag's closing delimiter: `-` strips all whitespace, trim_blocks drops one newline.
  void after_tag_end(bool minus, bool trim_newline) {
    if (minus) {
      while (pos_ < s_.size() && is_space(s_[pos_])) advance_to(pos_ + 1);
    } else if (trim_newline) {
      if (s_.compare(pos_, 2, "\r\n") == 0) advance_to(pos_ + 2);
      else if (pos_ < s_.size() && s_[pos_] == '\n') advance_to(pos_ + 1);
    }
  }

  void skip_comment() {
    const size_t end = s_.find("#}", pos_);
    if (end == std::string::npos) error("unterminated comment");
    const bool minus = end > pos_ && s_[end - 1] == '-';
    advance_to(end + 2);
    after_tag_end(minus, true);
  }

  // `{% raw %}...{% endraw %}`: the body is text, tags inside it are not interpreted.
  bool try_raw() {
    size_t p = pos_;
    while (p < s_.size() && is_space(s_[p])) ++p;
    if (s_.compare(p, 3, "raw") != 0 || (p + 3 < s_.size() && is_name_char(s_[p + 3]))) return false;
    p += 3;
    while (p < s_.size() && is_space(s_[p])) ++p;
    const bool minus = p < s_.size() && s_[p] == '-';
    if (minus) ++p;
    if (s_.compare(p, 2, "%}") != 0) return false;
    advance_to(p + 2);
    after_tag_end(minus, true);
    for (size_t q = s_.find("{%", pos_); q != std::string::npos; q = s_.find("{%", q + 2)) {
      size_t r = q + 2;
      const bool lead_minus = r < s_.size() && s_[r] == '-';
      if (lead_minus || (r < s_.size() && s_[r] == '+')) ++r;
      while (r < s_.size() && is_space(s_[r])) ++r;
      if (s_.compare(r, 6, "endraw") != 0) continue;
      r += 6;
      while (r < s_.size() && is_space(s_[r])) ++r;
      const bool end_minus = r < s_.size() && s_[r] == '-';
      if (end_minus) ++r;
      if (s_.compare(r, 2, "%}") != 0) continue;
      std::string body = s_.substr(pos_, q - pos_);
      if (lead_minus) while (!body.empty() && is_space(body.back())) body.pop_back();
      else lstrip_block(body, pos_);
      emit_text(std::move(body));
      advance_to(r + 2);
      after_tag_end(end_minus, true);
      return true;
    }
    error("unterminated raw block");
  }

  void lex_tag(bool block) {
    const int open_line = line_;
    tokens_.push_back(Token{block ? Tok::BlockBegin : Tok::VarBegin, "", line_, 0, 0});
    int depth = 0;  // brackets open: a closing delimiter inside them is an operator, as in Jinja2
    const char closer = block ? '%' : '}';
    for (;;) {
      while (pos_ < s_.size() && is_space(s_[pos_])) advance_to(pos_ + 1);
      if (pos_ >= s_.size()) fail("line " + std::to_string(open_line) + ": unterminated tag");
      if (depth == 0) {
        const bool minus = s_[pos_] == '-' && pos_ + 2 < s_.size() && s_[pos_ + 1] == closer && s_[pos_ + 2] == '}';
        if (minus || (s_[pos_] == closer && pos_ + 1 < s_.size() && s_[pos_ + 1] == '}')) {
          tokens_.push_back(Token{block ? Tok::BlockEnd : Tok::VarEnd, "", line_, 0, 0});
          advance_to(pos_ + 2 + minus);
          after_tag_end(minus, block);
          return;
        }
      }
      lex_token(depth);
    }
  }

  void lex_token(int& depth) {
    const char c = s_[pos_];
    if (is_name_start(c)) {
      size_t e = pos_;
      while (e < s_.size() && is_name_char(s_[e])) ++e;
      tokens_.push_back(Token{Tok::Name, s_.substr(pos_, e - pos_), line_, 0, 0});
      pos_ = e;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      lex_number();
    } else if (c == '\'' || c == '"') {
      lex_string(c);
    } else {
      static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                   "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
      for (const char* op : kOps) {
        const std::string_view o(op);
        if (s_.compare(pos_, o.size(), o) != 0) continue;
        if (o == "(" || o == "[" || o == "{") ++depth;
        if ((o == ")" || o == "]" || o == "}") && depth > 0) --depth;
        tokens_.push_back(Token{Tok::Op, std::string(o), line_, 0, 0});
        pos_ += o.size();
        return;
      }
      error(std::string("unexpected character '") + c + "'");
    }
  }

  void lex_number() {
    size_t e = pos_;
    bool is_float = false;
    std::string digits;
    auto take_digits = [&] {
      while (e < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[e])) || s_[e] == '_'))
        if (s_[e++] != '_') digits += s_[e - 1];
    };
    take_digits();
    if (e + 1 < s_.size() && s_[e] == '.' && std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
      is_float = true;
      digits += s_[e++];
      take_digits();
    }
    if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      size_t x = e + 1;
      if (x < s_.size() && (s_[x] == '+' || s_[x] == '-')) ++x;
      if (x < s_.size() && std::isdigit(static_cast<unsigned char>(s_[x]))) {
        is_float = true;
        digits += s_.substr(e, x - e);
        e = x;
        take_digits();
      }
    }
    Token t{is_float ? Tok::Float : Tok::Int, digits, line_, 0, 0};
    try {
      if (is_float) t.fval = std::stod(digits);
      else t.ival = std::stoll(digits);
    } catch (...) {
      error("number out of range: " + digits);
    }
    tokens_.push_back(std::move(t));
    pos_ = e;
  }

  void lex_string(char quote) {
    const int start_line = line_;
    std::string out;
    size_t p = pos_ + 1;
    for (;; ++p) {
      if (p >= s_.size()) fail("line " + std::to_string(start_line) + ": unterminated string");
      const char c = s_[p];
      if (c == quote) break;
      if (c != '\\' || p + 1 >= s_.size()) { out += c; continue; }
      const char n = s_[++p];
      switch (n) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '0': out += '\0'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t len = n == 'x' ? 2 : n == 'u' ? 4 : 8;
          if (p + len >= s_.size()) error("truncated escape in string");
          uint32_t cp = 0;
          for (size_t k = 1; k <= len; ++k) {
            const char h = s_[p + k];
            if (!std::isxdigit(static_cast<unsigned char>(h))) error("bad \\x/\\u escape in string");
            cp = cp * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
          }
          tok::utf8_append(out, cp);
          p += len;
          break;
        }
        default: out += '\\'; out += n;  // Python keeps unknown escapes as written
      }
    }
    tokens_.push_back(Token{Tok::String, std::move(out), line_, 0, 0});
    advance_to(p + 1);
  }

  const std::string& s_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(const std::string& src) { return Lexer(src).run(); }

}  // namespace pagoda::jinja
