// BlockPool: O(1) free list + LRU of cached blocks; random operation sequences keep every invariant.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "core/kv/block_pool.h"

using namespace pagoda;

TEST(BlockPool, AllocatesUntilExhaustedThenFails) {
  BlockPool p(3);
  EXPECT_TRUE(p.allocate());
  EXPECT_TRUE(p.allocate());
  EXPECT_TRUE(p.allocate());
  EXPECT_FALSE(p.allocate());
  EXPECT_EQ(p.check_invariants(), "");
}

TEST(BlockPool, KeyedBlockBecomesCachedAndIsEvictedLru) {
  BlockPool p(2);
  std::vector<int32_t> evicted;
  p.set_evict_callback([&](int32_t b) { evicted.push_back(b); });
  const int32_t a = *p.allocate(), b = *p.allocate();
  p.set_keyed(a, true);
  p.set_keyed(b, true);
  p.release(a);  // a cached first: least recently used
  p.release(b);
  EXPECT_EQ(p.num_cached(), 2);
  EXPECT_EQ(p.num_free(), 0);
  const int32_t c = *p.allocate();
  EXPECT_EQ(c, a);
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0], a);
  EXPECT_FALSE(p.keyed(a));
  EXPECT_EQ(p.check_invariants(), "");
}

TEST(BlockPool, RetainRevivesCachedBlock) {
  BlockPool p(1);
  const int32_t a = *p.allocate();
  p.set_keyed(a, true);
  p.release(a);
  EXPECT_EQ(p.state(a), BlockState::Cached);
  p.retain(a);
  EXPECT_EQ(p.state(a), BlockState::InUse);
  EXPECT_FALSE(p.allocate());  // nothing free, nothing evictable
  EXPECT_EQ(p.check_invariants(), "");
}

// A model of the pool's users: sequences owning references (with sharing, as forks do) and a set
// of keyed blocks (as the prefix index would). Random operations; invariants checked each step.
TEST(BlockPool, RandomOperationsKeepInvariants) {
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int32_t n = 64;
  BlockPool p(n);
  std::set<int32_t> keyed;
  p.set_evict_callback([&](int32_t b) { keyed.erase(b); });
  std::vector<std::vector<int32_t>> seqs(8);
  for (int step = 0; step < 20000; ++step) {
    auto& s = seqs[rng() % seqs.size()];
    switch (rng() % 6) {
      case 0: case 1: {  // grow
        if (auto b = p.allocate()) s.push_back(*b);
        else ASSERT_EQ(p.num_available(), 0);
        break;
      }
      case 2: {  // fork: share another sequence's blocks
        auto& o = seqs[rng() % seqs.size()];
        if (&o == &s) break;
        for (int32_t b : o) { p.retain(b); s.push_back(b); }
        break;
      }
      case 3: {  // key a block (it became a full, hashed block)
        if (s.empty()) break;
        const int32_t b = s[rng() % s.size()];
        p.set_keyed(b, true);
        keyed.insert(b);
        break;
      }
      case 4: {  // finish: release everything
        for (int32_t b : s) p.release(b);
        s.clear();
        break;
      }
      case 5: {  // prefix hit: retain a cached block
        for (int32_t b : keyed) {
          if (p.state(b) == BlockState::Cached) { p.retain(b); s.push_back(b); break; }
        }
        break;
      }
    }
    const std::string err = p.check_invariants();
    ASSERT_EQ(err, "") << "step " << step;
    // Refcounts equal the number of references the sequences hold.
    std::map<int32_t, int32_t> refs;
    for (const auto& q : seqs) for (int32_t b : q) ++refs[b];
    for (int32_t b = 0; b < n; ++b) ASSERT_EQ(p.refcount(b), refs.count(b) ? refs[b] : 0) << "block " << b;
  }
  for (auto& s : seqs) { for (int32_t b : s) p.release(b); s.clear(); }
  EXPECT_EQ(p.num_in_use(), 0);
  EXPECT_EQ(p.num_free() + p.num_cached(), n);
  EXPECT_EQ(p.check_invariants(), "");
}
