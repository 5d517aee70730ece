// `pagoda quantize IN OUT TYPE`: re-quantize a llama GGUF into a file llama.cpp also loads.
#include <fmt/core.h>
#include <unistd.h>

#include "apps/cli_common.h"
#include "apps/quantize.h"

namespace pagoda::cli {

void register_quantize(CLI::App& app) {
  auto in = std::make_shared<std::string>(), out = std::make_shared<std::string>(), type = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("quantize", "Re-quantize a GGUF: f16, bf16, q8_0, q4_0, q6_k, q4_k_m, q5_k_m");
  cmd->add_option("input", *in, "GGUF to read (any type Pagoda runs)")->required();
  cmd->add_option("output", *out, "GGUF to write")->required();
  cmd->add_option("type", *type, "Target type (q4_k_m/q5_k_m: llama.cpp's mixture rules)")->required();
  cmd->callback([in, out, type] {
    const bool bar = isatty(STDERR_FILENO);
    auto progress = [&](size_t done, size_t total) {
      const int w = 40, fill = int(done * size_t(w) / total);
      if (bar)
        fmt::print(stderr, "\rquantizing [{}{}] {}/{} tensors{}", std::string(size_t(fill), '#'),
                   std::string(size_t(w - fill), ' '), done, total, done == total ? "\n" : "");
    };
    auto r = quantize_model(*in, *out, *type, progress);
    if (!r) throw CLI::RuntimeError(fail(r.error()));
    fmt::print("wrote {} ({}): {:.2f} MiB -> {:.2f} MiB\ntensor types:", *out, *type, double(r->bytes_in) / (1 << 20),
               double(r->bytes_out) / (1 << 20));
    for (const auto& [name, n] : r->tensor_types) fmt::print(" {}x{}", name, n);
    fmt::print("\n");
  });
}

}  // namespace pagoda::cli
