// `pagoda bench ops`: per-op wall time per backend on decode- and prefill-sized shapes, measured
// by the conformance harness (so every timed run is also checked against the CPU reference).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/conformance.h"

namespace pagoda::cli {

struct OpTiming {
  std::string op, dtype, name, status, detail;
  double median_ms = 0, p99_ms = 0, min_ms = 0;
  int repeats = 0;
};

// The benchmark cases: conformance cases with the sizes of a dim-1024 llama layer
// (16 heads of 64, FFN 2816, vocab 32000). `filter` keeps cases whose "op/dtype/name" contains it.
std::vector<ConformanceCase> bench_op_cases(const std::string& filter = "");

// One warm-up run of each case (pipeline builds, first-touch), then `repeats` timed runs with the
// same inputs. A case the backend does not support is reported with status "skip"; one whose
// result differs from the CPU reference beyond the case's bound with status "fail" (and no time).
std::vector<OpTiming> bench_ops(Backend& be, const std::vector<ConformanceCase>& cases, int repeats);

std::string format_op_table(const std::string& backend, const std::string& device, const std::vector<OpTiming>& rows);
nlohmann::json op_timings_json(const std::vector<OpTiming>& rows);

}  // namespace pagoda::cli
