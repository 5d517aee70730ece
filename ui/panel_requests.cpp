// Requests & latency panel: the live request table, TTFT and inter-token latency distributions,
// where step time goes by pipeline stage, and how long the queue is.
#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "ui/charts.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace pagoda::ui {
namespace {

const ImVec4 kDim(0.6f, 0.65f, 0.72f, 1);

ImVec4 state_color(const std::string& st) {
  if (st == "decode") return ImVec4(0.45f, 0.72f, 1.0f, 1);
  if (st == "prefill") return ImVec4(1.0f, 0.72f, 0.3f, 1);
  return kDim;
}

void summary(const Snapshot& s, const UiState& ui) {
  const Counters& c = s.counters;
  uint64_t rejected = 0;
  for (const auto& [why, n] : c.rejections) rejected += n;
  const RecentRates& r = ui.recent;
  if (!ImGui::BeginTable("##reqstats", 6, ImGuiTableFlags_SizingStretchSame)) return;
  char rate[48];
  ImGui::TableNextColumn();
  stat_card("Queue", std::to_string(s.waiting), "waiting to run", s.waiting ? kWarn : kNeutral);
  ImGui::TableNextColumn();
  stat_card("Running", std::to_string(s.running), "prefill + decode", kNeutral);
  ImGui::TableNextColumn();
  std::snprintf(rate, sizeof rate, "+%.1f/s", r.per_s(r.finished));
  stat_card("Finished", format_count(c.requests_finished), rate, kAccent);
  ImGui::TableNextColumn();
  stat_card("Submitted", format_count(c.requests_submitted), "since start", kNeutral);
  ImGui::TableNextColumn();
  stat_card("Rejected", format_count(rejected), "queue full, too long, ...", rejected ? kWarn : kNeutral);
  ImGui::TableNextColumn();
  std::snprintf(rate, sizeof rate, "%.0f", r.per_s(r.generated));
  stat_card("Generated tok/s", rate, format_count(c.generated_tokens) + " total", kAccent);
  ImGui::EndTable();
}

void request_row(const RequestInfo& r) {
  ImGui::TableNextRow();
  ImGui::TableNextColumn();
  ImGui::Text("%llu", (unsigned long long)r.id);
  ImGui::TableNextColumn();
  ImGui::TextUnformatted(r.tenant.empty() ? "default" : r.tenant.c_str());
  ImGui::TableNextColumn();
  ImGui::TextColored(state_color(r.state), "%s", r.state.c_str());
  ImGui::TableNextColumn();
  ImGui::Text("%d", r.prompt_tokens);
  ImGui::TableNextColumn();
  ImGui::Text("%d", r.cached_tokens);
  ImGui::TableNextColumn();
  ImGui::Text("%d/%d", r.generated, r.max_tokens);
  ImGui::TableNextColumn();
  if (r.ttft_ms >= 0) ImGui::TextUnformatted(format_duration(r.ttft_ms / 1e3).c_str());
  else ImGui::TextColored(kDim, "-");
  ImGui::TableNextColumn();
  if (r.tok_s > 0) ImGui::Text("%.0f", r.tok_s);
  else ImGui::TextColored(kDim, "-");
  ImGui::TableNextColumn();
  if (r.deadline_left_ms >= 0) ImGui::TextUnformatted(format_duration(r.deadline_left_ms / 1e3).c_str());
  else ImGui::TextColored(kDim, "none");
  ImGui::TableNextColumn();
  ImGui::Text("%d", r.blocks);
}

void request_table(const Snapshot& s, ImVec2 size) {
  ImGui::TextColored(kDim, "Live requests (%zu)", s.requests.size());
  const ImGuiTableFlags f = ImGuiTableFlags_RowBg | ImGuiTableFlags_ScrollY | ImGuiTableFlags_ScrollX |
                            ImGuiTableFlags_BordersOuterH | ImGuiTableFlags_SizingFixedFit;
  size.y -= ImGui::GetTextLineHeightWithSpacing();
  if (!ImGui::BeginTable("##requests", 10, f, size)) return;
  ImGui::TableSetupScrollFreeze(1, 1);
  for (const char* h : {"id", "tenant", "state", "prompt", "cached", "tokens", "TTFT", "tok/s", "deadline", "blocks"})
    ImGui::TableSetupColumn(h);
  ImGui::TableHeadersRow();
  if (s.requests.empty()) {
    ImGui::TableNextRow();
    ImGui::TableNextColumn();
    ImGui::TextColored(kDim, "(idle)");
  }
  for (const auto& r : s.requests) request_row(r);
  ImGui::EndTable();
}

void latency_hist(const char* title, const char* id, const Histogram& h, ImVec2 size, Rgb color) {
  ImGui::TextColored(kDim, "%s", title);
  if (h.count()) {
    ImGui::SameLine();
    ImGui::Text("p50 %s  p99 %s", format_duration(h.quantile(0.5)).c_str(), format_duration(h.quantile(0.99)).c_str());
  }
  histogram_chart(id, h, size, color, [](double b) { return format_duration(b); });
}

// Share of total pipeline time per stage, with the typical cost of one call.
void stages(const Snapshot& s) {
  ImGui::TextColored(kDim, "Time per pipeline stage (share of total)");
  double total = 0;
  for (const auto& h : s.hist.stage) total += h.sum();
  const float label_w = ImGui::CalcTextSize("normalize ").x;
  for (size_t i = 0; i < s.hist.stage.size(); ++i) {
    const Histogram& h = s.hist.stage[i];
    const double share = total > 0 ? h.sum() / total : 0;
    char text[96];
    if (h.count()) std::snprintf(text, sizeof text, share < 0.1 ? "%.1f%%  avg %s  p99 %s" : "%.0f%%  avg %s  p99 %s",
                                 100 * share, format_duration(h.mean()).c_str(), format_duration(h.quantile(0.99)).c_str());
    else std::snprintf(text, sizeof text, "not run yet");
    meter(stage_name(Stage(i)), label_w, float(share), text, i == size_t(Stage::Decode) ? kBlockInUse :
          i == size_t(Stage::Verify) ? kAccent : kNeutral);
  }
}

}  // namespace

void draw_requests(const Snapshot& s, UiState& ui) {
  summary(s, ui);
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float gap = ImGui::GetStyle().ItemSpacing.x;
  const float table_w = std::floor(avail.x * 0.49f);
  const float rest = avail.x - table_w - 2 * gap;
  const float col_w = std::floor(rest * 0.45f), stage_w = rest - col_w;  // stage meters carry the longer text
  // Grouped so SameLine() puts the next column level with the table's title, not its first row.
  ImGui::BeginGroup();
  request_table(s, ImVec2(table_w, avail.y));
  ImGui::EndGroup();
  ImGui::SameLine();
  ImGui::BeginGroup();
  const float line = ImGui::GetTextLineHeightWithSpacing();
  const float hist_h = (avail.y - 2 * line - ImGui::GetStyle().ItemSpacing.y * 3) / 2;
  latency_hist("TTFT", "ttft", s.hist.ttft, ImVec2(col_w, hist_h), kBlockInUse);
  latency_hist("Inter-token", "itl", s.hist.itl, ImVec2(col_w, hist_h), kAccent);
  ImGui::EndGroup();
  ImGui::SameLine();
  ImGui::BeginGroup();
  ImGui::BeginChild("##stages", ImVec2(stage_w, avail.y), false, ImGuiWindowFlags_NoScrollbar);
  stages(s);
  ImGui::Spacing();
  ImGui::TextColored(kDim, "Queue length (waiting requests)");
  LineChartSpec spec;
  spec.hi = 4;  // small queues still get a readable scale
  for (float q : ui.queue_history) spec.hi = std::max(spec.hi, q);
  spec.y_scale = 1;
  spec.y_suffix = "";
  spec.color = kWarn;
  spec.x_label = "snapshot";
  line_chart("queue", ui.queue_history, ImVec2(stage_w, std::max(40.0f, ImGui::GetContentRegionAvail().y - 4)), spec);
  ImGui::EndChild();
  ImGui::EndGroup();
}

}  // namespace pagoda::ui
