#include "core/engine/engine.h"
#include "core/engine/device_decode.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>

// Engine construction, configuration and the thread that runs steps. The request path itself is
// in engine_submit.cpp (normalize), engine_step.cpp (schedule, run, postprocess) and
// engine_emit.cpp (emit).

#include "core/sample/philox.h"
#include "core/speculation/verify.h"

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

Result<SpecConfig> make_spec_config(bool has_draft, int32_t ngram, const std::string& spec_k) {
  if (has_draft && ngram > 0) return make_error("choose one drafter: a draft model or n-gram lookup, not both");
  SpecConfig c;
  c.mode = has_draft ? "draft" : ngram > 0 ? "ngram" : "off";
  if (ngram > 0) c.ngram_n = ngram;
  if (spec_k == "auto") {
    c.adaptive = true;
    return c;
  }
  char* end = nullptr;
  const long k = std::strtol(spec_k.c_str(), &end, 10);
  if (spec_k.empty() || *end != '\0' || k < 1 || k > 16) return make_error("spec-k must be 1..16 or auto");
  c.k = int32_t(k);
  return c;
}

Result<DType> parse_kv_dtype(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  return make_error("kv-dtype must be f32 or f16 (got '" + name + "')");
}

Result<std::optional<double>> parse_kv_fraction(const std::string& spec) {
  if (spec.empty() || spec.back() != '%') return std::optional<double>();
  const std::string num = spec.substr(0, spec.size() - 1);
  char* end = nullptr;
  const double pct = std::strtod(num.c_str(), &end);
  if (num.empty() || *end != '\0' || !(pct > 0 && pct <= 100))
    return make_error("kv-memory '" + spec + "': a percentage of free device memory must be in (0, 100]%");
  return std::optional<double>(pct / 100.0);
}

Status validate_engine_config(const EngineConfig& c) {
  if (c.block_size < 1 || c.block_size > 1024) return make_error("block size must be in 1..1024 (got " + std::to_string(c.block_size) + ")");
  if (c.max_batch_tokens < 1 || c.max_running < 1 || c.max_waiting < 1)
    return make_error("batch token budget, max running and queue bound must be positive");
  if (c.num_blocks < 0) return make_error("num_blocks must be >= 0");
  if (c.max_context < 0) return make_error("the context size must be >= 0 (0: the model's)");
  if (c.kv_fraction < 0 || c.kv_fraction > 1) return make_error("the KV share of free device memory must be in (0, 1]");
  if (c.max_preemptions < 0) return make_error("max preemptions must be >= 0");
  if (c.tenant_cached_blocks < 0) return make_error("per-tenant cached block cap must be >= 0");
  if (!(c.probe_interval_s > 0)) return make_error("probe interval must be > 0 seconds");
  if (c.spec.k < 0 || c.spec.k > 16) return make_error("draft length k must be in 0..16");
  if (c.spec.latency_slo_s < 0) return make_error("speculation latency SLO must be >= 0");
  if (auto d = resolve_device_sampling(c.device_sampling, BackendInfo{}); !d) return d.take_error();
  return {};
}

Result<int32_t> kv_block_count(const LoadedModel& model, const Backend& be, const EngineConfig& cfg) {
  if (cfg.num_blocks > 0) return cfg.num_blocks;
  const uint64_t per_block = model.config.kv_bytes_per_token(uint32_t(dtype_block_bytes(cfg.kv_dtype))) * uint64_t(cfg.block_size);
  uint64_t budget = cfg.kv_bytes;
  if (cfg.kv_fraction > 0) {
    const uint64_t total = be.info().memory_bytes, weights = model.weights.bytes;
    if (total == 0)
      return make_error("--kv-memory as a percentage needs the backend's free memory, and the " + be.info().name +
                        " backend does not report it; give a size instead (e.g. 512MiB)");
    const uint64_t free_bytes = total > weights ? total - weights : 0;
    budget = uint64_t(double(free_bytes) * cfg.kv_fraction);
  }
  const int32_t n = kv_blocks_for_budget(kv_shape(model.config, cfg.block_size, cfg.kv_dtype), budget);
  if (n < 1)
    return make_error("the KV budget of " + std::to_string(budget) + " bytes holds no KV block: one block of " +
                      std::to_string(cfg.block_size) + " tokens needs " + std::to_string(per_block) +
                      " bytes for this model; raise --kv-memory");
  return n;
}

Engine::Engine(LoadedModel& model, Backend& be, const EngineConfig& cfg) : model_(model), be_(be), cfg_(cfg) {}

Result<std::unique_ptr<Engine>> Engine::create(LoadedModel& model, Backend& be, const EngineConfig& cfg,
                                               LoadedModel* draft_model) {
  PAGODA_TRY(validate_engine_config(cfg));
  if (cfg.max_context > model.config.ctx_len)
    return make_error("a context of " + std::to_string(cfg.max_context) + " tokens exceeds the model's context of " +
                      std::to_string(model.config.ctx_len));
  auto n_blocks = kv_block_count(model, be, cfg);
  if (!n_blocks) return n_blocks.take_error();
  std::unique_ptr<Engine> e(new Engine(model, be, cfg));
  e->ctx_len_ = cfg.max_context > 0 ? cfg.max_context : model.config.ctx_len;
  auto kv = KvCache::create(be, kv_shape(model.config, cfg.block_size, cfg.kv_dtype), *n_blocks);
  if (!kv) return kv.take_error();
  e->kv_ = std::make_unique<KvCache>(std::move(*kv));
  e->index_ = std::make_unique<PrefixIndex>(e->kv_->pool());
  e->runner_ = std::make_unique<ModelRunner>(be, model.config, model.weights);
  // Everything that decides the bytes of a cached block goes into its identity.
  const bool digest_known = model.weights.digest.ready();
  if (cfg.prefix_caching && digest_known && model.weights.digest.get().empty())
    return make_error("the model was loaded without its weights digest (LoadOptions::Digest::Never), which the prefix "
                      "cache keys blocks with: turn prefix caching off or load the model with its digest");
  if (digest_known) e->identity_.weights_digest = model.weights.digest.get();
  e->identity_.tokenizer_digest = model.tokenizer->digest();
  e->identity_.model_compute = model.config.compute_signature();
  e->identity_.adapter_id = cfg.adapter_id;
  e->identity_.kv_dtype = dtype_name(cfg.kv_dtype);
  e->identity_.block_size = cfg.block_size;
  e->identity_.kernel_precision = be.info().name + "-f32acc";
  SchedulerConfig sc;
  sc.max_batch_tokens = cfg.max_batch_tokens;
  sc.max_running = cfg.max_running;
  sc.prefix_caching = cfg.prefix_caching;
  sc.ctx_len = e->ctx_len_;
  sc.max_preemptions = cfg.max_preemptions;
  sc.tenant_cached_blocks = cfg.tenant_cached_blocks;
  e->sched_ = std::make_unique<Scheduler>(sc, *e->kv_, *e->index_, e->identity_, e->counters_, e->hist_);
  if (!digest_known) e->sched_->defer_identity();
  if (cfg.spec.mode == "ngram") {
    e->drafter_ = std::make_unique<NgramDrafter>(std::max(1, cfg.spec.ngram_n), model.config.vocab);
  } else if (cfg.spec.mode == "draft") {
    if (!draft_model) return make_error("speculation mode 'draft' needs a draft model");
    auto d = DraftModel::create(*draft_model, be, *model.tokenizer, cfg.spec.draft_kv_bytes, cfg.block_size);
    if (!d) return d.take_error();
    e->drafter_ = std::move(*d);
  } else if (cfg.spec.mode != "off") {
    return make_error("unknown speculation mode '" + cfg.spec.mode + "' (off, ngram, draft)");
  }
  SpecControllerConfig cc;
  cc.adaptive = cfg.spec.adaptive;
  cc.k = cfg.spec.k;
  cc.latency_slo_s = cfg.spec.latency_slo_s;
  e->ctrl_ = std::make_unique<SpecController>(cc);
  // [device decode] sampling and verification as backend ops where the backend has them all
  auto dev = resolve_device_sampling(cfg.device_sampling, be.info());
  if (!dev) return dev.take_error();
  const bool has_ops = be.supports(Op::Argmax, DType::F32) && be.supports(Op::Softmax, DType::F32) &&
                       be.supports(Op::SampleProbs, DType::F32) && be.supports(Op::Verify, DType::F32);
  if (*dev && !has_ops && cfg.device_sampling == "on")
    return make_error("device sampling is on but backend '" + be.info().name + "' lacks argmax/softmax/sample_probs/verify");
  if (*dev && has_ops) e->device_ = std::make_unique<DeviceDecoder>(be, model.config.vocab);
  e->start_time_ = Clock::now();
  e->publish_snapshot();
  return e;
}

// Also runs for an engine whose create() failed half way (no scheduler yet): nothing to stop then.
Engine::~Engine() {
  if (sched_) stop(false);
}

void Engine::set_spec_policy(int32_t k, bool adaptive) {
  ctrl_->set_fixed_k(std::clamp(k, 0, 16));
  ctrl_->set_adaptive(adaptive);
}

void Engine::resolve_identity(bool wait) {
  if (sched_->identity_known() || (!wait && !model_.weights.digest.ready())) return;
  identity_.weights_digest = model_.weights.digest.get();
  sched_->set_identity(identity_);
}

bool Engine::idle() const { return pending_.load() == 0; }

void Engine::set_paused(bool p) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = p;
  }
  cv_.notify_all();
}

void Engine::loop() {
  while (running_thread_) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(50), [&] {
        return !running_thread_ || ((!inbox_.empty() || !cancels_.empty() || !sched_->idle()) && !paused_);
      });
    }
    if (!running_thread_) break;
    auto st = step();
    (void)st;  // errors were delivered to the affected requests
    if (sched_->idle()) publish_snapshot();
  }
}

void Engine::start() {
  if (running_thread_.exchange(true)) return;
  thread_ = std::thread([this] { loop(); });
}

void Engine::stop(bool drain) {
  if (drain && running_thread_) {
    while (!idle()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (running_thread_.exchange(false)) {
    cv_.notify_all();
    thread_.join();
  }
  if (!drain) {
    // Cancel whatever is left and run one step so every request gets its final event.
    std::vector<uint64_t> ids;
    for (const auto& s : sched_->running()) ids.push_back(s->id);
    for (const auto& s : sched_->waiting()) ids.push_back(s->id);
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (const auto& s : inbox_) ids.push_back(s->id);
      paused_ = false;
    }
    for (uint64_t id : ids) cancel(id);
    if (!ids.empty()) {
      drain_inbox();
      std::vector<std::unique_ptr<Sequence>> ended;
      sched_->schedule(SteadyTime::min(), ended);
      end_all(ended);
    }
  }
}

void Engine::publish_snapshot() {
  last_publish_ = Clock::now();
  box_.publish(std::make_shared<const Snapshot>(build_snapshot()));
}

Result<Completion> complete(Engine& e, Request req, const TokenCallback& on_event) {
  Completion c;
  std::string error;
  bool done = false;
  const SubmitResult sr = e.submit(std::move(req), [&](const TokenEvent& ev) {
    if (ev.token >= 0) c.tokens.push_back(ev.token);
    c.text += ev.text;
    if (ev.finished) {
      c.reason = ev.reason;
      c.metrics = ev.metrics;
      error = ev.error;
      done = true;
    }
    if (on_event) on_event(ev);
  });
  if (!sr.ok()) return make_error(std::string(sr.reason()) + ": " + sr.message);
  while (!done) PAGODA_TRY(e.step());
  if (c.reason == FinishReason::Error) return make_error(error.empty() ? std::string("request failed") : error);
  return c;
}

}  // namespace pagoda
