// Tokenizer tests against llama.cpp's tokenizer vectors and the real vocabularies in shared/models.
#include "core/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/gguf/gguf.h"
#include "core/tokenizer/pretokenize.h"
#include "core/tokenizer/unicode.h"

#ifndef PAGODA_MODELS_DIR
#define PAGODA_MODELS_DIR "../shared/models"
#endif

namespace pagoda {
namespace {

std::string models_path(const std::string& rel) { return std::string(PAGODA_MODELS_DIR) + "/" + rel; }

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

struct Loaded {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
};

// Opens a GGUF and builds its tokenizer; an empty result means the file is not on this machine.
Loaded load(const std::string& rel) {
  Loaded l;
  const std::string path = models_path(rel);
  if (!file_exists(path)) return l;
  auto f = GgufFile::open(path);
  EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.error());
  if (!f) return l;
  auto t = Tokenizer::from_gguf(**f);
  EXPECT_TRUE(t.ok()) << rel << ": " << (t.ok() ? "" : t.error());
  if (!t) return l;
  l.file = std::move(*f);
  l.tok = std::move(*t);
  return l;
}

#define LOAD_OR_SKIP(var, rel)                                                          \
  Loaded var = load(rel);                                                               \
  if (!var.tok) {                                                                       \
    if (!file_exists(models_path(rel))) GTEST_SKIP() << models_path(rel) << " not found"; \
    return;                                                                             \
  }

struct Vector {
  std::string input;
  std::string expected;  // ids as in the .out file, space separated
};

// .inp holds inputs each followed by a "__ggml_vocab_test__" line; .out one id line per input.
std::vector<Vector> read_vectors(const std::string& gguf_rel) {
  std::ifstream fi(models_path(gguf_rel) + ".inp", std::ios::binary);
  std::ifstream fo(models_path(gguf_rel) + ".out", std::ios::binary);
  std::stringstream ss;
  ss << fi.rdbuf();
  const std::string all = ss.str();
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> v;
  size_t pos = 0;
  for (size_t hit; (hit = all.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
    v.push_back({all.substr(pos, hit - pos), ""});
  std::string line;
  for (size_t i = 0; std::getline(fo, line); ++i) {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (i < v.size()) v[i].expected = line;
  }
  return v;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {  // two appends: GCC 12 flags `" " + to_string()` with a false -Wrestrict
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// Runs every vector of one vocabulary and reports each mismatch with its input.
void expect_vectors_pass(const std::string& rel) {
  LOAD_OR_SKIP(l, rel);
  const auto vectors = read_vectors(rel);
  ASSERT_FALSE(vectors.empty()) << "no vectors next to " << rel;
  int failed = 0;
  for (const auto& vec : vectors) {
    const std::string got = join_ids(l.tok->encode(vec.input, /*add_bos=*/false));
    if (got != vec.expected) {
      ++failed;
      ADD_FAILURE() << rel << "\n  input:    [" << vec.input << "]\n  expected:" << vec.expected
                    << "\n  got:     " << got;
    }
  }
  EXPECT_EQ(failed, 0) << failed << " of " << vectors.size() << " vectors differ";
}

int32_t find_piece(const Tokenizer& t, const std::string& piece) {
  for (int32_t i = 0; i < t.vocab_size(); ++i)
    if (t.piece(i) == piece) return i;
  return -1;
}

TEST(Tokenizer, LlamaSpmVectorsAllPass) { expect_vectors_pass("vocab/ggml-vocab-llama-spm.gguf"); }

TEST(Tokenizer, Gpt2VectorsAllPass) { expect_vectors_pass("vocab/ggml-vocab-gpt-2.gguf"); }

// The other vocabularies whose pre-tokenizers are implemented (SentencePiece phi-3, and byte-level
// BPE with the gpt-2, starcoder and falcon pre-tokenizers).
TEST(Tokenizer, OtherSupportedVocabVectorsAllPass) {
  for (const char* name : {"phi-3", "mpt", "starcoder", "refact", "falcon"}) {
    SCOPED_TRACE(name);
    const std::string rel = std::string("vocab/ggml-vocab-") + name + ".gguf";
    if (file_exists(models_path(rel))) expect_vectors_pass(rel);
  }
}

// Every vocabulary in shared/models/vocab loads, or is refused with an error naming the metadata
// key and value it cannot honour (a pre-tokenizer or tokenizer model Pagoda does not implement):
// never a tokenizer that silently splits text another way. Those that load and have test vectors
// pass them.
TEST(Tokenizer, EveryVocabPreTypeIsHandledOrRefusedByName) {
  const std::string dir = models_path("vocab");
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " not found";
  int loaded = 0, refused = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".gguf") continue;
    const std::string name = e.path().filename().string();
    SCOPED_TRACE(name);
    auto f = GgufFile::open(e.path().string());
    ASSERT_TRUE(f.ok()) << f.error();
    const GgufValue* pre = (*f)->find("tokenizer.ggml.pre");
    const std::string pre_name = pre && pre->as_string() ? *pre->as_string() : "";
    auto t = Tokenizer::from_gguf(**f);
    if (t.ok()) {
      ++loaded;
      if (file_exists(e.path().string() + ".inp")) expect_vectors_pass("vocab/" + name);
      continue;
    }
    ++refused;
    const bool names_pre = !pre_name.empty() && t.error().find("tokenizer.ggml.pre '" + pre_name + "'") != std::string::npos;
    const bool names_model = t.error().find("tokenizer.ggml.model '") != std::string::npos;
    EXPECT_TRUE(names_pre || names_model) << t.error();
  }
  EXPECT_GT(loaded, 0);
  std::printf("vocabularies: %d loaded, %d refused by name\n", loaded, refused);
}

TEST(Tokenizer, RoundTripsText) {
  const std::vector<std::string> texts = {
      "Hello world",  " leading space", "   three leading spaces", "trailing spaces  ", "tabs\tand\nnewlines\n\n",
      "Äpfel ½ Ünïcödé", "emoji 🦙🚀 and 👍🏽 and ❤️", "中文字符 日本語 한국어", "<s> is not a control token",
      "x",
  };
  for (const char* rel : {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf", "stories260K.gguf"}) {
    LOAD_OR_SKIP(l, rel);
    for (const auto& text : texts) {
      EXPECT_EQ(detokenize(*l.tok, l.tok->encode(text, false)), text) << rel;
      // With BOS first the same text comes back: BOS prints nothing and the prefix space is dropped.
      StreamDecoder dec(*l.tok);
      std::string streamed;
      for (int32_t id : l.tok->encode(text, true)) streamed += dec.push(id);
      streamed += dec.flush();
      EXPECT_EQ(streamed, text) << rel;
    }
  }
}

TEST(Tokenizer, RoundTripsArbitraryBytes) {
  // Invalid UTF-8 must survive too: byte fallback (SentencePiece) and byte-level BPE keep every byte.
  for (const char* rel : {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf"}) {
    LOAD_OR_SKIP(l, rel);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (int iter = 0; iter < 300; ++iter) {
      std::string text;
      const size_t len = size_t(iter % 48);
      for (size_t i = 0; i < len; ++i) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        const unsigned r = unsigned(state >> 33);
        // Mix in plenty of spaces and lead bytes so that malformed sequences meet space marks.
        text += (r % 5 == 0) ? ' ' : (r % 7 == 0) ? char(0xE2) : char(r & 0xFF);
      }
      EXPECT_EQ(detokenize(*l.tok, l.tok->encode(text, false)), text) << rel << " iteration " << iter;
    }
  }
}

TEST(Tokenizer, EmptyTextEncodesToNothingButBos) {
  LOAD_OR_SKIP(l, "vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_TRUE(l.tok->encode("", false).empty());
  EXPECT_EQ(l.tok->encode("", true), std::vector<int32_t>{1});
}

TEST(Tokenizer, SpecialTextIsNotParsedAsControlToken) {
  LOAD_OR_SKIP(l, "vocab/ggml-vocab-llama-spm.gguf");
  for (int32_t id : l.tok->encode("<s></s><unk>", false)) EXPECT_FALSE(l.tok->is_special(id)) << id;
}

TEST(Tokenizer, TokenBytesFollowPieceKinds) {
  LOAD_OR_SKIP(l, "vocab/ggml-vocab-llama-spm.gguf");
  const Tokenizer& t = *l.tok;
  EXPECT_EQ(t.token_bytes(-1, t.bos()), "");
  EXPECT_TRUE(t.is_special(t.bos()));
  EXPECT_EQ(t.token_bytes(-1, find_piece(t, "<0x0A>")), "\n");
  const int32_t hello = find_piece(t, "\xE2\x96\x81Hello");
  ASSERT_GE(hello, 0);
  EXPECT_EQ(t.token_bytes(t.bos(), hello), "Hello");  // the encoder's prefix space
  EXPECT_EQ(t.token_bytes(-1, hello), "Hello");
  EXPECT_EQ(t.token_bytes(hello, hello), " Hello");  // a real space between words
  EXPECT_EQ(t.token_bytes(-1, t.vocab_size()), "");
  EXPECT_EQ(t.token_bytes(hello, find_piece(t, "<unk>")), "");  // unknown, as llama.cpp prints it
}

// As llama.cpp reads a vocabulary: a token spelled like an end of turn is a control token that
// ends generation whatever type the file gives it (Phi-3 types its </s> user-defined), and pieces
// typed unknown (Phi-3's [PAD32011]..) print nothing. docs/tokenizer_vs_llamacpp.sh compares every
// piece of the shared vocabularies with llama.cpp's.
TEST(Tokenizer, EndOfTurnSpellingsAreControlAndUnknownPiecesPrintNothing) {
  LOAD_OR_SKIP(l, "vocab/ggml-vocab-phi-3.gguf");
  const Tokenizer& t = *l.tok;
  const int32_t eos_text = find_piece(t, "</s>"), pad = find_piece(t, "[PAD32011]"), word = find_piece(t, "\xE2\x96\x81Hello");
  ASSERT_GE(eos_text, 0);
  ASSERT_GE(pad, 0);
  EXPECT_TRUE(t.is_eog(eos_text));
  EXPECT_TRUE(t.is_special(eos_text));
  EXPECT_EQ(t.token_bytes(word, eos_text), "");
  EXPECT_EQ(t.token_bytes(word, pad), "");
  // Text that spells it is text, not the token.
  for (int32_t id : t.encode("a</s>b", false)) EXPECT_NE(id, eos_text);
}


// The one UTF-8 check the server (token pieces, logprob bytes) and the tokenizer fuzzer use.
TEST(Unicode, Utf8ValidAcceptsWellFormedTextOnly) {
  for (const char* ok : {"", "plain", "caf\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\xa6\x99", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"})
    EXPECT_TRUE(tok::utf8_valid(ok)) << ok;
  // Overlong, lone continuation, truncated, surrogate, past U+10FFFF, bytes that never start one.
  for (const char* bad : {"\xc0\xaf", "\xe0\x80\xaf", "\x80", "caf\xc3", "\xe4\xb8", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                          "\xf5\x80\x80\x80", "\xff"})
    EXPECT_FALSE(tok::utf8_valid(bad)) << bad;
}

TEST(StreamDecoder, NeverSplitsUtf8Character) {
  LOAD_OR_SKIP(l, "vocab/ggml-vocab-llama-spm.gguf");
  // 🦙 is F0 9F A6 99 and has no piece of its own, so it travels as four byte tokens.
  const std::vector<std::string> bytes = {"<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"};
  StreamDecoder dec(*l.tok);
  EXPECT_EQ(dec.push(find_piece(*l.tok, "\xE2\x96\x81" "a")), "a");
  for (size_t i = 0; i < bytes.size(); ++i) {
    const int32_t id = find_piece(*l.tok, bytes[i]);
    ASSERT_GE(id, 0);
    const std::string out = dec.push(id);
    if (i + 1 < bytes.size()) EXPECT_EQ(out, "") << "printed part of a character after byte " << i;
    else EXPECT_EQ(out, "\xF0\x9F\xA6\x99");
  }
  EXPECT_EQ(dec.flush(), "");
}

TEST(StreamDecoder, FlushTurnsIncompleteSequenceIntoReplacementChar) {
  LOAD_OR_SKIP(l, "vocab/ggml-vocab-llama-spm.gguf");
  StreamDecoder dec(*l.tok);
  EXPECT_EQ(dec.push(find_piece(*l.tok, "<0xE4>")), "");
  EXPECT_EQ(dec.push(find_piece(*l.tok, "<0xB8>")), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // A stray continuation byte can never complete, so it is replaced at once.
  EXPECT_EQ(dec.push(find_piece(*l.tok, "<0x80>")), "\xEF\xBF\xBD");
}

// Builds GGUF v3 images in memory, so error paths need no files.
class GgufImage {
 public:
  GgufImage& str(const std::string& key, const std::string& v) {
    kv(key, 8);
    put_str(v);
    return *this;
  }
  GgufImage& u32(const std::string& key, uint32_t v) {
    kv(key, 4);
    put(v);
    return *this;
  }
  GgufImage& strings(const std::string& key, const std::vector<std::string>& v) {
    array_header(key, 8, v.size());
    for (const auto& s : v) put_str(s);
    return *this;
  }
  GgufImage& floats(const std::string& key, const std::vector<float>& v) {
    array_header(key, 6, v.size());
    for (float x : v) put(x);
    return *this;
  }
  Result<std::unique_ptr<GgufFile>> parse() const {
    std::vector<uint8_t> img;
    auto append = [&](const void* p, size_t n) { img.insert(img.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
    const uint32_t version = 3;
    const uint64_t n_tensors = 0;
    append("GGUF", 4);
    append(&version, 4);
    append(&n_tensors, 8);
    append(&n_kv_, 8);
    append(body_.data(), body_.size());
    return GgufFile::parse(img.data(), img.size());
  }

 private:
  template <typename T>
  void put(T v) {
    body_.insert(body_.end(), (const uint8_t*)&v, (const uint8_t*)&v + sizeof(T));
  }
  void put_str(const std::string& s) {
    put(uint64_t(s.size()));
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void kv(const std::string& key, uint32_t type) {
    ++n_kv_;
    put_str(key);
    put(type);
  }
  void array_header(const std::string& key, uint32_t elem, size_t n) {
    kv(key, 9);
    put(elem);
    put(uint64_t(n));
  }
  std::vector<uint8_t> body_;
  uint64_t n_kv_ = 0;
};

// A tiny valid SentencePiece vocabulary, which each error test then breaks in one way.
GgufImage tiny_llama(const std::vector<std::string>& pieces = {"<unk>", "<s>", "</s>", "a", "b"}) {
  GgufImage g;
  g.str("tokenizer.ggml.model", "llama").strings("tokenizer.ggml.tokens", pieces);
  return g;
}

std::string from_gguf_error(const GgufImage& g) {
  auto f = g.parse();
  if (!f) return "gguf parse failed: " + f.error();
  auto t = Tokenizer::from_gguf(**f);
  return t.ok() ? "" : t.error();
}

std::unique_ptr<Tokenizer> from_image(const GgufImage& g) {
  auto f = g.parse();
  if (!f) return nullptr;
  auto t = Tokenizer::from_gguf(**f);
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(Tokenizer, MissingTokensKeyIsClearError) {
  GgufImage g;
  g.str("tokenizer.ggml.model", "llama").floats("tokenizer.ggml.scores", {0.f});
  EXPECT_NE(from_gguf_error(g).find("tokenizer.ggml.tokens"), std::string::npos) << from_gguf_error(g);
}

TEST(Tokenizer, InconsistentMetadataIsClearError) {
  GgufImage mismatch = tiny_llama();
  mismatch.floats("tokenizer.ggml.scores", {0.f, 0.f});
  EXPECT_NE(from_gguf_error(mismatch).find("tokenizer.ggml.scores"), std::string::npos) << from_gguf_error(mismatch);

  GgufImage bad_bos = tiny_llama();
  bad_bos.floats("tokenizer.ggml.scores", {0, 0, 0, -1, -2}).u32("tokenizer.ggml.bos_token_id", 7);
  EXPECT_NE(from_gguf_error(bad_bos).find("tokenizer.ggml.bos_token_id"), std::string::npos) << from_gguf_error(bad_bos);

  GgufImage bad_model;
  bad_model.str("tokenizer.ggml.model", "bert").strings("tokenizer.ggml.tokens", {"a"});
  EXPECT_NE(from_gguf_error(bad_model).find("'bert'"), std::string::npos) << from_gguf_error(bad_model);
  EXPECT_NE(from_gguf_error(bad_model).find("tokenizer.ggml.model"), std::string::npos);

  GgufImage no_merges;
  no_merges.str("tokenizer.ggml.model", "gpt2").strings("tokenizer.ggml.tokens", {"a"});
  EXPECT_NE(from_gguf_error(no_merges).find("tokenizer.ggml.merges"), std::string::npos) << from_gguf_error(no_merges);
}

// The hand-written pre-tokenizers split as a regex engine with Unicode classes splits by the
// patterns they stand for (tests/data/pretokenize_ref.py wrote the file with Python's `regex`):
// llama.cpp's test texts, hard cases and seeded random strings.
TEST(PreTokenizer, SplitsAsTheRegexReference) {
  std::ifstream in(std::string(PAGODA_TEST_DATA_DIR) + "/pretokenize_ref.json");
  ASSERT_TRUE(in.good()) << "tests/data/pretokenize_ref.json missing";
  const nlohmann::json ref = nlohmann::json::parse(in);
  ASSERT_GT(ref["cases"].size(), 400u);
  const std::pair<const char*, tok::PreTokenizer> kinds[] = {
      {"llama3", tok::PreTokenizer::kLlama3}, {"qwen2", tok::PreTokenizer::kQwen2},
      {"tekken", tok::PreTokenizer::kTekken}, {"gpt-4o", tok::PreTokenizer::kGpt4o},
      {"deepseek-coder", tok::PreTokenizer::kDeepseekCoder}, {"default", tok::PreTokenizer::kDefault},
      {"gpt-2", tok::PreTokenizer::kGpt2}, {"seed-coder", tok::PreTokenizer::kSeedCoder},
      {"deepseek-llm", tok::PreTokenizer::kDeepseekLlm}, {"bloom", tok::PreTokenizer::kBloom},
      {"viking", tok::PreTokenizer::kViking}};
  int failures = 0;
  for (const auto& c : ref["cases"]) {
    const std::string text = c["text"];
    for (const auto& [name, kind] : kinds) {
      std::vector<std::string_view> got;
      tok::pretokenize(kind, text, got);
      const std::vector<std::string> want = c[name];
      if (std::vector<std::string>(got.begin(), got.end()) != want && ++failures <= 10)
        ADD_FAILURE() << name << " splits " << nlohmann::json(text).dump() << " as "
                      << nlohmann::json(std::vector<std::string>(got.begin(), got.end())).dump() << ", the regex as "
                      << nlohmann::json(want).dump();
    }
  }
  EXPECT_EQ(failures, 0);
}

// The names llama.cpp's converter writes for these patterns are accepted; others still refused.
TEST(PreTokenizer, KnowsTheNamesLlamaCppGivesThem) {
  using P = tok::PreTokenizer;
  auto kind = [](const char* n) { return tok::pre_tokenizer_for(n)->kind; };
  for (const char* n : {"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral", "midm-2.0", "smaug-bpe", "dbrx"})
    EXPECT_EQ(kind(n), P::kLlama3) << n;
  for (const char* n : {"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "grok-2"}) EXPECT_EQ(kind(n), P::kQwen2) << n;
  EXPECT_EQ(kind("deepseek-coder"), P::kDeepseekCoder);
  EXPECT_EQ(kind("deepseek-llm"), P::kDeepseekLlm);
  EXPECT_EQ(kind("seed-coder"), P::kSeedCoder);
  EXPECT_EQ(kind("tekken"), P::kTekken);
  for (const char* n : {"gpt-4o", "llama4", "kanana2"}) EXPECT_EQ(kind(n), P::kGpt4o) << n;
  for (const char* n : {"minerva-7b", "exaone", "command-r"}) EXPECT_EQ(kind(n), P::kStarcoder) << n;
  for (const char* n : {"phi-2", "a.x-4.0", "trillion"}) EXPECT_EQ(kind(n), P::kGpt2) << n;
  for (const char* n : {"bloom", "poro-chat"}) EXPECT_EQ(kind(n), P::kBloom) << n;
  EXPECT_EQ(kind("viking"), P::kViking);
  EXPECT_EQ(kind(""), P::kDefault);
  // ignore_merges and the BOS default go with the name, not the pattern: Smaug's pattern is Llama 3's.
  for (const char* n : {"llama-bpe", "falcon3", "tekken"}) {
    EXPECT_TRUE(tok::pre_tokenizer_for(n)->ignore_merges) << n;
    EXPECT_TRUE(tok::pre_tokenizer_for(n)->add_bos) << n;
  }
  for (const char* n : {"smaug-bpe", "qwen2", "gpt-4o", "deepseek-llm", "default"}) {
    EXPECT_FALSE(tok::pre_tokenizer_for(n)->ignore_merges) << n;
    EXPECT_FALSE(tok::pre_tokenizer_for(n)->add_bos) << n;
  }
  for (std::string_view n : {"'deepseek-v3'", "'chatglm-bpe'", "'Llama-bpe'", "'llama-bpe '"}) {
    auto bad = tok::pre_tokenizer_for(n.substr(1, n.size() - 2));
    ASSERT_FALSE(bad.ok()) << n;
    EXPECT_NE(bad.error().find(n), std::string::npos) << bad.error();
    EXPECT_NE(bad.error().find("deepseek-llm"), std::string::npos) << "the error lists what is supported";
  }
}

// Long runs that a search from every position would make quadratic (a million spaces before a digit
// meets DeepSeek LLM's \s+$, BLOOM's separators, the lookahead of \s+(?!\S)): every pattern cuts
// them end to end, in seconds under the sanitizers rather than hours.
TEST(PreTokenizer, LongRunsSplitInLinearTime) {
  using P = tok::PreTokenizer;
  const std::string texts[] = {std::string(1 << 20, ' ') + "1", std::string(1 << 20, ' ') + "x!",
                               std::string(1 << 20, '.') + "a", std::string(1 << 19, 'a') + std::string(1 << 19, '1')};
  const auto t0 = std::chrono::steady_clock::now();
  for (P kind : tok::kEveryPreTokenizer)
    for (const std::string& text : texts) {
      std::vector<std::string_view> pieces;
      tok::pretokenize(kind, text, pieces);
      size_t at = 0;
      for (std::string_view p : pieces) {
        ASSERT_EQ(p.data(), text.data() + at) << int(kind);
        at += p.size();
      }
      EXPECT_EQ(at, text.size()) << int(kind);
    }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60.0);
}

// DeepSeek LLM's pattern, by hand: its trailing whitespace, its letters (a list, not \p{L}: U+01BB is
// a letter outside it) and its punctuation runs.
TEST(PreTokenizer, DeepseekLlmSplitsItsWay) {
  auto split = [](std::string_view text) {
    std::vector<std::string_view> pieces;
    tok::pretokenize(tok::PreTokenizer::kDeepseekLlm, text, pieces);
    return std::vector<std::string>(pieces.begin(), pieces.end());
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split("12  "), (V{"12", "  "}));
  EXPECT_EQ(split("Hello, world!\n"), (V{"Hello", ",", " world", "!", "\n"}));
  EXPECT_EQ(split("a\u01bbb"), (V{"a", "\u01bb", "b"}));
  // U+3000 is a space to llama.cpp's regex engine, in none of the ranges; U+3001 then is also CJK.
  EXPECT_EQ(split("x\u3000\u3001y"), (V{"x", "\u3000", "\u3001", "y"}));
  EXPECT_EQ(split("\u4e2d\u6587 123"), (V{"\u4e2d\u6587", " ", "123"}));
}

// A byte-level BPE vocabulary: the 256 byte characters (but for the ones `drop`), "ab" with no merge
// that makes it, and "cd" with one.
GgufImage tiny_gpt2(const std::string& pre, const std::vector<int>& drop = {}, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> pieces;
  for (int b = 0; b < 256; ++b) {
    // GPT-2's byte characters: printable Latin-1 as itself, the rest from U+0100 up.
    static std::vector<uint32_t> cps = [] {
      std::vector<uint32_t> m(256);
      uint32_t next = 256;
      for (uint32_t x = 0; x < 256; ++x)
        m[x] = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174) ? x : next++;
      return m;
    }();
    std::string ch;
    const uint32_t cp = cps[size_t(b)];
    if (cp < 0x80) ch += char(cp);
    else {
      ch += char(0xC0 | (cp >> 6));
      ch += char(0x80 | (cp & 0x3F));
    }
    bool dropped = false;
    for (int d : drop) dropped = dropped || d == b;
    pieces.push_back(dropped ? "<unused" + std::to_string(b) + ">" : ch);
  }
  pieces.push_back("ab");
  pieces.push_back("cd");
  pieces.push_back("<|end|>");
  for (const auto& e : extra) pieces.push_back(e);
  GgufImage g;
  g.str("tokenizer.ggml.model", "gpt2").strings("tokenizer.ggml.tokens", pieces).strings("tokenizer.ggml.merges", {"c d"});
  if (!pre.empty()) g.str("tokenizer.ggml.pre", pre);
  return g.u32("tokenizer.ggml.bos_token_id", 258).u32("tokenizer.ggml.unknown_token_id", 258);
}

// Llama 3 takes a pre-token that is a vocabulary entry whole (its tokenizer.json's ignore_merges)
// and adds BOS when the file does not say; GPT-2's pattern merges, and adds none.
TEST(Tokenizer, Llama3TakesVocabularyWordsWholeAndAddsBos) {
  auto llama3 = from_image(tiny_gpt2("llama-bpe"));
  auto gpt2 = from_image(tiny_gpt2("gpt-2"));
  ASSERT_TRUE(llama3 && gpt2);
  EXPECT_EQ(llama3->encode("ab", false), (std::vector<int32_t>{256}));
  EXPECT_EQ(gpt2->encode("ab", false), (std::vector<int32_t>{'a', 'b'}));  // a byte's id is the byte
  EXPECT_EQ(gpt2->encode("cd", false), (std::vector<int32_t>{257}));
  EXPECT_TRUE(llama3->add_bos());
  EXPECT_FALSE(gpt2->add_bos());
  auto tekken = from_image(tiny_gpt2("tekken"));
  ASSERT_TRUE(tekken);
  EXPECT_TRUE(tekken->add_bos());  // as llama.cpp defaults it
  EXPECT_EQ(tekken->encode("ab", false), (std::vector<int32_t>{256}));  // whole, as Llama 3
}

// A byte the vocabulary has no character for is dropped (as llama.cpp drops it), never replaced
// by the UNK id, which a byte-level vocabulary often shares with a control token.
TEST(Tokenizer, BpeDropsABytesItCannotSpell) {
  auto t = from_image(tiny_gpt2("gpt-2", {0xF1}));
  ASSERT_TRUE(t);
  const std::vector<int32_t> ids = t->encode("x\xF1y", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{'x', 'y'}));
}

// Fill-in-the-middle markers are control tokens (DeepSeek Coder types its own user-defined, and
// printed them); padding, repository and file separators also end generation (Qwen2.5-Coder's
// <|file_sep|>), as llama.cpp reads them.
TEST(Tokenizer, FillInTheMiddleMarkersAreControlAndItsSeparatorsEndGeneration) {
  auto t = from_image(tiny_gpt2("qwen2", {}, {"<|fim_prefix|>", "<|file_sep|>", "<|repo_name|>"}));
  ASSERT_TRUE(t);
  const int32_t pre = 259, sep = 260, repo = 261;
  for (int32_t id : {pre, sep, repo}) {
    EXPECT_TRUE(t->is_special(id)) << id;
    EXPECT_EQ(t->token_bytes('a', id), "") << id;
  }
  EXPECT_FALSE(t->is_eog(pre));
  EXPECT_TRUE(t->is_eog(sep));
  EXPECT_TRUE(t->is_eog(repo));
}

TEST(Tokenizer, Stories260KBosEos) {
  LOAD_OR_SKIP(l, "stories260K.gguf");
  EXPECT_EQ(l.tok->bos(), 1);
  EXPECT_EQ(l.tok->eos(), 2);
  EXPECT_EQ(l.tok->vocab_size(), 512);
  const auto ids = l.tok->encode("Once upon a time", true);
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(detokenize(*l.tok, ids), "Once upon a time");
}

TEST(Tokenizer, DigestDiffersForDifferentVocab) {
  auto with_scores = [](std::vector<std::string> pieces, std::vector<float> scores) {
    GgufImage g = tiny_llama(std::move(pieces));
    g.floats("tokenizer.ggml.scores", scores);
    return from_image(g);
  };
  auto a = with_scores({"<unk>", "<s>", "</s>", "a", "b"}, {0, 0, 0, -1, -2});
  auto a2 = with_scores({"<unk>", "<s>", "</s>", "a", "b"}, {0, 0, 0, -1, -2});
  auto b = with_scores({"<unk>", "<s>", "</s>", "a", "c"}, {0, 0, 0, -1, -2});
  auto c = with_scores({"<unk>", "<s>", "</s>", "a", "b"}, {0, 0, 0, -1, -3});
  // Length prefixes keep "ab"+"c" and "a"+"bc" apart.
  auto d = with_scores({"<unk>", "<s>", "</s>", "ab", "c"}, {0, 0, 0, -1, -2});
  auto e = with_scores({"<unk>", "<s>", "</s>", "a", "bc"}, {0, 0, 0, -1, -2});
  ASSERT_TRUE(a && a2 && b && c && d && e);
  EXPECT_EQ(a->digest().size(), 64u);
  EXPECT_EQ(a->digest(), a2->digest());
  EXPECT_NE(a->digest(), b->digest());
  EXPECT_NE(a->digest(), c->digest());
  EXPECT_NE(d->digest(), e->digest());

  LOAD_OR_SKIP(spm, "vocab/ggml-vocab-llama-spm.gguf");
  LOAD_OR_SKIP(stories, "stories260K.gguf");
  EXPECT_NE(spm.tok->digest(), stories.tok->digest());
}

TEST(Tokenizer, LongInputEncodesInLinearithmicTime) {
  LOAD_OR_SKIP(l, "vocab/ggml-vocab-llama-spm.gguf");
  // One 200k-character "word" has no spaces to cut it up: a quadratic merge loop would take minutes.
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "abcdefghij";
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = l.tok->encode(text, false);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(detokenize(*l.tok, ids), text);
  EXPECT_LT(secs, 20.0);
}

}  // namespace
}  // namespace pagoda
