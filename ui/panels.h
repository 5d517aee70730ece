// Panels: each is a free function of a read-only Snapshot plus the UI's own state; none touches
// the engine. Controls are emitted as Command values for the DataSource to apply.
#pragma once
#include <string>
#include <vector>

#include "core/telemetry/telemetry.h"
#include "ui/data_source.h"
#include "ui/layout.h"
#include "ui/ui_state.h"

namespace pagoda::ui {

// What the controls panel knows about the source besides the snapshot.
struct SourceView {
  std::string name, status;
  SourceControls controls;
};

// Panel bodies: draw into the current ImGui window.
void draw_kv_map(const Snapshot& s, UiState& ui);
void draw_speculation(const Snapshot& s, UiState& ui);
void draw_requests(const Snapshot& s, UiState& ui);
void draw_controls(const Snapshot& s, const SourceView& src, UiState& ui, std::vector<Command>& out);

// The whole dashboard: each panel in its fixed window of `rects`.
void draw_dashboard(const Snapshot& s, const SourceView& src, UiState& ui, const PanelRects& rects,
                    std::vector<Command>& out);

}  // namespace pagoda::ui
