#include "ui/charts.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "ui/theme.h"

namespace pagoda::ui {
namespace {

constexpr Rgb kChartBg{30, 33, 40};
constexpr Rgb kGrid{62, 68, 80};
constexpr Rgb kAxisText{150, 158, 172};

struct Box {
  ImVec2 a, b;  // plot area corners
  float w() const { return b.x - a.x; }
  float h() const { return b.y - a.y; }
};

// Reserves `size` in the layout (so hover works and the cursor moves on) and returns its corners.
Box reserve(const char* id, ImVec2 size) {
  const ImVec2 p = ImGui::GetCursorScreenPos();
  ImGui::InvisibleButton(id, ImVec2(std::max(size.x, 8.0f), std::max(size.y, 8.0f)));
  return {p, ImVec2(p.x + size.x, p.y + size.y)};
}

void text_at(ImDrawList* dl, ImVec2 p, Rgb c, const std::string& s) { dl->AddText(p, packed(c), s.c_str()); }

}  // namespace

std::string format_duration(double s) {
  char buf[32];
  if (s < 1e-3) std::snprintf(buf, sizeof buf, "%.0f\xC2\xB5s", s * 1e6);
  else if (s < 1.0) std::snprintf(buf, sizeof buf, s < 0.01 ? "%.2fms" : "%.1fms", s * 1e3);
  else std::snprintf(buf, sizeof buf, "%.2fs", s);
  return buf;
}

std::string format_count(uint64_t n) {
  std::string d = std::to_string(n), out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i > 0 && (d.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(d[i]);
  }
  return out;
}

void empty_box(ImVec2 size, const char* text) {
  const Box bx = reserve("##empty", size);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRectFilled(bx.a, bx.b, packed(kChartBg), 3.0f);
  const ImVec2 ts = ImGui::CalcTextSize(text);
  text_at(dl, ImVec2(bx.a.x + (bx.w() - ts.x) / 2, bx.a.y + (bx.h() - ts.y) / 2), kAxisText, text);
}

void line_chart(const char* id, std::span<const float> v, ImVec2 size, const LineChartSpec& spec) {
  ImGui::PushID(id);
  const float label_w = ImGui::CalcTextSize("100%").x + 8;
  Box bx = reserve("##line", size);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  bx.a.x += label_w;
  dl->AddRectFilled(bx.a, bx.b, packed(kChartBg), 3.0f);
  const float th = ImGui::GetTextLineHeight();
  for (int i = 0; i <= 2; ++i) {  // grid at lo, middle, hi
    const float y = bx.b.y - bx.h() * float(i) / 2.0f;
    dl->AddLine(ImVec2(bx.a.x, y), ImVec2(bx.b.x, y), packed(kGrid));
    char buf[24];
    std::snprintf(buf, sizeof buf, "%.0f%s", (spec.lo + (spec.hi - spec.lo) * float(i) / 2.0f) * spec.y_scale, spec.y_suffix);
    const float tw = ImGui::CalcTextSize(buf).x;
    text_at(dl, ImVec2(bx.a.x - tw - 4, std::clamp(y - th / 2, bx.a.y - 2, bx.b.y - th + 2)), kAxisText, buf);
  }
  if (v.size() < 2) {
    const char* t = "no data yet";
    const ImVec2 ts = ImGui::CalcTextSize(t);
    text_at(dl, ImVec2(bx.a.x + (bx.w() - ts.x) / 2, bx.a.y + (bx.h() - ts.y) / 2), kAxisText, t);
    ImGui::PopID();
    return;
  }
  auto point = [&](size_t i) {
    const float t = std::clamp((v[i] - spec.lo) / std::max(1e-9f, spec.hi - spec.lo), 0.0f, 1.0f);
    return ImVec2(bx.a.x + bx.w() * float(i) / float(v.size() - 1), bx.b.y - 1 - (bx.h() - 2) * t);
  };
  // Area under the curve as thin quads, then the line over it: reads well even when dense.
  // Anti-aliased fill would leave a faint seam between neighbouring quads.
  const ImDrawListFlags saved = dl->Flags;
  dl->Flags &= ~ImDrawListFlags_AntiAliasedFill;
  for (size_t i = 1; i < v.size(); ++i) {
    const ImVec2 p0 = point(i - 1), p1 = point(i);
    dl->AddQuadFilled(p0, p1, ImVec2(p1.x, bx.b.y), ImVec2(p0.x, bx.b.y), packed(spec.color, 48));
  }
  dl->Flags = saved;
  std::vector<ImVec2> pts(v.size());
  for (size_t i = 0; i < v.size(); ++i) pts[i] = point(i);
  dl->AddPolyline(pts.data(), int(pts.size()), packed(spec.color), 0, 1.5f);
  if (ImGui::IsItemHovered()) {
    const float mx = ImGui::GetIO().MousePos.x;
    const size_t i = size_t(std::clamp((mx - bx.a.x) / bx.w(), 0.0f, 1.0f) * float(v.size() - 1) + 0.5f);
    dl->AddCircleFilled(point(i), 3.5f, packed(spec.color));
    ImGui::SetTooltip("%s %zu of %zu: %.1f%s", spec.x_label, i + 1, v.size(), v[i] * spec.y_scale, spec.y_suffix);
  }
  ImGui::PopID();
}

void bar_chart(const char* id, std::span<const float> values, std::span<const std::string> labels, float hi,
               ImVec2 size, Rgb color, const std::function<std::string(size_t)>& tip) {
  ImGui::PushID(id);
  const float th = ImGui::GetTextLineHeight();
  Box bx = reserve("##bars", size);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  bx.b.y -= th + 2;  // labels row
  dl->AddRectFilled(bx.a, bx.b, packed(kChartBg), 3.0f);
  if (values.empty()) {
    const char* t = "no data yet";
    const ImVec2 ts = ImGui::CalcTextSize(t);
    text_at(dl, ImVec2(bx.a.x + (bx.w() - ts.x) / 2, bx.a.y + (bx.h() - ts.y) / 2), kAxisText, t);
    ImGui::PopID();
    return;
  }
  const float slot = bx.w() / float(values.size());
  const float gap = std::min(6.0f, slot * 0.2f);
  // Label every stride-th bar, the stride chosen so the widest label never overlaps its neighbour.
  float label_w = 0;
  for (const auto& l : labels) label_w = std::max(label_w, ImGui::CalcTextSize(l.c_str()).x);
  const size_t stride = size_t(std::max(1.0f, std::ceil((label_w + 8) / slot)));
  int hovered = -1;
  float label_right = -1e9f;  // right edge of the last label drawn; a label that would overlap it is skipped
  const ImVec2 m = ImGui::GetIO().MousePos;
  for (size_t i = 0; i < values.size(); ++i) {
    const float x0 = bx.a.x + slot * float(i) + gap / 2, x1 = x0 + slot - gap;
    const float t = std::clamp(values[i] / std::max(1e-9f, hi), 0.0f, 1.0f);
    const float y0 = bx.b.y - (bx.h() - 2) * t;
    const bool hov = ImGui::IsItemHovered() && m.x >= x0 && m.x < x1 + gap;
    if (hov) hovered = int(i);
    dl->AddRectFilled(ImVec2(x0, y0), ImVec2(x1, bx.b.y), packed(color, hov ? 255 : 215), 2.0f);
    if (i < labels.size() && i % stride == 0) {
      const float tw = ImGui::CalcTextSize(labels[i].c_str()).x;
      const float lx = std::clamp((x0 + x1 - tw) / 2, bx.a.x, bx.b.x - tw);  // edge labels stay inside the chart
      if (lx >= label_right + 6) {
        text_at(dl, ImVec2(lx, bx.b.y + 2), kAxisText, labels[i]);
        label_right = lx + tw;
      }
    }
  }
  if (hovered >= 0 && tip) ImGui::SetTooltip("%s", tip(size_t(hovered)).c_str());
  ImGui::PopID();
}

void histogram_chart(const char* id, const Histogram& h, ImVec2 size, Rgb color,
                     const std::function<std::string(double)>& label) {
  const auto& counts = h.counts();
  const auto& bounds = h.bounds();
  size_t first = counts.size(), last = 0;
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] > 0) { first = std::min(first, i); last = i; }
  if (first == counts.size()) {
    ImGui::PushID(id);
    empty_box(size, "no observations yet");
    ImGui::PopID();
    return;
  }
  // At least six buckets wide, so a single busy bucket still reads as a distribution.
  while (last - first + 1 < 6 && (first > 0 || last + 1 < counts.size())) {
    if (last + 1 < counts.size()) ++last;
    if (last - first + 1 < 6 && first > 0) --first;
  }
  std::vector<float> vals;
  std::vector<std::string> labels;
  float peak = 1;
  for (size_t i = first; i <= last; ++i) {
    vals.push_back(float(counts[i]));
    peak = std::max(peak, float(counts[i]));
    labels.push_back(i < bounds.size() ? label(bounds[i]) : "inf");
  }
  auto tip = [&](size_t k) {
    const size_t i = first + k;
    const std::string lo = i == 0 ? "0" : label(bounds[i - 1]);
    const std::string hi = i < bounds.size() ? label(bounds[i]) : "inf";
    return "(" + lo + ", " + hi + "]: " + format_count(counts[i]) + " of " + format_count(h.count());
  };
  bar_chart(id, vals, labels, peak, size, color, tip);
}

void stat_card(const char* caption, const std::string& value, const std::string& change, Rgb change_color) {
  ImGui::TextColored(ImVec4(kAxisText.r / 255.f, kAxisText.g / 255.f, kAxisText.b / 255.f, 1), "%s", caption);
  big_text(value.c_str());
  const ImVec4 cc(change_color.r / 255.f, change_color.g / 255.f, change_color.b / 255.f, 1);
  ImGui::TextColored(cc, "%s", change.empty() ? " " : change.c_str());
}

void swatch(Rgb color, const std::string& text) {
  const float th = ImGui::GetTextLineHeight();
  const ImVec2 p = ImGui::GetCursorScreenPos();
  const float side = std::floor(th * 0.75f);
  ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(p.x, p.y + (th - side) / 2), ImVec2(p.x + side, p.y + (th + side) / 2),
                                            packed(color), 2.0f);
  ImGui::Dummy(ImVec2(side, th));
  ImGui::SameLine(0, 4);
  ImGui::TextUnformatted(text.c_str());
}

void meter(const char* label, float label_w, float frac, const std::string& text, Rgb color, float height) {
  const float h = height > 0 ? height : ImGui::GetTextLineHeight() + 4;
  const ImVec2 p = ImGui::GetCursorScreenPos();
  const float w = ImGui::GetContentRegionAvail().x;
  ImGui::InvisibleButton(label, ImVec2(std::max(w, 8.0f), h));
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const float th = ImGui::GetTextLineHeight();
  const char* shown_end = std::strstr(label, "##");  // ImGui's convention: "##" starts the hidden id part
  dl->AddText(ImVec2(p.x, p.y + (h - th) / 2), packed(kAxisText), label, shown_end);
  const ImVec2 a(p.x + label_w, p.y + 1), b(p.x + w, p.y + h - 1);
  dl->AddRectFilled(a, b, packed(kChartBg), 2.0f);
  const float f = std::clamp(frac, 0.0f, 1.0f);
  if (f > 0) dl->AddRectFilled(a, ImVec2(a.x + std::max(2.0f, (b.x - a.x) * f), b.y), packed(color, 200), 2.0f);
  dl->AddText(ImVec2(a.x + 6, p.y + (h - th) / 2), IM_COL32(235, 238, 245, 255), text.c_str());
}

}  // namespace pagoda::ui
