#include "apps/bench/bench_workloads.h"

#include <algorithm>
#include <chrono>

#include "apps/bench/batch_run.h"
#include "apps/bench/bench.h"

namespace pagoda {
namespace {

const char* kStoryStarts[] = {"Once upon a time", "Lily and Ben", "The little dog", "Tom had a red ball",
                              "One day, a girl named Sue", "The sun was hot", "Max the cat", "A big bird"};

Request greedy(const std::string& prompt, int32_t n) {
  Request r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.sampling.temperature = 0;
  r.stop_at_eos = false;  // fixed-length work, so runs are comparable
  return r;
}

std::vector<Request> distinct_prompts(int32_t n, int32_t gen) {
  std::vector<Request> v;
  for (int32_t i = 0; i < n; ++i)
    v.push_back(greedy(std::string(kStoryStarts[i % 8]) + " " + std::to_string(i), gen));
  return v;
}

}  // namespace

Result<std::vector<BatchPoint>> bench_batch(LoadedModel& m, Backend& be, const std::vector<int32_t>& streams,
                                            int32_t gen_tokens, int repeats) {
  std::vector<BatchPoint> out;
  for (int32_t n : streams) {
    EngineConfig cfg;
    cfg.max_running = std::max(n, 1);
    cfg.max_waiting = std::max(n, 1);
    cfg.max_batch_tokens = std::max(512, n);
    cfg.prefix_caching = false;
    auto e = Engine::create(m, be, cfg);
    if (!e) return e.take_error();
    std::vector<double> rates;
    for (int r = 0; r <= repeats; ++r) {
      BatchSummary s;
      run_requests(**e, distinct_prompts(n, gen_tokens), true, &s);
      if (s.completed != n) return make_error("batch bench: only " + std::to_string(s.completed) + " of " + std::to_string(n) + " completed");
      if (r > 0) rates.push_back(s.gen_tok_s);  // first run warms up
    }
    out.push_back({n, median(rates), 0});
  }
  for (auto& p : out) p.speedup_vs_1 = out.front().gen_tok_s > 0 ? p.gen_tok_s / out.front().gen_tok_s : 0;
  return out;
}

Result<PrefixResult> bench_prefix(LoadedModel& m, Backend& be, int32_t prompt_tokens, double cached_fraction, int repeats) {
  if (prompt_tokens + 2 >= m.config.ctx_len) return make_error("prompt does not fit the context");
  PrefixResult res;
  res.prompt_tokens = prompt_tokens;
  const int32_t shared = int32_t(double(prompt_tokens) * cached_fraction);
  std::vector<double> cold, warm;
  uint64_t avoided = 0;
  for (int r = 0; r <= repeats; ++r) {
    // Fresh engine per repeat so "cold" is really cold; token ids are ordinary vocabulary entries.
    EngineConfig cfg;
    auto e = Engine::create(m, be, cfg);
    if (!e) return e.take_error();
    std::vector<int32_t> base(static_cast<size_t>(prompt_tokens));
    for (int32_t i = 0; i < prompt_tokens; ++i) base[size_t(i)] = 3 + (i * 31 + r * 7) % (m.config.vocab - 3);
    Request a = greedy("", 1), b = greedy("", 1);
    a.prompt_tokens = base;
    b.prompt_tokens = base;
    for (int32_t i = shared; i < prompt_tokens; ++i) b.prompt_tokens[size_t(i)] = 3 + (i * 17 + 5) % (m.config.vocab - 3);
    auto first = run_requests(**e, {a}, true);
    auto second = run_requests(**e, {b}, true);
    if (r == 0) continue;
    cold.push_back(first[0].metrics.ttft_s * 1e3);
    warm.push_back(second[0].metrics.ttft_s * 1e3);
    res.cached_tokens = second[0].metrics.cached_tokens;
    (*e)->publish_snapshot();
    avoided = (*e)->snapshot()->counters.avoided_prefill_tokens;
  }
  res.cold_ttft_ms = median(cold);
  res.warm_ttft_ms = median(warm);
  res.ratio = res.cold_ttft_ms > 0 ? res.warm_ttft_ms / res.cold_ttft_ms : 0;
  res.avoided_prefill_tokens = avoided;
  return res;
}

Result<std::vector<ChatTurn>> bench_chat_turns(LoadedModel& m, Backend& be, const ChatTurnsOptions& o, int repeats) {
  if (o.turns < 1 || o.system_tokens < 1 || o.user_tokens < 1 || o.reply_tokens < 1)
    return make_error("turns, system, user and reply tokens must be positive");
  const int64_t total = int64_t(o.system_tokens) + int64_t(o.turns) * (o.user_tokens + o.reply_tokens);
  if (total >= m.config.ctx_len)
    return make_error("the conversation (" + std::to_string(total) + " tokens) does not fit the context of " +
                      std::to_string(m.config.ctx_len));
  auto token = [&](int64_t salt) { return int32_t(3 + salt % (m.config.vocab - 3)); };
  std::vector<std::vector<double>> on(size_t(o.turns)), off(size_t(o.turns));
  std::vector<ChatTurn> out(static_cast<size_t>(o.turns));
  for (int r = 0; r <= repeats; ++r) {
    for (bool cache : {true, false}) {
      EngineConfig cfg;
      cfg.prefix_caching = cache;
      auto e = Engine::create(m, be, cfg);
      if (!e) return e.take_error();
      std::vector<int32_t> conv;
      for (int32_t i = 0; i < o.system_tokens; ++i) conv.push_back(token(i * 31 + r * 7));
      for (int32_t t = 0; t < o.turns; ++t) {
        for (int32_t i = 0; i < o.user_tokens; ++i) conv.push_back(token((t + 1) * 1009 + i * 17 + r));
        Request q = greedy("", o.reply_tokens);
        q.prompt_tokens = conv;
        const auto res = run_requests(**e, {q}, true);
        if (res[0].reason != FinishReason::Length) return make_error("turn " + std::to_string(t + 1) + ": " + res[0].error);
        conv.insert(conv.end(), res[0].tokens.begin(), res[0].tokens.end());  // the reply joins the history
        if (r == 0) continue;  // warm-up
        ChatTurn& ct = out[size_t(t)];
        ct.turn = t + 1;
        ct.prompt_tokens = int32_t(q.prompt_tokens.size());
        (cache ? on : off)[size_t(t)].push_back(res[0].metrics.ttft_s * 1e3);
        if (cache) ct.cached_tokens = res[0].metrics.cached_tokens;
      }
    }
  }
  for (size_t t = 0; t < out.size(); ++t) {
    out[t].ttft_on_ms = median(on[t]);
    out[t].ttft_off_ms = median(off[t]);
  }
  return out;
}

namespace {

std::vector<Request> capacity_trace(const ModelConfig& c, int32_t n) {
  std::vector<Request> v;
  for (int32_t i = 0; i < n; ++i) {
    Request r = greedy("", 128 + (i * 37) % 384);
    for (int32_t t = 0, len = 8 + (i * 13) % 57; t < len; ++t) r.prompt_tokens.push_back(3 + (i * 101 + t * 7) % (c.vocab - 3));
    v.push_back(std::move(r));
  }
  return v;
}

// Runs `trace` to completion on one engine, sampling the running count around every step. With
// `waste`, also the paged pool's internal fragmentation averaged over the steps.
Result<CapacitySide> serve_trace(LoadedModel& m, Backend& be, const EngineConfig& cfg, const std::vector<Request>& trace,
                                 double* waste) {
  auto e = Engine::create(m, be, cfg);
  if (!e) return e.take_error();
  for (const Request& r : trace) (*e)->submit(r, {});
  CapacitySide side;
  double weighted = 0, total_s = 0;
  int64_t alloc_sum = 0, used_sum = 0;
  while (!(*e)->idle()) {
    const auto t0 = std::chrono::steady_clock::now();
    PAGODA_TRY((*e)->step());
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (*e)->publish_snapshot();
    const auto s = (*e)->snapshot();
    weighted += double(s->running) * dt;  // the sequences this step ran, for as long as it took
    total_s += dt;
    side.peak_concurrent = std::max(side.peak_concurrent, s->running);
    for (const auto& r : s->requests)
      if (r.state != "waiting") used_sum += r.computed_tokens;
    alloc_sum += int64_t(s->blocks_in_use) * s->block_size;
  }
  (*e)->publish_snapshot();
  const auto& c = (*e)->snapshot()->counters;
  side.mean_concurrent = total_s > 0 ? weighted / total_s : 0;
  side.preemptions = c.preemptions;
  // Prefill run beyond each prompt once (prefix caching is off, so nothing was avoided).
  side.recomputed_tokens = c.computed_prefill_tokens - std::min(c.computed_prefill_tokens, c.prompt_tokens);
  side.completed = int32_t(c.requests_finished);
  side.generated_tokens = c.generated_tokens;
  side.wall_s = total_s;
  side.gen_tok_s = total_s > 0 ? double(c.generated_tokens) / total_s : 0;
  if (side.completed != int32_t(trace.size()))
    return make_error("capacity bench: " + std::to_string(side.completed) + " of " + std::to_string(trace.size()) + " requests finished");
  if (waste) *waste = alloc_sum > 0 ? double(alloc_sum - used_sum) / double(alloc_sum) : 0;
  return side;
}

// Contiguous slots of `slot_tokens` each in `kv_bytes`: the engine runs at most that many
// sequences at once, on a pool large enough that none is ever preempted (a reserved slot never
// runs out), which is exactly how a slot allocator serves the trace.
Result<CapacitySide> serve_contiguous(LoadedModel& m, Backend& be, uint64_t kv_bytes, uint64_t per_token, int32_t slot_tokens,
                                      const std::vector<Request>& trace) {
  const int32_t slots = int32_t(kv_bytes / (per_token * uint64_t(slot_tokens)));
  if (slots < 1) return make_error("capacity bench: the KV budget holds no slot of " + std::to_string(slot_tokens) + " tokens");
  EngineConfig cfg;
  cfg.prefix_caching = false;
  cfg.max_running = slots;
  cfg.max_waiting = int32_t(trace.size());
  cfg.kv_bytes = uint64_t(slots) * uint64_t(slot_tokens + 2 * cfg.block_size) * per_token;
  auto side = serve_trace(m, be, cfg, trace, nullptr);
  if (!side) return side.take_error();
  if (side->preemptions > 0) return make_error("capacity bench: the contiguous baseline preempted (slot pool too small)");
  side->slots = slots;
  side->slot_tokens = slot_tokens;
  return side;
}

}  // namespace

Result<CapacityResult> bench_capacity(LoadedModel& m, Backend& be, uint64_t kv_bytes, int32_t n_requests) {
  if (n_requests < 1) return make_error("capacity bench needs at least one request");
  CapacityResult res;
  res.kv_budget_bytes = kv_bytes;
  res.requests = n_requests;
  res.context = m.config.ctx_len;
  res.bytes_per_token = m.config.kv_bytes_per_token(uint32_t(row_bytes(EngineConfig{}.kv_dtype, 1)));
  const auto trace = capacity_trace(m.config, n_requests);
  for (const Request& r : trace)
    res.longest_request_tokens = std::max(res.longest_request_tokens, int32_t(r.prompt_tokens.size()) + r.max_tokens);
  if (res.longest_request_tokens > m.config.ctx_len)
    return make_error("capacity bench: requests of " + std::to_string(res.longest_request_tokens) +
                      " tokens exceed the model context of " + std::to_string(m.config.ctx_len));
  EngineConfig cfg;
  cfg.kv_bytes = kv_bytes;
  cfg.max_running = 1024;
  cfg.max_waiting = n_requests;
  cfg.prefix_caching = false;
  res.block_size = cfg.block_size;
  auto paged = serve_trace(m, be, cfg, trace, &res.waste);
  if (!paged) return paged.take_error();
  res.paged = *paged;
  auto fair = serve_contiguous(m, be, kv_bytes, res.bytes_per_token, res.longest_request_tokens, trace);
  if (!fair) return fair.take_error();
  res.fair = *fair;
  auto ctx = serve_contiguous(m, be, kv_bytes, res.bytes_per_token, m.config.ctx_len, trace);
  if (!ctx) return ctx.take_error();
  res.context_slots = *ctx;
  return res;
}

Result<std::vector<SpecPoint>> bench_spec(LoadedModel& target, LoadedModel* draft, Backend& be, const std::string& mode,
                                          const std::vector<int32_t>& ks, bool with_auto, int32_t gen_tokens, int repeats,
                                          std::shared_ptr<const grammar::Grammar> grammar) {
  auto reqs = std::vector<Request>{greedy("Once upon a time", gen_tokens), greedy("Lily and Ben went to the park", gen_tokens)};
  for (Request& r : reqs) r.grammar = grammar;
  auto measure = [&](const EngineConfig& cfg, SpecPoint& p, std::vector<std::vector<int32_t>>& toks) -> Status {
    std::vector<double> rates;
    for (int r = 0; r <= repeats; ++r) {
      auto e = Engine::create(target, be, cfg, draft);
      if (!e) return e.take_error();
      toks.clear();
      // One request at a time: speculation's benefit is per-stream latency.
      double secs = 0;
      uint64_t gen = 0;
      for (const auto& q : reqs) {
        BatchSummary s;
        auto o = run_requests(**e, {q}, true, &s);
        toks.push_back(o[0].tokens);
        secs += s.wall_s;
        gen += s.generated_tokens;
      }
      (*e)->publish_snapshot();
      const auto& c = (*e)->snapshot()->counters;
      p.acceptance = c.spec_proposed ? double(c.spec_accepted) / double(c.spec_proposed) : 0;
      p.mean_accept_len = c.spec_verify_steps ? mean_acceptance_length(c) : 1.0;  // per sequence verify step
      if (r > 0) rates.push_back(double(gen) / secs);
    }
    p.gen_tok_s = median(rates);
    return {};
  };
  std::vector<SpecPoint> out;
  std::vector<std::vector<int32_t>> base_toks, toks;
  SpecPoint off{"off"};
  PAGODA_TRY(measure(EngineConfig{}, off, base_toks));
  off.speedup = 1;
  out.push_back(off);
  std::vector<std::pair<std::string, EngineConfig>> cfgs;
  for (int32_t k : ks) {
    EngineConfig c;
    c.spec.mode = mode;
    c.spec.k = k;
    cfgs.push_back({"k=" + std::to_string(k), c});
  }
  if (with_auto) {
    EngineConfig c;
    c.spec.mode = mode;
    c.spec.adaptive = true;
    cfgs.push_back({"auto", c});
  }
  for (auto& [label, c] : cfgs) {
    SpecPoint p{label};
    PAGODA_TRY(measure(c, p, toks));
    p.speedup = off.gen_tok_s > 0 ? p.gen_tok_s / off.gen_tok_s : 0;
    p.identical = toks == base_toks;
    out.push_back(p);
  }
  return out;
}

}  // namespace pagoda
