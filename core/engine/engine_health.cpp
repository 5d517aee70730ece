// Fault containment (see engine.h): a failed backend op trips the engine into the degraded state,
// which ends every request it holds and refuses new ones; a periodic probe brings it back.
#include <chrono>

#include "core/engine/engine.h"

namespace pagoda {

EngineHealth Engine::health() const {
  std::lock_guard<std::mutex> lk(mu_);
  return health_;
}

bool Engine::degraded() const {
  std::lock_guard<std::mutex> lk(mu_);
  return health_.degraded;
}

Status Engine::run_forward(const ForwardBatch& b, std::vector<float>& logits) {
  // A backend may throw (a driver wrapper, bad_alloc on the host side); the engine thread must not die of it.
  try {
    return runner_->forward(b, *kv_, &logits);
  } catch (const std::exception& ex) {
    return make_error(std::string("backend exception: ") + ex.what());
  }
}

void Engine::fail_all(const std::string& error) {
  drain_inbox();
  std::vector<Sequence*> all;
  for (const auto& s : sched_->running()) all.push_back(s.get());
  for (const auto& s : sched_->waiting()) all.push_back(s.get());
  for (Sequence* s : all) {
    const FinishReason r = s->cancelled ? FinishReason::Cancelled : FinishReason::Error;
    end(sched_->finish(s), r, r == FinishReason::Error ? error : "");
  }
  publish_waiting();
}

void Engine::trip(const std::string& what) {
  ++counters_.backend_faults;
  {
    std::lock_guard<std::mutex> lk(mu_);
    health_.degraded = true;
    health_.reason = what;
    ++health_.faults;
  }
  last_probe_ = std::chrono::steady_clock::now();
  // Every request's K/V may be lost with the device, and so may the cached prefixes: none is trusted again.
  fail_all("engine_unavailable: " + what);
  index_->clear();
  publish_snapshot();
}

void Engine::probe() {
  fail_all("engine_unavailable: the engine is degraded (a backend operation failed)");
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_probe_).count() < cfg_.probe_interval_s) return;
  last_probe_ = now;
  // One token through the whole model: the smallest forward that exercises every op a step uses.
  Status st = make_error("no KV block for the probe");
  if (auto blk = kv_->pool().allocate()) {
    BlockTable t;
    t.blocks.push_back(*blk);
    const int32_t bos = model_.tokenizer->bos(), tok = bos >= 0 ? bos : 0;
    ForwardBatch b;
    b.add_sequence(&tok, 1, 0, t, kv_->block_size(), 1);
    st = run_forward(b, logits_);
    kv_->pool().release(*blk);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++health_.probes;
    if (st) {
      health_.degraded = false;
      health_.reason.clear();
      ++health_.recoveries;
    }
  }
  publish_snapshot();
}

}  // namespace pagoda
