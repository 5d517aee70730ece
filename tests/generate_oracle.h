// The test oracle: single-request generation over the paged KV cache written as plainly as it can
// be (chunked prefill, then one forward per token, sampled on the host), driving ModelRunner
// directly. The Engine must produce exactly its tokens; production code never calls it (a prompt
// runs through the Engine: core/engine/engine.h complete()).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/kv/kv_cache.h"
#include "core/model/loaded_model.h"
#include "core/model/model_runner.h"
#include "core/sample/sampler.h"

namespace pagoda {

struct GenerateOptions {
  int32_t max_new_tokens = 128;
  int32_t prefill_chunk = 512;
  int32_t eos = -1;          // stop token (-1: none)
  // Further end-of-generation ids (EOT, <|eot_id|>, <|im_end|>, <end_of_turn>: the tokenizer's
  // eog_ids()); sampling any of them stops generation like eos. A chat model ends its turn with
  // one of these rather than with EOS, so stopping at EOS alone ran past the answer.
  std::vector<int32_t> stop_ids = {};
  SamplingParams sampling;
};

struct GenerateStats {
  int32_t prompt_tokens = 0;
  int32_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double ttft_seconds = 0;   // from start to the first generated token
  bool stopped_by_eos = false;
  double prefill_tok_s() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  // Decode rate excludes the first token, which prefill produced.
  double decode_tok_s() const { return decode_seconds > 0 ? (generated_tokens - 1) / decode_seconds : 0; }
};

// Generates into `out` (the new tokens only). on_token(id) is called as each token is chosen and
// may return false to stop early. KV blocks are taken from `kv` and all returned at the end.
Result<GenerateStats> generate(ModelRunner& runner, KvCache& kv, const std::vector<int32_t>& prompt,
                               const GenerateOptions& opt, std::vector<int32_t>& out,
                               const std::function<bool(int32_t)>& on_token = {});

// The oracle's greedy tokens for `prompt` on a cache of its own (`kv_dtype`, blocks of `block_size`,
// prefill in chunks of `chunk`), sized to the model's context; an error if generation failed or
// left a KV block taken.
Result<std::vector<int32_t>> oracle_greedy(LoadedModel& m, Backend& be, const std::vector<int32_t>& prompt, int32_t n,
                                           DType kv_dtype = DType::F32, int32_t block_size = 16, int32_t chunk = 512);

}  // namespace pagoda
