// The grammar's pushdown automaton, built lazily: a state is the sorted set of parse stacks after
// some bytes (each stack a node at a byte-set position linked to its return frames). States are
// interned and their byte transitions cached, so matching and masking mostly look up arrays.
// Not thread-safe: one automaton serves one thread (a matcher and its clones).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/grammar/grammar.h"

namespace pagoda::grammar {

// Open-addressing index from a key (held by the caller, compared through `eq`) to an id.
class IdIndex {
 public:
  template <typename Eq>
  int32_t find(uint64_t hash, Eq eq) const {
    if (slots_.empty()) return -1;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == uint32_t(hash) && eq(s.id)) return s.id;
    }
  }
  void insert(uint64_t hash, int32_t id);

 private:
  struct Slot {
    uint32_t hash = 0;
    int32_t id = -1;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0, count_ = 0;
};

class GrammarAutomaton {
 public:
  static constexpr int32_t kDead = -1;
  static constexpr int32_t kUnknown = -2;
  // Parent of a root-rule frame, and of a truncated stack's cut-off frames.
  static constexpr int32_t kRootFrame = -1, kAnyFrame = -2;

  explicit GrammarAutomaton(std::shared_ptr<const Grammar> g);
  int32_t start() const { return start_; }
  int32_t advance(int32_t state, uint8_t byte) {
    const int32_t* next = states_[size_t(state)].next.get();
    if (next && next[byte] != kUnknown) return next[byte];
    return compute_advance(state, byte);
  }
  // The state's transition table (kUnknown entries not computed yet): stable until the next
  // trim(), so a trie walk can index it directly.
  const int32_t* transitions(int32_t state);
  int32_t compute_advance(int32_t state, uint8_t byte);
  // Transition tables cost 1 KiB per state; past a limit they are dropped (and rebuilt lazily),
  // which bounds memory on long generations without changing any result. Called between masks.
  void trim();
  bool complete(int32_t state) const { return states_[size_t(state)].complete; }
  // A truncated state's transition popped into a cut-off frame: what follows depends on context.
  bool escaped(int32_t state) const { return states_[size_t(state)].escaped; }
  // Whether every byte in `bytes` leads from `state` back to itself (a string body, a digit run).
  // Bytes are classified lazily and remembered, so a failing test is usually one word compare.
  bool loops_on(int32_t state, const ByteSet& bytes);
  // The largest repetition count (Grammar::clamp_repeat's k) near the top of the state's stacks.
  int32_t repeat_count(int32_t state) const { return states_[size_t(state)].repeat_k; }
  // The smallest such count: a token adding fewer bytes cannot exhaust any of them.
  int32_t repeat_min(int32_t state) const { return states_[size_t(state)].repeat_min; }
  // `state` with counts k >= cap near its stack tops replaced by their unbounded twins; tokens of
  // fewer than `cap` bytes are allowed from both alike, and the twin's loops make bulk masking
  // possible inside bounded repetitions (a string with maxLength).
  int32_t clamp(int32_t state, int32_t cap);
  // Whether every well-formed multi-byte UTF-8 character leads from `state` back to itself (the
  // body of a string). Checked once per state over the UTF-8 byte ranges, then remembered.
  bool utf8_loops(int32_t state);
  // `state` with each stack cut kContextFrames return frames below its top (deeper frames become
  // kAnyFrame) and repetition counts above `cap` clamped to cap (Grammar::clamp_repeat). States
  // differing only deep in their stacks (a string in one field or another) or in a large count
  // share their truncation, and with it a cached context mask. Tokens of fewer than `cap` bytes
  // behave the same from both until they escape into the cut frames.
  int32_t truncate(int32_t state, int32_t cap);
  static constexpr int kContextFrames = 2;

  size_t state_count() const { return states_.size(); }
  size_t node_count() const { return nodes_.size(); }

 private:
  struct Node {
    int32_t pos, parent;  // element index; return frame below (or kRootFrame / kAnyFrame)
  };
  struct State {
    std::vector<int32_t> stacks;  // node ids whose pos is a kBytes element, sorted
    bool complete = false, escaped = false;
    int32_t truncated = kUnknown, truncated_cap = 0;
    std::unique_ptr<int32_t[]> next;  // 256 cached transitions (kUnknown until computed)
    ByteSet loops, exits;             // bytes known to return to this state / known not to
    int8_t utf8 = -1;                 // utf8_loops(): -1 not yet known, else 0 / 1
    int32_t repeat_k = 0, repeat_min = 0;  // repeat_count(), repeat_min()
  };

  int32_t node(int32_t pos, int32_t parent);
  int32_t intern(bool complete, bool escaped);  // the state made of found_
  // Rebuilds the top and kContextFrames frames of stack `n` with positions mapped by
  // clamp_repeat(pos, cap) (cap 0: unchanged) and, when `cut`, deeper frames as kAnyFrame.
  int32_t rebuild_stack(int32_t n, int32_t cap, bool cut);
  // Expands the pending (pos, parent) items in todo_ to byte-set positions; references in tail
  // position reuse the caller's frame, so loops and right recursion do not grow stacks.
  int32_t close();

  std::shared_ptr<const Grammar> g_;
  std::vector<Node> nodes_;
  IdIndex node_index_;
  std::vector<State> states_;
  IdIndex state_index_;
  int32_t start_ = kDead;
  size_t with_transitions_ = 0;
  // Scratch for close().
  std::vector<std::pair<int32_t, int32_t>> todo_;
  std::vector<uint64_t> seen_;
  std::vector<int32_t> found_;
  std::unordered_map<uint64_t, int32_t> clamped_;  // (state, cap) -> clamp()
};

}  // namespace pagoda::grammar
