#include "ui/theme.h"

#include <filesystem>

namespace pagoda::ui {
namespace {

ImFont* g_big = nullptr;

const char* find_font(const char* const* candidates) {
  for (const char* const* p = candidates; *p; ++p)
    if (std::filesystem::exists(*p)) return *p;
  return nullptr;
}

}  // namespace

bool load_fonts(float size_px) {
  ImGuiIO& io = ImGui::GetIO();
  g_big = nullptr;
  static const char* const kRegular[] = {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                                         "/usr/share/fonts/TTF/DejaVuSans.ttf", nullptr};
  static const char* const kBold[] = {"/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                                      "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf", nullptr};
  const char* regular = find_font(kRegular);
  if (!regular || !io.Fonts->AddFontFromFileTTF(regular, size_px)) {
    io.Fonts->AddFontDefault();
    return false;
  }
  const char* bold = find_font(kBold);
  g_big = io.Fonts->AddFontFromFileTTF(bold ? bold : regular, size_px * 1.45f);
  return true;
}

ImFont* big_font() { return g_big; }

void big_text(const char* text) {
  if (g_big) ImGui::PushFont(g_big);
  ImGui::TextUnformatted(text);
  if (g_big) ImGui::PopFont();
}

void apply_theme() {
  ImGui::StyleColorsDark();
  ImGuiStyle& st = ImGui::GetStyle();
  st.WindowRounding = 5;
  st.FrameRounding = 3;
  st.GrabRounding = 3;
  st.WindowPadding = ImVec2(10, 8);
  st.ItemSpacing = ImVec2(8, 5);
  st.CellPadding = ImVec2(5, 2);
  st.WindowBorderSize = 1;
  ImVec4* c = st.Colors;
  c[ImGuiCol_WindowBg] = ImVec4(0.085f, 0.092f, 0.11f, 1.0f);
  c[ImGuiCol_TitleBg] = ImVec4(0.12f, 0.14f, 0.18f, 1.0f);
  c[ImGuiCol_TitleBgActive] = ImVec4(0.16f, 0.22f, 0.32f, 1.0f);
  c[ImGuiCol_Border] = ImVec4(0.22f, 0.25f, 0.31f, 1.0f);
  c[ImGuiCol_FrameBg] = ImVec4(0.15f, 0.17f, 0.21f, 1.0f);
  c[ImGuiCol_TableHeaderBg] = ImVec4(0.15f, 0.17f, 0.22f, 1.0f);
  c[ImGuiCol_TableRowBgAlt] = ImVec4(1, 1, 1, 0.03f);
  c[ImGuiCol_PopupBg] = ImVec4(0.10f, 0.11f, 0.14f, 0.97f);
}

}  // namespace pagoda::ui
