// InProcessSource: an Engine driven by a synthetic workload (prompts cycled at Poisson arrivals,
// spread over tenants) on its own thread. The UI reads published snapshots and posts Commands.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/engine/engine.h"
#include "ui/data_source.h"

namespace pagoda::ui {

struct Workload {
  std::vector<Request> prompts;      // cycled in order
  std::vector<std::string> tenants;  // assigned round-robin to prompts that name none
  double rate = 4;                   // mean arrivals per second; 0 = every prompt once, at start
  uint64_t seed = 1;
};

struct InProcessOptions {
  // > 0: arrivals follow a virtual clock advancing this many seconds per engine step, so the same
  // workload produces the same engine state at step N on any machine (screenshots, benchmarks).
  double virtual_step_s = 0;
  uint64_t stop_after_steps = 0;  // > 0: pause the engine once this many steps ran
  std::string label;              // shown as the source name (model paths, drafter)
  bool spec_adaptive = false;     // the draft-length policy the engine was created with
};

// Poisson arrival times on the source's clock; re-drawn from `now` when the rate changes.
class PoissonArrivals {
 public:
  PoissonArrivals(double rate, uint64_t seed) : rate_(rate), rng_(seed) {}
  void set_rate(double rate, double now);
  // Arrivals due at or before `now`; advances past them.
  int take_due(double now);
  double next_time() const { return next_; }
  double rate() const { return rate_; }

 private:
  double draw();
  double rate_;
  std::mt19937_64 rng_;
  double next_ = 0;
  bool primed_ = false;
};

// Where the driver thread's wall time went: on a CPU, runnable but waiting for one (contention),
// or neither (sleeping or blocked on a lock). Linux schedstat; zeros elsewhere.
struct ThreadUsage {
  double wall_s = 0, cpu_s = 0, runqueue_s = 0;
  double blocked_s() const { return wall_s > cpu_s + runqueue_s ? wall_s - cpu_s - runqueue_s : 0; }
};

class InProcessSource final : public DataSource {
 public:
  // `engine` must outlive nothing it references beyond this source (caller keeps model/backend).
  InProcessSource(std::unique_ptr<Engine> engine, Workload w, InProcessOptions o);
  ~InProcessSource() override;

  void start();  // the driver thread
  void stop();
  // Synchronous driving for tests and tools that want no thread (must not be started).
  Status advance(uint64_t steps);

  std::shared_ptr<const Snapshot> latest() const override { return engine_->snapshot(); }
  std::string name() const override { return opts_.label.empty() ? "in-process engine" : opts_.label; }
  std::string status() const override;
  SourceControls controls() const override;
  void send(Command c) override;
  bool capture_ready() const override;

  uint64_t steps() const { return steps_.load(); }
  // The driver thread from start() until stop_after_steps was reached (benchmarks).
  ThreadUsage driver_usage() const;
  // When stop_after_steps was reached (benchmarks time runs by it); epoch if not yet.
  std::chrono::steady_clock::time_point target_reached_at() const {
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(target_ns_.load()));
  }
  Engine& engine() { return *engine_; }

 private:
  void loop();
  void apply(const Command& c);
  void submit_arrivals();
  void submit_prompt(Request r);
  Status step_once();
  double clock_s() const;
  bool target_reached() const { return opts_.stop_after_steps > 0 && steps_.load() >= opts_.stop_after_steps; }

  std::unique_ptr<Engine> engine_;
  Workload work_;
  InProcessOptions opts_;
  PoissonArrivals arrivals_;
  size_t next_prompt_ = 0;
  bool burst_done_ = false;
  bool paused_ = false;       // driver thread's view; the engine is told the same
  uint64_t step_credit_ = 0;  // single steps requested while paused
  std::chrono::steady_clock::time_point t0_;

  mutable std::mutex mu_;  // guards inbox_, status_, controls_
  std::condition_variable cv_;
  std::deque<Command> inbox_;
  std::string status_;
  SourceControls controls_;
  ThreadUsage usage_start_, usage_target_;
  std::atomic<uint64_t> steps_{0};
  std::atomic<std::chrono::steady_clock::rep> target_ns_{0};
  std::atomic<bool> quit_{false};
  std::thread thread_;
};

}  // namespace pagoda::ui
