#include "core/kv/block_pool.h"

#include <cassert>

namespace pagoda {

BlockPool::BlockPool(int32_t n)
    : ref_(size_t(n), 0), keyed_(size_t(n), 0), in_free_(size_t(n), 1), prev_(size_t(n), -1),
      next_(size_t(n), -1), last_use_(size_t(n), 0) {
  free_.reserve(size_t(n));
  // Low block ids come out first, which keeps the inspector's map easy to read.
  for (int32_t b = n - 1; b >= 0; --b) free_.push_back(b);
}

BlockState BlockPool::state(int32_t b) const {
  if (ref_[size_t(b)] > 0) return BlockState::InUse;
  return in_free_[size_t(b)] ? BlockState::Free : BlockState::Cached;
}

void BlockPool::lru_push_back(int32_t b) {
  prev_[size_t(b)] = lru_tail_;
  next_[size_t(b)] = -1;
  if (lru_tail_ >= 0) next_[size_t(lru_tail_)] = b;
  else lru_head_ = b;
  lru_tail_ = b;
  ++n_cached_;
}

void BlockPool::lru_remove(int32_t b) {
  const int32_t p = prev_[size_t(b)], n = next_[size_t(b)];
  if (p >= 0) next_[size_t(p)] = n; else lru_head_ = n;
  if (n >= 0) prev_[size_t(n)] = p; else lru_tail_ = p;
  prev_[size_t(b)] = next_[size_t(b)] = -1;
  --n_cached_;
}

std::optional<int32_t> BlockPool::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
    in_free_[size_t(b)] = 0;
  } else if (lru_head_ >= 0) {
    b = lru_head_;
    lru_remove(b);
    ++evictions_;
    if (on_evict_) on_evict_(b);
    keyed_[size_t(b)] = 0;
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
  } else {
    in_free_[size_t(b)] = 1;
    free_.push_back(b);
  }
}

void BlockPool::set_keyed(int32_t b, bool keyed) { keyed_[size_t(b)] = keyed ? 1 : 0; }

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
  for (int32_t b = lru_head_; b >= 0; b = next_[size_t(b)]) {
    if (ref_[size_t(b)] != 0 || in_free_[size_t(b)] || !keyed_[size_t(b)])
      return "LRU holds block " + std::to_string(b) + " that is not cached";
    if (++walked > num_blocks()) return "LRU list has a cycle";
  }
  if (walked != cached || cached != n_cached_) return "LRU length disagrees with cached block count";
  if (free_count + cached + used != num_blocks()) return "free + cached + used != total";
  return "";
}

}  // namespace pagoda
