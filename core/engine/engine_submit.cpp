// Stage 1, normalize: a request is validated, tokenized and admitted (or rejected with a typed
// Rejection) on the caller's thread, then handed to the engine thread through the inbox, which
// drain_inbox() empties into the scheduler at the start of each step.
#include <algorithm>
#include <chrono>

#include "core/engine/engine.h"

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

const char* rejection_name(Rejection r) {
  switch (r) {
    case Rejection::None: return "";
    case Rejection::QueueFull: return "queue_full";
    case Rejection::PromptTooLong: return "prompt_too_long";
    case Rejection::KvCapacity: return "kv_capacity";
    case Rejection::InvalidRequest: return "invalid_request";
    case Rejection::EngineUnavailable: return "engine_unavailable";
  }
  return "?";
}

int32_t Engine::public_len_of(const std::vector<int32_t>& toks) const {
  int32_t best = 0;
  for (const auto& p : cfg_.public_prefixes)
    if (p.size() <= toks.size() && int32_t(p.size()) > best && std::equal(p.begin(), p.end(), toks.begin()))
      best = int32_t(p.size());
  return best;
}

// Every check a request must pass before it is queued, in one place.
Rejection Engine::normalize(Request& req, Sequence& s, std::string& message) {
  auto reject = [&](Rejection r, std::string msg) {
    message = std::move(msg);
    return r;
  };
  if (const EngineHealth h = health(); h.degraded)
    return reject(Rejection::EngineUnavailable, "the engine is degraded after a backend failure (" + h.reason +
                                                    "); it recovers by itself when a probe succeeds, retry later");
  if (auto st = req.sampling.validate(); !st) return reject(Rejection::InvalidRequest, st.error());
  if (req.max_tokens < 0) return reject(Rejection::InvalidRequest, "max_tokens must be >= 0");
  if (req.timeout_s < 0) return reject(Rejection::InvalidRequest, "timeout must be >= 0");
  if (req.logprobs < -1 || req.logprobs > 20)
    return reject(Rejection::InvalidRequest, "logprobs must be in 0..20 (or -1 for none)");
  s.tokens = req.prompt_tokens.empty() ? model_.tokenizer->encode(req.prompt, req.add_bos) : std::move(req.prompt_tokens);
  if (s.tokens.empty()) return reject(Rejection::InvalidRequest, "empty prompt");
  for (int32_t t : s.tokens)
    if (t < 0 || t >= model_.config.vocab)
      return reject(Rejection::InvalidRequest, "token id " + std::to_string(t) + " is outside the vocabulary");
  if (int32_t(s.tokens.size()) >= ctx_len_)
    return reject(Rejection::PromptTooLong, "the prompt has " + std::to_string(s.tokens.size()) + " tokens; the context of " +
                                                std::to_string(ctx_len_) + " must leave room for at least one generated token");
  const int32_t bs = kv_->block_size(), need = (int32_t(s.tokens.size()) + bs) / bs;
  if (need > kv_->pool().num_blocks())
    return reject(Rejection::KvCapacity, "the prompt needs " + std::to_string(need) + " KV blocks of " + std::to_string(bs) +
                                             " tokens but the cache holds " + std::to_string(kv_->pool().num_blocks()));
  s.prompt_len = int32_t(s.tokens.size());
  s.public_len = public_len_of(s.tokens);
  s.tenant = req.tenant;
  s.trace_id = req.trace_id;
  s.metrics.trace_id = req.trace_id;
  s.priority = req.priority;
  s.max_tokens = std::min<int32_t>(req.max_tokens, ctx_len_ - s.prompt_len);
  s.stop_at_eos = req.stop_at_eos;
  s.sampling = req.sampling;
  s.logprobs = req.logprobs;
  s.prefill_from = req.prefill_from;
  if (req.grammar) {
    std::call_once(vocab_once_, [&] {
      vocab_ = std::make_unique<grammar::TokenVocab>(grammar::TokenVocab::from_tokenizer(*model_.tokenizer));
    });
    s.grammar_src = std::move(req.grammar);
    s.vocab = vocab_.get();
  }
  s.metrics.prompt_tokens = s.prompt_len;
  if (req.timeout_s > 0)
    s.deadline = s.arrival + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(req.timeout_s));
  return Rejection::None;
}

SubmitResult Engine::submit(Request req, TokenCallback cb) {
  std::vector<Request> one;
  one.push_back(std::move(req));
  return submit_group(std::move(one), cb, false).front();
}

std::vector<SubmitResult> Engine::submit_group(std::vector<Request> reqs, const TokenCallback& cb, bool share_prompt) {
  std::vector<SubmitResult> out(reqs.size());
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<SteadyTime> t0s;
  const SubmitResult* bad = nullptr;
  for (size_t i = 0; i < reqs.size(); ++i) {
    t0s.push_back(reqs[i].received == SteadyTime{} ? Clock::now() : reqs[i].received);
    auto s = std::make_unique<Sequence>();
    s->arrival = t0s.back();
    out[i].rejection = normalize(reqs[i], *s, out[i].message);
    if (!out[i].ok() && !bad) bad = &out[i];
    seqs.push_back(std::move(s));
  }
  std::lock_guard<std::mutex> lk(mu_);
  const auto t1 = Clock::now();
  // The queue bound covers requests not yet seen by the engine thread too. The scheduler's queue
  // is the engine thread's, so this reads the count that thread publishes under mu_.
  SubmitResult full;
  if (!bad && waiting_published_ + int64_t(inbox_.size()) + int64_t(reqs.size()) > cfg_.max_waiting) {
    full.rejection = Rejection::QueueFull;
    full.message = "the request queue is full (" + std::to_string(cfg_.max_waiting) + " waiting); retry later";
    bad = &full;
  }
  if (bad) {  // all or nothing: every result carries the group's (first) rejection
    const SubmitResult why = *bad;
    for (SubmitResult& r : out) r = why;
    submit_stats_.rejections[why.reason()] += reqs.size();
    return out;
  }
  const uint64_t first_id = next_id_;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    submit_stats_.normalize.observe(secs(t1 - t0s[i]));
    s.id = out[i].id = next_id_++;
    if (share_prompt && i > 0) s.prefill_from = first_id;
    s.callback = cb;
    s.metrics.stages.normalize = secs(t1 - t0s[i]);
    s.stage_mark = t1;
    ++submit_stats_.submitted;
    inbox_.push_back(std::move(seqs[i]));
    ++pending_;
  }
  cv_.notify_all();
  return out;
}

void Engine::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

void Engine::drain_inbox() {
  std::vector<std::unique_ptr<Sequence>> in;
  std::vector<uint64_t> cancels;
  {
    std::lock_guard<std::mutex> lk(mu_);
    in.swap(inbox_);
    cancels.swap(cancels_);
    waiting_published_ += int64_t(in.size());  // still queued, now on their way to the scheduler
  }
  for (auto& s : in) {
    for (uint64_t c : cancels) if (c == s->id) s->cancelled = true;
    if (s->grammar_src) attach_grammar(*s);
    detok_[s->id] = std::make_unique<StreamDecoder>(*model_.tokenizer, s->tokens.back());
    sched_->add(std::move(s));
  }
  for (uint64_t c : cancels)
    if (Sequence* s = sched_->find(c)) s->cancelled = true;
  publish_waiting();
}

void Engine::publish_waiting() {
  std::lock_guard<std::mutex> lk(mu_);
  waiting_published_ = int64_t(sched_->waiting().size());
}

// Clones the unadvanced matcher kept for this Grammar object, so the n choices of a request (and
// any later request reusing the compiled grammar) share mask caches. Entries whose grammar every
// request has dropped are pruned here.
void Engine::attach_grammar(Sequence& s) {
  const grammar::Grammar* key = s.grammar_src.get();
  auto it = grammar_protos_.find(key);
  if (it != grammar_protos_.end() && it->second.first.expired()) {
    grammar_protos_.erase(it);
    it = grammar_protos_.end();
  }
  if (it == grammar_protos_.end()) {
    for (auto p = grammar_protos_.begin(); p != grammar_protos_.end();)
      p = p->second.first.expired() ? grammar_protos_.erase(p) : std::next(p);
    it = grammar_protos_.emplace(key, std::make_pair(std::weak_ptr<const grammar::Grammar>(s.grammar_src),
                                                     grammar::GrammarMatcher(s.grammar_src))).first;
  }
  s.grammar = std::make_unique<grammar::GrammarMatcher>(it->second.second.clone());
}

}  // namespace pagoda
