// UiState: what the inspector remembers between frames that no Snapshot carries — view choices,
// form inputs, and short series derived from successive snapshots (queue length, hit and
// eviction rates). Panels read the Snapshot and this; nothing here reaches the engine.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "core/telemetry/telemetry.h"
#include "ui/layout.h"

namespace pagoda::ui {

enum class ColorBy : uint8_t { State, Request, Tenant };

// Counters at one snapshot, to turn cumulative totals into recent rates.
struct CounterSample {
  double t = 0;  // snapshot uptime, seconds
  uint64_t hit_tokens = 0, query_tokens = 0, evictions = 0, preemptions = 0, generated = 0, finished = 0;
};

// Change over the recent window (about two seconds of snapshot time).
struct RecentRates {
  double window_s = 0;
  uint64_t hit_tokens = 0, query_tokens = 0, evictions = 0, preemptions = 0, generated = 0, finished = 0;
  double per_s(uint64_t n) const { return window_s > 0 ? double(n) / window_s : 0; }
};

struct UiState {
  ColorBy color_by = ColorBy::State;
  int32_t pinned_block = -1;  // show this block's tooltip without a mouse (screenshots, demos)

  uint64_t last_step = UINT64_MAX;  // step of the last snapshot observed
  double last_uptime = -1;
  std::deque<CounterSample> samples;
  RecentRates recent;
  std::vector<float> queue_history;     // waiting requests per observed snapshot
  std::vector<float> hit_rate_history;  // prefix hit fraction of recent lookups, per snapshot

  // Controls panel form state.
  std::string prompt = "Once upon a time, there was a little girl named Lily.";
  std::string tenant;
  float rate = -1;  // < 0: take the source's rate on the first frame
  int32_t fixed_k = 4;
  bool adaptive = false;
  bool controls_synced = false;
  std::string last_action;  // feedback line under the controls

  // Where the block grid landed this frame (the screenshot sidecar reports it).
  Rect kv_grid;
  float fps = 0;
};

// Folds a snapshot into the derived series; cheap when the snapshot was already seen.
void observe(const Snapshot& s, UiState& ui);

}  // namespace pagoda::ui
