#include "core/tokenizer/pretokenize.h"

#include <string>

#include "core/tokenizer/unicode.h"

namespace pagoda::tok {
namespace {

// The text decoded once: codepoints with their byte offsets (offs has one extra end entry).
struct Decoded {
  std::vector<uint32_t> cps;
  std::vector<uint32_t> offs;
};

Decoded decode(std::string_view text) {
  Decoded d;
  d.cps.reserve(text.size());
  d.offs.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    const size_t n = utf8_decode(text.data() + i, text.size() - i, &cp);
    d.cps.push_back(cp);
    d.offs.push_back(uint32_t(i));
    i += n;
  }
  d.offs.push_back(uint32_t(text.size()));
  return d;
}

// Half-open codepoint range.
struct Span {
  size_t b;
  size_t e;
};
using Spans = std::vector<Span>;

bool is_letter(uint32_t c) { return unicode_class(c) == kClassLetter; }
bool is_number(uint32_t c) { return unicode_class(c) == kClassNumber; }
bool is_other(uint32_t c) { return !unicode_is_space(c) && unicode_class(c) != kClassLetter && unicode_class(c) != kClassNumber; }

bool is_cr_or_lf(uint32_t c) { return c == '\r' || c == '\n'; }

// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0; `any_case` also takes 'S, 'Re, ...
size_t contraction_len(const std::vector<uint32_t>& c, size_t i, size_t e, bool any_case = false) {
  if (c[i] != '\'' || i + 1 >= e) return 0;
  auto lower = [any_case](uint32_t x) { return any_case && x >= 'A' && x <= 'Z' ? x + ('a' - 'A') : x; };
  const uint32_t a = lower(c[i + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < e) {
    const uint32_t b = lower(c[i + 2]);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

// Length of the GPT-2 pattern's match at i (< e); the alternatives are tried in regex order.
size_t gpt2_match(const std::vector<uint32_t>& c, size_t i, size_t e) {
  if (size_t n = contraction_len(c, i, e)) return n;
  const size_t j = i + (c[i] == ' ' ? 1 : 0);
  if (j < e) {
    for (auto cls : {is_letter, is_number, is_other}) {
      if (!cls(c[j])) continue;
      size_t k = j + 1;
      while (k < e && cls(c[k])) ++k;
      return k - i;
    }
  }
  // \s+(?!\S) leaves the last space of a run to prefix the next word; \s+ takes a lone one.
  size_t k = i;
  while (k < e && unicode_is_space(c[k])) ++k;
  if (k == e || k - i == 1) return k - i;
  return k - i - 1;
}

// The alternatives Llama 3, Qwen2, Tekken and GPT-4o share after their word alternatives, at i
// (< e): \p{N}{1,digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ (with `slash`, [\r\n/]*
// after the symbols). Whatever is at i, one of them matches.
size_t tail_match(const std::vector<uint32_t>& c, size_t i, size_t e, size_t digits, bool slash) {
  if (is_number(c[i])) {
    size_t k = i + 1;
    while (k < e && k - i < digits && is_number(c[k])) ++k;
    return k - i;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]* : an optional space, symbols, then any line breaks.
  const size_t s = c[i] == ' ' && i + 1 < e && is_other(c[i + 1]) ? i + 1 : i;
  if (is_other(c[s])) {
    size_t k = s + 1;
    while (k < e && is_other(c[k])) ++k;
    while (k < e && (is_cr_or_lf(c[k]) || (slash && c[k] == '/'))) ++k;
    return k - i;
  }
  // c[i] is whitespace. \s*[\r\n]+ : the run up to and including its last line break.
  size_t k = i, last_break = e;
  for (; k < e && unicode_is_space(c[k]); ++k)
    if (is_cr_or_lf(c[k])) last_break = k;
  if (k == i) return 1;  // (every character is a letter, number, symbol or space: not reached)
  if (last_break < e) return last_break + 1 - i;
  // \s+(?!\S) leaves the last space of a run to the next piece; \s+ takes a lone one.
  if (k == e || k - i == 1) return k - i;
  return k - i - 1;
}

// [^\r\n\p{L}\p{N}] : the one character a word may start with before its letters.
bool is_word_lead(uint32_t c) { return !is_cr_or_lf(c) && !is_letter(c) && !is_number(c); }

// Length of the Llama 3 pattern's match at i (< e), numbers at most `digits` long (Qwen2: 1).
size_t llama3_match(const std::vector<uint32_t>& c, size_t i, size_t e, size_t digits) {
  if (size_t n = contraction_len(c, i, e, /*any_case=*/true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  const size_t j = is_word_lead(c[i]) && i + 1 < e && is_letter(c[i + 1]) ? i + 1 : i;
  if (is_letter(c[j])) {
    size_t k = j + 1;
    while (k < e && is_letter(c[k])) ++k;
    return k - i;
  }
  return tail_match(c, i, e, digits, false);
}

// Tekken's and GPT-4o's words, as llama.cpp runs them: "upper" is a letter other than a-z, "lower"
// one other than A-Z (so a letter outside ASCII is both). [^\r\n\p{L}\p{N}]?U*L+C? or else
// [^\r\n\p{L}\p{N}]?U+L*C?, C an optional contraction ('s 't 're 've 'm 'll 'd, any case) for GPT-4o.
bool is_upper_like(uint32_t c) { return is_letter(c) && !(c >= 'a' && c <= 'z'); }
bool is_lower_like(uint32_t c) { return is_letter(c) && !(c >= 'A' && c <= 'Z'); }

size_t cased_match(const std::vector<uint32_t>& c, size_t i, size_t e, size_t digits, bool contractions) {
  const size_t j = is_word_lead(c[i]) && i + 1 < e && is_letter(c[i + 1]) ? i + 1 : i;
  if (!is_letter(c[j])) return tail_match(c, i, e, digits, true);
  size_t u = j;  // the run of upper-like letters: U* as far as it goes
  while (u < e && is_upper_like(c[u])) ++u;
  size_t end;
  if (u < e && c[u] >= 'a' && c[u] <= 'z') {
    end = u;  // U* whole, then L+ over the lower-like letters that follow
    while (end < e && is_lower_like(c[end])) ++end;
  } else {
    // L+ cannot start past the run: U* gives back letters until one is lower-like (a letter
    // outside ASCII); L+ is that letter, the run's rest being A-Z. With none, U+L* is the run.
    end = u;
    while (end > j && !is_lower_like(c[end - 1])) --end;
    if (end == j) end = u;
  }
  if (contractions && end < e) end += contraction_len(c, end, e, /*any_case=*/true);
  return end - i;
}

// Cuts every span into consecutive matches of `match` (a pattern that matches at every position).
template <typename Match>
Spans split_all(const Decoded& d, const Spans& in, Match match) {
  Spans out;
  for (const Span& s : in) {
    for (size_t i = s.b; i < s.e;) {
      const size_t n = match(d.cps, i, s.e);
      out.push_back({i, i + n});
      i += n;
    }
  }
  return out;
}

Spans split_gpt2(const Decoded& d, const Spans& in) { return split_all(d, in, gpt2_match); }

// Splits each span into maximal runs where `match(d, i, e)` (the length of a match starting at i,
// 0 for none) finds matches, keeping the text between matches as spans too.
template <typename Match>
Spans split_matches(const Decoded& d, const Spans& in, Match match) {
  Spans out;
  for (const Span& s : in) {
    size_t gap = s.b;
    for (size_t i = s.b; i < s.e;) {
      const size_t n = match(d, i, s.e);
      if (n == 0) {
        ++i;
        continue;
      }
      if (gap < i) out.push_back({gap, i});
      out.push_back({i, i + n});
      i += n;
      gap = i;
    }
    if (gap < s.e) out.push_back({gap, s.e});
  }
  return out;
}

size_t match_number(const Decoded& d, size_t i, size_t) { return is_number(d.cps[i]) ? 1 : 0; }

// X+ for a class X: the run of it at i (0 for none).
template <bool (*kIs)(uint32_t)>
size_t match_run(const Decoded& d, size_t i, size_t e) {
  size_t k = i;
  while (k < e && kIs(d.cps[k])) ++k;
  return k - i;
}

// [\p{P}$+<=>^~|] (llama.cpp's default pattern), with '`' too for Falcon's.
template <bool kBacktick>
bool is_punct_run_char(uint32_t c) {
  if (c < 0x80 && (c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
                   c == '|' || (kBacktick && c == '`')))
    return true;
  return unicode_class(c) == kClassPunct;
}

size_t match_three_digits(const Decoded& d, size_t i, size_t e) {
  auto digit = [&](size_t k) { return d.cps[k] >= '0' && d.cps[k] <= '9'; };
  return i + 3 <= e && digit(i) && digit(i + 1) && digit(i + 2) ? 3 : 0;
}

// \s?X+ for a class X: an optional whitespace character, then a run of X.
template <bool (*kIs)(uint32_t)>
size_t match_space_run(const Decoded& d, size_t i, size_t e) {
  const size_t j = unicode_is_space(d.cps[i]) && i + 1 < e && kIs(d.cps[i + 1]) ? i + 1 : i;
  const size_t n = match_run<kIs>(d, j, e);
  return n ? j + n - i : 0;
}

bool is_punct(uint32_t c) { return unicode_class(c) == kClassPunct; }

// DeepSeek's CJK ranges: U+4E00..U+9FA5, U+0800..U+4E00, U+AC00..U+D7FF.
bool is_deepseek_cjk(uint32_t c) { return (c >= 0x0800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF); }

size_t match_cr_or_lf(const Decoded& d, size_t i, size_t) { return is_cr_or_lf(d.cps[i]) ? 1 : 0; }

}  // namespace

bool pre_tokenizer_ignores_merges(PreTokenizer kind) { return kind == PreTokenizer::kLlama3 || kind == PreTokenizer::kTekken; }
bool pre_tokenizer_adds_bos(PreTokenizer kind) { return kind == PreTokenizer::kLlama3 || kind == PreTokenizer::kTekken; }

Result<PreTokenizer> pre_tokenizer_for(std::string_view name) {
  // A file without the key (older conversions) gets llama.cpp's default, not GPT-2's pattern.
  if (name.empty() || name == "default") return PreTokenizer::kDefault;
  if (name == "gpt-2" || name == "gpt2" || name == "mpt" || name == "olmo" || name == "jais") return PreTokenizer::kGpt2;
  if (name == "starcoder" || name == "refact" || name == "command-r" || name == "smollm" ||
      name == "codeshell")
    return PreTokenizer::kStarcoder;
  if (name == "falcon") return PreTokenizer::kFalcon;
  // The names llama.cpp gives these patterns (as convert_hf_to_gguf.py writes them).
  if (name == "llama3" || name == "llama-v3" || name == "llama-bpe" || name == "falcon3" || name == "pixtral")
    return PreTokenizer::kLlama3;
  if (name == "qwen2" || name == "deepseek-r1-qwen") return PreTokenizer::kQwen2;
  if (name == "deepseek-coder") return PreTokenizer::kDeepseekCoder;
  if (name == "tekken") return PreTokenizer::kTekken;
  if (name == "gpt-4o" || name == "llama4") return PreTokenizer::kGpt4o;
  return make_error("unsupported tokenizer.ggml.pre '" + std::string(name) +
                    "' (supported: default, gpt-2, mpt, olmo, jais, starcoder, refact, command-r, smollm, "
                    "codeshell, falcon, llama-bpe (llama3, llama-v3, falcon3, pixtral), qwen2 (deepseek-r1-qwen), "
                    "deepseek-coder, tekken, gpt-4o (llama4))");
}

void pretokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& out) {
  if (text.empty()) return;
  const Decoded d = decode(text);
  Spans spans{{0, d.cps.size()}};
  switch (kind) {
    case PreTokenizer::kGpt2:
      spans = split_gpt2(d, spans);
      break;
    case PreTokenizer::kStarcoder:
      spans = split_gpt2(d, split_matches(d, spans, match_number));
      break;
    case PreTokenizer::kFalcon:
      spans = split_matches(d, split_gpt2(d, split_matches(d, spans, match_run<is_punct_run_char<true>>)), match_three_digits);
      break;
    case PreTokenizer::kDefault:
      spans = split_gpt2(d, split_matches(d, spans, match_run<is_punct_run_char<false>>));
      spans = split_matches(d, split_matches(d, spans, match_run<is_number>), match_three_digits);
      break;
    case PreTokenizer::kLlama3:
    case PreTokenizer::kQwen2: {
      const size_t digits = kind == PreTokenizer::kLlama3 ? 3 : 1;
      spans = split_all(d, spans, [digits](const std::vector<uint32_t>& c, size_t i, size_t e) {
        return llama3_match(c, i, e, digits);
      });
      break;
    }
    case PreTokenizer::kTekken:
    case PreTokenizer::kGpt4o: {
      const bool gpt4o = kind == PreTokenizer::kGpt4o;
      spans = split_all(d, spans, [gpt4o](const std::vector<uint32_t>& c, size_t i, size_t e) {
        return cased_match(c, i, e, gpt4o ? 3 : 1, gpt4o);
      });
      break;
    }
    case PreTokenizer::kDeepseekCoder:
      spans = split_matches(d, spans, match_cr_or_lf);
      spans = split_matches(d, spans, match_space_run<is_letter>);
      spans = split_matches(d, spans, match_space_run<is_punct>);
      spans = split_matches(d, spans, match_run<is_deepseek_cjk>);
      spans = split_matches(d, spans, match_number);
      break;
  }
  for (const Span& s : spans) out.push_back(text.substr(d.offs[s.b], d.offs[s.e] - d.offs[s.b]));
}

}  // namespace pagoda::tok
