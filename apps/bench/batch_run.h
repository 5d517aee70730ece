// Running many prompts through the engine at once (`pagoda run --prompts FILE`, benchmarks):
// parsing the prompts file and collecting per-request outcomes plus aggregate metrics.
#pragma once
#include <string>
#include <vector>

#include "core/engine/engine.h"

namespace pagoda {

// One prompt per line, or JSONL objects {"prompt", "tenant", "priority", "max_tokens", "timeout"}.
// Lines may end in CRLF. Blank lines are skipped; a malformed JSON line is an error naming its
// line number.
Result<std::vector<Request>> parse_prompts(const std::string& text, const Request& defaults);
Result<std::vector<Request>> read_prompts_file(const std::string& path, const Request& defaults);

struct RequestOutcome {
  uint64_t id = 0;
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason reason = FinishReason::None;
  std::string error;
  RequestMetrics metrics;
};

struct BatchSummary {
  double wall_s = 0;
  uint64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0;
  double gen_tok_s = 0;  // generated tokens / wall time
  double ttft_p50_s = 0, ttft_p99_s = 0, itl_mean_s = 0;
  int completed = 0, rejected = 0, other = 0;
};

// Submits all requests to a started or stepped engine and waits for every final event.
// `step_inline`: drive the engine from this thread (true) or rely on its own thread (false).
std::vector<RequestOutcome> run_requests(Engine& e, const std::vector<Request>& reqs, bool step_inline,
                                         BatchSummary* summary = nullptr);

}  // namespace pagoda
