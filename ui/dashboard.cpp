// The dashboard: the four panels tiled in fixed, undecorated-but-titled windows. Fixed placement
// is what lets a screenshot's sidecar name each panel's pixels.
#include <imgui.h>

#include "ui/panels.h"

namespace pagoda::ui {
namespace {

template <typename Body>
void panel(const char* title, const Rect& r, Body&& body) {
  ImGui::SetNextWindowPos(ImVec2(r.x, r.y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(r.w, r.h), ImGuiCond_Always);
  const ImGuiWindowFlags f = ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoCollapse |
                             ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoScrollbar |
                             ImGuiWindowFlags_NoScrollWithMouse | ImGuiWindowFlags_NoBringToFrontOnFocus;
  if (ImGui::Begin(title, nullptr, f)) body();
  ImGui::End();
}

}  // namespace

void draw_dashboard(const Snapshot& s, const SourceView& src, UiState& ui, const PanelRects& rects,
                    std::vector<Command>& out) {
  observe(s, ui);
  panel("KV cache", rects.kv, [&] { draw_kv_map(s, ui); });
  panel("Speculation", rects.spec, [&] { draw_speculation(s, ui); });
  panel("Requests & latency", rects.requests, [&] { draw_requests(s, ui); });
  panel("Controls", rects.controls, [&] { draw_controls(s, src, ui, out); });
}

}  // namespace pagoda::ui
