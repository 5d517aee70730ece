#include "core/grammar/token_vocab.h"

#include <algorithm>

#include "core/tokenizer/tokenizer.h"

namespace pagoda::grammar {

TokenVocab TokenVocab::from_tokenizer(const Tokenizer& tok) {
  std::vector<std::string> bytes(size_t(tok.vocab_size()));
  // Any ordinary token as `prev`: the masked token continues text, so a "▁" prefix is a space.
  const int32_t prev = tok.bos() == 0 ? 1 : 0;
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    if (!tok.is_special(id)) bytes[size_t(id)] = tok.token_bytes(prev, id);
  // Every end-of-generation token ends the sentence (a chat model ends its turn with EOT/<|im_end|>).
  std::vector<int32_t> eos = tok.eog_ids();
  if (tok.eos() >= 0 && !tok.is_eog(tok.eos())) eos.push_back(tok.eos());
  return from_bytes(std::move(bytes), std::move(eos));
}

TokenVocab TokenVocab::from_bytes(std::vector<std::string> bytes, std::vector<int32_t> eos) {
  TokenVocab v;
  v.bytes_ = std::move(bytes);
  for (int32_t id : eos) {
    if (id >= 0 && id < v.size()) {
      v.bytes_[size_t(id)].clear();
      v.eos_.push_back(id);
    }
  }
  v.build_trie();
  return v;
}

namespace {
// Length of the well-formed UTF-8 character starting at s[i], or 0 (Unicode table 3-7).
size_t utf8_char_len(const std::string& s, size_t i) {
  const uint8_t c = uint8_t(s[i]);
  if (c < 0x80) return 1;
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  const uint8_t c1 = uint8_t(s[i + 1]);
  const uint8_t lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
  const uint8_t hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
  if (c1 < lo || c1 > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return 0;
  return n;
}

// Bit d: bytes[d:] is a sequence of whole characters (positions past 63 count as not).
uint64_t utf8_suffixes(const std::string& s) {
  std::vector<bool> ok(s.size() + 1, false);
  ok[s.size()] = true;
  for (size_t d = s.size(); d-- > 0;) {
    const size_t n = utf8_char_len(s, d);
    ok[d] = n > 0 && ok[d + n];
  }
  uint64_t bits = 0;
  for (size_t d = 0; d < ok.size() && d < 64; ++d)
    if (ok[d]) bits |= uint64_t(1) << d;
  return bits;
}
}  // namespace

bool TokenVocab::is_eos(int32_t id) const { return std::find(eos_.begin(), eos_.end(), id) != eos_.end(); }

void TokenVocab::build_trie() {
  for (int32_t id = 0; id < size(); ++id) {
    if (bytes_[size_t(id)].empty()) continue;
    sorted_.push_back(id);
    max_bytes_ = std::max(max_bytes_, int32_t(bytes_[size_t(id)].size()));
  }
  std::stable_sort(sorted_.begin(), sorted_.end(),
                   [&](int32_t a, int32_t b) { return bytes_[size_t(a)] < bytes_[size_t(b)]; });
  for (int32_t id : sorted_) utf8_from_.push_back(utf8_suffixes(bytes_[size_t(id)]));
  trie_.emplace_back();
  build_node(0, int32_t(sorted_.size()), 0, 0);
  utf8_from_.clear();
  utf8_from_.shrink_to_fit();
}

// Fills node `self` for the sorted tokens [lo, hi) that share their first `depth` bytes. Children
// are allocated contiguously before recursing so each node's children form one index range.
int32_t TokenVocab::build_node(int32_t lo, int32_t hi, size_t depth, int32_t self) {
  auto byte_at = [&](int32_t i) { return uint8_t(bytes_[size_t(sorted_[size_t(i)])][depth]); };
  int32_t own = lo;
  while (own < hi && bytes_[size_t(sorted_[size_t(own)])].size() == depth) ++own;
  trie_[size_t(self)].tok_begin = lo;
  trie_[size_t(self)].own_end = own;
  trie_[size_t(self)].tok_end = hi;
  for (int32_t i = own; i < hi; ++i)
    trie_[size_t(self)].max_below = std::max(trie_[size_t(self)].max_below, int32_t(bytes_[size_t(sorted_[size_t(i)])].size() - depth));
  for (int32_t i = own; i < hi && depth < 64; ++i)
    if (!((utf8_from_[size_t(i)] >> depth) & 1)) trie_[size_t(self)].utf8_below = false;
  if (depth >= 64) trie_[size_t(self)].utf8_below = false;
  std::vector<std::pair<int32_t, int32_t>> groups;  // [begin, end) of each child's tokens
  for (int32_t i = own; i < hi;) {
    int32_t j = i + 1;
    while (j < hi && byte_at(j) == byte_at(i)) ++j;
    groups.push_back({i, j});
    i = j;
  }
  const int32_t first = int32_t(trie_.size());
  trie_[size_t(self)].first_child = first;
  trie_[size_t(self)].n_children = int32_t(groups.size());
  trie_.resize(trie_.size() + groups.size());
  ByteSet below;
  for (size_t k = 0; k < groups.size(); ++k) {
    const int32_t child = first + int32_t(k);
    trie_[size_t(child)].byte = byte_at(groups[k].first);
    build_node(groups[k].first, groups[k].second, depth + 1, child);
    below.set(trie_[size_t(child)].byte);
    const ByteSet& cb = trie_[size_t(child)].below;
    for (int w = 0; w < 4; ++w) below.bits[size_t(w)] |= cb.bits[size_t(w)];
  }
  trie_[size_t(self)].below = below;
  trie_[size_t(self)].below_ascii = below;
  trie_[size_t(self)].below_ascii.bits[2] = trie_[size_t(self)].below_ascii.bits[3] = 0;
  return self;
}

}  // namespace pagoda::grammar
