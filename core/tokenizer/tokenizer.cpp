// Tokenizer construction from GGUF metadata (shared by both models), the vocabulary digest and the
// streaming UTF-8-safe detokenizer.
#include "core/tokenizer/tokenizer.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/prefix/cache_identity.h"
#include "core/tokenizer/pretokenize.h"
#include "core/tokenizer/unicode.h"
#include "core/tokenizer/vocab.h"

namespace pagoda {
namespace tok {
namespace {

constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
constexpr const char* kScoresKey = "tokenizer.ggml.scores";
constexpr const char* kTypesKey = "tokenizer.ggml.token_type";
constexpr const char* kMergesKey = "tokenizer.ggml.merges";
constexpr const char* kModelKey = "tokenizer.ggml.model";

Result<std::vector<std::string>> read_string_array(const GgufFile& f, const char* key) {
  const GgufValue* v = f.find(key);
  if (!v) return make_error(std::string("missing metadata key '") + key + "'");
  const GgufArray* a = v->as_array();
  if (!a) return make_error(std::string("metadata key '") + key + "' is not an array");
  std::vector<std::string> out;
  out.reserve(a->items.size());
  for (size_t i = 0; i < a->items.size(); ++i) {
    const std::string* s = a->items[i].as_string();
    if (!s) return make_error(std::string("element ") + std::to_string(i) + " of '" + key + "' is not a string");
    out.push_back(*s);
  }
  return out;
}

// Reads an optional numeric array that must have one entry per token.
template <typename T>
Status read_per_token(const GgufFile& f, const char* key, size_t n, std::vector<T>& out) {
  const GgufValue* v = f.find(key);
  if (!v) return {};
  const GgufArray* a = v->as_array();
  if (!a) return make_error(std::string("metadata key '") + key + "' is not an array");
  if (a->items.size() != n)
    return make_error(std::string("'") + key + "' has " + std::to_string(a->items.size()) + " entries but '" +
                      kTokensKey + "' has " + std::to_string(n));
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      auto x = a->items[i].as_float();
      if (!x) return make_error(std::string("element ") + std::to_string(i) + " of '" + key + "' is not a number");
      out[i] = T(*x);
    } else {
      auto x = a->items[i].as_int();
      if (!x) return make_error(std::string("element ") + std::to_string(i) + " of '" + key + "' is not an integer");
      out[i] = T(*x);
    }
  }
  return {};
}

// A special-token id key: absent -> `dflt`; -1 or 0xFFFFFFFF (how converters write "none") -> -1.
Result<int32_t> read_special_id(const GgufFile& f, const std::string& key, int32_t n_vocab, int32_t dflt) {
  const GgufValue* v = f.find(key);
  if (!v) return dflt;
  auto id = v->as_int();
  if (!id) return make_error("metadata key '" + key + "' is not an integer");
  if (*id == -1 || *id == 0xFFFFFFFFll) return -1;
  if (*id < 0 || *id >= n_vocab)
    return make_error("metadata key '" + key + "' = " + std::to_string(*id) + " is outside the vocabulary (size " +
                      std::to_string(n_vocab) + ")");
  return int32_t(*id);
}

// Defaults for files that omit a special id: the conventional SentencePiece pieces, if present.
int32_t default_id(const Vocab& v, std::string_view piece, int32_t type) {
  const int32_t id = v.find(piece);
  return id >= 0 && v.types[size_t(id)] == type ? id : -1;
}

// Chat models end a turn with a token of their own that is not EOS (Llama 3's EOS is
// <|end_of_text|> but a reply ends with <|eot_id|>). The file may name them; many files only
// carry them in the vocabulary, so tokens with these spellings count too, whatever their type,
// and become control tokens (never printed, never read from text), as llama.cpp makes them: a
// Phi-3 file types its </s> user-defined, and llama.cpp stops there and prints nothing.
Status load_eog_ids(const GgufFile& f, Vocab& v) {
  static constexpr const char* kKeys[] = {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};
  static constexpr const char* kPieces[] = {
      "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
      "<EOT>", "_<EOT>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "</s>", "[EOT]", "[EOS]",
      "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "[e~[",
      "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>"};  // DeepSeek's <｜end▁of▁sentence｜>
  std::vector<int32_t> ids;
  if (v.eos >= 0) ids.push_back(v.eos);
  for (const char* key : kKeys) {
    auto id = read_special_id(f, key, v.size(), -1);
    if (!id) return id.take_error();
    if (*id >= 0) ids.push_back(*id);
  }
  // Fill-in-the-middle markers are control tokens too (DeepSeek Coder types its own user-defined);
  // padding, repository and file separators also end generation (Qwen2.5-Coder's), as in llama.cpp.
  static constexpr const char* kFim[] = {
      "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>",
      "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>",
      "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>",
      "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>",
      "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>"};  // DeepSeek's <｜fim▁begin｜>, hole, end
  static constexpr const char* kFimEnds[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
                                             "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
                                             "<|file_sep|>"};
  // Each spelling present becomes a control token; the ends of turn and FIM ends end generation.
  auto mark = [&](const auto& pieces, bool ends) {
    for (const char* piece : pieces)
      if (const int32_t id = v.find(piece); id >= 0) {
        v.types[size_t(id)] = kTypeControl;
        if (ends) ids.push_back(id);
      }
  };
  mark(kPieces, true);
  mark(kFim, false);
  mark(kFimEnds, true);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  v.eog = std::move(ids);
  return {};
}

Status load_special_ids(const GgufFile& f, Vocab& v) {
  const bool spm = v.model == "llama";
  auto bos = read_special_id(f, "tokenizer.ggml.bos_token_id", v.size(), spm ? default_id(v, "<s>", kTypeControl) : -1);
  if (!bos) return bos.take_error();
  auto eos = read_special_id(f, "tokenizer.ggml.eos_token_id", v.size(), spm ? default_id(v, "</s>", kTypeControl) : -1);
  if (!eos) return eos.take_error();
  auto unk = read_special_id(f, "tokenizer.ggml.unknown_token_id", v.size(), default_id(v, "<unk>", kTypeUnknown));
  if (!unk) return unk.take_error();
  v.bos = *bos;
  v.eos = *eos;
  v.unk = *unk;
  return load_eog_ids(f, v);
}

// Length-prefixed fields make the serialization unambiguous: no two vocabularies share bytes.
void put_u64(std::string& s, uint64_t x) {
  for (int i = 0; i < 8; ++i) s += char((x >> (8 * i)) & 0xFF);
}
void put_str(std::string& s, std::string_view x) {
  put_u64(s, x.size());
  s.append(x);
}

std::string compute_digest(const Vocab& v) {
  std::string buf;
  put_str(buf, "pagoda.tokenizer.v1");
  put_str(buf, v.model);
  put_str(buf, v.pre);
  put_u64(buf, v.pieces.size());
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    put_str(buf, v.pieces[i]);
    uint32_t bits;
    std::memcpy(&bits, &v.scores[i], 4);
    put_u64(buf, bits);
    put_u64(buf, uint64_t(uint32_t(v.types[i])));
  }
  put_u64(buf, v.merges.size());
  for (const auto& m : v.merges) put_str(buf, m);
  // Special ids and the space-prefix flag change what encode returns, so they are identity too.
  put_u64(buf, uint64_t(int64_t(v.bos)));
  put_u64(buf, uint64_t(int64_t(v.eos)));
  put_u64(buf, uint64_t(int64_t(v.unk)));
  put_u64(buf, v.add_space_prefix ? 1 : 0);

  BlockKey md{};
  unsigned int md_len = 0;
  if (EVP_Digest(buf.data(), buf.size(), md.data(), &md_len, EVP_sha256(), nullptr) != 1) return "";
  return to_hex(md);
}

}  // namespace

Result<Vocab> load_vocab(const GgufFile& f) {
  Vocab v;
  auto pieces = read_string_array(f, kTokensKey);
  if (!pieces) return pieces.take_error();
  if (pieces->empty()) return make_error(std::string("'") + kTokensKey + "' is empty");
  if (pieces->size() > size_t(INT32_MAX)) return make_error(std::string("'") + kTokensKey + "' is too large");
  v.pieces = std::move(*pieces);
  const size_t n = v.pieces.size();

  auto model = f.get_string(kModelKey);
  if (!model) return model.take_error();
  v.model = *model;
  if (v.model != "llama" && v.model != "gpt2")
    return make_error(std::string("unsupported ") + kModelKey + " '" + v.model + "' (supported: llama, gpt2)");
  if (const GgufValue* pre = f.find("tokenizer.ggml.pre"); pre && pre->as_string()) v.pre = *pre->as_string();

  if (v.model == "llama" && !f.find(kScoresKey))
    return make_error(std::string("missing metadata key '") + kScoresKey + "' (the llama tokenizer merges by score)");
  v.scores.assign(n, 0.0f);
  PAGODA_TRY(read_per_token(f, kScoresKey, n, v.scores));
  v.types.assign(n, kTypeNormal);
  PAGODA_TRY(read_per_token(f, kTypesKey, n, v.types));
  if (!f.find(kTypesKey) && v.model == "llama") {
    // Without types, SentencePiece byte pieces are still recognisable by their spelling.
    for (size_t i = 0; i < n; ++i)
      if (byte_piece_value(v.pieces[i]) >= 0) v.types[i] = kTypeByte;
  }
  if (v.model == "gpt2") {
    auto merges = read_string_array(f, kMergesKey);
    if (!merges) return make_error(merges.error() + " (the gpt2 tokenizer needs its BPE merges)");
    v.merges = std::move(*merges);
  }

  v.ids.reserve(n);
  for (size_t i = 0; i < n; ++i) v.ids.emplace(v.pieces[i], int32_t(i));
  PAGODA_TRY(load_special_ids(f, v));
  if (const GgufValue* sp = f.find("tokenizer.ggml.add_space_prefix")) {
    auto b = sp->as_int();
    if (!b) return make_error("metadata key 'tokenizer.ggml.add_space_prefix' is not a boolean");
    v.add_space_prefix = *b != 0;
  } else {
    v.add_space_prefix = v.model == "llama";  // SentencePiece's default; byte-level BPE has none
  }
  // SentencePiece adds BOS unless told otherwise, and so does Llama 3's byte-level BPE.
  v.add_bos = v.model == "llama";
  if (v.model == "gpt2")
    if (auto pre = pre_tokenizer_for(v.pre); pre && pre->add_bos) v.add_bos = true;
  if (const GgufValue* ab = f.find("tokenizer.ggml.add_bos_token")) {
    auto b = ab->as_int();
    if (!b) return make_error("metadata key 'tokenizer.ggml.add_bos_token' is not a boolean");
    v.add_bos = *b != 0;
  }
  v.digest = compute_digest(v);
  return v;
}

std::vector<int32_t> user_defined_ids(const Vocab& v) {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < v.size(); ++i)
    if (v.types[size_t(i)] == kTypeUserDefined && !v.pieces[size_t(i)].empty()) ids.push_back(i);
  // Longest first, so that a token that contains a shorter one wins.
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return v.pieces[size_t(a)].size() > v.pieces[size_t(b)].size();
  });
  return ids;
}

std::vector<Fragment> split_user_defined(const Vocab& v, const std::vector<int32_t>& user_ids,
                                         std::string_view text) {
  std::vector<Fragment> frags{{text, -1}};
  std::vector<Fragment> next;
  for (int32_t id : user_ids) {
    const std::string& piece = v.pieces[size_t(id)];
    next.clear();
    for (const Fragment& fr : frags) {
      if (fr.id >= 0) {
        next.push_back(fr);
        continue;
      }
      size_t pos = 0;
      for (size_t hit; (hit = fr.text.find(piece, pos)) != std::string_view::npos; pos = hit + piece.size()) {
        if (hit > pos) next.push_back({fr.text.substr(pos, hit - pos), -1});
        next.push_back({fr.text.substr(hit, piece.size()), id});
      }
      if (pos < fr.text.size()) next.push_back({fr.text.substr(pos), -1});
    }
    frags.swap(next);
  }
  return frags;
}

}  // namespace tok

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& f) {
  auto v = tok::load_vocab(f);
  if (!v) return v.take_error();
  if (v->model == "llama") return tok::make_spm_tokenizer(std::move(*v));
  return tok::make_bpe_tokenizer(std::move(*v));
}

namespace {

constexpr char kReplacementUtf8[] = "\xEF\xBF\xBD";

// Moves every complete character at the front of `pending` into the result; an invalid byte becomes
// U+FFFD. With `final` false an incomplete but so-far valid sequence at the end stays in `pending`.
std::string drain_utf8(std::string& pending, bool final) {
  std::string out;
  size_t i = 0;
  while (i < pending.size()) {
    const size_t want = tok::utf8_lead_len(static_cast<unsigned char>(pending[i]));
    const size_t have = pending.size() - i;
    if (want > have && !final) {
      bool prefix_ok = true;
      for (size_t k = 1; k < have; ++k)
        prefix_ok = prefix_ok && (static_cast<unsigned char>(pending[i + k]) & 0xC0) == 0x80;
      if (prefix_ok) break;  // the rest of this character may still arrive
    }
    uint32_t cp;
    const size_t used = tok::utf8_decode(pending.data() + i, have, &cp);
    if (used == 1 && cp == tok::kReplacementChar)
      out += kReplacementUtf8;
    else
      out.append(pending, i, used);
    i += used;
  }
  pending.erase(0, i);
  return out;
}

}  // namespace

std::string detokenize(const Tokenizer& tok, const std::vector<int32_t>& ids, int32_t prev) {
  std::string out;
  for (int32_t id : ids) {
    out += tok.token_bytes(prev, id);
    prev = id;
  }
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_.token_bytes(prev_, id);
  prev_ = id;
  return drain_utf8(pending_, false);
}

std::string StreamDecoder::flush() {
  std::string out = drain_utf8(pending_, true);
  pending_.clear();
  return out;
}

}  // namespace pagoda
