// Structured output end to end: schema grammars accept their random instances and reject
// invalid corruptions, token masks agree with brute force over the real Llama vocabulary,
// snapshots roll back, and sampled walks under the mask always produce valid JSON.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>

#include "core/gguf/gguf.h"
#include "core/grammar/json_schema.h"
#include "core/grammar/matcher.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/grammar_json_util.h"

#ifndef PAGODA_MODELS_DIR
#define PAGODA_MODELS_DIR "../shared/models"
#endif

namespace pagoda::grammar {
namespace {

using testing::InstanceGen;
using testing::Json;
using testing::Validator;

const char* kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer"},
        "email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":3},
        "address":{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"string","minLength":5,"maxLength":5}},
                   "required":["zip"]},
        "active":{"type":"boolean"}},"required":["name","age"]})",
    R"({"type":"object","properties":{"kind":{"enum":["a","b","c d",7,null]},
        "v":{"anyOf":[{"type":"number"},{"type":"null"},{"type":"string","format":"date"}]},
        "c":{"const":{"x":[1,"y"]}},"o":{"oneOf":[{"type":"integer"},{"type":"boolean"}]}},"required":["kind","v"]})",
    R"({"type":"array","minItems":1,"maxItems":3,"items":{"type":"object","properties":{"id":{"type":"string","format":"uuid"},
        "at":{"type":"string","format":"date-time"},"t":{"type":"string","format":"time"}},"required":["id","at"]}})",
    R"({"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},
        "children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["value"]}},"$ref":"#/$defs/node"})",
    R"({"type":"object"})",
    R"({"type":"object","properties":{"s":{"type":"string","minLength":3,"maxLength":60},
        "n":{"type":"array","items":{"type":"integer"},"maxItems":40}},"required":["s"]})",
    R"({"type":"object","properties":{"u":{"type":["string","integer","null"]},
        "m":{"type":"object","additionalProperties":{"type":"number"}}},"additionalProperties":false})",
};

struct Compiled {
  Json schema;
  std::shared_ptr<const Grammar> grammar;
};

Compiled compile(const char* text) {
  Compiled c{Json::parse(text), nullptr};
  auto g = compile_json_schema(c.schema);
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error());
  if (g) c.grammar = std::make_shared<const Grammar>(std::move(*g));
  return c;
}

bool matches(const std::shared_ptr<const Grammar>& g, const std::string& s) {
  GrammarMatcher m(g);
  return m.accept_bytes(s) && m.is_complete();
}

bool parses_and_validates(const Json& schema, const std::string& text) {
  const Json v = Json::parse(text, nullptr, false);
  return !v.is_discarded() && Validator(schema).valid(schema, v);
}

// Byte edits that mostly break the document, sometimes not.
std::string corrupt(InstanceGen& gen, std::string s) {
  static const std::string alphabet = "{}[]\",:0123456789.-+eE \ntrufalsn\\a\xC3\xA9";
  const size_t edits = 1 + gen.pick(3);
  for (size_t e = 0; e < edits && !s.empty(); ++e) {
    const size_t at = gen.pick(s.size());
    switch (gen.pick(4)) {
      case 0: s.erase(at, 1); break;
      case 1: s.insert(at, 1, alphabet[gen.pick(alphabet.size())]); break;
      case 2: s[at] = alphabet[gen.pick(alphabet.size())]; break;
      default: s.resize(at); break;
    }
  }
  return s;
}

TEST(JsonSchemaGrammar, AcceptsRandomInstancesAndOnlyValidCorruptions) {
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    const auto c = compile(kSchemas[i]);
    ASSERT_TRUE(c.grammar);
    const uint64_t seed = 1000 + i;
    SCOPED_TRACE("schema " + std::to_string(i) + " seed " + std::to_string(seed));
    InstanceGen gen(c.schema, seed);
    int rejected = 0;
    for (int n = 0; n < 150; ++n) {
      const std::string doc = gen.gen(c.schema);
      ASSERT_TRUE(parses_and_validates(c.schema, doc)) << "generator bug: " << doc;
      ASSERT_TRUE(matches(c.grammar, doc)) << doc;
      for (int k = 0; k < 4; ++k) {
        const std::string bad = corrupt(gen, doc);
        if (matches(c.grammar, bad)) EXPECT_TRUE(parses_and_validates(c.schema, bad)) << "accepted invalid: " << bad;
        else ++rejected;
      }
    }
    EXPECT_GT(rejected, 300);  // the corruptions do exercise rejection
  }
}

struct LlamaVocab {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<TokenVocab> vocab;
};

// The Llama 2 SentencePiece vocabulary (32,000 tokens), or null when the file is not here.
const LlamaVocab* llama_vocab() {
  static LlamaVocab l = [] {
    LlamaVocab v;
    const std::string path = std::string(PAGODA_MODELS_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";
    if (!std::ifstream(path).good()) return v;
    auto f = GgufFile::open(path);
    if (!f) return v;
    auto t = Tokenizer::from_gguf(**f);
    if (!t) return v;
    v.file = std::move(*f);
    v.tok = std::move(*t);
    v.vocab = std::make_unique<TokenVocab>(TokenVocab::from_tokenizer(*v.tok));
    return v;
  }();
  return l.vocab ? &l : nullptr;
}

// Token ids for `text` as it would appear mid-generation: SentencePiece prefixes a space at the
// start of an encoding, so encode after a newline and drop the tokens up to it.
std::vector<int32_t> mid_text_ids(const LlamaVocab& l, const std::string& text) {
  const auto ids = l.tok->encode("\n" + text, false);
  size_t start = 0;
  while (start < ids.size() && l.vocab->bytes(ids[start]) != "\n") ++start;
  std::vector<int32_t> out(ids.begin() + std::ptrdiff_t(std::min(start + 1, ids.size())), ids.end());
  std::string joined;
  for (int32_t id : out) joined += l.vocab->bytes(id);
  EXPECT_EQ(joined, text);
  return out;
}

#define LLAMA_OR_SKIP(var)                                                  \
  const LlamaVocab* var = llama_vocab();                                    \
  if (!var) GTEST_SKIP() << "vocab/ggml-vocab-llama-spm.gguf not found"

// Small vocabulary: every single byte plus fragments of JSON, so masks have multi-byte paths.
TokenVocab synthetic_vocab(InstanceGen& gen, const Json& schema) {
  std::vector<std::string> bytes;
  for (int b = 1; b < 256; ++b) bytes.push_back(std::string(1, char(b)));
  for (int n = 0; n < 60; ++n) {
    const std::string doc = gen.gen(schema);
    for (int k = 0; k < 20; ++k) {
      const size_t at = gen.pick(doc.size());
      bytes.push_back(doc.substr(at, 1 + gen.pick(6)));
    }
  }
  bytes.push_back("");  // the end-of-sequence token
  return TokenVocab::from_bytes(bytes, {int32_t(bytes.size() - 1)});
}

// Checks fill_mask at random prefixes of instances against trying every token's bytes.
void expect_masks_match_brute_force(const Compiled& c, const TokenVocab& v, InstanceGen& gen, int states) {
  std::vector<uint32_t> mask(v.mask_words());
  for (int n = 0; n < states; ++n) {
    const std::string doc = gen.gen(c.schema);
    const std::string prefix = doc.substr(0, gen.pick(doc.size() + 1));
    GrammarMatcher m(c.grammar);
    ASSERT_TRUE(m.accept_bytes(prefix)) << prefix;
    m.fill_mask(v, mask);
    GrammarMatcher brute(c.grammar);  // its own automaton, so no cached state is shared
    ASSERT_TRUE(brute.accept_bytes(prefix));
    const auto saved = brute.snapshot();
    int allowed = 0;
    for (int32_t id = 0; id < v.size(); ++id) {
      const bool ok = brute.accept_token(v, id);
      brute.restore(saved);
      allowed += ok;
      ASSERT_EQ(mask_allows(mask, id), ok) << "token " << id << " '" << v.bytes(id) << "' after '" << prefix << "'";
    }
    EXPECT_GT(allowed, 0) << "no token may follow '" << prefix << "'";
    std::vector<uint32_t> again(v.mask_words());
    m.fill_mask(v, again);  // served from the per-state cache
    ASSERT_EQ(mask, again);
  }
}

TEST(GrammarMask, AgreesWithBruteForceOnSyntheticVocab) {
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    const auto c = compile(kSchemas[i]);
    ASSERT_TRUE(c.grammar);
    SCOPED_TRACE("schema " + std::to_string(i) + " seed " + std::to_string(2000 + i));
    InstanceGen gen(c.schema, 2000 + i);
    const TokenVocab v = synthetic_vocab(gen, c.schema);
    expect_masks_match_brute_force(c, v, gen, 40);
  }
}

TEST(GrammarMask, AgreesWithBruteForceOnLlamaVocab) {
  LLAMA_OR_SKIP(l);
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    const auto c = compile(kSchemas[i]);
    ASSERT_TRUE(c.grammar);
    SCOPED_TRACE("schema " + std::to_string(i) + " seed " + std::to_string(3000 + i));
    InstanceGen gen(c.schema, 3000 + i);
    expect_masks_match_brute_force(c, *l->vocab, gen, 8);
  }
}

TEST(GrammarMask, SentencePieceSpacesAndByteTokensMapToTheirBytes) {
  LLAMA_OR_SKIP(l);
  const TokenVocab& v = *l->vocab;
  std::string joined;
  for (int32_t id : l->tok->encode("x \"name\"", false)) joined += v.bytes(id);
  EXPECT_EQ(joined, " x \"name\"");  // mid-text, the encoder's prefix "▁" is a real space
  const auto nl = l->tok->encode("\n", false);
  ASSERT_FALSE(nl.empty());
  EXPECT_EQ(v.bytes(nl.back()), "\n");  // the <0x0A> byte-fallback token
  EXPECT_TRUE(v.bytes(l->tok->eos()).empty());
  EXPECT_TRUE(v.is_eos(l->tok->eos()));
}

TEST(GrammarMatcher, SnapshotRollsBackADraft) {
  LLAMA_OR_SKIP(l);
  const auto c = compile(kSchemas[0]);
  ASSERT_TRUE(c.grammar);
  const TokenVocab& v = *l->vocab;
  const std::string doc = R"({"name":"Ada","age":36,"active":true})";
  const auto ids = mid_text_ids(*l, doc);
  GrammarMatcher m(c.grammar);
  ASSERT_EQ(m.accept_tokens(v, std::span(ids).first(3)), 3u);
  std::vector<uint32_t> before(v.mask_words()), after(v.mask_words());
  m.fill_mask(v, before);
  const auto saved = m.snapshot();
  // A draft whose first tokens are right and whose last is wrong: accepted up to the bad one.
  std::vector<int32_t> draft(ids.begin() + 3, ids.begin() + 6);
  draft.push_back(mid_text_ids(*l, "}").back());
  EXPECT_EQ(m.accept_tokens(v, draft), 3u);
  m.restore(saved);
  m.fill_mask(v, after);
  EXPECT_EQ(before, after);
  EXPECT_EQ(m.accept_tokens(v, std::span(ids).subspan(3)), ids.size() - 3);
  EXPECT_TRUE(m.is_complete());
  // A clone advances independently of the original.
  GrammarMatcher other = m.clone();
  m.restore(saved);
  EXPECT_TRUE(other.is_complete());
  EXPECT_FALSE(m.is_complete());
}

// Picks a random allowed token, biased toward tokens that close strings and containers so
// walks end; the end-of-sequence token is taken as soon as it is allowed half of the time.
int32_t pick_token(const TokenVocab& v, std::span<const uint32_t> mask, InstanceGen& gen) {
  std::vector<int32_t> all, closing;
  for (int32_t id = 0; id < v.size(); ++id) {
    if (!mask_allows(mask, id)) continue;
    if (v.is_eos(id)) {
      if (gen.coin()) return id;
      continue;
    }
    all.push_back(id);
    if (v.bytes(id).find_first_of("\"]}") != std::string::npos) closing.push_back(id);
  }
  if (all.empty()) return v.eos().at(0);
  if (!closing.empty() && gen.pick(3) == 0) return closing[gen.pick(closing.size())];
  return all[gen.pick(all.size())];
}

TEST(GrammarMask, SampledWalksAlwaysEndInValidJson) {
  LLAMA_OR_SKIP(l);
  const TokenVocab& v = *l->vocab;
  std::vector<uint32_t> mask(v.mask_words());
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    const auto c = compile(kSchemas[i]);
    ASSERT_TRUE(c.grammar);
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      SCOPED_TRACE("schema " + std::to_string(i) + " seed " + std::to_string(seed));
      InstanceGen gen(c.schema, seed);
      GrammarMatcher m(c.grammar);
      std::string text;
      for (int step = 0; step < 3000 && !m.is_finished(); ++step) {
        m.fill_mask(v, mask);
        const int32_t id = pick_token(v, mask, gen);
        ASSERT_TRUE(m.accept_token(v, id)) << "masked token " << id << " rejected after '" << text << "'";
        text += v.bytes(id);
      }
      ASSERT_TRUE(m.is_finished()) << "walk did not end: " << text;
      EXPECT_TRUE(parses_and_validates(c.schema, text)) << text;
    }
  }
}

}  // namespace
}  // namespace pagoda::grammar
