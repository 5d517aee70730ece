#include "apps/server/retry_after.h"

#include <algorithm>
#include <cmath>

namespace pagoda::server {

DrainMeter::DrainMeter(double window_s, SteadyClock::time_point start) : window_s_(std::max(0.1, window_s)), start_(start) {}

void DrainMeter::completed(SteadyClock::time_point t, uint64_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  for (uint64_t i = 0; i < n; ++i) done_.push_back(t);
  // Bounded however fast requests finish: the window's old entries go now, not only when read.
  const auto horizon = t - std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(window_s_));
  while (!done_.empty() && done_.front() <= horizon) done_.pop_front();
}

double DrainMeter::rate(SteadyClock::time_point now) const {
  std::lock_guard<std::mutex> lk(mu_);
  const auto horizon = now - std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(window_s_));
  while (!done_.empty() && done_.front() <= horizon) done_.pop_front();
  const size_t n = size_t(std::count_if(done_.begin(), done_.end(), [&](const auto& t) { return t <= now; }));
  if (n == 0) return 0;
  const double measured = std::chrono::duration<double>(now - start_).count();
  return double(n) / std::clamp(measured, 1.0, window_s_);
}

int retry_after_seconds(int64_t queue_ahead, double per_s, double jitter_u, int min_s, int max_s) {
  max_s = std::max(max_s, min_s);
  if (!(per_s > 0)) return max_s;
  const double u = std::clamp(jitter_u, 0.0, 1.0);
  const double s = double(std::max<int64_t>(queue_ahead, 0) + 1) / per_s * (1.0 + 0.5 * u);
  if (!std::isfinite(s) || s >= double(max_s)) return max_s;
  return std::max(min_s, int(std::ceil(s)));
}

}  // namespace pagoda::server
