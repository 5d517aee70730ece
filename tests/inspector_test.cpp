// The inspector: its data sources (in-process engine driver, remote SSE client), its panels as
// pure functions of a snapshot, and `pagoda inspect --screenshot` as a person would see it.
#include <gtest/gtest.h>

#include <httplib.h>
#include <imgui.h>
#include <stb_image.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "backends/backend.h"
#include "core/telemetry/snapshot_json.h"
#include "ui/inprocess_source.h"
#include "ui/inspector_app.h"
#include "ui/layout.h"
#include "ui/palette.h"
#include "ui/panels.h"
#include "ui/remote_source.h"
#include "tests/shell.h"
#include "ui/sse_decoder.h"

namespace {

namespace fs = std::filesystem;
using namespace pagoda;
using namespace pagoda::ui;

const std::string kBin = std::string(PAGODA_BINARY_DIR) + "/pagoda";
const std::string kModels = std::string(PAGODA_MODELS_DIR);
const std::string kStories = PAGODA_STORIES_GGUF;

using pagoda::testing::ShellResult;

ShellResult sh(const std::string& cmd) { return pagoda::testing::run_shell(cmd); }

bool have_program(const char* name) { return sh(std::string("command -v ") + name + " >/dev/null").code == 0; }

template <typename Pred>
bool wait_for(Pred p, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (p()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return p();
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("pagoda_inspector_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// A snapshot with every block state, shared blocks, live requests, histograms and decisions.
Snapshot busy_snapshot(uint64_t step) {
  Snapshot s;
  s.step = step;
  s.uptime_s = 0.5 * double(step);
  s.num_blocks = 96;
  s.blocks.resize(96);
  for (int i = 0; i < 96; ++i) {
    BlockInfo& b = s.blocks[size_t(i)];
    b.state = uint8_t(i % 3);
    b.refcount = b.state == 1 ? 1 + i % 4 : 0;
    b.owner = b.state == 1 ? uint64_t(1 + i % 5) : 0;
    b.tenant = b.owner ? tenant_hash(i % 2 ? "alice" : "bob") : 0;
    b.key_prefix = b.state ? 0xa1b2c3d4u + uint32_t(i) : 0;
    b.pos_start = b.owner ? 16 * (i % 7) : -1;
    b.last_use = uint64_t(i * 3);
  }
  s.blocks_free = s.blocks_in_use = s.blocks_cached = 32;
  s.kv_usage = 1.0 / 3.0;
  s.waiting = 2;
  s.running = 3;
  for (uint64_t id = 1; id <= 5; ++id) {
    RequestInfo r;
    r.id = id;
    r.tenant = id % 2 ? "alice" : "bob";
    r.state = id <= 3 ? "decode" : "waiting";
    r.prompt_tokens = 40;
    r.cached_tokens = 32;
    r.generated = int32_t(id * 3);
    r.max_tokens = 64;
    r.ttft_ms = id <= 3 ? 2.5 * double(id) : -1;
    r.tok_s = 300;
    r.spec_proposed = 40 * id;
    r.spec_accepted = 25 * id;
    r.spec_k = 4;
    s.requests.push_back(r);
  }
  s.counters.prefix_hit_tokens = 900;
  s.counters.prefix_query_tokens = 1200;
  s.counters.evictions = 7;
  s.counters.spec_proposed_by_pos = {100, 100, 100, 100};
  s.counters.spec_accepted_by_pos = {80, 60, 40, 20};
  for (int i = 0; i < 50; ++i) {
    s.hist.ttft.observe(0.002 * (1 + i % 7));
    s.hist.itl.observe(0.0005 * (1 + i % 5));
    s.hist.accept_len.observe(1 + i % 5);
    for (auto& h : s.hist.stage) h.observe(1e-5 * (1 + i % 3));
  }
  for (int i = 0; i < 40; ++i) {
    s.accept_rate_history.push_back(0.5f + 0.3f * std::sin(float(i)));
    s.kv_usage_history.push_back(float(i) / 40.0f);
  }
  s.decisions.push_back({64, 4, 3, "lower: acceptance 0.39 < 0.40"});
  s.spec_k = 3;
  s.spec_mode = "draft";
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Panels are pure functions of a snapshot: no window, no GL, no engine.

class PanelsHeadless : public ::testing::Test {
 protected:
  void SetUp() override {
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;
    io.DisplaySize = ImVec2(1600, 1000);
    io.DeltaTime = 1.0f / 60.0f;
    unsigned char* px = nullptr;
    int w = 0, h = 0;
    io.Fonts->GetTexDataAsRGBA32(&px, &w, &h);  // a built atlas is all NewFrame needs; nothing renders it
  }
  void TearDown() override { ImGui::DestroyContext(); }

  // Draws the dashboard for a few frames; returns the vertices emitted by the last one.
  int draw(const Snapshot& s, UiState& ui, const SourceView& src, std::vector<Command>& cmds, int frames = 3) {
    int vtx = 0;
    for (int f = 0; f < frames; ++f) {
      ImGui::NewFrame();
      const ImVec2 d = ImGui::GetIO().DisplaySize;
      draw_dashboard(s, src, ui, compute_layout(d.x, d.y), cmds);
      ImGui::Render();
      vtx = ImGui::GetDrawData()->TotalVtxCount;
    }
    return vtx;
  }
};

TEST_F(PanelsHeadless, EmptySnapshotDrawsEveryPanelWithoutCrashing) {
  UiState ui;
  std::vector<Command> cmds;
  EXPECT_GT(draw(Snapshot{}, ui, SourceView{}, cmds), 0);
  EXPECT_TRUE(cmds.empty()) << "drawing alone must not issue commands";
}

TEST_F(PanelsHeadless, BusySnapshotDrawsInEveryColourModeAndTinyWindows) {
  const Snapshot s = busy_snapshot(10);
  SourceView src{"test", "ok", {}};
  src.controls.caps = {true, true, true, true};
  src.controls.spec_enabled = true;
  for (ColorBy by : {ColorBy::State, ColorBy::Request, ColorBy::Tenant}) {
    UiState ui;
    ui.color_by = by;
    ui.pinned_block = 4;
    std::vector<Command> cmds;
    EXPECT_GT(draw(s, ui, src, cmds), 1000);
    EXPECT_GT(ui.kv_grid.w, 0);
    EXPECT_TRUE(cmds.empty());
  }
  ImGui::GetIO().DisplaySize = ImVec2(320, 240);
  UiState ui;
  std::vector<Command> cmds;
  EXPECT_GT(draw(s, ui, src, cmds), 0);
}

TEST_F(PanelsHeadless, ObserveTurnsCountersIntoRecentRates) {
  UiState ui;
  Snapshot a = busy_snapshot(1), b = busy_snapshot(3);
  b.counters.prefix_hit_tokens += 100;
  b.counters.evictions += 4;
  observe(a, ui);
  observe(b, ui);
  observe(b, ui);  // the same snapshot twice adds nothing
  EXPECT_EQ(ui.recent.hit_tokens, 100u);
  EXPECT_EQ(ui.recent.evictions, 4u);
  EXPECT_DOUBLE_EQ(ui.recent.window_s, 1.0);
  EXPECT_EQ(ui.queue_history.size(), 2u);
}

TEST(InspectorApp, SoftwareRenderersAreRecognized) {
  for (const char* r : {"llvmpipe (LLVM 15.0.6, 256 bits)", "softpipe", "Google SwiftShader", "Software Rasterizer"})
    EXPECT_TRUE(ui::is_software_renderer(r)) << r;
  for (const char* r : {"NVIDIA GeForce RTX 4090/PCIe/SSE2", "AMD Radeon RX 7900 XTX (radeonsi, navi31, LLVM 15.0.7)",
                        "Mesa Intel(R) UHD Graphics 630 (CFL GT2)", "unknown"})
    EXPECT_FALSE(ui::is_software_renderer(r)) << r;
}

TEST(Layout, PanelsTileTheWindowWithoutOverlap) {
  const PanelRects p = compute_layout(1600, 1000);
  const Rect all[] = {p.kv, p.spec, p.requests, p.controls};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_GT(all[i].w, 100);
    EXPECT_LE(all[i].x + all[i].w, 1600);
    EXPECT_LE(all[i].y + all[i].h, 1000);
    for (size_t j = i + 1; j < 4; ++j) {
      const bool apart = all[i].x + all[i].w <= all[j].x || all[j].x + all[j].w <= all[i].x ||
                         all[i].y + all[i].h <= all[j].y || all[j].y + all[j].h <= all[i].y;
      EXPECT_TRUE(apart) << i << " overlaps " << j;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Remote mode: SSE framing and a canned stream from a local server.

TEST(SseDecoder, EventsSplitAcrossChunksCommentsAndCrlf) {
  const std::string stream = ": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\ndata: line1\r\ndata: line2\r\n\r\ndata: [DONE]\n\n";
  SseDecoder dec;
  std::vector<std::string> got;
  for (size_t i = 0; i < stream.size(); i += 3)
    for (auto& e : dec.feed(std::string_view(stream).substr(i, 3))) got.push_back(e);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "{\"a\":1}");
  EXPECT_EQ(got[1], "line1\nline2");
  EXPECT_EQ(got[2], "[DONE]");
}

class CannedServer {
 public:
  explicit CannedServer(std::string body) : body_(std::move(body)) {
    svr_.Get("/v1/inspect/stream", [this](const httplib::Request&, httplib::Response& res) {
      ++connections_;
      res.set_chunked_content_provider("text/event-stream", [this](size_t, httplib::DataSink& sink) {
        // Odd-sized writes: a snapshot spans several reads on the client, as on a real network.
        for (size_t i = 0; i < body_.size(); i += 997) sink.write(body_.data() + i, std::min<size_t>(997, body_.size() - i));
        sink.done();
        return true;
      });
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    wait_for([this] { return svr_.is_running(); }, 10);
  }
  ~CannedServer() {
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }

 private:
  std::string body_;
  httplib::Server svr_;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(RemoteSource, ParsesCannedSnapshotStream) {
  std::string body = ": keep-alive\n\n";
  for (uint64_t step = 1; step <= 3; ++step) body += "data: " + snapshot_to_json(busy_snapshot(step)).dump() + "\n\n";
  body += "data: {this is not json\n\n";
  CannedServer server(body);
  RemoteOptions o;
  o.url = server.url();
  o.reconnect_s = 30;  // one connection is the whole test
  RemoteSource src(o);
  EXPECT_FALSE(src.capture_ready());
  src.start();
  ASSERT_TRUE(wait_for([&] { return src.events() >= 3 && src.errors() >= 1; }, 20)) << src.status();
  const auto s = src.latest();
  EXPECT_EQ(s->step, 3u);
  EXPECT_EQ(s->blocks.size(), 96u);
  EXPECT_EQ(s->blocks[1].refcount, 2);
  EXPECT_EQ(s->requests.size(), 5u);
  EXPECT_EQ(s->requests[1].tenant, "bob");
  EXPECT_EQ(s->counters.spec_accepted_by_pos, (std::vector<uint64_t>{80, 60, 40, 20}));
  EXPECT_EQ(s->hist.ttft.count(), 50u);
  EXPECT_EQ(s->decisions.at(0).reason, "lower: acceptance 0.39 < 0.40");
  EXPECT_TRUE(src.capture_ready());
  EXPECT_EQ(src.errors(), 1u) << "the malformed event is skipped, not fatal";
  src.stop();
}

TEST(RemoteSource, UnreachableServerReportsAndStopsPromptly) {
  RemoteOptions o;
  o.url = "http://127.0.0.1:1";  // nothing listens on port 1
  RemoteSource src(o);
  src.start();
  EXPECT_TRUE(wait_for([&] { return src.status().find("disconnected") != std::string::npos; }, 10)) << src.status();
  EXPECT_EQ(src.latest()->step, 0u) << "an empty snapshot until data arrives";
  const auto t0 = std::chrono::steady_clock::now();
  src.stop();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0);
}

// ---------------------------------------------------------------------------------------------
// In-process mode: the engine on its own thread, driven by Commands.

TEST(PoissonArrivals, MeanRateMatchesOverALongWindow) {
  PoissonArrivals a(10.0, 7);
  int n = 0;
  for (int t = 0; t <= 1000; ++t) n += a.take_due(double(t) * 0.1);
  EXPECT_NEAR(n, 1000, 100) << "seed 7";
}

class InProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kStories)) GTEST_SKIP() << "missing " << kStories;
    auto be = create_backend("cpu");
    ASSERT_TRUE(be) << be.error();
    be_ = std::move(*be);
    auto m = LoadedModel::load(kStories, *be_);
    ASSERT_TRUE(m) << m.error();
    model_ = std::move(*m);
  }

  // `virtual_clock`: arrivals by step count (deterministic); otherwise by wall time, as when live.
  std::unique_ptr<InProcessSource> make(double rate, uint64_t stop_after, bool virtual_clock = true) {
    EngineConfig cfg;
    cfg.num_blocks = 64;
    cfg.spec.mode = "ngram";
    auto e = Engine::create(*model_, *be_, cfg);
    EXPECT_TRUE(e) << e.error();
    Workload w;
    Request r;
    r.max_tokens = 24;
    for (const char* p : {"Once upon a time, there was a little girl named Lily.", "Once upon a time, there was a dog."}) {
      r.prompt = p;
      w.prompts.push_back(r);
    }
    w.tenants = {"alice", "bob"};
    w.rate = rate;
    InProcessOptions o;
    o.virtual_step_s = virtual_clock ? 0.01 : 0;
    o.stop_after_steps = stop_after;
    return std::make_unique<InProcessSource>(std::move(*e), w, o);
  }

  BackendPtr be_;
  std::unique_ptr<LoadedModel> model_;
};

TEST_F(InProcess, StepsOnItsOwnThreadAndPausesAtTheTarget) {
  auto src = make(50, 40);
  EXPECT_FALSE(src->capture_ready());
  src->start();
  ASSERT_TRUE(wait_for([&] { return src->capture_ready(); }, 60));
  ASSERT_TRUE(wait_for([&] { return src->latest()->paused; }, 5));
  const auto s = src->latest();
  EXPECT_EQ(s->step, 40u);
  EXPECT_GT(s->counters.requests_submitted, 5u);
  EXPECT_GT(s->counters.generated_tokens, 0u);
  EXPECT_EQ(src->controls().submitted, s->counters.requests_submitted);
  std::set<std::string> tenants;
  for (const auto& r : s->requests) tenants.insert(r.tenant);
  EXPECT_GE(tenants.size(), 1u);
  src->stop();
}

TEST_F(InProcess, CommandsPauseStepSubmitAndChangePolicy) {
  auto src = make(0, 0, false);  // every prompt once, then only what we submit; wall clock as when live
  src->start();
  Command pause;
  pause.kind = Command::Kind::Pause;
  src->send(pause);
  ASSERT_TRUE(wait_for([&] { return src->latest()->paused; }, 10));
  const uint64_t before = src->steps();
  Command step;
  step.kind = Command::Kind::Step;
  step.n = 3;
  src->send(step);
  ASSERT_TRUE(wait_for([&] { return src->steps() == before + 3; }, 10));
  EXPECT_EQ(src->latest()->step, before + 3) << "single steps publish at once";
  Command policy;
  policy.kind = Command::Kind::SpecPolicy;
  policy.n = 2;
  src->send(policy);
  Command submit;
  submit.kind = Command::Kind::Submit;
  submit.prompt = "Tom had a red ball.";
  submit.tenant = "carol";
  src->send(submit);
  Command resume;
  resume.kind = Command::Kind::Resume;
  src->send(resume);
  ASSERT_TRUE(wait_for([&] { return src->controls().submitted == 3 && src->latest()->spec_k == 2; }, 30)) << src->status();
  ASSERT_TRUE(wait_for([&] { return src->engine().idle() && src->latest()->counters.requests_finished == 3; }, 60));
  EXPECT_FALSE(src->controls().adaptive);
  Command rate;
  rate.kind = Command::Kind::SetRate;
  rate.rate = 200;
  src->send(rate);
  EXPECT_TRUE(wait_for([&] { return src->controls().submitted >= 10; }, 30)) << "Poisson arrivals at 200/s on the wall clock";
  EXPECT_DOUBLE_EQ(src->controls().rate, 200);
  // The UI side never waits on the engine: latest() is a pointer copy.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) (void)src->latest();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.5);
  src->stop();
}

// ---------------------------------------------------------------------------------------------
// The real window under Xvfb: what a person sees.

namespace {

struct Png {
  int w = 0, h = 0;
  std::vector<uint8_t> px;  // RGB
  const uint8_t* at(int x, int y) const { return px.data() + (size_t(y) * size_t(w) + size_t(x)) * 3; }
};

Png load_png(const std::string& path) {
  Png p;
  int n = 0;
  unsigned char* d = stbi_load(path.c_str(), &p.w, &p.h, &n, 3);
  if (!d) return p;
  p.px.assign(d, d + size_t(p.w) * size_t(p.h) * 3);
  stbi_image_free(d);
  return p;
}

struct RegionStats {
  double luma_stddev = 0;
  size_t distinct = 0;
};

RegionStats region_stats(const Png& p, const nlohmann::json& r) {
  const int x0 = r["x"], y0 = r["y"], x1 = std::min(p.w, x0 + int(r["w"])), y1 = std::min(p.h, y0 + int(r["h"]));
  double sum = 0, sq = 0;
  size_t n = 0;
  std::set<uint32_t> colours;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      const uint8_t* c = p.at(x, y);
      const double l = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
      sum += l;
      sq += l * l;
      ++n;
      if (colours.size() < 100000) colours.insert(uint32_t(c[0]) << 16 | uint32_t(c[1]) << 8 | c[2]);
    }
  RegionStats s;
  if (n) s.luma_stddev = std::sqrt(std::max(0.0, sq / double(n) - (sum / double(n)) * (sum / double(n))));
  s.distinct = colours.size();
  return s;
}

size_t count_colour(const Png& p, const nlohmann::json& r, Rgb c) {
  size_t n = 0;
  const int x0 = r["x"], y0 = r["y"], x1 = std::min(p.w, x0 + int(r["w"])), y1 = std::min(p.h, y0 + int(r["h"]));
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      const uint8_t* q = p.at(x, y);
      n += q[0] == c.r && q[1] == c.g && q[2] == c.b;
    }
  return n;
}

// The workload: two shared story openings across two tenants, drafted by the small draft model
// (or the n-gram drafter when the draft model's files are missing).
std::string speculative_workload_args(const fs::path& dir) {
  std::ofstream f(dir / "prompts.jsonl");
  const std::string a = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ";
  const std::string b = "Tom and his dog went to the beach. The sun was hot and the sea was blue. ";
  const char* tails[] = {"One day she found a ball.", "Then it rained.", "They saw a crab.", "Max ran fast."};
  for (int i = 0; i < 8; ++i)
    f << nlohmann::json{{"prompt", (i % 2 ? b : a) + tails[i % 4]}, {"tenant", i % 3 ? "alice" : "bob"}}.dump() << "\n";
  std::string spec = "--ngram 3 --spec-k 3";
  const std::string bin = kModels + "/llama2xs-260K.bin", tok = kModels + "/tok512.bin";
  if (fs::exists(bin) && fs::exists(tok)) {
    const auto draft = dir / "draft.gguf";
    if (sh(kBin + " convert " + bin + " --tokenizer " + tok + " -o " + draft.string()).code == 0)
      spec = "--draft " + draft.string() + " --spec-k auto";
  }
  return "-m " + kStories + " --prompts " + (dir / "prompts.jsonl").string() + " " + spec + " --rate 60 --kv-blocks 192 -n 48 -t 1";
}

#define REQUIRE_XVFB()                                                                           \
  if (!have_program("xvfb-run") || !have_program("Xvfb"))                                        \
    GTEST_SKIP() << "no xvfb-run/Xvfb on PATH: the windowed inspector cannot be tested headless"; \
  if (!fs::exists(kStories)) GTEST_SKIP() << "missing " << kStories

const char* kXvfb = "xvfb-run -a -s '-screen 0 1920x1200x24' ";

}  // namespace

TEST(InspectorScreenshot, EveryPanelHasContentAndTheBlockMapShowsInUseAndCached) {
  REQUIRE_XVFB();
  const fs::path dir = temp_dir("shot");
  const std::string png = (dir / "inspect.png").string();
  const ShellResult r = sh(kXvfb + kBin + " inspect --screenshot " + png + " --steps 150 " + speculative_workload_args(dir));
  if (r.code == 3) GTEST_SKIP() << "no usable OpenGL under Xvfb: " << r.out;
  ASSERT_EQ(r.code, 0) << r.out;
  const Png img = load_png(png);
  ASSERT_GT(img.w, 0) << "cannot read " << png;
  std::ifstream jf(png + ".json");
  const auto side = nlohmann::json::parse(jf);
  EXPECT_EQ(side["width"].get<int>(), img.w);
  EXPECT_EQ(side["snapshot"]["step"].get<uint64_t>(), 150u);
  for (const char* panel : {"kv", "spec", "requests", "controls"}) {
    const RegionStats st = region_stats(img, side["panels"][panel]);
    std::printf("panel %-9s luma stddev %.1f, %zu distinct colours\n", panel, st.luma_stddev, st.distinct);
    EXPECT_GT(st.luma_stddev, 12.0) << panel << " looks blank";
    EXPECT_GT(st.distinct, 40u) << panel << " has too few colours to hold text and charts";
  }
  const auto& grid = side["kv_grid"];
  const size_t in_use = count_colour(img, grid, kBlockInUse), cached = count_colour(img, grid, kBlockCached);
  std::printf("block map: %zu in-use pixels, %zu cached pixels (snapshot: %d in use, %d cached)\n", in_use, cached,
              side["snapshot"]["blocks_in_use"].get<int>(), side["snapshot"]["blocks_cached"].get<int>());
  ASSERT_GT(side["snapshot"]["blocks_in_use"].get<int>(), 0) << "the workload should still be running at step 150";
  ASSERT_GT(side["snapshot"]["blocks_cached"].get<int>(), 0) << "finished requests should leave cached blocks";
  EXPECT_GT(in_use, 30u);
  EXPECT_GT(cached, 30u);
  fs::remove_all(dir);
}

TEST(InspectorScreenshot, MissingModelIsAClearError) {
  REQUIRE_XVFB();
  const ShellResult r = sh(std::string(kXvfb) + kBin + " inspect -m /nonexistent.gguf --screenshot /tmp/never.png --steps 1");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("nonexistent"), std::string::npos) << r.out;
}

// Not a timed test: prints engine steps/s with and without the inspector for docs/inspector.md.
TEST(InspectorBench, EngineStepsPerSecondWithAndWithoutInspector) {
  REQUIRE_XVFB();
  const fs::path dir = temp_dir("bench");
  // Short so the suite stays quick; docs/inspector.md has a longer run of the same command.
  const ShellResult r = sh(kXvfb + kBin + " inspect --bench-steps 300 --bench-repeats 1 " + speculative_workload_args(dir));
  if (r.code == 3) GTEST_SKIP() << "no usable OpenGL under Xvfb: " << r.out;
  std::printf("%s", r.out.c_str());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("ratio with/without"), std::string::npos);
  // Xvfb's OpenGL is Mesa's llvmpipe: the automatic cap must have picked the software rate.
  EXPECT_NE(r.out.find("(cap 10, software GL)"), std::string::npos) << r.out;
  fs::remove_all(dir);
}
