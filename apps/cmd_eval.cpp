// `pagoda eval`: the logits of exactly the given token ids (one batch, nothing added) and an
// optional greedy continuation: the tool for checking numerics against another engine.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/cli_common.h"
#include "core/model/evaluate.h"
#include "pagoda_version.h"  // PAGODA_GIT_COMMIT

namespace pagoda::cli {
namespace {

struct EvalOptions {
  std::string model = default_model_path();
  std::string tokens;
  std::string logits_out;
  int32_t greedy = 0;
  bool json = false;
  BackendOptions be;
};

// "1 403 407" or "1,403,407": every piece must be a whole non-negative number.
Result<std::vector<int32_t>> parse_ids(const std::string& s) {
  std::string t = s;
  for (char& c : t)
    if (c == ',') c = ' ';
  std::istringstream in(t);
  std::vector<int32_t> ids;
  std::string piece;
  while (in >> piece) {
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(piece, &used);
    } catch (...) {
      used = 0;
    }
    if (used != piece.size() || v < 0 || v > INT32_MAX) return make_error("--tokens: '" + piece + "' is not a token id");
    ids.push_back(int32_t(v));
  }
  if (ids.empty()) return make_error("--tokens is empty: give token ids like \"1 403 407\"");
  return ids;
}

nlohmann::json envelope(const EvalOptions& o, Backend& be, const LoadedModel& m) {
  const auto info = be.info();
  return {{"backend", info.name}, {"device", info.device}, {"model", o.model}, {"model_name", m.config.name},
          {"weights_digest", m.weights.digest.get().substr(0, 16)}, {"build_type", PAGODA_BUILD_TYPE},
          {"git_commit", PAGODA_GIT_COMMIT}};
}

Status write_logits(const std::string& path, const std::vector<float>& logits) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return make_error("cannot open '" + path + "' for writing");
  // float32 little-endian, as the host stores it (every supported target is little-endian).
  const size_t n = std::fwrite(logits.data(), sizeof(float), logits.size(), f);
  const bool ok = n == logits.size() && std::fclose(f) == 0;
  if (!ok) return make_error("writing '" + path + "' failed");
  return {};
}

int eval_cmd(const EvalOptions& o) {
  auto ids = parse_ids(o.tokens);
  if (!ids) {
    fmt::print(stderr, "error: {}\n", ids.error());
    return 2;
  }
  auto be = open_backend(o.be, o.json);
  if (!be) return fail(be.error());
  auto m = load_model(o.model, **be, o.json);
  if (!m) return fail(m.error());
  const auto& model = **m;
  auto kv = KvCache::create(**be, kv_shape(model.config, 16, DType::F32), int32_t((ids->size() + size_t(o.greedy) + 15) / 16 + 1));
  if (!kv) return fail(kv.error());
  ModelRunner runner(**be, model.config, model.weights);
  auto r = evaluate_tokens(runner, *kv, *ids, o.greedy);
  if (!r) return fail(r.error());
  if (!o.logits_out.empty())
    if (auto st = write_logits(o.logits_out, r->logits); !st) return fail(st.error());
  const int32_t vocab = model.config.vocab, n = int32_t(ids->size());
  std::vector<int32_t> top(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    const float* row = r->logits.data() + size_t(i) * size_t(vocab);
    top[size_t(i)] = int32_t(std::max_element(row, row + vocab) - row);
  }
  if (o.json) {
    nlohmann::json j = {{"tokens", *ids}, {"n_tokens", n}, {"n_vocab", vocab}, {"argmax", top},
                        {"envelope", envelope(o, **be, model)}};
    if (!o.logits_out.empty()) j["logits_out"] = o.logits_out;
    if (o.greedy > 0) {
      j["greedy"] = r->greedy;
      j["greedy_margins"] = r->greedy_margins;
    }
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  const auto info = (*be)->info();
  fmt::print("envelope: backend={} model={} weights={}… build={} commit={}\n", info.name, o.model,
             model.weights.digest.get().substr(0, 16), PAGODA_BUILD_TYPE, PAGODA_GIT_COMMIT);
  fmt::print("argmax per position: {}\n", fmt::join(top, " "));
  if (!o.logits_out.empty()) fmt::print("logits: {} x {} float32 written to {}\n", n, vocab, o.logits_out);
  if (o.greedy > 0) fmt::print("greedy continuation ({} ids):\n{}\n", o.greedy, fmt::join(r->greedy, " "));
  return 0;
}

}  // namespace

void register_eval(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("eval", "Logits of exactly the given token ids (parity checks)");
  cmd->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
  cmd->add_option("--tokens", o->tokens, "Token ids, e.g. \"1 403 407\" (no BOS is added)")->required();
  cmd->add_option("--logits-out", o->logits_out, "Write every position's logits here (float32 LE, n_tokens x n_vocab)");
  cmd->add_option("--greedy", o->greedy, "Also print N greedy continuation ids")->check(CLI::Range(0, 1 << 20));
  cmd->add_flag("--json", o->json, "Machine-readable result");
  add_backend_options(cmd, o->be);
  cmd->callback([o] {
    const int rc = eval_cmd(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
