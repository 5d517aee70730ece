#include "ui/inprocess_source.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

namespace pagoda::ui {

using Clock = std::chrono::steady_clock;

namespace {

// The calling thread's clocks, cumulative.
ThreadUsage thread_clock() {
  ThreadUsage u;
  u.wall_s = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  if (FILE* f = std::fopen("/proc/thread-self/schedstat", "r")) {
    unsigned long long cpu = 0, wait = 0;
    if (std::fscanf(f, "%llu %llu", &cpu, &wait) == 2) {
      u.cpu_s = double(cpu) * 1e-9;
      u.runqueue_s = double(wait) * 1e-9;
    }
    std::fclose(f);
  }
  return u;
}

}  // namespace

double PoissonArrivals::draw() {
  // Exponential inter-arrival gaps make the arrival count in any interval Poisson-distributed.
  std::exponential_distribution<double> gap(rate_);
  return gap(rng_);
}

void PoissonArrivals::set_rate(double rate, double now) {
  rate_ = std::max(0.0, rate);
  primed_ = rate_ > 0;
  if (primed_) next_ = now + draw();
}

int PoissonArrivals::take_due(double now) {
  if (rate_ <= 0) return 0;
  if (!primed_) {
    primed_ = true;
    next_ = now;  // the first request arrives at once, so a fresh inspector has work to show
  }
  int n = 0;
  while (next_ <= now && n < 1000) {
    ++n;
    next_ += draw();
  }
  return n;
}

InProcessSource::InProcessSource(std::unique_ptr<Engine> engine, Workload w, InProcessOptions o)
    : engine_(std::move(engine)), work_(std::move(w)), opts_(std::move(o)), arrivals_(work_.rate, work_.seed) {
  t0_ = Clock::now();
  controls_.caps = {.pause_step = true, .submit = true, .spec_policy = true, .rate = true};
  controls_.rate = work_.rate;
  const auto snap = engine_->snapshot();
  controls_.spec_enabled = engine_->drafter() != nullptr;
  controls_.fixed_k = snap->spec_k;
  controls_.adaptive = opts_.spec_adaptive;
  status_ = "ready";
}

InProcessSource::~InProcessSource() { stop(); }

void InProcessSource::start() {
  if (thread_.joinable()) return;
  quit_ = false;
  thread_ = std::thread([this] { loop(); });
}

void InProcessSource::stop() {
  quit_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

double InProcessSource::clock_s() const {
  if (opts_.virtual_step_s > 0) return double(steps_.load()) * opts_.virtual_step_s;
  return std::chrono::duration<double>(Clock::now() - t0_).count();
}

void InProcessSource::send(Command c) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    inbox_.push_back(std::move(c));
  }
  cv_.notify_all();
}

void InProcessSource::submit_prompt(Request r) {
  const uint64_t n = controls_.submitted;  // only the driver thread writes it
  if (r.tenant.empty() && !work_.tenants.empty()) r.tenant = work_.tenants[n % work_.tenants.size()];
  // A distinct seed per arrival keeps repeated prompts from generating identical text.
  r.sampling.seed = work_.seed * 1000003ull + n;
  const SubmitResult res = engine_->submit(std::move(r), nullptr);
  std::lock_guard<std::mutex> lk(mu_);
  ++controls_.submitted;
  if (!res.ok()) status_ = "last request rejected: " + res.message;
}

void InProcessSource::submit_arrivals() {
  if (work_.prompts.empty()) return;
  if (work_.rate <= 0) {
    if (burst_done_) return;
    burst_done_ = true;
    for (const Request& r : work_.prompts) submit_prompt(r);
    return;
  }
  const int due = arrivals_.take_due(clock_s());
  for (int i = 0; i < due; ++i) {
    submit_prompt(work_.prompts[next_prompt_]);
    next_prompt_ = (next_prompt_ + 1) % work_.prompts.size();
  }
}

void InProcessSource::apply(const Command& c) {
  using K = Command::Kind;
  switch (c.kind) {
    case K::Pause:
      paused_ = true;
      engine_->set_paused(true);
      engine_->publish_snapshot();
      break;
    case K::Resume:
      paused_ = false;
      step_credit_ = 0;
      engine_->set_paused(false);
      // Arrivals that would have piled up while paused are dropped, not released as a burst.
      arrivals_.set_rate(work_.rate, clock_s());
      break;
    case K::Step:
      if (paused_) step_credit_ += uint64_t(std::max(1, c.n));
      break;
    case K::Submit: {
      Request r = work_.prompts.empty() ? Request{} : work_.prompts.front();
      r.prompt = c.prompt;
      r.tenant = c.tenant;
      submit_prompt(std::move(r));
      break;
    }
    case K::SpecPolicy: {
      // Safe here: set_spec_policy must run on the thread that steps the engine.
      engine_->set_spec_policy(c.n, c.adaptive);
      std::lock_guard<std::mutex> lk(mu_);
      controls_.adaptive = c.adaptive;
      controls_.fixed_k = c.n;
      break;
    }
    case K::SetRate: {
      work_.rate = std::max(0.0, c.rate);
      burst_done_ = true;  // a rate set by hand replaces the start-up burst
      arrivals_.set_rate(work_.rate, clock_s());
      std::lock_guard<std::mutex> lk(mu_);
      controls_.rate = work_.rate;
      break;
    }
  }
}

Status InProcessSource::step_once() {
  const bool single = paused_;
  if (single) engine_->set_paused(false);
  Status st = engine_->step();
  const uint64_t done = steps_.load() + 1;
  const bool at_target = opts_.stop_after_steps > 0 && done == opts_.stop_after_steps;
  if (at_target) {
    // The target's clocks are written before the step count that announces them: a reader polling
    // capture_ready() from another thread read them unset (negative usage shares in the inspector
    // benchmark) when the count was bumped first.
    target_ns_ = Clock::now().time_since_epoch().count();
    const ThreadUsage u = thread_clock();
    std::lock_guard<std::mutex> lk(mu_);
    usage_target_ = u;
  }
  if (single) {
    engine_->set_paused(true);
    engine_->publish_snapshot();  // a single step is always visible, whatever the publish interval
    if (step_credit_ > 0) --step_credit_;
  }
  if (at_target) {
    paused_ = true;
    engine_->set_paused(true);
    engine_->publish_snapshot();
  }
  // The count last, as the target's clocks above: a reader that sees it sees the step's snapshot
  // (with the count bumped first, a test reading the snapshot right after the count met the
  // previous step's under load).
  steps_.store(done);
  return st;
}

Status InProcessSource::advance(uint64_t steps) {
  for (uint64_t i = 0; i < steps; ++i) {
    submit_arrivals();
    if (auto st = step_once(); !st) return st;
  }
  engine_->publish_snapshot();
  return {};
}

void InProcessSource::loop() {
  {
    const ThreadUsage u = thread_clock();
    std::lock_guard<std::mutex> lk(mu_);
    usage_start_ = u;
  }
  auto last_publish = Clock::now();
  while (!quit_) {
    std::deque<Command> cmds;
    {
      std::lock_guard<std::mutex> lk(mu_);
      cmds.swap(inbox_);
    }
    for (const Command& c : cmds) apply(c);
    if (!paused_ || step_credit_ > 0) submit_arrivals();
    const bool can_step = !paused_ || step_credit_ > 0;
    // On the wall clock an idle engine has nothing to do until the next arrival; on the virtual
    // clock steps are time, so it keeps stepping to reach the next arrival.
    const bool idle_wait = opts_.virtual_step_s <= 0 && engine_->idle() && !paused_;
    if (!can_step || idle_wait) {
      if (Clock::now() - last_publish > std::chrono::milliseconds(200)) {
        engine_->publish_snapshot();  // keeps uptime and the paused flag current for the UI
        last_publish = Clock::now();
      }
      double wait_s = 0.05;
      if (idle_wait && arrivals_.rate() > 0) wait_s = std::clamp(arrivals_.next_time() - clock_s(), 0.0, 0.05);
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::duration<double>(wait_s), [&] { return quit_.load() || !inbox_.empty(); });
      continue;
    }
    if (auto st = step_once(); !st) {
      std::lock_guard<std::mutex> lk(mu_);
      status_ = "engine step failed: " + st.error();
    }
  }
}

ThreadUsage InProcessSource::driver_usage() const {
  std::lock_guard<std::mutex> lk(mu_);
  ThreadUsage d;
  d.wall_s = usage_target_.wall_s - usage_start_.wall_s;
  d.cpu_s = usage_target_.cpu_s - usage_start_.cpu_s;
  d.runqueue_s = usage_target_.runqueue_s - usage_start_.runqueue_s;
  return d;
}

bool InProcessSource::capture_ready() const {
  return opts_.stop_after_steps == 0 || steps_.load() >= opts_.stop_after_steps;
}

SourceControls InProcessSource::controls() const {
  std::lock_guard<std::mutex> lk(mu_);
  return controls_;
}

std::string InProcessSource::status() const {
  const auto snap = engine_->snapshot();
  std::string s = snap->paused ? "paused" : "running";
  s += " | " + std::to_string(steps_.load()) + " steps";
  std::lock_guard<std::mutex> lk(mu_);
  s += " | " + std::to_string(controls_.submitted) + " submitted";
  if (status_ != "ready") s += " | " + status_;
  return s;
}

}  // namespace pagoda::ui
