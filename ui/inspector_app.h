// The inspector window: GLFW + OpenGL3 + Dear ImGui around the dashboard. One loop, on the
// calling thread: read the source's latest snapshot, draw, forward Commands, present.
#pragma once
#include <functional>
#include <string>

#include "core/util/result.h"
#include "ui/data_source.h"
#include "ui/ui_state.h"

namespace pagoda::ui {

struct AppOptions {
  int width = 1600, height = 1000;
  std::string title = "Pagoda inspector";
  // Non-empty: once the source is capture_ready(), render a few frames, write this PNG (and its
  // sidecar JSON) and return. The window is invisible in this mode.
  std::string screenshot;
  double capture_timeout_s = 300;  // give up waiting for capture_ready() after this long
  int max_fps = 60;                // frame cap: the UI's CPU should stay the engine's
  float font_px = 15;
  UiState initial;                 // starting view (colour mode, pinned block)
  std::function<bool()> until;     // stop once this returns true (benchmarks); null: until closed
};

struct AppStats {
  int frames = 0;
  double seconds = 0;
};

// Error messages for a missing display or OpenGL start with this, so callers can tell
// "cannot show a window here" from a real failure.
inline constexpr const char* kNoDisplay = "no display/OpenGL: ";

Result<AppStats> run_inspector(DataSource& src, const AppOptions& opts);

}  // namespace pagoda::ui
