// `pagoda bench attention`: paged decode attention as a memory-bandwidth problem. One query token
// per sequence reads its whole K/V context, so the op's speed is K/V bytes over time, set against
// the same backend's own device-to-device copy bandwidth (measured with Backend::copy).
#pragma once
#include <cstdint>
#include <vector>

#include "backends/backend.h"
#include "core/util/result.h"

namespace pagoda {

struct AttentionBenchOptions {
  std::vector<int32_t> contexts = {1024, 8192, 32768};
  // Sequences per call; 0 picks enough that one call reads about `kv_target_bytes` of K/V.
  int32_t n_seqs = 0;
  uint64_t kv_target_bytes = 0;  // 0: 1 GiB on a GPU, 128 MiB otherwise
  int32_t n_heads = 32, n_kv_heads = 8, head_dim = 128, block_size = 16;  // a Llama-3-8B layer
  DType kv_dtype = DType::F16;
  int repeats = 10;  // timed samples (after one warm-up); each sample is `calls_per_sample` calls
  int calls_per_sample = 5;
};

struct AttentionBenchRow {
  int32_t ctx = 0, n_seqs = 0;
  double kv_bytes = 0;         // K and V bytes one call reads
  double median_ms = 0, min_ms = 0;
  double gbps = 0;             // kv_bytes / median time
  double fraction_of_copy = 0; // gbps / copy bandwidth
  double nmse = 0;             // first and last sequence against the CPU backend
};

struct AttentionBenchResult {
  double copy_gbps = 0;  // read + write bytes per second of Backend::copy, median
  uint64_t copy_bytes = 0;
  std::vector<AttentionBenchRow> rows;
};

// Median bytes per second (read + write counted) of Backend::copy between two device buffers of
// `bytes`, `repeats` samples after a warm-up.
Result<double> measure_backend_copy_bandwidth(Backend& be, uint64_t bytes, int repeats);

// Fails if the backend cannot hold a case, reports an error, or a checked sequence's output is
// off from the CPU backend's by an NMSE above 1e-4 (F16 K/V, F32 math).
Result<AttentionBenchResult> bench_attention(Backend& be, const AttentionBenchOptions& o);

}  // namespace pagoda
