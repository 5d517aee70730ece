// What each caller may see of the engine's state: /v1/inspect filtered by the caller's role, and
// /metrics with label values escaped. Pure functions of a snapshot, so tests reach them directly.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "apps/server/auth.h"
#include "core/telemetry/telemetry.h"

namespace pagoda::server {

using ViewSecret = std::array<uint8_t, 32>;
ViewSecret random_view_secret();  // per process, never shown

// The snapshot as `who` may see it. Block cache keys are an unsalted hash of public digests, the
// tenant and the tokens, so a shown key lets a viewer confirm a guessed prompt block by block:
// every view shows them only as an HMAC under `secret`. An admin sees every request and block; a
// tenant only its own requests, blocks and per-tenant counters (other blocks keep only their
// state: free, in use or cached).
Snapshot view_for(const Snapshot& s, const Principal& who, const ViewSecret& secret);


}  // namespace pagoda::server
