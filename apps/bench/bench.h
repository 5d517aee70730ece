// Measurements behind `pagoda bench`: host copy bandwidth (the memory roofline) and single-stream
// decode speed, with warm-up excluded and medians over repeats.
#pragma once
#include <chrono>
#include <functional>
#include "core/engine/engine.h"
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/loaded_model.h"

namespace pagoda {

// Bytes per second of a large memcpy (read + write counted once each), median of `repeats`.
double measure_copy_bandwidth(uint64_t bytes = 256ull << 20, int repeats = 5);
// Bytes per second `threads` threads read (summing disjoint slices of a buffer far larger than the
// caches), best of `repeats`. Decode streams weights read-only, so this is its memory roofline.
double measure_read_bandwidth(int threads, uint64_t bytes = 512ull << 20, int repeats = 5);

// The bytes one decode step streams from memory, by part. Decode reads every matrix it multiplies
// (the output projection included, even when it is the tied embedding table), one embedding row,
// the norm vectors, and the K and V of every earlier position in every layer; it writes one
// position's K and V. Bandwidth over total() is the memory roofline of one decoded token.
struct DecodeByteBudget {
  uint64_t matmul_weights = 0;
  uint64_t embedding_row = 0;
  uint64_t norms = 0;
  uint64_t kv_read = 0;   // at `context` positions
  uint64_t kv_write = 0;  // the new position
  double context = 0;
  uint64_t total() const { return matmul_weights + embedding_row + norms + kv_read + kv_write; }
};
// `context` is the mean attended length over the measured steps (decode time is an average over
// them and the KV term is linear in the context, so the mean gives the exact average bytes).
DecodeByteBudget decode_byte_budget(const ModelConfig& c, const ModelWeights& w, DType kv_dtype, double context);

// The machine's fused multiply-add peak: `threads` threads each run independent FMA chains (enough
// to cover the FMA latency on two ports) for a fixed count, best of `repeats`. The widest kernel the
// CPU has runs (AVX-512F, else AVX2+FMA, else a portable multiply-add kernel); `isa` says which.
struct FmaPeak {
  double flop_s = 0;
  std::string isa;
  int threads = 0;
};
FmaPeak measure_fma_peak(int threads, int repeats = 3);

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
  // When the warm-up's first token came: the first token after the model loaded (cold).
  std::chrono::steady_clock::time_point first_token_at;
  int32_t prompt_tokens = 0, generated_tokens = 0;
};

// One stream through the Engine (as `pagoda run` serves a prompt): `prompt_tokens` fixed ordinary
// tokens, then exactly `gen_tokens` greedy tokens, once to warm up and `repeats` times measured.
// `ec` gives the KV dtype and device sampling; the cache is sized to the request and the prefix
// cache is off, so every repeat computes its whole prompt. `after_warmup` runs between the
// warm-up and the measured repeats.
Result<DecodeBenchResult> bench_decode(LoadedModel& m, Backend& be, int32_t prompt_tokens, int32_t gen_tokens,
                                       int repeats, EngineConfig ec = {},
                                       const std::function<void()>& after_warmup = {});

double median(std::vector<double> v);
double percentile(std::vector<double> v, double p);

}  // namespace pagoda
