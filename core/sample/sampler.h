// Token sampling: greedy, temperature, top-k, top-p, min-p and repetition penalty. The filtered
// distribution is materialized so speculative verification can compare target and draft exactly.
#pragma once
#include <cstdint>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "backends/backend.h"  // LogitAdjust, adjust_logit: the arithmetic the device ops share
#include "core/util/result.h"

namespace pagoda {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0 means greedy
  int32_t top_k = 40;        // <= 0 disables
  float top_p = 0.95f;       // >= 1 disables
  float min_p = 0.05f;       // <= 0 disables
  float repeat_penalty = 1.0f;
  int32_t repeat_last_n = 64;
  // OpenAI's penalties over the tokens generated so far (never the prompt): a token's logit drops
  // by frequency_penalty per occurrence plus presence_penalty once if it occurred at all.
  float presence_penalty = 0.0f;   // [-2, 2]
  float frequency_penalty = 0.0f;  // [-2, 2]
  // Added to a token's logit before everything else; -100 in practice bans it. Sorted by id.
  std::vector<std::pair<int32_t, float>> logit_bias = {};
  uint64_t seed = 0;

  bool greedy() const { return temperature <= 0.0f; }
  Status validate() const;
};

// Logits after the repetition penalty over the last repeat_last_n tokens of `history`.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p);

// Every logit adjustment in order: logit_bias, the repetition penalty (over the last
// repeat_last_n tokens of `history`), then the presence and frequency penalties over the last
// `generated` tokens of `history` (the ones the model produced; the rest is prompt).
void apply_penalties(std::span<float> logits, std::span<const int32_t> history, size_t generated,
                     const SamplingParams& p);
// The same adjustments as a list, one LogitAdjust per affected token in [0, vocab) (sorted by
// token, each with `row`), appended to `out`. apply_penalties applies exactly this list with
// adjust_logit, and the device decoder uploads it for Backend::adjust_logits: one builder, one
// arithmetic, so host and device penalize to the same bits.
void append_logit_adjustments(std::span<const int32_t> history, size_t generated, const SamplingParams& p,
                              int32_t vocab, int32_t row, std::vector<LogitAdjust>& out);
bool has_penalties(const SamplingParams& p);

// The distribution the sampler draws from: a dense probability vector (zeros where filtered),
// normalized. Under greedy it is one-hot at the argmax (first index on ties).
// `generated`: how many of the last history tokens the model produced (the presence/frequency
// penalties count only those); by default all of them.
std::vector<float> sampling_distribution(std::span<const float> logits, std::span<const int32_t> history,
                                         const SamplingParams& p, size_t generated = SIZE_MAX);

// Inverse-CDF draw from a normalized (or unnormalized) non-negative vector with uniform u in [0,1).
int32_t draw_from(std::span<const float> probs, float u);

int32_t argmax(std::span<const float> logits);

// How many top-p boundaries this thread has found through the bucket window a sample of the row
// places (the fast path for near-uniform rows), rather than a histogram of the whole row: tests
// check that path runs.
uint64_t top_p_window_boundaries();

// Log-probabilities a client asks for (OpenAI `logprobs`): the log-softmax of the raw logits
// divided by the temperature (1 under greedy), before penalties, logit_bias, top-k/top-p/min-p and
// any grammar mask, so they describe the model rather than the request's filters (a grammar-forced
// token still shows how much the model wanted it). `chosen` gets its own value and `top` the
// `top_n` most likely tokens, most likely first (lower id first on ties).
struct TokenLogprobs {
  float chosen = 0;
  std::vector<std::pair<int32_t, float>> top = {};
};
TokenLogprobs token_logprobs(std::span<const float> logits, float temperature, int32_t chosen, int32_t top_n);

// Draws token number `index` of a request: uniform from Philox(seed, index).
int32_t sample_token(std::span<const float> logits, std::span<const int32_t> history, const SamplingParams& p,
                     uint64_t index, size_t generated = SIZE_MAX);
// The same token from a row the caller lets the sampler write: the penalties are applied to the
// row itself and undone before returning (the row is bit-identical again), instead of a copy of
// the whole row first (a 128 KiB copy per token at a 32k vocabulary).
int32_t sample_token_in_place(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p,
                              uint64_t index, size_t generated = SIZE_MAX);

}  // namespace pagoda
