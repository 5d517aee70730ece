#include "ui/inspector_app.h"

#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>

#include <chrono>
#include <thread>

#include "ui/layout.h"
#include "ui/palette.h"
#include "ui/panels.h"
#include "ui/screenshot.h"
#include "ui/theme.h"

namespace pagoda::ui {
namespace {

using Clock = std::chrono::steady_clock;

std::string g_glfw_error;
void on_glfw_error(int code, const char* msg) { g_glfw_error = std::to_string(code) + " " + (msg ? msg : ""); }

// Owns the window, the GL context and the ImGui context; tears them down in reverse order.
class Window {
 public:
  ~Window() {
    if (imgui_gl_) ImGui_ImplOpenGL3_Shutdown();
    if (imgui_glfw_) ImGui_ImplGlfw_Shutdown();
    if (ImGui::GetCurrentContext()) ImGui::DestroyContext();
    if (win_) glfwDestroyWindow(win_);
    if (glfw_) glfwTerminate();
  }

  Status open(const AppOptions& o) {
    glfwSetErrorCallback(on_glfw_error);
    if (!glfwInit()) return make_error(std::string(kNoDisplay) + "glfwInit failed (" + g_glfw_error + "); is DISPLAY set?");
    glfw_ = true;
    glfwWindowHint(GLFW_VISIBLE, o.screenshot.empty() ? GLFW_TRUE : GLFW_FALSE);
    // GL 3.0 with GLSL 130 is what every desktop driver (and Mesa's llvmpipe) offers.
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
    win_ = glfwCreateWindow(o.width, o.height, o.title.c_str(), nullptr, nullptr);
    if (!win_) return make_error(std::string(kNoDisplay) + "cannot create an OpenGL 3.0 window (" + g_glfw_error + ")");
    glfwMakeContextCurrent(win_);
    glfwSwapInterval(o.screenshot.empty() ? 1 : 0);
    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGui::GetIO().IniFilename = nullptr;  // the layout is fixed; nothing worth persisting
    apply_theme();
    load_fonts(o.font_px);
    imgui_glfw_ = ImGui_ImplGlfw_InitForOpenGL(win_, true);
    imgui_gl_ = ImGui_ImplOpenGL3_Init("#version 130");
    if (!imgui_glfw_ || !imgui_gl_) return make_error(std::string(kNoDisplay) + "ImGui backend init failed");
    return {};
  }

  GLFWwindow* get() const { return win_; }

 private:
  GLFWwindow* win_ = nullptr;
  bool glfw_ = false, imgui_glfw_ = false, imgui_gl_ = false;
};

// One frame: snapshot in, panels drawn, commands out, pixels rendered (not yet presented).
PanelRects render_frame(GLFWwindow* win, DataSource& src, UiState& ui) {
  glfwPollEvents();
  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  ImGui::NewFrame();
  const std::shared_ptr<const Snapshot> snap = src.latest();
  const SourceView view{src.name(), src.status(), src.controls()};
  const ImVec2 size = ImGui::GetIO().DisplaySize;
  const PanelRects rects = compute_layout(size.x, size.y);
  std::vector<Command> cmds;
  draw_dashboard(*snap, view, ui, rects, cmds);
  for (Command& c : cmds) src.send(std::move(c));
  ImGui::Render();
  int fw = 0, fh = 0;
  glfwGetFramebufferSize(win, &fw, &fh);
  glViewport(0, 0, fw, fh);
  glClearColor(0.05f, 0.055f, 0.065f, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
  return rects;
}

nlohmann::json sidecar(GLFWwindow* win, const PanelRects& rects, const UiState& ui, const Snapshot& s) {
  int ww = 0, wh = 0, fw = 0, fh = 0;
  glfwGetWindowSize(win, &ww, &wh);
  glfwGetFramebufferSize(win, &fw, &fh);
  const float scale = ww > 0 ? float(fw) / float(ww) : 1.0f;
  auto rgb = [](Rgb c) { return nlohmann::json::array({c.r, c.g, c.b}); };
  return {{"width", fw}, {"height", fh}, {"panels", layout_json(rects, scale)}, {"kv_grid", rect_json(ui.kv_grid, scale)},
          {"colors", {{"free", rgb(kBlockFree)}, {"in_use", rgb(kBlockInUse)}, {"cached", rgb(kBlockCached)}}},
          {"snapshot", {{"step", s.step}, {"blocks_in_use", s.blocks_in_use}, {"blocks_cached", s.blocks_cached},
                        {"blocks_free", s.blocks_free}, {"requests", s.requests.size()}, {"spec_mode", s.spec_mode}}}};
}

// Frames per second over the last 30 frames, shown in the controls panel.
struct FpsMeter {
  Clock::time_point t0 = Clock::now();
  int frames = 0;
  void tick(UiState& ui) {
    if (++frames < 30) return;
    const auto now = Clock::now();
    ui.fps = float(frames / std::chrono::duration<double>(now - t0).count());
    t0 = now;
    frames = 0;
  }
};

void pace(Clock::time_point& next, int max_fps) {
  if (max_fps <= 0) return;
  next += std::chrono::microseconds(1000000 / max_fps);
  const auto now = Clock::now();
  if (next > now) std::this_thread::sleep_until(next);
  else next = now;  // fell behind: do not try to catch up with a burst of frames
}

Status capture(GLFWwindow* win, DataSource& src, UiState& ui, const AppOptions& o, AppStats& stats) {
  const auto t0 = Clock::now();
  auto next = t0;
  FpsMeter fps;
  while (!src.capture_ready()) {
    if (std::chrono::duration<double>(Clock::now() - t0).count() > o.capture_timeout_s)
      return make_error("screenshot: the data source was not ready after " + std::to_string(int(o.capture_timeout_s)) + " s");
    render_frame(win, src, ui);
    glfwSwapBuffers(win);
    ++stats.frames;
    fps.tick(ui);
    pace(next, o.max_fps);
  }
  // A few frames more: tables and auto-sized items settle on their second frame.
  PanelRects rects;
  for (int i = 0; i < 4; ++i) {
    rects = render_frame(win, src, ui);
    if (i < 3) glfwSwapBuffers(win);
    ++stats.frames;
  }
  int fw = 0, fh = 0;
  glfwGetFramebufferSize(win, &fw, &fh);
  const Image img = read_back_buffer(fw, fh);
  return write_screenshot(o.screenshot, img, sidecar(win, rects, ui, *src.latest()));
}

}  // namespace

bool is_software_renderer(const std::string& renderer) {
  for (const char* name : {"llvmpipe", "softpipe", "SwiftShader", "Software Rasterizer", "swrast"})
    if (renderer.find(name) != std::string::npos) return true;
  return false;
}

Result<AppStats> run_inspector(DataSource& src, const AppOptions& opts, const std::function<void(const AppStats&)>& on_open) {
  Window w;
  if (auto st = w.open(opts); !st) return st.take_error();
  UiState ui = opts.initial;
  AppStats stats;
  const auto* r = reinterpret_cast<const char*>(glGetString(GL_RENDERER));
  stats.renderer = r ? r : "unknown";
  stats.software = is_software_renderer(stats.renderer);
  AppOptions o = opts;
  if (o.max_fps <= 0) o.max_fps = stats.software ? kSoftwareFps : kHardwareFps;
  stats.fps_cap = o.max_fps;
  if (on_open) on_open(stats);
  const auto t0 = Clock::now();
  if (!o.screenshot.empty()) {
    if (auto st = capture(w.get(), src, ui, o, stats); !st) return st.take_error();
    stats.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return stats;
  }
  auto next = t0;
  FpsMeter fps;
  while (!glfwWindowShouldClose(w.get()) && !(o.until && o.until())) {
    render_frame(w.get(), src, ui);
    glfwSwapBuffers(w.get());
    ++stats.frames;
    fps.tick(ui);
    pace(next, o.max_fps);
  }
  stats.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return stats;
}

}  // namespace pagoda::ui
