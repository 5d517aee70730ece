// SpecController: picks the draft length k from measured acceptance — observe, decide, actuate,
// verify, roll back on regression — with bounds, a cooldown between changes, an off state when
// speculation does not pay, and a recorded reason (and kind) for every change.
// A change is judged by tokens/s, and also by latency against an SLO when one is set: the mean
// verify-step time, which is the gap a streaming client waits between bursts of tokens (a longer
// draft can raise tokens/s while stretching that gap past what the service promised).
// A raise that had to be rolled back is remembered: the controller does not try that k again
// until acceptance has moved clearly above what it was when the raise failed, so steady traffic
// never cycles raise -> rollback -> raise.
// Acceptance alone does not say that speculation pays: where a verify pass costs more than the
// tokens it saves (a cheap target on a CPU, a draft nearly as slow as the target), decent
// acceptance still loses to plain decode. So while k holds steady the controller now and then
// decodes a window without drafts and compares tokens/s: speculation goes off when plain decode
// was faster (until the next probe, at the smallest k), and resumes at its k when it was not.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "core/telemetry/telemetry.h"

namespace pagoda {

struct SpecControllerConfig {
  bool adaptive = false;
  int32_t k = 4;          // fixed k, or the starting k when adaptive
  int32_t k_min = 1, k_max = 8;
  int32_t window = 32;    // verification steps per observation
  int32_t cooldown = 64;  // steps after a change before the next one
  double raise_above = 0.75, lower_below = 0.4, off_below = 0.15;
  int32_t off_steps = 256;  // how long speculation stays off before a probe
  int32_t plain_probe_every = 1024;  // steady speculating steps between plain-decode comparisons (0: none)
  double latency_slo_s = 0;  // most mean step time (seconds) a change may leave (0 = tokens/s only)
  double retry_margin = 0.05;  // acceptance gain that makes a rolled-back raise worth another try
};

class SpecController {
 public:
  // The first comparison at the first steady window after the first cooldown: a window of plain
  // decode costs little where speculation pays and saves much where it does not.
  explicit SpecController(SpecControllerConfig cfg) : cfg_(cfg), k_(cfg.k) {}

  // Current draft length (0 = speculation off for now).
  int32_t k() const { return k_; }
  // One verification step: drafts proposed/accepted and the wall time the step took; `tokens`
  // emitted (accepted + 1 per sequence). Returns true if k changed.
  bool observe(uint64_t step, int32_t proposed, int32_t accepted, int32_t tokens, double seconds);
  // A step ran without speculation (lets the off state count down). `tokens` and `seconds`: what
  // a pure decode step emitted and took (both 0 for a step that also prefilled, which says
  // nothing about plain decode's rate).
  void tick(uint64_t step, int32_t tokens = 0, double seconds = 0);
  void set_fixed_k(int32_t k);
  void set_adaptive(bool on) { cfg_.adaptive = on; }
  bool adaptive() const { return cfg_.adaptive; }
  const std::vector<ControllerDecision>& decisions() const { return decisions_; }
  const std::map<std::string, uint64_t>& decision_counts() const { return counts_; }
  double recent_acceptance() const;
  // The smallest k a raise may not reach now (0 = none remembered).
  int32_t blocked_k() const { return blocked_k_; }

 private:
  void change(uint64_t step, int32_t to, std::string why, const char* kind);
  bool judge_last_change(uint64_t step, double acc, double rate, double latency);
  int32_t decide(double acc, double latency, std::string& why, const char*& kind);

  SpecControllerConfig cfg_;
  int32_t k_;
  int32_t steps_since_change_ = 0, off_left_ = 0;
  int64_t win_proposed_ = 0, win_accepted_ = 0, win_tokens_ = 0, win_steps_ = 0;
  double win_seconds_ = 0;
  double rate_before_change_ = 0;     // tokens/s in the window before the last change
  double latency_before_change_ = 0;  // mean step time, same window
  int32_t k_before_change_ = 0;
  bool judging_change_ = false;
  bool plain_probe_ = false;        // off for a window to time plain decode ...
  double spec_rate_at_probe_ = 0;   // ... against this tokens/s at k_at_probe_
  int32_t k_at_probe_ = 0;
  int64_t plain_tokens_ = 0, plain_steps_ = 0;
  double plain_seconds_ = 0;
  int32_t steps_to_plain_probe_ = 0;  // steady speculating steps before the next comparison
  int32_t blocked_k_ = 0;          // a raise to this k (or above) was rolled back ...
  double blocked_at_acc_ = 0;      // ... at this acceptance
  std::deque<double> recent_;  // acceptance per window
  std::vector<ControllerDecision> decisions_;
  std::map<std::string, uint64_t> counts_;
};

}  // namespace pagoda
