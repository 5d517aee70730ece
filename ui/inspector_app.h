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
  // Frame cap: the UI's CPU should stay the engine's. 0 picks it from the OpenGL renderer:
  // kSoftwareFps where a software rasterizer (llvmpipe, softpipe, SwiftShader) draws on the very
  // cores the engine runs on, kHardwareFps on a GPU.
  int max_fps = 0;
  float font_px = 15;
  UiState initial;                 // starting view (colour mode, pinned block)
  std::function<bool()> until;     // stop once this returns true (benchmarks); null: until closed
};

inline constexpr int kSoftwareFps = 10, kHardwareFps = 60;

struct AppStats {
  int frames = 0;
  double seconds = 0;
  std::string renderer;  // GL_RENDERER of the window's context
  bool software = false; // a CPU rasterizer
  int fps_cap = 0;       // the cap the loop ran with
};

// Whether a GL_RENDERER string names a CPU rasterizer.
bool is_software_renderer(const std::string& renderer);

// Error messages for a missing display or OpenGL start with this, so callers can tell
// "cannot show a window here" from a real failure.
inline constexpr const char* kNoDisplay = "no display/OpenGL: ";

// `on_open`, if set, is called once the window is up, with the renderer and the frame cap chosen.
Result<AppStats> run_inspector(DataSource& src, const AppOptions& opts,
                               const std::function<void(const AppStats&)>& on_open = nullptr);

}  // namespace pagoda::ui
