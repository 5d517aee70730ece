// `pagoda conformance`: every op x dtype x shape on every available backend against the CPU
// reference, then the real model's greedy text and logits (F32 and F16 KV) per backend.
#include <fmt/core.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/cli_common.h"
#include "backends/conformance.h"
#include "backends/cpu/cpu_backend.h"
#include "apps/bench/model_conformance.h"

namespace pagoda::cli {
namespace {

struct ConfOptions {
  std::vector<std::string> backends;
  std::string filter;
  uint64_t seed = 0;
  std::string model = default_model_path();
  int32_t tokens = 64;
  bool json = false;
  int device = -1;
};

int conformance(const ConfOptions& o) {
  std::vector<std::string> names = o.backends;
  if (names.empty())
    for (const auto& n : available_backends())
      if (n != "cpu-ref") names.push_back(n);
  nlohmann::json out = nlohmann::json::array();
  int failures = 0;
  CpuBackend ref(CpuOptions{.reference = true});
  for (const auto& name : names) {
    auto be = create_backend(name, o.device);
    nlohmann::json entry = {{"backend", name}};
    if (!be) {
      entry["status"] = "skip";
      entry["reason"] = be.error();
      if (!o.json) fmt::print("{}: SKIPPED ({})\n\n", name, be.error());
      out.push_back(entry);
      continue;
    }
    const auto info = (*be)->info();
    auto results = run_conformance(**be, o.seed, o.filter);
    for (const auto& r : results) failures += r.status == ConformanceStatus::Fail;
    entry["device"] = info.device;
    entry["ops"] = nlohmann::json::parse(conformance_json(results));
    if (!o.json) fmt::print("{} on {}\n{}\n", name, info.device, format_conformance_table(results));
    if (std::filesystem::exists(o.model)) {
      for (DType kv : {DType::F32, DType::F16}) {
        auto m = compare_model(o.model, ref, **be, "Once upon a time", o.tokens, kv);
        if (!m) { ++failures; entry["model"].push_back({{"kv", dtype_name(kv)}, {"error", m.error()}}); continue; }
        // In F32 the greedy text must be identical; F16 KV is reported, not required to match.
        if (kv == DType::F32 && !m->greedy_identical) ++failures;
        entry["model"].push_back({{"kv", m->kv_dtype}, {"greedy_identical", m->greedy_identical}, {"greedy_tokens", m->greedy_tokens},
                                  {"first_divergence", m->first_divergence}, {"top1_agreement", m->top1_agreement},
                                  {"mean_kl", m->mean_kl}, {"max_kl", m->max_kl}, {"positions", m->positions}});
        if (!o.json)
          fmt::print("model {} ({} KV): greedy {} tokens {} | top-1 agreement {:.4f} | KL mean {:.2e} max {:.2e}\n", o.model,
                     m->kv_dtype, m->greedy_tokens, m->greedy_identical ? "IDENTICAL" : fmt::format("DIFFER at {}", m->first_divergence),
                     m->top1_agreement, m->mean_kl, m->max_kl);
      }
      if (!o.json) fmt::print("\n");
    }
    out.push_back(entry);
  }
  if (o.json) fmt::print("{}\n", out.dump(2));
  return failures == 0 ? 0 : 1;
}

}  // namespace

void register_conformance(CLI::App& app) {
  auto o = std::make_shared<ConfOptions>();
  auto* cmd = app.add_subcommand("conformance", "Check every op and the real model on each backend against the CPU reference");
  cmd->add_option("--backend", o->backends, "Backends to test (default: every available one)");
  cmd->add_option("--filter", o->filter, "Only cases whose op/dtype/name contains this");
  cmd->add_option("--seed", o->seed, "Suite seed (default: fresh each run; printed per case)");
  cmd->add_option("-m,--model", o->model, "Real model for the model-level check")->capture_default_str();
  cmd->add_option("-n", o->tokens, "Greedy tokens for the model-level check")->capture_default_str();
  cmd->add_option("--device", o->device, "GPU device index");
  cmd->add_flag("--json", o->json, "Machine-readable output");
  cmd->callback([o] {
    const int rc = conformance(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
