// `pagoda bench device`: device-resident decode against host sampling, side by side in one run.
// Each setting (greedy, temperature 0.8 with no filters, greedy with n-gram speculation) serves the
// same concurrent streams with EngineConfig::device_sampling off and on, alternating per repeat,
// and reports tok/s of both, their ratio, the share of tokens the device chose, and whether greedy
// output was identical. On a CPU-hosted device (lavapipe) the ratio shows the readback and host
// sampling saved, not GPU speed.
#pragma once
#include <string>

#include "apps/cli_common.h"

namespace pagoda::cli {

struct DeviceBenchOptions {
  std::string model = default_model_path();
  int32_t streams = 8;  // concurrent requests
  int32_t gen = 64;     // tokens per request
  int repeats = 3;      // measured runs per variant (after one warm-up of each); best kept
  bool json = false;
  BackendOptions be;
};

// Returns a process exit code.
int run_device_bench(const DeviceBenchOptions& o);

}  // namespace pagoda::cli
