#include "core/speculation/controller.h"

#include <algorithm>
#include <fmt/core.h>

namespace pagoda {

void SpecController::change(uint64_t step, int32_t to, std::string why, const char* kind) {
  decisions_.push_back({step, k_, to, std::move(why), kind});
  if (decisions_.size() > 64) decisions_.erase(decisions_.begin());
  ++counts_[kind];
  k_ = to;
  steps_since_change_ = 0;
}

void SpecController::set_fixed_k(int32_t k) {
  cfg_.adaptive = false;
  plain_probe_ = false;
  if (k != k_) change(0, k, "set by user", "user");
}

double SpecController::recent_acceptance() const { return recent_.empty() ? 0 : recent_.back(); }

void SpecController::tick(uint64_t step, int32_t tokens, double seconds) {
  if (!cfg_.adaptive || k_ > 0) return;
  if (plain_probe_) {
    if (seconds <= 0) return;  // a prefill step: not plain decode's rate
    plain_tokens_ += tokens, plain_seconds_ += seconds;
    if (++plain_steps_ < cfg_.window) return;
    const double plain = double(plain_tokens_) / plain_seconds_;
    plain_probe_ = false;
    plain_tokens_ = plain_steps_ = 0;
    plain_seconds_ = 0;
    if (plain > spec_rate_at_probe_) {
      off_left_ = cfg_.off_steps;
      change(step, 0,
             fmt::format("off: plain decode's {:.0f} tok/s beats {:.0f} tok/s at k={}", plain, spec_rate_at_probe_, k_at_probe_),
             "off");
    } else {
      steps_to_plain_probe_ = cfg_.plain_probe_every;
      change(step, k_at_probe_,
             fmt::format("resume: {:.0f} tok/s at k={} beats plain decode's {:.0f} tok/s", spec_rate_at_probe_, k_at_probe_, plain),
             "resume");
    }
    return;
  }
  // Off: after a while, probe again at the smallest k in case the workload changed.
  if (--off_left_ <= 0) {
    steps_to_plain_probe_ = 0;
    change(step, cfg_.k_min, "probe: re-trying speculation after the off period", "probe");
  }
}

// Undoes the last change when it cost more than 10% of throughput, or when it pushed step
// latency over the SLO (or further over it). A raise undone this way is remembered.
bool SpecController::judge_last_change(uint64_t step, double acc, double rate, double latency) {
  judging_change_ = false;
  const bool slower = rate < 0.9 * rate_before_change_;
  const bool slo = cfg_.latency_slo_s > 0 && latency > cfg_.latency_slo_s && latency > latency_before_change_;
  if (!slower && !slo) return false;
  if (k_ > k_before_change_) {
    blocked_k_ = k_;
    blocked_at_acc_ = acc;
  }
  const std::string why =
      slower ? fmt::format("rollback: {:.0f} tok/s at k={} is below {:.0f} tok/s at k={}", rate, k_, rate_before_change_,
                           k_before_change_)
             : fmt::format("rollback: {:.2f} ms per step at k={} exceeds the {:.2f} ms SLO (was {:.2f} ms at k={})",
                           latency * 1e3, k_, cfg_.latency_slo_s * 1e3, latency_before_change_ * 1e3, k_before_change_);
  change(step, k_before_change_, why, "rollback");
  return true;
}

int32_t SpecController::decide(double acc, double latency, std::string& why, const char*& kind) {
  // A remembered failed raise stays blocked until acceptance is clearly better than it was then.
  if (blocked_k_ > 0 && acc > blocked_at_acc_ + cfg_.retry_margin) blocked_k_ = 0;
  const bool over_slo = cfg_.latency_slo_s > 0 && latency > cfg_.latency_slo_s;
  if (acc < cfg_.off_below && k_ <= cfg_.k_min) {
    off_left_ = cfg_.off_steps;
    why = fmt::format("off: acceptance {:.2f} < {:.2f} at the smallest k does not pay", acc, cfg_.off_below);
    kind = "off";
    return 0;
  }
  if (over_slo && k_ > cfg_.k_min) {
    why = fmt::format("lower: {:.2f} ms per step exceeds the {:.2f} ms SLO", latency * 1e3, cfg_.latency_slo_s * 1e3);
    kind = "latency";
    return k_ - 1;
  }
  if (acc > cfg_.raise_above && k_ < cfg_.k_max && !over_slo && (blocked_k_ == 0 || k_ + 1 < blocked_k_)) {
    why = fmt::format("raise: acceptance {:.2f} > {:.2f}", acc, cfg_.raise_above);
    kind = "raise";
    return k_ + 1;
  }
  if (acc < cfg_.lower_below && k_ > cfg_.k_min) {
    why = fmt::format("lower: acceptance {:.2f} < {:.2f}", acc, cfg_.lower_below);
    kind = "lower";
    return k_ - 1;
  }
  return k_;
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
  const double latency = win_seconds_ / double(win_steps_);
  recent_.push_back(acc);
  if (recent_.size() > 32) recent_.pop_front();
  win_proposed_ = win_accepted_ = win_tokens_ = win_steps_ = 0;
  win_seconds_ = 0;
  if (!cfg_.adaptive) return false;
  if (judging_change_ && judge_last_change(step, acc, rate, latency)) return true;
  if (steps_since_change_ < cfg_.cooldown) return false;
  std::string why;
  const char* kind = "";
  const int32_t before = k_, to = decide(acc, latency, why, kind);
  if (to == before) {
    // Steady: time plain decode for a window now and then (tick decides).
    if (cfg_.plain_probe_every <= 0 || (steps_to_plain_probe_ -= cfg_.window) > 0) return false;
    plain_probe_ = true;
    spec_rate_at_probe_ = rate;
    k_at_probe_ = k_;
    judging_change_ = false;
    change(step, 0, fmt::format("probe: plain decode for a window against {:.0f} tok/s at k={}", rate, k_), "probe");
    return true;
  }
  rate_before_change_ = rate;
  latency_before_change_ = latency;
  k_before_change_ = before;
  judging_change_ = to > 0;
  change(step, to, why, kind);
  return true;
}

}  // namespace pagoda
