#include "core/grammar/matcher.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace pagoda::grammar {

namespace {
constexpr int32_t kUnknown = -2;
// Transition tables cost 1 KiB per state; past this many they are dropped and rebuilt lazily,
// which bounds memory on long generations without changing any result.
constexpr size_t kMaxStatesWithTransitions = 1 << 16;
constexpr size_t kMaxCachedMasks = 1024;
// Below this many tokens a subtree is walked rather than tested for a self-loop.
constexpr int32_t kBulkMinTokens = 4;

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
}  // namespace

size_t GrammarAutomaton::VecHash::operator()(const std::vector<int32_t>& v) const {
  uint64_t h = 1469598103934665603ull;
  for (int32_t x : v) h = (h ^ uint32_t(x)) * 1099511628211ull;
  return size_t(h);
}

GrammarAutomaton::GrammarAutomaton(std::shared_ptr<const Grammar> g) : g_(std::move(g)) {
  for (int32_t a : g_->rules()[size_t(g_->root())].alts) todo_.push_back({a, -1});
  start_ = close();
}

int32_t GrammarAutomaton::node(int32_t pos, int32_t parent) {
  auto [it, fresh] = node_ids_.try_emplace(pair_key(pos, parent), int32_t(nodes_.size()));
  if (fresh) nodes_.push_back({pos, parent});
  return it->second;
}

int32_t GrammarAutomaton::intern(std::vector<int32_t> stacks, bool complete) {
  if (stacks.empty() && !complete) return kDead;
  stacks.push_back(complete ? 1 : 0);  // the key carries the flag as a trailing element
  auto [it, fresh] = state_ids_.try_emplace(stacks, int32_t(states_.size()));
  if (fresh) {
    stacks.pop_back();
    State s;
    s.stacks = std::move(stacks);
    s.complete = complete;
    states_.push_back(std::move(s));
  }
  return it->second;
}

int32_t GrammarAutomaton::close() {
  const auto& elems = g_->elems();
  seen_.clear();
  found_.clear();
  bool complete = false;
  while (!todo_.empty()) {
    const auto [pos, parent] = todo_.back();
    todo_.pop_back();
    const uint64_t key = pair_key(pos, parent);
    if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) continue;
    seen_.push_back(key);
    const Elem& e = elems[size_t(pos)];
    if (e.kind == ElemKind::kBytes) {
      found_.push_back(node(pos, parent));
    } else if (e.kind == ElemKind::kEnd) {
      if (parent < 0) complete = true;
      else todo_.push_back({nodes_[size_t(parent)].pos, nodes_[size_t(parent)].parent});
    } else {
      // A reference in tail position returns straight to our caller: no frame of its own.
      const int32_t ret = pos + 1;
      const int32_t frame = elems[size_t(ret)].kind == ElemKind::kEnd ? parent : node(ret, parent);
      for (int32_t a : g_->rules()[size_t(e.arg)].alts) todo_.push_back({a, frame});
    }
  }
  std::sort(found_.begin(), found_.end());
  found_.erase(std::unique(found_.begin(), found_.end()), found_.end());
  return intern(found_, complete);
}

int32_t GrammarAutomaton::advance(int32_t state, uint8_t byte) {
  State* s = &states_[size_t(state)];
  if (s->next) {
    const int32_t t = s->next[byte];
    if (t != kUnknown) return t;
  } else {
    if (with_transitions_ >= kMaxStatesWithTransitions) drop_transitions();
    s->next = std::make_unique<int32_t[]>(256);
    std::fill_n(s->next.get(), 256, kUnknown);
    ++with_transitions_;
  }
  const auto& elems = g_->elems();
  const auto& sets = g_->sets();
  for (int32_t n : s->stacks) {
    const Node& nd = nodes_[size_t(n)];
    if (sets[size_t(elems[size_t(nd.pos)].arg)].has(byte)) todo_.push_back({nd.pos + 1, nd.parent});
  }
  const int32_t t = close();
  states_[size_t(state)].next[byte] = t;  // close() may have grown states_, so index again
  return t;
}

void GrammarAutomaton::drop_transitions() {
  for (auto& s : states_) s.next.reset();
  with_transitions_ = 0;
}

bool GrammarAutomaton::loops_on(int32_t state, const ByteSet& bytes) {
  for (int w = 0; w < 4; ++w)
    if (bytes.bits[size_t(w)] & states_[size_t(state)].exits.bits[size_t(w)]) return false;
  for (int w = 0; w < 4; ++w) {
    uint64_t unknown = bytes.bits[size_t(w)] & ~states_[size_t(state)].loops.bits[size_t(w)];
    while (unknown) {
      const uint8_t b = uint8_t(w * 64 + __builtin_ctzll(unknown));
      unknown &= unknown - 1;
      const bool loops = advance(state, b) == state;
      State& s = states_[size_t(state)];
      (loops ? s.loops : s.exits).set(b);
      if (!loops) return false;
    }
  }
  return true;
}

const std::vector<uint32_t>* GrammarAutomaton::cached_mask(int32_t state, const TokenVocab& v) const {
  if (mask_vocab_ != &v) return nullptr;
  auto it = masks_.find(state);
  return it == masks_.end() ? nullptr : &it->second;
}

void GrammarAutomaton::store_mask(int32_t state, const TokenVocab& v, std::span<const uint32_t> mask) {
  if (mask_vocab_ != &v || masks_.size() >= kMaxCachedMasks) {
    masks_.clear();
    mask_vocab_ = &v;
  }
  masks_[state].assign(mask.begin(), mask.end());
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> g)
    : automaton_(std::make_shared<GrammarAutomaton>(std::move(g))) {
  state_ = automaton_->start();
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  if (finished_ || state_ == GrammarAutomaton::kDead) return false;
  int32_t s = state_;
  for (char c : bytes) {
    s = automaton_->advance(s, uint8_t(c));
    if (s == GrammarAutomaton::kDead) return false;
  }
  state_ = s;
  return true;
}

bool GrammarMatcher::accept_token(const TokenVocab& v, int32_t id) {
  if (id < 0 || id >= v.size() || finished_) return false;
  if (v.is_eos(id)) {
    if (!is_complete()) return false;
    finished_ = true;
    return true;
  }
  const std::string& b = v.bytes(id);
  return !b.empty() && accept_bytes(b);
}

size_t GrammarMatcher::accept_tokens(const TokenVocab& v, std::span<const int32_t> ids) {
  size_t n = 0;
  while (n < ids.size() && accept_token(v, ids[n])) ++n;
  return n;
}

void GrammarMatcher::fill_mask(const TokenVocab& v, std::span<uint32_t> out) {
  std::fill(out.begin(), out.end(), 0u);
  if (state_ == GrammarAutomaton::kDead) return;
  if (!finished_) {
    if (const auto* cached = automaton_->cached_mask(state_, v)) {
      std::copy(cached->begin(), cached->end(), out.begin());
    } else {
      walk(v, 0, state_, out);
      automaton_->store_mask(state_, v, out);
    }
  }
  if (is_complete())
    for (int32_t id : v.eos()) out[size_t(id) >> 5] |= 1u << (id & 31);
}

// Depth-first over the token trie, carrying the automaton state reached by each prefix; a dead
// state prunes the subtree, and a subtree whose bytes all loop back to the same state (the
// body of a string, say) is allowed whole without visiting it.
void GrammarMatcher::walk(const TokenVocab& v, int32_t node, int32_t state, std::span<uint32_t> out) {
  const auto& trie = v.trie();
  const auto& ids = v.sorted_ids();
  auto allow = [&](int32_t begin, int32_t end) {
    for (int32_t i = begin; i < end; ++i) out[size_t(ids[size_t(i)]) >> 5] |= 1u << (ids[size_t(i)] & 31);
  };
  const auto& n = trie[size_t(node)];
  for (int32_t c = n.first_child; c < n.first_child + n.n_children; ++c) {
    const auto& child = trie[size_t(c)];
    const int32_t next = automaton_->advance(state, child.byte);
    if (next == GrammarAutomaton::kDead) continue;
    if (child.tok_end - child.own_end >= kBulkMinTokens && automaton_->loops_on(next, child.below)) {
      allow(child.tok_begin, child.tok_end);
      continue;
    }
    allow(child.tok_begin, child.own_end);
    if (child.n_children > 0) walk(v, c, next, out);
  }
}

void apply_token_mask(std::span<float> logits, std::span<const uint32_t> mask) {
  for (size_t i = 0; i < logits.size(); ++i)
    if (!mask_allows(mask, int32_t(i))) logits[i] = -std::numeric_limits<float>::infinity();
}

}  // namespace pagoda::grammar
