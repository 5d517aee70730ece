// `pagoda bench mixed`: an open-loop Poisson arrival trace run through the real Engine
// (continuous batching) on the wall clock, with latency percentiles and goodput under an SLO.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/engine/engine.h"

namespace pagoda {

struct LenRange {
  int32_t lo = 0, hi = 0;  // inclusive
};
// "A:B" with 1 <= A <= B (or a single "N" meaning N:N); anything else is an error naming `what`.
Result<LenRange> parse_len_range(const std::string& s, const std::string& what);

// A benchmark request: `prompt_len` random ordinary token ids (prompts share nothing, so the prefix
// cache does not flatter TTFT), greedy, exactly `gen_len` tokens (EOS ignored).
Request synthetic_request(std::mt19937_64& rng, int32_t vocab, int32_t prompt_len, int32_t gen_len);

struct MixedTraceConfig {
  double rate = 4;          // mean arrivals per second (Poisson: exponential gaps)
  int32_t requests = 32;    // measured requests
  int32_t warmup = 2;       // requests run (and discarded) before the trace starts
  LenRange prompt_len{32, 256}, gen_len{16, 128};
  std::string len_dist = "uniform";  // uniform | lognormal (median sqrt(lo*hi), clamped to [lo, hi])
  uint64_t seed = 1;
  double slo_ttft_ms = 1000, slo_itl_ms = 100;
};

struct TraceRequest {
  double arrival_s = 0;  // offset from the trace start
  int32_t prompt_len = 0, gen_len = 0;
};
// The trace a config describes; identical for equal configs (only `seed` draws randomness).
Result<std::vector<TraceRequest>> make_trace(const MixedTraceConfig& cfg);

struct MixedPoint {
  double rate = 0;
  int32_t requests = 0, completed = 0, met_slo = 0;
  double duration_s = 0;  // first scheduled arrival to last final event
  uint64_t prompt_tokens = 0, generated_tokens = 0;
  double req_s = 0, gen_tok_s = 0, goodput_req_s = 0;
  // Milliseconds. TTFT and queue time count from the request's scheduled arrival, so any lag
  // between the schedule and the actual submit is charged to the request, not hidden.
  double ttft_p50_ms = 0, ttft_p99_ms = 0, itl_p50_ms = 0, itl_p99_ms = 0, queue_p50_ms = 0, e2e_p50_ms = 0;
};

// Runs one trace per rate in `rates` (same seed, so the same lengths and the same gap pattern
// scaled by 1/rate) on a fresh engine each. Requests are greedy and fixed-length (EOS ignored).
Result<std::vector<MixedPoint>> bench_mixed(LoadedModel& m, Backend& be, const MixedTraceConfig& cfg,
                                            const std::vector<double>& rates, const EngineConfig& ecfg = {});

}  // namespace pagoda
