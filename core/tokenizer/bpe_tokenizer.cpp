// Byte-level BPE ("gpt2" model): text is pre-tokenized, each byte becomes the printable character
// GPT-2 maps it to, and the pair with the lowest merge rank is merged until no merge applies.
#include <array>
#include <queue>
#include <unordered_map>

#include "core/tokenizer/pretokenize.h"
#include "core/tokenizer/unicode.h"
#include "core/tokenizer/vocab.h"

namespace pagoda::tok {
namespace {

// GPT-2's byte -> codepoint map: printable Latin-1 bytes stand for themselves, the rest are moved
// to U+0100 and up so that every byte has a visible, non-space character.
uint32_t byte_to_codepoint(unsigned b) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (unsigned c = 0; c < 256; ++c) {
      const bool printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
      t[c] = printable ? c : next++;
    }
    return t;
  }();
  return table[b];
}

// Inverse of byte_to_codepoint for codepoints below 512 (all it produces); -1 elsewhere.
int codepoint_to_byte(uint32_t cp) {
  static const auto table = [] {
    std::array<int16_t, 512> t;
    t.fill(-1);
    for (unsigned b = 0; b < 256; ++b) t[byte_to_codepoint(b)] = int16_t(b);
    return t;
  }();
  return cp < 512 ? table[cp] : -1;
}

struct Merge {
  int32_t rank;
  int32_t result;
};

struct Symbol {
  int32_t id;  // -1 for a byte whose character is not in the vocabulary
  int32_t prev;
  int32_t next;
  bool alive;
};

struct Pair {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t result;
};

// Lowest rank first; among equal ranks the leftmost pair.
struct PairOrder {
  bool operator()(const Pair& a, const Pair& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }

class BpeTokenizer final : public VocabTokenizer {
 public:
  BpeTokenizer(Vocab v, PreTokenizerSpec pre) : VocabTokenizer(std::move(v)), pre_(pre), user_ids_(user_defined_ids(v_)) {
    for (unsigned b = 0; b < 256; ++b) {
      std::string ch;
      utf8_append(ch, byte_to_codepoint(b));
      byte_ids_[b] = v_.find(ch);
    }
    merges_.reserve(v_.merges.size());
    for (size_t r = 0; r < v_.merges.size(); ++r) add_merge(v_.merges[r], int32_t(r));
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    std::vector<std::string_view> words;
    for (const Fragment& fr : split_user_defined(v_, user_ids_, text)) {
      if (fr.id >= 0) {
        out.push_back(fr.id);
        continue;
      }
      words.clear();
      pretokenize(pre_.kind, fr.text, words);
      for (std::string_view w : words) encode_word(w, out);
    }
    return out;
  }

  std::string token_bytes(int32_t, int32_t id) const override {
    if (id < 0 || id >= v_.size()) return "";
    const int32_t type = v_.types[size_t(id)];
    const std::string& p = v_.pieces[size_t(id)];
    if (!is_text_type(type)) return "";
    if (type == kTypeUserDefined) return p;  // added tokens are stored as plain text
    std::string out;
    for (size_t i = 0; i < p.size();) {
      uint32_t cp;
      const size_t n = utf8_decode(p.data() + i, p.size() - i, &cp);
      const int b = codepoint_to_byte(cp);
      if (b >= 0) out += char(b);
      else out.append(p, i, n);  // not byte-level text; pass it through unchanged
      i += n;
    }
    return out;
  }


 private:
  // A merge line is "left right"; the split is at the first space after the first character, so a
  // left side may itself start with a space character.
  void add_merge(const std::string& line, int32_t rank) {
    const size_t sp = line.find(' ', 1);
    if (sp == std::string::npos) return;
    const std::string_view l = std::string_view(line).substr(0, sp);
    const std::string_view r = std::string_view(line).substr(sp + 1);
    const int32_t lid = v_.find(l);
    const int32_t rid = v_.find(r);
    const int32_t res = v_.find(std::string(l) + std::string(r));
    if (lid < 0 || rid < 0 || res < 0) return;  // a merge that cannot produce a token is inert
    merges_.emplace(pair_key(lid, rid), Merge{rank, res});  // first (lowest) rank wins
  }

  void encode_word(std::string_view w, std::vector<int32_t>& out) const {
    if (pre_.ignore_merges && w.size() > 1) {
      std::string chars;  // the word as the vocabulary spells it, a character per byte
      for (char b : w) utf8_append(chars, byte_to_codepoint(static_cast<unsigned char>(b)));
      // (Never a control token: text does not become one; see split_user_defined.)
      if (const int32_t id = v_.find(chars); id >= 0 && v_.types[size_t(id)] != kTypeControl) {
        out.push_back(id);
        return;
      }
    }
    std::vector<Symbol> syms(w.size());
    for (size_t i = 0; i < w.size(); ++i)
      syms[i] = {byte_ids_[static_cast<unsigned char>(w[i])], int32_t(i) - 1,
                 i + 1 < w.size() ? int32_t(i + 1) : -1, true};
    std::priority_queue<Pair, std::vector<Pair>, PairOrder> queue;
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0 || syms[size_t(l)].id < 0 || syms[size_t(r)].id < 0) return;
      auto it = merges_.find(pair_key(syms[size_t(l)].id, syms[size_t(r)].id));
      if (it != merges_.end()) queue.push({it->second.rank, l, r, syms[size_t(l)].id, syms[size_t(r)].id, it->second.result});
    };
    for (size_t i = 1; i < syms.size(); ++i) try_add(int32_t(i - 1), int32_t(i));
    while (!queue.empty()) {
      const Pair p = queue.top();
      queue.pop();
      Symbol& l = syms[size_t(p.left)];
      Symbol& r = syms[size_t(p.right)];
      // Skip entries made stale by an earlier merge on either side.
      if (!l.alive || !r.alive || l.next != p.right || l.id != p.left_id || r.id != p.right_id) continue;
      l.id = p.result;
      r.alive = false;
      l.next = r.next;
      if (r.next >= 0) syms[size_t(r.next)].prev = p.left;
      try_add(l.prev, p.left);
      try_add(p.left, l.next);
    }
    // A byte whose character the vocabulary lacks (StarCoder's has no 0xF1, Falcon's no control
    // bytes) is dropped, as llama.cpp drops it. Its UNK may be a control token (StarCoder's is
    // <|endoftext|>), which would end or steer the text where the byte stood.
    for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[size_t(i)].next)
      if (syms[size_t(i)].id >= 0) out.push_back(syms[size_t(i)].id);
  }

  PreTokenizerSpec pre_;
  std::vector<int32_t> user_ids_;
  int32_t byte_ids_[256];
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace

Result<std::unique_ptr<Tokenizer>> make_bpe_tokenizer(Vocab v) {
  auto pre = pre_tokenizer_for(v.pre);
  if (!pre) return pre.take_error();
  return std::unique_ptr<Tokenizer>(std::make_unique<BpeTokenizer>(std::move(v), *pre));
}

}  // namespace pagoda::tok
