// PrefixIndex (core/prefix): block key -> resident block. Driven directly over a BlockPool, no
// model: chains match up to the first miss, a hit takes a reference, eviction and clear() forget.
#include <gtest/gtest.h>

#include <vector>

#include "core/prefix/prefix_index.h"

using namespace pagoda;

namespace {

CacheIdentity identity(const std::string& weights = "w") {
  CacheIdentity c;
  c.weights_digest = weights;
  c.block_size = 4;
  return c;
}

std::vector<int32_t> tokens(int32_t n, int32_t from = 1) {
  std::vector<int32_t> v;
  for (int32_t i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}

// Inserts every key into a fresh block and releases it, as a finished sequence leaves its chain.
std::vector<int32_t> cache_chain(BlockPool& pool, PrefixIndex& index, const std::vector<BlockKey>& keys) {
  std::vector<int32_t> blocks;
  for (const auto& k : keys) {
    const int32_t b = *pool.allocate();
    EXPECT_TRUE(index.insert(k, b));
    blocks.push_back(b);
  }
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) pool.release(*it);
  return blocks;
}

}  // namespace

TEST(PrefixIndex, MatchStopsAtTheFirstMissAndRetainsWhatItReturns) {
  BlockPool pool(16);
  PrefixIndex index(pool);
  const auto keys = block_keys(identity(), tokens(16), 0);  // 4 full blocks of 4
  ASSERT_EQ(keys.size(), 4u);
  const auto blocks = cache_chain(pool, index, {keys[0], keys[1]});
  EXPECT_EQ(pool.num_cached(), 2);
  // Same first two blocks, then a different third: two hits, in chain order, each retained.
  auto other = tokens(16);
  other[9] = 99;
  const auto got = index.match_and_retain(block_keys(identity(), other, 0));
  EXPECT_EQ(got, blocks);
  for (int32_t b : got) EXPECT_EQ(pool.refcount(b), 1);
  EXPECT_EQ(pool.num_cached(), 0);
  // A chain whose first block differs matches nothing, even though later keys could collide in text.
  auto shifted = tokens(16);
  shifted[0] = 42;
  EXPECT_TRUE(index.match_and_retain(block_keys(identity(), shifted, 0)).empty());
}

TEST(PrefixIndex, DuplicateKeyIsRefusedAndTheCallersBlockStaysUnkeyed) {
  BlockPool pool(4);
  PrefixIndex index(pool);
  const auto keys = block_keys(identity(), tokens(4), 0);
  const int32_t a = *pool.allocate(), b = *pool.allocate();
  EXPECT_TRUE(index.insert(keys[0], a));
  EXPECT_FALSE(index.insert(keys[0], b));
  EXPECT_EQ(index.key_of(a), keys[0]);
  EXPECT_FALSE(index.key_of(b).has_value());
  pool.release(b);  // unkeyed: free at once, not cached
  EXPECT_EQ(pool.num_cached(), 0);
  pool.release(a);
  EXPECT_EQ(pool.num_cached(), 1);
}

TEST(PrefixIndex, EvictedBlockIsForgottenAndClearDropsEverything) {
  BlockPool pool(2);
  PrefixIndex index(pool);
  const auto keys = block_keys(identity(), tokens(8), 0);
  cache_chain(pool, index, keys);
  EXPECT_EQ(index.size(), 2u);
  // Both blocks are cached; two allocations must evict both, and the index forgets them.
  const int32_t x = *pool.allocate(), y = *pool.allocate();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_TRUE(index.match_and_retain(keys).empty());
  pool.release(x);
  pool.release(y);
  cache_chain(pool, index, keys);
  index.clear();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_EQ(pool.num_cached(), 0);
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(PrefixIndex, ChangedWeightsDigestGivesZeroHitsInSharedIndex) {
  // Two identities over one pool and index, as a server hosting two adapters would have.
  BlockPool pool(32);
  PrefixIndex index(pool);
  const CacheIdentity a = identity("A"), b = identity("B");
  std::vector<int32_t> toks(48, 7);
  const auto ka = block_keys(a, toks), kb = block_keys(b, toks);
  for (const auto& k : ka) { int32_t blk = *pool.allocate(); ASSERT_TRUE(index.insert(k, blk)); pool.release(blk); }
  EXPECT_EQ(index.match_and_retain(kb).size(), 0u);
  EXPECT_EQ(index.match_and_retain(ka).size(), ka.size());
}
