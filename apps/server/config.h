// `pagoda serve` settings: command-line flags and an optional --config FILE.json with the same
// keys (flag names without the dashes, e.g. "kv-memory"). A flag given on the command line wins
// over the file; a key the server does not know, or of the wrong type, is an error naming it.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/util/result.h"

namespace pagoda::server {

struct ServeSettings {
  std::string model;
  std::string draft;             // draft model for speculative decoding
  std::string backend = "cpu";
  int device = -1;
  int threads = 0;               // CPU backend threads (0 = all cores)
  std::string kv_memory = "256MiB";
  std::string kv_dtype = "f32";
  int32_t block_size = 16;
  int32_t max_batch_tokens = 512;
  int32_t max_running = 64;
  int32_t max_waiting = 256;     // queue bound: beyond it requests get 429
  bool no_prefix_cache = false;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_keys;          // file of API keys -> tenants ("" = single tenant)
  int32_t ngram = 0;             // n-gram drafter order (0 = off)
  std::string spec_k = "4";      // draft length 1..16, or "auto"
  double grace = 10;             // seconds in-flight requests get to finish on SIGINT/SIGTERM
  int http_threads = 0;          // 0 = max-running + max-waiting + 16
  int32_t default_max_tokens = 256;
  std::string max_body = "1MiB";
  std::string metrics_key;       // non-empty: /metrics needs it (or an admin API key) as a bearer token
  double header_timeout = 10;    // seconds a request's whole head may take to arrive
  double body_timeout = 30;      // seconds its whole body may take
  // Engine options (EngineConfig / SpecConfig), as `pagoda run` names them.
  int32_t max_preemptions = 8;       // a request preempted more often fails (preemption_limit)
  int32_t tenant_cache_blocks = 0;   // most cached (refcount 0) KV blocks one tenant keeps (0 = no cap)
  double spec_latency_slo = 0;       // adaptive k: most mean step time in ms a change may leave (0 = off)
  double probe_interval = 0.5;       // degraded engine: seconds between recovery probes
  std::vector<std::string> public_prefix;  // files, each one system prompt every tenant may share
  int32_t retry_after_max = 30;      // bound on the Retry-After a 429 computes from the drain rate
  std::string access_log;            // JSON line per request to this file ("-" = stdout, "" = off)
  std::string device_sampling = "auto";  // sampling/verify as device ops: auto (GPU backends), on, off
};

// The keys a config file may hold, in the order --help lists the flags.
const std::vector<std::string>& serve_config_keys();

// Applies a config object to `s`, skipping keys for which `given_on_cli(key)` is true.
Status apply_config_json(const nlohmann::json& j, ServeSettings& s, const std::function<bool(const std::string&)>& given_on_cli);
Result<nlohmann::json> read_config_file(const std::string& path);

// Range checks that hold whichever way a value arrived.
Status validate_settings(const ServeSettings& s);
// Speculation from --draft / --ngram / --spec-k.
Result<SpecConfig> spec_config(const ServeSettings& s);
// Engine settings other than the KV budget in bytes (the caller parses --kv-memory).
EngineConfig engine_config(const ServeSettings& s, uint64_t kv_bytes);
int http_threads_for(const ServeSettings& s);

}  // namespace pagoda::server
