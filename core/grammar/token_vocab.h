// A vocabulary as the grammar matcher sees it: each token's exact output bytes (SentencePiece
// "▁" as a space, <0xNN> byte tokens as that byte) arranged in a byte trie for masking.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/grammar/grammar.h"

namespace pagoda {
class Tokenizer;
}

namespace pagoda::grammar {

class TokenVocab {
 public:
  struct TrieNode {
    int32_t first_child = 0, n_children = 0;
    // Tokens under this node are sorted_ids()[tok_begin, tok_end); those ending exactly here
    // come first, [tok_begin, own_end).
    int32_t tok_begin = 0, own_end = 0, tok_end = 0;
    int32_t max_below = 0;  // the most bytes any token adds below this node
    uint8_t byte = 0;
    // Every token below continues this node's bytes with whole, well-formed UTF-8 characters.
    bool utf8_below = true;
    ByteSet below;        // every byte that occurs strictly below this node
    ByteSet below_ascii;  // the ASCII part of `below`
  };

  // Token bytes as they appear mid-text (a leading "▁" is a space). Control tokens get no bytes,
  // so grammars never allow them; the end-of-sequence token is allowed only on a complete sentence.
  static TokenVocab from_tokenizer(const Tokenizer& tok);
  // `bytes[id]` for each id (empty: never allowed by a grammar); `eos` ids end the sentence.
  static TokenVocab from_bytes(std::vector<std::string> bytes, std::vector<int32_t> eos);

  int32_t size() const { return int32_t(bytes_.size()); }
  size_t mask_words() const { return (bytes_.size() + 31) / 32; }
  const std::string& bytes(int32_t id) const { return bytes_[size_t(id)]; }
  const std::vector<int32_t>& eos() const { return eos_; }
  int32_t max_token_bytes() const { return max_bytes_; }
  bool is_eos(int32_t id) const;
  const std::vector<TrieNode>& trie() const { return trie_; }  // [0] is the root (no byte)
  const std::vector<int32_t>& sorted_ids() const { return sorted_; }

 private:
  void build_trie();
  int32_t build_node(int32_t lo, int32_t hi, size_t depth, int32_t self);
  std::vector<uint64_t> utf8_from_;  // per sorted token: bit d set iff bytes[d:] is well-formed UTF-8

  std::vector<std::string> bytes_;
  std::vector<int32_t> eos_;
  std::vector<int32_t> sorted_;  // non-empty tokens, by their bytes
  std::vector<TrieNode> trie_;
  int32_t max_bytes_ = 0;
};

}  // namespace pagoda::grammar
