// Scheduler: who runs, in what order, and what a finished or preempted sequence leaves behind —
// driven directly (no model: commit() stands in for the forward pass), on a small KV pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "backends/cpu/cpu_backend.h"
#include "core/sched/scheduler.h"

using namespace pagoda;

namespace {

constexpr int32_t kBs = 4;

struct Fixture {
  ModelConfig mc;
  CpuBackend be{CpuOptions{.reference = true}};
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<PrefixIndex> index;
  CacheIdentity id;
  Counters counters;
  Histograms hist;
  std::unique_ptr<Scheduler> sched;
  uint64_t next_id = 1;

  explicit Fixture(int32_t blocks, SchedulerConfig sc = {}) {
    mc.n_layers = 1;
    mc.n_kv_heads = 1;
    mc.head_dim = 2;
    auto k = KvCache::create(be, mc, KvCacheConfig{.block_size = kBs, .num_blocks = blocks, .dtype = DType::F32});
    EXPECT_TRUE(k.ok()) << k.error();
    kv = std::make_unique<KvCache>(std::move(*k));
    index = std::make_unique<PrefixIndex>(kv->pool());
    id.weights_digest = "w";
    id.block_size = kBs;
    sc.ctx_len = 1024;
    sched = std::make_unique<Scheduler>(sc, *kv, *index, id, counters, hist);
  }
  Sequence* add(std::vector<int32_t> toks, int32_t priority = 0, int32_t max_tokens = 64) {
    auto s = std::make_unique<Sequence>();
    s->id = next_id++;
    s->tokens = std::move(toks);
    s->prompt_len = int32_t(s->tokens.size());
    s->priority = priority;
    s->max_tokens = max_tokens;
    s->arrival = std::chrono::steady_clock::now();
    Sequence* raw = s.get();
    EXPECT_EQ(sched->add(s), "");
    return raw;
  }
  // One step: plan, then pretend the forward pass ran (decodes append a token).
  std::vector<ScheduledChunk> step(std::vector<std::unique_ptr<Sequence>>* ended = nullptr) {
    std::vector<std::unique_ptr<Sequence>> local;
    auto plan = sched->schedule(std::chrono::steady_clock::now(), ended ? *ended : local);
    for (const auto& c : plan) {
      sched->commit(*c.seq, c.start + c.n_tokens);
      if (c.wants_logits) c.seq->tokens.push_back(7);
    }
    return plan;
  }
};

std::vector<int32_t> iota_tokens(int32_t n, int32_t from) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) v[size_t(i)] = from + i;
  return v;
}

}  // namespace

// A finished chain must be evicted from its leaf: after one eviction the rest of the chain, root
// included, still matches. Released root first, the root went first and stranded the chain.
TEST(Scheduler, FinishedSequenceIsEvictedLeafFirst) {
  Fixture f(6);
  const auto toks = iota_tokens(4 * kBs + 1, 100);  // 4 full blocks + 1 token
  Sequence* s = f.add(toks);
  f.step();
  auto done = f.sched->finish(s);
  const auto keys = block_keys(f.id, toks);
  ASSERT_EQ(keys.size(), 4u);
  ASSERT_EQ(f.kv->pool().num_cached(), 4);
  // Use every free block, then one more: the pool must evict exactly one cached block.
  std::vector<int32_t> held;
  while (f.kv->pool().num_free() > 0) held.push_back(*f.kv->pool().allocate());
  held.push_back(*f.kv->pool().allocate());
  auto hit = f.index->match_and_retain(keys);
  EXPECT_EQ(hit.size(), 3u) << "the evicted block should have been the chain's leaf, not its root";
  for (int32_t b : hit) f.kv->pool().release(b);
  for (int32_t b : held) f.kv->pool().release(b);
  EXPECT_EQ(f.kv->pool().check_invariants(), "");
}

// Higher priority is admitted first; FIFO among equals.
TEST(Scheduler, WaitingQueueIsStrictPriorityThenFifo) {
  SchedulerConfig sc;
  sc.max_running = 1;
  Fixture f(64, sc);
  Sequence* first = f.add(iota_tokens(5, 1));
  f.step();  // `first` runs and holds the only running slot
  Sequence* low1 = f.add(iota_tokens(5, 10), 0);
  Sequence* high = f.add(iota_tokens(5, 20), 5);
  Sequence* low2 = f.add(iota_tokens(5, 30), 0);
  Sequence* mid = f.add(iota_tokens(5, 40), 2);
  std::vector<uint64_t> order;
  for (const auto& w : f.sched->waiting()) order.push_back(w->id);
  EXPECT_EQ(order, (std::vector<uint64_t>{high->id, mid->id, low1->id, low2->id}));
  f.sched->finish(first);
  auto plan = f.step();
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].seq, high);
}

// A preempted request goes back ahead of everything waiting at its own priority, never ahead of
// higher-priority work.
TEST(Scheduler, PreemptedRequestReturnsAheadOfItsPriorityOnly) {
  SchedulerConfig sc;
  sc.max_batch_tokens = 64;
  Fixture f(5, sc);  // 20 token slots
  Sequence* a = f.add(iota_tokens(8, 1), 1);
  Sequence* b = f.add(iota_tokens(8, 50), 0);
  f.step();
  Sequence* w0 = f.add(iota_tokens(3, 90), 0);
  Sequence* w2 = f.add(iota_tokens(3, 95), 2);
  // Decode until a block runs out and `b` (lower priority) is preempted.
  for (int i = 0; i < 8 && f.counters.preemptions == 0; ++i) f.step();
  ASSERT_EQ(f.counters.preemptions, 1u);
  std::vector<uint64_t> order;
  for (const auto& w : f.sched->waiting()) order.push_back(w->id);
  ASSERT_GE(order.size(), 2u);
  // w2 may have been admitted meanwhile; b must precede w0 and follow w2 if both wait.
  auto pos = [&](uint64_t id) { return std::find(order.begin(), order.end(), id) - order.begin(); };
  EXPECT_LT(pos(b->id), pos(w0->id));
  if (pos(w2->id) < std::ptrdiff_t(order.size())) {
    EXPECT_LT(pos(w2->id), pos(b->id));
  }
  (void)a;
}

// Past the bound, a request fails with a reason naming the bound instead of being recomputed again.
TEST(Scheduler, PreemptionsPerRequestAreBounded) {
  SchedulerConfig sc;
  sc.max_preemptions = 0;
  sc.max_batch_tokens = 64;
  Fixture f(5, sc);
  Sequence* hi = f.add(iota_tokens(8, 1), 1);
  Sequence* lo = f.add(iota_tokens(8, 50), 0);
  f.step();
  std::vector<std::unique_ptr<Sequence>> ended;
  for (int i = 0; i < 8 && ended.empty(); ++i) f.step(&ended);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].get(), lo);
  EXPECT_EQ(ended[0]->finish_reason, FinishReason::Error);
  EXPECT_NE(ended[0]->error.find("preemption_limit"), std::string::npos) << ended[0]->error;
  EXPECT_TRUE(ended[0]->table.blocks.empty()) << "a failed request keeps no blocks";
  EXPECT_EQ(f.counters.preemption_failures, 1u);
  EXPECT_EQ(f.sched->find(lo->id), nullptr);
  EXPECT_NE(f.sched->find(hi->id), nullptr);
}
