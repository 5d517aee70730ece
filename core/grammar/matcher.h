// Incremental grammar matching: a pushdown automaton whose state is the set of parse stacks
// after the bytes so far. States are interned and transitions cached, so masking the vocabulary
// is a walk of the token trie through mostly cached transitions. Not thread-safe: a matcher and
// its clones share one cache and must be used from one thread.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/grammar/grammar.h"
#include "core/grammar/token_vocab.h"

namespace pagoda::grammar {

// The grammar's states, built lazily: a state is a sorted set of parse stacks (each a node whose
// position is a byte set, linked to its return frames), plus whether the root can end here.
class GrammarAutomaton {
 public:
  static constexpr int32_t kDead = -1;

  explicit GrammarAutomaton(std::shared_ptr<const Grammar> g);
  int32_t start() const { return start_; }
  int32_t advance(int32_t state, uint8_t byte);
  bool complete(int32_t state) const { return states_[size_t(state)].complete; }
  // Whether every byte in `bytes` leads from `state` back to itself (a string body, a digit run).
  // Bytes are classified lazily and remembered, so a failing test is usually one word compare.
  bool loops_on(int32_t state, const ByteSet& bytes);
  size_t state_count() const { return states_.size(); }
  size_t node_count() const { return nodes_.size(); }

  // Masks are a pure function of (state, vocabulary), so they are cached per state.
  const std::vector<uint32_t>* cached_mask(int32_t state, const TokenVocab& v) const;
  void store_mask(int32_t state, const TokenVocab& v, std::span<const uint32_t> mask);

 private:
  struct Node {
    int32_t pos, parent;  // element index; return frame below (-1: the root's caller)
  };
  struct State {
    std::vector<int32_t> stacks;  // node ids whose pos is a kBytes element, sorted
    bool complete = false;
    std::unique_ptr<int32_t[]> next;  // 256 cached transitions (kUnknown until computed)
    ByteSet loops, exits;  // bytes known to return to this state / known not to
  };
  struct VecHash {
    size_t operator()(const std::vector<int32_t>& v) const;
  };

  int32_t node(int32_t pos, int32_t parent);
  int32_t intern(std::vector<int32_t> stacks, bool complete);
  // Expands the pending (pos, parent) items to byte-set positions, eliminating tail calls.
  int32_t close();
  void drop_transitions();

  std::shared_ptr<const Grammar> g_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> node_ids_;
  std::vector<State> states_;
  std::unordered_map<std::vector<int32_t>, int32_t, VecHash> state_ids_;
  int32_t start_ = kDead;
  size_t with_transitions_ = 0;
  // Scratch for close().
  std::vector<std::pair<int32_t, int32_t>> todo_;
  std::vector<uint64_t> seen_;
  std::vector<int32_t> found_;
  // Mask cache, for one vocabulary at a time.
  const TokenVocab* mask_vocab_ = nullptr;
  std::unordered_map<int32_t, std::vector<uint32_t>> masks_;
};

struct MatcherSnapshot {
  int32_t state = GrammarAutomaton::kDead;
  bool finished = false;
};

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> g);

  // Advances over all of `bytes`, or (returning false) leaves the matcher unchanged.
  bool accept_bytes(std::string_view bytes);
  // A token's bytes; an end-of-sequence token is accepted only when is_complete(), and after it
  // nothing else is.
  bool accept_token(const TokenVocab& v, int32_t id);
  // Accepts tokens in order up to the first rejected one; returns how many were accepted.
  size_t accept_tokens(const TokenVocab& v, std::span<const int32_t> ids);

  // Bit i of `out` (v.mask_words() words) is set iff token i may come next.
  void fill_mask(const TokenVocab& v, std::span<uint32_t> out);
  bool is_complete() const { return !finished_ && automaton_->complete(state_); }
  bool is_finished() const { return finished_; }

  // Speculation: save before checking a draft, restore to roll back. O(1).
  MatcherSnapshot snapshot() const { return {state_, finished_}; }
  void restore(const MatcherSnapshot& s) { state_ = s.state, finished_ = s.finished; }
  // An independent matcher at the same position (sharing the automaton cache).
  GrammarMatcher clone() const { return *this; }

  GrammarAutomaton& automaton() { return *automaton_; }

 private:
  void walk(const TokenVocab& v, int32_t node, int32_t state, std::span<uint32_t> out);

  std::shared_ptr<GrammarAutomaton> automaton_;
  int32_t state_ = GrammarAutomaton::kDead;
  bool finished_ = false;
};

inline bool mask_allows(std::span<const uint32_t> mask, int32_t id) { return (mask[size_t(id) >> 5] >> (id & 31)) & 1; }

// Sets the logits of disallowed tokens to -infinity.
void apply_token_mask(std::span<float> logits, std::span<const uint32_t> mask);

}  // namespace pagoda::grammar
