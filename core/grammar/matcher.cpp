#include "core/grammar/matcher.h"

#include <algorithm>
#include <limits>

namespace pagoda::grammar {

namespace {
// 4 KiB per cached 32k-token mask; past this many entries a cache starts over.
constexpr size_t kMaxCachedMasks = 1024;
// Below this many tokens a subtree is walked rather than tested for a self-loop.
constexpr int32_t kBulkMinTokens = 4;

// Every token below `node` is allowed from `state` when each of its bytes (or, past ASCII, each
// whole character) leads back to `state`: a string body, a digit run.
bool bulk_allowed(GrammarAutomaton& a, const TokenVocab::TrieNode& node, int32_t state) {
  if (node.below == node.below_ascii) return a.loops_on(state, node.below);
  return node.utf8_below && a.loops_on(state, node.below_ascii) && a.utf8_loops(state);
}
}  // namespace

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> g) : shared_(std::make_shared<Shared>(std::move(g))) {
  state_ = shared_->automaton.start();
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  if (finished_ || state_ == GrammarAutomaton::kDead) return false;
  shared_->automaton.trim();
  int32_t s = state_;
  for (char c : bytes) {
    s = shared_->automaton.advance(s, uint8_t(c));
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
  if (finished_ || state_ == GrammarAutomaton::kDead) return;
  Shared& sh = *shared_;
  sh.automaton.trim();
  if (sh.vocab != &v) {
    sh.masks.clear();
    sh.contexts.clear();
    sh.vocab = &v;
  }
  auto it = sh.masks.find(state_);
  if (it != sh.masks.end()) {
    std::copy(it->second.begin(), it->second.end(), out.begin());
  } else {
    compute_mask(v, out);
    if (sh.masks.size() >= kMaxCachedMasks) sh.masks.clear();
    sh.masks[state_].assign(out.begin(), out.end());
  }
  if (is_complete())
    for (int32_t id : v.eos()) out[size_t(id) >> 5] |= 1u << (id & 31);
}

// The truncated state's mask is shared by every state with the same stack tops; only the
// tokens that reach below the cut are walked again with the full stacks.
void GrammarMatcher::compute_mask(const TokenVocab& v, std::span<uint32_t> out) {
  GrammarAutomaton& a = shared_->automaton;
  const ContextMask& ctx = context_mask(v, a.truncate(state_, v.max_token_bytes() + 1));
  std::copy(ctx.allowed.begin(), ctx.allowed.end(), out.begin());
  std::string path;
  for (const auto& [node, bytes] : ctx.open) {
    int32_t s = state_;
    for (char c : bytes) {
      s = a.advance(s, uint8_t(c));
      if (s == GrammarAutomaton::kDead) break;
    }
    if (s != GrammarAutomaton::kDead) walk(v, node, s, out, nullptr, path);
  }
  for (int32_t id : ctx.open_tokens) {
    int32_t s = state_;
    for (char c : v.bytes(id))
      if (s != GrammarAutomaton::kDead) s = a.advance(s, uint8_t(c));
    if (s != GrammarAutomaton::kDead) out[size_t(id) >> 5] |= 1u << (id & 31);
  }
}

const GrammarMatcher::ContextMask& GrammarMatcher::context_mask(const TokenVocab& v, int32_t truncated) {
  auto& contexts = shared_->contexts;
  auto it = contexts.find(truncated);
  if (it != contexts.end()) return it->second;
  if (contexts.size() >= kMaxCachedMasks) contexts.clear();
  ContextMask ctx;
  ctx.allowed.assign(v.mask_words(), 0u);
  std::string path;
  walk(v, 0, truncated, ctx.allowed, &ctx, path);
  return contexts.emplace(truncated, std::move(ctx)).first->second;
}

// Depth-first over the token trie, carrying the automaton state reached by each prefix; a dead
// state prunes the subtree, and a subtree whose bytes all loop back to the same state (the
// body of a string, say) is allowed whole without visiting it. With `ctx` the state is a
// truncated one: where a transition escapes into the cut frames, the node is recorded as open.
void GrammarMatcher::walk(const TokenVocab& v, int32_t node, int32_t state, std::span<uint32_t> out, ContextMask* ctx,
                          std::string& path) {
  GrammarAutomaton& a = shared_->automaton;
  const auto& trie = v.trie();
  const auto& ids = v.sorted_ids();
  auto allow = [&](int32_t begin, int32_t end) {
    for (int32_t i = begin; i < end; ++i) out[size_t(ids[size_t(i)]) >> 5] |= 1u << (ids[size_t(i)] & 31);
  };
  const auto& n = trie[size_t(node)];
  const int32_t* transitions = a.transitions(state);
  for (int32_t c = n.first_child; c < n.first_child + n.n_children; ++c) {
    const auto& child = trie[size_t(c)];
    int32_t next = transitions[child.byte];
    if (next == GrammarAutomaton::kUnknown) next = a.compute_advance(state, child.byte);
    if (next == GrammarAutomaton::kDead) continue;
    if (child.max_below > 0 && a.repeat_count(next) > child.max_below) next = a.clamp(next, child.max_below + 1);
    path.push_back(char(child.byte));
    if (ctx && child.n_children > 0 && a.escaped(next)) ctx->open.push_back({c, path});
    if (child.tok_end - child.own_end >= kBulkMinTokens && bulk_allowed(a, child, next)) {
      allow(child.tok_begin, child.tok_end);
    } else {
      allow(child.tok_begin, child.own_end);
      if (child.n_children > 0 && !walk_counted(v, c, next, out, ctx, path.size()))
        walk(v, c, next, out, ctx, path);
    }
    path.pop_back();
  }
}

// Inside a bounded repetition with fewer counts left than some token below has bytes: if the
// subtree loops on the unbounded twin, tokens shorter than the smallest count are allowed and
// only the longer ones are checked one by one (under a truncated state, a check that escapes
// into the cut frames is left to the full state). Returns false to fall back to the walk.
bool GrammarMatcher::walk_counted(const TokenVocab& v, int32_t node, int32_t state, std::span<uint32_t> out,
                                  ContextMask* ctx, size_t depth) {
  GrammarAutomaton& a = shared_->automaton;
  const auto& child = v.trie()[size_t(node)];
  if (a.repeat_min(state) < 2 || child.tok_end - child.own_end < kBulkMinTokens) return false;
  if (!bulk_allowed(a, child, a.clamp(state, 2))) return false;
  const size_t safe = size_t(a.repeat_min(state));
  for (int32_t i = child.own_end; i < child.tok_end; ++i) {
    const int32_t id = v.sorted_ids()[size_t(i)];
    const std::string& b = v.bytes(id);
    bool ok = b.size() - depth < safe, escaped = false;
    if (!ok) {
      int32_t s = state;
      for (size_t k = depth; k < b.size() && s != GrammarAutomaton::kDead; ++k) {
        s = a.advance(s, uint8_t(b[k]));
        escaped = escaped || (s != GrammarAutomaton::kDead && k + 1 < b.size() && a.escaped(s));
      }
      ok = s != GrammarAutomaton::kDead;
      if (!ok && escaped && ctx) ctx->open_tokens.push_back(id);
    }
    if (ok) out[size_t(id) >> 5] |= 1u << (id & 31);
  }
  return true;
}

void apply_token_mask(std::span<float> logits, std::span<const uint32_t> mask) {
  for (size_t i = 0; i < logits.size(); ++i)
    if (!mask_allows(mask, int32_t(i))) logits[i] = -std::numeric_limits<float>::infinity();
}

}  // namespace pagoda::grammar
