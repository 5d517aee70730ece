#include "core/model/evaluate.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace pagoda {
namespace {

// The blocks of the one sequence being scored, given back to the pool however scoring ends.
struct ScopedBlocks {
  KvCache& kv;
  BlockTable table;
  ~ScopedBlocks() { kv.release(table); }
  Status reserve(int32_t n_tokens) { return kv.grow(table, n_tokens); }
};

Status check_tokens(const ModelConfig& cfg, const std::vector<int32_t>& tokens, int32_t extra) {
  if (tokens.empty()) return make_error("no tokens to evaluate");
  if (int64_t(tokens.size()) + extra > cfg.ctx_len)
    return make_error(std::to_string(tokens.size() + size_t(extra)) + " positions do not fit the model's context of " +
                      std::to_string(cfg.ctx_len));
  for (int32_t t : tokens)
    if (t < 0 || t >= cfg.vocab)
      return make_error("token id " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(cfg.vocab) + ")");
  return {};
}

}  // namespace

Result<EvalResult> evaluate_tokens(ModelRunner& runner, KvCache& kv, const std::vector<int32_t>& tokens,
                                   int32_t greedy_n) {
  const ModelConfig& cfg = runner.config();
  PAGODA_TRY(check_tokens(cfg, tokens, std::max(0, greedy_n - 1)));
  ScopedBlocks seq{kv, {}};
  const int32_t n = int32_t(tokens.size());
  PAGODA_TRY(seq.reserve(n));
  ForwardBatch b;
  b.add_sequence(tokens.data(), n, 0, seq.table, kv.block_size(), 2);
  EvalResult r;
  PAGODA_TRY(runner.forward(b, kv, &r.logits));
  std::vector<float> last(r.logits.end() - cfg.vocab, r.logits.end());
  for (int32_t i = 0; i < greedy_n; ++i) {
    // Lowest id on ties, as the reference engine's argmax.
    int32_t best = 0;
    for (int32_t v = 1; v < cfg.vocab; ++v)
      if (last[size_t(v)] > last[size_t(best)]) best = v;
    float second = -INFINITY;
    for (int32_t v = 0; v < cfg.vocab; ++v)
      if (v != best) second = std::max(second, last[size_t(v)]);
    r.greedy.push_back(best);
    r.greedy_margins.push_back(last[size_t(best)] - second);
    if (i + 1 == greedy_n) break;
    const int32_t pos = n + i;
    PAGODA_TRY(seq.reserve(pos + 1));
    ForwardBatch step;
    step.add_sequence(&best, 1, pos, seq.table, kv.block_size(), 1);
    PAGODA_TRY(runner.forward(step, kv, &last));
  }
  return r;
}

Result<PerplexityResult> perplexity(ModelRunner& runner, KvCache& kv, const std::vector<int32_t>& tokens, int32_t ctx,
                                    int32_t bos, const std::function<void(int32_t, int32_t)>& progress) {
  const ModelConfig& cfg = runner.config();
  if (ctx < 4) return make_error("--ctx must be at least 4 tokens");
  if (ctx > cfg.ctx_len)
    return make_error("--ctx " + std::to_string(ctx) + " exceeds the model's context of " + std::to_string(cfg.ctx_len));
  PerplexityResult r;
  r.ctx = ctx;
  r.text_tokens = int64_t(tokens.size());
  r.windows = int32_t(tokens.size() / size_t(ctx));
  if (r.windows == 0)
    return make_error("the text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of --ctx " +
                      std::to_string(ctx));
  const int32_t first = ctx / 2;
  double nll = 0;
  std::vector<float> logits;
  for (int32_t w = 0; w < r.windows; ++w) {
    std::vector<int32_t> win(tokens.begin() + int64_t(w) * ctx, tokens.begin() + int64_t(w + 1) * ctx);
    if (bos >= 0) win[0] = bos;
    PAGODA_TRY(check_tokens(cfg, win, 0));
    ScopedBlocks seq{kv, {}};
    PAGODA_TRY(seq.reserve(ctx));
    ForwardBatch b;
    b.add_sequence(win.data(), ctx, 0, seq.table, kv.block_size(), 0);
    for (int32_t j = first; j < ctx - 1; ++j) b.logit_rows.push_back(j);
    PAGODA_TRY(runner.forward(b, kv, &logits));
    for (int32_t j = first; j < ctx - 1; ++j) {
      const float* row = logits.data() + size_t(j - first) * size_t(cfg.vocab);
      const float mx = *std::max_element(row, row + cfg.vocab);
      double sum = 0;
      for (int32_t v = 0; v < cfg.vocab; ++v) sum += std::exp(double(row[v]) - mx);
      nll += std::log(sum) + mx - double(row[win[size_t(j + 1)]]);
      ++r.scored_tokens;
    }
    if (progress) progress(w + 1, r.windows);
  }
  r.mean_nll = nll / double(r.scored_tokens);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace pagoda
