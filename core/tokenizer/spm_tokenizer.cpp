// SentencePiece-style BPE ("llama" model), with llama.cpp's semantics: optional space prefix,
// spaces become U+2581, then the adjacent pair whose concatenation is the highest-scoring piece is
// merged until none is left; characters that are not pieces fall back to <0xAB> byte tokens.
#include <algorithm>
#include <iterator>
#include <queue>

#include "core/tokenizer/unicode.h"
#include "core/tokenizer/vocab.h"

namespace pagoda::tok {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// One symbol of the merge list: a byte range of the normalized text, doubly linked to neighbours.
struct Symbol {
  uint32_t start;
  uint32_t len;  // 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct Bigram {
  int32_t left;
  int32_t right;
  float score;
  uint32_t len;  // combined length when queued; stale if either side has changed since
};

// Highest score first; among equal scores the leftmost pair, as SentencePiece does.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

class SpmTokenizer final : public VocabTokenizer {
 public:
  explicit SpmTokenizer(Vocab v) : VocabTokenizer(std::move(v)), user_ids_(user_defined_ids(v_)) {
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    for (int32_t i = 0; i < v_.size(); ++i) {
      if (v_.types[size_t(i)] != kTypeByte) continue;
      const int b = byte_piece_value(v_.pieces[size_t(i)]);
      if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = i;
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> out;
    if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
    if (text.empty()) return out;  // no space prefix for an empty prompt (matches llama.cpp)
    if (user_ids_.empty()) {
      encode_fragment(text, v_.add_space_prefix, out);
      return out;
    }
    // Raw text after a user-defined token gets the space prefix again, as in llama.cpp.
    bool after_token = true;
    for (const Fragment& fr : split_user_defined(v_, user_ids_, text)) {
      if (fr.id >= 0) {
        out.push_back(fr.id);
      } else {
        encode_fragment(fr.text, v_.add_space_prefix && after_token, out);
      }
      after_token = fr.id >= 0;
    }
    return out;
  }

  std::string token_bytes(int32_t prev, int32_t id) const override {
    if (id < 0 || id >= v_.size()) return "";
    const int32_t type = v_.types[size_t(id)];
    const std::string& p = v_.pieces[size_t(id)];
    if (type == kTypeControl) return "";
    if (type == kTypeByte) {
      const int b = byte_piece_value(p);
      return b < 0 ? p : std::string(1, char(b));
    }
    std::string out;
    out.reserve(p.size());
    size_t i = 0;
    // The prefix space the encoder added at the start of the text is not part of it.
    if (v_.add_space_prefix && (prev == -1 || prev == v_.bos) && p.compare(0, kSpaceMark.size(), kSpaceMark) == 0)
      i = kSpaceMark.size();
    while (i < p.size()) {
      if (p.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
        out += ' ';
        i += kSpaceMark.size();
      } else {
        out += p[i++];
      }
    }
    return out;
  }


 private:
  // Id of a piece that merging may produce. Like SentencePiece, control, unknown and byte pieces
  // are never the result of a merge even if the text spells them (e.g. "<s>" or "<0x0A>").
  int32_t mergeable(std::string_view s) const {
    const int32_t id = v_.find(s);
    if (id < 0) return -1;
    const int32_t t = v_.types[size_t(id)];
    return t == kTypeNormal || t == kTypeUserDefined ? id : -1;
  }

  void encode_fragment(std::string_view text, bool add_prefix, std::vector<int32_t>& out) const {
    std::string norm;
    norm.reserve(text.size() + text.size() / 2 + kSpaceMark.size());
    if (add_prefix) norm += kSpaceMark;
    for (char c : text) {
      if (c == ' ') norm += kSpaceMark;
      else norm += c;
    }
    std::vector<Symbol> syms = split_chars(norm);
    merge(norm, syms);
    for (int32_t i = syms.empty() ? -1 : 0; i != -1; i = syms[size_t(i)].next)
      emit(std::string_view(norm).substr(syms[size_t(i)].start, syms[size_t(i)].len), out);
  }

  static std::vector<Symbol> split_chars(std::string_view s) {
    std::vector<Symbol> syms;
    syms.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      // A malformed sequence is split into single bytes (which then fall back to byte tokens), so
      // that it cannot swallow a following space mark and every input byte round-trips.
      uint32_t cp;
      const size_t n = utf8_decode(s.data() + i, s.size() - i, &cp);
      const int32_t k = int32_t(syms.size());
      syms.push_back({uint32_t(i), uint32_t(n), k - 1, -1});
      if (k > 0) syms[size_t(k - 1)].next = k;
      i += n;
    }
    return syms;
  }

  void merge(std::string_view norm, std::vector<Symbol>& syms) const {
    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    auto try_add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) return;
      const uint32_t len = syms[size_t(l)].len + syms[size_t(r)].len;
      const int32_t id = mergeable(norm.substr(syms[size_t(l)].start, len));
      if (id >= 0) queue.push({l, r, v_.scores[size_t(id)], len});
    };
    for (size_t i = 1; i < syms.size(); ++i) try_add(int32_t(i - 1), int32_t(i));
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = syms[size_t(b.left)];
      Symbol& r = syms[size_t(b.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale entry
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[size_t(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
  }

  void emit(std::string_view s, std::vector<int32_t>& out) const {
    // A merged symbol is always a piece; a lone character may not be, or may be a byte/control
    // piece that text must not produce, and then goes out byte by byte.
    const int32_t id = mergeable(s);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
    for (unsigned char c : s) {
      if (byte_ids_[c] >= 0) out.push_back(byte_ids_[c]);
      else if (v_.unk >= 0) out.push_back(v_.unk);
    }
  }

  std::vector<int32_t> user_ids_;
  int32_t byte_ids_[256];
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab v) { return std::make_unique<SpmTokenizer>(std::move(v)); }

}  // namespace pagoda::tok
