// Retry-After for requests the server cannot take now (429 queue_full), from the measured drain
// rate: how many requests left the server per second over a recent window, and how many are queued
// ahead of the caller. A fixed "1" sends every rejected client back at the same moment into a
// queue that has not moved; an estimate spread by jitter sends them back as room appears.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>

namespace pagoda::server {

using SteadyClock = std::chrono::steady_clock;

// Completions per second over the last `window_s` seconds. Thread-safe.
class DrainMeter {
 public:
  explicit DrainMeter(double window_s = 10, SteadyClock::time_point start = SteadyClock::now());
  void completed(SteadyClock::time_point t, uint64_t n = 1);
  // Completions in (now - window, now] over the time measured in it: the window, or the time since
  // the meter started when that is shorter (but at least one second, so a single early completion
  // is not read as a flood). 0 when nothing completed in the window.
  double rate(SteadyClock::time_point now) const;
  double window_s() const { return window_s_; }

 private:
  double window_s_;
  SteadyClock::time_point start_;
  mutable std::mutex mu_;
  mutable std::deque<SteadyClock::time_point> done_;
};

// Seconds until the queue ahead (`queue_ahead` requests, the caller would be one more) drains at
// `per_s` completions a second, stretched by a jitter factor 1 + 0.5 * jitter_u (jitter_u in
// [0, 1)) so rejected clients do not return together, rounded up and kept in [min_s, max_s].
// No measured drain (per_s <= 0) answers max_s: nothing has left the queue lately.
int retry_after_seconds(int64_t queue_ahead, double per_s, double jitter_u, int min_s, int max_s);

}  // namespace pagoda::server
