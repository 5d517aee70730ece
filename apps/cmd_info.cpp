// `pagoda info MODEL`: metadata, tensor table, and the KV capacity equation for the model.
#include <fmt/core.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "apps/cli_common.h"
#include "core/model/model_config.h"
#include "core/model/model_weights.h"

namespace pagoda::cli {
namespace {

std::string value_summary(const GgufValue& v) {
  if (const auto* s = v.as_string()) return s->size() > 60 ? "\"" + s->substr(0, 57) + "...\"" : "\"" + *s + "\"";
  if (const auto* a = v.as_array()) return "[array of " + std::to_string(a->items.size()) + "]";
  if (v.type == GgufValueType::F32 || v.type == GgufValueType::F64) return fmt::format("{:g}", *v.as_float());
  if (v.type == GgufValueType::BOOL) return *v.as_int() ? "true" : "false";
  if (auto i = v.as_int()) return std::to_string(*i);
  return "?";
}

struct TypeTotal {
  uint64_t count = 0, bytes = 0;
  bool runs = false;  // Pagoda has a kernel for it
};
// Count and bytes per tensor type, in the order the types first appear (a "Q4_K_M" file is a mix).
std::vector<std::pair<std::string, TypeTotal>> type_totals(const GgufFile& f) {
  std::vector<std::pair<std::string, TypeTotal>> v;
  for (const auto& t : f.tensors()) {
    const std::string name = ggml_type_name(t.type);
    auto it = std::find_if(v.begin(), v.end(), [&](const auto& p) { return p.first == name; });
    if (it == v.end()) it = v.insert(v.end(), {name, TypeTotal{0, 0, dtype_from_ggml(t.type).ok()}});
    it->second.count++;
    it->second.bytes += t.n_bytes;
  }
  return v;
}

int info(const std::string& path, bool json) {
  auto f = GgufFile::open(path);
  if (!f) return fail(f.error());
  auto cfg = ModelConfig::from_gguf(**f);
  uint64_t weight_bytes = 0, params = 0;
  for (const auto& t : (*f)->tensors()) { weight_bytes += t.n_bytes; params += t.n_elements(); }
  if (json) {
    nlohmann::json j;
    j["path"] = path;
    j["version"] = (*f)->version();
    for (const auto& [k, v] : (*f)->metadata()) j["metadata"][k] = value_summary(v);
    for (const auto& t : (*f)->tensors())
      j["tensors"].push_back({{"name", t.name}, {"type", ggml_type_name(t.type)}, {"dims", t.dims}, {"bytes", t.n_bytes}});
    for (const auto& [name, tt] : type_totals(**f))
      j["tensor_types"][name] = {{"count", tt.count}, {"bytes", tt.bytes}, {"supported", tt.runs}};
    j["parameters"] = params;
    j["weight_bytes"] = weight_bytes;
    if (cfg) {
      j["kv_bytes_per_token_f32"] = cfg->kv_bytes_per_token(4);
      j["kv_bytes_per_token_f16"] = cfg->kv_bytes_per_token(2);
    } else {
      j["config_error"] = cfg.error();
    }
    fmt::print("{}\n", j.dump(2));
    return cfg ? 0 : 1;
  }
  fmt::print("file: {}  (GGUF v{}, {} tensors, {} metadata keys, {:.2f} MiB)\n", path, (*f)->version(),
             (*f)->tensors().size(), (*f)->metadata().size(), double((*f)->file_size()) / (1 << 20));
  fmt::print("\nmetadata:\n");
  for (const auto& [k, v] : (*f)->metadata()) fmt::print("  {:<44} {}\n", k, value_summary(v));
  fmt::print("\ntensors:\n  {:<32} {:<7} {:<22} {:>12}\n", "name", "type", "shape", "bytes");
  for (const auto& t : (*f)->tensors()) {
    std::string shape;
    for (size_t i = 0; i < t.dims.size(); ++i) shape += (i ? " x " : "") + std::to_string(t.dims[i]);
    fmt::print("  {:<32} {:<7} {:<22} {:>12}\n", t.name, ggml_type_name(t.type), shape, t.n_bytes);
  }
  fmt::print("\ntensor types:\n");
  for (const auto& [name, tt] : type_totals(**f))
    fmt::print("  {:<8} {:>5} tensors {:>14} bytes{}\n", name, tt.count, tt.bytes, tt.runs ? "" : "  (not supported by Pagoda)");
  fmt::print("\nparameters: {} ({:.2f} M), weight bytes: {}\n", params, double(params) / 1e6, weight_bytes);
  if (!cfg) return fail(cfg.error());
  const auto& c = *cfg;
  fmt::print("model: dim {} ffn {} layers {} heads {} kv heads {} head dim {} vocab {} context {} rope base {:g}{}\n",
             c.dim, c.ffn_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab, c.ctx_len, c.rope_theta,
             c.tied_output ? " (tied output)" : "");
  fmt::print("architecture: {}\n", c.desc.signature());
  fmt::print("rope scaling:{}\n", c.rope_scaling.signature());
  fmt::print("KV bytes per token = 2 x {} layers x {} kv heads x {} head dim x bytes/elem = {} (f32), {} (f16)\n",
             c.n_layers, c.n_kv_heads, c.head_dim, c.kv_bytes_per_token(4), c.kv_bytes_per_token(2));
  fmt::print("full context ({} tokens) per sequence: {:.2f} MiB (f32)\n", c.ctx_len,
             double(c.kv_bytes_per_token(4)) * c.ctx_len / (1 << 20));
  return 0;
}

}  // namespace

void register_info(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("info", "Show a GGUF model's metadata, tensors and KV cost");
  cmd->add_option("model", *path, "GGUF file")->required();
  cmd->add_flag("--json", *json, "Machine-readable output");
  cmd->callback([path, json] {
    const int rc = info(*path, *json);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
