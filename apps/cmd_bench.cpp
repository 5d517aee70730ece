// `pagoda bench WORKLOAD`: reproducible measurements with their experiment envelope.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/cli_common.h"
#include "core/engine/bench.h"
#include "core/engine/bench_workloads.h"

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

struct Loaded {
  BackendPtr be;
  std::unique_ptr<LoadedModel> m;
};

Result<Loaded> open_all(const BenchOptions& o) {
  auto be = open_backend(o.be, o.json);
  if (!be) return be.take_error();
  auto m = load_model(o.model, **be, o.json);
  if (!m) return m.take_error();
  return Loaded{std::move(*be), std::move(*m)};
}

void emit(const BenchOptions& o, nlohmann::json j, const std::string& text) {
  if (o.json) fmt::print("{}\n", j.dump(2));
  else fmt::print("{}", text);
}

struct WorkloadOptions {
  std::string streams = "1,2,4,8,16,32,64";
  int32_t prompt = 512;
  double cached = 0.9;
  std::string kv_memory = "32MiB";
  int32_t requests = 256;
  std::string draft;
  int32_t ngram = 0;
  int32_t k_max = 8;
};

std::vector<int32_t> parse_list(const std::string& s) {
  std::vector<int32_t> v;
  size_t p = 0;
  while (p < s.size()) {
    const size_t q = s.find(',', p);
    v.push_back(std::stoi(s.substr(p, q == std::string::npos ? std::string::npos : q - p)));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return v;
}

int bench_workload(const std::string& w, const BenchOptions& o, const WorkloadOptions& wo) {
  auto L = open_all(o);
  if (!L) return fail(L.error());
  nlohmann::json j = envelope(o, *L->be, *L->m);
  j["workload"] = w;
  std::string text = fmt::format("envelope: backend={} device=\"{}\" model={} weights={:.1f} MiB build={} commit={}\n",
                                 L->be->info().name, L->be->info().device, o.model, double(L->m->weights.bytes) / (1 << 20),
                                 PAGODA_BUILD_TYPE, PAGODA_GIT_COMMIT);
  if (w == "batch") {
    std::vector<int32_t> streams;
    try { streams = parse_list(wo.streams); } catch (...) { return fail("--streams must be a comma-separated list of integers"); }
    auto r = bench_batch(*L->m, *L->be, streams, o.gen, o.repeats);
    if (!r) return fail(r.error());
    text += fmt::format("batched decode ({} tokens per stream, median of {}):\n  {:>8} {:>12} {:>10}\n", o.gen, o.repeats, "streams", "tok/s", "vs 1");
    for (const auto& p : *r) {
      text += fmt::format("  {:>8} {:>12.1f} {:>9.2f}x\n", p.streams, p.gen_tok_s, p.speedup_vs_1);
      j["points"].push_back({{"streams", p.streams}, {"gen_tok_s", p.gen_tok_s}, {"speedup_vs_1", p.speedup_vs_1}});
    }
  } else if (w == "prefix") {
    auto r = bench_prefix(*L->m, *L->be, wo.prompt, wo.cached, o.repeats);
    if (!r) return fail(r.error());
    text += fmt::format("prefix cache: {} prompt tokens, {} served from cache\n  TTFT cold {:.2f} ms, warm {:.2f} ms -> {:.3f}x\n"
                        "  avoided prefill tokens (engine counter): {}\n", r->prompt_tokens, r->cached_tokens,
                        r->cold_ttft_ms, r->warm_ttft_ms, r->ratio, r->avoided_prefill_tokens);
    j.update({{"prompt_tokens", r->prompt_tokens}, {"cached_tokens", r->cached_tokens}, {"cold_ttft_ms", r->cold_ttft_ms},
              {"warm_ttft_ms", r->warm_ttft_ms}, {"ratio", r->ratio}, {"avoided_prefill_tokens", r->avoided_prefill_tokens}});
  } else if (w == "capacity") {
    auto bytes = parse_size(wo.kv_memory);
    if (!bytes) return fail(bytes.error());
    auto r = bench_capacity(*L->m, *L->be, *bytes, wo.requests);
    if (!r) return fail(r.error());
    text += fmt::format("KV capacity in {:.2f} MiB: contiguous max-context slots {}, paged peak concurrent {} -> {:.1f}x, "
                        "mean waste {:.2f}%\n", double(*bytes) / (1 << 20), r->contiguous_slots, r->peak_concurrent,
                        r->ratio, r->waste * 100);
    j.update({{"kv_budget_bytes", r->kv_budget_bytes}, {"contiguous_slots", r->contiguous_slots},
              {"peak_concurrent", r->peak_concurrent}, {"ratio", r->ratio}, {"waste", r->waste}});
  } else if (w == "spec") {
    std::unique_ptr<LoadedModel> draft;
    if (!wo.draft.empty()) {
      auto d = load_model(wo.draft, *L->be, o.json);
      if (!d) return fail("draft: " + d.error());
      draft = std::move(*d);
    } else if (wo.ngram == 0) {
      return fail("spec bench needs --draft MODEL or --ngram N");
    }
    std::vector<int32_t> ks;
    for (int32_t k = 1; k <= wo.k_max; ++k) ks.push_back(k);
    auto r = bench_spec(*L->m, draft.get(), *L->be, draft ? "draft" : "ngram", ks, true, o.gen, o.repeats);
    if (!r) return fail(r.error());
    text += fmt::format("speculation ({}), greedy, {} tokens x 2 prompts, median of {}:\n  {:>6} {:>10} {:>8} {:>10} {:>11} {:>9}\n",
                        draft ? "draft model" : "n-gram", o.gen, o.repeats, "k", "tok/s", "speedup", "accept", "accept len", "identical");
    for (const auto& p : *r) {
      text += fmt::format("  {:>6} {:>10.1f} {:>7.2f}x {:>9.1f}% {:>11.2f} {:>9}\n", p.label, p.gen_tok_s, p.speedup,
                          p.acceptance * 100, p.mean_accept_len, p.identical ? "yes" : "NO");
      j["points"].push_back({{"k", p.label}, {"gen_tok_s", p.gen_tok_s}, {"speedup", p.speedup}, {"acceptance", p.acceptance},
                             {"mean_acceptance_length", p.mean_accept_len}, {"identical", p.identical}});
    }
  }
  emit(o, j, text);
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
  auto wo = std::make_shared<WorkloadOptions>();
  const std::pair<const char*, const char*> workloads[] = {
      {"batch", "Decode throughput at 1..64 concurrent streams"},
      {"prefix", "TTFT with a mostly cached prompt vs cold"},
      {"capacity", "Sequences that fit a KV budget: paged vs contiguous max-context slots"},
      {"spec", "Speculative decoding: tok/s and acceptance for k = 1..8 and auto"}};
  for (const auto& [name, help] : workloads) {
    auto* sub = cmd->add_subcommand(name, help);
    sub->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
    sub->add_option("-n,--gen-tokens", o->gen, "Tokens generated per request")->capture_default_str()->check(CLI::Range(2, 1 << 20));
    sub->add_option("-r,--repeats", o->repeats, "Measured runs (after one warm-up)")->capture_default_str()->check(CLI::Range(1, 1000));
    sub->add_flag("--json", o->json, "Machine-readable output");
    add_backend_options(sub, o->be);
    const std::string w = name;
    if (w == "batch") sub->add_option("--streams", wo->streams, "Comma-separated stream counts")->capture_default_str();
    if (w == "prefix") {
      sub->add_option("--prompt-tokens", wo->prompt, "Prompt length")->capture_default_str();
      sub->add_option("--cached", wo->cached, "Fraction of the prompt shared with the earlier request")->capture_default_str()->check(CLI::Range(0.0, 1.0));
    }
    if (w == "capacity") {
      sub->add_option("--kv-memory", wo->kv_memory, "KV budget")->capture_default_str();
      sub->add_option("--requests", wo->requests, "Requests offered")->capture_default_str();
    }
    if (w == "spec") {
      sub->add_option("--draft", wo->draft, "Draft model");
      sub->add_option("--ngram", wo->ngram, "n-gram drafter order instead of a draft model");
      sub->add_option("--k-max", wo->k_max, "Largest k in the sweep")->capture_default_str()->check(CLI::Range(1, 16));
    }
    sub->callback([o, wo, w] {
      const int rc = bench_workload(w, *o, *wo);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
}

}  // namespace pagoda::cli
