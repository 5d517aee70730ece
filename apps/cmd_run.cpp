// `pagoda run`: generate from one prompt, streaming text, then a one-line summary (or --json).
#include <fmt/core.h>
#include <unistd.h>

#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/cli_common.h"
#include "apps/engine_options.h"
#include "apps/bench/batch_run.h"

namespace pagoda::cli {
namespace {

constexpr int32_t kMaxPredict = 1 << 24;

struct RunOptions {
  std::string model = default_model_path();
  std::string prompt;
  bool prompt_set = false;
  std::string prompt_file;  // -f: the prompt is this file's text
  int32_t n = 128;
  SamplingParams sampling;
  bool seed_set = false;
  bool json = false;
  bool no_bos = false;
  std::string prompts_file;
  EngineOptions engine = [] {
    EngineOptions e;
    e.max_waiting = 1024;  // a prompts file queues whole
    return e;
  }();
};

// Many prompts at once through the engine: continuous batching, prefix reuse, per-request metrics.
int run_many(const RunOptions& o, Backend& be, LoadedModel& model, LoadedModel* draft, const EngineConfig& cfg) {
  Request defaults;
  defaults.max_tokens = o.n;
  defaults.sampling = o.sampling;
  defaults.add_bos = !o.no_bos;
  Result<std::vector<Request>> reqs = std::vector<Request>{};
  if (!o.prompts_file.empty()) {
    reqs = read_prompts_file(o.prompts_file, defaults);
    if (!reqs) return fail(reqs.error());
  } else {
    defaults.prompt = o.prompt;
    reqs->push_back(defaults);
  }
  auto e = Engine::create(model, be, cfg, draft);
  if (!e) return fail(e.error());
  BatchSummary sum;
  auto outs = run_requests(**e, *reqs, true, &sum);
  (*e)->publish_snapshot();
  const auto snap = (*e)->snapshot();
  if (o.json) {
    nlohmann::json j;
    for (size_t i = 0; i < outs.size(); ++i) {
      const auto& r = outs[i];
      j["requests"].push_back({{"index", i}, {"prompt", (*reqs)[i].prompt}, {"tenant", (*reqs)[i].tenant},
                               {"text", r.text}, {"finish_reason", finish_reason_name(r.reason)}, {"error", r.error},
                               {"prompt_tokens", r.metrics.prompt_tokens}, {"cached_tokens", r.metrics.cached_tokens},
                               {"generated_tokens", r.metrics.generated_tokens}, {"queue_ms", r.metrics.queue_s * 1e3},
                               {"ttft_ms", r.metrics.ttft_s * 1e3}, {"mean_itl_ms", r.metrics.mean_itl_s * 1e3},
                               {"e2e_ms", r.metrics.e2e_s * 1e3}, {"preemptions", r.metrics.preemptions},
                               {"spec_verify_steps", r.metrics.spec_steps},
                               {"mean_acceptance_length", r.metrics.spec_steps ? 1.0 + double(r.metrics.spec_accepted) /
                                                                                    double(r.metrics.spec_steps) : 0.0}});
    }
    j["aggregate"] = {{"requests", outs.size()}, {"completed", sum.completed}, {"rejected", sum.rejected},
                      {"wall_s", sum.wall_s}, {"prompt_tokens", sum.prompt_tokens},
                      {"avoided_prefill_tokens", snap->counters.avoided_prefill_tokens},
                      {"computed_prefill_tokens", snap->counters.computed_prefill_tokens},
                      {"generated_tokens", sum.generated_tokens}, {"generation_tok_s", sum.gen_tok_s},
                      {"ttft_p50_ms", sum.ttft_p50_s * 1e3}, {"ttft_p99_ms", sum.ttft_p99_s * 1e3},
                      {"mean_itl_ms", sum.itl_mean_s * 1e3}, {"preemptions", snap->counters.preemptions},
                      {"spec_mode", snap->spec_mode}, {"spec_k", snap->spec_k},
                      {"draft_tokens_proposed", snap->counters.spec_proposed},
                      {"draft_tokens_accepted", snap->counters.spec_accepted},
                      {"draft_accepted_by_position", snap->counters.spec_accepted_by_pos},
                      {"mean_acceptance_length", mean_acceptance_length(snap->counters)},
                      {"spec_verify_steps", snap->counters.spec_verify_steps},
                      {"preemption_failures", snap->counters.preemption_failures}};
    // Where the engine's time went, summed over every step: emit is sampling, detokenizing and
    // callbacks; decode the forward pass.
    for (size_t st = 0; st < size_t(Stage::kCount); ++st)
      j["aggregate"]["stage_seconds"][stage_name(Stage(st))] = snap->hist.stage[st].sum();
    for (const auto& d : snap->decisions)
      j["aggregate"]["controller_decisions"].push_back(
          {{"step", d.step}, {"from_k", d.from_k}, {"to_k", d.to_k}, {"reason", d.reason}, {"kind", d.kind}});
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  if (o.prompts_file.empty()) {  // one prompt (speculative): print it like a plain run
    fmt::print("{}{}\n", o.prompt, outs[0].text);
    if (!outs[0].error.empty()) return fail(outs[0].error);
  }
  for (size_t i = 0; i < outs.size() && !o.prompts_file.empty(); ++i) {
    const auto& r = outs[i];
    fmt::print("--- request {} [{}{}] ---\n{}{}\n", i, finish_reason_name(r.reason), r.error.empty() ? "" : ": " + r.error,
               (*reqs)[i].prompt, r.text);
  }
  fmt::print(stderr, "\nrequests: {} ({} completed, {} rejected) | prompt tokens: {} (avoided by prefix cache: {}) | "
             "generated: {} at {:.1f} tok/s | TTFT p50 {:.2f} ms p99 {:.2f} ms | preemptions: {}\n",
             outs.size(), sum.completed, sum.rejected, sum.prompt_tokens, snap->counters.avoided_prefill_tokens,
             sum.generated_tokens, sum.gen_tok_s, sum.ttft_p50_s * 1e3, sum.ttft_p99_s * 1e3, snap->counters.preemptions);
  if (snap->counters.spec_steps > 0)
    fmt::print(stderr, "speculation ({}): proposed {} accepted {} ({:.1f}%), mean acceptance length {:.2f}, k now {}\n",
               snap->spec_mode, snap->counters.spec_proposed, snap->counters.spec_accepted,
               100.0 * double(snap->counters.spec_accepted) / double(std::max<uint64_t>(1, snap->counters.spec_proposed)),
               mean_acceptance_length(snap->counters), snap->spec_k);
  return 0;
}

int run(RunOptions& o) {
  if (o.n < 0) o.n = kMaxPredict;  // the engine stops it at the context's end
  if (!o.prompt_file.empty()) {
    auto text = read_file(o.prompt_file);
    if (!text) return fail("prompt file: " + text.error());
    o.prompt = without_final_newline(std::move(*text));
  } else if (!o.prompt_set && o.prompts_file.empty() && !isatty(STDIN_FILENO)) {
    o.prompt = without_final_newline(std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()));
  }
  // Many prompts, or speculation: batched through the engine on its thread (run_many); a single
  // plain prompt: one request through the engine, stepped here, streaming as it goes.
  auto cfg = engine_config(o.engine);  // every engine setting checked before a model loads
  if (!cfg) return fail(cfg.error());
  if (!o.prompts_file.empty() || !o.engine.draft.empty() || o.engine.ngram > 0) {
    if (o.prompts_file.empty() && o.prompt.empty()) return fail("empty prompt: pass -p TEXT or pipe text on stdin");
    if (!o.seed_set) o.sampling.seed = std::random_device{}();
    auto be = open_backend(backend_options(o.engine), o.json);
    if (!be) return fail(be.error());
    auto m = load_model(o.model, **be, o.json, DigestAt::Background);
    if (!m) return fail(m.error());
    std::unique_ptr<LoadedModel> draft;
    if (!o.engine.draft.empty()) {
      auto d = load_model(o.engine.draft, **be, o.json, DigestAt::Never);
      if (!d) return fail("draft model: " + d.error());
      draft = std::move(*d);
    }
    return run_many(o, **be, **m, draft.get(), *cfg);
  }
  if (o.prompt.empty()) return fail("empty prompt: pass -p TEXT or pipe text on stdin");
  if (!o.seed_set) o.sampling.seed = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
  if (auto st = o.sampling.validate(); !st) return fail(st.error());

  auto be = open_backend(backend_options(o.engine), o.json);
  if (!be) return fail(be.error());
  // One request: nothing after it could reuse its blocks, so none are keyed, and the weights
  // digest that keys need is never computed (a pass over the whole file).
  auto m = load_model(o.model, **be, o.json, DigestAt::Never);
  if (!m) return fail(m.error());
  cfg->prefix_caching = false;
  auto e = Engine::create(**m, **be, *cfg);
  if (!e) return fail(e.error());
  const Tokenizer& tok = (*e)->tokenizer();

  // One request through the engine, stepped on this thread, streaming each piece as it comes.
  Request req;
  req.prompt = o.prompt;
  req.add_bos = !o.no_bos;
  req.max_tokens = o.n;
  req.sampling = o.sampling;
  if (!o.json) {
    // Echo the prompt as the user typed it, then stream the continuation.
    fmt::print("{}", o.prompt);
    std::fflush(stdout);
  }
  auto done = complete(**e, req, [&](const TokenEvent& ev) {
    if (!o.json && !ev.finished) { fmt::print("{}", ev.text); std::fflush(stdout); }
    if (!o.json && ev.finished) fmt::print("{}\n", ev.text);
  });
  if (!done) return fail(done.error());
  if (done->reason == FinishReason::Cancelled) return fail("cancelled");
  std::vector<int32_t> out;
  for (int32_t t : done->tokens)
    if (!tok.is_eog(t)) out.push_back(t);
  const std::string& text = done->text;
  const RequestMetrics& rm = done->metrics;
  const int32_t generated = int32_t(out.size());
  // Prefill ends with the first token; decode rate excludes that token.
  const double prefill_s = generated > 0 ? rm.ttft_s : rm.e2e_s;
  const double decode_s = generated > 1 ? rm.e2e_s - rm.ttft_s : 0;
  const double prefill_tok_s = prefill_s > 0 ? rm.prompt_tokens / prefill_s : 0;
  const double decode_tok_s = decode_s > 0 ? (generated - 1) / decode_s : 0;
  if (o.json) {
    nlohmann::json j = {
        {"model", o.model}, {"backend", (*be)->info().name}, {"prompt", o.prompt}, {"text", text},
        {"prompt_tokens", rm.prompt_tokens}, {"generated_tokens", generated}, {"tokens", out},
        {"prefill_tok_s", prefill_tok_s}, {"decode_tok_s", decode_tok_s},
        {"ttft_ms", rm.ttft_s * 1e3}, {"stopped_by_eos", done->reason == FinishReason::Eos},
        {"finish_reason", finish_reason_name(done->reason)}, {"seed", o.sampling.seed}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print(stderr, "\nprompt tokens: {} | generated: {} | prefill: {:.1f} tok/s | decode: {:.1f} tok/s | TTFT: {:.2f} ms\n",
               rm.prompt_tokens, generated, prefill_tok_s, decode_tok_s, rm.ttft_s * 1e3);
  }
  return 0;
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  cmd->add_option("-m,--model", o->model, "GGUF model (any llama-family model)")->capture_default_str();
  auto* prompt = cmd->add_option("-p,--prompt", o->prompt, "Prompt text (default: read stdin, less one trailing newline)")
                     ->each([o](const std::string&) { o->prompt_set = true; });
  cmd->add_option("-f,--file", o->prompt_file, "File whose text is the prompt, less one trailing newline (as llama.cpp's -f)")
      ->excludes(prompt);
  cmd->add_option("-n,--n-predict", o->n, "Tokens to generate (-1: until end of text or the context is full, as llama.cpp's -1)")
      ->capture_default_str()->check(CLI::Range(-1, kMaxPredict));
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1 = off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "Tokens the penalty looks back over")->capture_default_str();
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "Subtracted once from every token already generated (-2..2)")
      ->capture_default_str()->check(CLI::Range(-2.0f, 2.0f));
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "Subtracted per occurrence in the generated tokens (-2..2)")
      ->capture_default_str()->check(CLI::Range(-2.0f, 2.0f));
  cmd->add_option("-s,--seed", o->sampling.seed, "Sampling seed (default: random)")->each([o](const std::string&) { o->seed_set = true; });
  cmd->add_flag("--json", o->json, "Print a machine-readable result instead of streaming text");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token");
  cmd->add_option("--prompts", o->prompts_file, "Run many prompts concurrently: a file with one prompt per line, "
                  "or JSONL {\"prompt\", \"tenant\", \"priority\", \"max_tokens\", \"timeout\"}")
      ->excludes(prompt)->excludes("--file");
  add_engine_options(cmd, o->engine, kServingFlags);
  cmd->callback([o] {
    const int rc = run(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
