#include "core/telemetry/telemetry.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

namespace pagoda {

Histogram Histogram::exponential(double first, double factor, int n) {
  Histogram h;
  double b = first;
  for (int i = 0; i < n; ++i, b *= factor) h.bounds_.push_back(b);
  h.counts_.assign(h.bounds_.size() + 1, 0);
  return h;
}

Histogram Histogram::from_parts(std::vector<double> bounds, std::vector<uint64_t> counts, double sum) {
  Histogram h;
  h.bounds_ = std::move(bounds);
  h.counts_ = std::move(counts);
  h.counts_.resize(h.bounds_.size() + 1);
  for (uint64_t c : h.counts_) h.count_ += c;
  h.sum_ = sum;
  return h;
}

void Histogram::observe(double v) {
  const size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  ++count_;
  sum_ += v;
}

double Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const double target = q * double(count_);
  double acc = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (acc + double(counts_[i]) >= target && counts_[i] > 0) {
      const double lo = i == 0 ? 0 : bounds_[i - 1];
      const double hi = i < bounds_.size() ? bounds_[i] : bounds_.back() * 2;
      return lo + (hi - lo) * (target - acc) / double(counts_[i]);
    }
    acc += double(counts_[i]);
  }
  return bounds_.back();
}

const char* stage_name(Stage s) {
  static const char* kNames[] = {"normalize", "hash", "match", "allocate", "decode", "verify", "draft", "emit", "postprocess"};
  return kNames[size_t(s)];
}

double mean_acceptance_length(const Counters& c) {
  return c.spec_verify_steps ? 1.0 + double(c.spec_accepted) / double(c.spec_verify_steps) : 0.0;
}

uint32_t tenant_hash(const std::string& t) {
  if (t.empty()) return 0;
  uint32_t h = 2166136261u;  // FNV-1a: only for colouring and grouping, never for isolation
  for (unsigned char c : t) h = (h ^ c) * 16777619u;
  return h ? h : 1;
}

namespace {

void counter(std::string& out, const std::string& name, const std::string& help, double v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
}

void gauge(std::string& out, const std::string& name, const std::string& help, double v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
}

void histogram(std::string& out, const std::string& name, const std::string& help, const Histogram& h,
               const std::string& labels = "") {
  if (labels.empty()) out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t acc = 0;
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    acc += h.counts()[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{:g}\"}} {}\n", name, labels, sep, h.bounds()[i], acc);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, h.count());
  const std::string lb = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, lb, h.sum(), name, lb, h.count());
}

}  // namespace

// A label value in the text exposition format: backslash, double quote and newline escaped, so a
// tenant name can neither end its label early nor forge another series.
std::string prometheus_label_value(std::string_view v) {
  std::string o;
  o.reserve(v.size());
  for (char ch : v) {
    if (ch == '\\') o += "\\\\";
    else if (ch == '"') o += "\\\"";
    else if (ch == '\n') o += "\\n";
    else o += ch;
  }
  return o;
}

std::string render_prometheus(const Snapshot& s) {
  std::string o;
  const Counters& c = s.counters;
  gauge(o, "pagoda:kv_usage_ratio", "Fraction of KV blocks in use by running requests.", s.kv_usage);
  gauge(o, "pagoda:kv_blocks_capacity", "KV blocks in the pool (a gauge, so not named _total).", s.num_blocks);
  gauge(o, "pagoda:kv_blocks_cached", "KV blocks kept only for prefix reuse (evictable).", s.blocks_cached);
  gauge(o, "pagoda:num_requests_waiting", "Requests waiting to be scheduled.", s.waiting);
  gauge(o, "pagoda:num_requests_running", "Requests being processed.", s.running);
  double oldest_ms = 0;  // a queue whose head is not moving shows here long before TTFT histograms do
  for (const RequestInfo& r : s.requests)
    if (r.state == "waiting") oldest_ms = std::max(oldest_ms, r.age_ms);
  gauge(o, "pagoda:oldest_waiting_request_age_seconds", "Age of the oldest request waiting to be scheduled (0 = none).",
        oldest_ms / 1e3);
  gauge(o, "pagoda:engine_degraded", "1 while a backend fault keeps the engine refusing requests.", s.degraded ? 1 : 0);
  gauge(o, "pagoda:spec_draft_length", "Current speculative draft length k (0 = off).", s.spec_k);
  counter(o, "pagoda:request_success_total", "Requests that finished.", double(c.requests_finished));
  counter(o, "pagoda:prompt_tokens_total", "Prompt tokens admitted.", double(c.prompt_tokens));
  counter(o, "pagoda:generation_tokens_total", "Tokens generated.", double(c.generated_tokens));
  counter(o, "pagoda:prefill_tokens_avoided_total", "Prompt tokens served from the prefix cache.", double(c.avoided_prefill_tokens));
  counter(o, "pagoda:prefill_tokens_computed_total", "Tokens run through prefill.", double(c.computed_prefill_tokens));
  counter(o, "pagoda:prefix_cache_queries_tokens_total", "Tokens looked up in the prefix cache.", double(c.prefix_query_tokens));
  counter(o, "pagoda:prefix_cache_hits_tokens_total", "Tokens found in the prefix cache.", double(c.prefix_hit_tokens));
  counter(o, "pagoda:num_preemptions_total", "Requests preempted (recomputed later).", double(c.preemptions));
  counter(o, "pagoda:kv_evictions_total", "Cached KV blocks evicted.", double(c.evictions));
  counter(o, "pagoda:preemption_limit_failures_total", "Requests failed for exceeding the preemption bound.",
          double(c.preemption_failures));
  counter(o, "pagoda:backend_faults_total", "Backend operations that failed.", double(c.backend_faults));
  counter(o, "pagoda:spec_proposed_tokens_total", "Draft tokens proposed.", double(c.spec_proposed));
  counter(o, "pagoda:spec_accepted_tokens_total", "Draft tokens accepted.", double(c.spec_accepted));
  counter(o, "pagoda:device_sampled_tokens_total", "Generated tokens chosen by device ops (sampling, argmax, verify).",
          double(c.device_sampled_tokens));
  counter(o, "pagoda:host_sampled_tokens_total", "Generated tokens chosen on the host from downloaded logits.",
          double(c.generated_tokens - std::min(c.generated_tokens, c.device_sampled_tokens)));
  o += "# HELP pagoda:spec_accepted_tokens_by_position_total Draft tokens accepted, by draft position.\n"
       "# TYPE pagoda:spec_accepted_tokens_by_position_total counter\n";
  for (size_t i = 0; i < c.spec_accepted_by_pos.size(); ++i)
    o += fmt::format("pagoda:spec_accepted_tokens_by_position_total{{position=\"{}\"}} {}\n", i, c.spec_accepted_by_pos[i]);
  o += "# HELP pagoda:spec_controller_decisions_total Draft-length controller decisions, by kind.\n"
       "# TYPE pagoda:spec_controller_decisions_total counter\n";
  for (const auto& [k, n] : c.spec_decisions)
    o += fmt::format("pagoda:spec_controller_decisions_total{{kind=\"{}\"}} {}\n", k, n);
  o += "# HELP pagoda:request_rejected_total Requests rejected, by reason.\n# TYPE pagoda:request_rejected_total counter\n";
  for (const auto& [r, n] : c.rejections) o += fmt::format("pagoda:request_rejected_total{{reason=\"{}\"}} {}\n", prometheus_label_value(r), n);
  o += "# HELP pagoda:request_finished_total Requests finished, by reason.\n# TYPE pagoda:request_finished_total counter\n";
  for (const auto& [r, n] : c.finished) o += fmt::format("pagoda:request_finished_total{{reason=\"{}\"}} {}\n", r, n);
  o += "# HELP pagoda:tenant_tokens_total Per-tenant token counters.\n# TYPE pagoda:tenant_tokens_total counter\n";
  for (const auto& [t, m] : c.per_tenant)
    for (const auto& [k, v] : m)
      o += fmt::format("pagoda:tenant_tokens_total{{tenant=\"{}\",kind=\"{}\"}} {}\n", prometheus_label_value(t), prometheus_label_value(k), v);
  histogram(o, "pagoda:time_to_first_token_seconds", "Time to first token.", s.hist.ttft);
  histogram(o, "pagoda:inter_token_latency_seconds", "Time between tokens of a request.", s.hist.itl);
  histogram(o, "pagoda:e2e_request_latency_seconds", "Request latency end to end.", s.hist.e2e);
  histogram(o, "pagoda:request_queue_time_seconds", "Time waiting before first scheduled.", s.hist.queue);
  histogram(o, "pagoda:spec_acceptance_length", "Tokens emitted per sequence verification step.", s.hist.accept_len);
  histogram(o, "pagoda:spec_request_acceptance_length", "Per finished speculating request: its mean tokens per verification step.",
            s.hist.request_accept_len);
  o += "# HELP pagoda:stage_seconds Time spent per pipeline stage.\n# TYPE pagoda:stage_seconds histogram\n";
  for (size_t i = 0; i < s.hist.stage.size(); ++i)
    histogram(o, "pagoda:stage_seconds", "", s.hist.stage[i], fmt::format("stage=\"{}\"", stage_name(Stage(i))));
  return o;
}

}  // namespace pagoda
