// Building the telemetry Snapshot from engine state (engine thread only; readers get a copy).
#include <chrono>

#include "core/engine/engine.h"

namespace pagoda {

Snapshot Engine::build_snapshot() const {
  const auto now = std::chrono::steady_clock::now();
  Snapshot s;
  s.step = step_;
  s.uptime_s = std::chrono::duration<double>(now - start_time_).count();
  const BlockPool& pool = kv_->pool();
  s.block_size = kv_->block_size();
  s.num_blocks = pool.num_blocks();
  s.blocks_free = pool.num_free();
  s.blocks_cached = pool.num_cached();
  s.blocks_in_use = pool.num_in_use();
  s.kv_usage = double(s.blocks_in_use) / double(std::max(1, s.num_blocks));
  s.waiting = int32_t(sched_->waiting().size());
  s.running = int32_t(sched_->running().size());
  s.counters = counters_;
  s.hist = hist_;
  {
    // submit() records these on callers' threads: copied under the lock that guards them.
    std::lock_guard<std::mutex> lk(mu_);
    s.paused = paused_;
    s.waiting += int32_t(inbox_.size());
    s.counters.requests_submitted = submit_stats_.submitted;
    for (const auto& [reason, n] : submit_stats_.rejections) s.counters.rejections[reason] += n;
    s.hist.stage[size_t(Stage::Normalize)] = submit_stats_.normalize;
    s.degraded = health_.degraded;
    s.degraded_reason = health_.reason;
  }
  s.counters.spec_decisions = ctrl_->decision_counts();
  s.blocks.resize(size_t(s.num_blocks));
  for (int32_t b = 0; b < s.num_blocks; ++b) {
    BlockInfo& bi = s.blocks[size_t(b)];
    const BlockState st = pool.state(b);
    bi.state = st == BlockState::Free ? 0 : st == BlockState::InUse ? 1 : 2;
    bi.refcount = pool.refcount(b);
    bi.last_use = pool.last_use(b);
    if (auto k = index_->key_of(b)) bi.key_prefix = uint32_t((*k)[0]) << 24 | uint32_t((*k)[1]) << 16 | uint32_t((*k)[2]) << 8 | (*k)[3];
  }
  auto describe = [&](const Sequence& q, const char* state) {
    RequestInfo r;
    r.id = q.id;
    r.tenant = q.tenant;
    r.trace_id = q.trace_id;
    r.state = state;
    r.priority = q.priority;
    r.prompt_tokens = q.prompt_len;
    r.cached_tokens = q.metrics.cached_tokens;
    r.computed_tokens = q.n_computed;
    r.generated = q.generated();
    r.max_tokens = q.max_tokens;
    r.blocks = q.table.resident();
    r.age_ms = std::chrono::duration<double, std::milli>(now - q.arrival).count();
    if (q.generated() > 0) r.ttft_ms = q.metrics.ttft_s * 1e3;
    if (q.generated() > 1) r.tok_s = double(q.generated() - 1) / std::chrono::duration<double>(q.last_token - q.first_token).count();
    if (q.deadline != SteadyTime::max()) r.deadline_left_ms = std::chrono::duration<double, std::milli>(q.deadline - now).count();
    r.spec_proposed = q.metrics.spec_proposed;
    r.spec_accepted = q.metrics.spec_accepted;
    r.spec_k = q.spec_k;
    // Each block this request holds names it as owner (the first holder wins for shared blocks).
    for (size_t i = 0; i < q.table.blocks.size(); ++i) {
      if (q.table.blocks[i] == BlockTable::kReleased) continue;  // left the sliding window
      BlockInfo& bi = s.blocks[size_t(q.table.blocks[i])];
      if (bi.owner == 0) {
        bi.owner = q.id;
        bi.tenant = tenant_hash(q.tenant);
        bi.pos_start = int32_t(i) * s.block_size;
      }
    }
    s.requests.push_back(std::move(r));
  };
  for (const auto& q : sched_->running()) describe(*q, q->prefilling() ? "prefill" : "decode");
  for (const auto& q : sched_->waiting()) describe(*q, "waiting");
  s.accept_rate_history = accept_history_;
  s.kv_usage_history = kv_history_;
  s.decisions = ctrl_->decisions();
  s.spec_k = drafter_ ? ctrl_->k() : 0;
  s.spec_mode = drafter_ ? drafter_->name() : "off";
  return s;
}

}  // namespace pagoda
