// Telemetry: counters, histograms and the Snapshot the engine publishes each step. Readers (the
// inspector, /metrics, /v1/inspect, bench --json) take a shared pointer to an immutable snapshot;
// the engine only swaps a pointer, so it never waits on a reader.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda {

class Histogram {
 public:
  // Exponential buckets from `first` growing by `factor`, `n` of them (+Inf bucket implied).
  static Histogram exponential(double first, double factor, int n);
  void observe(double v);
  // Rebuilds a histogram from its serialized parts (bucket counts and sum).
  static Histogram from_parts(std::vector<double> bounds, std::vector<uint64_t> counts, double sum);
  double quantile(double q) const;  // linear within the bucket holding the q-th observation
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }  // bounds().size() + 1 buckets
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  double mean() const { return count_ ? sum_ / double(count_) : 0; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

struct Counters {
  uint64_t requests_submitted = 0, requests_finished = 0;
  uint64_t prompt_tokens = 0;            // tokens of every admitted prompt
  uint64_t avoided_prefill_tokens = 0;   // prompt tokens served from the prefix cache
  uint64_t computed_prefill_tokens = 0;  // tokens run through prefill (recompute after preemption too)
  uint64_t generated_tokens = 0;
  uint64_t prefix_query_tokens = 0, prefix_hit_tokens = 0;
  uint64_t preemptions = 0, evictions = 0;
  uint64_t preemption_failures = 0;      // requests failed for exceeding the preemption bound
  uint64_t backend_faults = 0;           // backend ops that failed (each trips the degraded state)
  uint64_t spec_steps = 0;               // engine steps that verified drafts
  uint64_t spec_verify_steps = 0;        // per-sequence verifications (one sequence, one step)
  uint64_t spec_proposed = 0, spec_accepted = 0;
  uint64_t device_sampled_tokens = 0;    // generated tokens chosen by device ops (the rest: on the host)
  std::vector<uint64_t> spec_accepted_by_pos, spec_proposed_by_pos;
  std::map<std::string, uint64_t> rejections;  // reason -> count
  std::map<std::string, uint64_t> finished;    // finish reason -> count
  std::map<std::string, std::map<std::string, uint64_t>> per_tenant;  // tenant -> counter -> value
  std::map<std::string, uint64_t> spec_decisions;  // controller decision kind -> count
};

// Tokens emitted per sequence verify step (accepted drafts + 1), over every speculating sequence;
// 0 before any verification. Per sequence, not per engine step: requests that speculate together
// each count their own step.
double mean_acceptance_length(const Counters& c);

// Pipeline stages, aggregated over every step (Snapshot::hist.stage). Hash, match and allocate are
// parts of scheduling; decode is the forward pass; verify is rejection sampling of drafts; emit is
// sampling, detokenizing and callbacks; postprocess is the scheduler's bookkeeping after a step.
enum class Stage : uint8_t { Normalize, Hash, Match, Allocate, Decode, Verify, Draft, Emit, Postprocess, kCount };
const char* stage_name(Stage s);

struct Histograms {
  Histogram ttft = Histogram::exponential(1e-4, 2, 22);
  Histogram itl = Histogram::exponential(1e-5, 2, 22);
  Histogram e2e = Histogram::exponential(1e-3, 2, 22);
  Histogram queue = Histogram::exponential(1e-5, 2, 24);
  Histogram accept_len = Histogram::exponential(1, 1.25, 12);          // per sequence verify step
  Histogram request_accept_len = Histogram::exponential(1, 1.25, 12);  // per request: its mean
  std::vector<Histogram> stage = std::vector<Histogram>(size_t(Stage::kCount), Histogram::exponential(1e-6, 2, 26));
};

struct BlockInfo {
  uint8_t state = 0;       // 0 free, 1 in use, 2 cached (evictable)
  int32_t refcount = 0;
  uint64_t owner = 0;      // a request holding it (0: none)
  uint32_t tenant = 0;     // hash of the owning tenant (0: public/none)
  uint32_t key_prefix = 0; // first 4 bytes of the block key (0: unkeyed)
  int32_t pos_start = -1;  // first token position it holds in its owner
  uint64_t last_use = 0;
};

struct RequestInfo {
  uint64_t id = 0;
  std::string tenant;
  std::string state;  // waiting, prefill, decode, finished
  int32_t priority = 0;
  int32_t prompt_tokens = 0, cached_tokens = 0, computed_tokens = 0, generated = 0, max_tokens = 0;
  int32_t blocks = 0;
  double ttft_ms = -1, tok_s = 0, age_ms = 0, deadline_left_ms = -1;
  uint64_t spec_proposed = 0, spec_accepted = 0;
  int32_t spec_k = 0;
  std::string trace_id = {};  // W3C trace id the request arrived with (or the server made)
};

struct ControllerDecision {
  uint64_t step = 0;
  int32_t from_k = 0, to_k = 0;
  std::string reason;
  std::string kind = {};  // raise, lower, off, probe, resume, rollback, latency, user
};

struct Snapshot {
  uint64_t step = 0;
  double uptime_s = 0;
  int32_t block_size = 16, num_blocks = 0, blocks_free = 0, blocks_in_use = 0, blocks_cached = 0;
  double kv_usage = 0;  // in-use fraction
  int32_t waiting = 0, running = 0;
  bool paused = false;
  std::vector<BlockInfo> blocks;
  std::vector<RequestInfo> requests;
  Counters counters;
  Histograms hist;
  std::vector<float> accept_rate_history;  // per step, recent
  std::vector<float> kv_usage_history;
  std::vector<ControllerDecision> decisions;  // recent
  int32_t spec_k = 0;
  std::string spec_mode;  // "off", "ngram", "draft"
  bool degraded = false;        // a backend op failed; new requests are refused until a probe passes
  std::string degraded_reason;
};

// Holds the latest snapshot; publish() swaps it in, latest() hands out a reference.
class SnapshotBox {
 public:
  void publish(std::shared_ptr<const Snapshot> s) {
    std::lock_guard<std::mutex> lk(mu_);
    cur_ = std::move(s);
  }
  std::shared_ptr<const Snapshot> latest() const {
    std::lock_guard<std::mutex> lk(mu_);
    return cur_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> cur_ = std::make_shared<Snapshot>();
};

// Prometheus text exposition (names in the style pagoda:kv_usage_ratio).
std::string render_prometheus(const Snapshot& s);
// A Prometheus label value (text format 0.0.4): backslash, double quote and newline escaped, so a
// tenant name can neither end its label early nor forge another series.
std::string prometheus_label_value(std::string_view v);

uint32_t tenant_hash(const std::string& tenant);

}  // namespace pagoda
