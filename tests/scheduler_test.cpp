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
  CpuBackend be{CpuOptions{.reference = true}};
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<PrefixIndex> index;
  CacheIdentity id;
  Counters counters;
  Histograms hist;
  std::unique_ptr<Scheduler> sched;
  uint64_t next_id = 1;

  explicit Fixture(int32_t blocks, SchedulerConfig sc = {}, int32_t window = 0) {
    auto k = KvCache::create(be, KvShape{.n_layers = 1, .n_kv_heads = 1, .head_dim = 2, .block_size = kBs, .window = window},
                             blocks);
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
    sched->add(std::move(s));
    return raw;
  }
  // One step: plan, then pretend the forward pass ran and the emit stage sampled token 7 for
  // every chunk that reaches its sequence's end; postprocess() applies that.
  std::vector<ScheduledChunk> step(std::vector<std::unique_ptr<Sequence>>* ended = nullptr, const DraftMap& drafts = {}) {
    std::vector<std::unique_ptr<Sequence>> local;
    auto& fin = ended ? *ended : local;
    auto plan = sched->schedule(std::chrono::steady_clock::now(), drafts, fin);
    std::vector<ChunkOutcome> out;
    for (const auto& c : plan) {
      ChunkOutcome o;
      o.kv_valid = c.start + c.n_tokens;
      if (c.wants_logits) o.tokens.push_back(7);
      out.push_back(o);
    }
    sched->postprocess(plan, out, fin);
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

// Decodes are planned before prefill chunks, and a long prompt is cut into chunks that fill what
// the token budget leaves; only the chunk reaching the prompt's end asks for logits.
TEST(Scheduler, ChunkedPrefillFillsTheBudgetLeftAfterDecodes) {
  SchedulerConfig sc;
  sc.max_batch_tokens = 8;
  Fixture f(64, sc);
  Sequence* a = f.add(iota_tokens(3, 1));
  f.step();  // a's prompt, and its first token
  Sequence* b = f.add(iota_tokens(20, 100));
  int32_t prefilled = 0, steps = 0;
  while (b->prefilling() || b->generated() == 0) {
    const auto plan = f.step();
    ASSERT_LT(++steps, 10);
    int32_t total = 0;
    for (const auto& c : plan) total += c.n_tokens;
    EXPECT_LE(total, sc.max_batch_tokens);
    ASSERT_EQ(plan.size(), 2u);
    EXPECT_EQ(plan[0].seq, a) << "the decode goes first";
    EXPECT_EQ(plan[0].n_tokens, 1);
    EXPECT_EQ(plan[1].seq, b);
    EXPECT_EQ(plan[1].start, prefilled);
    prefilled += plan[1].n_tokens;
    EXPECT_EQ(plan[1].wants_logits, prefilled == 20);
  }
  EXPECT_EQ(steps, 3);  // 7 + 7 + 6 prompt tokens beside a's decodes
  EXPECT_EQ(b->generated(), 1);
}

// A cancelled request ends at the next plan, running or waiting, and keeps no blocks.
TEST(Scheduler, CancelledRequestsEndAtTheNextPlanAndFreeTheirBlocks) {
  SchedulerConfig sc;
  sc.max_running = 1;
  Fixture f(16, sc);
  Sequence* run = f.add(iota_tokens(6, 1));
  f.step();
  Sequence* wait = f.add(iota_tokens(6, 50));
  EXPECT_GT(f.kv->pool().num_in_use(), 0);
  run->cancelled = true;
  wait->cancelled = true;
  std::vector<std::unique_ptr<Sequence>> ended;
  const auto plan = f.step(&ended);
  EXPECT_TRUE(plan.empty());
  ASSERT_EQ(ended.size(), 2u);
  for (const auto& s : ended) {
    EXPECT_EQ(s->finish_reason, FinishReason::Cancelled);
    EXPECT_TRUE(s->table.blocks.empty());
  }
  EXPECT_TRUE(f.sched->idle());
  EXPECT_EQ(f.kv->pool().num_in_use(), 0);
}

// The scheduler is the one writer of Sequence::draft: a proposal is cut to the step's budget, and
// postprocess() keeps K/V for the accepted part only, clearing the draft.
TEST(Scheduler, DraftsAreCutToTheBudgetAndRejectedPositionsGiveTheirBlocksBack) {
  SchedulerConfig sc;
  sc.max_batch_tokens = 4;
  sc.prefix_caching = false;
  Fixture f(64, sc);
  Sequence* s = f.add(iota_tokens(4, 1));
  f.step();  // prompt; one token sampled
  ASSERT_FALSE(s->prefilling());
  const int32_t len0 = int32_t(s->tokens.size());
  std::vector<std::unique_ptr<Sequence>> ended;
  DraftMap drafts{{s->id, iota_tokens(10, 200)}};
  auto plan = f.sched->schedule(std::chrono::steady_clock::now(), drafts, ended);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].n_draft, 3);
  EXPECT_EQ(plan[0].n_tokens, 4);
  EXPECT_EQ(s->draft, iota_tokens(3, 200));
  EXPECT_GE(s->table.capacity(kBs), len0 + 3);
  // One draft accepted, then a correction token: K/V valid for the old last token and the accepted draft.
  ChunkOutcome o;
  o.tokens = {200, 9};
  o.kv_valid = len0 + 1;
  f.sched->postprocess(plan, {o}, ended);
  EXPECT_TRUE(s->draft.empty());
  EXPECT_EQ(s->n_computed, len0 + 1);
  EXPECT_EQ(int32_t(s->tokens.size()), len0 + 2);
  EXPECT_EQ(s->table.capacity(kBs), (len0 + 1 + kBs - 1) / kBs * kBs);
}

// With a sliding window on every layer, blocks no later query can see are given back: a long
// decode holds a bounded number of blocks, and its table marks the released ones.
TEST(Scheduler, SlidingWindowReleasesBlocksBehindTheWindow) {
  constexpr int32_t kWindow = 6;
  SchedulerConfig sc;
  sc.prefix_caching = false;
  Fixture f(64, sc, kWindow);
  Sequence* s = f.add(iota_tokens(5, 1), 0, 200);
  int32_t peak = 0;
  for (int i = 0; i < 100; ++i) {
    f.step();
    peak = std::max(peak, f.kv->pool().num_in_use());
  }
  // Live positions: the window plus the one being written, spread over at most this many blocks.
  EXPECT_LE(peak, (kWindow + kBs - 1) / kBs + 2);
  EXPECT_GT(s->table.blocks.size(), 20u);
  EXPECT_EQ(s->table.blocks.front(), BlockTable::kReleased);
  EXPECT_EQ(s->table.resident(), f.kv->pool().num_in_use());
  f.sched->finish(s);
  EXPECT_EQ(f.kv->pool().num_in_use(), 0);
  EXPECT_EQ(f.kv->pool().check_invariants(), "");
}

// While the identity waits for the weights digest, nothing is keyed and nothing matches: a block
// keyed under an identity without the digest could be reused by another model's request. Once it
// is set, a sequence still running keys its blocks at its next commit under the whole identity.
TEST(Scheduler, NothingIsKeyedBeforeTheIdentityIsComplete) {
  Fixture f(32);
  CacheIdentity pending = f.id;
  pending.weights_digest.clear();
  f.sched = std::make_unique<Scheduler>(SchedulerConfig{.ctx_len = 1024}, *f.kv, *f.index, pending, f.counters, f.hist);
  f.sched->defer_identity();
  EXPECT_FALSE(f.sched->identity_known());
  const auto toks = iota_tokens(3 * kBs + 1, 100);  // 3 full blocks + 1 token
  Sequence* a = f.add(toks);
  f.step();  // the whole prompt in one chunk
  EXPECT_EQ(a->n_computed, 3 * kBs + 1);
  EXPECT_EQ(f.index->size(), 0u) << "keyed without the weights digest";
  EXPECT_TRUE(a->keys.empty());
  EXPECT_EQ(f.kv->pool().num_cached(), 0);
  // A second request with the same prompt matches nothing meanwhile (and is counted as asked).
  const uint64_t asked = f.counters.prefix_query_tokens;
  Sequence* b = f.add(toks);
  f.step();
  EXPECT_EQ(b->metrics.cached_tokens, 0);
  EXPECT_EQ(f.counters.prefix_query_tokens, asked + toks.size());
  EXPECT_EQ(f.counters.prefix_hit_tokens, 0u);
  f.sched->finish(b);

  // The digest arrives: `a`'s next commit keys its three blocks under the complete identity.
  f.sched->set_identity(f.id);
  EXPECT_TRUE(f.sched->identity_known());
  f.step();  // one decode token for `a`
  EXPECT_EQ(f.index->size(), 3u);
  ASSERT_GE(a->keys.size(), 3u);
  const auto expect = block_keys(f.id, a->tokens);
  EXPECT_TRUE(std::equal(expect.begin(), expect.begin() + 3, a->keys.begin()));
  f.sched->finish(a);
  Sequence* c = f.add(toks);
  f.step();
  EXPECT_EQ(c->metrics.cached_tokens, 3 * kBs);
  f.sched->finish(c);
  EXPECT_EQ(f.kv->pool().check_invariants(), "");
}
