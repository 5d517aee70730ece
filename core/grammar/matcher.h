// Incremental grammar matching for constrained decoding: accept a token's bytes, compute the mask
// of tokens allowed next, know when the text is a complete sentence, snapshot and roll back for
// speculation. Masks come from a token-trie walk over the automaton, cached per state and per
// truncated state (the top of the parse stacks), so most masks are a copy plus a few checks.
// Not thread-safe: a matcher and its clones share caches and must be used from one thread.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/grammar/automaton.h"
#include "core/grammar/grammar.h"
#include "core/grammar/token_vocab.h"

namespace pagoda::grammar {

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

  // Bit i of `out` (v.mask_words() words) is set iff token i may come next. `v` must outlive the
  // matcher's caches (they are keyed by its address).
  void fill_mask(const TokenVocab& v, std::span<uint32_t> out);
  bool is_complete() const { return !finished_ && shared_->automaton.complete(state_); }
  bool is_finished() const { return finished_; }

  // Speculation: save before checking a draft, restore to roll back. O(1).
  MatcherSnapshot snapshot() const { return {state_, finished_}; }
  void restore(const MatcherSnapshot& s) { state_ = s.state, finished_ = s.finished; }
  // An independent matcher at the same position (sharing the automaton and caches).
  GrammarMatcher clone() const { return *this; }

  const GrammarAutomaton& automaton() const { return shared_->automaton; }

 private:
  // The mask of a truncated state: tokens allowed whatever lies below the cut, and the trie
  // nodes (with their byte paths) below which tokens pop into the cut frames and must be checked
  // against the full state.
  struct ContextMask {
    std::vector<uint32_t> allowed;
    std::vector<std::pair<int32_t, std::string>> open;
    std::vector<int32_t> open_tokens;  // single tokens to check against the full state
  };
  struct Shared {
    explicit Shared(std::shared_ptr<const Grammar> g) : automaton(std::move(g)) {}
    GrammarAutomaton automaton;
    const TokenVocab* vocab = nullptr;
    std::unordered_map<int32_t, std::vector<uint32_t>> masks;  // by full state
    std::unordered_map<int32_t, ContextMask> contexts;         // by truncated state
  };

  void compute_mask(const TokenVocab& v, std::span<uint32_t> out);
  const ContextMask& context_mask(const TokenVocab& v, int32_t truncated);
  void walk(const TokenVocab& v, int32_t node, int32_t state, std::span<uint32_t> out, ContextMask* ctx,
            std::string& path);
  bool walk_counted(const TokenVocab& v, int32_t node, int32_t state, std::span<uint32_t> out, ContextMask* ctx,
                    size_t depth);

  std::shared_ptr<Shared> shared_;
  int32_t state_ = GrammarAutomaton::kDead;
  bool finished_ = false;
};

inline bool mask_allows(std::span<const uint32_t> mask, int32_t id) { return (mask[size_t(id) >> 5] >> (id & 31)) & 1; }

// Sets the logits of disallowed tokens to -infinity.
void apply_token_mask(std::span<float> logits, std::span<const uint32_t> mask);

}  // namespace pagoda::grammar
