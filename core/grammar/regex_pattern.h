// JSON Schema `pattern` (an ECMA-262 regex) to grammar text for the body of a JSON string: the
// subset of literals, classes, `.`, groups, alternation and quantifiers. The output matches the
// escaped JSON form of strings the regex matches; anything beyond the subset is an error.
#pragma once
#include <string>
#include <string_view>

#include "core/util/result.h"

namespace pagoda::grammar {

// Grammar expression for the characters between the quotes. `any_char` names the grammar rule
// for one JSON string character (used for an unanchored pattern's free ends).
Result<std::string> regex_to_grammar(std::string_view pattern, const std::string& any_char);

}  // namespace pagoda::grammar
