#include "core/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>

#include "core/sample/philox.h"
#include "core/speculation/verify.h"

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Result<SpecConfig> make_spec_config(bool has_draft, int32_t ngram, const std::string& spec_k) {
  if (has_draft && ngram > 0) return make_error("choose one drafter: a draft model or n-gram lookup, not both");
  SpecConfig c;
  c.mode = has_draft ? "draft" : ngram > 0 ? "ngram" : "off";
  if (ngram > 0) c.ngram_n = ngram;
  if (spec_k == "auto") {
    c.adaptive = true;
    return c;
  }
  char* end = nullptr;
  const long k = std::strtol(spec_k.c_str(), &end, 10);
  if (spec_k.empty() || *end != '\0' || k < 1 || k > 16) return make_error("spec-k must be 1..16 or auto");
  c.k = int32_t(k);
  return c;
}

Result<DType> parse_kv_dtype(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  return make_error("kv-dtype must be f32 or f16 (got '" + name + "')");
}

Result<std::optional<double>> parse_kv_fraction(const std::string& spec) {
  if (spec.empty() || spec.back() != '%') return std::optional<double>();
  const std::string num = spec.substr(0, spec.size() - 1);
  char* end = nullptr;
  const double pct = std::strtod(num.c_str(), &end);
  if (num.empty() || *end != '\0' || !(pct > 0 && pct <= 100))
    return make_error("kv-memory '" + spec + "': a percentage of free device memory must be in (0, 100]%");
  return std::optional<double>(pct / 100.0);
}

Status validate_engine_config(const EngineConfig& c) {
  if (c.block_size < 1 || c.block_size > 1024) return make_error("block size must be in 1..1024 (got " + std::to_string(c.block_size) + ")");
  if (c.max_batch_tokens < 1 || c.max_running < 1 || c.max_waiting < 1)
    return make_error("batch token budget, max running and queue bound must be positive");
  if (c.num_blocks < 0) return make_error("num_blocks must be >= 0");
  if (c.kv_fraction < 0 || c.kv_fraction > 1) return make_error("the KV share of free device memory must be in (0, 1]");
  if (c.max_preemptions < 0) return make_error("max preemptions must be >= 0");
  if (c.tenant_cached_blocks < 0) return make_error("per-tenant cached block cap must be >= 0");
  if (!(c.probe_interval_s > 0)) return make_error("probe interval must be > 0 seconds");
  if (c.spec.k < 0 || c.spec.k > 16) return make_error("draft length k must be in 0..16");
  if (c.spec.latency_slo_s < 0) return make_error("speculation latency SLO must be >= 0");
  return {};
}

Result<int32_t> kv_block_count(const LoadedModel& model, const Backend& be, const EngineConfig& cfg) {
  if (cfg.num_blocks > 0) return cfg.num_blocks;
  const uint64_t per_block = model.config.kv_bytes_per_token(uint32_t(dtype_block_bytes(cfg.kv_dtype))) * uint64_t(cfg.block_size);
  uint64_t budget = cfg.kv_bytes;
  if (cfg.kv_fraction > 0) {
    const uint64_t total = be.info().memory_bytes, weights = model.weights.bytes;
    if (total == 0)
      return make_error("--kv-memory as a percentage needs the backend's free memory, and the " + be.info().name +
                        " backend does not report it; give a size instead (e.g. 512MiB)");
    const uint64_t free_bytes = total > weights ? total - weights : 0;
    budget = uint64_t(double(free_bytes) * cfg.kv_fraction);
  }
  const int32_t n = kv_blocks_for_budget(model.config, budget, cfg.block_size, cfg.kv_dtype);
  if (n < 1)
    return make_error("the KV budget of " + std::to_string(budget) + " bytes holds no KV block: one block of " +
                      std::to_string(cfg.block_size) + " tokens needs " + std::to_string(per_block) +
                      " bytes for this model; raise --kv-memory");
  return n;
}

Engine::Engine(LoadedModel& model, Backend& be, const EngineConfig& cfg) : model_(model), be_(be), cfg_(cfg) {}

Result<std::unique_ptr<Engine>> Engine::create(LoadedModel& model, Backend& be, const EngineConfig& cfg,
                                               LoadedModel* draft_model) {
  PAGODA_TRY(validate_engine_config(cfg));
  auto n_blocks = kv_block_count(model, be, cfg);
  if (!n_blocks) return n_blocks.take_error();
  std::unique_ptr<Engine> e(new Engine(model, be, cfg));
  KvCacheConfig kc;
  kc.block_size = cfg.block_size;
  kc.dtype = cfg.kv_dtype;
  kc.num_blocks = *n_blocks;
  auto kv = KvCache::create(be, model.config, kc);
  if (!kv) return kv.take_error();
  e->kv_ = std::make_unique<KvCache>(std::move(*kv));
  e->index_ = std::make_unique<PrefixIndex>(e->kv_->pool());
  e->runner_ = std::make_unique<ModelRunner>(be, model.config, model.weights);
  // Everything that decides the bytes of a cached block goes into its identity.
  e->identity_.weights_digest = model.weights.digest;
  e->identity_.tokenizer_digest = model.tokenizer->digest();
  e->identity_.model_compute = model.config.compute_signature();
  e->identity_.adapter_id = cfg.adapter_id;
  e->identity_.kv_dtype = dtype_name(cfg.kv_dtype);
  e->identity_.block_size = cfg.block_size;
  e->identity_.kernel_precision = be.info().name + "-f32acc";
  SchedulerConfig sc;
  sc.max_batch_tokens = cfg.max_batch_tokens;
  sc.max_running = cfg.max_running;
  sc.prefix_caching = cfg.prefix_caching;
  sc.ctx_len = model.config.ctx_len;
  sc.max_preemptions = cfg.max_preemptions;
  sc.tenant_cached_blocks = cfg.tenant_cached_blocks;
  e->sched_ = std::make_unique<Scheduler>(sc, *e->kv_, *e->index_, e->identity_, e->counters_, e->hist_);
  if (cfg.spec.mode == "ngram") {
    e->drafter_ = std::make_unique<NgramDrafter>(std::max(1, cfg.spec.ngram_n), model.config.vocab);
  } else if (cfg.spec.mode == "draft") {
    if (!draft_model) return make_error("speculation mode 'draft' needs a draft model");
    auto d = DraftModel::create(*draft_model, be, *model.tokenizer, cfg.spec.draft_kv_bytes, cfg.block_size);
    if (!d) return d.take_error();
    e->drafter_ = std::move(*d);
  } else if (cfg.spec.mode != "off") {
    return make_error("unknown speculation mode '" + cfg.spec.mode + "' (off, ngram, draft)");
  }
  SpecControllerConfig cc;
  cc.adaptive = cfg.spec.adaptive;
  cc.k = cfg.spec.k;
  cc.latency_slo_s = cfg.spec.latency_slo_s;
  e->ctrl_ = std::make_unique<SpecController>(cc);
  e->start_time_ = Clock::now();
  e->publish_snapshot();
  return e;
}

// Also runs for an engine whose create() failed half way (no scheduler yet): nothing to stop then.
Engine::~Engine() {
  if (sched_) stop(false);
}

int32_t Engine::public_len_of(const std::vector<int32_t>& toks) const {
  int32_t best = 0;
  for (const auto& p : cfg_.public_prefixes)
    if (p.size() <= toks.size() && int32_t(p.size()) > best && std::equal(p.begin(), p.end(), toks.begin()))
      best = int32_t(p.size());
  return best;
}

SubmitResult Engine::submit(Request req, TokenCallback cb) {
  const auto t0 = Clock::now();
  SubmitResult r;
  auto reject = [&](const std::string& reason, const std::string& msg) {
    r.rejected = reason;
    r.message = msg;
    std::lock_guard<std::mutex> lk(mu_);
    ++submit_stats_.rejections[reason];
    return r;
  };
  if (const EngineHealth h = health(); h.degraded)
    return reject("engine_unavailable", "the engine is degraded after a backend failure (" + h.reason +
                                            "); it recovers by itself when a probe succeeds, retry later");
  if (auto st = req.sampling.validate(); !st) return reject("invalid_request", st.error());
  if (req.max_tokens < 0) return reject("invalid_request", "max_tokens must be >= 0");
  if (req.timeout_s < 0) return reject("invalid_request", "timeout must be >= 0");
  if (req.logprobs < -1 || req.logprobs > 20) return reject("invalid_request", "logprobs must be in 0..20 (or -1 for none)");
  auto s = std::make_unique<Sequence>();
  s->tokens = req.prompt_tokens.empty() ? model_.tokenizer->encode(req.prompt, req.add_bos) : req.prompt_tokens;
  if (s->tokens.empty()) return reject("invalid_request", "empty prompt");
  for (int32_t t : s->tokens)
    if (t < 0 || t >= model_.config.vocab) return reject("invalid_request", "token id " + std::to_string(t) + " is outside the vocabulary");
  if (int32_t(s->tokens.size()) >= model_.config.ctx_len)
    return reject("prompt_too_long", "prompt of " + std::to_string(s->tokens.size()) + " tokens does not fit the context of " +
                                         std::to_string(model_.config.ctx_len));
  const int32_t bs = kv_->block_size(), need = (int32_t(s->tokens.size()) + bs) / bs;
  if (need > kv_->pool().num_blocks())
    return reject("kv_capacity", "the prompt needs " + std::to_string(need) + " KV blocks but the cache holds " +
                                     std::to_string(kv_->pool().num_blocks()));
  s->id = next_id_++;
  s->prompt_len = int32_t(s->tokens.size());
  s->public_len = public_len_of(s->tokens);
  s->tenant = req.tenant;
  s->trace_id = req.trace_id;
  s->metrics.trace_id = req.trace_id;
  s->priority = req.priority;
  s->max_tokens = std::min<int32_t>(req.max_tokens, model_.config.ctx_len - s->prompt_len);
  s->stop_at_eos = req.stop_at_eos;
  s->sampling = req.sampling;
  s->logprobs = req.logprobs;
  if (req.grammar) {
    std::call_once(vocab_once_, [&] {
      vocab_ = std::make_unique<grammar::TokenVocab>(grammar::TokenVocab::from_tokenizer(*model_.tokenizer));
    });
    s->grammar_src = std::move(req.grammar);
    s->vocab = vocab_.get();
  }
  s->callback = std::move(cb);
  s->arrival = t0;
  s->metrics.prompt_tokens = s->prompt_len;
  if (req.timeout_s > 0) s->deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(req.timeout_s));
  r.id = s->id;
  {
    std::lock_guard<std::mutex> lk(mu_);
    submit_stats_.normalize.observe(secs(Clock::now() - t0));
    // Admission control, decided here once: the bound covers requests not yet seen by the engine
    // thread too. The scheduler's queue is the engine thread's, so this reads the count that
    // thread publishes under mu_ rather than the queue itself.
    if (waiting_published_ + int64_t(inbox_.size()) >= cfg_.max_waiting) {
      ++submit_stats_.rejections["queue_full"];
      r.rejected = "queue_full";
      r.message = "the request queue is full (" + std::to_string(cfg_.max_waiting) + " waiting); retry later";
      r.id = 0;
      return r;
    }
    ++submit_stats_.submitted;
    inbox_.push_back(std::move(s));
    ++pending_;
  }
  cv_.notify_all();
  return r;
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
    const uint64_t id = s->id;
    const std::string why = sched_->add(s);
    if (!why.empty()) {
      ++counters_.rejections[why];
      end(std::move(s), FinishReason::Rejected, why);
    } else {
      const Sequence* q = sched_->find(id);
      detok_[id] = std::make_unique<StreamDecoder>(*model_.tokenizer, q->tokens.back());
    }
  }
  for (uint64_t c : cancels)
    if (Sequence* s = sched_->find(c)) s->cancelled = true;
  publish_waiting();
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

std::span<const float> Engine::constrained_row(Sequence& s, const float* row, std::vector<float>& buf) {
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
void Engine::end_without_continuation(Sequence& s) {
  const bool complete = s.grammar && s.grammar->is_complete();
  end(sched_->finish(&s), complete ? FinishReason::Eos : FinishReason::Error,
      complete ? "" : "grammar: no token can continue the output");
}

void Engine::publish_waiting() {
  std::lock_guard<std::mutex> lk(mu_);
  waiting_published_ = int64_t(sched_->waiting().size());
}

bool Engine::should_stop(const Sequence& s, int32_t tok) const {
  return ((s.stop_at_eos || s.grammar) && model_.tokenizer->is_eog(tok)) || (s.grammar && s.grammar->is_finished()) || s.generated() >= s.max_tokens ||
         int32_t(s.tokens.size()) >= model_.config.ctx_len;
}

void Engine::emit_token(Sequence& s, int32_t tok, SteadyTime now, const float* row) {
  s.tokens.push_back(tok);
  if (s.grammar) s.grammar->accept_token(*s.vocab, tok);
  ++counters_.generated_tokens;
  ++counters_.per_tenant[s.tenant.empty() ? "default" : s.tenant]["generated"];
  if (s.generated() == 1) {
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

void Engine::end(std::unique_ptr<Sequence> s, FinishReason r, const std::string& error) {
  const auto now = Clock::now();
  s->finish_reason = r;
  s->metrics.generated_tokens = std::max(0, s->generated());
  s->metrics.e2e_s = secs(now - s->arrival);
  s->metrics.mean_itl_s = s->generated() > 1 ? s->itl_sum / (s->generated() - 1) : 0;
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

void Engine::set_spec_policy(int32_t k, bool adaptive) {
  ctrl_->set_fixed_k(std::clamp(k, 0, 16));
  ctrl_->set_adaptive(adaptive);
}

// Drafts for every decoding sequence, bounded so a step never overshoots max_tokens or the context.
Status Engine::propose_drafts() {
  proposals_.clear();
  const int32_t k = ctrl_->k();
  if (!drafter_ || k <= 0) return {};
  std::vector<Sequence*> seqs;
  std::vector<int32_t> ks;
  for (const auto& sp : sched_->running()) {
    Sequence& s = *sp;
    s.draft.clear();
    if (s.prefilling()) continue;
    const int32_t room = std::min(s.max_tokens - s.generated() - 1, model_.config.ctx_len - int32_t(s.tokens.size()) - 1);
    const int32_t kk = std::min(k, room);
    if (kk <= 0) continue;
    seqs.push_back(&s);
    ks.push_back(kk);
  }
  if (seqs.empty()) return {};
  std::vector<DraftProposal> props;
  PAGODA_TRY(drafter_->propose(seqs, ks, props));
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i]->draft = props[i].tokens;
    seqs[i]->spec_k = ks[i];
    if (!props[i].tokens.empty()) proposals_[seqs[i]->id] = std::move(props[i]);
  }
  return {};
}

// Rejection sampling over the k+1 target rows of one sequence, then emission of the accepted
// drafts and the correction/bonus token; rejected positions give their KV slots back.
void Engine::verify_chunk(Sequence& s, const ScheduledChunk& c, const float* logits, SteadyTime now,
                          int32_t& proposed, int32_t& accepted, int32_t& emitted) {
  const int32_t V = model_.config.vocab;
  int32_t k = c.n_tokens - 1;
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
      s.draft.clear();
      end_without_continuation(s);
      return;
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
  proposed += k;
  accepted += v.accepted;
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
  const int32_t len0 = int32_t(s.tokens.size());
  std::vector<int32_t> toks(s.draft.begin(), s.draft.begin() + v.accepted);
  toks.push_back(v.next_token);
  s.draft.clear();
  for (size_t j = 0; j < toks.size(); ++j) {
    const int32_t tok = toks[j];
    emit_token(s, tok, now, logits + j * size_t(V));
    ++emitted;
    if (should_stop(s, tok)) {
      const bool eos = (s.stop_at_eos || s.grammar) && model_.tokenizer->is_eog(tok);
      end(sched_->finish(&s), eos ? FinishReason::Eos : FinishReason::Length);
      return;
    }
  }
  // K/V is valid for the old last token and the accepted drafts; the rest is dropped.
  sched_->truncate(s, len0 + v.accepted);
  sched_->commit(s, len0 + v.accepted);
  if (drafter_) drafter_->accepted(s, len0 + v.accepted);
}

Status Engine::step() {
  drain_inbox();
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
  const auto t_step = Clock::now();
  Status drafted;
  try {
    drafted = propose_drafts();
  } catch (const std::exception& ex) {
    drafted = make_error(std::string("exception: ") + ex.what());
  }
  if (!drafted) {
    trip("drafting failed: " + drafted.error());
    return drafted;
  }
  const auto now = Clock::now();
  std::vector<std::unique_ptr<Sequence>> ended;
  auto plan = sched_->schedule(now, ended);
  publish_waiting();
  for (auto& s : ended) {
    const FinishReason r = s->finish_reason;
    const std::string error = s->error;
    end(std::move(s), r, error);
  }
  hist_.stage[size_t(Stage::Hash)].observe(sched_->hash_s);
  hist_.stage[size_t(Stage::Match)].observe(sched_->match_s);
  hist_.stage[size_t(Stage::Allocate)].observe(sched_->allocate_s);
  int32_t proposed = 0, accepted = 0, emitted = 0;
  bool any_spec = false;
  if (!plan.empty()) {
    ForwardBatch b;
    std::vector<int32_t> first_row;  // first logits row of each planned chunk (-1: none)
    std::vector<int32_t> spec_tokens;
    for (const auto& c : plan) {
      const bool spec = c.n_tokens > 1 && !c.seq->prefilling() && !c.seq->draft.empty();
      first_row.push_back(c.wants_logits ? int32_t(b.logit_rows.size()) : -1);
      if (spec) {
        any_spec = true;
        spec_tokens.assign(1, c.seq->tokens.back());
        spec_tokens.insert(spec_tokens.end(), c.seq->draft.begin(), c.seq->draft.begin() + (c.n_tokens - 1));
        c.seq->draft.resize(size_t(c.n_tokens - 1));
        b.add_sequence(spec_tokens.data(), c.n_tokens, c.start, c.seq->table, kv_->block_size(), 2);
      } else {
        b.add_sequence(c.seq->tokens.data() + c.start, c.n_tokens, c.start, c.seq->table, kv_->block_size(),
                       c.wants_logits ? 1 : 0);
      }
    }
    std::vector<float>& logits = logits_;  // kept across steps: a batch's logits are megabytes
    const auto t0 = Clock::now();
    auto st = run_forward(b, logits);
    hist_.stage[size_t(Stage::Decode)].observe(secs(Clock::now() - t0));
    if (!st) {
      // A device failure ends every request instead of hanging them, and stops new work until a probe passes.
      trip("forward pass failed: " + st.error());
      return st;
    }
    const auto t_emit = Clock::now();
    const int32_t V = model_.config.vocab;
    for (size_t ci = 0; ci < plan.size(); ++ci) {
      const auto& c = plan[ci];
      Sequence& s = *c.seq;
      const bool spec = c.n_tokens > 1 && !s.draft.empty() && !s.prefilling();
      if (spec) {
        verify_chunk(s, c, logits.data() + size_t(first_row[ci]) * size_t(V), t_emit, proposed, accepted, emitted);
        continue;
      }
      sched_->commit(s, c.start + c.n_tokens);
      if (!c.wants_logits) continue;
      if (s.max_tokens == 0) { end(sched_->finish(&s), FinishReason::Length); continue; }
      const float* raw = logits.data() + size_t(first_row[ci]) * size_t(V);
      const std::span<const float> row = constrained_row(s, raw, masked_row_);
      if (row.empty()) { end_without_continuation(s); continue; }
      const int32_t tok = sample_token(row, s.tokens, s.sampling, uint64_t(s.generated()), size_t(s.generated()));
      emit_token(s, tok, t_emit, raw);
      if (should_stop(s, tok)) {
        const bool eos = (s.stop_at_eos || s.grammar) && model_.tokenizer->is_eog(tok);
        end(sched_->finish(&s), eos ? FinishReason::Eos : FinishReason::Length);
      }
    }
    if (any_spec) hist_.stage[size_t(Stage::Verify)].observe(secs(Clock::now() - t_emit));
  }
  if (any_spec) {
    counters_.spec_proposed += uint64_t(proposed);
    counters_.spec_accepted += uint64_t(accepted);
    ++counters_.spec_steps;
    accept_history_.push_back(proposed ? float(accepted) / float(proposed) : 0.0f);
    if (accept_history_.size() > 600) accept_history_.erase(accept_history_.begin(), accept_history_.begin() + 100);
    ctrl_->observe(step_, proposed, accepted, emitted, secs(Clock::now() - t_step));
  } else if (drafter_) {
    ctrl_->tick(step_);
  }
  ++step_;
  kv_history_.push_back(float(kv_->pool().num_in_use()) / float(kv_->pool().num_blocks()));
  if (kv_history_.size() > 600) kv_history_.erase(kv_history_.begin(), kv_history_.begin() + 100);
  // Also when the last request just ended, so a reader never sees a stale view of an idle engine
  // (a fast workload can finish inside one publish interval).
  if (sched_->idle() || secs(Clock::now() - last_publish_) >= cfg_.snapshot_interval_s) publish_snapshot();
  return {};
}

bool Engine::idle() const { return pending_.load() == 0; }

void Engine::set_paused(bool p) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = p;
  }
  cv_.notify_all();
}

void Engine::loop() {
  while (running_thread_) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(50), [&] {
        return !running_thread_ || ((!inbox_.empty() || !cancels_.empty() || !sched_->idle()) && !paused_);
      });
    }
    if (!running_thread_) break;
    auto st = step();
    (void)st;  // errors were delivered to the affected requests
    if (sched_->idle()) publish_snapshot();
  }
}

void Engine::start() {
  if (running_thread_.exchange(true)) return;
  thread_ = std::thread([this] { loop(); });
}

void Engine::stop(bool drain) {
  if (drain && running_thread_) {
    while (!idle()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (running_thread_.exchange(false)) {
    cv_.notify_all();
    thread_.join();
  }
  if (!drain) {
    // Cancel whatever is left and run one step so every request gets its final event.
    std::vector<uint64_t> ids;
    for (const auto& s : sched_->running()) ids.push_back(s->id);
    for (const auto& s : sched_->waiting()) ids.push_back(s->id);
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (const auto& s : inbox_) ids.push_back(s->id);
      paused_ = false;
    }
    for (uint64_t id : ids) cancel(id);
    if (!ids.empty()) {
      drain_inbox();
      std::vector<std::unique_ptr<Sequence>> ended;
      sched_->schedule(SteadyTime::min(), ended);
      for (auto& s : ended) {
        const FinishReason r = s->finish_reason;
        const std::string error = s->error;
        end(std::move(s), r, error);
      }
    }
  }
}

void Engine::publish_snapshot() {
  last_publish_ = Clock::now();
  box_.publish(std::make_shared<const Snapshot>(build_snapshot()));
}

}  // namespace pagoda
