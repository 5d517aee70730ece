// Stage 4, emit: from the step's logits, each planned chunk's outcome — a sampled token, or the
// verification of its drafts — with detokenizing and token callbacks. Nothing here changes what
// the scheduler owns (tokens, blocks): the outcomes go to Scheduler::postprocess(). end() sends a
// finished request's final event.
#include <algorithm>
#include <chrono>

#include "core/engine/device_decode.h"
#include "core/engine/engine.h"
#include "core/sample/philox.h"
#include "core/speculation/verify.h"

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::span<float> Engine::constrained_row(Sequence& s, float* row, std::vector<float>& buf) {
  const size_t V = size_t(model_.config.vocab);
  if (!s.grammar) return {row, V};
  const grammar::TokenVocab& voc = *s.vocab;
  mask_.assign(std::max(voc.mask_words(), (V + 31) / 32), 0u);
  s.grammar->fill_mask(voc, std::span<uint32_t>(mask_.data(), voc.mask_words()));
  bool any = false;
  for (uint32_t w : mask_) any = any || w != 0;
  if (!any) return {};
  buf.assign(row, row + V);
  grammar::apply_token_mask(buf, mask_);
  return buf;
}

// The grammar allows no token at all (a grammar that can end without an end-of-sequence token in
// the vocabulary, or one that cannot be completed): the request ends here.
ChunkOutcome Engine::end_without_continuation(const Sequence& s, int32_t kv_valid) const {
  const bool complete = s.grammar && s.grammar->is_complete();
  ChunkOutcome o;
  o.kv_valid = kv_valid;
  o.finish = complete ? FinishReason::Eos : FinishReason::Error;
  if (!complete) o.error = "grammar: no token can continue the output";
  return o;
}

FinishReason Engine::stop_reason(const Sequence& s, int32_t tok, int32_t nth, int32_t len) const {
  if ((s.stop_at_eos || s.grammar) && model_.tokenizer->is_eog(tok)) return FinishReason::Eos;
  // A finished grammar without an end-of-sequence token, the token limit or the context.
  if ((s.grammar && s.grammar->is_finished()) || nth >= s.max_tokens || len >= ctx_len_)
    return FinishReason::Length;
  return FinishReason::None;
}

void Engine::emit_token(Sequence& s, int32_t tok, int32_t nth, SteadyTime now, const float* row) {
  if (s.grammar) s.grammar->accept_token(*s.vocab, tok);
  ++counters_.generated_tokens;
  ++counters_.per_tenant[s.tenant.empty() ? "default" : s.tenant]["generated"];
  if (nth == 1) {
    s.first_token = now;
    s.metrics.ttft_s = secs(now - s.arrival);
    hist_.ttft.observe(s.metrics.ttft_s);
  } else {
    const double itl = secs(now - s.last_token);
    s.itl_sum += itl;
    hist_.itl.observe(itl);
  }
  s.last_token = now;
  TokenEvent ev;
  ev.request_id = s.id;
  ev.token = tok;
  const bool is_eos = (s.stop_at_eos || s.grammar) && model_.tokenizer->is_eog(tok);
  if (!is_eos) ev.text = detok_[s.id]->push(tok);
  // The end-of-sequence token is not part of the output, so it reports no log-probability.
  if (s.logprobs >= 0 && row && !is_eos) {
    auto lp = token_logprobs(std::span<const float>(row, size_t(model_.config.vocab)), s.sampling.temperature, tok, s.logprobs);
    ev.has_logprobs = true;
    ev.logprob = lp.chosen;
    ev.top_logprobs = std::move(lp.top);
  }
  if (s.callback) s.callback(ev);
}

std::vector<ChunkOutcome> Engine::emit(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row,
                                       SteadyTime now, SpecTally& tally) {
  std::vector<ChunkOutcome> out;
  out.reserve(plan.size());
  const size_t V = size_t(model_.config.vocab);
  const std::vector<int32_t> pre = presample(plan, first_row);
  for (size_t i = 0; i < plan.size(); ++i) {
    // [device decode] a chunk whose token the device already chose (device_decode.cpp)
    if (device_chose(plan.size(), i)) {
      out.push_back(emit_device_chunk(plan[i], device_->decisions()[i], now, tally));
      continue;
    }
    out.push_back(emit_chunk(plan[i], first_row[i] >= 0 ? logits_.data() + size_t(first_row[i]) * V : nullptr, now, tally, pre[i]));
  }
  return out;
}

bool Engine::device_chose(size_t n_chunks, size_t i) const {
  return device_ && device_->decisions().size() == n_chunks && device_->decisions()[i].chosen;
}

std::vector<int32_t> Engine::presample(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row) {
  std::vector<int32_t> pre(plan.size(), -1);
  if (be_.host_threads() < 2) return pre;  // emit_chunk draws each row where it is emitted
  std::vector<size_t> todo;
  for (size_t i = 0; i < plan.size(); ++i) {
    const ScheduledChunk& c = plan[i];
    if (c.n_draft == 0 && c.wants_logits && first_row[i] >= 0 && c.seq->max_tokens > 0 && !c.seq->grammar &&
        !device_chose(plan.size(), i))
      todo.push_back(i);
  }
  if (todo.size() < 2) return pre;  // one row: no handoff
  const size_t V = size_t(model_.config.vocab);
  be_.host_parallel_for(int64_t(todo.size()), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const size_t i = todo[size_t(k)];
      const Sequence& s = *plan[i].seq;
      // Each row is this task's alone: the penalties go into the row and back out.
      const std::span<float> row(logits_.data() + size_t(first_row[i]) * V, V);
      pre[i] = sample_token_in_place(row, s.tokens, s.sampling, uint64_t(s.generated()), size_t(s.generated()));
    }
  });
  return pre;
}

ChunkOutcome Engine::emit_chunk(const ScheduledChunk& c, float* raw, SteadyTime now, SpecTally& tally,
                                int32_t presampled) {
  Sequence& s = *c.seq;
  if (c.n_draft > 0) {
    tally.any = true;
    return verify_chunk(s, c, raw, now, tally);
  }
  ChunkOutcome o;
  o.kv_valid = c.start + c.n_tokens;
  if (!c.wants_logits) return o;  // a prefill chunk short of the prompt's end
  if (s.max_tokens == 0) {
    o.finish = FinishReason::Length;
    return o;
  }
  // The row (or its masked copy) is the engine's: the penalties go into it and back out.
  const std::span<float> row = constrained_row(s, raw, masked_row_);
  if (row.empty()) return end_without_continuation(s, o.kv_valid);
  const int32_t tok = presampled >= 0 ? presampled
                                      : sample_token_in_place(row, s.tokens, s.sampling, uint64_t(s.generated()),
                                                              size_t(s.generated()));
  const int32_t nth = s.generated() + 1;
  emit_token(s, tok, nth, now, raw);
  o.tokens.push_back(tok);
  o.finish = stop_reason(s, tok, nth, int32_t(s.tokens.size()) + 1);
  return o;
}

// Rejection sampling over the k+1 target rows of one sequence, then emission of the accepted
// drafts and the correction/bonus token; rejected positions give their KV slots back (kv_valid).
ChunkOutcome Engine::verify_chunk(Sequence& s, const ScheduledChunk& c, float* logits, SteadyTime now,
                                  SpecTally& tally) {
  const auto t_verify = Clock::now();
  const int32_t V = model_.config.vocab;
  const int32_t len0 = int32_t(s.tokens.size());
  int32_t k = c.n_draft;
  const DraftProposal& prop = proposals_[s.id];
  std::vector<int32_t> hist = s.tokens;
  std::vector<std::vector<float>> p;
  // Under a grammar each target row is masked at the position it verifies: the matcher walks the
  // drafts (and is put back afterwards; emission advances it over what is kept). A draft the
  // grammar refuses, or anything after an end-of-sequence draft, is cut off here.
  const grammar::MatcherSnapshot at_start = s.grammar ? s.grammar->snapshot() : grammar::MatcherSnapshot{};
  for (int32_t i = 0; i <= k; ++i) {
    const std::span<const float> row = constrained_row(s, logits + size_t(i) * size_t(V), masked_row_);
    if (row.empty() && i == 0) {
      s.grammar->restore(at_start);
      tally.verify_s += secs(Clock::now() - t_verify);
      return end_without_continuation(s, len0);
    }
    if (row.empty()) {  // draft i-1 led where nothing can follow: verify the drafts before it
      k = i - 1;
      break;
    }
    p.push_back(sampling_distribution(row, hist, s.sampling, size_t(s.generated() + i)));
    if (i == k) break;
    const int32_t d = s.draft[size_t(i)];
    if (s.grammar && !s.grammar->accept_token(*s.vocab, d)) {
      k = i;  // refused: p has rows 0..i, the first i drafts are verified
      break;
    }
    if (s.grammar && s.grammar->is_finished()) {
      // An end-of-sequence draft: nothing follows it. If it is accepted the request ends there,
      // so the bonus row is never drawn from.
      k = i + 1;
      p.emplace_back(size_t(V), 0.0f);
      break;
    }
    hist.push_back(d);
  }
  if (s.grammar) s.grammar->restore(at_start);
  p.resize(size_t(k) + 1);
  std::vector<float> u(size_t(k) + 1);
  const uint64_t g = uint64_t(s.generated());
  for (int32_t i = 0; i < k; ++i) u[size_t(i)] = philox_uniform(s.sampling.seed, 2, g + uint64_t(i));
  u[size_t(k)] = philox_uniform(s.sampling.seed, 3, g);
  const auto v = verify_drafts(p, std::span<const std::vector<float>>(prop.q.data(), size_t(k)),
                               std::span<const int32_t>(s.draft.data(), size_t(k)), u);
  return finish_verify(s, k, v, logits, now, tally, t_verify);
}

// The bookkeeping and emission after k drafts of `s` were verified (on the host or the device):
// counters, the accepted drafts and the correction/bonus token; `logits` (k+1 host rows, or null
// when the device verified) serve log-probabilities.
ChunkOutcome Engine::finish_verify(Sequence& s, int32_t k, const VerifyOutcome& v, const float* logits, SteadyTime now,
                                   SpecTally& tally, SteadyTime t_verify) {
  const size_t V = size_t(model_.config.vocab);
  const int32_t len0 = int32_t(s.tokens.size());
  tally.proposed += k;
  tally.accepted += v.accepted;
  s.metrics.spec_proposed += uint64_t(k);
  s.metrics.spec_accepted += uint64_t(v.accepted);
  ++s.metrics.spec_steps;
  ++counters_.spec_verify_steps;
  counters_.spec_proposed_by_pos.resize(std::max(counters_.spec_proposed_by_pos.size(), size_t(k)));
  counters_.spec_accepted_by_pos.resize(counters_.spec_proposed_by_pos.size());
  for (int32_t i = 0; i < k; ++i) ++counters_.spec_proposed_by_pos[size_t(i)];
  for (int32_t i = 0; i < v.accepted; ++i) ++counters_.spec_accepted_by_pos[size_t(i)];
  hist_.accept_len.observe(double(v.accepted + 1));
  s.accept_hist.push_back(v.accepted + 1);
  ChunkOutcome o;
  o.tokens.assign(s.draft.begin(), s.draft.begin() + v.accepted);
  o.tokens.push_back(v.next_token);
  tally.verify_s += secs(Clock::now() - t_verify);
  // K/V is valid for the old last token and the accepted drafts; the rest is dropped.
  o.kv_valid = len0 + v.accepted;
  for (size_t j = 0; j < o.tokens.size(); ++j) {
    const int32_t tok = o.tokens[j], nth = s.generated() + int32_t(j) + 1;
    emit_token(s, tok, nth, now, logits ? logits + j * V : nullptr);
    ++tally.emitted;
    o.finish = stop_reason(s, tok, nth, len0 + int32_t(j) + 1);
    if (o.finish != FinishReason::None) {
      o.tokens.resize(j + 1);
      return o;
    }
  }
  if (drafter_) drafter_->accepted(s, o.kv_valid);
  return o;
}

void Engine::end(std::unique_ptr<Sequence> s, FinishReason r, const std::string& error) {
  const auto now = Clock::now();
  s->finish_reason = r;
  s->metrics.generated_tokens = std::max(0, s->generated());
  s->metrics.e2e_s = secs(now - s->arrival);
  s->metrics.mean_itl_s = s->generated() > 1 ? s->itl_sum / (s->generated() - 1) : 0;
  // What is left since the last charged interval: the end of the step it finished in, or queue
  // time for a request that ends without running (cancelled, past its deadline, failed).
  if (s->stage_mark != SteadyTime{} && now > s->stage_mark) {
    const double rest = secs(now - s->stage_mark);
    (s->admitted_once ? s->metrics.stages.postprocess : s->metrics.stages.queue) += rest;
  }
  if (r != FinishReason::Rejected) {
    ++counters_.requests_finished;
    hist_.e2e.observe(s->metrics.e2e_s);
  }
  if (s->metrics.spec_steps > 0)
    hist_.request_accept_len.observe(1.0 + double(s->metrics.spec_accepted) / double(s->metrics.spec_steps));
  ++counters_.finished[finish_reason_name(r)];
  TokenEvent ev;
  ev.request_id = s->id;
  ev.finished = true;
  ev.reason = r;
  ev.error = error;
  ev.metrics = s->metrics;
  if (drafter_) drafter_->release(s->id);
  proposals_.erase(s->id);
  if (auto it = detok_.find(s->id); it != detok_.end()) {
    ev.text = it->second->flush();
    detok_.erase(it);
  }
  if (s->callback) s->callback(ev);
  --pending_;
}

void Engine::end_all(std::vector<std::unique_ptr<Sequence>>& finished) {
  for (auto& s : finished) {
    const FinishReason r = s->finish_reason;
    const std::string error = s->error;
    end(std::move(s), r, error);
  }
  finished.clear();
}

}  // namespace pagoda
