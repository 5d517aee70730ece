// `pagoda bench overload`: overload and recovery as a benchmark regime. The engine keeps its real
// queue bound (max_waiting); Poisson arrivals run past saturation for a burst, then drop to a
// sustainable rate. Reported per phase (warm-up, burst, after): arrivals, completions, rejections
// and failures by reason, goodput (requests meeting the SLO per second) and latency; plus the
// recovery time, from the end of the burst until TTFT p99 is back under the SLO with nothing
// refused, judged in windows of arrival time. Every request's raw sample is kept for --json.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "apps/bench/bench_mixed.h"
#include "core/engine/engine.h"

namespace pagoda {

struct OverloadConfig {
  double burst_rate = 200, burst_s = 2;  // arrivals per second during the burst, and its length
  double after_rate = 20, after_s = 6;   // the sustainable rate afterwards, and how long it is watched
  int32_t warmup = 4;                    // run first, all at once; reported as their own row
  LenRange prompt_len{16, 64}, gen_len{16, 32};
  uint64_t seed = 1;
  double slo_ttft_ms = 500, slo_itl_ms = 100;
  double window_s = 0.5;                 // recovery is judged per window of arrival time
};

struct OverloadSample {
  std::string phase;          // warmup, burst, after
  double arrival_s = 0;       // scheduled, from the trace start (warm-up: 0)
  int32_t prompt_len = 0, gen_len = 0;
  std::string outcome;        // completed, or the rejection / failure reason (queue_full, preemption_limit, ...)
  double ttft_ms = -1, e2e_ms = -1, queue_ms = -1, mean_itl_ms = -1;  // from the scheduled arrival; -1: none
  int32_t generated = 0, preemptions = 0;
  bool met_slo = false;
};

struct OverloadPhase {
  std::string name;
  double duration_s = 0;
  int32_t arrivals = 0, completed = 0, met_slo = 0;
  std::map<std::string, int32_t> refused;  // reason -> requests rejected at submit or failed later
  double goodput_req_s = 0, throughput_req_s = 0;
  double ttft_p50_ms = 0, ttft_p99_ms = 0, e2e_p50_ms = 0;
};

struct OverloadWindow {
  double start_s = 0;  // from the end of the burst
  int32_t arrivals = 0, completed = 0, refused = 0;
  double ttft_p99_ms = 0;
  bool ok = false;     // nothing refused and TTFT p99 within the SLO
};

struct OverloadResult {
  int32_t max_waiting = 0, max_running = 0;
  std::vector<OverloadPhase> phases;   // warmup, burst, after
  std::vector<OverloadWindow> windows; // over the after phase
  double recovery_s = -1;              // -1: TTFT p99 never came back under the SLO for good
  std::vector<OverloadSample> samples;
};

// Validates the configuration (rates, lengths, SLO, window) without running anything.
Status check_overload_config(const OverloadConfig& c, int32_t ctx_len);
// Runs warm-up, burst and after on a fresh engine stepped by this thread on the wall clock.
// `ecfg.max_waiting` is the queue bound the run keeps.
Result<OverloadResult> bench_overload(LoadedModel& m, Backend& be, const OverloadConfig& cfg, const EngineConfig& ecfg);

// Phase rows, windows and recovery from raw samples (exposed for tests).
OverloadResult summarize_overload(const OverloadConfig& cfg, std::vector<OverloadSample> samples);

}  // namespace pagoda
