// Function-preserving widening of a real llama model: more heads (same head size), wider FFN and
// extra layers, all with zero output projections, and RMSNorm gains/epsilon rescaled for the
// zero-padded residual stream. The widened model computes the same function (up to float
// summation order) at a realistic cost, so speculation acceptance measured on it stays real.
#pragma once
#include <string>

#include "core/util/result.h"

namespace pagoda {

struct WidenOptions {
  std::string input;    // a real F32 llama GGUF (e.g. stories260K.gguf)
  std::string output;
  int32_t heads = 96;   // total query heads (>= original); kv heads grow in proportion
  int32_t ffn_dim = 2048;
  int32_t layers = 12;  // total layers (>= original); the extras contribute nothing
};

Status widen_model(const WidenOptions& opt);

}  // namespace pagoda
