// The engine-level workloads of `pagoda bench`: batched decode throughput, prefix-cache TTFT,
// KV capacity vs contiguous slots, and speculation sweeps. Each returns plain numbers; the CLI
// prints them with the experiment envelope and writes --json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine/engine.h"

namespace pagoda {

struct BatchPoint {
  int32_t streams = 0;
  double gen_tok_s = 0;     // generated tokens / wall time, median over repeats
  double speedup_vs_1 = 0;
};
Result<std::vector<BatchPoint>> bench_batch(LoadedModel& m, Backend& be, const std::vector<int32_t>& streams,
                                            int32_t gen_tokens, int repeats);

struct PrefixResult {
  int32_t prompt_tokens = 0, cached_tokens = 0;
  double cold_ttft_ms = 0, warm_ttft_ms = 0, ratio = 0;  // medians
  uint64_t avoided_prefill_tokens = 0;  // as the engine counted them
};
Result<PrefixResult> bench_prefix(LoadedModel& m, Backend& be, int32_t prompt_tokens, double cached_fraction, int repeats);

// Multi-turn chat growth: a conversation of `turns` turns, each sending the whole history (system
// prompt, earlier user messages and the model's own greedy replies) plus a new user message, with
// the prefix cache on and off. TTFT per turn, medians over repeats (a fresh engine per repeat).
struct ChatTurn {
  int32_t turn = 0, prompt_tokens = 0, cached_tokens = 0;  // cached: with the cache on
  double ttft_on_ms = 0, ttft_off_ms = 0;
};
struct ChatTurnsOptions {
  int32_t turns = 6, system_tokens = 64, user_tokens = 32, reply_tokens = 32;
};
Result<std::vector<ChatTurn>> bench_chat_turns(LoadedModel& m, Backend& be, const ChatTurnsOptions& o, int repeats);

struct CapacityResult {
  uint64_t kv_budget_bytes = 0;
  int32_t contiguous_slots = 0;   // budget / (context x bytes per token)
  int32_t peak_concurrent = 0;    // sequences running at once in the paged pool
  double ratio = 0;
  double waste = 0;               // allocated-but-unused slots / allocated, averaged over the run
};
Result<CapacityResult> bench_capacity(LoadedModel& m, Backend& be, uint64_t kv_bytes, int32_t n_requests);

struct SpecPoint {
  std::string label;  // "off", "k=1".."k=8", "auto"
  double gen_tok_s = 0, speedup = 0, mean_accept_len = 0, acceptance = 0;
  bool identical = true;  // greedy tokens equal the no-speculation run
};
Result<std::vector<SpecPoint>> bench_spec(LoadedModel& target, LoadedModel* draft, Backend& be, const std::string& mode,
                                          const std::vector<int32_t>& ks, bool with_auto, int32_t gen_tokens, int repeats);

}  // namespace pagoda
