// Model-level conformance: the same real model on two backends, teacher-forced on one token
// sequence, compared row by row (top-1 agreement, KL divergence) plus free-running greedy text.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/util/result.h"

namespace pagoda {

struct ModelConformance {
  std::string backend;
  std::string kv_dtype;
  int32_t positions = 0;
  double top1_agreement = 0;  // fraction of positions with the same argmax
  double mean_kl = 0, max_kl = 0;  // KL(reference || backend) of the softmaxed logits
  bool greedy_identical = false;
  int32_t greedy_tokens = 0;
  int32_t first_divergence = -1;  // index of the first differing greedy token
};

// `reference` is typically cpu-ref; `kv` is "f32" or "f16" for the backend under test.
Result<ModelConformance> compare_model(const std::string& model_path, Backend& reference, Backend& dut,
                                       const std::string& prompt, int32_t n_tokens, DType kv_dtype);

}  // namespace pagoda
