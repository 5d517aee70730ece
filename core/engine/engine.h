// Engine: the request pipeline, run as a step loop (on its own thread, or stepped by the caller).
// Public C++ API: submit a request with a token callback, cancel it, read telemetry snapshots and
// health. Callbacks run on the engine thread. One request's path, stage by stage:
//   engine_submit.cpp  normalize: validate, tokenize, admit or reject (typed Rejection)
//   engine_step.cpp    step: draft -> plan = sched.schedule() -> build batch -> runner.forward
//                      -> out = emit(plan, logits) -> sched.postprocess(plan, out) -> end()
//   engine_emit.cpp    emit: sampling, verification of drafts, detokenizing, callbacks
// The scheduler (core/sched) owns sequence state after each step; the engine is the only
// production driver of ModelRunner.
//
// Fault containment: when a backend op fails (an error result or an exception), the engine ends
// every request it holds with FinishReason::Error and an error starting "engine_unavailable: ",
// enters the degraded state (health().degraded, with the reason; also Snapshot::degraded), and
// submit() answers SubmitResult::rejected == "engine_unavailable" until a probe (one tiny forward,
// every EngineConfig::probe_interval_s) succeeds. A server maps that rejection to HTTP 503 and
// health() to its health endpoint.
// Bounded preemption: a request preempted more than EngineConfig::max_preemptions times ends with
// FinishReason::Error and an error starting "preemption_limit: " (overload, worth a retry later).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/model/loaded_model.h"
#include "core/model/model_runner.h"
#include "core/prefix/prefix_index.h"
#include "core/sched/scheduler.h"
#include "core/speculation/controller.h"
#include "core/speculation/drafter.h"
#include "core/telemetry/telemetry.h"

namespace pagoda {

class DeviceDecoder;  // core/engine/device_decode.h
struct DeviceDecision;
struct VerifyOutcome;

struct SpecConfig {
  std::string mode = "off";  // off, ngram, draft
  int32_t k = 4;
  bool adaptive = false;     // --spec-k auto
  int32_t ngram_n = 3;
  uint64_t draft_kv_bytes = 64ull << 20;
  double latency_slo_s = 0;  // adaptive k: most mean step time (s) a change may leave (0 = tokens/s only)
};

// Speculation settings from user-facing options (CLI, server config, inspector): one drafter at
// most, k as 1..16 or "auto".
Result<SpecConfig> make_spec_config(bool has_draft, int32_t ngram, const std::string& spec_k);

// KV element type by its user-facing name ("f32", "f16"); an error names the accepted values.
Result<DType> parse_kv_dtype(const std::string& name);
// A KV budget given as a share of free device memory ("90%" -> 0.9); nullopt when `spec` is not a
// percentage (then it is a size for the caller's size parser); an error for a bad percentage.
Result<std::optional<double>> parse_kv_fraction(const std::string& spec);

struct EngineConfig {
  int32_t block_size = 16;
  uint64_t kv_bytes = 256ull << 20;
  int32_t num_blocks = 0;  // overrides kv_bytes when > 0
  // When > 0: the KV budget is this fraction (0..1] of the backend's free device memory, taken as
  // its reported memory less the model's weights. A backend that reports no memory is an error.
  double kv_fraction = 0;
  DType kv_dtype = DType::F32;
  int32_t max_batch_tokens = 512;
  // Most tokens one sequence holds, prompt and generated (llama.cpp's -c); 0: the model's context.
  int32_t max_context = 0;
  int32_t max_running = 64;
  int32_t max_waiting = 256;
  bool prefix_caching = true;
  std::string adapter_id;
  std::vector<std::vector<int32_t>> public_prefixes;  // token prefixes keyed in the public scope
  double snapshot_interval_s = 0.02;
  int32_t max_preemptions = 8;       // a request preempted more often fails ("preemption_limit: ...")
  int32_t tenant_cached_blocks = 0;  // most cached (refcount 0) blocks one tenant keeps (0 = no cap)
  double probe_interval_s = 0.5;     // degraded: seconds between recovery probes
  SpecConfig spec;
  // Sampling and verification as backend ops, downloading only token ids (device_decode.h):
  // "auto" (on for every backend but cpu and cpu-ref), "on" or "off".
  std::string device_sampling = "auto";
};

// Checks every field (ranges, combinations) before anything is allocated.
Status validate_engine_config(const EngineConfig& cfg);
// KV blocks the configured budget buys on `be` (num_blocks, kv_fraction or kv_bytes). A budget
// under one block is an error naming both sizes, so `--kv-memory 0` is refused before anything is built.
Result<int32_t> kv_block_count(const LoadedModel& model, const Backend& be, const EngineConfig& cfg);

// The engine's health as a server's /health reports it. Thread-safe copy.
struct EngineHealth {
  bool degraded = false;
  std::string reason;     // what failed, with the backend's message
  uint64_t faults = 0;    // backend failures since start
  uint64_t probes = 0;    // recovery probes run (failed and passed)
  uint64_t recoveries = 0;
};

struct Request {
  // When the caller started working on this request (a server: before rendering and tokenizing
  // it), so that work is timed as part of the normalize stage; default: when submit() is called.
  SteadyTime received = {};
  std::string prompt;                  // text (tokenized at submit) ...
  std::vector<int32_t> prompt_tokens;  // ... or tokens directly (used when non-empty)
  int32_t max_tokens = 128;
  SamplingParams sampling;
  std::string tenant;                  // cache scope: set by the server from the authenticated caller
  int32_t priority = 0;                // higher runs first and is preempted last
  double timeout_s = 0;                // 0 = no deadline
  bool add_bos = true;
  bool stop_at_eos = true;
  std::string trace_id = {};           // W3C trace id (32 hex digits) the server carries: snapshots, final metrics
  // Structured output: every token is sampled under this grammar's mask (drafts and verification
  // too), and end-of-sequence is allowed only once the text is complete; reaching it ends the
  // request whatever stop_at_eos says. Requests sharing one Grammar object share its mask caches.
  std::shared_ptr<const grammar::Grammar> grammar;
  // -1: none; 0..20: each TokenEvent carries the token's log-probability and this many of the most
  // likely alternatives (see token_logprobs in core/sample/sampler.h for what the values are).
  int32_t logprobs = -1;
  // The id of a request submitted before this one with the same prompt tokens (a server's n
  // choices): this one waits until that one's prompt is in the cache, then shares its blocks
  // (KvCache::fork) and computes only the prompt's last token for its own logits. When that
  // request is gone by then, this one prefills normally.
  uint64_t prefill_from = 0;
};

// Why a request was not admitted. A server maps these to HTTP: QueueFull 429, PromptTooLong 400
// (context_length_exceeded), KvCapacity 413, InvalidRequest 400, EngineUnavailable 503 (degraded:
// a backend fault; retry after recovery).
enum class Rejection : uint8_t { None, QueueFull, PromptTooLong, KvCapacity, InvalidRequest, EngineUnavailable };
// queue_full, prompt_too_long, kv_capacity, invalid_request, engine_unavailable ("" for None).
const char* rejection_name(Rejection r);

struct SubmitResult {
  uint64_t id = 0;
  Rejection rejection = Rejection::None;
  std::string message;  // why, for a person (set when rejected)
  bool ok() const { return rejection == Rejection::None; }
  const char* reason() const { return rejection_name(rejection); }
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> create(LoadedModel& model, Backend& be, const EngineConfig& cfg,
                                                LoadedModel* draft_model = nullptr);
  ~Engine();

  // Thread-safe. Validates and tokenizes on the caller's thread (the normalize stage): the one
  // admission check. Rejected requests get no callback.
  SubmitResult submit(Request req, TokenCallback cb);
  // A group admitted together or not at all (a server's n choices): each request is normalized on
  // the caller's thread, then all are queued under one lock, so the engine thread takes them in the
  // same step. With `share_prompt`, requests 1.. fork request 0's prompt (their prefill_from is
  // set to its id); queued together, they are all waiting before request 0 can finish, so the fork
  // happens however the threads are scheduled. Rejected: every result carries the first
  // rejection (or QueueFull when the group does not fit the queue) and nothing was queued.
  std::vector<SubmitResult> submit_group(std::vector<Request> reqs, const TokenCallback& cb, bool share_prompt);
  void cancel(uint64_t id);  // thread-safe; the request ends with reason "cancelled"

  // One scheduler iteration on the calling thread (do not mix with start()).
  Status step();
  // Runs steps on a background thread until stop(); idles when there is no work.
  void start();
  // drain = finish in-flight work first; otherwise cancel everything still queued or running.
  void stop(bool drain = true);
  void set_paused(bool p);
  bool idle() const;  // no queued, running or pending-submit requests
  EngineHealth health() const;  // thread-safe

  std::shared_ptr<const Snapshot> snapshot() const { return box_.latest(); }
  // Forces a snapshot now (tests, step-by-step inspector): from the engine thread, or while the
  // engine is stepped by the caller or stopped (it reads engine-thread state).
  void publish_snapshot();
  const ModelConfig& config() const { return model_.config; }
  const Tokenizer& tokenizer() const { return *model_.tokenizer; }
  int32_t context_length() const { return ctx_len_; }  // most tokens one sequence holds
  // The prefix cache identity; its weights_digest stays empty until the digest is known (a model
  // loaded with LoadOptions::Digest::Background), and until then no block is keyed.
  const CacheIdentity& identity() const { return identity_; }
  bool identity_known() const { return sched_->identity_known(); }
  // Draft length policy (engine thread or paused engine only): k >= 0 fixed, or adaptive.
  void set_spec_policy(int32_t k, bool adaptive);
  const Drafter* drafter() const { return drafter_.get(); }

 private:
  Engine(LoadedModel& model, Backend& be, const EngineConfig& cfg);
  // Per-step timings (seconds) of the stages a planned request waits for.
  struct StepTimes {
    double schedule = 0, draft = 0, decode = 0, verify = 0, emit = 0, postprocess = 0;
  };
  // Speculation totals of one step.
  struct SpecTally {
    int32_t proposed = 0, accepted = 0, emitted = 0;
    bool any = false;
    double verify_s = 0;
  };

  // normalize: validates `req` and fills `s` (tokens, limits, sampling); Rejection::None to admit.
  Rejection normalize(Request& req, Sequence& s, std::string& message);
  void drain_inbox();
  void publish_waiting();  // engine thread: the scheduler's waiting count, for submit()'s queue bound
  // emit: one outcome per planned chunk (sampling, verification, detokenizing, callbacks).
  std::vector<ChunkOutcome> emit(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row,
                                 SteadyTime now, SpecTally& tally);
  // `presampled`: the chunk's token, drawn before the emit loop (-1: draw it here).
  ChunkOutcome emit_chunk(const ScheduledChunk& c, float* row, SteadyTime now, SpecTally& tally,
                          int32_t presampled = -1);
  // Draws the token of every plain decode chunk (no drafts, no grammar, logits on the host) on the
  // backend's host threads; -1 for the rest. Each draw depends only on its own row, history and
  // seed, so the tokens are the ones a serial loop draws.
  std::vector<int32_t> presample(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row);
  bool device_chose(size_t n_chunks, size_t i) const;  // device decode already picked chunk i's token
  // Calls back with generated token number `nth` (1-based) of `s`.
  void emit_token(Sequence& s, int32_t tok, int32_t nth, SteadyTime now, const float* row = nullptr);
  void end(std::unique_ptr<Sequence> s, FinishReason r, const std::string& error = "");
  void end_all(std::vector<std::unique_ptr<Sequence>>& finished);
  // Whether `tok`, the nth generated token (`len` tokens in all), ends the request, and why.
  FinishReason stop_reason(const Sequence& s, int32_t tok, int32_t nth, int32_t len) const;
  // Charges one step's stage times to every live request (planned ones: the step's stages; the
  // rest: queue), from its last mark to `end`.
  void account_step(const std::vector<ScheduledChunk>& plan, const std::vector<std::unique_ptr<Sequence>>& ended,
                    SteadyTime begin, SteadyTime end, const StepTimes& t);
  void loop();
  Snapshot build_snapshot() const;
  int32_t public_len_of(const std::vector<int32_t>& toks) const;
  Status propose_drafts(DraftMap& drafts);
  Status run_forward(const ForwardBatch& b, std::vector<float>& logits);
  void trip(const std::string& what);  // a backend fault: fail everything, refuse new work
  void probe();                        // degraded: try one tiny forward, recover if it works
  void fail_all(const std::string& error);  // ends every queued and running request
  bool degraded() const;
  ChunkOutcome verify_chunk(Sequence& s, const ScheduledChunk& c, float* logits, SteadyTime now, SpecTally& tally);
  ChunkOutcome finish_verify(Sequence& s, int32_t k, const VerifyOutcome& v, const float* logits, SteadyTime now,
                             SpecTally& tally, SteadyTime t_verify);
  // [device decode] (device_decode.cpp): the forward pass leaving logits on the device, where the
  // eligible chunks' tokens are chosen; the other chunks' rows land in logits_.
  Status run_forward_device(const ForwardBatch& b, const std::vector<ScheduledChunk>& plan,
                            const std::vector<int32_t>& first_row);
  ChunkOutcome emit_device_chunk(const ScheduledChunk& c, const DeviceDecision& d, SteadyTime now, SpecTally& tally);
  // The logits row a token is sampled from: `row` itself, or a copy with the grammar mask applied
  // (empty span: the grammar allows no token at all).
  std::span<float> constrained_row(Sequence& s, float* row, std::vector<float>& buf);
  void attach_grammar(Sequence& s);  // engine thread: the matcher for a newly queued request
  ChunkOutcome end_without_continuation(const Sequence& s, int32_t kv_valid) const;
  // Completes the identity once the weights digest is known: at once when it is, else only with
  // `wait` (a request is about to end, and what it computed is kept for reuse only if keyed).
  void resolve_identity(bool wait);

  LoadedModel& model_;
  Backend& be_;
  EngineConfig cfg_;
  int32_t ctx_len_ = 0;  // most tokens one sequence holds: EngineConfig::max_context, else the model's
  CacheIdentity identity_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<PrefixIndex> index_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<Drafter> drafter_;
  std::unique_ptr<SpecController> ctrl_;
  std::unique_ptr<DeviceDecoder> device_;  // [device decode] null: every token is chosen on the host
  std::unordered_map<uint64_t, DraftProposal> proposals_;
  Counters counters_;  // engine thread only
  Histograms hist_;    // engine thread only
  SnapshotBox box_;

  // What submit() records on callers' threads; merged into snapshots under mu_.
  struct SubmitStats {
    uint64_t submitted = 0;
    std::map<std::string, uint64_t> rejections;
    Histogram normalize = Histograms().stage[0];
  };

  mutable std::mutex mu_;  // guards inbox_, cancels_, paused_, waiting_published_, submit_stats_, health_
  SubmitStats submit_stats_;
  EngineHealth health_;
  SteadyTime last_probe_{};
  int64_t waiting_published_ = 0;  // the scheduler's waiting count as the engine thread last saw it
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Sequence>> inbox_;
  std::vector<uint64_t> cancels_;
  bool paused_ = false;
  std::atomic<bool> running_thread_{false};
  std::atomic<int64_t> pending_{0};  // submitted but not yet finished
  std::thread thread_;
  std::atomic<uint64_t> next_id_{1};
  uint64_t step_ = 0;
  SteadyTime start_time_, last_publish_{};
  std::vector<float> accept_history_, kv_history_;
  std::vector<float> logits_;  // the last step's logits rows (reused: no per-step allocation)
  std::unordered_map<uint64_t, std::unique_ptr<StreamDecoder>> detok_;
  // Structured output: the vocabulary's byte trie, built on the first grammar request (submit may
  // run on any thread, so once), and one unadvanced matcher per live Grammar object whose clones
  // share its mask caches (engine thread only).
  std::once_flag vocab_once_;
  std::unique_ptr<grammar::TokenVocab> vocab_;
  std::unordered_map<const grammar::Grammar*, std::pair<std::weak_ptr<const grammar::Grammar>, grammar::GrammarMatcher>>
      grammar_protos_;
  std::vector<uint32_t> mask_;
  std::vector<float> masked_row_;
};

// One request run to its end by complete().
struct Completion {
  std::vector<int32_t> tokens;  // every generated token in order (an end-of-generation token included)
  std::string text;             // the detokenized continuation
  FinishReason reason = FinishReason::None;
  RequestMetrics metrics;
};

// Submits `req` and steps `e` on the calling thread until the request ends (an engine not run
// with start()). `on_event` sees each event as it comes, for streaming. A rejection, a failed
// step or a request that ends with FinishReason::Error is an error naming why. This is how a
// single prompt runs (`pagoda run`, `bench decode`, model conformance): through the same
// pipeline as served traffic, never a private driver of ModelRunner.
Result<Completion> complete(Engine& e, Request req, const TokenCallback& on_event = {});

}  // namespace pagoda
