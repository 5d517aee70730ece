// Measurements behind `pagoda bench`: host copy bandwidth (the memory roofline) and single-stream
// decode speed, with warm-up excluded and medians over repeats.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine/generate.h"
#include "core/model/loaded_model.h"

namespace pagoda {

// Bytes per second of a large memcpy (read + write counted once each), median of `repeats`.
double measure_copy_bandwidth(uint64_t bytes = 256ull << 20, int repeats = 5);
// Bytes per second `threads` threads read (summing disjoint slices of a buffer far larger than the
// caches), median of `repeats`. Decode streams weights read-only, so this is its memory roofline.
double measure_read_bandwidth(int threads, uint64_t bytes = 512ull << 20, int repeats = 5);

// FLOP per second of the backend's F32 matmul at [m x k] x [k x n] (median of `repeats` after a
// warm-up): the device's compute roof for prefill, which is GEMM-bound.
Result<double> measure_matmul_rate(Backend& be, int64_t m = 256, int64_t k = 2048, int64_t n = 2048, int repeats = 5);
// Multiply-add FLOP of one token's matmuls through the model (attention scores excluded);
// `with_output` adds the vocabulary projection, which prefill computes for the last token only.
double matmul_flops_per_token(const ModelConfig& c, bool with_output);

struct DecodeBenchResult {
  std::vector<double> decode_tok_s;  // one per repeat
  std::vector<double> prefill_tok_s;
  std::vector<double> ttft_ms;
  double median_decode_tok_s = 0, p99_decode_tok_s = 0;
  double median_prefill_tok_s = 0, median_ttft_ms = 0;
  int32_t prompt_tokens = 0, generated_tokens = 0;
};

Result<DecodeBenchResult> bench_decode(LoadedModel& m, Backend& be, int32_t prompt_tokens, int32_t gen_tokens,
                                       int repeats, DType kv_dtype = DType::F32);

double median(std::vector<double> v);
double percentile(std::vector<double> v, double p);

}  // namespace pagoda
