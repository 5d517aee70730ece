#include "core/kv/block_pool.h"

#include <cassert>

namespace pagoda {

BlockPool::BlockPool(int32_t n)
    : ref_(size_t(n), 0), keyed_(size_t(n), 0), in_free_(size_t(n), 1), owner_(size_t(n), 0), prev_(size_t(n), -1),
      next_(size_t(n), -1), last_use_(size_t(n), 0), groups_(1) {
  free_.reserve(size_t(n));
  // Low block ids come out first, which keeps the inspector's map easy to read.
  for (int32_t b = n - 1; b >= 0; --b) free_.push_back(b);
}

BlockState BlockPool::state(int32_t b) const {
  if (ref_[size_t(b)] > 0) return BlockState::InUse;
  return in_free_[size_t(b)] ? BlockState::Free : BlockState::Cached;
}

BlockPool::Lru& BlockPool::group(int32_t g) {
  assert(g >= 0 && "negative block owner group");
  if (size_t(g) >= groups_.size()) groups_.resize(size_t(g) + 1);
  return groups_[size_t(g)];
}

int32_t BlockPool::num_cached_of(int32_t g) const {
  return g >= 0 && size_t(g) < groups_.size() ? groups_[size_t(g)].count : 0;
}

void BlockPool::lru_push_back(int32_t b) {
  Lru& l = group(owner_[size_t(b)]);
  prev_[size_t(b)] = l.tail;
  next_[size_t(b)] = -1;
  if (l.tail >= 0) next_[size_t(l.tail)] = b;
  else l.head = b;
  l.tail = b;
  ++l.count;
  ++n_cached_;
}

void BlockPool::lru_remove(int32_t b) {
  Lru& l = group(owner_[size_t(b)]);
  const int32_t p = prev_[size_t(b)], n = next_[size_t(b)];
  if (p >= 0) next_[size_t(p)] = n; else l.head = n;
  if (n >= 0) prev_[size_t(n)] = p; else l.tail = p;
  prev_[size_t(b)] = next_[size_t(b)] = -1;
  --l.count;
  --n_cached_;
}

// The group holding the most cached blocks pays for an eviction; between equals, the one whose
// oldest block is older (plain LRU when there is one group).
int32_t BlockPool::victim_group() const {
  int32_t best = -1;
  for (int32_t g = 0; g < int32_t(groups_.size()); ++g) {
    const Lru& l = groups_[size_t(g)];
    if (l.count == 0) continue;
    if (best < 0) { best = g; continue; }
    const Lru& o = groups_[size_t(best)];
    if (l.count > o.count || (l.count == o.count && last_use_[size_t(l.head)] < last_use_[size_t(o.head)])) best = g;
  }
  return best;
}

int32_t BlockPool::evict_head(int32_t g) {
  const int32_t b = groups_[size_t(g)].head;
  lru_remove(b);
  ++evictions_;
  if (on_evict_) on_evict_(b);
  keyed_[size_t(b)] = 0;
  return b;
}

std::optional<int32_t> BlockPool::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
    in_free_[size_t(b)] = 0;
  } else if (const int32_t g = victim_group(); g >= 0) {
    b = evict_head(g);
  } else {
    return std::nullopt;
  }
  ref_[size_t(b)] = 1;
  last_use_[size_t(b)] = ++clock_;
  return b;
}

void BlockPool::retain(int32_t b) {
  assert(!in_free_[size_t(b)] && "retain of a free block");
  if (ref_[size_t(b)] == 0) lru_remove(b);
  ++ref_[size_t(b)];
  last_use_[size_t(b)] = ++clock_;
}

void BlockPool::release(int32_t b) {
  assert(ref_[size_t(b)] > 0 && "release of an unreferenced block");
  if (--ref_[size_t(b)] > 0) return;
  last_use_[size_t(b)] = ++clock_;
  if (keyed_[size_t(b)]) {
    lru_push_back(b);
    const int32_t g = owner_[size_t(b)];
    if (group_limit_ > 0 && groups_[size_t(g)].count > group_limit_) {
      const int32_t old = evict_head(g);
      in_free_[size_t(old)] = 1;
      free_.push_back(old);
    }
  } else {
    in_free_[size_t(b)] = 1;
    free_.push_back(b);
  }
}

void BlockPool::set_keyed(int32_t b, bool keyed) { keyed_[size_t(b)] = keyed ? 1 : 0; }

void BlockPool::set_owner(int32_t b, int32_t g) {
  group(g);  // the group exists before any block is charged to it
  const bool cached = state(b) == BlockState::Cached;
  if (cached) lru_remove(b);
  owner_[size_t(b)] = g;
  if (cached) lru_push_back(b);
}

void BlockPool::evict_cached(int32_t b) {
  if (state(b) != BlockState::Cached) return;
  lru_remove(b);
  keyed_[size_t(b)] = 0;
  in_free_[size_t(b)] = 1;
  free_.push_back(b);
}

std::string BlockPool::check_invariants() const {
  int32_t free_count = 0, cached = 0, used = 0;
  for (int32_t b = 0; b < num_blocks(); ++b) {
    const bool f = in_free_[size_t(b)] != 0;
    if (ref_[size_t(b)] < 0) return "block " + std::to_string(b) + " has negative refcount";
    if (f && ref_[size_t(b)] > 0) return "block " + std::to_string(b) + " is free but referenced";
    if (f && keyed_[size_t(b)]) return "block " + std::to_string(b) + " is free but keyed";
    if (f) ++free_count;
    else if (ref_[size_t(b)] == 0) ++cached;
    else ++used;
  }
  if (free_count != num_free()) return "free list size disagrees with block states";
  int32_t walked = 0;
  for (int32_t g = 0; g < int32_t(groups_.size()); ++g) {
    int32_t in_group = 0;
    for (int32_t b = groups_[size_t(g)].head; b >= 0; b = next_[size_t(b)]) {
      if (ref_[size_t(b)] != 0 || in_free_[size_t(b)] || !keyed_[size_t(b)])
        return "LRU holds block " + std::to_string(b) + " that is not cached";
      if (owner_[size_t(b)] != g) return "block " + std::to_string(b) + " sits in another group's LRU";
      if (++in_group > num_blocks()) return "LRU list has a cycle";
    }
    if (in_group != groups_[size_t(g)].count) return "group " + std::to_string(g) + " LRU length disagrees with its count";
    if (group_limit_ > 0 && in_group > group_limit_) return "group " + std::to_string(g) + " keeps more than its cap";
    walked += in_group;
  }
  if (walked != cached || cached != n_cached_) return "LRU length disagrees with cached block count";
  if (free_count + cached + used != num_blocks()) return "free + cached + used != total";
  return "";
}

}  // namespace pagoda
