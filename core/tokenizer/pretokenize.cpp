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

// What a run of symbols takes after it: [\r\n]* (Llama 3, Qwen2), [\r\n/]* (Tekken, GPT-4o) or
// nothing (Seed-Coder).
enum class Trail { kBreaks, kBreaksOrSlash, kNothing };

// The alternatives Llama 3, Qwen2, Seed-Coder, Tekken and GPT-4o share after their word
// alternatives, at i (< e): \p{N}{1,digits}| ?[^\s\p{L}\p{N}]+T|\s*[\r\n]+|\s+(?!\S)|\s+ (T: `trail`).
// Whatever is at i, one of them matches.
size_t tail_match(const std::vector<uint32_t>& c, size_t i, size_t e, size_t digits, Trail trail) {
  if (is_number(c[i])) {
    size_t k = i + 1;
    while (k < e && k - i < digits && is_number(c[k])) ++k;
    return k - i;
  }
  //  ?[^\s\p{L}\p{N}]+T : an optional space, symbols, then (T) any line breaks.
  const size_t s = c[i] == ' ' && i + 1 < e && is_other(c[i + 1]) ? i + 1 : i;
  if (is_other(c[s])) {
    size_t k = s + 1;
    while (k < e && is_other(c[k])) ++k;
    if (trail != Trail::kNothing)
      while (k < e && (is_cr_or_lf(c[k]) || (trail == Trail::kBreaksOrSlash && c[k] == '/'))) ++k;
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
size_t llama3_match(const std::vector<uint32_t>& c, size_t i, size_t e, size_t digits, Trail trail) {
  if (size_t n = contraction_len(c, i, e, /*any_case=*/true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  const size_t j = is_word_lead(c[i]) && i + 1 < e && is_letter(c[i + 1]) ? i + 1 : i;
  if (is_letter(c[j])) {
    size_t k = j + 1;
    while (k < e && is_letter(c[k])) ++k;
    return k - i;
  }
  return tail_match(c, i, e, digits, trail);
}

// Tekken's and GPT-4o's words, as llama.cpp runs them: "upper" is a letter other than a-z, "lower"
// one other than A-Z (so a letter outside ASCII is both). [^\r\n\p{L}\p{N}]?U*L+C? or else
// [^\r\n\p{L}\p{N}]?U+L*C?, C an optional contraction ('s 't 're 've 'm 'll 'd, any case) for GPT-4o.
bool is_upper_like(uint32_t c) { return is_letter(c) && !(c >= 'a' && c <= 'z'); }
bool is_lower_like(uint32_t c) { return is_letter(c) && !(c >= 'A' && c <= 'Z'); }

size_t cased_match(const std::vector<uint32_t>& c, size_t i, size_t e, size_t digits, bool contractions) {
  const size_t j = is_word_lead(c[i]) && i + 1 < e && is_letter(c[i + 1]) ? i + 1 : i;
  if (!is_letter(c[j])) return tail_match(c, i, e, digits, Trail::kBreaksOrSlash);
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

// L?X+ for classes L and X: an optional character of L, then a run of X.
template <bool (*kLead)(uint32_t), bool (*kIs)(uint32_t)>
size_t match_led_run(const Decoded& d, size_t i, size_t e) {
  const size_t j = kLead(d.cps[i]) && i + 1 < e && kIs(d.cps[i + 1]) ? i + 1 : i;
  const size_t n = match_run<kIs>(d, j, e);
  return n ? j + n - i : 0;
}
// \s?X+ : an optional whitespace character, then a run of X.
template <bool (*kIs)(uint32_t)>
size_t match_space_run(const Decoded& d, size_t i, size_t e) {
  return match_led_run<unicode_is_space, kIs>(d, i, e);
}

bool is_punct(uint32_t c) { return unicode_class(c) == kClassPunct; }

// The patterns written with explicit ranges and no \p{..} class (DeepSeek's, BLOOM's) run in
// llama.cpp through std::wregex on a copy of the text where every non-ASCII whitespace character
// is U+000B, so that \s matches it; such a character is then in none of their ranges (U+2028 is not
// one of DeepSeek's CJK characters, nor U+3000 its punctuation). Pagoda matches llama.cpp there.
bool is_wide_space(uint32_t c) { return c > 0x7F && unicode_is_space(c); }

struct Range {
  uint32_t lo, hi;
};
template <size_t N>
bool in_ranges(const Range (&r)[N], uint32_t c) {
  size_t lo = 0, hi = N;  // the first range whose end is >= c
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (r[mid].hi < c) lo = mid + 1;
    else hi = mid;
  }
  return lo < N && r[lo].lo <= c;
}

// DeepSeek's CJK ranges: U+4E00..U+9FA5, U+0800..U+4E00, U+AC00..U+D7FF.
bool is_deepseek_cjk(uint32_t c) {
  return ((c >= 0x0800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF)) && !is_wide_space(c);
}

// DeepSeek LLM's letters: the ranges its tokenizer.json lists (the cased letters, Lu/Ll/Lt, of
// Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, Glagolitic, Coptic, full-width Latin,
// Deseret, Osage, Old Hungarian, Warang Citi and Adlam), in code point order.
constexpr Range kDeepseekLetters[] = {
    {0x0041, 0x005A},   {0x0061, 0x007A},   {0x00B5, 0x00B5},   {0x00C0, 0x00D6},   {0x00D8, 0x00F6},
    {0x00F8, 0x01BA},   {0x01BC, 0x01BF},   {0x01C4, 0x0293},   {0x0295, 0x02AF},   {0x0370, 0x0373},
    {0x0376, 0x0377},   {0x037B, 0x037D},   {0x037F, 0x037F},   {0x0386, 0x0386},   {0x0388, 0x038A},
    {0x038C, 0x038C},   {0x038E, 0x03A1},   {0x03A3, 0x03F5},   {0x03F7, 0x0481},   {0x048A, 0x052F},
    {0x0531, 0x0556},   {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},   {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},   {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B},   {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},   {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},   {0x2102, 0x2102},   {0x2107, 0x2107},
    {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},
    {0x2128, 0x2128},   {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},   {0x2C7E, 0x2CE4},
    {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},   {0xA680, 0xA69B},   {0xA722, 0xA76F},
    {0xA771, 0xA787},   {0xA78B, 0xA78E},   {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},
    {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
bool is_deepseek_letter(uint32_t c) { return in_ranges(kDeepseekLetters, c); }

// DeepSeek LLM's punctuation: ASCII ! to / and : to ~ (letters too; they are split off before), the
// full-width forms of both, the curly quotes U+2018..U+201F and U+3001..U+3002 (U+3000 is a space).
constexpr Range kDeepseekPunct[] = {{0x0021, 0x002F}, {0x003A, 0x007E}, {0x2018, 0x201F},
                                    {0x3001, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}};
bool is_deepseek_punct(uint32_t c) { return in_ranges(kDeepseekPunct, c); }

// BLOOM's word characters: anything but whitespace and ( ) | . , ! ? … 。 ， 、 । ۔ ،
bool is_bloom_char(uint32_t c) {
  switch (c) {
    case '(': case ')': case '|': case '.': case ',': case '!': case '?':
    case 0x2026: case 0x3002: case 0xFF0C: case 0x3001: case 0x0964: case 0x06D4: case 0x060C:
      return false;
    default:
      return !unicode_is_space(c);
  }
}

bool is_space_char(uint32_t c) { return c == ' '; }

// \s+$ over each span: its trailing whitespace becomes a span of its own (one backward scan; a
// search from every position would be quadratic in a long run of spaces).
Spans split_trailing_space(const Decoded& d, const Spans& in) {
  Spans out;
  for (const Span& s : in) {
    size_t t = s.e;
    while (t > s.b && unicode_is_space(d.cps[t - 1])) --t;
    if (t > s.b && t < s.e) {
      out.push_back({s.b, t});
      out.push_back({t, s.e});
    } else {
      out.push_back(s);
    }
  }
  return out;
}

size_t match_cr_or_lf(const Decoded& d, size_t i, size_t) { return is_cr_or_lf(d.cps[i]) ? 1 : 0; }

}  // namespace


Result<PreTokenizerSpec> pre_tokenizer_for(std::string_view name) {
  using P = PreTokenizer;
  // The names llama.cpp gives each pattern (as convert_hf_to_gguf.py writes them), and the two
  // settings it ties to the name. A file without the key (older conversions) gets llama.cpp's
  // default, not GPT-2's pattern.
  struct Name {
    std::string_view name;
    PreTokenizerSpec spec;
  };
  static constexpr PreTokenizerSpec kLlama3Words{P::kLlama3, true, true};
  static constexpr Name kNames[] = {
      {"default", {P::kDefault}},
      {"gpt-2", {P::kGpt2}}, {"gpt2", {P::kGpt2}}, {"mpt", {P::kGpt2}}, {"olmo", {P::kGpt2}},
      {"jais", {P::kGpt2}}, {"phi-2", {P::kGpt2}}, {"gigachat", {P::kGpt2}}, {"a.x-4.0", {P::kGpt2}},
      {"mellum", {P::kGpt2}}, {"exaone4", {P::kGpt2}}, {"trillion", {P::kGpt2}}, {"granite-docling", {P::kGpt2}},
      {"starcoder", {P::kStarcoder}}, {"refact", {P::kStarcoder}}, {"command-r", {P::kStarcoder}},
      {"smollm", {P::kStarcoder}}, {"codeshell", {P::kStarcoder}}, {"exaone", {P::kStarcoder}},
      {"minerva-7b", {P::kStarcoder}}, {"mellum2", {P::kStarcoder}},
      {"falcon", {P::kFalcon}},
      {"llama3", kLlama3Words}, {"llama-v3", kLlama3Words}, {"llama-bpe", kLlama3Words}, {"falcon3", kLlama3Words},
      {"falcon-h1", kLlama3Words}, {"pixtral", kLlama3Words}, {"midm-2.0", kLlama3Words}, {"lfm2", kLlama3Words},
      {"smaug-bpe", {P::kLlama3}}, {"dbrx", {P::kLlama3}},
      {"qwen2", {P::kQwen2}}, {"deepseek-r1-qwen", {P::kQwen2}}, {"kormo", {P::kQwen2}}, {"f2llmv2", {P::kQwen2}},
      {"megrez", {P::kQwen2}}, {"stablelm2", {P::kQwen2}}, {"hunyuan", {P::kQwen2}}, {"grok-2", {P::kQwen2}},
      {"solar-open", {P::kQwen2}},
      {"seed-coder", {P::kSeedCoder}},
      {"deepseek-coder", {P::kDeepseekCoder}},
      {"deepseek-llm", {P::kDeepseekLlm}},
      {"tekken", {P::kTekken, true, true}},
      {"gpt-4o", {P::kGpt4o}}, {"llama4", {P::kGpt4o}}, {"kanana2", {P::kGpt4o}}, {"talkie", {P::kGpt4o}},
      {"minimax-m2", {P::kGpt4o}},
      {"bloom", {P::kBloom}}, {"poro-chat", {P::kBloom}}, {"gpt3-finnish", {P::kBloom}},
      {"viking", {P::kViking}},
  };
  if (name.empty()) return PreTokenizerSpec{P::kDefault};
  for (const Name& n : kNames)
    if (n.name == name) return n.spec;
  std::string known;
  for (const Name& n : kNames) known += (known.empty() ? "" : ", ") + std::string(n.name);
  return make_error("unsupported tokenizer.ggml.pre '" + std::string(name) + "' (supported: " + known + ")");
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
    case PreTokenizer::kQwen2:
    case PreTokenizer::kSeedCoder: {
      const size_t digits = kind == PreTokenizer::kLlama3 ? 3 : 1;
      const Trail trail = kind == PreTokenizer::kSeedCoder ? Trail::kNothing : Trail::kBreaks;
      spans = split_all(d, spans, [digits, trail](const std::vector<uint32_t>& c, size_t i, size_t e) {
        return llama3_match(c, i, e, digits, trail);
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
    case PreTokenizer::kDeepseekLlm:
      spans = split_matches(d, spans, match_cr_or_lf);
      spans = split_matches(d, spans, match_space_run<is_deepseek_letter>);
      spans = split_matches(d, spans, match_space_run<is_deepseek_punct>);
      spans = split_trailing_space(d, spans);
      spans = split_matches(d, spans, match_run<is_deepseek_cjk>);
      spans = split_matches(d, spans, match_run<is_number>);
      break;
    case PreTokenizer::kBloom:
    case PreTokenizer::kViking:
      spans = split_matches(d, spans, match_led_run<is_space_char, is_bloom_char>);  //  ?[^(\s|.,!?…。，、।۔،)]+
      if (kind == PreTokenizer::kViking) spans = split_matches(d, spans, match_number);
      break;
  }
  for (const Span& s : spans) out.push_back(text.substr(d.offs[s.b], d.offs[s.e] - d.offs[s.b]));
}

}  // namespace pagoda::tok
