// `pagoda perplexity`: perplexity of a model over a text file, in llama.cpp's windowing, so a
// quantization can be judged by the number users compare.
#include <fmt/core.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/cli_common.h"
#include "core/model/evaluate.h"
#include "pagoda_version.h"  // PAGODA_GIT_COMMIT

namespace pagoda::cli {
namespace {

struct PerplexityOptions {
  std::string model = default_model_path();
  std::string file;
  int32_t ctx = 512;
  bool json = false;
  BackendOptions be;
};

int perplexity_cmd(const PerplexityOptions& o) {
  auto read = read_file(o.file);
  if (!read) return fail("text file: " + read.error());
  const std::string& text = *read;
  if (text.empty()) return fail("text file '" + o.file + "' is empty");
  auto be = open_backend(o.be, o.json);
  if (!be) return fail(be.error());
  auto m = load_model(o.model, **be, o.json);
  if (!m) return fail(m.error());
  const auto& model = **m;
  const auto tokens = model.tokenizer->encode(text, true);
  auto kv = KvCache::create(**be, kv_shape(model.config, 16, DType::F32), (o.ctx + 15) / 16 + 1);
  if (!kv) return fail(kv.error());
  ModelRunner runner(**be, model.config, model.weights);
  const bool bar = isatty(STDERR_FILENO);
  auto progress = [&](int32_t done, int32_t total) {
    const int w = 40, fill = int(int64_t(done) * w / total);
    if (bar)
      fmt::print(stderr, "\rperplexity [{}{}] {}/{} windows", std::string(size_t(fill), '#'), std::string(size_t(w - fill), ' '),
                 done, total);
    else if (!o.json && (done == total || done % std::max(1, total / 10) == 0))
      fmt::print(stderr, "perplexity: {}/{} windows\n", done, total);
    if (bar && done == total) fmt::print(stderr, "\n");
  };
  auto r = perplexity(runner, *kv, tokens, o.ctx, model.tokenizer->bos(), progress);
  if (!r) return fail(r.error());
  const auto info = (*be)->info();
  if (o.json) {
    nlohmann::json j = {
        {"perplexity", r->perplexity}, {"mean_nll", r->mean_nll}, {"scored_tokens", r->scored_tokens},
        {"windows", r->windows}, {"ctx", r->ctx}, {"text_tokens", r->text_tokens}, {"text", o.file},
        {"envelope", {{"backend", info.name}, {"device", info.device}, {"model", o.model}, {"model_name", model.config.name},
                      {"weights_digest", model.weights.digest.get().substr(0, 16)}, {"weight_bytes", model.weights.bytes},
                      {"build_type", PAGODA_BUILD_TYPE}, {"git_commit", PAGODA_GIT_COMMIT}}}};
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("envelope: backend={} device=\"{}\" model={} weights={}… build={} commit={}\n", info.name, info.device,
             o.model, model.weights.digest.get().substr(0, 16), PAGODA_BUILD_TYPE, PAGODA_GIT_COMMIT);
  fmt::print("perplexity: {:.4f} over {} scored tokens ({} windows of {}, second half of each scored; text {} tokens)\n",
             r->perplexity, r->scored_tokens, r->windows, r->ctx, r->text_tokens);
  return 0;
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  auto* cmd = app.add_subcommand("perplexity", "Perplexity over a text file (llama.cpp's windowing)");
  cmd->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
  cmd->add_option("-f,--file", o->file, "Text file")->required();
  cmd->add_option("--ctx", o->ctx, "Window length in tokens (the second half of each is scored)")
      ->capture_default_str()->check(CLI::Range(4, 1 << 20));
  cmd->add_flag("--json", o->json, "Machine-readable result");
  add_backend_options(cmd, o->be);
  cmd->callback([o] {
    const int rc = perplexity_cmd(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
