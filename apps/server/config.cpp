#include "apps/server/config.h"
#include "core/util/file.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <fstream>
#include <sstream>

namespace pagoda::server {
namespace {

using nlohmann::json;
using Setter = std::function<Status(const json&, ServeSettings&)>;

Error wrong_type(const std::string& key, const char* want, const json& v) {
  return make_error(fmt::format("config: '{}' must be {}, got {}", key, want, v.type_name()));
}

Setter text(std::string ServeSettings::*field, std::string key, bool numbers_too = false) {
  return [field, key, numbers_too](const json& v, ServeSettings& s) -> Status {
    if (v.is_string()) s.*field = v.get<std::string>();
    else if (numbers_too && v.is_number_integer()) s.*field = std::to_string(v.get<int64_t>());
    else return wrong_type(key, numbers_too ? "a string or an integer" : "a string", v);
    return {};
  };
}

template <typename Int, typename Settings>
Setter integer(Int Settings::*field, std::string key) {
  return [field, key](const json& v, ServeSettings& s) -> Status {
    if (!v.is_number_integer()) return wrong_type(key, "an integer", v);
    const int64_t x = v.get<int64_t>();
    if (x < int64_t(std::numeric_limits<Int>::min()) || x > int64_t(std::numeric_limits<Int>::max()))
      return make_error(fmt::format("config: '{}' is out of range", key));
    s.*field = Int(x);
    return {};
  };
}

Setter number(double ServeSettings::*field, std::string key) {
  return [field, key](const json& v, ServeSettings& s) -> Status {
    if (!v.is_number()) return wrong_type(key, "a number", v);
    s.*field = v.get<double>();
    return {};
  };
}

Setter flag(bool ServeSettings::*field, std::string key) {
  return [field, key](const json& v, ServeSettings& s) -> Status {
    if (!v.is_boolean()) return wrong_type(key, "a boolean", v);
    s.*field = v.get<bool>();
    return {};
  };
}

// A list of strings; a single string is a list of one.
Setter texts(std::vector<std::string> ServeSettings::*field, std::string key) {
  return [field, key](const json& v, ServeSettings& s) -> Status {
    if (v.is_string()) {
      s.*field = {v.get<std::string>()};
      return {};
    }
    if (!v.is_array()) return wrong_type(key, "a string or an array of strings", v);
    std::vector<std::string> out;
    for (const auto& x : v) {
      if (!x.is_string()) return wrong_type(key, "a string or an array of strings", x);
      out.push_back(x.get<std::string>());
    }
    s.*field = std::move(out);
    return {};
  };
}

const std::vector<std::pair<std::string, Setter>>& setters() {
  static const std::vector<std::pair<std::string, Setter>> t = {
      {"model", text(&ServeSettings::model, "model")},
      {"draft", text(&ServeSettings::draft, "draft")},
      {"backend", text(&ServeSettings::backend, "backend")},
      {"device", integer(&ServeSettings::device, "device")},
      {"threads", integer(&ServeSettings::threads, "threads")},
      {"kv-memory", text(&ServeSettings::kv_memory, "kv-memory", true)},
      {"kv-dtype", text(&ServeSettings::kv_dtype, "kv-dtype")},
      {"block-size", integer(&ServeSettings::block_size, "block-size")},
      {"ctx-size", integer(&ServeSettings::ctx_size, "ctx-size")},
      {"max-batch-tokens", integer(&ServeSettings::max_batch_tokens, "max-batch-tokens")},
      {"max-running", integer(&ServeSettings::max_running, "max-running")},
      {"max-waiting", integer(&ServeSettings::max_waiting, "max-waiting")},
      {"no-prefix-cache", flag(&ServeSettings::no_prefix_cache, "no-prefix-cache")},
      {"host", text(&ServeSettings::host, "host")},
      {"port", integer(&ServeSettings::port, "port")},
      {"api-keys", text(&ServeSettings::api_keys, "api-keys")},
      {"ngram", integer(&ServeSettings::ngram, "ngram")},
      {"spec-k", text(&ServeSettings::spec_k, "spec-k", true)},
      {"device-sampling", text(&ServeSettings::device_sampling, "device-sampling")},
      {"grace", number(&ServeSettings::grace, "grace")},
      {"http-threads", integer(&ServeSettings::http_threads, "http-threads")},
      {"default-max-tokens", integer(&ServeSettings::default_max_tokens, "default-max-tokens")},
      {"max-body", text(&ServeSettings::max_body, "max-body", true)},
      {"metrics-key", text(&ServeSettings::metrics_key, "metrics-key")},
      {"header-timeout", number(&ServeSettings::header_timeout, "header-timeout")},
      {"body-timeout", number(&ServeSettings::body_timeout, "body-timeout")},
      {"max-preemptions", integer(&ServeSettings::max_preemptions, "max-preemptions")},
      {"tenant-cache-blocks", integer(&ServeSettings::tenant_cache_blocks, "tenant-cache-blocks")},
      {"spec-latency-slo", number(&ServeSettings::spec_latency_slo, "spec-latency-slo")},
      {"probe-interval", number(&ServeSettings::probe_interval, "probe-interval")},
      {"public-prefix", texts(&ServeSettings::public_prefix, "public-prefix")},
      {"retry-after-max", integer(&ServeSettings::retry_after_max, "retry-after-max")},
      {"access-log", text(&ServeSettings::access_log, "access-log")},
  };
  return t;
}

Status check_range(const char* key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) return make_error(fmt::format("{} must be in {}..{} (got {})", key, lo, hi, v));
  return {};
}

}  // namespace

const std::vector<std::string>& serve_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& [name, set] : setters()) k.push_back(name);
    return k;
  }();
  return keys;
}

Status apply_config_json(const json& j, ServeSettings& s, const std::function<bool(const std::string&)>& given_on_cli) {
  if (!j.is_object()) return make_error("config: the file must hold a JSON object");
  for (const auto& [key, value] : j.items()) {
    const auto& t = setters();
    auto it = std::find_if(t.begin(), t.end(), [&](const auto& p) { return p.first == key; });
    if (it == t.end()) return make_error(fmt::format("config: unknown key '{}' (keys are the flag names without dashes)", key));
    if (given_on_cli && given_on_cli(key)) continue;  // the command line wins
    PAGODA_TRY(it->second(value, s));
  }
  return {};
}

Result<json> read_config_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return make_error("config: " + text.error());
  try {
    return json::parse(*text);
  } catch (const json::exception& e) {
    return make_error("config: '" + path + "' is not valid JSON: " + e.what());
  }
}

Status validate_settings(const ServeSettings& s) {
  PAGODA_TRY(cli::validate_engine_options(s));
  PAGODA_TRY(check_range("port", s.port, 0, 65535));
  PAGODA_TRY(check_range("http-threads", s.http_threads, 0, 4096));
  PAGODA_TRY(check_range("default-max-tokens", s.default_max_tokens, 1, 1 << 24));
  PAGODA_TRY(check_range("retry-after-max", s.retry_after_max, 1, 3600));
  for (const auto& f : s.public_prefix)
    if (f.empty()) return make_error("public-prefix: an empty file name");
  if (!(s.grace >= 0) || !std::isfinite(s.grace)) return make_error("grace must be a non-negative number of seconds");
  if (!(s.header_timeout > 0 && s.header_timeout <= 3600)) return make_error("header-timeout must be in (0, 3600] seconds");
  if (!(s.body_timeout > 0 && s.body_timeout <= 3600)) return make_error("body-timeout must be in (0, 3600] seconds");
  for (char c : s.metrics_key)
    if (uint8_t(c) <= 0x20 || uint8_t(c) == 0x7f) return make_error("metrics-key must not contain spaces or control characters");
  if (s.model.empty()) return make_error("no model: pass -m FILE.gguf or set \"model\" in the config");
  return {};
}

Result<SpecConfig> spec_config(const ServeSettings& s) {
  return make_spec_config(!s.draft.empty(), s.ngram, s.spec_k);
}

Result<EngineConfig> engine_config(const ServeSettings& s) { return cli::engine_config(s); }

int http_threads_for(const ServeSettings& s) {
  if (s.http_threads > 0) return s.http_threads;
  // A connection per request the engine can hold, plus room for health checks and inspectors.
  return int(std::min<int64_t>(int64_t(s.max_running) + s.max_waiting + 16, 1024));
}

}  // namespace pagoda::server
