// `pagoda bench WORKLOAD`: reproducible measurements with their experiment envelope.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/cli_common.h"
#include "core/engine/bench.h"

#ifndef PAGODA_GIT_COMMIT
#define PAGODA_GIT_COMMIT "unknown"
#endif
#ifndef PAGODA_BUILD_TYPE
#define PAGODA_BUILD_TYPE "unknown"
#endif

namespace pagoda::cli {
namespace {

struct BenchOptions {
  std::string model = default_model_path();
  int32_t prompt = 16;
  int32_t gen = 128;
  int repeats = 5;
  bool json = false;
  std::string kv_dtype = "f32";
  BackendOptions be;
};

nlohmann::json envelope(const BenchOptions& o, Backend& be, const LoadedModel& m) {
  const auto info = be.info();
  return {{"backend", info.name}, {"device", info.device}, {"driver", info.driver}, {"model", o.model},
          {"model_name", m.config.name}, {"weights_digest", m.weights.digest.substr(0, 16)},
          {"weight_bytes", m.weights.bytes}, {"kv_dtype", o.kv_dtype}, {"block_size", 16},
          {"threads", o.be.threads}, {"build_type", PAGODA_BUILD_TYPE}, {"git_commit", PAGODA_GIT_COMMIT},
          {"repeats", o.repeats}, {"warmup_runs", 1}};
}

int bench_decode_cmd(const BenchOptions& o) {
  auto be = open_backend(o.be, o.json);
  if (!be) return fail(be.error());
  auto m = load_model(o.model, **be, o.json);
  if (!m) return fail(m.error());
  const double bw = measure_copy_bandwidth();
  auto r = bench_decode(**m, **be, o.prompt, o.gen, o.repeats, o.kv_dtype == "f16" ? DType::F16 : DType::F32);
  if (!r) return fail(r.error());
  // Each decoded token streams every weight byte once: that is the memory roofline.
  const double roof = bw / double((*m)->weights.bytes);
  nlohmann::json j = envelope(o, **be, **m);
  j["workload"] = "decode";
  j["prompt_tokens"] = r->prompt_tokens;
  j["generated_tokens"] = r->generated_tokens;
  j["decode_tok_s"] = {{"median", r->median_decode_tok_s}, {"p99_low", r->p99_decode_tok_s}, {"runs", r->decode_tok_s}};
  j["prefill_tok_s_median"] = r->median_prefill_tok_s;
  j["ttft_ms_median"] = r->median_ttft_ms;
  j["copy_bandwidth_gb_s"] = bw / 1e9;
  j["roofline_tok_s"] = roof;
  j["fraction_of_roofline"] = r->median_decode_tok_s / roof;
  if (o.json) {
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  const auto& e = j;
  fmt::print("envelope: backend={} device=\"{}\" model={} ({}…) weights={:.1f} MiB kv={} build={} commit={}\n",
             e["backend"].get<std::string>(), e["device"].get<std::string>(), o.model,
             e["weights_digest"].get<std::string>(), double((*m)->weights.bytes) / (1 << 20), o.kv_dtype,
             PAGODA_BUILD_TYPE, PAGODA_GIT_COMMIT);
  fmt::print("decode (1 stream, {} prompt + {} generated, {} repeats after 1 warm-up):\n", o.prompt, r->generated_tokens, o.repeats);
  fmt::print("  decode   median {:.1f} tok/s  (slowest run {:.1f})\n", r->median_decode_tok_s, r->p99_decode_tok_s);
  fmt::print("  prefill  median {:.1f} tok/s, TTFT median {:.2f} ms\n", r->median_prefill_tok_s, r->median_ttft_ms);
  fmt::print("  roofline copy bandwidth {:.2f} GB/s / {:.1f} MiB weights = {:.1f} tok/s  ->  {:.2f} of roofline\n",
             bw / 1e9, double((*m)->weights.bytes) / (1 << 20), roof, r->median_decode_tok_s / roof);
  return 0;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Benchmarks: decode (more workloads follow)");
  cmd->require_subcommand(1);
  auto* dec = cmd->add_subcommand("decode", "Single-stream decode tok/s against the memory roofline");
  dec->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
  dec->add_option("--prompt-tokens", o->prompt, "Prompt length")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  dec->add_option("-n,--gen-tokens", o->gen, "Tokens to decode per run")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  dec->add_option("-r,--repeats", o->repeats, "Measured runs (after one warm-up)")->capture_default_str()->check(CLI::Range(1, 1000));
  dec->add_option("--kv-dtype", o->kv_dtype, "f32 or f16")->capture_default_str();
  dec->add_flag("--json", o->json, "Machine-readable output");
  add_backend_options(dec, o->be);
  dec->callback([o] {
    const int rc = bench_decode_cmd(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
