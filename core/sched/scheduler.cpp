#include "core/sched/scheduler.h"

#include <algorithm>
#include <chrono>

namespace pagoda {
namespace {

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Running order: higher priority first, then older first. Victims come from the other end.
bool runs_before(const Sequence& a, const Sequence& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  if (a.arrival != b.arrival) return a.arrival < b.arrival;
  return a.id < b.id;
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Length: return "length";
    case FinishReason::Eos: return "stop";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::DeadlineExceeded: return "deadline_exceeded";
    case FinishReason::Rejected: return "rejected";
    case FinishReason::Error: return "error";
  }
  return "?";
}

Scheduler::Scheduler(SchedulerConfig cfg, KvCache& kv, PrefixIndex& index, const CacheIdentity& identity,
                     Counters& counters, Histograms& hist)
    : cfg_(cfg), kv_(kv), index_(index), identity_(identity), counters_(counters), hist_(hist) {
  kv_.pool().set_group_cache_limit(cfg_.tenant_cached_blocks);
}

int32_t Scheduler::group_of(const std::string& scope) {
  auto [it, added] = groups_.emplace(scope, int32_t(groups_.size()));
  return it->second;
}

// Strict priority, FIFO within a priority. A preempted request was admitted before anything still
// waiting at its priority, so it goes first among them.
void Scheduler::enqueue(std::unique_ptr<Sequence> s, bool preempted) {
  const int32_t p = s->priority;
  auto it = preempted ? std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& q) { return q->priority <= p; })
                      : std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& q) { return q->priority < p; });
  waiting_.insert(it, std::move(s));
}

void Scheduler::add(std::unique_ptr<Sequence> s) {
  s->state = SeqState::Waiting;
  enqueue(std::move(s), false);
}

Sequence* Scheduler::find(uint64_t id) {
  if (Sequence* s = running_with(id)) return s;
  for (auto& s : waiting_) if (s->id == id) return s.get();
  return nullptr;
}

void Scheduler::ensure_keys(Sequence& s) {
  const auto t0 = std::chrono::steady_clock::now();
  extend_block_keys(identity_.with_scope(s.tenant), s.tokens, s.public_len, s.keys);
  hash_s += since(t0);
}

bool Scheduler::reserve(Sequence& s, int32_t n_tokens) {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t before = kv_.pool().evictions();
  bool ok = kv_.grow(s.table, n_tokens, s.n_computed).ok();
  if (!ok && !donors_.empty()) {  // blocks held for forks go before anyone waits or is preempted
    release_donors(true);
    ok = kv_.grow(s.table, n_tokens, s.n_computed).ok();
  }
  counters_.evictions += kv_.pool().evictions() - before;
  allocate_s += since(t0);
  return ok;
}

void Scheduler::release_blocks(Sequence& s) {
  kv_.release(s.table);  // leaf first, so the LRU keeps a cached chain reachable from its root
  s.n_computed = 0;
  s.n_keyed = 0;
}

void Scheduler::commit(Sequence& s, int32_t n_computed) {
  s.n_computed = n_computed;
  const int32_t full = n_computed / kv_.block_size();
  if (cfg_.prefix_caching && identity_known_ && full > s.n_keyed) {
    ensure_keys(s);
    const int32_t bs = kv_.block_size(), tenant_group = group_of(s.tenant);
    for (int32_t b = s.n_keyed; b < full; ++b) {
      const int32_t blk = s.table.blocks[size_t(b)];
      // Charged to the scope its key lives in: blocks wholly inside a public prefix are everyone's.
      if (blk != BlockTable::kReleased && index_.insert(s.keys[size_t(b)], blk))
        kv_.pool().set_owner(blk, (b + 1) * bs <= s.public_len ? 0 : tenant_group);
    }
    s.n_keyed = full;
  }
  // Keyed first, then released: a block that left every layer's window stays cached for reuse.
  kv_.release_behind(s.table, n_computed);
}

void Scheduler::truncate(Sequence& s, int32_t n_computed) {
  s.n_computed = std::min(s.n_computed, n_computed);
  kv_.trim(s.table, n_computed);
}

void Scheduler::postprocess(const std::vector<ScheduledChunk>& plan, const std::vector<ChunkOutcome>& out,
                            std::vector<std::unique_ptr<Sequence>>& finished) {
  for (size_t i = 0; i < plan.size(); ++i) {
    Sequence& s = *plan[i].seq;
    const ChunkOutcome& o = out[i];
    s.tokens.insert(s.tokens.end(), o.tokens.begin(), o.tokens.end());
    s.draft.clear();
    if (o.finish != FinishReason::None) {
      // A request that ends in this step still keys the blocks it completed, so the next request
      // with the same prefix reuses them (a one-token request is the common case: a warm-up, a
      // classification). An error leaves nothing to trust.
      if (o.finish != FinishReason::Error && o.kv_valid > 0) {
        truncate(s, o.kv_valid);
        commit(s, o.kv_valid);
      }
      s.finish_reason = o.finish;
      s.error = o.error;
      finished.push_back(finish(&s));
      continue;
    }
    truncate(s, o.kv_valid);  // K/V of rejected draft positions is dropped
    commit(s, o.kv_valid);
  }
}

Sequence* Scheduler::running_with(uint64_t id) const {
  const auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p->id == id; });
  return it == running_.end() ? nullptr : it->get();
}

int Scheduler::fork_prompt(Sequence& s, int32_t& matched) {
  const int32_t shared = s.prompt_len - 1;  // the last prompt token is computed here for its logits
  // `src`: a running Sequence or a Donor (the same fields).
  auto fork_from = [&](const auto& src) {
    if (int32_t(src.tokens.size()) < shared || !std::equal(s.tokens.begin(), s.tokens.begin() + shared, src.tokens.begin())) return 0;
    s.table = kv_.fork(src.table);
    kv_.trim(s.table, shared);
    s.n_keyed = std::min<int32_t>(src.n_keyed, shared / kv_.block_size());
    s.keys.assign(src.keys.begin(), src.keys.begin() + std::min<size_t>(src.keys.size(), size_t(s.n_keyed)));
    matched = shared;
    return 1;
  };
  // Only a running source is waited for: `s` is at the head of the queue, so a source still
  // waiting is behind it and waiting for it would block both. A source that already ended left
  // its blocks as a donor.
  if (const Sequence* p = running_with(s.prefill_from)) return p->n_computed < shared ? -1 : fork_from(*p);
  const auto d = std::find_if(donors_.begin(), donors_.end(), [&](const Donor& x) { return x.id == s.prefill_from; });
  return d != donors_.end() && d->n_computed >= shared ? fork_from(*d) : 0;
}

bool Scheduler::awaited(uint64_t id) const {
  return std::any_of(waiting_.begin(), waiting_.end(), [&](const auto& w) { return w->prefill_from == id && !w->admitted_once; });
}

void Scheduler::release_donors(bool all) {
  for (auto it = donors_.begin(); it != donors_.end();) {
    if (all || !awaited(it->id)) {
      kv_.release(it->table);
      it = donors_.erase(it);
    } else {
      ++it;
    }
  }
}

// Prefix match (or a fork of the prompt's blocks), then blocks for the first chunk. Undoes itself
// when the pool cannot serve it.
bool Scheduler::admit(Sequence& s) {
  const int32_t bs = kv_.block_size();
  int32_t matched = 0;
  int forked = 0;
  if (s.prefill_from != 0 && !s.admitted_once) {
    forked = fork_prompt(s, matched);
    if (forked < 0) return false;
    if (forked == 0) s.prefill_from = 0;
  }
  if (forked == 0 && cfg_.prefix_caching && !identity_known_) {
    counters_.prefix_query_tokens += uint64_t(s.tokens.size());  // asked, and nothing can be keyed yet
  } else if (forked == 0 && cfg_.prefix_caching) {
    ensure_keys(s);
    // The last token is always computed (its logits pick the next token), so match at most len-1.
    const size_t usable = std::min(s.keys.size(), size_t((int32_t(s.tokens.size()) - 1) / bs));
    const auto t0 = std::chrono::steady_clock::now();
    auto blocks = index_.match_and_retain(std::span<const BlockKey>(s.keys.data(), usable));
    match_s += since(t0);
    matched = int32_t(blocks.size()) * bs;
    s.table.blocks = std::move(blocks);
    s.n_keyed = int32_t(s.table.blocks.size());
    counters_.prefix_query_tokens += uint64_t(s.tokens.size());
    counters_.prefix_hit_tokens += uint64_t(matched);
  }
  s.n_computed = matched;
  if (!reserve(s, std::min<int32_t>(int32_t(s.tokens.size()), matched + 1))) {
    release_blocks(s);
    return false;
  }
  if (!s.admitted_once) {
    s.admitted_once = true;
    s.first_scheduled = std::chrono::steady_clock::now();
    s.metrics.cached_tokens = std::min(matched, s.prompt_len);
    s.metrics.queue_s = std::chrono::duration<double>(s.first_scheduled - s.arrival).count();
    hist_.queue.observe(s.metrics.queue_s);
    counters_.prompt_tokens += uint64_t(s.prompt_len);
    counters_.avoided_prefill_tokens += uint64_t(s.metrics.cached_tokens);
    auto& t = counters_.per_tenant[s.tenant.empty() ? "default" : s.tenant];
    t["prompt"] += uint64_t(s.prompt_len);
    t["cached"] += uint64_t(s.metrics.cached_tokens);
  }
  return true;
}

Sequence* Scheduler::pick_victim(const Sequence* except) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it)
    if (!(*it)->planned && it->get() != except) return it->get();
  return nullptr;
}

void Scheduler::preempt(Sequence& s) {
  release_blocks(s);
  s.draft.clear();
  ++counters_.preemptions;
  ++s.metrics.preemptions;
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &s; });
  auto owned = std::move(*it);
  running_.erase(it);
  if (s.metrics.preemptions > cfg_.max_preemptions) {
    // Recomputing forever under memory pressure is worse than a clear failure the caller can retry.
    s.state = SeqState::Finished;
    s.finish_reason = FinishReason::Error;
    s.error = "preemption_limit: the request was preempted " + std::to_string(s.metrics.preemptions) +
              " times (limit " + std::to_string(cfg_.max_preemptions) +
              ") because the KV cache could not hold it beside higher-priority work; retry later or raise the KV budget";
    ++counters_.preemption_failures;
    failed_.push_back(std::move(owned));
    return;
  }
  s.state = SeqState::Waiting;
  enqueue(std::move(owned), true);
}

std::unique_ptr<Sequence> Scheduler::finish(Sequence* s) {
  if (s->n_computed > 0 && awaited(s->id)) {
    donors_.push_back({s->id, std::move(s->table), s->tokens, s->n_computed, s->n_keyed, s->keys});
    s->table = BlockTable{};
  }
  release_blocks(*s);
  s->state = SeqState::Finished;
  for (auto it = running_.begin(); it != running_.end(); ++it)
    if (it->get() == s) { auto p = std::move(*it); running_.erase(it); return p; }
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it)
    if (it->get() == s) { auto p = std::move(*it); waiting_.erase(it); return p; }
  return nullptr;
}

std::vector<ScheduledChunk> Scheduler::schedule(SteadyTime now, const DraftMap& drafts,
                                                std::vector<std::unique_ptr<Sequence>>& finished) {
  hash_s = match_s = allocate_s = 0;
  // Requests that must end now, wherever they are.
  std::vector<Sequence*> ending;
  for (auto& s : running_) if (s->cancelled || now > s->deadline) ending.push_back(s.get());
  for (auto& s : waiting_) if (s->cancelled || now > s->deadline) ending.push_back(s.get());
  for (Sequence* s : ending) {
    s->finish_reason = s->cancelled ? FinishReason::Cancelled : FinishReason::DeadlineExceeded;
    finished.push_back(finish(s));
  }

  std::sort(running_.begin(), running_.end(), [](const auto& a, const auto& b) { return runs_before(*a, *b); });
  for (auto& s : running_) s->planned = false;
  std::vector<ScheduledChunk> plan;
  int32_t budget = cfg_.max_batch_tokens;

  // 1) Decodes (plus their draft tokens) first, in priority order.
  auto index_of = [&](const Sequence* p) {
    return size_t(std::find_if(running_.begin(), running_.end(), [&](const auto& q) { return q.get() == p; }) - running_.begin());
  };
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& s = *running_[i];
    if (s.prefilling()) continue;
    s.draft.clear();
    if (auto d = drafts.find(s.id); d != drafts.end())
      s.draft.assign(d->second.begin(), d->second.begin() + std::min<ptrdiff_t>(ptrdiff_t(d->second.size()), budget - 1));
    bool ok;
    while (!(ok = reserve(s, s.n_computed + 1 + int32_t(s.draft.size())))) {
      if (!s.draft.empty()) { s.draft.clear(); continue; }  // speculation goes before anyone's work
      Sequence* victim = pick_victim(&s);
      if (!victim) break;
      preempt(*victim);
    }
    if (!ok) {  // nobody left to preempt: this request waits for blocks instead
      i = index_of(&s);
      preempt(s);
      --i;  // unsigned wrap is fine: the loop's ++i brings it back
      continue;
    }
    i = index_of(&s);
    s.planned = true;
    const int32_t m = 1 + int32_t(s.draft.size());
    plan.push_back({&s, s.n_computed, m, true, m - 1});
    budget -= m;
  }

  // 2) Prefill chunks of running requests, then admissions, in the remaining budget.
  for (auto& sp : running_) {
    Sequence& s = *sp;
    if (budget <= 0) break;
    if (s.planned || !s.prefilling()) continue;
    const int32_t pending = int32_t(s.tokens.size()) - s.n_computed;
    const int32_t n = std::min(pending, budget);
    if (!reserve(s, s.n_computed + n)) continue;
    s.planned = true;
    plan.push_back({&s, s.n_computed, n, n == pending});
    counters_.computed_prefill_tokens += uint64_t(n);
    budget -= n;
  }
  while (budget > 0 && !waiting_.empty() && int32_t(running_.size()) < cfg_.max_running) {
    Sequence& s = *waiting_.front();
    if (!admit(s)) break;  // head-of-line: later arrivals do not overtake a waiting request
    const int32_t pending = int32_t(s.tokens.size()) - s.n_computed;
    const int32_t n = std::min(pending, budget);
    if (!reserve(s, s.n_computed + n)) {
      release_blocks(s);
      break;
    }
    s.state = SeqState::Running;
    s.planned = true;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    plan.push_back({&s, s.n_computed, n, n == pending});
    counters_.computed_prefill_tokens += uint64_t(n);
    budget -= n;
  }
  for (auto& f : failed_) finished.push_back(std::move(f));
  failed_.clear();
  release_donors(false);  // every fork of them was admitted (or ended)
  return plan;
}

}  // namespace pagoda
