#include "core/grammar/utf8_ranges.h"

#include <algorithm>
#include <cassert>

#include "core/tokenizer/unicode.h"

namespace pagoda::grammar {
namespace {

constexpr uint32_t kSurrogateLo = 0xD800, kSurrogateHi = 0xDFFF;

// The largest code point each encoded length covers.
constexpr uint32_t kLengthMax[4] = {0x7F, 0x7FF, 0xFFFF, kMaxCodePoint};

int encoded_length(uint32_t cp) {
  for (int n = 0; n < 4; ++n)
    if (cp <= kLengthMax[n]) return n + 1;
  return 4;
}

std::vector<uint8_t> encode(uint32_t cp) {
  std::string s;
  tok::utf8_append(s, cp);
  return {s.begin(), s.end()};
}

// Splits [lo, hi] (same encoded length) until each piece's encodings differ only in a way a
// per-byte range can express: below the first differing byte, lo's bytes are all minimal
// continuation bytes and hi's all maximal.
void split_same_length(uint32_t lo, uint32_t hi, std::vector<ByteRangeSeq>& out) {
  const int n = encoded_length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) == (hi & ~m)) continue;
    if ((lo & m) != 0) {
      split_same_length(lo, lo | m, out);
      split_same_length((lo | m) + 1, hi, out);
      return;
    }
    if ((hi & m) != m) {
      split_same_length(lo, (hi & ~m) - 1, out);
      split_same_length(hi & ~m, hi, out);
      return;
    }
  }
  const auto a = encode(lo), b = encode(hi);
  assert(a.size() == b.size());
  ByteRangeSeq seq;
  for (size_t k = 0; k < a.size(); ++k) seq.push_back({a[k], b[k]});
  out.push_back(std::move(seq));
}

}  // namespace

std::vector<CodeRange> normalize_ranges(std::vector<CodeRange> ranges, bool negate) {
  std::sort(ranges.begin(), ranges.end(), [](const CodeRange& a, const CodeRange& b) { return a.lo < b.lo; });
  std::vector<CodeRange> merged;
  for (const auto& r : ranges) {
    if (r.lo > r.hi) continue;
    if (!merged.empty() && r.lo <= merged.back().hi + 1) merged.back().hi = std::max(merged.back().hi, r.hi);
    else merged.push_back(r);
  }
  if (negate) {
    std::vector<CodeRange> comp;
    uint32_t next = 0;
    for (const auto& r : merged) {
      if (r.lo > next) comp.push_back({next, r.lo - 1});
      next = r.hi + 1;
    }
    if (next <= kMaxCodePoint) comp.push_back({next, kMaxCodePoint});
    merged = std::move(comp);
  }
  // Cut the surrogate block out: it has no UTF-8 encoding.
  std::vector<CodeRange> out;
  for (auto r : merged) {
    r.hi = std::min(r.hi, kMaxCodePoint);
    if (r.lo > r.hi) continue;
    if (r.hi < kSurrogateLo || r.lo > kSurrogateHi) {
      out.push_back(r);
      continue;
    }
    if (r.lo < kSurrogateLo) out.push_back({r.lo, kSurrogateLo - 1});
    if (r.hi > kSurrogateHi) out.push_back({kSurrogateHi + 1, r.hi});
  }
  return out;
}

std::vector<ByteRangeSeq> utf8_sequences(const std::vector<CodeRange>& ranges) {
  std::vector<ByteRangeSeq> out;
  for (const auto& r : ranges) {
    uint32_t lo = r.lo;
    // One piece per encoded length the range spans.
    while (lo <= r.hi) {
      const uint32_t hi = std::min(r.hi, kLengthMax[encoded_length(lo) - 1]);
      split_same_length(lo, hi, out);
      if (hi == r.hi) break;
      lo = hi + 1;
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const ByteRangeSeq& a, const ByteRangeSeq& b) { return a.size() < b.size(); });
  return out;
}

}  // namespace pagoda::grammar
