// JSON Schema -> grammar: compiles the subset of JSON Schema that structured output supports
// into grammar text (see docs/structured_output.md). Anything else is an error naming the
// keyword and where it is, so a server can answer 400 instead of ignoring a constraint.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/grammar/grammar.h"
#include "core/util/result.h"

namespace pagoda::grammar {

// Whitespace the grammar allows between JSON tokens: one space, or a newline followed by at
// most this many spaces/tabs (bounded so a model cannot pad forever).
inline constexpr int kMaxIndent = 20;

// Grammar text for documents matching `schema`. Object properties are generated in the order the
// schema lists them (ordered_json keeps the order of the text it was parsed from).
Result<std::string> json_schema_grammar(const nlohmann::ordered_json& schema);
// Same, from schema text.
Result<std::string> json_schema_grammar(std::string_view schema_text);
// Grammar text for any JSON object ({"type": "json_object"} mode).
std::string json_object_grammar();

// Parsed and lowered, ready for a GrammarMatcher.
Result<Grammar> compile_json_schema(const nlohmann::ordered_json& schema);

}  // namespace pagoda::grammar
