// Charts: the few plot shapes the panels need (line over time, labelled bars, a telemetry
// Histogram, a horizontal meter), drawn with ImGui's draw list so they share one look.
#pragma once
#include <imgui.h>

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/telemetry/telemetry.h"
#include "ui/palette.h"

namespace pagoda::ui {

// "850µs", "12.3ms", "1.52s".
std::string format_duration(double seconds);
// "1234" -> "1,234" (counters get large; separators keep them readable at a glance).
std::string format_count(uint64_t n);

struct LineChartSpec {
  float lo = 0, hi = 1;        // y range
  float y_scale = 100;         // axis labels show value * y_scale ...
  const char* y_suffix = "%";  // ... followed by this
  Rgb color = kAccent;
  const char* x_label = "";    // what one sample is ("step", "snapshot")
};
// A time series, oldest left. Hover shows the value under the mouse.
void line_chart(const char* id, std::span<const float> values, ImVec2 size, const LineChartSpec& spec);

// Vertical bars, one label under each; values in [0, hi]. `tip(i)` is the hover text of bar i.
void bar_chart(const char* id, std::span<const float> values, std::span<const std::string> labels, float hi,
               ImVec2 size, Rgb color, const std::function<std::string(size_t)>& tip);

// The non-empty bucket range of a Histogram as bars, labelled with bucket upper bounds through
// `label`; p50 and p99 drawn as markers.
void histogram_chart(const char* id, const Histogram& h, ImVec2 size, Rgb color,
                     const std::function<std::string(double)>& label);

// A horizontal meter: label on the left, bar filling `frac` of the rest, text over the bar.
void meter(const char* label, float label_w, float frac, const std::string& text, Rgb color, float height = 0);

// A small labelled number: caption above, value in the headline font, change below in colour.
void stat_card(const char* caption, const std::string& value, const std::string& change, Rgb change_color);

// A coloured square followed by text on the same line (legends).
void swatch(Rgb color, const std::string& text);

// Placeholder text centred in a reserved box (charts with no data still show where they are).
void empty_box(ImVec2 size, const char* text);

}  // namespace pagoda::ui
