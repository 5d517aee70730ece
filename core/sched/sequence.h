// Sequence: one request's state as the scheduler and engine see it — its tokens, how many have
// K/V in the cache, its blocks, its keys, and the timestamps every latency metric comes from.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/grammar/matcher.h"
#include "core/kv/kv_cache.h"
#include "core/prefix/cache_identity.h"
#include "core/sample/sampler.h"

namespace pagoda {

using SteadyTime = std::chrono::steady_clock::time_point;

enum class FinishReason : uint8_t { None, Length, Eos, Cancelled, DeadlineExceeded, Rejected, Error };
const char* finish_reason_name(FinishReason r);

enum class SeqState : uint8_t { Waiting, Running, Finished };

// Where one request's wall time went, in seconds. The stages partition arrival -> final event:
// normalize (validating and tokenizing, server-side tokenizing included when the caller passed
// Request::received), queue (not part of a step's plan: waiting, preempted, between steps), then for
// every step the request is planned in, that step's schedule, draft, decode (forward pass), verify,
// emit and postprocess time (a batched request waits for the whole step). They sum to e2e_s.
struct RequestStages {
  double normalize = 0, queue = 0, schedule = 0, draft = 0, decode = 0, verify = 0, emit = 0, postprocess = 0;
  double sum() const { return normalize + queue + schedule + draft + decode + verify + emit + postprocess; }
};

struct RequestMetrics {
  int32_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0, preemptions = 0;
  double queue_s = 0, ttft_s = 0, e2e_s = 0, mean_itl_s = 0;
  uint64_t spec_proposed = 0, spec_accepted = 0, spec_steps = 0;
  std::string trace_id = {};  // the request's W3C trace id (Request::trace_id), so its stage times correlate
  RequestStages stages = {};
};

struct TokenEvent {
  uint64_t request_id = 0;
  int32_t token = -1;        // -1 on the final event when no token comes with it
  std::string text;          // detokenized piece, UTF-8 safe
  // Requested with Request::logprobs >= 0 (see token_logprobs in core/sample/sampler.h): the
  // token's log-probability and the Request::logprobs most likely (token, log-probability) pairs.
  bool has_logprobs = false;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top_logprobs;
  bool finished = false;
  FinishReason reason = FinishReason::None;
  std::string error;
  RequestMetrics metrics;    // filled on the final event
};
using TokenCallback = std::function<void(const TokenEvent&)>;

struct Sequence {
  uint64_t id = 0;
  std::string tenant;
  std::string trace_id = {};  // Request::trace_id
  int32_t priority = 0;
  int32_t max_tokens = 0;
  bool stop_at_eos = true;
  SamplingParams sampling;
  int32_t logprobs = -1;  // -1: none; else the number of top alternatives each token reports
  // Structured output: the request's grammar position (advanced as tokens are emitted) and the
  // engine's vocabulary view; null when unconstrained. Drafters and the verifier mask with it.
  std::unique_ptr<grammar::GrammarMatcher> grammar;
  const grammar::TokenVocab* vocab = nullptr;
  std::shared_ptr<const grammar::Grammar> grammar_src;  // set at submit; the matcher is made on the engine thread
  SteadyTime arrival, deadline = SteadyTime::max();
  TokenCallback callback;

  std::vector<int32_t> tokens;  // prompt + generated
  int32_t prompt_len = 0;
  int32_t public_len = 0;       // leading tokens inside a declared public prefix
  int32_t n_computed = 0;       // tokens whose K/V is in the cache
  BlockTable table;
  std::vector<BlockKey> keys;   // keys of full blocks, computed as blocks fill
  int32_t n_keyed = 0;          // leading blocks already offered to the prefix index
  SeqState state = SeqState::Waiting;
  bool cancelled = false;
  bool planned = false;         // part of the step being planned (not a preemption victim)
  FinishReason finish_reason = FinishReason::None;
  std::string error;
  bool admitted_once = false;
  uint64_t prefill_from = 0;    // Request::prefill_from: fork this request's prompt blocks at admission

  // Draft tokens planned for verification this step. Written only by the scheduler: schedule()
  // takes the drafter's proposal (cut to the step's budget and the blocks it can get) and
  // postprocess() / preemption clear it.
  std::vector<int32_t> draft;
  int32_t spec_k = 0;          // the draft length asked of the drafter (telemetry)
  SteadyTime stage_mark{};     // end of the last interval charged to metrics.stages

  RequestMetrics metrics;
  SteadyTime first_scheduled{}, first_token{}, last_token{};
  double itl_sum = 0;
  std::vector<int32_t> accept_hist;  // per verify step: tokens emitted

  int32_t generated() const { return int32_t(tokens.size()) - prompt_len; }
  bool prefilling() const { return n_computed < int32_t(tokens.size()) - 1; }
};

}  // namespace pagoda
