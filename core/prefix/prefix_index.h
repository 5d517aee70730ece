// PrefixIndex: block key -> resident KV block. Lookups walk a request's key chain and stop at the
// first miss; entries disappear when the pool evicts their block. Hit/miss accounting in tokens.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/kv/block_pool.h"
#include "core/prefix/cache_identity.h"

namespace pagoda {

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const {
    size_t h;
    static_assert(sizeof(h) <= sizeof(BlockKey));
    __builtin_memcpy(&h, k.data(), sizeof(h));  // already uniformly distributed
    return h;
  }
};

class PrefixIndex {
 public:
  // Registers itself as the pool's eviction callback.
  explicit PrefixIndex(BlockPool& pool);

  // Longest chain of resident blocks for `keys`, each retained (refcount + 1) for the caller.
  std::vector<int32_t> match_and_retain(std::span<const BlockKey> keys);
  // Records that `block` (full, owned by the caller) holds `key`. Returns false if the key is
  // already resident in another block (the caller's block then stays unkeyed).
  bool insert(const BlockKey& key, int32_t block);

  std::optional<BlockKey> key_of(int32_t block) const;
  // Forgets every entry (their K/V is no longer trusted): cached blocks become free at once,
  // blocks in use become free when released.
  void clear();
  size_t size() const { return by_key_.size(); }

  uint64_t queries_tokens() const { return query_tokens_; }
  uint64_t hit_tokens() const { return hit_tokens_; }
  void account(uint64_t queried_tokens, uint64_t hit_tokens) {
    query_tokens_ += queried_tokens;
    hit_tokens_ += hit_tokens;
  }

 private:
  void forget(int32_t block);

  BlockPool& pool_;
  std::unordered_map<BlockKey, int32_t, BlockKeyHash> by_key_;
  std::vector<std::optional<BlockKey>> by_block_;
  uint64_t query_tokens_ = 0, hit_tokens_ = 0;
};

}  // namespace pagoda
