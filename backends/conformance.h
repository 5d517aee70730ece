// Cross-backend conformance: every op on fresh random inputs, run on a backend under test and on
// the CPU reference, compared by NMSE (exactly for integer results). Cases are data, run anywhere.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backends/backend.h"

namespace pagoda {

// The shape family of one case; fields an op does not use stay 0.
struct ConformanceShape {
  int64_t rows = 0;      // rows of the op's main input (tokens, logits rows)
  int64_t cols = 0;      // row width: dim, n_in, vocab, or n_kv_heads * head_dim for kv_store
  int64_t extra = 0;     // matmul: outputs; embed: table rows; kv_store: cache slots; rope: max position
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  // paged_attention: (ctx_len, q_len) per sequence; verify: (draft_len, 0) per sequence.
  std::vector<std::pair<int32_t, int32_t>> seqs;
  float param = 0;        // rms_norm eps, rope theta, softmax temperature
  bool in_place = false;  // out aliases the input, for ops whose contract allows it
  bool greedy = false;    // verify
  bool ties = false;      // argmax: every row holds its maximum twice; filter_probs: logits on a coarse grid
  int32_t window = 0;     // attention_window: sliding window (0 = none)
  float softcap = 0;      // attention_window: attention logit soft cap (0 = none)
};

// A rows x cols shape (most ops'), with `extra` and `param` as above.
ConformanceShape rows_cols(int64_t rows, int64_t cols, int64_t extra = 0, float param = 0);

struct ConformanceCase {
  Op op;
  DType dtype;       // weight dtype (embed, matmul), KV dtype (kv_store, paged_attention), else F32
  std::string name;  // the shape family, e.g. "mix_gqa4_hd128"
  ConformanceShape shape;
  double threshold;  // largest NMSE that passes; 0 = results must match exactly
};

// The bound the conformance cases use for `op` on `dtype` (matmul by weight type: F32/F16 near
// float rounding, quantized types allowing quantized activations), for harnesses that build
// their own cases.
double conformance_bound(Op op, DType dtype);

enum class ConformanceStatus { Pass, Fail, Skip };
const char* conformance_status_name(ConformanceStatus s);

struct ConformanceResult {
  std::string op;
  std::string dtype;
  std::string name;
  ConformanceStatus status = ConformanceStatus::Fail;
  // NMSE = sum((dut - ref)^2) / sum(ref^2); for exact cases the fraction of differing values.
  // Infinite when the backend left a NaN (poison) where the reference has a value or vice versa.
  double nmse = 0;
  double threshold = 0;
  uint64_t seed = 0;   // reruns this case alone: run_conformance_case(dut, case, seed)
  std::string detail;  // why it was skipped or failed (first bad element, backend error)
  // Wall time of the op on the backend under test, sync included; the first case of an op on a
  // GPU backend also pays for building its pipeline.
  double dut_ms = 0;
};

// Every case: all ops, all dtypes each supports, odd sizes, head_dim 8/64/128, GQA groups 1/2/4,
// contexts crossing blocks, prefill chunks mixed with decode rows, shuffled block tables.
std::vector<ConformanceCase> conformance_cases();

// Runs one case with inputs drawn from `seed`. Output buffers start as NaN (I32 outputs as a
// sentinel) and KV slots outside every sequence's context as NaN, so unwritten outputs and reads
// past ctx_len fail; every tensor sits between NaN guard bytes, so reads and writes outside it
// fail too (and descriptor offsets are never nicely aligned).
ConformanceResult run_conformance_case(Backend& dut, const ConformanceCase& c, uint64_t seed);

// Runs every case whose "op/dtype/name" contains `filter`. seed 0 draws a fresh suite seed from
// std::random_device; each case's own seed derives from it and is reported in its result.
std::vector<ConformanceResult> run_conformance(Backend& dut, uint64_t seed = 0, const std::string& filter = "");

// A fixed-width table, one line per result, with a pass/fail/skip summary line.
std::string format_conformance_table(const std::vector<ConformanceResult>& results);
// A JSON array of objects with the ConformanceResult fields (status as "pass"/"fail"/"skip").
std::string conformance_json(const std::vector<ConformanceResult>& results);

}  // namespace pagoda
