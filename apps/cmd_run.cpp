// `pagoda run`: generate from one prompt, streaming text, then a one-line summary (or --json).
#include <fmt/core.h>
#include <unistd.h>

#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/cli_common.h"
#include "core/engine/generate.h"

namespace pagoda::cli {
namespace {

struct RunOptions {
  std::string model = default_model_path();
  std::string prompt;
  bool prompt_set = false;
  int32_t n = 128;
  SamplingParams sampling;
  bool seed_set = false;
  bool json = false;
  bool no_bos = false;
  std::string kv_memory = "256MiB";
  int32_t block_size = 16;
  std::string kv_dtype = "f32";
  BackendOptions be;
};

int run(RunOptions& o) {
  if (!o.prompt_set && !isatty(STDIN_FILENO))
    o.prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  if (o.prompt.empty()) return fail("empty prompt: pass -p TEXT or pipe text on stdin");
  if (!o.seed_set) o.sampling.seed = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
  if (auto st = o.sampling.validate(); !st) return fail(st.error());
  auto kv_bytes = parse_size(o.kv_memory);
  if (!kv_bytes) return fail(kv_bytes.error());
  if (o.kv_dtype != "f32" && o.kv_dtype != "f16") return fail("--kv-dtype must be f32 or f16");

  auto be = open_backend(o.be, o.json);
  if (!be) return fail(be.error());
  auto m = load_model(o.model, **be, o.json);
  if (!m) return fail(m.error());
  const auto& model = **m;

  auto ids = model.tokenizer->encode(o.prompt, !o.no_bos);
  KvCacheConfig kcfg;
  kcfg.block_size = o.block_size;
  kcfg.dtype = o.kv_dtype == "f16" ? DType::F16 : DType::F32;
  kcfg.num_blocks = kv_blocks_for_budget(model.config, *kv_bytes, o.block_size, kcfg.dtype);
  auto kv = KvCache::create(**be, model.config, kcfg);
  if (!kv) return fail(kv.error());
  ModelRunner runner(**be, model.config, model.weights);

  GenerateOptions g;
  g.max_new_tokens = o.n;
  g.eos = model.tokenizer->eos();
  g.sampling = o.sampling;
  StreamDecoder dec(*model.tokenizer);
  std::string text;
  if (!o.json) {
    // Echo the prompt as the user typed it, then stream the continuation.
    fmt::print("{}", o.prompt);
    std::fflush(stdout);
  }
  std::vector<int32_t> out;
  auto st = generate(runner, *kv, ids, g, out, [&](int32_t tok) {
    const std::string piece = dec.push(tok);
    text += piece;
    if (!o.json) { fmt::print("{}", piece); std::fflush(stdout); }
    return true;
  });
  if (!st) return fail(st.error());
  const std::string tail = dec.flush();
  text += tail;
  if (o.json) {
    nlohmann::json j = {
        {"model", o.model}, {"backend", (*be)->info().name}, {"prompt", o.prompt}, {"text", text},
        {"prompt_tokens", st->prompt_tokens}, {"generated_tokens", st->generated_tokens}, {"tokens", out},
        {"prefill_tok_s", st->prefill_tok_s()}, {"decode_tok_s", st->decode_tok_s()},
        {"ttft_ms", st->ttft_seconds * 1e3}, {"stopped_by_eos", st->stopped_by_eos}, {"seed", o.sampling.seed}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("{}\n", tail);
    fmt::print(stderr, "\nprompt tokens: {} | generated: {} | prefill: {:.1f} tok/s | decode: {:.1f} tok/s | TTFT: {:.2f} ms\n",
               st->prompt_tokens, st->generated_tokens, st->prefill_tok_s(), st->decode_tok_s(), st->ttft_seconds * 1e3);
  }
  return 0;
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  cmd->add_option("-m,--model", o->model, "GGUF model (any llama-family model)")->capture_default_str();
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text (default: read stdin)")->each([o](const std::string&) { o->prompt_set = true; });
  cmd->add_option("-n,--n-predict", o->n, "Tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1 = off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "Tokens the penalty looks back over")->capture_default_str();
  cmd->add_option("--seed", o->sampling.seed, "Sampling seed (default: random)")->each([o](const std::string&) { o->seed_set = true; });
  cmd->add_flag("--json", o->json, "Print a machine-readable result instead of streaming text");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token");
  cmd->add_option("--kv-memory", o->kv_memory, "KV cache budget (e.g. 512MiB)")->capture_default_str();
  cmd->add_option("--block-size", o->block_size, "Tokens per KV block")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--kv-dtype", o->kv_dtype, "KV cache element type: f32 or f16")->capture_default_str();
  add_backend_options(cmd, o->be);
  cmd->callback([o] {
    const int rc = run(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
