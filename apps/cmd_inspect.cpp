// `pagoda inspect`: the live desktop inspector. In-process (an engine on a model plus a synthetic
// workload) or remote (--connect to a server's SSE feed); --screenshot renders one frame to PNG,
// --bench-steps measures engine steps/s with and without the inspector attached.
#include <fmt/core.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "apps/cli_common.h"
#include "apps/engine_options.h"
#include "apps/bench/batch_run.h"
#include "ui/inprocess_source.h"
#include "ui/inspector_app.h"
#include "ui/remote_source.h"

namespace pagoda::cli {
namespace {

constexpr int kExitNoDisplay = 3;  // no X display or no OpenGL: tests skip on this

struct InspectOptions {
  std::string model = default_model_path();
  std::string prompts_file, tenants;
  double rate = 4;
  int32_t n = 64;
  uint64_t seed = 1;
  EngineOptions engine = [] {
    EngineOptions e;
    e.kv_blocks = 384;
    e.max_running = 16;
    return e;
  }();
  std::string connect, api_key;
  std::string screenshot;
  uint64_t steps = 0;
  double step_dt = 0.01;
  int width = 1600, height = 1000, fps = 0;  // 0: from the renderer (ui::kSoftwareFps / kHardwareFps)
  std::string color_by = "state";
  int32_t pin_block = -1;
  uint64_t bench_steps = 0;
  int bench_repeats = 2;
};

// A built-in workload: two story openings that many requests share (prefix reuse), each with
// different continuations, so the block map shows shared, cached and private blocks at once.
std::vector<std::string> default_prompts() {
  const std::string a = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park "
                        "with her friends. One day, ";
  const std::string b = "Tom and his dog Max went to the beach. The sun was hot and the sea was blue. ";
  return {a + "she found a shiny red ball.", a + "she saw a big bird in a tree.", b + "Max ran into the water.",
          a + "her mom gave her a cake.", b + "Tom built a big sand castle.", a + "it started to rain.",
          b + "They saw a little crab.", a + "she met a friendly cat."};
}

Result<ui::Workload> build_workload(const InspectOptions& o) {
  Request defaults;
  defaults.max_tokens = o.n;
  ui::Workload w;
  if (o.prompts_file.empty()) {
    for (const auto& p : default_prompts()) {
      Request r = defaults;
      r.prompt = p;
      w.prompts.push_back(std::move(r));
    }
  } else {
    auto reqs = read_prompts_file(o.prompts_file, defaults);
    if (!reqs) return reqs.take_error();
    w.prompts = std::move(*reqs);
  }
  std::stringstream ss(o.tenants);
  for (std::string t; std::getline(ss, t, ',');)
    if (!t.empty()) w.tenants.push_back(t);
  w.rate = o.rate;
  w.seed = o.seed;
  return w;
}

// Models and backend outlive every engine built on them (the benchmark builds several).
struct Loaded {
  BackendPtr be;
  std::unique_ptr<LoadedModel> model, draft;
};

Result<Loaded> load_all(const InspectOptions& o) {
  Loaded l;
  auto be = open_backend(backend_options(o.engine), false);
  if (!be) return be.take_error();
  l.be = std::move(*be);
  auto m = load_model(o.model, *l.be, false, DigestAt::Background);
  if (!m) return m.take_error();
  l.model = std::move(*m);
  if (!o.engine.draft.empty()) {
    auto d = load_model(o.engine.draft, *l.be, false, DigestAt::Never);
    if (!d) return make_error("draft model: " + d.error());
    l.draft = std::move(*d);
  }
  return l;
}

// `stop_after`: pause once that many steps ran; `virtual_clock`: arrivals by step, not wall time.
Result<std::unique_ptr<ui::InProcessSource>> make_source(const InspectOptions& o, Loaded& l, uint64_t stop_after,
                                                         bool virtual_clock) {
  auto cfg = engine_config(o.engine);
  if (!cfg) return cfg.take_error();
  auto work = build_workload(o);
  if (!work) return work.take_error();
  auto e = Engine::create(*l.model, *l.be, *cfg, l.draft.get());
  if (!e) return e.take_error();
  ui::InProcessOptions io;
  io.virtual_step_s = virtual_clock ? o.step_dt : 0;
  io.stop_after_steps = stop_after;
  io.spec_adaptive = cfg->spec.adaptive;
  io.label = o.model + (o.engine.draft.empty() ? "" : "  +  draft " + o.engine.draft) +
             (o.engine.ngram > 0 ? "  +  " + std::to_string(o.engine.ngram) + "-gram drafter" : "");
  return std::make_unique<ui::InProcessSource>(std::move(*e), std::move(*work), io);
}

ui::AppOptions app_options(const InspectOptions& o) {
  ui::AppOptions a;
  a.width = o.width;
  a.height = o.height;
  a.max_fps = o.fps;
  a.screenshot = o.screenshot;
  a.initial.color_by = o.color_by == "request" ? ui::ColorBy::Request
                       : o.color_by == "tenant" ? ui::ColorBy::Tenant : ui::ColorBy::State;
  a.initial.pinned_block = o.pin_block;
  return a;
}

int finish(const Result<ui::AppStats>& r, const InspectOptions& o) {
  if (!r) {
    fmt::print(stderr, "error: {}\n", r.error());
    return r.error().rfind(ui::kNoDisplay, 0) == 0 ? kExitNoDisplay : 1;
  }
  if (!o.screenshot.empty()) fmt::print(stderr, "wrote {} and {}.json\n", o.screenshot, o.screenshot);
  return 0;
}

// Says which cap the window runs with when the user left it to the renderer.
void announce(const ui::AppStats& s, const InspectOptions& o) {
  if (o.fps > 0 || !o.screenshot.empty()) return;
  fmt::print(stderr, "inspector: OpenGL renderer \"{}\"{}; frames capped at {} fps (--fps to change)\n", s.renderer,
             s.software ? " draws on the CPU" : "", s.fps_cap);
}

int run_remote(const InspectOptions& o) {
  ui::RemoteOptions ro;
  ro.url = o.connect;
  ro.api_key = o.api_key;
  ui::RemoteSource src(ro);
  src.start();
  auto r = ui::run_inspector(src, app_options(o), [&](const ui::AppStats& s) { announce(s, o); });
  src.stop();
  return finish(r, o);
}

int run_local(const InspectOptions& o) {
  auto l = load_all(o);
  if (!l) return fail(l.error());
  // A screenshot after N steps uses the virtual clock, so step N looks the same on any machine.
  const bool shot = !o.screenshot.empty();
  auto src = make_source(o, *l, o.steps, shot && o.steps > 0);
  if (!src) return fail(src.error());
  (*src)->start();
  auto r = ui::run_inspector(**src, app_options(o), [&](const ui::AppStats& s) { announce(s, o); });
  (*src)->stop();
  return finish(r, o);
}

struct BenchRun {
  double steps_per_s = 0;
  ui::ThreadUsage engine;  // where the engine thread's time went
  ui::AppStats ui;
};

// One run: the source pauses itself at `bench_steps`; the clock starts with its thread.
Result<BenchRun> bench_once(const InspectOptions& o, Loaded& l, bool with_ui) {
  auto src = make_source(o, l, o.bench_steps, true);
  if (!src) return src.take_error();
  ui::InProcessSource& s = **src;
  BenchRun run;
  auto t0 = std::chrono::steady_clock::now();
  if (with_ui) {
    ui::AppOptions a = app_options(o);
    a.screenshot.clear();
    bool started = false;
    // Started from the first frame, so window and font set-up are not counted against the engine.
    a.until = [&] {
      if (!started) {
        started = true;
        t0 = std::chrono::steady_clock::now();
        s.start();
      }
      return s.capture_ready();
    };
    auto r = ui::run_inspector(s, a);
    if (!r) return r.take_error();
    run.ui = *r;
  } else {
    s.start();
    while (!s.capture_ready()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const double secs = std::chrono::duration<double>(s.target_reached_at() - t0).count();
  run.engine = s.driver_usage();
  s.stop();
  run.steps_per_s = double(o.bench_steps) / secs;
  return run;
}

void print_run(int i, const char* what, const BenchRun& r) {
  const ui::ThreadUsage& u = r.engine;
  const double w = std::max(1e-9, u.wall_s);
  fmt::print("  run {} {:<18} {:8.1f} steps/s | engine thread: {:4.1f}% on a CPU, {:4.1f}% waiting for a CPU, "
             "{:4.1f}% blocked", i, what, r.steps_per_s, 100 * u.cpu_s / w, 100 * u.runqueue_s / w, 100 * u.blocked_s() / w);
  if (r.ui.frames)
    fmt::print(" | UI {} frames, {:.0f} fps (cap {}{})", r.ui.frames, r.ui.seconds > 0 ? r.ui.frames / r.ui.seconds : 0.0,
               r.ui.fps_cap, r.ui.software ? ", software GL" : "");
  fmt::print("\n");
}

int run_bench(const InspectOptions& o) {
  auto l = load_all(o);
  if (!l) return fail(l.error());
  fmt::print("inspector attach benchmark: {} engine steps per run, same workload (arrivals on a virtual clock of "
             "{} s/step, rate {}/s), backend {}, UI frame cap {}\n", o.bench_steps, o.step_dt, o.rate,
             l->be->info().name, o.fps > 0 ? std::to_string(o.fps) + " fps" : "auto (10 fps on software GL, 60 otherwise)");
  double best_without = 0, best_with = 0;
  for (int i = 0; i < o.bench_repeats; ++i) {
    auto a = bench_once(o, *l, false);
    if (!a) return fail(a.error());
    print_run(i + 1, "without inspector:", *a);
    auto b = bench_once(o, *l, true);
    if (!b) {
      fmt::print(stderr, "error: {}\n", b.error());
      return b.error().rfind(ui::kNoDisplay, 0) == 0 ? kExitNoDisplay : 1;
    }
    print_run(i + 1, "with inspector:", *b);
    best_without = std::max(best_without, a->steps_per_s);
    best_with = std::max(best_with, b->steps_per_s);
  }
  fmt::print("best without: {:.1f} steps/s | best with: {:.1f} steps/s | ratio with/without: {:.3f}\n", best_without,
             best_with, best_with / best_without);
  return 0;
}

void add_options(CLI::App* cmd, InspectOptions& o) {
  cmd->add_option("-m,--model", o.model, "GGUF model for the in-process engine")->capture_default_str();
  cmd->add_option("--prompts", o.prompts_file, "Workload prompts: one per line, or JSONL {\"prompt\", \"tenant\", ...} "
                  "(default: built-in prefix-sharing stories)");
  cmd->add_option("--rate", o.rate, "Mean request arrivals per second (Poisson); 0 = every prompt once")->capture_default_str()->check(CLI::Range(0.0, 10000.0));
  cmd->add_option("--tenants", o.tenants, "Comma-separated tenants assigned round-robin to prompts without one");
  cmd->add_option("-n,--n-predict", o.n, "Max tokens per request")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--seed", o.seed, "Workload seed (arrivals and sampling)")->capture_default_str();
  add_engine_options(cmd, o.engine, kSpeculationFlags | kKvBlocksFlag | kBlockSizeFlag | kMaxRunningFlag | kBackendFlags);
  cmd->add_option("--connect", o.connect, "Inspect a running server instead (http://host:port)");
  cmd->add_option("--api-key", o.api_key, "Bearer token for --connect");
  cmd->add_option("--screenshot", o.screenshot, "Render one frame to this PNG (plus PNG.json with panel rectangles) and exit");
  cmd->add_option("--steps", o.steps, "Engine steps to run before the screenshot (live: pause after them)");
  cmd->add_option("--step-dt", o.step_dt, "Virtual seconds per step for --steps/--bench-steps arrivals")->capture_default_str()->check(CLI::Range(1e-6, 10.0));
  cmd->add_option("--width", o.width, "Window width")->capture_default_str()->check(CLI::Range(320, 8192));
  cmd->add_option("--height", o.height, "Window height")->capture_default_str()->check(CLI::Range(240, 8192));
  cmd->add_option("--fps", o.fps, "UI frame cap; 0 = automatic: 10 when OpenGL is a software renderer (it draws on the engine's cores), 60 on a GPU")->capture_default_str()->check(CLI::Range(0, 1000));
  cmd->add_option("--color-by", o.color_by, "Block map colouring")->capture_default_str()->check(CLI::IsMember({"state", "request", "tenant"}));
  cmd->add_option("--pin-block", o.pin_block, "Show this block's tooltip without a mouse (screenshots)");
  cmd->add_option("--bench-steps", o.bench_steps, "Benchmark: engine steps/s with vs without the inspector");
  cmd->add_option("--bench-repeats", o.bench_repeats, "Benchmark runs of each kind")->capture_default_str()->check(CLI::Range(1, 100));
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "Live inspector: KV block map, speculation, requests and latency");
  add_options(cmd, *o);
  cmd->callback([o] {
    int rc = 0;
    if (o->connect.empty())  // every engine setting checked before a model loads
      if (auto st = validate_engine_options(o->engine); !st) throw CLI::RuntimeError(fail(st.error()));
    if (!o->connect.empty()) rc = run_remote(*o);
    else if (o->bench_steps > 0) rc = run_bench(*o);
    else rc = run_local(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
