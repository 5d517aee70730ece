// Controls panel: pause/step, the draft-length policy, the workload's request rate and a prompt
// box. It only emits Commands; the data source decides when (and whether) to apply them.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cstdio>

#include "ui/charts.h"
#include "ui/panels.h"
#include "ui/theme.h"

namespace pagoda::ui {
namespace {

const ImVec4 kDim(0.6f, 0.65f, 0.72f, 1);

Command command(Command::Kind k, int32_t n = 1) {
  Command c;
  c.kind = k;
  c.n = n;
  return c;
}

void source_header(const Snapshot& s, const SourceView& src, const UiState& ui) {
  ImGui::TextColored(kDim, "Source");
  ImGui::SameLine();
  ImGui::TextWrapped("%s", src.name.c_str());
  ImGui::TextColored(kDim, "Status");
  ImGui::SameLine();
  ImGui::TextColored(s.paused ? ImVec4(1.0f, 0.72f, 0.3f, 1) : ImVec4(0.55f, 0.85f, 0.6f, 1), "%s", src.status.c_str());
  if (ui.fps > 0) ImGui::TextColored(kDim, "Step %llu  |  uptime %.1fs  |  UI %.0f fps", (unsigned long long)s.step, s.uptime_s, ui.fps);
  else ImGui::TextColored(kDim, "Step %llu  |  uptime %.1fs", (unsigned long long)s.step, s.uptime_s);
}

void engine_buttons(const Snapshot& s, const SourceControls& c, UiState& ui, std::vector<Command>& out) {
  ImGui::BeginDisabled(!c.caps.pause_step);
  if (ImGui::Button(s.paused ? "Resume" : "Pause", ImVec2(90, 0))) {
    out.push_back(command(s.paused ? Command::Kind::Resume : Command::Kind::Pause));
    ui.last_action = s.paused ? "resumed" : "paused";
  }
  ImGui::SameLine();
  ImGui::BeginDisabled(!s.paused);
  if (ImGui::Button("Step", ImVec2(70, 0))) {
    out.push_back(command(Command::Kind::Step, 1));
    ui.last_action = "stepped once";
  }
  ImGui::SameLine();
  if (ImGui::Button("Step x10", ImVec2(80, 0))) {
    out.push_back(command(Command::Kind::Step, 10));
    ui.last_action = "stepped 10 times";
  }
  ImGui::EndDisabled();
  ImGui::EndDisabled();
  if (!c.caps.pause_step) ImGui::TextColored(kDim, "(read-only: the server's engine is not steered from here)");
}

void spec_policy(const SourceControls& c, UiState& ui, std::vector<Command>& out) {
  ImGui::TextColored(kDim, c.caps.spec_policy ? "Draft length policy" : "Draft length policy (in-process only)");
  ImGui::BeginDisabled(!c.caps.spec_policy || !c.spec_enabled);
  bool changed = false;
  int mode = ui.adaptive ? 1 : 0;
  changed |= ImGui::RadioButton("fixed k", &mode, 0);
  ImGui::SameLine();
  changed |= ImGui::RadioButton("adaptive (controller)", &mode, 1);
  ui.adaptive = mode == 1;
  ImGui::BeginDisabled(ui.adaptive);
  ImGui::SetNextItemWidth(-1);
  ImGui::SliderInt("##k", &ui.fixed_k, 0, 8, "k = %d draft tokens");
  changed |= ImGui::IsItemDeactivatedAfterEdit();
  ImGui::EndDisabled();
  if (changed) {
    Command c = command(Command::Kind::SpecPolicy, ui.fixed_k);
    c.adaptive = ui.adaptive;
    out.push_back(c);
    ui.last_action = ui.adaptive ? "draft length: adaptive" : "draft length: fixed k=" + std::to_string(ui.fixed_k);
  }
  ImGui::EndDisabled();
  if (!c.spec_enabled && c.caps.spec_policy) ImGui::TextColored(kDim, "(start with --draft or --ngram to speculate)");
}

void rate_slider(const SourceControls& c, UiState& ui, std::vector<Command>& out) {
  if (c.caps.rate) ImGui::TextColored(kDim, "Request rate (Poisson arrivals; %s submitted)", format_count(c.submitted).c_str());
  else ImGui::TextColored(kDim, "Request rate (in-process workloads only)");
  ImGui::BeginDisabled(!c.caps.rate);
  ImGui::SetNextItemWidth(-1);
  ImGui::SliderFloat("##rate", &ui.rate, 0.0f, 100.0f, "%.1f requests/s", ImGuiSliderFlags_Logarithmic);
  // Applied on release: dragging would otherwise restart the arrival process every frame.
  if (ImGui::IsItemDeactivatedAfterEdit()) {
    Command c = command(Command::Kind::SetRate);
    c.rate = ui.rate;
    out.push_back(c);
    char buf[48];
    std::snprintf(buf, sizeof buf, "rate set to %.1f/s", ui.rate);
    ui.last_action = buf;
  }
  ImGui::EndDisabled();
}

void prompt_box(const SourceControls& c, UiState& ui, std::vector<Command>& out) {
  ImGui::TextColored(kDim, c.caps.submit ? "Submit a prompt" : "Submit a prompt (in-process only)");
  ImGui::BeginDisabled(!c.caps.submit);
  const float button_h = ImGui::GetFrameHeightWithSpacing() + ImGui::GetTextLineHeightWithSpacing();
  const float h = std::max(ImGui::GetTextLineHeight() * 2.5f, ImGui::GetContentRegionAvail().y - button_h);
  ImGui::InputTextMultiline("##prompt", &ui.prompt, ImVec2(-1, h));
  ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - 100);
  ImGui::InputTextWithHint("##tenant", "tenant (optional)", &ui.tenant);
  ImGui::SameLine();
  if (ImGui::Button("Submit", ImVec2(-1, 0)) && !ui.prompt.empty()) {
    Command c = command(Command::Kind::Submit);
    c.prompt = ui.prompt;
    c.tenant = ui.tenant;
    out.push_back(std::move(c));
    ui.last_action = "submitted a prompt" + (ui.tenant.empty() ? std::string() : " as " + ui.tenant);
  }
  ImGui::EndDisabled();
  ImGui::TextColored(kDim, "%s", ui.last_action.empty() ? " " : ("last: " + ui.last_action).c_str());
}

}  // namespace

void draw_controls(const Snapshot& s, const SourceView& src, UiState& ui, std::vector<Command>& out) {
  const SourceControls& c = src.controls;
  if (!ui.controls_synced) {  // the form starts from what the source is doing
    ui.rate = float(c.rate);
    ui.adaptive = c.adaptive;
    ui.fixed_k = c.fixed_k > 0 ? c.fixed_k : std::max(1, s.spec_k);
    ui.controls_synced = true;
  }
  // While the controller picks k, the slider follows it, so switching to fixed starts from there.
  if (c.adaptive && ui.adaptive && s.spec_k > 0) ui.fixed_k = s.spec_k;
  source_header(s, src, ui);
  ImGui::Separator();
  engine_buttons(s, c, ui, out);
  ImGui::Spacing();
  spec_policy(c, ui, out);
  ImGui::Spacing();
  rate_slider(c, ui, out);
  ImGui::Spacing();
  prompt_box(c, ui, out);
}

}  // namespace pagoda::ui
