#include "core/grammar/automaton.h"

#include <algorithm>

namespace pagoda::grammar {

namespace {
constexpr size_t kMaxStatesWithTransitions = 1 << 16;

uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}
uint64_t node_hash(int32_t pos, int32_t parent) { return mix((uint64_t(uint32_t(pos)) << 32) | uint32_t(parent)); }
}  // namespace

void IdIndex::insert(uint64_t hash, int32_t id) {
  if ((count_ + 1) * 2 > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(std::max<size_t>(64, old.size() * 2), Slot{});
    mask_ = slots_.size() - 1;
    count_ = 0;
    for (const Slot& s : old)
      if (s.id >= 0) insert(s.hash, s.id);
  }
  size_t i = uint32_t(hash) & mask_;
  while (slots_[i].id >= 0) i = (i + 1) & mask_;
  slots_[i] = Slot{uint32_t(hash), id};
  ++count_;
}

GrammarAutomaton::GrammarAutomaton(std::shared_ptr<const Grammar> g) : g_(std::move(g)) {
  for (int32_t a : g_->rules()[size_t(g_->root())].alts) todo_.push_back({a, kRootFrame});
  start_ = close();
}

int32_t GrammarAutomaton::node(int32_t pos, int32_t parent) {
  const uint64_t h = node_hash(pos, parent);
  const int32_t found = node_index_.find(h, [&](int32_t id) {
    return nodes_[size_t(id)].pos == pos && nodes_[size_t(id)].parent == parent;
  });
  if (found >= 0) return found;
  nodes_.push_back({pos, parent});
  node_index_.insert(h, int32_t(nodes_.size() - 1));
  return int32_t(nodes_.size() - 1);
}

int32_t GrammarAutomaton::intern(bool complete, bool escaped) {
  if (found_.empty() && !complete && !escaped) return kDead;
  uint64_t h = 1469598103934665603ull ^ (uint64_t(complete) << 1 | uint64_t(escaped));
  for (int32_t x : found_) h = (h ^ uint32_t(x)) * 1099511628211ull;
  h = mix(h);
  const int32_t id = state_index_.find(h, [&](int32_t s) {
    const State& st = states_[size_t(s)];
    return st.complete == complete && st.escaped == escaped && st.stacks == found_;
  });
  if (id >= 0) return id;
  State s;
  s.stacks = found_;
  s.complete = complete;
  s.escaped = escaped;
  for (int32_t n : found_) {
    int32_t cur = n;
    for (int depth = 0; cur >= 0 && depth <= kContextFrames; ++depth, cur = nodes_[size_t(cur)].parent) {
      const int32_t k = g_->repeat_count(nodes_[size_t(cur)].pos);
      if (k == 0) continue;
      s.repeat_k = std::max(s.repeat_k, k);
      s.repeat_min = s.repeat_min == 0 ? k : std::min(s.repeat_min, k);
    }
  }
  states_.push_back(std::move(s));
  state_index_.insert(h, int32_t(states_.size() - 1));
  return int32_t(states_.size() - 1);
}

int32_t GrammarAutomaton::close() {
  const auto& elems = g_->elems();
  seen_.clear();
  found_.clear();
  bool complete = false, escaped = false;
  while (!todo_.empty()) {
    const auto [pos, parent] = todo_.back();
    todo_.pop_back();
    const uint64_t key = (uint64_t(uint32_t(pos)) << 32) | uint32_t(parent);
    if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) continue;
    seen_.push_back(key);
    const Elem& e = elems[size_t(pos)];
    if (e.kind == ElemKind::kBytes) {
      found_.push_back(node(pos, parent));
    } else if (e.kind == ElemKind::kEnd) {
      if (parent == kRootFrame) complete = true;
      else if (parent == kAnyFrame) escaped = true;
      else todo_.push_back({nodes_[size_t(parent)].pos, nodes_[size_t(parent)].parent});
    } else {
      const int32_t ret = pos + 1;
      const int32_t frame = elems[size_t(ret)].kind == ElemKind::kEnd ? parent : node(ret, parent);
      for (int32_t a : g_->rules()[size_t(e.arg)].alts) todo_.push_back({a, frame});
    }
  }
  std::sort(found_.begin(), found_.end());
  found_.erase(std::unique(found_.begin(), found_.end()), found_.end());
  return intern(complete, escaped);
}

const int32_t* GrammarAutomaton::transitions(int32_t state) {
  if (!states_[size_t(state)].next) {
    states_[size_t(state)].next = std::make_unique<int32_t[]>(256);
    std::fill_n(states_[size_t(state)].next.get(), 256, kUnknown);
    ++with_transitions_;
  }
  return states_[size_t(state)].next.get();
}

int32_t GrammarAutomaton::compute_advance(int32_t state, uint8_t byte) {
  (void)transitions(state);
  const auto& elems = g_->elems();
  const auto& sets = g_->sets();
  for (int32_t n : states_[size_t(state)].stacks) {
    const Node& nd = nodes_[size_t(n)];
    if (sets[size_t(elems[size_t(nd.pos)].arg)].has(byte)) todo_.push_back({nd.pos + 1, nd.parent});
  }
  const int32_t t = close();
  states_[size_t(state)].next[byte] = t;  // close() may have grown states_: index again
  return t;
}

void GrammarAutomaton::trim() {
  if (with_transitions_ < kMaxStatesWithTransitions) return;
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

bool GrammarAutomaton::utf8_loops(int32_t state) {
  if (states_[size_t(state)].utf8 >= 0) return states_[size_t(state)].utf8 == 1;
  // Well-formed sequences as byte ranges (Unicode table 3-7).
  static const std::vector<std::vector<std::pair<uint8_t, uint8_t>>> kSequences = {
      {{0xC2, 0xDF}, {0x80, 0xBF}},
      {{0xE0, 0xE0}, {0xA0, 0xBF}, {0x80, 0xBF}},
      {{0xE1, 0xEC}, {0x80, 0xBF}, {0x80, 0xBF}},
      {{0xED, 0xED}, {0x80, 0x9F}, {0x80, 0xBF}},
      {{0xEE, 0xEF}, {0x80, 0xBF}, {0x80, 0xBF}},
      {{0xF0, 0xF0}, {0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
      {{0xF1, 0xF3}, {0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
      {{0xF4, 0xF4}, {0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}},
  };
  bool ok = true;
  // Level by level, the set of states the sequences can reach; interning keeps the sets small.
  for (size_t q = 0; q < kSequences.size() && ok; ++q) {
    std::vector<int32_t> level{state};
    for (const auto& [lo, hi] : kSequences[q]) {
      std::vector<int32_t> next;
      for (int32_t s : level)
        for (int b = lo; b <= hi && ok; ++b) {
          const int32_t t = advance(s, uint8_t(b));
          if (t == kDead) ok = false;
          else if (std::find(next.begin(), next.end(), t) == next.end()) next.push_back(t);
        }
      level = std::move(next);
      if (level.size() > 8) ok = false;  // not a simple loop; walking is cheaper than proving
    }
    ok = ok && level.size() == 1 && level[0] == state;
  }
  states_[size_t(state)].utf8 = ok ? 1 : 0;
  return ok;
}

int32_t GrammarAutomaton::rebuild_stack(int32_t n, int32_t cap, bool cut) {
  int32_t chain[1 + kContextFrames];
  int len = 0;
  int32_t cur = n;
  while (cur >= 0 && len < 1 + kContextFrames) {
    chain[len++] = cur;
    cur = nodes_[size_t(cur)].parent;
  }
  int32_t parent = cut && cur >= 0 ? kAnyFrame : cur;
  for (int i = len - 1; i >= 0; --i) {
    const int32_t pos = nodes_[size_t(chain[i])].pos;
    parent = node(cap > 0 ? g_->clamp_repeat(pos, cap) : pos, parent);
  }
  return parent;
}

int32_t GrammarAutomaton::clamp(int32_t state, int32_t cap) {
  if (states_[size_t(state)].repeat_k < cap) return state;
  const uint64_t key = (uint64_t(uint32_t(state)) << 32) | uint32_t(cap);
  auto it = clamped_.find(key);
  if (it != clamped_.end()) return it->second;
  std::vector<int32_t> stacks;
  for (int32_t n : states_[size_t(state)].stacks) stacks.push_back(rebuild_stack(n, cap, false));
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  found_ = std::move(stacks);
  const int32_t t = intern(states_[size_t(state)].complete, states_[size_t(state)].escaped);
  clamped_[key] = t;
  return t;
}

int32_t GrammarAutomaton::truncate(int32_t state, int32_t cap) {
  if (states_[size_t(state)].truncated != kUnknown && states_[size_t(state)].truncated_cap == cap)
    return states_[size_t(state)].truncated;
  std::vector<int32_t> cut;
  for (int32_t n : states_[size_t(state)].stacks) cut.push_back(rebuild_stack(n, cap, true));
  std::sort(cut.begin(), cut.end());
  cut.erase(std::unique(cut.begin(), cut.end()), cut.end());
  found_ = std::move(cut);
  const int32_t t = intern(states_[size_t(state)].complete, false);
  states_[size_t(state)].truncated = t;
  states_[size_t(state)].truncated_cap = cap;
  return t;
}

}  // namespace pagoda::grammar
