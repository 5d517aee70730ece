// Template source -> tokens. Text runs come out already trimmed the way Jinja2 does it with
// trim_blocks and lstrip_blocks on (as model hubs render chat templates) and `-`/`+` markers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pagoda::jinja {

enum class Tok : uint8_t { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok kind = Tok::Eof;
  std::string text;  // text run, name, decoded string literal, or operator
  int line = 1;
  int64_t ival = 0;
  double fval = 0;
};

// Throws TemplateError ("line N: ...") on an unterminated tag, comment or string.
std::vector<Token> lex(const std::string& src);

}  // namespace pagoda::jinja
