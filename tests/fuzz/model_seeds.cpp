// Writes the seed corpus of model_fuzz: small valid models of every architecture `pagoda synth`
// knows, in F32 (16 wide) and Q8_0 (32 wide), and llama in Q4_K_M and Q2_K (256 wide), with a
// real tokenizer's metadata, so that mutations start from files that load and run. Usage: model_seeds VOCAB.gguf OUTDIR
#include <cstdio>
#include <string>

#include "apps/bench/synth.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: model_seeds VOCAB.gguf OUTDIR\n");
    return 2;
  }
  int written = 0;
  for (const std::string& arch : pagoda::synth_architectures()) {
    for (const auto type : {pagoda::GgmlType::F32, pagoda::GgmlType::Q8_0}) {
      const bool f32 = type == pagoda::GgmlType::F32;
      pagoda::SynthOptions o;
      // dim, ffn, layers, heads, kv heads, context: two layers so that per-layer keys matter.
      o.shape = f32 ? pagoda::SynthShape{"fuzz", 16, 32, 2, 2, 1, 64} : pagoda::SynthShape{"fuzz", 32, 64, 2, 2, 1, 64};
      o.dtype = type;
      o.arch = arch;
      o.vocab_from = argv[1];
      o.output = std::string(argv[2]) + "/" + arch + (f32 ? "-f32" : "-q8_0") + ".gguf";
      if (auto st = pagoda::synth_model(o); !st) {
        std::fprintf(stderr, "%s: %s\n", o.output.c_str(), st.error().c_str());
        return 1;
      }
      ++written;
    }
  }
  // K-quant and mixed files (256-wide rows: a super-block each), so that hostile shapes and
  // types reach those kernels too.
  for (const auto type : {pagoda::GgmlType::Q4_K, pagoda::GgmlType::Q2_K}) {
    pagoda::SynthOptions o;
    o.shape = pagoda::SynthShape{"fuzz", 256, 256, 1, 2, 1, 64};
    o.dtype = type;
    if (type == pagoda::GgmlType::Q4_K) o.output_dtype = pagoda::GgmlType::Q6_K;
    o.vocab_from = argv[1];
    o.output = std::string(argv[2]) + (type == pagoda::GgmlType::Q4_K ? "/llama-q4_k_m.gguf" : "/llama-q2_k.gguf");
    if (auto st = pagoda::synth_model(o); !st) {
      std::fprintf(stderr, "%s: %s\n", o.output.c_str(), st.error().c_str());
      return 1;
    }
    ++written;
  }
  std::printf("wrote %d seeds to %s\n", written, argv[2]);
  return 0;
}
