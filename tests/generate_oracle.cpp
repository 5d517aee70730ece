#include "tests/generate_oracle.h"

#include <algorithm>
#include <chrono>

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Owns the blocks of one sequence and gives them back however generation ends.
struct SequenceBlocks {
  KvCache& kv;
  BlockTable table;
  ~SequenceBlocks() { kv.release(table); }
  Status reserve(int32_t n_tokens) { return kv.grow(table, n_tokens); }
};

}  // namespace

Result<GenerateStats> generate(ModelRunner& runner, KvCache& kv, const std::vector<int32_t>& prompt,
                               const GenerateOptions& opt, std::vector<int32_t>& out,
                               const std::function<bool(int32_t)>& on_token) {
  const ModelConfig& cfg = runner.config();
  if (prompt.empty()) return make_error("empty prompt: at least one token is needed");
  if (int64_t(prompt.size()) >= cfg.ctx_len)
    return make_error("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the model's context of " +
                      std::to_string(cfg.ctx_len));
  for (int32_t t : prompt)
    if (t < 0 || t >= cfg.vocab) return make_error("token id " + std::to_string(t) + " is outside the vocabulary");
  PAGODA_TRY(opt.sampling.validate());

  GenerateStats st;
  st.prompt_tokens = int32_t(prompt.size());
  const int32_t limit = std::min<int32_t>(opt.max_new_tokens, cfg.ctx_len - int32_t(prompt.size()));
  SequenceBlocks seq{kv, {}};
  std::vector<int32_t> history = prompt;
  std::vector<float> logits;
  const auto t0 = Clock::now();

  // Prefill in chunks; only the last chunk's last row needs logits.
  const int32_t chunk = std::max(1, opt.prefill_chunk);
  for (int32_t start = 0; start < int32_t(prompt.size()); start += chunk) {
    const int32_t n = std::min<int32_t>(chunk, int32_t(prompt.size()) - start);
    PAGODA_TRY(seq.reserve(start + n));
    ForwardBatch b;
    const bool last = start + n == int32_t(prompt.size());
    b.add_sequence(prompt.data() + start, n, start, seq.table, kv.block_size(), last ? 1 : 0);
    PAGODA_TRY(runner.forward(b, kv, last ? &logits : nullptr));
  }
  st.prefill_seconds = seconds_since(t0);
  out.clear();
  const auto t_dec = Clock::now();
  for (int32_t i = 0; i < limit; ++i) {
    const int32_t tok = sample_token(logits, history, opt.sampling, uint64_t(i), size_t(i));
    if (i == 0) st.ttft_seconds = seconds_since(t0);
    if (tok == opt.eos || std::find(opt.stop_ids.begin(), opt.stop_ids.end(), tok) != opt.stop_ids.end()) {
      st.stopped_by_eos = true;
      break;
    }
    out.push_back(tok);
    history.push_back(tok);
    if (on_token && !on_token(tok)) break;
    if (i + 1 == limit) break;
    const int32_t pos = int32_t(history.size()) - 1;
    PAGODA_TRY(seq.reserve(pos + 1));
    ForwardBatch b;
    b.add_sequence(&tok, 1, pos, seq.table, kv.block_size(), 1);
    PAGODA_TRY(runner.forward(b, kv, &logits));
  }
  st.generated_tokens = int32_t(out.size());
  st.decode_seconds = st.generated_tokens > 1 ? seconds_since(t_dec) : 0;
  return st;
}

Result<std::vector<int32_t>> oracle_greedy(LoadedModel& m, Backend& be, const std::vector<int32_t>& prompt, int32_t n,
                                           DType kv_dtype, int32_t block_size, int32_t chunk) {
  auto kv = KvCache::create(be, kv_shape(m.config, block_size, kv_dtype), (m.config.ctx_len + block_size - 1) / block_size + 1);
  if (!kv) return kv.take_error();
  ModelRunner runner(be, m.config, m.weights);
  GenerateOptions g;
  g.max_new_tokens = n;
  g.sampling.temperature = 0;
  g.prefill_chunk = chunk;
  std::vector<int32_t> out;
  PAGODA_TRY(generate(runner, *kv, prompt, g, out));
  if (kv->pool().num_in_use() != 0) return make_error("generate() left KV blocks taken");
  return out;
}

}  // namespace pagoda
