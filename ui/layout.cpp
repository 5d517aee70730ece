#include "ui/layout.h"

#include <algorithm>
#include <cmath>

namespace pagoda::ui {

PanelRects compute_layout(float width, float height) {
  constexpr float kGap = 6;
  const float w = std::max(width, 320.0f), h = std::max(height, 240.0f);
  const float top_h = std::floor((h - 3 * kGap) * 0.57f);
  const float bottom_h = h - 3 * kGap - top_h;
  const float kv_w = std::floor((w - 3 * kGap) * 0.47f);
  const float req_w = std::floor((w - 3 * kGap) * 0.71f);
  PanelRects p;
  p.kv = {kGap, kGap, kv_w, top_h};
  p.spec = {2 * kGap + kv_w, kGap, w - 3 * kGap - kv_w, top_h};
  p.requests = {kGap, 2 * kGap + top_h, req_w, bottom_h};
  p.controls = {2 * kGap + req_w, 2 * kGap + top_h, w - 3 * kGap - req_w, bottom_h};
  return p;
}

nlohmann::json rect_json(const Rect& r, float scale) {
  return {{"x", int(std::lround(r.x * scale))}, {"y", int(std::lround(r.y * scale))},
          {"w", int(std::lround(r.w * scale))}, {"h", int(std::lround(r.h * scale))}};
}

nlohmann::json layout_json(const PanelRects& p, float scale) {
  return {{"kv", rect_json(p.kv, scale)}, {"spec", rect_json(p.spec, scale)},
          {"requests", rect_json(p.requests, scale)}, {"controls", rect_json(p.controls, scale)}};
}

}  // namespace pagoda::ui
