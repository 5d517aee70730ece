// Stages 2-5, one engine step: draft -> plan = sched.schedule() -> build the batch ->
// runner.forward -> out = emit(plan, logits) -> sched.postprocess(plan, out) -> end() for the
// requests that finished. Each stage is timed, in aggregate (Snapshot::hist.stage) and per request
// (RequestMetrics::stages).
#include <algorithm>
#include <chrono>

#include "core/engine/engine.h"

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

// Drafts for every decoding sequence, bounded so a step never overshoots max_tokens or the
// context. The scheduler decides how much of each proposal the step verifies.
Status Engine::propose_drafts(DraftMap& drafts) {
  proposals_.clear();
  const int32_t k = ctrl_->k();
  if (!drafter_ || k <= 0) return {};
  std::vector<Sequence*> seqs;
  std::vector<int32_t> ks;
  for (const auto& sp : sched_->running()) {
    Sequence& s = *sp;
    if (s.prefilling()) continue;
    const int32_t room = std::min(s.max_tokens - s.generated() - 1, ctx_len_ - int32_t(s.tokens.size()) - 1);
    const int32_t kk = std::min(k, room);
    if (kk <= 0) continue;
    seqs.push_back(&s);
    ks.push_back(kk);
  }
  if (seqs.empty()) return {};
  std::vector<DraftProposal> props;
  PAGODA_TRY(drafter_->propose(seqs, ks, props));
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i]->spec_k = ks[i];
    if (props[i].tokens.empty()) continue;
    drafts[seqs[i]->id] = props[i].tokens;
    proposals_[seqs[i]->id] = std::move(props[i]);
  }
  return {};
}

void Engine::account_step(const std::vector<ScheduledChunk>& plan, const std::vector<std::unique_ptr<Sequence>>& ended,
                          SteadyTime begin, SteadyTime end, const StepTimes& t) {
  auto queue_until = [](Sequence& s, SteadyTime until) {
    if (s.stage_mark != SteadyTime{} && until > s.stage_mark) s.metrics.stages.queue += secs(until - s.stage_mark);
    s.stage_mark = until;
  };
  for (const auto& c : plan) {
    Sequence& s = *c.seq;
    queue_until(s, begin);
    RequestStages& st = s.metrics.stages;
    st.schedule += t.schedule;
    st.draft += t.draft;
    st.decode += t.decode;
    st.verify += t.verify;
    st.emit += t.emit;
    st.postprocess += t.postprocess;
    s.stage_mark = end;
  }
  for (const auto& s : sched_->running()) if (!s->planned) queue_until(*s, end);
  for (const auto& s : sched_->waiting()) queue_until(*s, end);
  (void)ended;  // ended during schedule(): end() charges their remaining time to the queue
}

Status Engine::step() {
  const auto t_begin = Clock::now();
  drain_inbox();
  resolve_identity(false);
  bool paused = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    paused = paused_;
  }
  if (paused) {
    // Still observable while paused: the queue grows and ages, and /v1/inspect and /metrics say so.
    if (secs(Clock::now() - last_publish_) >= cfg_.snapshot_interval_s) publish_snapshot();
    return {};
  }
  if (degraded()) {
    probe();
    return {};
  }
  StepTimes times;

  // Draft: proposals for decoding sequences (speculation on).
  const auto t_draft = Clock::now();
  DraftMap drafts;
  Status drafted;
  try {
    drafted = propose_drafts(drafts);
  } catch (const std::exception& ex) {
    drafted = make_error(std::string("exception: ") + ex.what());
  }
  if (!drafted) {
    trip("drafting failed: " + drafted.error());
    return drafted;
  }
  const auto t_sched = Clock::now();
  if (drafter_) {
    times.draft = secs(t_sched - t_draft);
    hist_.stage[size_t(Stage::Draft)].observe(times.draft);
  }

  // Schedule: who runs, with how many tokens; requests that must end now come back in `ended`.
  std::vector<std::unique_ptr<Sequence>> ended;
  auto plan = sched_->schedule(t_sched, drafts, ended);
  publish_waiting();
  end_all(ended);
  hist_.stage[size_t(Stage::Hash)].observe(sched_->hash_s);
  hist_.stage[size_t(Stage::Match)].observe(sched_->match_s);
  hist_.stage[size_t(Stage::Allocate)].observe(sched_->allocate_s);
  SpecTally tally;
  int32_t decoded = 0;  // tokens emitted this step
  if (!plan.empty()) {
    // Build the batch: one row range per chunk; verification chunks want every row's logits.
    ForwardBatch b;
    std::vector<int32_t> first_row;  // first logits row of each planned chunk (-1: none)
    std::vector<int32_t> spec_tokens;
    for (const auto& c : plan) {
      first_row.push_back(c.wants_logits ? int32_t(b.logit_rows.size()) : -1);
      if (c.n_draft > 0) {
        spec_tokens.assign(1, c.seq->tokens.back());
        spec_tokens.insert(spec_tokens.end(), c.seq->draft.begin(), c.seq->draft.begin() + c.n_draft);
        b.add_sequence(spec_tokens.data(), c.n_tokens, c.start, c.seq->table, kv_->block_size(), 2);
      } else {
        b.add_sequence(c.seq->tokens.data() + c.start, c.n_tokens, c.start, c.seq->table, kv_->block_size(),
                       c.wants_logits ? 1 : 0);
      }
    }
    // Run: the forward pass (logits_ is kept across steps: a batch's logits are megabytes).
    const auto t_fwd = Clock::now();
    times.schedule = secs(t_fwd - t_begin) - times.draft;
    auto st = device_ ? run_forward_device(b, plan, first_row) : run_forward(b, logits_);  // [device decode]
    const auto t_emit = Clock::now();
    times.decode = secs(t_emit - t_fwd);
    hist_.stage[size_t(Stage::Decode)].observe(times.decode);
    if (!st) {
      // A device failure ends every request instead of hanging them, and stops new work until a probe passes.
      trip("forward pass failed: " + st.error());
      return st;
    }
    // Emit, then postprocess: the scheduler takes the outcomes and owns the sequences again.
    const std::vector<ChunkOutcome> out = emit(plan, first_row, t_emit, tally);
    for (const auto& o : out) decoded += int32_t(o.tokens.size());
    const auto t_post = Clock::now();
    times.verify = tally.verify_s;
    times.emit = secs(t_post - t_emit) - tally.verify_s;
    if (tally.any) hist_.stage[size_t(Stage::Verify)].observe(times.verify);
    hist_.stage[size_t(Stage::Emit)].observe(times.emit);
    std::vector<std::unique_ptr<Sequence>> finished;
    // A request ending before the weights digest is known waits for it here (its tokens are out
    // already), so that its blocks are keyed like those of any request that ends.
    if (cfg_.prefix_caching && !sched_->identity_known() &&
        std::any_of(out.begin(), out.end(), [](const ChunkOutcome& o) { return o.finish != FinishReason::None; }))
      resolve_identity(true);
    sched_->postprocess(plan, out, finished);
    const auto t_end = Clock::now();
    times.postprocess = secs(t_end - t_post);
    hist_.stage[size_t(Stage::Postprocess)].observe(times.postprocess);
    account_step(plan, ended, t_begin, t_end, times);
    end_all(finished);
  } else {
    account_step(plan, ended, t_begin, Clock::now(), times);
  }
  if (tally.any) {
    counters_.spec_proposed += uint64_t(tally.proposed);
    counters_.spec_accepted += uint64_t(tally.accepted);
    ++counters_.spec_steps;
    accept_history_.push_back(tally.proposed ? float(tally.accepted) / float(tally.proposed) : 0.0f);
    if (accept_history_.size() > 600) accept_history_.erase(accept_history_.begin(), accept_history_.begin() + 100);
    ctrl_->observe(step_, tally.proposed, tally.accepted, tally.emitted, secs(Clock::now() - t_draft));
  } else if (drafter_) {
    // A step of nothing but one-token decode chunks times plain decode for the speculation
    // controller (a step that also prefills would understate it).
    const bool decode_only =
        !plan.empty() && std::all_of(plan.begin(), plan.end(), [](const ScheduledChunk& c) { return c.n_tokens == 1; });
    if (decode_only) ctrl_->tick(step_, decoded, secs(Clock::now() - t_draft));
    else ctrl_->tick(step_);
  }
  ++step_;
  kv_history_.push_back(float(kv_->pool().num_in_use()) / float(kv_->pool().num_blocks()));
  if (kv_history_.size() > 600) kv_history_.erase(kv_history_.begin(), kv_history_.begin() + 100);
  // Also when the last request just ended, so a reader never sees a stale view of an idle engine
  // (a fast workload can finish inside one publish interval).
  if (sched_->idle() || secs(Clock::now() - last_publish_) >= cfg_.snapshot_interval_s) publish_snapshot();
  return {};
}

}  // namespace pagoda
