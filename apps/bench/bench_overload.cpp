#include "apps/bench/bench_overload.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "apps/bench/bench.h"
#include "apps/bench/bench_mixed.h"

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

struct Pending {
  OverloadSample s;
  Request req;
  Clock::time_point scheduled;
  std::vector<Clock::time_point> tokens;
  bool finished = false;
};

int32_t draw_len(std::mt19937_64& rng, LenRange r) {
  return r.lo == r.hi ? r.lo : std::uniform_int_distribution<int32_t>(r.lo, r.hi)(rng);
}

// Final event -> the sample's outcome and latencies (from the scheduled arrival).
void finish(Pending& p, const TokenEvent& ev, Clock::time_point at, const OverloadConfig& cfg) {
  p.finished = true;
  OverloadSample& s = p.s;
  const bool ok = ev.reason == FinishReason::Length || ev.reason == FinishReason::Eos;
  if (ok) s.outcome = "completed";
  else if (!ev.error.empty()) s.outcome = ev.error.substr(0, ev.error.find(':'));  // "preemption_limit: ..." -> reason
  else s.outcome = finish_reason_name(ev.reason);
  s.generated = int32_t(p.tokens.size());
  s.preemptions = ev.metrics.preemptions;
  s.e2e_ms = ms_between(p.scheduled, at);
  if (!p.tokens.empty()) {
    s.ttft_ms = ms_between(p.scheduled, p.tokens.front());
    // Engine queue time plus any lag between the schedule and the submit.
    s.queue_ms = ev.metrics.queue_s * 1e3 + std::max(0.0, s.ttft_ms - ev.metrics.ttft_s * 1e3);
    s.mean_itl_ms = p.tokens.size() > 1 ? ms_between(p.tokens.front(), p.tokens.back()) / double(p.tokens.size() - 1) : 0;
  }
  s.met_slo = ok && s.ttft_ms >= 0 && s.ttft_ms <= cfg.slo_ttft_ms && s.mean_itl_ms <= cfg.slo_itl_ms;
}

// Submits `ps` at their scheduled times and steps the engine until every one has ended.
Status drive(Engine& eng, std::vector<Pending>& ps, const OverloadConfig& cfg) {
  size_t next = 0, done = 0;
  while (done < ps.size()) {
    const auto now = Clock::now();
    while (next < ps.size() && ps[next].scheduled <= now) {
      Pending& p = ps[next++];
      const SubmitResult r = eng.submit(p.req, [&p, &done, &cfg](const TokenEvent& ev) {
        const auto at = Clock::now();
        if (ev.token >= 0) p.tokens.push_back(at);
        if (ev.finished) {
          finish(p, ev, at, cfg);
          ++done;
        }
      });
      if (!r.ok()) {
        p.finished = true;
        p.s.outcome = r.reason();
        ++done;
      }
    }
    if (eng.idle()) {
      if (next < ps.size()) std::this_thread::sleep_until(ps[next].scheduled);
      continue;
    }
    PAGODA_TRY(eng.step());
  }
  return {};
}

}  // namespace

Status check_overload_config(const OverloadConfig& c, int32_t ctx_len) {
  auto positive = [](double x) { return x > 0 && std::isfinite(x); };
  if (!positive(c.burst_rate) || !positive(c.after_rate)) return make_error("--burst-rate and --after-rate must be > 0 requests per second");
  if (!positive(c.burst_s) || !positive(c.after_s)) return make_error("--burst-s and --after-s must be > 0 seconds");
  if (c.burst_rate * c.burst_s + c.after_rate * c.after_s > 1e6) return make_error("the trace would hold over a million requests");
  if (!positive(c.window_s)) return make_error("--window-s must be > 0 seconds");
  if (c.warmup < 0) return make_error("--warmup must be >= 0");
  if (!(c.slo_ttft_ms >= 0) || !(c.slo_itl_ms >= 0)) return make_error("SLO limits must be >= 0");
  if (c.prompt_len.lo < 1 || c.gen_len.lo < 1) return make_error("lengths must be >= 1");
  if (c.prompt_len.hi + c.gen_len.hi + 1 > ctx_len)
    return make_error("longest prompt + generated tokens (" + std::to_string(c.prompt_len.hi + c.gen_len.hi) +
                      ") exceed the model context of " + std::to_string(ctx_len));
  return {};
}

OverloadResult summarize_overload(const OverloadConfig& cfg, std::vector<OverloadSample> samples) {
  OverloadResult r;
  for (const char* name : {"warmup", "burst", "after"}) {
    OverloadPhase ph;
    ph.name = name;
    std::vector<double> ttft, e2e;
    double first = 1e300, last = -1e300;
    for (const auto& s : samples) {
      if (s.phase != name) continue;
      ++ph.arrivals;
      if (s.outcome == "completed") {
        ++ph.completed;
        ttft.push_back(s.ttft_ms);
        e2e.push_back(s.e2e_ms);
        first = std::min(first, s.arrival_s);
        last = std::max(last, s.arrival_s * 1e3 + s.e2e_ms);
      } else {
        ++ph.refused[s.outcome];
      }
      if (s.met_slo) ++ph.met_slo;
    }
    // Burst and after are judged over their scheduled length; the warm-up over its wall time.
    ph.duration_s = ph.name == "burst" ? cfg.burst_s : ph.name == "after" ? cfg.after_s : (last > 0 ? last / 1e3 - first : 0);
    if (ph.duration_s > 0) {
      ph.goodput_req_s = ph.met_slo / ph.duration_s;
      ph.throughput_req_s = ph.completed / ph.duration_s;
    }
    ph.ttft_p50_ms = percentile(ttft, 50);
    ph.ttft_p99_ms = percentile(ttft, 99);
    ph.e2e_p50_ms = percentile(e2e, 50);
    r.phases.push_back(ph);
  }
  // Windows of arrival time over the after phase.
  const int nw = std::max(1, int(std::ceil(cfg.after_s / cfg.window_s - 1e-9)));
  std::vector<std::vector<double>> ttft(static_cast<size_t>(nw));
  r.windows.resize(size_t(nw));
  for (int w = 0; w < nw; ++w) r.windows[size_t(w)].start_s = w * cfg.window_s;
  for (const auto& s : samples) {
    if (s.phase != "after") continue;
    const int w = std::clamp(int((s.arrival_s - cfg.burst_s) / cfg.window_s), 0, nw - 1);
    OverloadWindow& win = r.windows[size_t(w)];
    ++win.arrivals;
    if (s.outcome == "completed") {
      ++win.completed;
      ttft[size_t(w)].push_back(s.ttft_ms);
    } else {
      ++win.refused;
    }
  }
  for (int w = 0; w < nw; ++w) {
    OverloadWindow& win = r.windows[size_t(w)];
    win.ttft_p99_ms = percentile(ttft[size_t(w)], 99);
    win.ok = win.refused == 0 && win.ttft_p99_ms <= cfg.slo_ttft_ms;
  }
  // Recovered from the first window after which every window is within the SLO.
  for (int w = nw - 1; w >= 0 && r.windows[size_t(w)].ok; --w) r.recovery_s = r.windows[size_t(w)].start_s;
  r.samples = std::move(samples);
  return r;
}

Result<OverloadResult> bench_overload(LoadedModel& m, Backend& be, const OverloadConfig& cfg, const EngineConfig& ecfg) {
  PAGODA_TRY(check_overload_config(cfg, m.config.ctx_len));
  auto e = Engine::create(m, be, ecfg);
  if (!e) return e.take_error();
  Engine& eng = **e;
  std::mt19937_64 rng(cfg.seed);
  auto make = [&](const char* phase, double arrival_s) {
    Pending p;
    p.s.phase = phase;
    p.s.arrival_s = arrival_s;
    p.s.prompt_len = draw_len(rng, cfg.prompt_len);
    p.s.gen_len = draw_len(rng, cfg.gen_len);
    p.req = synthetic_request(rng, m.config.vocab, p.s.prompt_len, p.s.gen_len);
    return p;
  };
  // Warm-up: all at once on the cold engine (pipelines, weights and KV pages are touched here).
  std::vector<Pending> warm;
  for (int32_t i = 0; i < cfg.warmup; ++i) warm.push_back(make("warmup", 0));
  const auto w0 = Clock::now();
  for (auto& p : warm) p.scheduled = w0;
  PAGODA_TRY(drive(eng, warm, cfg));
  // The trace: Poisson arrivals at the burst rate, then at the after rate.
  std::vector<Pending> trace;
  std::exponential_distribution<double> burst_gap(cfg.burst_rate), after_gap(cfg.after_rate);
  for (double t = burst_gap(rng); t < cfg.burst_s; t += burst_gap(rng)) trace.push_back(make("burst", t));
  for (double t = cfg.burst_s + after_gap(rng); t < cfg.burst_s + cfg.after_s; t += after_gap(rng)) trace.push_back(make("after", t));
  const auto t0 = Clock::now();
  for (auto& p : trace)
    p.scheduled = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(p.s.arrival_s));
  PAGODA_TRY(drive(eng, trace, cfg));
  std::vector<OverloadSample> samples;
  for (auto& p : warm) samples.push_back(std::move(p.s));
  for (auto& p : trace) samples.push_back(std::move(p.s));
  OverloadResult r = summarize_overload(cfg, std::move(samples));
  r.max_waiting = ecfg.max_waiting;
  r.max_running = ecfg.max_running;
  return r;
}

}  // namespace pagoda
