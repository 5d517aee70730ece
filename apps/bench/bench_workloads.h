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

// KV capacity as served work, not as admissions: the same closed trace (every request queued at
// the start, fixed prompt and generated lengths, EOS ignored) runs to completion on a paged pool
// of `kv_bytes`, and on contiguous slots carved from the same bytes, once with slots sized to the
// longest request of the trace (the fair baseline) and once to the model context.
struct CapacitySide {
  int32_t slots = 0;         // contiguous: sequences the budget holds; paged: 0 (blocks instead)
  int32_t slot_tokens = 0;   // contiguous: tokens reserved per sequence
  double mean_concurrent = 0;  // running sequences, averaged over the wall time of the run
  int32_t peak_concurrent = 0;
  uint64_t preemptions = 0;
  uint64_t recomputed_tokens = 0;  // prefill work redone after preemption
  int32_t completed = 0;
  uint64_t generated_tokens = 0;
  double wall_s = 0, gen_tok_s = 0;
};
struct CapacityResult {
  uint64_t kv_budget_bytes = 0, bytes_per_token = 0;
  int32_t requests = 0, block_size = 0, longest_request_tokens = 0, context = 0;
  CapacitySide paged, fair, context_slots;
  double waste = 0;  // paged: allocated-but-unused slots / allocated, averaged over the steps
  // Time-averaged concurrency of the paged pool over that of each contiguous baseline.
  double ratio_fair() const { return fair.mean_concurrent > 0 ? paged.mean_concurrent / fair.mean_concurrent : 0; }
  double ratio_context() const {
    return context_slots.mean_concurrent > 0 ? paged.mean_concurrent / context_slots.mean_concurrent : 0;
  }
};
// The trace: prompts of 8..64 token ids and 128..511 generated tokens, varied per request.
Result<CapacityResult> bench_capacity(LoadedModel& m, Backend& be, uint64_t kv_bytes, int32_t n_requests);

struct SpecPoint {
  std::string label;  // "off", "k=1".."k=8", "auto"
  double gen_tok_s = 0, speedup = 0, mean_accept_len = 0, acceptance = 0;
  bool identical = true;  // greedy tokens equal the no-speculation run
};
// `grammar`: every request is generated under it (structured output; greedy requests then end when
// the document is complete, so fewer than gen_tokens may be generated).
Result<std::vector<SpecPoint>> bench_spec(LoadedModel& target, LoadedModel* draft, Backend& be, const std::string& mode,
                                          const std::vector<int32_t>& ks, bool with_auto, int32_t gen_tokens, int repeats,
                                          std::shared_ptr<const grammar::Grammar> grammar = nullptr);

}  // namespace pagoda
