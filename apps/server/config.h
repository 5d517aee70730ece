// `pagoda serve` settings: command-line flags and an optional --config FILE.json with the same
// keys (flag names without the dashes, e.g. "kv-memory"). A flag given on the command line wins
// over the file; a key the server does not know, or of the wrong type, is an error naming it.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/engine_options.h"
#include "core/engine/engine.h"
#include "core/util/result.h"

namespace pagoda::server {

// The engine's settings (backend, KV cache, scheduler, speculation) are the shared
// cli::EngineOptions, with the same flags, defaults and checks as `pagoda run`; max_waiting is the
// queue bound beyond which requests get 429.
struct ServeSettings : cli::EngineOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_keys;          // file of API keys -> tenants ("" = single tenant)
  double grace = 10;             // seconds in-flight requests get to finish on SIGINT/SIGTERM
  int http_threads = 0;          // 0 = max-running + max-waiting + 16
  int32_t default_max_tokens = 256;
  std::string max_body = "1MiB";
  std::string metrics_key;       // non-empty: /metrics needs it (or an admin API key) as a bearer token
  double header_timeout = 10;    // seconds a request's whole head may take to arrive
  double body_timeout = 30;      // seconds its whole body may take
  std::vector<std::string> public_prefix;  // files, each one system prompt every tenant may share
  int32_t retry_after_max = 30;      // bound on the Retry-After a 429 computes from the drain rate
  std::string access_log;            // JSON line per request to this file ("-" = stdout, "" = off)
};

// The keys a config file may hold, in the order --help lists the flags.
const std::vector<std::string>& serve_config_keys();

// Applies a config object to `s`, skipping keys for which `given_on_cli(key)` is true.
Status apply_config_json(const nlohmann::json& j, ServeSettings& s, const std::function<bool(const std::string&)>& given_on_cli);
Result<nlohmann::json> read_config_file(const std::string& path);

// Range checks that hold whichever way a value arrived (the engine's are cli::validate_engine_options).
Status validate_settings(const ServeSettings& s);
// Speculation from --draft / --ngram / --spec-k.
Result<SpecConfig> spec_config(const ServeSettings& s);
// The engine settings (cli::engine_config: --kv-memory parsed, every value checked).
Result<EngineConfig> engine_config(const ServeSettings& s);
int http_threads_for(const ServeSettings& s);

}  // namespace pagoda::server
