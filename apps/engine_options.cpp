#include "apps/engine_options.h"

#include <fmt/core.h>

#include <cmath>

#include "apps/cli_common.h"
#include "backends/cpu/cpu_backend.h"

namespace pagoda::cli {
namespace {

// The accepted ranges, named once: the help texts quote them and validation enforces them.
constexpr int32_t kMaxContext = 1 << 24;
constexpr int32_t kMaxBlockSize = 1024, kMaxBatchTokens = 1 << 20, kMaxRunning = 1 << 16, kMaxWaiting = 1 << 20;
constexpr int32_t kMaxNgram = 16, kMaxPreemptions = 1 << 20, kMaxTenantBlocks = 1 << 30, kMaxKvBlocks = 1 << 20;
constexpr double kMaxSpecSloMs = 1e6, kMaxProbeS = 3600;

Status in_range(const char* flag, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) return make_error(fmt::format("{} must be in {}..{} (got {})", flag, lo, hi, v));
  return {};
}

}  // namespace

void add_engine_options(CLI::App* app, EngineOptions& o, unsigned flags) {
  if (flags & kKvMemoryFlag)
    app->add_option("--kv-memory", o.kv_memory, "KV cache budget: a size (512MiB) or a share of free device memory (90%)")
        ->capture_default_str();
  if (flags & kKvBlocksFlag)
    app->add_option("--kv-blocks", o.kv_blocks, fmt::format("KV cache size in blocks (at most {})", kMaxKvBlocks))->capture_default_str();
  if (flags & kKvDtypeFlag) app->add_option("--kv-dtype", o.kv_dtype, "KV cache element type: f32 or f16")->capture_default_str();
  if (flags & kBlockSizeFlag)
    app->add_option("--block-size", o.block_size, fmt::format("Tokens per KV block (1..{})", kMaxBlockSize))->capture_default_str();
  if (flags & kContextFlag)
    app->add_option("-c,--ctx-size", o.ctx_size,
                    "Most tokens one sequence holds, prompt and generated (0 = the model's context; as llama.cpp's -c)")
        ->capture_default_str();
  if (flags & kBatchTokensFlag)
    app->add_option("--max-batch-tokens", o.max_batch_tokens, "Token budget per engine step")->capture_default_str();
  if (flags & kMaxRunningFlag) app->add_option("--max-running", o.max_running, "Most requests decoding at once")->capture_default_str();
  if (flags & kMaxWaitingFlag)
    app->add_option("--max-waiting", o.max_waiting, "Queue bound; a full queue rejects (a server answers 429)")->capture_default_str();
  if (flags & kPrefixCacheFlag) app->add_flag("--no-prefix-cache", o.no_prefix_cache, "Disable prefix reuse");
  if (flags & kSpeculationFlags) {
    app->add_option("--draft", o.draft, "Speculative decoding with this draft model (same vocabulary)");
    app->add_option("--ngram", o.ngram, fmt::format("Speculative decoding by n-gram prompt lookup of order N (1..{})", kMaxNgram));
    app->add_option("--spec-k", o.spec_k, "Draft tokens per step: 1..16, or auto (adaptive controller)")->capture_default_str();
  }
  if (flags & kPreemptionFlag)
    app->add_option("--max-preemptions", o.max_preemptions, "A request preempted more often than this fails (preemption_limit)")
        ->capture_default_str();
  if (flags & kTenantCacheFlag)
    app->add_option("--tenant-cache-blocks", o.tenant_cache_blocks,
                    "Most cached KV blocks one tenant keeps, so one tenant cannot evict the others' prefixes (0 = no cap)")
        ->capture_default_str();
  if (flags & kSpecSloFlag)
    app->add_option("--spec-latency-slo", o.spec_latency_slo,
                    "Adaptive k (--spec-k auto): most mean step time in ms a change may leave (0 = off)")
        ->capture_default_str();
  if (flags & kProbeFlag)
    app->add_option("--probe-interval", o.probe_interval, "After a backend fault: seconds between recovery probes")
        ->capture_default_str();
  if (flags & kDeviceSamplingFlag)
    app->add_option("--device-sampling", o.device_sampling,
                    "Sample and verify on the device, downloading only token ids: auto (on a GPU device), on, off")
        ->capture_default_str();
  if (flags & kBackendFlags) add_backend_flags(app, o.backend, o.device, o.threads);
}

Status validate_engine_options(const EngineOptions& o) {
  if (auto st = check_cpu_threads(o.threads); !st) return make_error("-t/--threads: " + st.error());
  if (o.device < -1) return make_error(fmt::format("--device must be a device index >= 0 (got {})", o.device));
  PAGODA_TRY(in_range("--kv-blocks", o.kv_blocks, 0, kMaxKvBlocks));
  if (auto d = parse_kv_dtype(o.kv_dtype); !d) return make_error("--" + d.error());
  PAGODA_TRY(in_range("--block-size", o.block_size, 1, kMaxBlockSize));
  PAGODA_TRY(in_range("-c/--ctx-size", o.ctx_size, 0, kMaxContext));
  PAGODA_TRY(in_range("--max-batch-tokens", o.max_batch_tokens, 1, kMaxBatchTokens));
  PAGODA_TRY(in_range("--max-running", o.max_running, 1, kMaxRunning));
  PAGODA_TRY(in_range("--max-waiting", o.max_waiting, 1, kMaxWaiting));
  PAGODA_TRY(in_range("--ngram", o.ngram, 0, kMaxNgram));
  PAGODA_TRY(in_range("--max-preemptions", o.max_preemptions, 0, kMaxPreemptions));
  PAGODA_TRY(in_range("--tenant-cache-blocks", o.tenant_cache_blocks, 0, kMaxTenantBlocks));
  if (!(o.spec_latency_slo >= 0 && o.spec_latency_slo <= kMaxSpecSloMs))
    return make_error(fmt::format("--spec-latency-slo must be in 0..{:g} milliseconds (0 = off)", kMaxSpecSloMs));
  if (!(o.probe_interval > 0 && o.probe_interval <= kMaxProbeS))
    return make_error(fmt::format("--probe-interval must be in (0, {:g}] seconds", kMaxProbeS));
  if (o.device_sampling != "auto" && o.device_sampling != "on" && o.device_sampling != "off")
    return make_error("--device-sampling must be auto, on or off (got '" + o.device_sampling + "')");
  if (auto spec = make_spec_config(!o.draft.empty(), o.ngram, o.spec_k); !spec) return make_error("--" + spec.error());
  if (o.kv_blocks == 0) {
    auto frac = parse_kv_fraction(o.kv_memory);
    if (!frac) return make_error("--" + frac.error());
    if (!*frac)
      if (auto bytes = parse_size(o.kv_memory); !bytes) return make_error("--kv-memory: " + bytes.error());
  }
  return {};
}

Result<EngineConfig> engine_config(const EngineOptions& o) {
  PAGODA_TRY(validate_engine_options(o));
  EngineConfig c;
  c.num_blocks = o.kv_blocks;
  if (o.kv_blocks == 0) {
    if (auto frac = *parse_kv_fraction(o.kv_memory)) c.kv_fraction = *frac;
    else c.kv_bytes = *parse_size(o.kv_memory);
  }
  c.kv_dtype = *parse_kv_dtype(o.kv_dtype);
  c.block_size = o.block_size;
  c.max_batch_tokens = o.max_batch_tokens;
  c.max_context = o.ctx_size;
  c.max_running = o.max_running;
  c.max_waiting = o.max_waiting;
  c.prefix_caching = !o.no_prefix_cache;
  c.max_preemptions = o.max_preemptions;
  c.tenant_cached_blocks = o.tenant_cache_blocks;
  c.probe_interval_s = o.probe_interval;
  c.spec = *make_spec_config(!o.draft.empty(), o.ngram, o.spec_k);
  c.spec.latency_slo_s = o.spec_latency_slo / 1e3;
  c.device_sampling = o.device_sampling;
  PAGODA_TRY(validate_engine_config(c));
  return c;
}

BackendOptions backend_options(const EngineOptions& o) { return BackendOptions{o.backend, o.device, o.threads}; }

}  // namespace pagoda::cli
