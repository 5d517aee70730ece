// Scoring a fixed token sequence: every position's logits in one batch (parity checks against
// another engine), a greedy continuation, and perplexity over a text in llama.cpp's windowing.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/kv/kv_cache.h"
#include "core/model/model_runner.h"

namespace pagoda {

struct EvalResult {
  std::vector<float> logits;          // n_tokens x vocab, row i = distribution after token i
  std::vector<int32_t> greedy;        // argmax continuation (lowest id on ties), each fed back alone
  std::vector<float> greedy_margins;  // top-1 minus top-2 logit at each greedy step
};

// Runs `tokens` (positions 0..n-1, one sequence, nothing added) as one batch, then `greedy_n`
// greedy steps of one token each. The KV blocks are returned to `kv` however it ends.
Result<EvalResult> evaluate_tokens(ModelRunner& runner, KvCache& kv, const std::vector<int32_t>& tokens,
                                   int32_t greedy_n);

struct PerplexityResult {
  double perplexity = 0;     // exp(mean negative log-likelihood over the scored tokens)
  double mean_nll = 0;
  int64_t scored_tokens = 0;
  int32_t windows = 0;
  int32_t ctx = 0;
  int64_t text_tokens = 0;
};

// Non-overlapping windows of `ctx` tokens (the text's tokens, BOS first); each window's first
// token is replaced by `bos` when bos >= 0, and tokens ctx/2+1 .. ctx-1 of it are scored from the
// logits before them (the first half only gives context), as llama.cpp's perplexity tool does.
// progress(window_done, windows) after each window.
Result<PerplexityResult> perplexity(ModelRunner& runner, KvCache& kv, const std::vector<int32_t>& tokens, int32_t ctx,
                                    int32_t bos, const std::function<void(int32_t, int32_t)>& progress = {});

}  // namespace pagoda
