// BlockPool: the KV block allocator. Every block is free, in use (refcount > 0) or cached
// (refcount 0 but kept because the prefix index still names it, evictable in LRU order).
// Cached blocks belong to an owner group (a tenant, or the public scope): eviction takes the least
// recently used block of the group holding the most cached blocks, and a per-group cap bounds what
// any one group keeps, so one tenant's flood evicts its own blocks before another tenant's.
// Operations are O(1) apart from choosing the eviction group (O(groups)); the pool knows nothing
// of tokens or hashes.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pagoda {

enum class BlockState : uint8_t { Free, InUse, Cached };

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  // A block with refcount 1: from the free list, else the least recently used cached block of the
  // largest group (the evict callback runs first so the index forgets it). nullopt when neither exists.
  std::optional<int32_t> allocate();
  // Takes another reference (prefix hit or fork). A cached block leaves the LRU and is in use.
  void retain(int32_t b);
  // Drops a reference. At zero a keyed block becomes cached (evictable); others become free.
  // A group over its cap then loses its own least recently used cached block.
  void release(int32_t b);
  // Marks whether the prefix index names this block (decides cached vs free at refcount 0).
  void set_keyed(int32_t b, bool keyed);
  // Drops a cached block straight away (the index invalidated it).
  void evict_cached(int32_t b);
  // The group a block is charged to while cached (group ids are small and dense; 0 by default).
  void set_owner(int32_t b, int32_t group);
  // Most cached blocks one group may keep (0 = no cap).
  void set_group_cache_limit(int32_t n) { group_limit_ = n; }

  void set_evict_callback(std::function<void(int32_t)> cb) { on_evict_ = std::move(cb); }

  int32_t num_blocks() const { return int32_t(ref_.size()); }
  int32_t num_free() const { return int32_t(free_.size()); }
  int32_t num_cached() const { return n_cached_; }
  int32_t num_cached_of(int32_t group) const;
  int32_t num_in_use() const { return num_blocks() - num_free() - num_cached(); }
  // Blocks an allocation could obtain right now (free + evictable).
  int32_t num_available() const { return num_free() + num_cached(); }
  uint64_t evictions() const { return evictions_; }

  BlockState state(int32_t b) const;
  int32_t refcount(int32_t b) const { return ref_[size_t(b)]; }
  bool keyed(int32_t b) const { return keyed_[size_t(b)] != 0; }
  int32_t owner(int32_t b) const { return owner_[size_t(b)]; }
  uint64_t last_use(int32_t b) const { return last_use_[size_t(b)]; }

  // Verifies every structural invariant; returns a description of the first violation or "".
  std::string check_invariants() const;

 private:
  struct Lru {
    int32_t head = -1, tail = -1, count = 0;
  };
  Lru& group(int32_t g);
  void lru_push_back(int32_t b);
  void lru_remove(int32_t b);
  int32_t evict_head(int32_t g);  // removes the group's LRU block from the cache; returns it
  int32_t victim_group() const;

  std::vector<int32_t> ref_;
  std::vector<uint8_t> keyed_;
  std::vector<uint8_t> in_free_;
  std::vector<int32_t> owner_;
  std::vector<int32_t> free_;                 // stack of free blocks
  std::vector<int32_t> prev_, next_;          // intrusive LRU lists of cached blocks, one per group
  std::vector<uint64_t> last_use_;
  std::vector<Lru> groups_;
  int32_t n_cached_ = 0, group_limit_ = 0;
  uint64_t clock_ = 0, evictions_ = 0;
  std::function<void(int32_t)> on_evict_;
};

}  // namespace pagoda
