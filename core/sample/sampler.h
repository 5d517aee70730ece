// Token sampling: greedy, temperature, top-k, top-p, min-p and repetition penalty. The filtered
// distribution is materialized so speculative verification can compare target and draft exactly.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/util/result.h"

namespace pagoda {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0 means greedy
  int32_t top_k = 40;        // <= 0 disables
  float top_p = 0.95f;       // >= 1 disables
  float min_p = 0.05f;       // <= 0 disables
  float repeat_penalty = 1.0f;
  int32_t repeat_last_n = 64;
  uint64_t seed = 0;

  bool greedy() const { return temperature <= 0.0f; }
  Status validate() const;
};

// Logits after the repetition penalty over the last repeat_last_n tokens of `history`.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, const SamplingParams& p);

// The distribution the sampler draws from: a dense probability vector (zeros where filtered),
// normalized. Under greedy it is one-hot at the argmax (first index on ties).
std::vector<float> sampling_distribution(std::span<const float> logits, std::span<const int32_t> history,
                                         const SamplingParams& p);

// Inverse-CDF draw from a normalized (or unnormalized) non-negative vector with uniform u in [0,1).
int32_t draw_from(std::span<const float> probs, float u);

int32_t argmax(std::span<const float> logits);

// Draws token number `index` of a request: uniform from Philox(seed, index).
int32_t sample_token(std::span<const float> logits, std::span<const int32_t> history, const SamplingParams& p,
                     uint64_t index);

}  // namespace pagoda
