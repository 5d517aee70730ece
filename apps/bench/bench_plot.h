// `pagoda bench plot`: PNG charts from the --json results of `pagoda bench` workloads.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/backend.h"

namespace pagoda::cli {

// Whether `workload` (the JSON's "workload" field) has a chart.
bool plottable_workload(const std::string& workload);

// Renders the chart(s) of one result (batch: tok/s and speedup vs streams; spec: speedup per k;
// mixed: TTFT and ITL vs rate, throughput and goodput vs rate; ops: median ms per op and backend)
// as one PNG of `width` pixels. Errors name the problem (unknown workload, missing fields).
Status plot_result(const nlohmann::json& j, const std::string& png_path, int width = 900);

}  // namespace pagoda::cli
