// KV cache panel: every block as a cell (coloured by state, owning request or tenant), shared
// blocks marked with their refcount, a tooltip per block, prefix-cache counters and usage over time.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <unordered_map>

#include "ui/charts.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace pagoda::ui {
namespace {

const char* state_name(uint8_t st) { return st == 1 ? "in use" : st == 2 ? "cached" : "free"; }

// Tenant names by hash, so a block's tooltip can say whose it is (the snapshot stores hashes).
std::unordered_map<uint32_t, std::string> tenant_names(const Snapshot& s) {
  std::unordered_map<uint32_t, std::string> m;
  for (const auto& r : s.requests) m[tenant_hash(r.tenant)] = r.tenant.empty() ? "default" : r.tenant;
  return m;
}

Rgb dimmed(Rgb c) { return {uint8_t(c.r * 0.45f), uint8_t(c.g * 0.45f), uint8_t(c.b * 0.45f)}; }

Rgb cell_color(const BlockInfo& b, ColorBy by) {
  if (by == ColorBy::State || b.state == 0) return block_state_rgb(b.state);
  // Blocks nobody holds (cached) keep a dim state colour so owned ones stand out.
  if (b.owner == 0) return dimmed(block_state_rgb(b.state));
  if (by == ColorBy::Request) return id_rgb(b.owner);
  return b.tenant == 0 ? kNeutral : id_rgb(b.tenant);
}

void block_tooltip(const Snapshot& s, int32_t id, uint64_t newest_use) {
  const BlockInfo& b = s.blocks[size_t(id)];
  ImGui::Text("Block %d", id);
  ImGui::SameLine();
  ImGui::TextColored(ImVec4(0.6f, 0.65f, 0.72f, 1), "%s%s", state_name(b.state),
                     b.refcount > 1 ? (", shared by " + std::to_string(b.refcount)).c_str() : "");
  ImGui::Separator();
  if (b.owner) {
    const auto names = tenant_names(s);
    const auto it = names.find(b.tenant);
    ImGui::Text("owner:     request #%llu (%s)", (unsigned long long)b.owner,
                it != names.end() ? it->second.c_str() : b.tenant ? "other tenant" : "default");
  } else {
    ImGui::TextUnformatted(b.state == 2 ? "owner:     none (kept for prefix reuse)" : "owner:     none");
  }
  if (b.pos_start >= 0) ImGui::Text("positions: %d-%d", b.pos_start, b.pos_start + s.block_size - 1);
  if (b.key_prefix) ImGui::Text("key:       %08x...", b.key_prefix);
  else ImGui::TextUnformatted("key:       none (block not full yet)");
  ImGui::Text("refcount:  %d", b.refcount);
  if (b.last_use) ImGui::Text("last use:  tick %llu (%llu ago)", (unsigned long long)b.last_use,
                              (unsigned long long)(newest_use - std::min(newest_use, b.last_use)));
}

void header(const Snapshot& s, UiState& ui) {
  const int32_t n = std::max(1, s.num_blocks);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * s.kv_usage);
  big_text(buf);
  ImGui::SameLine();
  ImGui::TextColored(ImVec4(0.6f, 0.65f, 0.72f, 1), "in use   |  %d blocks x %d tokens", s.num_blocks, s.block_size);
  swatch(kBlockInUse, "in use " + format_count(uint64_t(s.blocks_in_use)));
  ImGui::SameLine(0, 14);
  swatch(kBlockCached, "cached " + format_count(uint64_t(s.blocks_cached)));
  ImGui::SameLine(0, 14);
  swatch(kBlockFree, "free " + format_count(uint64_t(s.blocks_free)));
  ImGui::SameLine(0, 14);
  ImGui::TextColored(ImVec4(0.6f, 0.65f, 0.72f, 1), "(%.0f%% reusable)", 100.0 * s.blocks_cached / n);
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("Colour by");
  ImGui::SameLine();
  int by = int(ui.color_by);
  ImGui::RadioButton("state", &by, int(ColorBy::State));
  ImGui::SameLine();
  ImGui::RadioButton("request", &by, int(ColorBy::Request));
  ImGui::SameLine();
  ImGui::RadioButton("tenant", &by, int(ColorBy::Tenant));
  ui.color_by = ColorBy(by);
  ImGui::SameLine(0, 16);
  ImGui::TextColored(ImVec4(0.6f, 0.65f, 0.72f, 1), "n = refcount of a shared block");
}

struct Grid {
  ImVec2 origin;
  float cell = 0;
  int cols = 1;
};

// Largest square cell that fits all blocks in the area.
Grid fit_grid(int n, ImVec2 origin, ImVec2 avail) {
  Grid g;
  g.origin = origin;
  g.cell = std::clamp(std::floor(std::sqrt(avail.x * avail.y / float(std::max(1, n)))), 3.0f, 28.0f);
  for (;; g.cell -= 1) {
    g.cols = std::max(1, int(avail.x / g.cell));
    const int rows = (n + g.cols - 1) / g.cols;
    if (float(rows) * g.cell <= avail.y || g.cell <= 3) break;
  }
  return g;
}

void draw_cells(const Snapshot& s, const UiState& ui, const Grid& g, int hovered) {
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const float pad = g.cell >= 6 ? 1.0f : 0.0f;
  const uint64_t hovered_owner = hovered >= 0 ? s.blocks[size_t(hovered)].owner : 0;
  const bool numbers = g.cell >= ImGui::GetFontSize() + 1;
  for (size_t i = 0; i < s.blocks.size(); ++i) {
    const BlockInfo& b = s.blocks[i];
    const float x = g.origin.x + float(int(i) % g.cols) * g.cell, y = g.origin.y + float(int(i) / g.cols) * g.cell;
    const ImVec2 a(x + pad, y + pad), c(x + g.cell - pad, y + g.cell - pad);
    dl->AddRectFilled(a, c, packed(cell_color(b, ui.color_by)));
    if (b.refcount > 1) {
      if (numbers) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "%d", std::min(b.refcount, 99));
        const ImVec2 ts = ImGui::CalcTextSize(buf);
        dl->AddText(ImVec2((a.x + c.x - ts.x) / 2, (a.y + c.y - ts.y) / 2), IM_COL32(10, 14, 24, 255), buf);
      } else {
        dl->AddRect(a, c, IM_COL32(255, 255, 255, 230));
      }
    }
    const bool same_owner = hovered_owner != 0 && b.owner == hovered_owner;
    if (int(i) == hovered || int(i) == ui.pinned_block) dl->AddRect(a, c, IM_COL32(255, 255, 255, 255), 0, 0, 2.0f);
    else if (same_owner) dl->AddRect(a, c, IM_COL32(255, 255, 255, 140));
  }
}

void block_grid(const Snapshot& s, UiState& ui, float reserve_below) {
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  ImVec2 avail = ImGui::GetContentRegionAvail();
  avail.y = std::max(40.0f, avail.y - reserve_below);
  if (s.blocks.empty()) {
    empty_box(avail, "no KV blocks yet");
    ui.kv_grid = {origin.x, origin.y, avail.x, avail.y};
    return;
  }
  const Grid g = fit_grid(int(s.blocks.size()), origin, avail);
  const int rows = (int(s.blocks.size()) + g.cols - 1) / g.cols;
  const ImVec2 used(float(g.cols) * g.cell, float(rows) * g.cell);
  ImGui::InvisibleButton("##kvgrid", used);
  ui.kv_grid = {origin.x, origin.y, used.x, used.y};
  int hovered = -1;
  if (ImGui::IsItemHovered()) {
    const ImVec2 m = ImGui::GetIO().MousePos;
    const int cx = int((m.x - origin.x) / g.cell), cy = int((m.y - origin.y) / g.cell);
    const int id = cy * g.cols + cx;
    if (cx >= 0 && cx < g.cols && id >= 0 && id < int(s.blocks.size())) hovered = id;
  }
  draw_cells(s, ui, g, hovered);
  uint64_t newest = 0;
  for (const auto& b : s.blocks) newest = std::max(newest, b.last_use);
  if (hovered >= 0) {
    ImGui::BeginTooltip();
    block_tooltip(s, hovered, newest);
    ImGui::EndTooltip();
  } else if (ui.pinned_block >= 0 && ui.pinned_block < int(s.blocks.size())) {
    // A pinned tooltip sits beside its cell, where a hovering mouse would have put it.
    const int id = ui.pinned_block;
    ImGui::SetNextWindowPos(ImVec2(origin.x + float(id % g.cols + 1) * g.cell + 8, origin.y + float(id / g.cols + 1) * g.cell + 8));
    ImGui::BeginTooltip();
    block_tooltip(s, id, newest);
    ImGui::EndTooltip();
  }
  ImGui::Dummy(ImVec2(0, std::max(0.0f, avail.y - used.y - ImGui::GetStyle().ItemSpacing.y)));
}

std::string per_s(double v, const char* unit) {
  char buf[48];
  std::snprintf(buf, sizeof buf, v >= 10 ? "+%.0f %s/s" : "+%.1f %s/s", v, unit);
  return buf;
}

void cache_counters(const Snapshot& s, const UiState& ui) {
  const Counters& c = s.counters;
  const RecentRates& r = ui.recent;
  if (!ImGui::BeginTable("##kvstats", 4, ImGuiTableFlags_SizingStretchSame)) return;
  ImGui::TableNextColumn();
  char total[32], recent[32];
  std::snprintf(total, sizeof total, "%.1f%%", c.prefix_query_tokens ? 100.0 * c.prefix_hit_tokens / c.prefix_query_tokens : 0.0);
  std::snprintf(recent, sizeof recent, "%.0f%% recent", r.query_tokens ? 100.0 * r.hit_tokens / r.query_tokens : 0.0);
  stat_card("Prefix hit rate", total, recent, kAccent);
  ImGui::TableNextColumn();
  stat_card("Prefix hits (tokens)", format_count(c.prefix_hit_tokens), per_s(r.per_s(r.hit_tokens), "tok"), kAccent);
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("%s of %s prompt tokens were served from the prefix cache instead of prefill",
                      format_count(c.avoided_prefill_tokens).c_str(), format_count(c.prompt_tokens).c_str());
  ImGui::TableNextColumn();
  stat_card("Evictions", format_count(c.evictions), per_s(r.per_s(r.evictions), "blk"), r.evictions ? kWarn : kNeutral);
  ImGui::TableNextColumn();
  stat_card("Preemptions", format_count(c.preemptions), per_s(r.per_s(r.preemptions), "req"), r.preemptions ? kWarn : kNeutral);
  ImGui::EndTable();
}

}  // namespace

void draw_kv_map(const Snapshot& s, UiState& ui) {
  header(s, ui);
  const float line = ImGui::GetTextLineHeightWithSpacing();
  const float big = big_font() ? big_font()->FontSize : ImGui::GetFontSize();
  const float chart_h = std::clamp(ImGui::GetContentRegionAvail().y * 0.2f, 50.0f, 110.0f);
  const float below = line * 3 + big + chart_h + 14;
  block_grid(s, ui, below);
  cache_counters(s, ui);
  ImGui::TextColored(ImVec4(0.6f, 0.65f, 0.72f, 1), "KV blocks in use, per step (last %zu)", s.kv_usage_history.size());
  LineChartSpec spec;
  spec.color = kBlockInUse;
  spec.x_label = "step";
  line_chart("kvuse", s.kv_usage_history, ImVec2(ImGui::GetContentRegionAvail().x, chart_h), spec);
}

}  // namespace pagoda::ui
