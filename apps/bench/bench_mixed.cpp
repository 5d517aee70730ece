#include "apps/bench/bench_mixed.h"

#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "apps/bench/batch_run.h"
#include "apps/bench/bench.h"

namespace pagoda {

Result<LenRange> parse_len_range(const std::string& s, const std::string& what) {
  const auto bad = [&] { return make_error(what + " must be A:B with 1 <= A <= B (got '" + s + "')"); };
  const size_t colon = s.find(':');
  LenRange r;
  try {
    size_t used = 0;
    const std::string a = s.substr(0, colon);
    r.lo = std::stoi(a, &used);
    if (used != a.size()) return bad();
    r.hi = r.lo;
    if (colon != std::string::npos) {
      const std::string b = s.substr(colon + 1);
      r.hi = std::stoi(b, &used);
      if (used != b.size()) return bad();
    }
  } catch (...) {
    return bad();
  }
  if (r.lo < 1 || r.hi < r.lo) return bad();
  return r;
}

Result<std::vector<TraceRequest>> make_trace(const MixedTraceConfig& cfg) {
  if (!(cfg.rate > 0) || !std::isfinite(cfg.rate)) return make_error("--rate must be > 0 requests per second");
  if (cfg.requests < 1) return make_error("--requests must be >= 1");
  if (cfg.len_dist != "uniform" && cfg.len_dist != "lognormal")
    return make_error("--len-dist must be uniform or lognormal (got '" + cfg.len_dist + "')");
  std::mt19937_64 rng(cfg.seed);
  std::exponential_distribution<double> gap(cfg.rate);
  auto draw = [&](LenRange r) -> int32_t {
    if (r.lo == r.hi) return r.lo;
    if (cfg.len_dist == "uniform") return std::uniform_int_distribution<int32_t>(r.lo, r.hi)(rng);
    // Median at the geometric middle; the range spans +-2 sigma.
    const double mu = 0.5 * (std::log(r.lo) + std::log(r.hi)), sigma = (std::log(r.hi) - std::log(r.lo)) / 4;
    const double x = std::lognormal_distribution<double>(mu, sigma)(rng);
    return int32_t(std::clamp(std::lround(x), long(r.lo), long(r.hi)));
  };
  std::vector<TraceRequest> v(size_t(cfg.requests));
  double t = 0;
  for (auto& r : v) {
    t += gap(rng);
    r.arrival_s = t;
    r.prompt_len = draw(cfg.prompt_len);
    r.gen_len = draw(cfg.gen_len);
  }
  return v;
}

Request synthetic_request(std::mt19937_64& rng, int32_t vocab, int32_t prompt_len, int32_t gen_len) {
  Request q;
  q.prompt_tokens.resize(size_t(prompt_len));
  // Random ordinary token ids: prompts share nothing, so the prefix cache does not flatter TTFT.
  for (auto& t : q.prompt_tokens) t = std::uniform_int_distribution<int32_t>(3, std::max(3, vocab - 1))(rng);
  q.max_tokens = gen_len;
  q.sampling.temperature = 0;
  q.stop_at_eos = false;  // exactly gen_len tokens
  return q;
}

namespace {

using Clock = std::chrono::steady_clock;


struct Track {
  Clock::time_point scheduled;
  std::vector<Clock::time_point> token_times;
  bool finished = false, completed = false;
  Clock::time_point end;
  RequestMetrics metrics;
};

}  // namespace

Result<std::vector<MixedPoint>> bench_mixed(LoadedModel& m, Backend& be, const MixedTraceConfig& cfg,
                                            const std::vector<double>& rates, const EngineConfig& ecfg) {
  if (rates.empty()) return make_error("--rate needs at least one value");
  if (cfg.prompt_len.hi + cfg.gen_len.hi + 1 > m.config.ctx_len)
    return make_error("longest prompt + generated tokens (" + std::to_string(cfg.prompt_len.hi + cfg.gen_len.hi) +
                      ") exceed the model context of " + std::to_string(m.config.ctx_len));
  if (!(cfg.slo_ttft_ms >= 0) || !(cfg.slo_itl_ms >= 0)) return make_error("SLO limits must be >= 0");
  std::vector<MixedPoint> out;
  for (double rate : rates) {
    MixedTraceConfig c = cfg;
    c.rate = rate;
    auto trace = make_trace(c);
    if (!trace) return trace.take_error();
    EngineConfig ec = ecfg;
    ec.max_waiting = std::max(ec.max_waiting, cfg.requests + cfg.warmup);
    auto e = Engine::create(m, be, ec);
    if (!e) return e.take_error();
    Engine& eng = **e;
    std::mt19937_64 rng(cfg.seed ^ 0x5eedull);
    if (cfg.warmup > 0) {  // builds pipelines, touches weights and KV pages; not measured
      std::vector<Request> w;
      for (int32_t i = 0; i < cfg.warmup; ++i) w.push_back(synthetic_request(rng, m.config.vocab, cfg.prompt_len.lo, cfg.gen_len.lo));
      run_requests(eng, w, true);
    }
    std::vector<Request> reqs;
    for (const auto& t : *trace) reqs.push_back(synthetic_request(rng, m.config.vocab, t.prompt_len, t.gen_len));
    const size_t n = reqs.size();
    std::vector<Track> tracks(n);
    size_t next = 0, finished = 0;
    const Clock::time_point t0 = Clock::now();
    for (size_t i = 0; i < n; ++i)
      tracks[i].scheduled = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>((*trace)[i].arrival_s));
    while (finished < n) {
      const auto now = Clock::now();
      while (next < n && tracks[next].scheduled <= now) {
        const size_t i = next++;
        auto r = eng.submit(reqs[i], [&tracks, &finished, i](const TokenEvent& ev) {
          Track& tr = tracks[i];
          const auto at = Clock::now();
          if (ev.token >= 0) tr.token_times.push_back(at);
          if (ev.finished) {
            tr.finished = true;
            tr.completed = ev.reason == FinishReason::Length || ev.reason == FinishReason::Eos;
            tr.end = at;
            tr.metrics = ev.metrics;
            ++finished;
          }
        });
        if (!r.ok()) {
          tracks[i].finished = true;
          tracks[i].end = now;
          ++finished;
        }
      }
      if (eng.idle()) {
        if (next < n) std::this_thread::sleep_until(tracks[next].scheduled);
        continue;
      }
      PAGODA_TRY(eng.step());
    }
    MixedPoint p;
    p.rate = rate;
    p.requests = int32_t(n);
    std::vector<double> ttft, itl, queue, e2e;
    Clock::time_point last = tracks.front().scheduled;
    for (const auto& tr : tracks) {
      last = std::max(last, tr.end);
      if (!tr.completed || tr.token_times.empty()) continue;
      ++p.completed;
      p.prompt_tokens += uint64_t(tr.metrics.prompt_tokens);
      p.generated_tokens += tr.token_times.size();
      const auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
      const double t_first = ms(tr.token_times.front() - tr.scheduled);
      ttft.push_back(t_first);
      e2e.push_back(ms(tr.end - tr.scheduled));
      // Queue time as the engine measured it (submit to first schedule) plus any submit lag.
      const double lag_ms = std::max(0.0, t_first - tr.metrics.ttft_s * 1e3);
      queue.push_back(tr.metrics.queue_s * 1e3 + lag_ms);
      double gaps = 0;
      for (size_t k = 1; k < tr.token_times.size(); ++k) {
        const double g = ms(tr.token_times[k] - tr.token_times[k - 1]);
        itl.push_back(g);
        gaps += g;
      }
      // SLO: TTFT within the limit and mean inter-token gap (time per output token) within its.
      const double tpot = tr.token_times.size() > 1 ? gaps / double(tr.token_times.size() - 1) : 0;
      if (t_first <= cfg.slo_ttft_ms && tpot <= cfg.slo_itl_ms) ++p.met_slo;
    }
    p.duration_s = std::chrono::duration<double>(last - tracks.front().scheduled).count();
    if (p.duration_s > 0) {
      p.req_s = p.completed / p.duration_s;
      p.gen_tok_s = double(p.generated_tokens) / p.duration_s;
      p.goodput_req_s = p.met_slo / p.duration_s;
    }
    p.ttft_p50_ms = percentile(ttft, 50);
    p.ttft_p99_ms = percentile(ttft, 99);
    p.itl_p50_ms = percentile(itl, 50);
    p.itl_p99_ms = percentile(itl, 99);
    p.queue_p50_ms = percentile(queue, 50);
    p.e2e_p50_ms = percentile(e2e, 50);
    out.push_back(p);
  }
  return out;
}

}  // namespace pagoda
