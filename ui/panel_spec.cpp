// Speculation panel: how well drafts are accepted (over time, by draft position, per request, as
// an accepted-length distribution) and what the draft-length controller decided and why.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "ui/charts.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace pagoda::ui {
namespace {

const ImVec4 kDim(0.6f, 0.65f, 0.72f, 1);

std::string pct(double v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * v);
  return buf;
}

void spec_summary(const Snapshot& s) {
  const Counters& c = s.counters;
  if (!ImGui::BeginTable("##specstats", 4, ImGuiTableFlags_SizingStretchSame)) return;
  ImGui::TableNextColumn();
  stat_card("Drafter", s.spec_mode.empty() ? "off" : s.spec_mode, s.spec_mode == "off" || s.spec_mode.empty() ? "no speculation" : "",
            kNeutral);
  ImGui::TableNextColumn();
  stat_card("Draft length k", std::to_string(s.spec_k), s.spec_k == 0 && s.spec_mode != "off" ? "paused by controller" : "tokens per verify",
            kNeutral);
  ImGui::TableNextColumn();
  stat_card("Acceptance", pct(c.spec_proposed ? double(c.spec_accepted) / double(c.spec_proposed) : 0),
            format_count(c.spec_accepted) + " of " + format_count(c.spec_proposed) + " drafts", kAccent);
  ImGui::TableNextColumn();
  char mean[32];
  std::snprintf(mean, sizeof mean, "%.2f", s.hist.accept_len.mean());
  stat_card("Tokens per verify", mean, format_count(s.hist.accept_len.count()) + " verifications", kAccent);
  ImGui::EndTable();
}

// Per-step acceptance is noisy (a handful of drafts each); a short moving average shows the trend.
std::vector<float> smoothed(const std::vector<float>& v, size_t w) {
  std::vector<float> out(v.size());
  double acc = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    acc += v[i];
    if (i >= w) acc -= v[i - w];
    out[i] = float(acc / double(std::min(i + 1, w)));
  }
  return out;
}

void by_position(const Snapshot& s, ImVec2 size) {
  const Counters& c = s.counters;
  std::vector<float> vals;
  std::vector<std::string> labels;
  for (size_t i = 0; i < c.spec_proposed_by_pos.size(); ++i) {
    const uint64_t p = c.spec_proposed_by_pos[i], a = i < c.spec_accepted_by_pos.size() ? c.spec_accepted_by_pos[i] : 0;
    vals.push_back(p ? float(a) / float(p) : 0.0f);
    labels.push_back(std::to_string(i + 1));
  }
  bar_chart("bypos", vals, labels, 1.0f, size, kAccent, [&](size_t i) {
    const uint64_t p = c.spec_proposed_by_pos[i], a = i < c.spec_accepted_by_pos.size() ? c.spec_accepted_by_pos[i] : 0;
    return "draft position " + std::to_string(i + 1) + ": " + format_count(a) + " of " + format_count(p) + " accepted (" +
           pct(p ? double(a) / double(p) : 0) + ")";
  });
}

// accept_len holds whole token counts in fractional buckets; label each bucket by the counts it
// can hold ("3", "6-7") and drop buckets that hold none.
void accept_lengths(const Histogram& h, ImVec2 size) {
  std::vector<float> vals;
  std::vector<std::string> labels;
  std::vector<uint64_t> raw;
  float peak = 1;
  for (size_t i = 0; i < h.counts().size(); ++i) {
    const double lo = i == 0 ? 0 : h.bounds()[i - 1];
    const double hi = i < h.bounds().size() ? h.bounds()[i] : 1e9;
    const int a = int(std::floor(lo)) + 1, b = int(std::floor(hi));
    if (b < a || a > 17) continue;
    vals.push_back(float(h.counts()[i]));
    raw.push_back(h.counts()[i]);
    peak = std::max(peak, vals.back());
    labels.push_back(a == b ? std::to_string(a) : std::to_string(a) + "-" + std::to_string(std::min(b, 17)));
  }
  while (!vals.empty() && raw.back() == 0 && vals.size() > 4) {  // trailing empty lengths say nothing
    vals.pop_back();
    labels.pop_back();
    raw.pop_back();
  }
  if (h.count() == 0) {
    empty_box(size, "no verifications yet");
    return;
  }
  bar_chart("acclen", vals, labels, peak, size, kBlockInUse, [&](size_t i) {
    return labels[i] + " tokens per verify: " + format_count(raw[i]) + " times";
  });
}

void per_request(const Snapshot& s, float height) {
  ImGui::TextColored(kDim, "Live requests: draft acceptance");
  const float row = ImGui::GetTextLineHeight() + 8;
  int shown = 0, fits = std::max(1, int((height - row) / row));
  for (const auto& r : s.requests) {
    if (r.spec_proposed == 0) continue;
    if (shown++ >= fits) break;
    const double rate = double(r.spec_accepted) / double(r.spec_proposed);
    // Verifications are not counted per request; proposed / k estimates them when k held steady.
    const double verifies = r.spec_k > 0 ? double(r.spec_proposed) / r.spec_k : 0;
    char text[96];
    std::snprintf(text, sizeof text, "%.0f%%  ~%.1f tok/verify  k=%d", 100 * rate,
                  verifies > 0 ? 1 + double(r.spec_accepted) / verifies : 1.0, r.spec_k);
    char label[32];
    std::snprintf(label, sizeof label, "#%llu", (unsigned long long)r.id);
    meter(label, ImGui::CalcTextSize("#00000").x, float(rate), text, id_rgb(r.id), row - 2);
  }
  if (shown == 0) ImGui::TextColored(kDim, "(no request has drafts yet)");
}

void controller(const Snapshot& s, float height) {
  ImGui::TextColored(kDim, "Draft-length controller: k = %d now", s.spec_k);
  if (s.decisions.empty()) {
    ImGui::TextColored(kDim, "(no changes yet)");
    return;
  }
  const ImGuiTableFlags f = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerH | ImGuiTableFlags_ScrollY;
  if (!ImGui::BeginTable("##decisions", 3, f, ImVec2(0, std::max(60.0f, height - ImGui::GetTextLineHeightWithSpacing()))))
    return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("step", ImGuiTableColumnFlags_WidthFixed, ImGui::CalcTextSize("0000000").x);
  ImGui::TableSetupColumn("k", ImGuiTableColumnFlags_WidthFixed, ImGui::CalcTextSize("16 -> 16").x);
  ImGui::TableSetupColumn("reason", ImGuiTableColumnFlags_WidthStretch);
  ImGui::TableHeadersRow();
  for (auto it = s.decisions.rbegin(); it != s.decisions.rend(); ++it) {  // newest first
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ImGui::Text("%llu", (unsigned long long)it->step);
    ImGui::TableNextColumn();
    const ImVec4 col = it->to_k > it->from_k ? ImVec4(0.45f, 0.8f, 0.5f, 1) : ImVec4(0.95f, 0.55f, 0.45f, 1);
    ImGui::TextColored(col, "%d -> %d", it->from_k, it->to_k);
    ImGui::TableNextColumn();
    ImGui::TextUnformatted(it->reason.c_str());
  }
  ImGui::EndTable();
}

}  // namespace

void draw_speculation(const Snapshot& s, UiState& ui) {
  spec_summary(s);
  const float w = ImGui::GetContentRegionAvail().x;
  const float h = ImGui::GetContentRegionAvail().y;
  const float line = ImGui::GetTextLineHeightWithSpacing();
  ImGui::TextColored(kDim, "Acceptance rate per verify step (moving average of 8; last %zu steps)", s.accept_rate_history.size());
  LineChartSpec spec;
  spec.x_label = "verify step";
  line_chart("accrate", smoothed(s.accept_rate_history, 8), ImVec2(w, std::max(50.0f, h * 0.24f)), spec);
  const float row_h = std::max(60.0f, h * 0.30f);
  const float half = (w - ImGui::GetStyle().ItemSpacing.x) / 2;
  ImGui::BeginGroup();
  ImGui::TextColored(kDim, "Acceptance by draft position");
  by_position(s, ImVec2(half, row_h));
  ImGui::EndGroup();
  ImGui::SameLine();
  ImGui::BeginGroup();
  ImGui::TextColored(kDim, "Tokens emitted per verify (accepted + 1)");
  accept_lengths(s.hist.accept_len, ImVec2(half, row_h));
  ImGui::EndGroup();
  const float rest = ImGui::GetContentRegionAvail().y - line * 0.2f;
  ImGui::BeginChild("##perreq", ImVec2(half, rest), false, ImGuiWindowFlags_NoScrollbar);
  per_request(s, rest);
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("##ctrl", ImVec2(half, rest), false, ImGuiWindowFlags_NoScrollbar);
  controller(s, rest);
  ImGui::EndChild();
  (void)ui;
}

}  // namespace pagoda::ui
