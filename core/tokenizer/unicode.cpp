#include "core/tokenizer/unicode.h"

#include <algorithm>
#include <iterator>

namespace pagoda::tok {
namespace {

struct ClassRange {
  uint32_t first;
  uint32_t last;
  int cls;
};

constexpr ClassRange kClassRanges[] = {
#include "core/tokenizer/unicode_class_table.inc"
};

bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

}  // namespace

size_t utf8_lead_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

size_t utf8_decode(const char* s, size_t n, uint32_t* cp) {
  if (n == 0) {
    *cp = kReplacementChar;
    return 0;
  }
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  const size_t len = utf8_lead_len(u[0]);
  if (len == 1) {
    *cp = u[0] < 0x80 ? u[0] : kReplacementChar;
    return 1;
  }
  if (len > n) {
    *cp = kReplacementChar;
    return 1;
  }
  uint32_t v = u[0] & (0x7F >> len);
  for (size_t i = 1; i < len; ++i) {
    if (!is_cont(u[i])) {
      *cp = kReplacementChar;
      return 1;
    }
    v = (v << 6) | (u[i] & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8.
  static constexpr uint32_t kMinForLen[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMinForLen[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    *cp = kReplacementChar;
    return 1;
  }
  *cp = v;
  return len;
}

bool utf8_valid(std::string_view s) {
  // utf8_decode turns a malformed sequence into one byte of U+FFFD; a real U+FFFD takes three.
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_decode(s.data() + i, s.size() - i, &cp);
    if (cp == kReplacementChar && n != 3) return false;
    i += n;
  }
  return true;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

int unicode_class(uint32_t cp) {
  // ASCII dominates real text; answer it without the binary search.
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kClassLetter;
    if (cp >= '0' && cp <= '9') return kClassNumber;
    if (cp <= 0x20 || cp == 0x7F) return kClassOther;
    return (cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' || cp == '^' || cp == '`' ||
            cp == '|' || cp == '~')
               ? kClassOther
               : kClassPunct;
  }
  auto it = std::upper_bound(std::begin(kClassRanges), std::end(kClassRanges), cp,
                             [](uint32_t v, const ClassRange& r) { return v < r.first; });
  if (it == std::begin(kClassRanges)) return kClassOther;
  --it;
  return cp <= it->last ? it->cls : kClassOther;
}

bool unicode_is_space(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace pagoda::tok
