// The engine's command-line flags, registered in one place for every command that builds an engine
// (run, serve, chat, inspect, bench): the same names, help texts and range checks everywhere. A
// command picks the flags it offers and its own defaults; `engine_config` checks every value once
// (so a flag and a `serve --config` key are refused with the same message) and builds EngineConfig.
#pragma once
#include <cstdint>
#include <string>

#include "apps/cli_common.h"
#include "core/engine/engine.h"
#include "core/util/result.h"

namespace pagoda::cli {

// User-facing engine settings, as the flags spell them. The defaults are `pagoda run`'s; a command
// with others sets them before registering (its --help shows them).
struct EngineOptions {
  std::string backend = "cpu";
  int device = -1;
  int threads = 0;                   // CPU backend threads (0 = all cores)
  std::string kv_memory = "256MiB";  // a size, or a share of free device memory ("90%")
  int32_t kv_blocks = 0;             // > 0: the KV cache in blocks, instead of kv_memory
  std::string kv_dtype = "f32";
  int32_t block_size = 16;
  int32_t ctx_size = 0;              // most tokens one sequence holds (0 = the model's context)
  int32_t max_batch_tokens = 512;
  int32_t max_running = 64;
  int32_t max_waiting = 256;
  bool no_prefix_cache = false;
  int32_t max_preemptions = 8;
  int32_t tenant_cache_blocks = 0;
  std::string draft;                 // draft model path ("" = none)
  int32_t ngram = 0;                 // n-gram drafter order (0 = off)
  std::string spec_k = "4";          // 1..16 or "auto"
  double spec_latency_slo = 0;       // ms
  double probe_interval = 0.5;       // s
  std::string device_sampling = "auto";  // sampling/verify as device ops: auto (GPU backends), on, off
};

// Which flags a command offers (bits; combine with |).
enum EngineFlags : unsigned {
  kBackendFlags = 1u << 0,     // --backend, --device, -t/--threads
  kKvMemoryFlag = 1u << 1,     // --kv-memory
  kKvBlocksFlag = 1u << 2,     // --kv-blocks
  kKvDtypeFlag = 1u << 3,      // --kv-dtype
  kBlockSizeFlag = 1u << 4,    // --block-size
  kBatchTokensFlag = 1u << 5,  // --max-batch-tokens
  kMaxRunningFlag = 1u << 6,   // --max-running
  kMaxWaitingFlag = 1u << 7,   // --max-waiting
  kPrefixCacheFlag = 1u << 8,  // --no-prefix-cache
  kPreemptionFlag = 1u << 9,   // --max-preemptions
  kTenantCacheFlag = 1u << 10, // --tenant-cache-blocks
  kSpeculationFlags = 1u << 11,  // --draft, --ngram, --spec-k
  kSpecSloFlag = 1u << 12,     // --spec-latency-slo
  kProbeFlag = 1u << 13,       // --probe-interval
  kDeviceSamplingFlag = 1u << 14,  // --device-sampling
  kContextFlag = 1u << 15,     // -c/--ctx-size
  // What `pagoda run` offers; `serve` adds the recovery probe.
  kServingFlags = kBackendFlags | kKvMemoryFlag | kKvDtypeFlag | kBlockSizeFlag | kBatchTokensFlag | kMaxRunningFlag |
                  kMaxWaitingFlag | kPrefixCacheFlag | kPreemptionFlag | kTenantCacheFlag | kSpeculationFlags | kSpecSloFlag |
                  kDeviceSamplingFlag | kContextFlag,
};

void add_engine_options(CLI::App* app, EngineOptions& o, unsigned flags);

// Every range and combination, with messages that name the flag ("--block-size must be in
// 1..1024 (got 0)"); the same whichever command or config file the value came from.
Status validate_engine_options(const EngineOptions& o);
// validate_engine_options, then the EngineConfig the options describe (--kv-memory parsed into
// kv_bytes or kv_fraction, --kv-blocks into num_blocks).
Result<EngineConfig> engine_config(const EngineOptions& o);
// The backend the options name, for open_backend.
BackendOptions backend_options(const EngineOptions& o);

}  // namespace pagoda::cli
