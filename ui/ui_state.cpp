#include "ui/ui_state.h"

#include <algorithm>

namespace pagoda::ui {
namespace {

constexpr size_t kHistory = 600;
constexpr double kWindowS = 2.0;

template <typename T>
void push_capped(std::vector<T>& v, T x) {
  v.push_back(x);
  if (v.size() > kHistory) v.erase(v.begin(), v.begin() + ptrdiff_t(v.size() - kHistory));
}

}  // namespace

void observe(const Snapshot& s, UiState& ui) {
  if (s.step == ui.last_step && s.uptime_s == ui.last_uptime) return;
  if (s.uptime_s < ui.last_uptime) {  // a new engine (reconnect to a restarted server)
    ui.samples.clear();
    ui.queue_history.clear();
    ui.hit_rate_history.clear();
  }
  ui.last_step = s.step;
  ui.last_uptime = s.uptime_s;
  const Counters& c = s.counters;
  uint64_t finished = 0;
  for (const auto& [reason, n] : c.finished) finished += n;
  ui.samples.push_back({s.uptime_s, c.prefix_hit_tokens, c.prefix_query_tokens, c.evictions, c.preemptions,
                        c.generated_tokens, finished});
  while (ui.samples.size() > 2 && ui.samples.front().t < s.uptime_s - kWindowS) ui.samples.pop_front();
  const CounterSample& a = ui.samples.front();
  const CounterSample& b = ui.samples.back();
  ui.recent = {b.t - a.t,        b.hit_tokens - a.hit_tokens, b.query_tokens - a.query_tokens,
               b.evictions - a.evictions, b.preemptions - a.preemptions, b.generated - a.generated,
               b.finished - a.finished};
  push_capped(ui.queue_history, float(s.waiting));
  const uint64_t q = ui.recent.query_tokens;
  push_capped(ui.hit_rate_history, q ? float(ui.recent.hit_tokens) / float(q) : 0.0f);
}

}  // namespace pagoda::ui
