// BlockPool: O(1) free list + LRU of cached blocks; random operation sequences keep every invariant.
// KvCache: fork with copy-on-write keeps every table reading exactly what it wrote.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <set>

#include "backends/cpu/cpu_backend.h"
#include "core/kv/block_pool.h"
#include "core/kv/kv_cache.h"

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

// ---- KvCache fork with copy-on-write, on the CPU backend ----

namespace {

struct CowFixture {
  KvShape cfg;
  CpuBackend be{CpuOptions{.reference = true}};
  std::unique_ptr<KvCache> kv;
  int64_t cols = 0;

  explicit CowFixture(int32_t blocks, int32_t bs = 4) {
    cfg.n_layers = 2;
    cfg.n_kv_heads = 2;
    cfg.head_dim = 3;
    cols = int64_t(cfg.n_kv_heads) * cfg.head_dim;
    cfg.block_size = bs;
    auto k = KvCache::create(be, cfg, blocks);
    EXPECT_TRUE(k.ok()) << k.error();
    kv = std::make_unique<KvCache>(std::move(*k));
  }
  // Writes a value naming (table tag, position, layer, side, column) at every slot of [p0, p1).
  void write(const BlockTable& t, float tag, int32_t p0, int32_t p1) {
    for (int32_t p = p0; p < p1; ++p)
      for (int32_t l = 0; l < cfg.n_layers; ++l)
        for (int side = 0; side < 2; ++side) {
          std::vector<float> row(static_cast<size_t>(cols));
          for (int64_t c = 0; c < cols; ++c) row[size_t(c)] = value(tag, p, l, side, c);
          const Tensor& dst = side ? kv->v(l) : kv->k(l);
          be.upload(dst.row_slice(t.slot(p, kv->block_size()), 1), row.data(), row.size() * sizeof(float));
        }
  }
  // True when every slot of [p0, p1) in `t` holds what write(tag) put there.
  bool holds(const BlockTable& t, float tag, int32_t p0, int32_t p1) {
    for (int32_t p = p0; p < p1; ++p)
      for (int32_t l = 0; l < cfg.n_layers; ++l)
        for (int side = 0; side < 2; ++side) {
          std::vector<float> row(static_cast<size_t>(cols));
          const Tensor& src = side ? kv->v(l) : kv->k(l);
          be.download(src.row_slice(t.slot(p, kv->block_size()), 1), row.data(), row.size() * sizeof(float));
          for (int64_t c = 0; c < cols; ++c)
            if (row[size_t(c)] != value(tag, p, l, side, c)) return false;
        }
    return true;
  }
  static float value(float tag, int32_t p, int32_t l, int side, int64_t c) {
    return tag * 1000 + float(p) * 10 + float(l) * 3 + float(side) * 0.5f + float(c) * 0.01f;
  }
  BlockTable grow(int32_t n_tokens) {
    BlockTable t;
    while (t.capacity(kv->block_size()) < n_tokens) t.blocks.push_back(*kv->pool().allocate());
    return t;
  }
};

}  // namespace

TEST(KvFork, PartialBlockIsCopiedOnWriteAndFullBlocksStayShared) {
  CowFixture f(8);
  BlockTable a = f.grow(10);  // blocks of 4: two full, one holding 2 tokens
  f.write(a, 1, 0, 10);
  BlockTable b = f.kv->fork(a);
  for (int32_t blk : a.blocks) EXPECT_EQ(f.kv->pool().refcount(blk), 2);

  // b continues at position 10: the partial block is copied (its 2 rows) before b writes.
  ASSERT_TRUE(f.kv->make_writable(b, 10).ok());
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(b.blocks[1], a.blocks[1]);
  EXPECT_NE(b.blocks[2], a.blocks[2]);
  EXPECT_EQ(f.kv->pool().refcount(a.blocks[2]), 1);
  EXPECT_EQ(f.kv->pool().refcount(b.blocks[2]), 1);
  EXPECT_TRUE(f.holds(b, 1, 0, 10)) << "the fork sees the parent's tokens, including the copied rows";
  f.write(b, 2, 10, 12);
  f.write(a, 3, 10, 12);
  EXPECT_TRUE(f.holds(a, 1, 0, 10));
  EXPECT_TRUE(f.holds(a, 3, 10, 12)) << "the parent's continuation is its own";
  EXPECT_TRUE(f.holds(b, 2, 10, 12)) << "the fork's continuation is its own";

  // a's block is private now: making it writable again copies nothing.
  const int32_t free_before = f.kv->pool().num_free();
  ASSERT_TRUE(f.kv->make_writable(a, 12).ok());
  EXPECT_EQ(f.kv->pool().num_free(), free_before);

  for (int32_t blk : a.blocks) f.kv->pool().release(blk);
  for (int32_t blk : b.blocks) f.kv->pool().release(blk);
  EXPECT_EQ(f.kv->pool().num_free(), 8) << "nothing leaks";
  EXPECT_EQ(f.kv->pool().check_invariants(), "");
}

TEST(KvFork, CopyOnWriteWithoutAFreeBlockIsAnErrorAndLeavesTablesValid) {
  CowFixture f(3);
  BlockTable a = f.grow(10);  // all three blocks
  f.write(a, 1, 0, 10);
  BlockTable b = f.kv->fork(a);
  const auto st = f.kv->make_writable(b, 10);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().find("KV cache full"), std::string::npos) << st.error();
  EXPECT_EQ(b.blocks, a.blocks);
  EXPECT_TRUE(f.holds(b, 1, 0, 10));
  for (int32_t blk : a.blocks) f.kv->pool().release(blk);
  for (int32_t blk : b.blocks) f.kv->pool().release(blk);
  EXPECT_EQ(f.kv->pool().num_free(), 3);
}

// Random grow / fork / write / truncate / free over tables that share blocks: refcounts always equal
// the references the tables hold, and every table keeps reading exactly what it wrote.
TEST(KvFork, RandomForksAndWritesKeepContentsAndRefcounts) {
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int32_t bs = 4, n_blocks = 24;
  CowFixture f(n_blocks, bs);
  struct Seq {
    BlockTable t;
    std::vector<float> tag;  // tag written at each position
  };
  std::vector<Seq> seqs(6);
  float next_tag = 1;
  for (int step = 0; step < 3000; ++step) {
    Seq& s = seqs[rng() % seqs.size()];
    switch (rng() % 5) {
      case 0: case 1: {  // append 1..5 tokens
        const int32_t n = 1 + int32_t(rng() % 5), p0 = int32_t(s.tag.size());
        if (!f.kv->make_writable(s.t, p0).ok()) break;
        bool ok = true;
        while (ok && s.t.capacity(bs) < p0 + n) {
          auto b = f.kv->pool().allocate();
          if (b) s.t.blocks.push_back(*b);
          else ok = false;
        }
        if (!ok) break;
        const float tag = next_tag++;
        f.write(s.t, tag, p0, p0 + n);
        s.tag.resize(size_t(p0 + n), tag);
        break;
      }
      case 2: {  // fork another sequence into this one
        Seq& o = seqs[rng() % seqs.size()];
        if (&o == &s) break;
        for (int32_t b : s.t.blocks) f.kv->pool().release(b);
        s.t = f.kv->fork(o.t);
        s.tag = o.tag;
        break;
      }
      case 3: {  // truncate (rejected drafts), then the next append rewrites from there
        if (s.tag.empty()) break;
        const size_t keep = rng() % (s.tag.size() + 1);
        s.tag.resize(keep);
        while (s.t.blocks.size() > (keep + bs - 1) / bs) {
          f.kv->pool().release(s.t.blocks.back());
          s.t.blocks.pop_back();
        }
        break;
      }
      case 4: {  // finish
        for (int32_t b : s.t.blocks) f.kv->pool().release(b);
        s = Seq{};
        break;
      }
    }
    ASSERT_EQ(f.kv->pool().check_invariants(), "") << "step " << step;
    std::map<int32_t, int32_t> refs;
    for (const auto& q : seqs) for (int32_t b : q.t.blocks) ++refs[b];
    for (int32_t b = 0; b < n_blocks; ++b) {
      ASSERT_EQ(f.kv->pool().refcount(b), refs.count(b) ? refs[b] : 0) << "block " << b << " step " << step;
    }
    if (step % 50 != 0) continue;
    for (const auto& q : seqs) {
      for (size_t p = 0; p < q.tag.size(); ++p) {
        ASSERT_TRUE(f.holds(q.t, q.tag[p], int32_t(p), int32_t(p) + 1)) << "position " << p << " step " << step;
      }
    }
  }
  for (auto& s : seqs) for (int32_t b : s.t.blocks) f.kv->pool().release(b);
  EXPECT_EQ(f.kv->pool().num_free(), n_blocks);
}

// ---- Tenant-fair caching: owner groups and per-group caps ----

// Group 1 caches two blocks; group 2 then floods the pool. Every eviction comes out of the flood's
// own cached blocks (the largest group), so group 1's blocks survive. Global LRU evicted them first.
TEST(BlockPool, FloodFromOneGroupEvictsItsOwnCachedBlocksFirst) {
  BlockPool p(8);
  std::vector<int32_t> evicted;
  p.set_evict_callback([&](int32_t b) { evicted.push_back(b); });
  auto cache_one = [&](int32_t group) {
    const int32_t b = *p.allocate();
    p.set_keyed(b, true);
    p.set_owner(b, group);
    p.release(b);
    return b;
  };
  const int32_t a0 = cache_one(1), a1 = cache_one(1);
  for (int i = 0; i < 40; ++i) cache_one(2);  // the flood: far more than the pool holds
  EXPECT_EQ(p.state(a0), BlockState::Cached);
  EXPECT_EQ(p.state(a1), BlockState::Cached);
  EXPECT_EQ(p.num_cached_of(1), 2);
  for (int32_t b : evicted) EXPECT_EQ(p.owner(b), 2) << "block " << b;
  EXPECT_EQ(p.check_invariants(), "");
}

// A cap bounds what one group keeps: its own least recently used block goes first.
TEST(BlockPool, GroupCapEvictsTheGroupsOwnLeastRecentlyUsedBlock) {
  BlockPool p(8);
  p.set_group_cache_limit(2);
  std::vector<int32_t> mine;
  for (int i = 0; i < 3; ++i) mine.push_back(*p.allocate());
  for (int32_t b : mine) { p.set_keyed(b, true); p.set_owner(b, 3); }
  for (int32_t b : mine) p.release(b);
  EXPECT_EQ(p.num_cached_of(3), 2);
  EXPECT_EQ(p.state(mine[0]), BlockState::Free) << "the oldest of the group goes when it passes its cap";
  EXPECT_EQ(p.state(mine[2]), BlockState::Cached);
  EXPECT_EQ(p.evictions(), 1u);
  EXPECT_EQ(p.check_invariants(), "");
}

TEST(BlockPool, RandomOperationsWithGroupsAndCapKeepInvariants) {
  const uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  BlockPool p(48);
  p.set_group_cache_limit(10);
  std::vector<std::vector<int32_t>> seqs(6);
  for (int step = 0; step < 20000; ++step) {
    auto& s = seqs[rng() % seqs.size()];
    switch (rng() % 5) {
      case 0: case 1:
        if (auto b = p.allocate()) s.push_back(*b);
        break;
      case 2:
        if (!s.empty()) {
          const int32_t b = s[rng() % s.size()];
          p.set_keyed(b, true);
          p.set_owner(b, int32_t(rng() % 4));
        }
        break;
      case 3:
        for (auto it = s.rbegin(); it != s.rend(); ++it) p.release(*it);
        s.clear();
        break;
      case 4:
        for (int32_t b = 0; b < p.num_blocks(); ++b)
          if (p.state(b) == BlockState::Cached) { p.retain(b); s.push_back(b); break; }
        break;
    }
    ASSERT_EQ(p.check_invariants(), "") << "step " << step;
  }
}
