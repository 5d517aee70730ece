// Snapshot <-> JSON: the one serialization /v1/inspect, the inspector's remote mode and
// `bench --json` share. Round-trips every field the inspector draws.
#pragma once
#include <nlohmann/json.hpp>

#include "core/telemetry/telemetry.h"
#include "core/util/result.h"

namespace pagoda {

nlohmann::json snapshot_to_json(const Snapshot& s, bool include_blocks = true);
// Tolerates missing fields (older servers); wrong types are an error.
Result<Snapshot> snapshot_from_json(const nlohmann::json& j);

}  // namespace pagoda
