// A context-free grammar over bytes (GBNF-like: rules of alternatives of sequences of literals,
// character classes, rule references and repetitions), lowered to a flat element array the
// matcher walks. Character classes over Unicode are lowered to UTF-8 byte sequences.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/grammar/utf8_ranges.h"
#include "core/util/result.h"

namespace pagoda::grammar {

// The parsed text form; line/col point into the grammar text for error messages.
struct Expr {
  enum class Kind : uint8_t { kLiteral, kClass, kRef, kSeq, kAlt, kRepeat };
  Kind kind = Kind::kSeq;
  std::string text;               // kLiteral: the bytes; kRef: the rule name
  std::vector<CodeRange> ranges;  // kClass
  bool negated = false;           // kClass
  std::vector<Expr> children;     // kSeq, kAlt, kRepeat (one child)
  int32_t min = 0, max = -1;      // kRepeat; max -1 = unbounded
  int line = 0, col = 0;
};

struct RuleDef {
  std::string name;
  Expr body;
  int line = 0, col = 0;
};

struct ByteSet {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  void set(uint8_t b) { bits[b >> 6] |= uint64_t(1) << (b & 63); }
  void set_range(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) set(uint8_t(b));
  }
  bool subset_of(const ByteSet& o) const {
    for (int i = 0; i < 4; ++i)
      if (bits[i] & ~o.bits[i]) return false;
    return true;
  }
  bool operator==(const ByteSet&) const = default;
};

enum class ElemKind : uint8_t { kBytes, kRef, kEnd };

struct Elem {
  ElemKind kind = ElemKind::kEnd;
  int32_t arg = 0;  // kBytes: index into sets(); kRef: rule index
};

struct Rule {
  std::string name;
  std::vector<int32_t> alts;  // start index in elems() of each alternative (each ends with kEnd)
};

class Grammar {
 public:
  // Parses the text form (see docs/structured_output.md); errors name line and column.
  static Result<Grammar> parse(std::string_view text);
  // Lowers parsed rules; `root` names the start rule. Rejects undefined references, duplicate
  // rules and left recursion (a rule reaching itself before consuming a byte).
  static Result<Grammar> build(const std::vector<RuleDef>& rules, std::string_view root = "root");

  const std::vector<Elem>& elems() const { return elems_; }
  const std::vector<ByteSet>& sets() const { return sets_; }
  const std::vector<Rule>& rules() const { return rules_; }
  int32_t root() const { return root_; }
  int32_t rule_of(int32_t pos) const { return rule_of_[size_t(pos)]; }

  // x{m,n} unrolls into a chain of optionals O_k ::= x O_(k-1) | "" (k = 1..n-m). When x always
  // consumes a byte, a token of fewer than `cap` bytes cannot tell O_k for k >= cap from the
  // unbounded x* (the chain's "star twin", a rule only the matcher uses): both still allow every
  // count it can reach. Returns the twin's position for `pos` when pos lies in such an O_k's first
  // alternative, else pos. The matcher masks through the twin, whose loops make masks cheap.
  int32_t clamp_repeat(int32_t pos, int32_t cap) const;
  // k when `pos` lies in the first alternative of a chain's O_k (k >= 2), else 0.
  int32_t repeat_count(int32_t pos) const;

 private:
  friend class GrammarBuilder;
  std::vector<Elem> elems_;
  std::vector<ByteSet> sets_;
  std::vector<Rule> rules_;
  std::vector<int32_t> rule_of_;  // element index -> rule
  struct ChainLink {
    int32_t chain = -1, k = 0;  // rule is O_k of chains_[chain]
  };
  std::vector<ChainLink> chain_of_;          // per rule
  struct Chain {
    std::vector<int32_t> rules;  // rules[k - 1] = O_k
    int32_t twin = -1;           // x*, laid out like O_k's first alternative
  };
  std::vector<Chain> chains_;
  int32_t root_ = -1;
};

}  // namespace pagoda::grammar
