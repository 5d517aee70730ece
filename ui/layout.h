// Layout: the dashboard's fixed tiling. Panel rectangles are a pure function of the window size,
// so a screenshot's sidecar JSON tells a test exactly where each panel was drawn.
#pragma once
#include <nlohmann/json.hpp>

namespace pagoda::ui {

struct Rect {
  float x = 0, y = 0, w = 0, h = 0;
};

struct PanelRects {
  Rect kv, spec, requests, controls;
};

// KV map and speculation share the top row; requests and controls the bottom one.
PanelRects compute_layout(float width, float height);

// {"kv": {"x":..,"y":..,"w":..,"h":..}, ...}, scaled from window to framebuffer pixels.
nlohmann::json rect_json(const Rect& r, float scale);
nlohmann::json layout_json(const PanelRects& p, float scale);

}  // namespace pagoda::ui
