// Vocabulary shared by the tokenizer implementations: what from_gguf reads, validated once.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/gguf/gguf.h"
#include "core/tokenizer/tokenizer.h"
#include "core/util/result.h"

namespace pagoda::tok {

// tokenizer.ggml.token_type codes (llama.cpp / SentencePiece numbering).
enum TokenType : int32_t {
  kTypeNormal = 1,
  kTypeUnknown = 2,
  kTypeControl = 3,
  kTypeUserDefined = 4,
  kTypeUnused = 5,
  kTypeByte = 6,
};

// Whether a piece of this type is text: normal, user-defined and byte pieces are; control, unknown,
// unused and undefined ones print nothing, as llama.cpp prints them (<unk>, Phi-3's [PAD...]).
inline bool is_text_type(int32_t type) { return type == kTypeNormal || type == kTypeUserDefined || type == kTypeByte; }

// Transparent hashing so that lookups by string_view do not allocate on the encode path.
struct PieceHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, PieceHash, std::equal_to<>>;

struct Vocab {
  std::string model;  // "llama" or "gpt2"
  std::string pre;    // tokenizer.ggml.pre, "" when absent
  std::vector<std::string> pieces;
  std::vector<float> scores;   // one per piece (zeros when the file has none)
  std::vector<int32_t> types;  // one per piece (normal when the file has none)
  std::vector<std::string> merges;
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t unk = -1;
  std::vector<int32_t> eog;  // end-of-generation ids, sorted (see Tokenizer::is_eog)
  bool add_space_prefix = true;
  bool add_bos = true;
  PieceMap ids;        // piece -> first id holding it
  std::string digest;  // SHA-256 hex, see compute_digest

  int32_t size() const { return int32_t(pieces.size()); }
  int32_t find(std::string_view piece) const {
    auto it = ids.find(piece);
    return it == ids.end() ? -1 : it->second;
  }
};

// "<0xAB>" -> 0xAB; anything else -> -1.
inline int byte_piece_value(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(p[3]);
  const int lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Reads and validates every tokenizer.* key the tokenizers use.
Result<Vocab> load_vocab(const GgufFile& f);

// Splits text around user-defined tokens (which llama.cpp matches even when special-token parsing
// is off). A fragment with id >= 0 is that token; id -1 is raw text.
struct Fragment {
  std::string_view text;
  int32_t id;
};
std::vector<Fragment> split_user_defined(const Vocab& v, const std::vector<int32_t>& user_ids,
                                         std::string_view text);
// Ids of user-defined tokens, longest piece first (the order split_user_defined expects).
std::vector<int32_t> user_defined_ids(const Vocab& v);

// The accessors both tokenizer kinds answer straight from their Vocab.
class VocabTokenizer : public Tokenizer {
 public:
  explicit VocabTokenizer(Vocab v) : v_(std::move(v)) {}
  const std::string& piece(int32_t id) const override {
    static const std::string kEmpty;
    return id >= 0 && id < v_.size() ? v_.pieces[size_t(id)] : kEmpty;
  }
  int32_t vocab_size() const override { return v_.size(); }
  int32_t bos() const override { return v_.bos; }
  bool add_bos() const override { return v_.add_bos; }
  int32_t eos() const override { return v_.eos; }
  bool is_special(int32_t id) const override {
    return id >= 0 && id < v_.size() && v_.types[size_t(id)] == kTypeControl;
  }
  bool is_eog(int32_t id) const override {
    return id >= 0 && (id == v_.eos || std::binary_search(v_.eog.begin(), v_.eog.end(), id));
  }
  const std::vector<int32_t>& eog_ids() const override { return v_.eog; }
  const std::string& digest() const override { return v_.digest; }

 protected:
  Vocab v_;
};

std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab v);
Result<std::unique_ptr<Tokenizer>> make_bpe_tokenizer(Vocab v);

}  // namespace pagoda::tok
