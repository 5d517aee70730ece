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

// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
size_t contraction_len(const std::vector<uint32_t>& c, size_t i, size_t e) {
  if (c[i] != '\'' || i + 1 >= e) return 0;
  const uint32_t a = c[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < e) {
    const uint32_t b = c[i + 2];
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

Spans split_gpt2(const Decoded& d, const Spans& in) {
  Spans out;
  for (const Span& s : in) {
    for (size_t i = s.b; i < s.e;) {
      const size_t n = gpt2_match(d.cps, i, s.e);
      out.push_back({i, i + n});
      i += n;
    }
  }
  return out;
}

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

bool is_falcon_punct(uint32_t c) {
  if (c < 0x80 && (c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
                   c == '|' || c == '`'))
    return true;
  return unicode_class(c) == kClassPunct;
}

size_t match_falcon_punct(const Decoded& d, size_t i, size_t e) {
  size_t k = i;
  while (k < e && is_falcon_punct(d.cps[k])) ++k;
  return k - i;
}

size_t match_three_digits(const Decoded& d, size_t i, size_t e) {
  auto digit = [&](size_t k) { return d.cps[k] >= '0' && d.cps[k] <= '9'; };
  return i + 3 <= e && digit(i) && digit(i + 1) && digit(i + 2) ? 3 : 0;
}

}  // namespace

Result<PreTokenizer> pre_tokenizer_for(std::string_view name) {
  if (name.empty() || name == "default" || name == "gpt-2" || name == "gpt2" || name == "mpt" ||
      name == "olmo" || name == "jais")
    return PreTokenizer::kGpt2;
  if (name == "starcoder" || name == "refact" || name == "command-r" || name == "smollm" ||
      name == "codeshell")
    return PreTokenizer::kStarcoder;
  if (name == "falcon") return PreTokenizer::kFalcon;
  return make_error("unsupported tokenizer.ggml.pre '" + std::string(name) +
                    "' (supported: default, gpt-2, mpt, olmo, jais, starcoder, refact, command-r, smollm, "
                    "codeshell, falcon)");
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
      spans = split_matches(d, split_gpt2(d, split_matches(d, spans, match_falcon_punct)), match_three_digits);
      break;
  }
  for (const Span& s : spans) out.push_back(text.substr(d.offs[s.b], d.offs[s.e] - d.offs[s.b]));
}

}  // namespace pagoda::tok
