// Grammar text form, byte-level matching, UTF-8 classes and the JSON Schema compiler's errors.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/grammar/grammar.h"
#include "core/grammar/json_schema.h"
#include "core/grammar/matcher.h"

namespace pagoda::grammar {
namespace {

std::shared_ptr<const Grammar> parse_or_die(const std::string& text) {
  auto g = Grammar::parse(text);
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error());
  if (!g) return nullptr;
  return std::make_shared<const Grammar>(std::move(*g));
}

// Whole-string membership: every byte accepted and the sentence complete at the end.
bool matches(const std::shared_ptr<const Grammar>& g, const std::string& s) {
  GrammarMatcher m(g);
  return m.accept_bytes(s) && m.is_complete();
}

// Prefix membership: the bytes can still be continued (or already end) a sentence.
bool viable(const std::shared_ptr<const Grammar>& g, const std::string& s) { return GrammarMatcher(g).accept_bytes(s); }

std::string parse_error(const std::string& text) {
  auto g = Grammar::parse(text);
  return g.ok() ? "(parsed)" : g.error();
}

TEST(GrammarParse, LiteralsAlternativesAndGroups) {
  auto g = parse_or_die("root ::= \"ab\" ( \"c\" | \"de\" ) x\nx ::= \"!\" | \"\"  # a comment\n");
  ASSERT_TRUE(g);
  EXPECT_TRUE(matches(g, "abc!"));
  EXPECT_TRUE(matches(g, "abde"));
  EXPECT_FALSE(matches(g, "abd"));
  EXPECT_TRUE(viable(g, "abd"));
  EXPECT_FALSE(viable(g, "abx"));
  EXPECT_FALSE(matches(g, "abc!!"));
}

TEST(GrammarParse, RepetitionOperatorsCountExactly) {
  auto g = parse_or_die("root ::= \"a\"{2,3} \"b\"? \"c\"* \"d\"+ \"e\"{2,} \"f\"{1}");
  ASSERT_TRUE(g);
  EXPECT_TRUE(matches(g, "aadeef"));
  EXPECT_TRUE(matches(g, "aaabcccddeeeef"));
  EXPECT_FALSE(matches(g, "adeef"));      // one a
  EXPECT_FALSE(matches(g, "aaaadeef"));   // four a
  EXPECT_FALSE(matches(g, "aabbdeef"));   // two b
  EXPECT_FALSE(matches(g, "aaef"));       // no d
  EXPECT_FALSE(matches(g, "aadef"));      // one e
  EXPECT_FALSE(matches(g, "aadeeff"));    // two f
}

TEST(GrammarParse, ClassesRangesNegationAndEscapes) {
  auto g = parse_or_die(R"(root ::= [a-c0-9_] [^a-z\n] "\x41\u00e9\"\\\t" [\]\-])");
  ASSERT_TRUE(g);
  EXPECT_TRUE(matches(g, "b7A\xC3\xA9\"\\\t]"));
  EXPECT_TRUE(matches(g, "_Z" "A\xC3\xA9\"\\\t-"));
  EXPECT_FALSE(matches(g, "bzA\xC3\xA9\"\\\t]"));
  EXPECT_FALSE(matches(g, "b\nA\xC3\xA9\"\\\t]"));
  EXPECT_FALSE(matches(g, "d7A\xC3\xA9\"\\\t]"));
}

TEST(GrammarParse, UnicodeClassesMatchTheirUtf8Encodings) {
  auto g = parse_or_die("root ::= [α-ω] [^a] .");
  ASSERT_TRUE(g);
  EXPECT_TRUE(matches(g, "λé\xF0\x9F\x98\x80"));  // λ, é, an emoji
  EXPECT_TRUE(matches(g, "ωbc"));
  EXPECT_FALSE(matches(g, "Ωbc"));                  // capital omega is outside α-ω
  EXPECT_FALSE(matches(g, "λac"));
  EXPECT_TRUE(viable(g, "λ\xC3"));                  // a partial code point may still complete
  EXPECT_FALSE(viable(g, "λ\x80"));                 // a stray continuation byte never does
  EXPECT_FALSE(viable(g, "\xED\xA0\x80"));          // an encoded surrogate is not UTF-8
  EXPECT_FALSE(matches(g, "λb\xF4\x90\x80\x80"));   // beyond U+10FFFF
}

TEST(GrammarParse, RecursionAndNullableLoops) {
  auto g = parse_or_die("root ::= item (\",\" item)*\nitem ::= \"(\" root? \")\" | [0-9]\n");
  ASSERT_TRUE(g);
  EXPECT_TRUE(matches(g, "1,(2,(3,()))"));
  EXPECT_FALSE(matches(g, "1,(2,(3,())"));
  // A repeated nullable item and a tail-recursive rule terminate.
  auto n = parse_or_die("root ::= (\"a\"?)* \"b\" tail\ntail ::= \"c\" tail | \"\"\n");
  ASSERT_TRUE(n);
  EXPECT_TRUE(matches(n, "aabccc"));
  EXPECT_TRUE(matches(n, "b"));
}

TEST(GrammarParse, ErrorsNameLineColumnAndCause) {
  EXPECT_NE(parse_error("root ::= \"a\"\nx ::= y\n").find("grammar:2:7: undefined rule 'y'"), std::string::npos)
      << parse_error("root ::= \"a\"\nx ::= y\n");
  EXPECT_NE(parse_error("root ::= \"abc").find("grammar:1:10: unterminated string literal"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [a-").find("unterminated character class"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [z-a]").find("reversed"), std::string::npos);
  EXPECT_NE(parse_error("root ::= (\"a\"").find("expected ')'"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\"{3,1}").find("bad repetition bounds"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"\\q\"").find("grammar:1:11: unknown escape"), std::string::npos)
      << parse_error("root ::= \"\\q\"");
  EXPECT_NE(parse_error("main ::= \"a\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\"\nroot ::= \"b\"").find("grammar:2:1: rule 'root' is defined twice"), std::string::npos);
  EXPECT_NE(parse_error("root ::= root \"a\" | \"b\"").find("'root' is left-recursive"), std::string::npos);
  EXPECT_NE(parse_error("root ::= x? root \"a\"\nx ::= \"x\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(parse_error("root ::= = \"a\"").find("grammar:1:10: unexpected character '='"), std::string::npos);
  EXPECT_NE(parse_error("").find("no rules"), std::string::npos);
}

TEST(GrammarMatcher, EndOfSequenceOnlyWhenComplete) {
  auto g = parse_or_die("root ::= \"ab\" \"c\"?");
  ASSERT_TRUE(g);
  const TokenVocab v = TokenVocab::from_bytes({"a", "b", "c", "ab", "", "abc"}, {4});
  GrammarMatcher m(g);
  std::vector<uint32_t> mask(v.mask_words());
  m.fill_mask(v, mask);
  EXPECT_TRUE(mask_allows(mask, 0) && mask_allows(mask, 3) && mask_allows(mask, 5));
  EXPECT_FALSE(mask_allows(mask, 1) || mask_allows(mask, 2) || mask_allows(mask, 4));
  EXPECT_FALSE(m.accept_token(v, 4));
  ASSERT_TRUE(m.accept_token(v, 3));
  m.fill_mask(v, mask);
  EXPECT_TRUE(mask_allows(mask, 2) && mask_allows(mask, 4));
  EXPECT_FALSE(mask_allows(mask, 0) || mask_allows(mask, 1) || mask_allows(mask, 3));
  EXPECT_TRUE(m.accept_token(v, 4));
  EXPECT_TRUE(m.is_finished());
  EXPECT_FALSE(m.accept_token(v, 2));
}

// Masks share work between large repetition counts (they stand in for x* there); at every count
// the mask must still be exactly the tokens that fit in what is left.
TEST(GrammarMatcher, BoundedRepetitionMasksAreExactAtEveryCount) {
  auto g = parse_or_die("root ::= (\"a\" | \"é\"){0,30} \"b\"");
  ASSERT_TRUE(g);
  std::vector<std::string> bytes;
  for (int n = 1; n <= 12; ++n) {
    bytes.push_back(std::string(size_t(n), 'a'));
    bytes.push_back(std::string(size_t(n - 1), 'a') + "b");
  }
  bytes.push_back("é");
  bytes.push_back("éa");
  bytes.push_back("");
  const TokenVocab v = TokenVocab::from_bytes(bytes, {int32_t(bytes.size() - 1)});
  GrammarMatcher m(g);
  std::vector<uint32_t> mask(v.mask_words());
  for (int count = 0; count <= 30; ++count) {
    m.fill_mask(v, mask);
    for (int32_t id = 0; id < v.size(); ++id) {
      GrammarMatcher brute(g);
      const bool ok = brute.accept_bytes(std::string(size_t(count), 'a')) && brute.accept_token(v, id);
      ASSERT_EQ(mask_allows(mask, id), ok) << "count " << count << " token '" << v.bytes(id) << "'";
    }
    if (count < 30) {
      ASSERT_TRUE(m.accept_bytes("a"));
    }
  }
  EXPECT_FALSE(m.accept_bytes("a"));
  EXPECT_TRUE(m.accept_bytes("b"));
}

TEST(GrammarMatcher, RejectedBytesLeaveTheStateUnchanged) {
  auto g = parse_or_die("root ::= \"abc\"");
  ASSERT_TRUE(g);
  GrammarMatcher m(g);
  ASSERT_TRUE(m.accept_bytes("a"));
  EXPECT_FALSE(m.accept_bytes("bx"));  // "b" alone would be fine: all or nothing
  EXPECT_TRUE(m.accept_bytes("bc"));
  EXPECT_TRUE(m.is_complete());
}

TEST(GrammarMatcher, ApplyMaskSetsDisallowedLogitsToMinusInfinity) {
  std::vector<float> logits = {1, 2, 3, 4, 5};
  std::vector<uint32_t> mask = {0b10101u};
  apply_token_mask(logits, mask);
  EXPECT_EQ(logits[0], 1);
  EXPECT_TRUE(std::isinf(logits[1]) && logits[1] < 0);
  EXPECT_EQ(logits[2], 3);
  EXPECT_TRUE(std::isinf(logits[3]));
  EXPECT_EQ(logits[4], 5);
}

std::string schema_error(const std::string& schema) {
  auto r = json_schema_grammar(std::string_view(schema));
  return r.ok() ? "(compiled)" : r.error();
}

TEST(JsonSchema, CompilesTheSupportedSubset) {
  const char* schemas[] = {
      R"({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a"]})",
      R"({"type":"object","properties":{"a":{"type":"number"}},"additionalProperties":false,"title":"T","description":"d"})",
      R"({"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":3})",
      R"({"enum":["red","green",3,null]})",
      R"({"const":{"k":[1,2]}})",
      R"({"anyOf":[{"type":"string"},{"type":"null"}]})",
      R"({"oneOf":[{"type":"integer"},{"type":"array"}]})",
      R"({"type":["string","null"]})",
      R"({"$defs":{"node":{"type":"object","properties":{"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}}}},"$ref":"#/$defs/node"})",
      R"({"definitions":{"x":{"type":"integer"}},"type":"array","items":{"$ref":"#/definitions/x"}})",
      R"({"type":"string","format":"date-time"})",
      R"({"type":"string","minLength":2,"maxLength":5})",
      R"({"type":"object","additionalProperties":{"type":"integer"}})",
      R"({"type":"object"})",
      R"({})",
      R"(true)",
  };
  for (const char* s : schemas) {
    auto text = json_schema_grammar(std::string_view(s));
    ASSERT_TRUE(text.ok()) << s << ": " << text.error();
    auto g = compile_json_schema(nlohmann::ordered_json::parse(s));
    EXPECT_TRUE(g.ok()) << s << ": " << (g.ok() ? "" : g.error());
  }
}

TEST(JsonSchema, UnsupportedKeywordsAreNamedWithTheirPath) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type":"string","pattern":"^(?=a)b$"})", "unsupported keyword 'pattern' at #: lookaround and named groups are not supported at offset 2"},
      {R"({"type":"string","pattern":"(a)\\1"})", "unsupported keyword 'pattern' at #: escape '\\1'"},
      {R"({"type":"string","pattern":"a","maxLength":3})", "'maxLength' at #: together with pattern"},
      {R"({"type":"object","patternProperties":{"^x":{}}})", "'patternProperties' at #"},
      {R"({"if":{},"then":{},"else":{}})", "'if' at #"},
      {R"({"not":{"type":"null"}})", "'not' at #"},
      {R"({"type":"object","properties":{"a b":{"type":"integer","minimum":0}}})", "'minimum' at #/properties/a b"},
      {R"({"type":"array","items":{"type":"string","format":"uri"}})", "'format' at #/items"},
      {R"({"type":"object","properties":{"a":{}},"additionalProperties":true})", "'additionalProperties' at #"},
      {R"({"allOf":[{"type":"string"},{"minLength":1}]})", "'allOf' at #"},
      {R"({"$ref":"https://example.com/s.json"})", "'$ref' at #"},
      {R"({"type":"object","properties":{"a":{}},"required":["b"]})", "'required' at #"},
      {R"({"type":"array","uniqueItems":true})", "'uniqueItems' at #"},
  };
  for (const auto& [schema, want] : cases)
    EXPECT_NE(schema_error(schema).find(want), std::string::npos) << schema << " -> " << schema_error(schema);
  EXPECT_NE(schema_error("{\"$ref\":\"#/$defs/missing\"}").find("not defined"), std::string::npos);
  EXPECT_NE(schema_error("{\"type\":\"strin\"}").find("unknown type 'strin' at #"), std::string::npos);
  EXPECT_NE(schema_error("{\"type\":\"array\",\"minItems\":3,\"maxItems\":1}").find("maxItems < minItems"), std::string::npos);
  EXPECT_NE(schema_error("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(schema_error("false").find("no value matches"), std::string::npos);
}

// Patterns compile to the grammar; each input is listed with whether the regex matches it
// (ECMAScript semantics on the decoded string; unanchored patterns match anywhere).
TEST(JsonSchema, PatternSubsetMatchesLikeARegex) {
  struct Case {
    const char* pattern;
    std::vector<std::pair<std::string, bool>> inputs;
  };
  const Case cases[] = {
      {"^[A-Z]{3}-\\d{2,4}$",
       {{"ABC-12", true}, {"XYZ-1234", true}, {"AB-12", false}, {"ABC-12345", false}, {"abc-12", false}, {"ABC-1a", false}}},
      {"^(red|green)+$", {{"red", true}, {"redgreen", true}, {"", false}, {"blue", false}, {"redgree", false}}},
      {"ab", {{"ab", true}, {"xxabyy", true}, {"a b", false}, {"", false}, {"ba", false}}},
      {"^[^a-z]*$", {{"A\"B", true}, {"A\\B", true}, {"ABC 1", true}, {"aB", false}, {"", true}}},
      {"^\\w+@\\w+\\.(com|org)$",
       {{"a_b@c.com", true}, {"x@y.org", true}, {"x@y.net", false}, {"@y.com", false}, {"a@b.c.com", false}}},
      {"^.{2}x?$", {{"ab", true}, {"abx", true}, {"a", false}, {"a\"x", true}, {"abcx", false}, {"a\nx", false}, {"\r\t", false}}},
      {"^\\S+\\s\\D$", {{"ab c", true}, {"ab 1", false}, {"a\tb", true}, {"a  b", false}}},
  };
  for (const auto& c : cases) {
    auto g = compile_json_schema(nlohmann::ordered_json{{"type", "string"}, {"pattern", c.pattern}});
    ASSERT_TRUE(g.ok()) << c.pattern << ": " << g.error();
    auto sg = std::make_shared<const Grammar>(std::move(*g));
    for (const auto& [s, want] : c.inputs) {
      const std::string json = nlohmann::json(s).dump();
      EXPECT_EQ(matches(sg, json), want) << c.pattern << " on " << json;
    }
  }
}

TEST(JsonSchema, ObjectsFollowSchemaOrderAndRequired) {
  auto g = compile_json_schema(nlohmann::ordered_json::parse(
      R"({"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"boolean"},"m":{"type":"null"}},"required":["a"]})"));
  ASSERT_TRUE(g.ok()) << g.error();
  auto sg = std::make_shared<const Grammar>(std::move(*g));
  EXPECT_TRUE(matches(sg, R"({"z":1,"a":true,"m":null})"));
  EXPECT_TRUE(matches(sg, R"({"a":false})"));
  EXPECT_TRUE(matches(sg, R"({"a":false,"m":null})"));
  EXPECT_TRUE(matches(sg, "{\n  \"z\": -12,\n  \"a\": true\n}"));
  EXPECT_FALSE(matches(sg, R"({})"));                      // a is required
  EXPECT_FALSE(matches(sg, R"({"a":true,"z":1})"));        // schema order
  EXPECT_FALSE(matches(sg, R"({"a":true,"q":1})"));        // no additional properties
  EXPECT_FALSE(matches(sg, R"({,"a":true})"));
  EXPECT_FALSE(matches(sg, R"({"z":01,"a":true})"));       // no leading zeros
  EXPECT_FALSE(matches(sg, "{\"a\":true" + std::string(30, ' ') + "}"));  // whitespace is bounded
}

}  // namespace
}  // namespace pagoda::grammar
