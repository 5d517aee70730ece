#include "core/grammar/regex_pattern.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "core/grammar/utf8_ranges.h"

namespace pagoda::grammar {
namespace {

// A class member range in code points; escapes and negation are resolved by the parser.
struct Range {
  uint32_t lo, hi;
};

// Grammar literal for one code point as it appears inside a JSON string.
std::string json_char_literal(uint32_t c) {
  switch (c) {
    case '"': return R"("\\\"")";
    case '\\': return R"("\\\\")";
    case '\n': return R"("\\n")";
    case '\t': return R"("\\t")";
    case '\r': return R"("\\r")";
    default: break;
  }
  if (c < 0x20) return fmt::format(R"("\\u{:04x}")", c);
  return fmt::format("[\\U{:08X}]", c);  // unreachable for the escaped set
}

class RegexCompiler {
 public:
  RegexCompiler(std::string_view re, const std::string& any_char) : re_(re), any_(any_char) {}

  Result<std::string> run() {
    const bool anchored_start = !re_.empty() && re_.front() == '^';
    if (anchored_start) {
      re_.remove_prefix(1);
      base_ = 1;
    }
    bool anchored_end = false;
    if (!re_.empty() && re_.back() == '$' && (re_.size() < 2 || re_[re_.size() - 2] != '\\')) {
      anchored_end = true;
      re_.remove_suffix(1);
    }
    auto body = alternatives(0);
    if (!body) return body;
    if (pos_ < re_.size()) return fail(fmt::format("unexpected '{}'", re_[pos_]));
    // An unanchored pattern matches anywhere in the string (JSON Schema semantics).
    std::string out = "( " + *body + " )";
    if (!anchored_start) out = any_ + "* " + out;
    if (!anchored_end) out += " " + any_ + "*";
    return out;
  }

 private:
  Error fail(const std::string& why) const { return make_error(fmt::format("{} at offset {}", why, pos_ + base_)); }
  bool at(char c) const { return pos_ < re_.size() && re_[pos_] == c; }

  Result<std::string> alternatives(int depth) {
    if (depth > 100) return fail("groups nested too deeply");
    std::string out;
    for (;;) {
      auto seq = sequence(depth);
      if (!seq) return seq;
      if (!out.empty()) out += " | ";
      out += seq->empty() ? std::string("\"\"") : *seq;
      if (!at('|')) return out;
      ++pos_;
    }
  }

  Result<std::string> sequence(int depth) {
    std::string out;
    while (pos_ < re_.size() && !at('|') && !at(')')) {
      auto a = atom(depth);
      if (!a) return a;
      auto q = quantifier();
      if (!q) return q.take_error();
      if (!out.empty()) out += " ";
      out += "( ";
      out += *a;
      out += " )";
      out += *q;
    }
    return out;
  }

  Result<std::string> quantifier() {
    if (pos_ >= re_.size()) return std::string();
    std::string q;
    const char c = re_[pos_];
    if (c == '*' || c == '+' || c == '?') {
      q = std::string(1, c);
      ++pos_;
    } else if (c == '{') {
      const size_t close = re_.find('}', pos_);
      if (close == std::string_view::npos) return fail("unterminated {m,n}");
      q = std::string(re_.substr(pos_, close - pos_ + 1));
      for (char d : q.substr(1, q.size() - 2))
        if (!std::isdigit(uint8_t(d)) && d != ',') return fail("bad repetition " + q);
      pos_ = close + 1;
    } else {
      return std::string();
    }
    if (at('?')) ++pos_;  // lazy and greedy match the same language
    if (at('+')) return fail("possessive quantifiers are not supported");
    return q;
  }

  Result<std::string> atom(int depth) {
    const char c = re_[pos_];
    if (c == '(') {
      ++pos_;
      if (at('?')) {
        if (re_.substr(pos_, 2) != "?:") return fail("lookaround and named groups are not supported");
        pos_ += 2;
      }
      auto inner = alternatives(depth + 1);
      if (!inner) return inner;
      if (!at(')')) return fail("missing ')'");
      ++pos_;
      return inner;
    }
    if (c == '[') return char_class();
    if (c == '.') {  // any character but a line break
      ++pos_;
      return ranges_to_grammar({{'\n', '\n'}, {'\r', '\r'}}, true);
    }
    if (c == '^' || c == '$') return fail("anchors are supported only at the start and end");
    if (c == '*' || c == '+' || c == '?' || c == '{' || c == ')') return fail(fmt::format("nothing to repeat before '{}'", c));
    std::vector<Range> ranges;
    auto one = read_char(ranges);
    if (!one) return one.take_error();
    return ranges_to_grammar(ranges, false);
  }

  // One character or escape; a class escape (\d, \w, \s and their negations) appends several.
  Result<bool> read_char(std::vector<Range>& out) {
    uint32_t c = uint8_t(re_[pos_]);
    if (c >= 0x80) return read_utf8(out);
    ++pos_;
    if (c != '\\') {
      out.push_back({c, c});
      return true;
    }
    if (pos_ >= re_.size()) return fail("trailing backslash");
    const char e = re_[pos_++];
    const char lower = char(std::tolower(uint8_t(e)));
    if (lower == 'd' || lower == 'w' || lower == 's') {
      std::vector<CodeRange> set;
      if (lower == 'd') set = {{'0', '9'}};
      if (lower == 'w') set = {{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}};
      if (lower == 's') set = {{' ', ' '}, {'\t', '\r'}};
      for (const auto& r : normalize_ranges(set, e != lower)) out.push_back({r.lo, r.hi});
      return true;
    }
    const uint32_t ctl = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'f' ? '\f' : e == 'v' ? '\v' : 0;
    if (ctl) {
      out.push_back({ctl, ctl});
      return true;
    }
    if (std::isalnum(uint8_t(e))) return fail(fmt::format("escape '\\{}' is not supported", e));
    out.push_back({uint32_t(uint8_t(e)), uint32_t(uint8_t(e))});
    return true;
  }

  Result<bool> read_utf8(std::vector<Range>& out) {
    const uint8_t c = uint8_t(re_[pos_]);
    const int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (n == 0 || pos_ + size_t(n) > re_.size()) return fail("invalid UTF-8");
    uint32_t cp = c & (0x7F >> n);
    for (int i = 1; i < n; ++i) cp = (cp << 6) | (uint8_t(re_[pos_ + size_t(i)]) & 0x3F);
    pos_ += size_t(n);
    out.push_back({cp, cp});
    return true;
  }

  Result<std::string> char_class() {
    ++pos_;  // [
    bool negated = false;
    if (at('^')) {
      negated = true;
      ++pos_;
    }
    std::vector<Range> ranges;
    while (!at(']')) {
      if (pos_ >= re_.size()) return fail("unterminated character class");
      const size_t before = ranges.size();
      const bool single = re_[pos_] != '\\' || (pos_ + 1 < re_.size() && !std::strchr("dDwWsS", re_[pos_ + 1]));
      auto one = read_char(ranges);
      if (!one) return one.take_error();
      if (single && ranges.size() == before + 1 && at('-') && pos_ + 1 < re_.size() && re_[pos_ + 1] != ']') {
        ++pos_;
        std::vector<Range> hi;
        auto h = read_char(hi);
        if (!h) return h.take_error();
        if (hi.size() != 1 || hi[0].lo < ranges.back().lo) return fail("bad range in character class");
        ranges.back().hi = hi[0].lo;
      }
    }
    ++pos_;
    return ranges_to_grammar(ranges, negated);
  }

  // The characters JSON must escape become their escape sequences; the rest one grammar class.
  static std::string ranges_to_grammar(const std::vector<Range>& ranges, bool negated) {
    std::vector<CodeRange> set;
    for (const auto& r : ranges) set.push_back({r.lo, r.hi});
    set = normalize_ranges(set, negated);
    std::string alts, cls;
    for (const auto& r : set) {
      for (uint32_t c = r.lo; c <= std::min<uint32_t>(r.hi, 0x1F); ++c) alts += " | " + json_char_literal(c);
      for (uint32_t c : {uint32_t('"'), uint32_t('\\')})
        if (c >= r.lo && c <= r.hi) alts += " | " + json_char_literal(c);
      // The plain part, split around '"' (0x22) and '\' (0x5C).
      uint32_t lo = std::max<uint32_t>(r.lo, 0x20);
      for (uint32_t cut : {uint32_t('"'), uint32_t('\\'), kMaxCodePoint + 1}) {
        const uint32_t hi = std::min(r.hi, cut - 1);
        if (lo <= hi) cls += fmt::format("\\U{:08X}-\\U{:08X}", lo, hi);
        lo = std::max(lo, cut + 1);
        if (lo > r.hi) break;
      }
    }
    std::string out = cls.empty() ? "" : "[" + cls + "]";
    out += alts;
    if (out.rfind(" | ", 0) == 0) out = out.substr(3);
    return out.empty() ? "[^\\x00-\\U0010FFFF]" : out;
  }

  std::string_view re_;
  std::string any_;
  size_t pos_ = 0, base_ = 0;  // base_: the '^' cut from the front, for error offsets
};

}  // namespace

Result<std::string> regex_to_grammar(std::string_view pattern, const std::string& any_char) {
  return RegexCompiler(pattern, any_char).run();
}

}  // namespace pagoda::grammar
