// Re-quantizing a llama GGUF: every matmul weight to the target type (dequantized first, so any
// input type works), norms and rope_freqs kept F32, with llama.cpp's `_M` mixture rules.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/util/result.h"

namespace pagoda {

// Targets: f16, bf16, q8_0, q4_0, q6_k, q4_k_m, q5_k_m.
std::vector<std::string> quantize_targets();

struct QuantizeReport {
  std::map<std::string, int> tensor_types;  // GGML type name -> tensors written
  uint64_t bytes_in = 0, bytes_out = 0;
};

// progress(done_tensors, total_tensors).
Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, const std::string& target,
                                      const std::function<void(size_t, size_t)>& progress = {});

}  // namespace pagoda
