// SentencePiece-style BPE ("llama" model): optional space prefix, spaces become U+2581, then the
// adjacent pair whose concatenation is the highest-scoring piece is merged (leftmost on ties)
// until none is left; characters that are not pieces fall back to <0xAB> byte tokens. The
// tokens match SentencePiece's and llama.cpp's on the vocab test vectors.
#include <algorithm>
#include <iterator>
#include <queue>

#include "core/tokenizer/unicode.h"
#include "core/tokenizer/vocab.h"

namespace pagoda::tok {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// The merge state of one fragment: the normalized text cut into pieces, first one per UTF-8
// character, as a doubly linked list over slots (a merge absorbs the right piece into the left,
// so slot order stays text order). Every change to a slot bumps its version, which is how a
// queued candidate learns that one of its two pieces is no longer what it saw.
struct Piece {
  uint32_t begin, end;  // byte range in the normalized text
  int32_t left, right;  // neighbouring slots, -1 at the ends
  uint32_t version;
};

// A pair of adjacent pieces whose joined text is a vocabulary piece.
struct MergeCandidate {
  float score;
  uint32_t at;  // byte offset of the pair: equal scores merge leftmost first
  int32_t left, right;
  uint32_t left_version, right_version;
};

// Priority queue order: higher score first, then lower position.
struct RanksBelow {
  bool operator()(const MergeCandidate& a, const MergeCandidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.at > b.at;
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
    if (!is_text_type(type)) return "";
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
    if (norm.empty()) return;
    const std::vector<Piece> pieces = merge_pieces(norm);
    for (int32_t i = 0; i >= 0; i = pieces[size_t(i)].right)  // slot 0 is never absorbed
      emit(std::string_view(norm).substr(pieces[size_t(i)].begin, pieces[size_t(i)].end - pieces[size_t(i)].begin), out);
  }

  // One piece per character. A malformed sequence becomes single bytes (which then fall back to
  // byte tokens), so it cannot swallow a following space mark and every input byte round-trips.
  static std::vector<Piece> cut_characters(std::string_view s) {
    std::vector<Piece> pieces;
    pieces.reserve(s.size());
    uint32_t cp = 0;
    for (size_t at = 0; at < s.size();) {
      const size_t n = utf8_decode(s.data() + at, s.size() - at, &cp);
      const int32_t slot = int32_t(pieces.size());
      pieces.push_back({uint32_t(at), uint32_t(at + n), slot - 1, -1, 0});
      if (slot > 0) pieces[size_t(slot - 1)].right = slot;
      at += n;
    }
    return pieces;
  }

  // Repeatedly joins the adjacent pair that forms the best-scoring vocabulary piece (leftmost on
  // ties) until no pair forms one. Candidates are queued when a pair comes into being and
  // dropped on pop when either side has changed since.
  std::vector<Piece> merge_pieces(std::string_view norm) const {
    std::vector<Piece> pieces = cut_characters(norm);
    std::priority_queue<MergeCandidate, std::vector<MergeCandidate>, RanksBelow> queue;
    auto propose = [&](int32_t l) {
      if (l < 0 || pieces[size_t(l)].right < 0) return;
      const Piece& a = pieces[size_t(l)];
      const Piece& b = pieces[size_t(a.right)];
      const int32_t id = mergeable(norm.substr(a.begin, b.end - a.begin));
      if (id >= 0) queue.push({v_.scores[size_t(id)], a.begin, l, a.right, a.version, b.version});
    };
    for (int32_t i = 0; i < int32_t(pieces.size()); ++i) propose(i);
    while (!queue.empty()) {
      const MergeCandidate c = queue.top();
      queue.pop();
      Piece& a = pieces[size_t(c.left)];
      Piece& b = pieces[size_t(c.right)];
      if (a.version != c.left_version || b.version != c.right_version) continue;  // stale
      a.end = b.end;
      a.right = b.right;
      if (b.right >= 0) pieces[size_t(b.right)].left = c.left;
      ++a.version;
      ++b.version;  // absorbed: no candidate naming it survives
      propose(a.left);
      propose(c.left);
    }
    return pieces;
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
