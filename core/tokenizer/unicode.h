// Small UTF-8 and Unicode-class helpers for the tokenizers (no external Unicode library).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pagoda::tok {

constexpr uint32_t kReplacementChar = 0xFFFD;

// Class bits of a codepoint's general category (see unicode_class_table.inc).
enum UnicodeClass : int { kClassOther = 0, kClassLetter = 1, kClassNumber = 2, kClassPunct = 4 };

// Decodes one UTF-8 sequence at s[0..n). Returns the bytes consumed (>= 1 when n > 0). A malformed
// or truncated sequence consumes one byte and yields U+FFFD, so every byte is accounted for.
size_t utf8_decode(const char* s, size_t n, uint32_t* cp);
// Length a lead byte announces (1 for ASCII and for bytes that cannot start a sequence).
size_t utf8_lead_len(unsigned char lead);
void utf8_append(std::string& out, uint32_t cp);
// Whether `s` is well-formed UTF-8 (shortest forms, no surrogates, nothing past U+10FFFF).
bool utf8_valid(std::string_view s);

int unicode_class(uint32_t cp);
// Unicode White_Space (what \s matches in the pre-tokenizer regexes).
bool unicode_is_space(uint32_t cp);

}  // namespace pagoda::tok
