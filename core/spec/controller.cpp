#include "core/spec/controller.h"

#include <algorithm>
#include <fmt/core.h>

namespace pagoda {

void SpecController::change(uint64_t step, int32_t to, std::string why) {
  decisions_.push_back({step, k_, to, std::move(why)});
  if (decisions_.size() > 64) decisions_.erase(decisions_.begin());
  k_ = to;
  steps_since_change_ = 0;
}

void SpecController::set_fixed_k(int32_t k) {
  cfg_.adaptive = false;
  if (k != k_) change(0, k, "set by user");
}

double SpecController::recent_acceptance() const { return recent_.empty() ? 0 : recent_.back(); }

void SpecController::tick(uint64_t step) {
  if (!cfg_.adaptive || k_ > 0) return;
  // Off: after a while, probe again at the smallest k in case the workload changed.
  if (--off_left_ <= 0) change(step, cfg_.k_min, "probe: re-trying speculation after the off period");
}

bool SpecController::observe(uint64_t step, int32_t proposed, int32_t accepted, int32_t tokens, double seconds) {
  win_proposed_ += proposed;
  win_accepted_ += accepted;
  win_tokens_ += tokens;
  win_seconds_ += seconds;
  ++win_steps_;
  ++steps_since_change_;
  if (win_steps_ < cfg_.window) return false;
  const double acc = win_proposed_ ? double(win_accepted_) / double(win_proposed_) : 0;
  const double rate = win_seconds_ > 0 ? double(win_tokens_) / win_seconds_ : 0;
  recent_.push_back(acc);
  if (recent_.size() > 32) recent_.pop_front();
  win_proposed_ = win_accepted_ = win_tokens_ = win_steps_ = 0;
  win_seconds_ = 0;
  if (!cfg_.adaptive) return false;
  const int32_t before = k_;
  // Verify the last change: if throughput fell by more than 10%, undo it.
  if (judging_change_) {
    judging_change_ = false;
    if (rate < 0.9 * rate_before_change_) {
      change(step, k_before_change_, fmt::format("rollback: {:.0f} tok/s at k={} is below {:.0f} tok/s at k={}", rate, k_,
                                                 rate_before_change_, k_before_change_));
      return true;
    }
  }
  if (steps_since_change_ < cfg_.cooldown) return false;
  int32_t to = k_;
  std::string why;
  if (acc < cfg_.off_below && k_ <= cfg_.k_min) {
    to = 0;
    off_left_ = cfg_.off_steps;
    why = fmt::format("off: acceptance {:.2f} < {:.2f} at the smallest k does not pay", acc, cfg_.off_below);
  } else if (acc > cfg_.raise_above && k_ < cfg_.k_max) {
    to = k_ + 1;
    why = fmt::format("raise: acceptance {:.2f} > {:.2f}", acc, cfg_.raise_above);
  } else if (acc < cfg_.lower_below && k_ > cfg_.k_min) {
    to = k_ - 1;
    why = fmt::format("lower: acceptance {:.2f} < {:.2f}", acc, cfg_.lower_below);
  }
  if (to == before) return false;
  rate_before_change_ = rate;
  k_before_change_ = before;
  judging_change_ = to > 0;
  change(step, to, why);
  return true;
}

}  // namespace pagoda
