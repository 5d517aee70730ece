// Code point ranges to UTF-8 byte-range sequences, so character classes over Unicode become a
// byte-level automaton: every listed sequence matches exactly the encodings of its code points.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pagoda::grammar {

struct CodeRange {
  uint32_t lo = 0, hi = 0;  // inclusive
};

struct ByteRange {
  uint8_t lo = 0, hi = 0;  // inclusive
};

using ByteRangeSeq = std::vector<ByteRange>;  // one range per encoded byte

inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// Sorts and merges `ranges`, drops the surrogates (never valid UTF-8), and complements them
// within [0, kMaxCodePoint] when `negate` is set.
std::vector<CodeRange> normalize_ranges(std::vector<CodeRange> ranges, bool negate);

// The UTF-8 encodings of the (normalized) ranges as byte-range sequences, shortest first.
std::vector<ByteRangeSeq> utf8_sequences(const std::vector<CodeRange>& ranges);


}  // namespace pagoda::grammar
