// `pagoda bench WORKLOAD`: reproducible measurements with their experiment envelope.
#include <fmt/core.h>

#include <chrono>
#include <thread>

#include <cmath>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "apps/bench/bench_device.h"
#include "apps/bench/bench_grammar.h"
#include "apps/bench/bench_ops.h"
#include "apps/bench/bench_plot.h"
#include "apps/cli_common.h"
#include "apps/engine_options.h"
#include "apps/bench/bench.h"
#include "apps/bench/bench_attention.h"
#include "apps/bench/bench_mixed.h"
#include "apps/bench/bench_overload.h"
#include "apps/bench/bench_workloads.h"
#include "core/grammar/json_schema.h"

#include "pagoda_version.h"  // PAGODA_GIT_COMMIT, generated at build time
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
  EngineOptions engine;  // the backend flags; bench decode's --kv-dtype
};

// The CPU threads the backend computes with: a CPU backend's pool (every core unless -t names a
// count), one for the single-threaded reference; a GPU backend is driven by one host thread.
int backend_threads(const BackendOptions& o, const Backend& be) {
  const auto info = be.info();
  if (info.name == "cpu-ref" || info.is_gpu) return 1;
  return o.backend == "cpu" && o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
}

// Every EngineConfig field that differs from its default, so an envelope names exactly what was
// changed for the run (an empty object: all defaults).
nlohmann::json non_default_engine_settings(const EngineConfig& c) {
  const EngineConfig d;
  nlohmann::json j = nlohmann::json::object();
  auto put = [&j](const char* k, const auto& v, const auto& def) {
    if (!(v == def)) j[k] = v;
  };
  put("block_size", c.block_size, d.block_size);
  put("kv_bytes", c.kv_bytes, d.kv_bytes);
  put("num_blocks", c.num_blocks, d.num_blocks);
  put("kv_fraction", c.kv_fraction, d.kv_fraction);
  if (c.kv_dtype != d.kv_dtype) j["kv_dtype"] = dtype_name(c.kv_dtype);
  put("max_batch_tokens", c.max_batch_tokens, d.max_batch_tokens);
  put("max_running", c.max_running, d.max_running);
  put("max_waiting", c.max_waiting, d.max_waiting);
  put("prefix_caching", c.prefix_caching, d.prefix_caching);
  put("adapter_id", c.adapter_id, d.adapter_id);
  put("public_prefixes", c.public_prefixes.size(), d.public_prefixes.size());
  put("snapshot_interval_s", c.snapshot_interval_s, d.snapshot_interval_s);
  put("max_preemptions", c.max_preemptions, d.max_preemptions);
  put("tenant_cached_blocks", c.tenant_cached_blocks, d.tenant_cached_blocks);
  put("probe_interval_s", c.probe_interval_s, d.probe_interval_s);
  put("spec_mode", c.spec.mode, d.spec.mode);
  put("spec_k", c.spec.k, d.spec.k);
  put("spec_adaptive", c.spec.adaptive, d.spec.adaptive);
  put("spec_ngram_n", c.spec.ngram_n, d.spec.ngram_n);
  put("spec_draft_kv_bytes", c.spec.draft_kv_bytes, d.spec.draft_kv_bytes);
  put("spec_latency_slo_s", c.spec.latency_slo_s, d.spec.latency_slo_s);
  return j;
}

// `block_size`: tokens per KV block of the cache the workload runs on; `ec`: the engine settings
// it ran with (their non-default fields are recorded).
nlohmann::json envelope(const BenchOptions& o, Backend& be, const LoadedModel& m, int32_t block_size,
                        const EngineConfig& ec = EngineConfig{}) {
  const auto info = be.info();
  return {{"backend", info.name}, {"device", info.device}, {"driver", info.driver}, {"model", o.model},
          {"model_name", m.config.name}, {"weights_digest", m.weights.digest.get().substr(0, 16)},
          {"tokenizer_digest", m.tokenizer->digest().substr(0, 16)}, {"engine_non_default", non_default_engine_settings(ec)},
          {"build_flags", PAGODA_BUILD_FLAGS},
          {"weight_bytes", m.weights.bytes}, {"weight_dtype", dtype_name(m.weights.layers.empty() ? m.weights.output.dtype : m.weights.layers[0].wq.dtype)},
          {"kv_dtype", o.engine.kv_dtype}, {"block_size", block_size},
          {"threads", backend_threads(backend_options(o.engine), be)}, {"build_type", PAGODA_BUILD_TYPE}, {"git_commit", PAGODA_GIT_COMMIT},
          {"repeats", o.repeats}, {"warmup_runs", 1}};
}

double mib(uint64_t bytes) { return double(bytes) / (1 << 20); }

nlohmann::json budget_json(const DecodeByteBudget& b) {
  return {{"matmul_weights", b.matmul_weights}, {"embedding_row", b.embedding_row}, {"norms", b.norms},
          {"kv_read", b.kv_read}, {"kv_write", b.kv_write}, {"kv_context_mean", b.context}, {"total", b.total()}};
}

std::string budget_text(const DecodeByteBudget& b) {
  return fmt::format("  bytes per decoded token {:.2f} MiB = matrices {:.2f} + embedding row {:.4f} + norms {:.4f} + K/V read "
                     "{:.3f} (mean context {:.0f}) + K/V write {:.4f}\n", mib(b.total()), mib(b.matmul_weights),
                     mib(b.embedding_row), mib(b.norms), mib(b.kv_read), b.context, mib(b.kv_write));
}

// The memory and compute roof lines of `bench decode`'s text output, from its --json fields.
std::string roofs_text(const nlohmann::json& j) {
  const double roof = j["roofline_tok_s"], frac = j["fraction_of_roofline"], mb = mib(j["byte_budget"]["total"].get<uint64_t>());
  std::string t;
  if (j.contains("device_copy_bandwidth_gb_s"))
    t += fmt::format("  roofline device copy bandwidth {:.1f} GB/s (read + write, Backend::copy) / {:.2f} MiB = {:.1f} tok/s  "
                     "->  {:.2f} of roofline\n", j["device_copy_bandwidth_gb_s"].get<double>(), mb, roof, frac);
  else
    t += fmt::format("  roofline read bandwidth {:.2f} GB/s ({} threads; 1-thread memcpy {:.2f} GB/s) / {:.2f} MiB = {:.1f} tok/s  "
                     "->  {:.2f} of roofline\n", j["read_bandwidth_gb_s"].get<double>(), j["read_bandwidth_threads"].get<int>(),
                     j["copy_bandwidth_gb_s"].get<double>(), mb, roof, frac);
  const double mm = j["matmul_gflop_s"], mflop = j["prefill_flop_per_token"].get<double>() / 1e6;
  const double pre_roof = j["prefill_compute_roofline_tok_s"], pre_frac = j["prefill_fraction_of_compute_roofline"];
  const int prompt = j["prompt_tokens"];
  if (!j.contains("fma_peak"))
    return t + fmt::format("  compute  F32 matmul 256x2048x2048 at {:.1f} GFLOP/s / {:.1f} MFLOP per prompt token = prefill "
                           "roof {:.0f} tok/s  ->  prefill of {} tokens at {:.2f} of it\n", mm, mflop, pre_roof, prompt, pre_frac);
  const auto& p = j["fma_peak"];
  const double peak = p["gflop_s"];
  return t + fmt::format("  compute  FMA peak {:.1f} GFLOP/s ({}, {} threads) / {:.1f} MFLOP per prompt token = prefill roof "
                         "{:.0f} tok/s  ->  prefill of {} tokens at {:.2f} of it ({} weights; the backend's F32 matmul "
                         "256x2048x2048 runs at {:.1f} GFLOP/s, {:.2f} of the peak)\n", peak, p["isa"].get<std::string>(),
                         p["threads"].get<int>(), mflop, pre_roof, prompt, pre_frac, j["weight_dtype"].get<std::string>(), mm,
                         mm / peak);
}

// This process's peak resident set (VmHWM of /proc/self/status) in bytes; 0 where unavailable.
uint64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "VmHWM:  123 kB"
  return 0;
}

// Restarts VmHWM from the current resident set (Linux >= 4.0); false where that is not allowed.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  return bool(f << "5" << std::flush);
}

int bench_decode_cmd(const BenchOptions& o) {
  if (auto st = validate_engine_options(o.engine); !st) return fail(st.error());
  auto ecr = engine_config(o.engine);
  if (!ecr) return fail(ecr.error());
  const EngineConfig& ec = *ecr;
  auto be = open_backend(backend_options(o.engine), o.json);
  if (!be) return fail(be.error());
  // Loaded as `run` and `serve` load (the digest hashed in the background), and the warm-up
  // request sent at once: its first token is a cold start's.
  const auto load_start = std::chrono::steady_clock::now();
  auto m = load_model(o.model, **be, o.json, DigestAt::Background);
  if (!m) return fail(m.error());
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const int threads = backend_threads(backend_options(o.engine), **be);
  const DType kv_dtype = ec.kv_dtype;
  const Backend::HostPoolStats pool_before = (*be)->host_pool_stats();
  uint64_t rss_warm = 0;
  double bw = 0, read_bw_before = 0, digest_s = 0;
  bool rss_reset = false;
  // After the warm-up, before anything is timed: the digest finished, then the probes.
  auto between = [&] {
    digest_s = (*m)->weights.digest.seconds();  // waits for it
    rss_warm = peak_rss_bytes();
    bw = measure_copy_bandwidth();
    // The read roof is sampled before and after the decode runs and the best sample kept: on a
    // shared machine the attainable bandwidth drifts by +-15% within a minute, and a roof taken
    // once at a slow moment made decode read as faster than its own roof.
    read_bw_before = measure_read_bandwidth(threads);
    // Peak memory of the model at work: the bandwidth probes' buffers (freed by now) are left out
    // by restarting the high-water mark; where it cannot restart, the peak of loading and the
    // warm-up stands.
    rss_reset = reset_peak_rss();
  };
  auto r = bench_decode(**m, **be, o.prompt, o.gen, o.repeats, ec, between);
  if (!r) return fail(r.error());
  const Backend::HostPoolStats pool_after = (*be)->host_pool_stats();
  const uint64_t peak_rss = std::max(rss_warm, rss_reset ? peak_rss_bytes() : 0);
  const double read_bw_after = measure_read_bandwidth(threads);
  const double read_bw = std::max(read_bw_before, read_bw_after);
  // The memory roof: bandwidth over the bytes one step streams (a single-threaded memcpy
  // understates what several threads read). On a GPU the weights live in device memory, so its
  // own copy bandwidth (read + write) is the roof.
  const bool gpu = (*be)->info().is_gpu;
  double dev_bw = 0;
  if (gpu) {
    auto d = measure_backend_copy_bandwidth(**be, 512ull << 20, 5);
    if (!d) return fail("measuring device copy bandwidth: " + d.error());
    dev_bw = *d;
  }
  const double roof_bw = gpu ? dev_bw : read_bw;
  const DecodeByteBudget budget = decode_byte_budget((*m)->config, (*m)->weights, kv_dtype, o.prompt + r->generated_tokens / 2.0);
  const double roof = roof_bw / double(budget.total());
  // Prefill is GEMM-bound. On the CPU its roof is the cores' FMA peak (measured once with a fixed
  // microkernel, so it does not move with the matmul code under test); a GPU has no such kernel
  // here, so its roof stays the backend's own F32 matmul rate.
  auto mm = measure_matmul_rate(**be);
  if (!mm) return fail(mm.error());
  const FmaPeak peak = gpu ? FmaPeak{} : measure_fma_peak(threads);
  const double flop_tok = matmul_flops_per_token((*m)->config, false);
  const double compute_roof = gpu ? *mm : peak.flop_s;
  const double prefill_roof = compute_roof / flop_tok;
  nlohmann::json j = envelope(o, **be, **m, ec.block_size, ec);
  j["workload"] = "decode";
  j["prompt_tokens"] = r->prompt_tokens;
  j["generated_tokens"] = r->generated_tokens;
  j["decode_tok_s"] = {{"median", r->median_decode_tok_s}, {"p99_low", r->p99_decode_tok_s}, {"runs", r->decode_tok_s}};
  j["prefill_tok_s_median"] = r->median_prefill_tok_s;
  j["ttft_ms_median"] = r->median_ttft_ms;
  j["copy_bandwidth_gb_s"] = bw / 1e9;
  j["read_bandwidth_gb_s"] = read_bw / 1e9;
  j["read_bandwidth_threads"] = threads;
  j["read_bandwidth_samples_gb_s"] = {read_bw_before / 1e9, read_bw_after / 1e9};
  if (gpu) j["device_copy_bandwidth_gb_s"] = dev_bw / 1e9;
  j["roofline_bandwidth"] = gpu ? "device copy (read + write)" : "host read";
  j["byte_budget"] = budget_json(budget);
  j["roofline_tok_s"] = roof;
  j["fraction_of_roofline"] = r->median_decode_tok_s / roof;
  j["matmul_gflop_s"] = *mm / 1e9;
  j["matmul_shape"] = "f32 256x2048 . 2048x2048";
  if (!gpu) j["fma_peak"] = {{"gflop_s", peak.flop_s / 1e9}, {"isa", peak.isa}, {"threads", peak.threads}};
  j["prefill_compute_roof"] = gpu ? "backend f32 matmul" : "fma peak";
  j["prefill_flop_per_token"] = flop_tok;
  j["prefill_compute_roofline_tok_s"] = prefill_roof;
  j["prefill_fraction_of_compute_roofline"] = r->median_prefill_tok_s / prefill_roof;
  j["load_s"] = load_s;
  j["cold_first_token_s"] = std::chrono::duration<double>(r->first_token_at - load_start).count();
  j["weights_digest_s"] = digest_s;
  j["peak_rss_bytes"] = peak_rss;
  j["file_bytes"] = (*m)->file->file_size();
  j["weights_in_place_bytes"] = (*m)->weights.mapped_bytes;
  // The host pool's split of the decode matvecs (rows shared by each thread's measured speed) over
  // these runs, warm-up included: the shares at the end, and the fraction of the thread time of
  // the jobs where every thread took part that a thread spent waiting for the last one.
  const int64_t pool_jobs = pool_after.balanced_jobs - pool_before.balanced_jobs;
  const double pool_thread_ns = pool_after.thread_ns - pool_before.thread_ns;
  const double pool_idle = pool_thread_ns > 0 ? (pool_after.idle_ns - pool_before.idle_ns) / pool_thread_ns : 0.0;
  if (pool_after.shares.size() > 1)
    j["host_pool"] = {{"shares", pool_after.shares}, {"balanced_jobs", pool_jobs}, {"idle_fraction", pool_idle}};
  if (o.json) {
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("envelope: backend={} device=\"{}\" model={} ({}…) weights={:.1f} MiB {} kv={} threads={} build={} commit={}\n",
             j["backend"].get<std::string>(), j["device"].get<std::string>(), o.model,
             j["weights_digest"].get<std::string>(), mib((*m)->weights.bytes), j["weight_dtype"].get<std::string>(),
             o.engine.kv_dtype, threads, PAGODA_BUILD_TYPE, PAGODA_GIT_COMMIT);
  fmt::print("decode (1 stream, {} prompt + {} generated, {} repeats after 1 warm-up):\n", o.prompt, r->generated_tokens, o.repeats);
  fmt::print("  decode   median {:.1f} tok/s  (slowest run {:.1f})\n", r->median_decode_tok_s, r->p99_decode_tok_s);
  fmt::print("  prefill  median {:.1f} tok/s, TTFT median {:.2f} ms\n", r->median_prefill_tok_s, r->median_ttft_ms);
  fmt::print("{}", budget_text(budget));
  fmt::print("{}", roofs_text(j));
  if (j.contains("host_pool")) {
    std::string shares;
    for (double w : pool_after.shares) shares += fmt::format("{}{:.2f}", shares.empty() ? "" : "/", w);
    fmt::print("  threads  {} share decode rows by measured speed, now {}; waiting for the last thread {:.1f}% of "
               "those jobs' thread time ({} jobs)\n", pool_after.shares.size(), shares, 100 * pool_idle, pool_jobs);
  }
  fmt::print("  memory   load {:.3f} s, cold start to first token {:.3f} s (weights digest in the background, {:.3f} s); "
             "peak RSS {:.1f} MiB = {:.2f} x the file ({:.1f} MiB; "
             "{:.1f} MiB of weights used in place)\n", load_s, j["cold_first_token_s"].get<double>(), digest_s, mib(peak_rss),
             double(peak_rss) / double(std::max<uint64_t>(1, (*m)->file->file_size())), mib((*m)->file->file_size()),
             mib((*m)->weights.mapped_bytes));
  return 0;
}

struct Loaded {
  BackendPtr be;
  std::unique_ptr<LoadedModel> m;
};

Result<Loaded> open_all(const BenchOptions& o) {
  auto be = open_backend(backend_options(o.engine), o.json);
  if (!be) return be.take_error();
  auto m = load_model(o.model, **be, o.json);
  if (!m) return m.take_error();
  return Loaded{std::move(*be), std::move(*m)};
}

// The text form of a workload's envelope: where and with what it ran.
std::string envelope_text(const BenchOptions& o, const Loaded& L) {
  return fmt::format("envelope: backend={} device=\"{}\" model={} weights={:.1f} MiB build={} commit={}\n", L.be->info().name,
                     L.be->info().device, o.model, double(L.m->weights.bytes) / (1 << 20), PAGODA_BUILD_TYPE, PAGODA_GIT_COMMIT);
}

// The envelope of a trace workload (mixed, overload): one wall-clock run of an arrival trace,
// its warm-up requests excluded, and the engine limits it ran under.
nlohmann::json trace_envelope(const BenchOptions& o, const Loaded& L, const EngineConfig& ec, const char* workload,
                              int32_t warmup_requests, nlohmann::json trace, nlohmann::json slo) {
  nlohmann::json j = envelope(o, *L.be, *L.m, ec.block_size, ec);
  j["workload"] = workload;
  j["repeats"] = 1;
  j["warmup_runs"] = 0;
  j["warmup_requests"] = warmup_requests;
  j["clock"] = "wall";
  j["trace"] = std::move(trace);
  j["slo"] = std::move(slo);
  j["engine"] = {{"max_running", ec.max_running}, {"max_waiting", ec.max_waiting}, {"max_batch_tokens", ec.max_batch_tokens}};
  return j;
}

void emit(const BenchOptions& o, nlohmann::json j, const std::string& text) {
  if (o.json) fmt::print("{}\n", j.dump(2));
  else fmt::print("{}", text);
}

struct WorkloadOptions {
  std::string streams = "1,2,4,8,16,32,64";
  int32_t prompt = 512;
  std::string cached = "0.9";  // one fraction, or a comma-separated sweep
  ChatTurnsOptions chat;       // prefix --turns: multi-turn chat growth instead
  bool turns_set = false;
  std::string kv_memory = "32MiB";
  int32_t requests = 256;
  std::string draft;
  int32_t ngram = 0;
  int32_t k_max = 8;
  std::string schema;  // spec: a JSON Schema file every request is generated under
};

nlohmann::json capacity_side_json(const CapacitySide& s) {
  return {{"slots", s.slots}, {"slot_tokens", s.slot_tokens}, {"mean_concurrent", s.mean_concurrent},
          {"peak_concurrent", s.peak_concurrent}, {"preemptions", s.preemptions}, {"recomputed_tokens", s.recomputed_tokens},
          {"completed", s.completed}, {"generated_tokens", s.generated_tokens}, {"wall_s", s.wall_s}, {"gen_tok_s", s.gen_tok_s}};
}

nlohmann::json capacity_json(const CapacityResult& r) {
  return {{"kv_budget_bytes", r.kv_budget_bytes}, {"bytes_per_token", r.bytes_per_token}, {"requests", r.requests},
          {"trace", "closed: all queued at start; prompts 8..64 tokens, 128..511 generated, EOS ignored"},
          {"longest_request_tokens", r.longest_request_tokens}, {"context", r.context},
          {"paged", capacity_side_json(r.paged)}, {"contiguous_longest_request", capacity_side_json(r.fair)},
          {"contiguous_context", capacity_side_json(r.context_slots)},
          {"ratio_vs_longest_request", r.ratio_fair()}, {"ratio_vs_context", r.ratio_context()}, {"waste", r.waste}};
}

std::string capacity_text(const CapacityResult& r) {
  std::string t = fmt::format("KV capacity in {:.2f} MiB ({} bytes/token): {} requests queued at once, served to completion "
                              "(longest {} tokens, context {})\n  {:<30} {:>6} {:>9} {:>6} {:>8} {:>10} {:>8} {:>9}\n",
                              mib(r.kv_budget_bytes), r.bytes_per_token, r.requests, r.longest_request_tokens, r.context,
                              "", "slots", "mean conc", "peak", "preempt", "recomputed", "wall s", "tok/s");
  auto row = [&](const std::string& name, const CapacitySide& s) {
    t += fmt::format("  {:<30} {:>6} {:>9.1f} {:>6} {:>8} {:>10} {:>8.2f} {:>9.0f}\n", name,
                     s.slots ? std::to_string(s.slots) : "-", s.mean_concurrent, s.peak_concurrent, s.preemptions,
                     s.recomputed_tokens, s.wall_s, s.gen_tok_s);
  };
  row(fmt::format("paged (blocks of {})", r.block_size), r.paged);
  row(fmt::format("contiguous, {}-token slots", r.fair.slot_tokens), r.fair);
  row(fmt::format("contiguous, {}-token slots", r.context_slots.slot_tokens), r.context_slots);
  t += fmt::format("  time-averaged concurrency, paged over contiguous: {:.2f}x vs longest-request slots (fair), {:.2f}x vs "
                   "context slots; paged waste {:.2f}%\n", r.ratio_fair(), r.ratio_context(), r.waste * 100);
  return t;
}

int bench_workload(const std::string& w, const BenchOptions& o, const WorkloadOptions& wo) {
  auto L = open_all(o);
  if (!L) return fail(L.error());
  nlohmann::json j = envelope(o, *L->be, *L->m, EngineConfig{}.block_size);
  j["workload"] = w;
  std::string text = envelope_text(o, *L);
  if (w == "batch") {
    auto streams = parse_ints(wo.streams, "--streams", 1);
    if (!streams) return fail(streams.error());
    auto r = bench_batch(*L->m, *L->be, *streams, o.gen, o.repeats);
    if (!r) return fail(r.error());
    text += fmt::format("batched decode ({} tokens per stream, median of {}):\n  {:>8} {:>12} {:>10}\n", o.gen, o.repeats, "streams", "tok/s", "vs 1");
    for (const auto& p : *r) {
      text += fmt::format("  {:>8} {:>12.1f} {:>9.2f}x\n", p.streams, p.gen_tok_s, p.speedup_vs_1);
      j["points"].push_back({{"streams", p.streams}, {"gen_tok_s", p.gen_tok_s}, {"speedup_vs_1", p.speedup_vs_1}});
    }
  } else if (w == "prefix" && wo.turns_set) {
    auto r = bench_chat_turns(*L->m, *L->be, wo.chat, o.repeats);
    if (!r) return fail(r.error());
    text += fmt::format("multi-turn chat: {}-token system prompt, {} user + {} reply tokens per turn, TTFT median of {}\n"
                        "  {:>5} {:>8} {:>8} {:>14} {:>14} {:>8}\n", wo.chat.system_tokens, wo.chat.user_tokens,
                        wo.chat.reply_tokens, o.repeats, "turn", "prompt", "cached", "TTFT cache on", "TTFT off", "on/off");
    j["turns"] = nlohmann::json::array();
    for (const auto& t : *r) {
      text += fmt::format("  {:>5} {:>8} {:>8} {:>11.2f} ms {:>11.2f} ms {:>7.3f}x\n", t.turn, t.prompt_tokens, t.cached_tokens,
                          t.ttft_on_ms, t.ttft_off_ms, t.ttft_off_ms > 0 ? t.ttft_on_ms / t.ttft_off_ms : 0.0);
      j["turns"].push_back({{"turn", t.turn}, {"prompt_tokens", t.prompt_tokens}, {"cached_tokens", t.cached_tokens},
                            {"ttft_on_ms", t.ttft_on_ms}, {"ttft_off_ms", t.ttft_off_ms}});
    }
    j.update({{"system_tokens", wo.chat.system_tokens}, {"user_tokens", wo.chat.user_tokens},
              {"reply_tokens", wo.chat.reply_tokens}});
  } else if (w == "prefix") {
    auto fractions = parse_numbers(wo.cached, "--cached");
    if (!fractions) return fail(fractions.error());
    for (double f : *fractions)
      if (!(f >= 0 && f <= 1)) return fail("--cached must be fractions in [0, 1], comma-separated");
    j["points"] = nlohmann::json::array();
    for (double f : *fractions) {
      auto r = bench_prefix(*L->m, *L->be, wo.prompt, f, o.repeats);
      if (!r) return fail(r.error());
      text += fmt::format("prefix cache: {} prompt tokens, {} served from cache ({:.0f}% asked)\n  TTFT cold {:.2f} ms, warm "
                          "{:.2f} ms -> {:.3f}x\n  avoided prefill tokens (engine counter): {}\n", r->prompt_tokens,
                          r->cached_tokens, f * 100, r->cold_ttft_ms, r->warm_ttft_ms, r->ratio, r->avoided_prefill_tokens);
      const nlohmann::json pt = {{"cached_fraction", f}, {"prompt_tokens", r->prompt_tokens},
                                 {"cached_tokens", r->cached_tokens}, {"cold_ttft_ms", r->cold_ttft_ms},
                                 {"warm_ttft_ms", r->warm_ttft_ms}, {"ratio", r->ratio},
                                 {"avoided_prefill_tokens", r->avoided_prefill_tokens}};
      j["points"].push_back(pt);
      if (fractions->size() == 1) j.update(pt);  // the single-fraction fields stay at the top level
    }
  } else if (w == "capacity") {
    auto bytes = parse_size(wo.kv_memory);
    if (!bytes) return fail(bytes.error());
    auto r = bench_capacity(*L->m, *L->be, *bytes, wo.requests);
    if (!r) return fail(r.error());
    text += capacity_text(*r);
    j.update(capacity_json(*r));
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
    std::shared_ptr<const grammar::Grammar> schema;
    if (!wo.schema.empty()) {
      auto text = read_file(wo.schema);
      if (!text) return fail("schema file: " + text.error());
      const auto js = nlohmann::ordered_json::parse(*text, nullptr, false);
      if (js.is_discarded()) return fail(wo.schema + ": not valid JSON");
      auto g = grammar::compile_json_schema(js);
      if (!g) return fail(wo.schema + ": " + g.error());
      schema = std::make_shared<const grammar::Grammar>(std::move(*g));
    }
    auto r = bench_spec(*L->m, draft.get(), *L->be, draft ? "draft" : "ngram", ks, true, o.gen, o.repeats, schema);
    if (!r) return fail(r.error());
    text += fmt::format("speculation ({}), greedy{}, {} tokens x 2 prompts, median of {}:\n  {:>6} {:>10} {:>8} {:>10} {:>11} {:>9}\n",
                        draft ? "draft model" : "n-gram", schema ? " under " + wo.schema : std::string(), o.gen, o.repeats, "k", "tok/s", "speedup", "accept", "accept len", "identical");
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


struct MixedOptions {
  std::string rates = "4";
  int32_t requests = 32;
  int32_t warmup = 2;
  std::string prompt_len = "32:256", gen_len = "16:128", len_dist = "uniform";
  uint64_t seed = 1;
  double slo_ttft_ms = 1000, slo_itl_ms = 100;
  EngineOptions engine;  // --max-running
};

Result<std::vector<double>> parse_rates(const std::string& s) {
  auto v = parse_numbers(s, "--rate");
  if (!v) return v.take_error();
  for (double x : *v)
    if (!(x > 0) || !std::isfinite(x)) return make_error("--rate must be > 0 requests per second (got '" + fmt::format("{:g}", x) + "')");
  return v;
}

int bench_mixed_cmd(const BenchOptions& o, const MixedOptions& mo) {
  auto rates = parse_rates(mo.rates);
  if (!rates) return fail(rates.error());
  MixedTraceConfig tc;
  auto pl = parse_len_range(mo.prompt_len, "--prompt-len");
  if (!pl) return fail(pl.error());
  auto gl = parse_len_range(mo.gen_len, "--gen-len");
  if (!gl) return fail(gl.error());
  tc.prompt_len = *pl;
  tc.gen_len = *gl;
  tc.requests = mo.requests;
  tc.warmup = mo.warmup;
  tc.len_dist = mo.len_dist;
  tc.seed = mo.seed;
  tc.slo_ttft_ms = mo.slo_ttft_ms;
  tc.slo_itl_ms = mo.slo_itl_ms;
  tc.rate = rates->front();
  if (auto t = make_trace(tc); !t) return fail(t.error());  // option errors before loading anything
  auto ecr = engine_config(mo.engine);
  if (!ecr) return fail(ecr.error());
  const EngineConfig& ec = *ecr;
  auto L = open_all(o);
  if (!L) return fail(L.error());
  auto r = bench_mixed(*L->m, *L->be, tc, *rates, ec);
  if (!r) return fail(r.error());
  nlohmann::json j = trace_envelope(
      o, *L, ec, "mixed", mo.warmup,
      {{"arrivals", "poisson"}, {"requests", mo.requests}, {"seed", mo.seed}, {"prompt_len", {pl->lo, pl->hi}},
       {"gen_len", {gl->lo, gl->hi}}, {"len_dist", mo.len_dist}},
      {{"ttft_ms", mo.slo_ttft_ms}, {"itl_ms", mo.slo_itl_ms}, {"itl_is", "mean inter-token gap per request"}});
  std::string text = envelope_text(o, *L);
  text += fmt::format("mixed: {} Poisson arrivals (seed {}), prompt {}:{} gen {}:{} tokens ({}), {} warm-up requests excluded\n"
                      "SLO: TTFT <= {} ms and mean ITL <= {} ms\n",
                      mo.requests, mo.seed, pl->lo, pl->hi, gl->lo, gl->hi, mo.len_dist, mo.warmup, mo.slo_ttft_ms, mo.slo_itl_ms);
  text += fmt::format("  {:>7} {:>6} {:>8} {:>9} {:>8} {:>17} {:>17} {:>9}\n", "rate/s", "done", "req/s", "tok/s",
                      "goodput", "TTFT p50/p99 ms", "ITL p50/p99 ms", "queue p50");
  for (const auto& p : *r) {
    text += fmt::format("  {:>7.2f} {:>3}/{:<2} {:>8.2f} {:>9.1f} {:>8.2f} {:>8.1f}/{:<8.1f} {:>8.2f}/{:<8.2f} {:>9.2f}\n", p.rate,
                        p.completed, p.requests, p.req_s, p.gen_tok_s, p.goodput_req_s, p.ttft_p50_ms, p.ttft_p99_ms,
                        p.itl_p50_ms, p.itl_p99_ms, p.queue_p50_ms);
    j["points"].push_back({{"rate", p.rate}, {"requests", p.requests}, {"completed", p.completed}, {"met_slo", p.met_slo},
                           {"duration_s", p.duration_s}, {"prompt_tokens", p.prompt_tokens},
                           {"generated_tokens", p.generated_tokens}, {"throughput_req_s", p.req_s},
                           {"gen_tok_s", p.gen_tok_s}, {"goodput_req_s", p.goodput_req_s}, {"ttft_p50_ms", p.ttft_p50_ms},
                           {"ttft_p99_ms", p.ttft_p99_ms}, {"itl_p50_ms", p.itl_p50_ms}, {"itl_p99_ms", p.itl_p99_ms},
                           {"queue_p50_ms", p.queue_p50_ms}, {"e2e_p50_ms", p.e2e_p50_ms}});
  }
  emit(o, j, text);
  return 0;
}

struct OverloadOptions {
  OverloadConfig c;
  std::string prompt_len = "16:64", gen_len = "16:32";
  EngineOptions engine = [] {  // --max-running, --max-waiting (the real queue bound: a full queue rejects)
    EngineOptions e;
    e.max_running = 8;
    e.max_waiting = 32;
    return e;
  }();
};

nlohmann::json overload_phase_json(const OverloadPhase& p) {
  return {{"phase", p.name}, {"duration_s", p.duration_s}, {"arrivals", p.arrivals}, {"completed", p.completed},
          {"met_slo", p.met_slo}, {"refused", p.refused}, {"goodput_req_s", p.goodput_req_s},
          {"throughput_req_s", p.throughput_req_s}, {"ttft_p50_ms", p.ttft_p50_ms}, {"ttft_p99_ms", p.ttft_p99_ms},
          {"e2e_p50_ms", p.e2e_p50_ms}};
}

std::string refused_text(const std::map<std::string, int32_t>& m) {
  if (m.empty()) return "-";
  std::string t;
  for (const auto& [reason, n] : m) t += fmt::format("{}{} {}", t.empty() ? "" : ", ", reason, n);
  return t;
}

int bench_overload_cmd(const BenchOptions& o, OverloadOptions oo) {
  auto pl = parse_len_range(oo.prompt_len, "--prompt-len");
  if (!pl) return fail(pl.error());
  auto gl = parse_len_range(oo.gen_len, "--gen-len");
  if (!gl) return fail(gl.error());
  oo.c.prompt_len = *pl;
  oo.c.gen_len = *gl;
  if (auto st = check_overload_config(oo.c, 1 << 30); !st) return fail(st.error());  // before loading anything
  auto ecr = engine_config(oo.engine);
  if (!ecr) return fail(ecr.error());
  const EngineConfig& ec = *ecr;
  auto L = open_all(o);
  if (!L) return fail(L.error());
  auto r = bench_overload(*L->m, *L->be, oo.c, ec);
  if (!r) return fail(r.error());
  const OverloadConfig& c = oo.c;
  nlohmann::json j = trace_envelope(
      o, *L, ec, "overload", c.warmup,
      {{"arrivals", "poisson"}, {"burst_rate", c.burst_rate}, {"burst_s", c.burst_s}, {"after_rate", c.after_rate},
       {"after_s", c.after_s}, {"seed", c.seed}, {"prompt_len", {pl->lo, pl->hi}}, {"gen_len", {gl->lo, gl->hi}}},
      {{"ttft_ms", c.slo_ttft_ms}, {"itl_ms", c.slo_itl_ms}, {"window_s", c.window_s}});
  j["recovery_s"] = r->recovery_s < 0 ? nlohmann::json(nullptr) : nlohmann::json(r->recovery_s);
  for (const auto& p : r->phases) j["phases"].push_back(overload_phase_json(p));
  for (const auto& w : r->windows)
    j["windows"].push_back({{"start_s", w.start_s}, {"arrivals", w.arrivals}, {"completed", w.completed}, {"refused", w.refused},
                            {"ttft_p99_ms", w.ttft_p99_ms}, {"ok", w.ok}});
  j["samples"] = nlohmann::json::array();
  for (const auto& s : r->samples)
    j["samples"].push_back({{"phase", s.phase}, {"arrival_s", s.arrival_s}, {"prompt_len", s.prompt_len}, {"gen_len", s.gen_len},
                            {"outcome", s.outcome}, {"ttft_ms", s.ttft_ms}, {"e2e_ms", s.e2e_ms}, {"queue_ms", s.queue_ms},
                            {"mean_itl_ms", s.mean_itl_ms}, {"generated", s.generated}, {"preemptions", s.preemptions},
                            {"met_slo", s.met_slo}});
  std::string text = envelope_text(o, *L);
  text += fmt::format("overload: burst {:g} req/s for {:g} s, then {:g} req/s for {:g} s (Poisson, seed {}); prompt {}:{} gen {}:{}\n"
                      "engine: queue bound {} waiting, {} running; SLO: TTFT <= {:g} ms and mean ITL <= {:g} ms\n",
                      c.burst_rate, c.burst_s, c.after_rate, c.after_s, c.seed, pl->lo, pl->hi, gl->lo, gl->hi, ec.max_waiting,
                      ec.max_running, c.slo_ttft_ms, c.slo_itl_ms);
  text += fmt::format("  {:<7} {:>8} {:>9} {:>7} {:>9} {:>17} {:>8}  {}\n", "phase", "arrivals", "completed", "met SLO",
                      "goodput/s", "TTFT p50/p99 ms", "e2e p50", "refused by reason");
  for (const auto& p : r->phases)
    text += fmt::format("  {:<7} {:>8} {:>9} {:>7} {:>9.2f} {:>8.1f}/{:<8.1f} {:>8.1f}  {}\n", p.name, p.arrivals, p.completed,
                        p.met_slo, p.goodput_req_s, p.ttft_p50_ms, p.ttft_p99_ms, p.e2e_p50_ms, refused_text(p.refused));
  text += fmt::format("  after the burst, per {:g} s window of arrivals (TTFT p99 ms, refused):", c.window_s);
  for (const auto& w : r->windows) text += fmt::format(" {:.0f}{}{}", w.ttft_p99_ms, w.refused ? fmt::format("/{}r", w.refused) : "", w.ok ? "" : "!");
  text += r->recovery_s < 0 ? std::string("\n  recovery: TTFT p99 never came back under the SLO for good\n")
                            : fmt::format("\n  recovery time: {:.2f} s after the burst ended\n", r->recovery_s);
  emit(o, j, text);
  return 0;
}

struct OpsOptions {
  std::string backends = "all";
  std::string filter;
  int repeats = 10;
  int threads = 0;
  bool json = false;
};

int bench_ops_cmd(const OpsOptions& oo) {
  std::vector<std::string> names;
  if (oo.backends == "all") {
    for (const auto& n : available_backends())
      if (n != "cpu-ref") names.push_back(n);  // the reference is what every timing is checked against
  } else {
    names = split_commas(oo.backends);
  }
  const auto cases = bench_op_cases(oo.filter);
  if (cases.empty()) return fail("--filter '" + oo.filter + "' matches no op case");
  nlohmann::json j = {{"workload", "ops"}, {"build_type", PAGODA_BUILD_TYPE}, {"git_commit", PAGODA_GIT_COMMIT},
                      {"repeats", oo.repeats}, {"warmup_runs", 1}, {"timing", "wall ms per call incl. submit + sync; inputs resident before the clock starts"}};
  j["backends"] = nlohmann::json::array();
  std::string text;
  int failed = 0;
  for (const auto& name : names) {
    BackendOptions bo;
    bo.backend = name;
    bo.threads = oo.threads;
    auto be = open_backend(bo, oo.json);
    if (!be) {
      if (oo.backends == "all") continue;  // listed as built but not usable here (no device)
      return fail(name + ": " + be.error());
    }
    const auto info = (*be)->info();
    const auto rows = bench_ops(**be, cases, oo.repeats);
    for (const auto& row : rows) failed += row.status == "fail";
    text += format_op_table(info.name, info.device, rows) + "\n";
    j["backends"].push_back({{"backend", info.name}, {"device", info.device}, {"driver", info.driver},
                             {"threads", backend_threads(bo, **be)}, {"ops", op_timings_json(rows)}});
  }
  if (j["backends"].empty()) return fail("no backend could be opened");
  if (oo.json) fmt::print("{}\n", j.dump(2));
  else fmt::print("per-op wall time, median and p99 of {} runs after 1 warm-up (build {}, commit {})\n\n{}", oo.repeats,
                  PAGODA_BUILD_TYPE, PAGODA_GIT_COMMIT, text);
  if (failed > 0) return fail(std::to_string(failed) + " op case(s) failed their check against the CPU reference (status fail)");
  return 0;
}

struct AttentionOptions {
  std::string contexts = "1024,8192,32768";
  int32_t seqs = 0;
  double kv_mib = 0;
  int32_t heads = 32, kv_heads = 8, head_dim = 128, block_size = 16;
  std::string kv_dtype = "f16";
  int repeats = 10;
  bool json = false;
  BackendOptions be;
};

int bench_attention_cmd(const AttentionOptions& ao) {
  AttentionBenchOptions o;
  auto contexts = parse_ints(ao.contexts, "--ctx", 0);  // 0 reaches the bench, which says why a context must be positive
  if (!contexts) return fail(contexts.error());
  o.contexts = *contexts;
  o.n_seqs = ao.seqs;
  o.kv_target_bytes = uint64_t(ao.kv_mib * double(1 << 20));
  o.n_heads = ao.heads;
  o.n_kv_heads = ao.kv_heads;
  o.head_dim = ao.head_dim;
  o.block_size = ao.block_size;
  o.kv_dtype = ao.kv_dtype == "f32" ? DType::F32 : DType::F16;
  o.repeats = ao.repeats;
  auto be = open_backend(ao.be, ao.json);
  if (!be) return fail(be.error());
  auto r = bench_attention(**be, o);
  if (!r) return fail(r.error());
  const auto info = (*be)->info();
  nlohmann::json j = {{"workload", "attention"}, {"backend", info.name}, {"device", info.device}, {"driver", info.driver},
                      {"threads", backend_threads(ao.be, **be)}, {"build_type", PAGODA_BUILD_TYPE}, {"git_commit", PAGODA_GIT_COMMIT},
                      {"n_heads", o.n_heads}, {"n_kv_heads", o.n_kv_heads}, {"head_dim", o.head_dim},
                      {"block_size", o.block_size}, {"kv_dtype", ao.kv_dtype}, {"repeats", o.repeats},
                      {"calls_per_sample", o.calls_per_sample}, {"copy_bandwidth_gb_s", r->copy_gbps},
                      {"copy_bytes", r->copy_bytes}};
  j["contexts"] = nlohmann::json::array();
  std::string text = fmt::format("{:>7} {:>6} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9}\n", "ctx", "seqs", "KV MiB", "median ms",
                                 "min ms", "GB/s", "of copy", "NMSE");
  for (const auto& row : r->rows) {
    j["contexts"].push_back({{"ctx", row.ctx}, {"n_seqs", row.n_seqs}, {"kv_bytes", row.kv_bytes},
                             {"median_ms", row.median_ms}, {"min_ms", row.min_ms}, {"gb_s", row.gbps},
                             {"fraction_of_copy", row.fraction_of_copy}, {"nmse", row.nmse}});
    text += fmt::format("{:>7} {:>6} {:>9.1f} {:>10.3f} {:>10.3f} {:>9.1f} {:>9.2f} {:>9.1e}\n", row.ctx, row.n_seqs,
                        row.kv_bytes / double(1 << 20), row.median_ms, row.min_ms, row.gbps, row.fraction_of_copy, row.nmse);
  }
  if (ao.json) {
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("envelope: backend={} device=\"{}\" build={} commit={}\n", info.name, info.device, PAGODA_BUILD_TYPE,
             PAGODA_GIT_COMMIT);
  fmt::print("paged decode attention: 1 query token per sequence, {} heads / {} KV heads x {}, block {}, {} K/V, "
             "shuffled block tables; median of {} samples of {} calls after 1 warm-up\n",
             o.n_heads, o.n_kv_heads, o.head_dim, o.block_size, ao.kv_dtype, o.repeats, o.calls_per_sample);
  fmt::print("copy bandwidth (Backend::copy of {} MiB, read + write): {:.1f} GB/s\n\n{}", r->copy_bytes >> 20, r->copy_gbps, text);
  return 0;
}

struct PlotOptions {
  std::string input, output, dir, out_dir;
};

Result<nlohmann::json> read_json(const std::string& path) {
  auto text = read_file(path);
  if (!text) return make_error(text.error());
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) return make_error(path + ": not valid JSON");
  return j;
}

int bench_plot_cmd(const PlotOptions& po) {
  namespace fs = std::filesystem;
  if (po.input.empty() == po.dir.empty()) return fail("plot needs either RESULTS.json or --dir DIR");
  if (!po.input.empty()) {
    auto j = read_json(po.input);
    if (!j) return fail(j.error());
    const std::string out = po.output.empty() ? fs::path(po.input).replace_extension(".png").string() : po.output;
    if (auto st = plot_result(*j, out); !st) return fail(po.input + ": " + st.error());
    fmt::print("wrote {}\n", out);
    return 0;
  }
  const std::string out_dir = po.out_dir.empty() ? po.dir : po.out_dir;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(po.dir, ec))
    if (e.path().extension() == ".json") files.push_back(e.path());
  if (ec) return fail("cannot read directory '" + po.dir + "': " + ec.message());
  std::sort(files.begin(), files.end());
  int written = 0;
  for (const auto& f : files) {
    auto j = read_json(f.string());
    if (!j) return fail(j.error());
    if (!j->is_object() || !plottable_workload(j->value("workload", std::string()))) continue;  // decode, capacity, attention: tables, not charts
    const std::string out = (fs::path(out_dir) / f.stem()).string() + ".png";
    if (auto st = plot_result(*j, out); !st) return fail(f.string() + ": " + st.error());
    fmt::print("wrote {}\n", out);
    ++written;
  }
  if (written == 0) return fail("no plottable results (batch, spec, mixed, overload, ops, prefix) in '" + po.dir + "'");
  return 0;
}
}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Benchmarks: decode, batch, prefix, capacity, spec, mixed, overload, ops, attention, grammar, device; plot renders their --json");
  cmd->require_subcommand(1);
  auto* dec = cmd->add_subcommand(
      "decode", "Single-stream decode tok/s against the memory roofline (one request through the engine, as `run` serves it)");
  dec->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
  dec->add_option("--prompt-tokens", o->prompt, "Prompt length")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  dec->add_option("-n,--gen-tokens", o->gen, "Tokens to decode per run")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  dec->add_option("-r,--repeats", o->repeats, "Measured runs (after one warm-up)")->capture_default_str()->check(CLI::Range(1, 1000));
  add_engine_options(dec, o->engine, kKvDtypeFlag | kDeviceSamplingFlag);
  dec->add_flag("--json", o->json, "Machine-readable output");
  add_engine_options(dec, o->engine, kBackendFlags);
  dec->callback([o] {
    const int rc = bench_decode_cmd(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
  auto wo = std::make_shared<WorkloadOptions>();
  const std::pair<const char*, const char*> workloads[] = {
      {"batch", "Decode throughput at 1..64 concurrent streams"},
      {"prefix", "TTFT with a mostly cached prompt vs cold (a sweep over --cached), or multi-turn chat growth (--turns)"},
      {"capacity", "One request trace served to completion in a KV budget: paged vs contiguous slots (longest request, context)"},
      {"spec", "Speculative decoding: tok/s and acceptance for k = 1..8 and auto"}};
  for (const auto& [name, help] : workloads) {
    auto* sub = cmd->add_subcommand(name, help);
    sub->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
    sub->add_option("-n,--gen-tokens", o->gen, "Tokens generated per request")->capture_default_str()->check(CLI::Range(2, 1 << 20));
    sub->add_option("-r,--repeats", o->repeats, "Measured runs (after one warm-up)")->capture_default_str()->check(CLI::Range(1, 1000));
    sub->add_flag("--json", o->json, "Machine-readable output");
    add_engine_options(sub, o->engine, kBackendFlags);
    const std::string w = name;
    if (w == "batch") sub->add_option("--streams", wo->streams, "Comma-separated stream counts")->capture_default_str();
    if (w == "prefix") {
      sub->add_option("--prompt-tokens", wo->prompt, "Prompt length")->capture_default_str();
      sub->add_option("--cached", wo->cached, "Fraction of the prompt shared with the earlier request (comma-separated: a sweep)")->capture_default_str();
      sub->add_option("--turns", wo->chat.turns, "Instead: multi-turn chat growth over this many turns, cache on vs off")
          ->check(CLI::Range(1, 1000))->each([wo](const std::string&) { wo->turns_set = true; });
      sub->add_option("--system-tokens", wo->chat.system_tokens, "With --turns: system prompt tokens")->capture_default_str()->check(CLI::Range(1, 1 << 20));
      sub->add_option("--user-tokens", wo->chat.user_tokens, "With --turns: tokens per user message")->capture_default_str()->check(CLI::Range(1, 1 << 20));
      sub->add_option("--reply-tokens", wo->chat.reply_tokens, "With --turns: tokens per reply")->capture_default_str()->check(CLI::Range(1, 1 << 20));
    }
    if (w == "capacity") {
      sub->add_option("--kv-memory", wo->kv_memory, "KV budget")->capture_default_str();
      sub->add_option("--requests", wo->requests, "Requests offered")->capture_default_str();
    }
    if (w == "spec") {
      sub->add_option("--draft", wo->draft, "Draft model");
      sub->add_option("--ngram", wo->ngram, "n-gram drafter order instead of a draft model");
      sub->add_option("--k-max", wo->k_max, "Largest k in the sweep")->capture_default_str()->check(CLI::Range(1, 16));
      sub->add_option("--schema", wo->schema, "Generate under this JSON Schema file (structured output)");
    }
    sub->callback([o, wo, w] {
      const int rc = bench_workload(w, *o, *wo);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }

  auto mo = std::make_shared<MixedOptions>();
  auto* mixed = cmd->add_subcommand("mixed",
      "Poisson arrivals through the engine (continuous batching): throughput, TTFT/ITL percentiles, goodput under an SLO");
  mixed->footer(
      "Arrivals follow the wall clock: request i is submitted when its exponential-gap arrival time (mean 1/rate)\n"
      "has passed, and TTFT and queue time count from that scheduled time. Prompts are random token ids (no prefix\n"
      "sharing), decoding is greedy with EOS ignored so each request generates exactly its drawn length. Lengths are\n"
      "uniform integers in A:B, or with --len-dist lognormal: median sqrt(A*B), A..B = +-2 sigma, clamped to A..B.\n"
      "--warmup requests run first on the same engine and are excluded. Goodput = requests per second (over first\n"
      "arrival .. last completion) whose TTFT <= --slo-ttft-ms and mean inter-token gap <= --slo-itl-ms.\n"
      "--rate 1,2,4 runs one trace per rate (same seed) on a fresh engine each.");
  mixed->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
  mixed->add_option("--rate", mo->rates, "Mean arrival rate(s) in requests/s, > 0; comma-separated for a sweep")->capture_default_str();
  mixed->add_option("--requests", mo->requests, "Requests in the trace")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  mixed->add_option("--warmup", mo->warmup, "Warm-up requests before the trace (excluded)")->capture_default_str()->check(CLI::Range(0, 1000));
  mixed->add_option("--prompt-len", mo->prompt_len, "Prompt tokens A:B")->capture_default_str();
  mixed->add_option("--gen-len", mo->gen_len, "Generated tokens A:B")->capture_default_str();
  mixed->add_option("--len-dist", mo->len_dist, "uniform or lognormal")->capture_default_str();
  mixed->add_option("--seed", mo->seed, "Trace seed (arrivals, lengths, prompt tokens)")->capture_default_str();
  mixed->add_option("--slo-ttft-ms", mo->slo_ttft_ms, "SLO: time to first token")->capture_default_str()->check(CLI::NonNegativeNumber);
  mixed->add_option("--slo-itl-ms", mo->slo_itl_ms, "SLO: mean inter-token latency")->capture_default_str()->check(CLI::NonNegativeNumber);
  add_engine_options(mixed, mo->engine, kMaxRunningFlag);
  mixed->add_flag("--json", o->json, "Machine-readable output");
  add_engine_options(mixed, o->engine, kBackendFlags);
  mixed->callback([o, mo] {
    const int rc = bench_mixed_cmd(*o, *mo);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto ov = std::make_shared<OverloadOptions>();
  auto* over = cmd->add_subcommand("overload",
      "Overload and recovery: a burst of arrivals past saturation against the real queue bound, then a sustainable rate");
  over->footer(
      "The engine keeps its queue bound (--max-waiting): arrivals beyond it are rejected (queue_full), as a server's\n"
      "would be answered 429. Poisson arrivals at --burst-rate for --burst-s seconds, then at --after-rate for\n"
      "--after-s seconds; TTFT counts from each scheduled arrival. Rows: warm-up (run first, all at once), burst, after;\n"
      "goodput = requests meeting the SLO per second of the phase. Recovery time: from the end of the burst to the\n"
      "first --window-s window of arrivals after which every window has TTFT p99 within --slo-ttft-ms and nothing\n"
      "refused. --json keeps every request's raw sample.");
  over->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
  over->add_option("--burst-rate", ov->c.burst_rate, "Arrivals per second during the burst")->capture_default_str();
  over->add_option("--burst-s", ov->c.burst_s, "Burst length in seconds")->capture_default_str();
  over->add_option("--after-rate", ov->c.after_rate, "Arrivals per second after the burst (a sustainable rate)")->capture_default_str();
  over->add_option("--after-s", ov->c.after_s, "Seconds watched after the burst")->capture_default_str();
  over->add_option("--warmup", ov->c.warmup, "Warm-up requests, reported as their own row")->capture_default_str()->check(CLI::Range(0, 1000));
  over->add_option("--prompt-len", ov->prompt_len, "Prompt tokens A:B")->capture_default_str();
  over->add_option("--gen-len", ov->gen_len, "Generated tokens A:B")->capture_default_str();
  over->add_option("--seed", ov->c.seed, "Trace seed (arrivals, lengths, prompt tokens)")->capture_default_str();
  over->add_option("--slo-ttft-ms", ov->c.slo_ttft_ms, "SLO: time to first token")->capture_default_str()->check(CLI::NonNegativeNumber);
  over->add_option("--slo-itl-ms", ov->c.slo_itl_ms, "SLO: mean inter-token latency")->capture_default_str()->check(CLI::NonNegativeNumber);
  over->add_option("--window-s", ov->c.window_s, "Window of arrival time for judging recovery")->capture_default_str();
  add_engine_options(over, ov->engine, kMaxRunningFlag | kMaxWaitingFlag);
  over->add_flag("--json", o->json, "Machine-readable output, with every raw sample");
  add_engine_options(over, o->engine, kBackendFlags);
  over->callback([o, ov] {
    const int rc = bench_overload_cmd(*o, *ov);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto oo = std::make_shared<OpsOptions>();
  auto* ops = cmd->add_subcommand("ops", "Per-op wall time on each backend (median, p99), shapes of a dim-1024 layer");
  ops->footer("Every op the Backend interface exposes, via the conformance harness: each timed call is also checked\n"
              "against the CPU reference. Time is wall clock around the call plus sync (GPU: includes submit).");
  ops->add_option("--backend", oo->backends, "Comma-separated backends, or all (every one built, except cpu-ref)")->capture_default_str();
  ops->add_option("-r,--repeats", oo->repeats, "Timed runs per op (after one warm-up)")->capture_default_str()->check(CLI::Range(1, 10000));
  ops->add_option("--filter", oo->filter, "Only cases whose op/dtype/shape contains this");
  ops->add_option("-t,--threads", oo->threads, "CPU backend threads (0 = all cores)")->capture_default_str();
  ops->add_flag("--json", oo->json, "Machine-readable output");
  ops->callback([oo] {
    const int rc = bench_ops_cmd(*oo);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto ao = std::make_shared<AttentionOptions>();
  auto* att = cmd->add_subcommand("attention", "Paged decode attention bandwidth at long contexts, as a fraction of copy bandwidth");
  att->footer("Each sequence has one query token and reads its whole K/V context through a shuffled block table.\n"
              "GB/s counts the K/V bytes one call reads; the copy bandwidth counts read + write of Backend::copy.\n"
              "The first and last sequence of every context are checked against the CPU backend.");
  att->add_option("--ctx", ao->contexts, "Comma-separated context lengths")->capture_default_str();
  att->add_option("--seqs", ao->seqs, "Sequences per call (0: enough for --kv-mib of K/V)")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  att->add_option("--kv-mib", ao->kv_mib, "K/V bytes one call reads, when --seqs is 0 (0: 1024 on a GPU, 128 otherwise)")->capture_default_str()->check(CLI::NonNegativeNumber);
  att->add_option("--heads", ao->heads, "Query heads")->capture_default_str()->check(CLI::Range(1, 1024));
  att->add_option("--kv-heads", ao->kv_heads, "KV heads")->capture_default_str()->check(CLI::Range(1, 1024));
  att->add_option("--head-dim", ao->head_dim, "Head dimension")->capture_default_str()->check(CLI::Range(1, 1024));
  att->add_option("--block-size", ao->block_size, "Tokens per KV block")->capture_default_str()->check(CLI::Range(1, 1024));
  att->add_option("--kv-dtype", ao->kv_dtype, "f16 or f32")->capture_default_str()->check(CLI::IsMember({"f16", "f32"}));
  att->add_option("-r,--repeats", ao->repeats, "Timed samples")->capture_default_str()->check(CLI::Range(1, 10000));
  att->add_flag("--json", ao->json, "Machine-readable output");
  add_backend_options(att, ao->be);
  att->callback([ao] {
    const int rc = bench_attention_cmd(*ao);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto go = std::make_shared<GrammarBenchOptions>();
  auto* gram = cmd->add_subcommand("grammar", "Structured-output token mask time over a whole vocabulary (median, p99 us per mask)");
  gram->add_option("--vocab", go->vocab, "GGUF whose tokenizer gives the vocabulary (default: the Llama 2 vocab in ../shared/models)");
  gram->add_option("-r,--repeats", go->repeats, "Cold measurements per token position")->capture_default_str()->check(CLI::Range(1, 1000));
  gram->add_flag("--json", go->json, "Machine-readable output");
  gram->callback([go] {
    const int rc = run_grammar_bench(*go);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto dvo = std::make_shared<DeviceBenchOptions>();
  auto* dvc = cmd->add_subcommand("device", "Device-resident decode vs host sampling, side by side (tok/s, device share, greedy identity)");
  dvc->add_option("-m,--model", dvo->model, "GGUF model")->capture_default_str();
  dvc->add_option("--streams", dvo->streams, "Concurrent requests")->capture_default_str()->check(CLI::Range(1, 1024));
  dvc->add_option("-n,--gen-tokens", dvo->gen, "Tokens per request")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  dvc->add_option("-r,--repeats", dvo->repeats, "Measured runs per variant (after one warm-up)")->capture_default_str()->check(CLI::Range(1, 1000));
  dvc->add_flag("--json", dvo->json, "Machine-readable output");
  add_backend_options(dvc, dvo->be);
  dvc->callback([dvo] {
    const int rc = run_device_bench(*dvo);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto po = std::make_shared<PlotOptions>();
  auto* plot = cmd->add_subcommand("plot", "PNG charts from --json results (batch, spec, mixed, overload, ops, prefix)");
  plot->add_option("results", po->input, "One result JSON");
  plot->add_option("-o,--output", po->output, "PNG for the single result (default: RESULTS.png)");
  plot->add_option("--dir", po->dir, "Plot every plottable *.json in this directory");
  plot->add_option("--out", po->out_dir, "Where --dir writes NAME.png (default: the same directory)");
  plot->callback([po] {
    const int rc = bench_plot_cmd(*po);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
