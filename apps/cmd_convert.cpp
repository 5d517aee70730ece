// `pagoda convert` (llama2.c checkpoint -> GGUF) and `pagoda synth` (random-weight GGUF presets).
#include <fmt/core.h>

#include "apps/cli_common.h"
#include "core/model/model_weights.h"
#include "core/model/llama2c_import.h"
#include "apps/bench/synth.h"
#include "apps/bench/widen.h"

namespace pagoda::cli {

void register_convert(CLI::App& app) {
  auto o = std::make_shared<Llama2cImportOptions>();
  auto* cmd = app.add_subcommand("convert", "Convert a llama2.c checkpoint (.bin + tokenizer .bin) to GGUF");
  cmd->add_option("checkpoint", o->checkpoint, "llama2.c model .bin")->required()->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer (tok512.bin, tokenizer.bin)")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", o->output, "GGUF file to write")->required();
  cmd->add_option("--name", o->name, "general.name to record");
  cmd->callback([o] {
    if (auto st = import_llama2c(*o); !st) throw CLI::RuntimeError(fail(st.error()));
    fmt::print(stderr, "wrote {}\n", o->output);
  });

  auto s = std::make_shared<SynthOptions>();
  auto preset = std::make_shared<std::string>("110M");
  auto dtype = std::make_shared<std::string>("f32");
  s->vocab_from = "../shared/models/vocab/ggml-vocab-llama-spm.gguf";
  auto* syn = app.add_subcommand("synth", "Write a llama-shaped GGUF with random weights (for speed tests only)");
  syn->add_option("--preset", *preset, "Shape: tiny, 15M, 110M, 1B")->capture_default_str();
  syn->add_option("--dtype", *dtype, "Weight type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k..q6_k, q4_k_m, q5_k_m")->capture_default_str();
  syn->add_option("--vocab-from", s->vocab_from, "GGUF whose tokenizer metadata is copied")->capture_default_str();
  syn->add_option("--seed", s->seed, "Weight seed")->capture_default_str();
  syn->add_option("--arch", s->arch, "Architecture: llama, qwen2, qwen3, gemma2, gemma3, phi3 (its tensors and keys)")
      ->capture_default_str();
  syn->add_option("-o,--output", s->output, "GGUF file to write")->required();
  auto widen = std::make_shared<WidenOptions>();
  syn->add_option("--widen", widen->input, "Instead of random weights: widen this real F32 model, keeping its function");
  syn->add_option("--heads", widen->heads, "With --widen: total query heads")->capture_default_str();
  syn->add_option("--ffn", widen->ffn_dim, "With --widen: FFN width")->capture_default_str();
  syn->add_option("--layers", widen->layers, "With --widen: total layers")->capture_default_str();
  syn->callback([s, preset, dtype, widen] {
    if (!widen->input.empty()) {
      widen->output = s->output;
      if (auto st = widen_model(*widen); !st) throw CLI::RuntimeError(fail(st.error()));
      fmt::print(stderr, "wrote {} (function-preserving widening of {})\n", s->output, widen->input);
      return;
    }
    auto shape = synth_preset(*preset);
    if (!shape) throw CLI::RuntimeError(fail(shape.error()));
    s->shape = *shape;
    // Any weight type by name; "q4_k_m"/"q5_k_m" as llama.cpp's mixes keep the output in Q6_K.
    const bool mix = *dtype == "q4_k_m" || *dtype == "q5_k_m";
    const auto dt = dtype_from_name(mix ? dtype->substr(0, 4) : *dtype);
    if (!dt || *dt == DType::I32)
      throw CLI::RuntimeError(fail("--dtype must be f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, "
                                   "q4_k, q5_k, q6_k, q4_k_m or q5_k_m"));
    s->dtype = ggml_from_dtype(*dt);
    if (mix) s->output_dtype = GgmlType::Q6_K;
    if (auto st = synth_model(*s); !st) throw CLI::RuntimeError(fail(st.error()));
    fmt::print(stderr, "wrote {} ({} preset {}, {} weights, RANDOM — for speed measurement only)\n", s->output, s->arch,
               *preset, *dtype);
  });
}

}  // namespace pagoda::cli
