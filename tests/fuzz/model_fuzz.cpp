// libFuzzer target for what follows the GGUF reader, as `pagoda run` meets a file: hyperparameters,
// tokenizer metadata, tensor names, shapes and types, the weights' upload to the CPU backend, and a
// forward pass. Any file must load or fail with an error; one that loads must tokenize, detokenize
// and evaluate a few tokens (and two greedy steps) without a crash, a leak or undefined behaviour.
// Seeds: tests/fuzz/model_seeds.cpp writes small valid models of each architecture and weight type.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "backends/backend.h"
#include "core/model/evaluate.h"
#include "core/model/loaded_model.h"
#include "core/model/model_runner.h"

using namespace pagoda;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static BackendPtr be = [] {
    auto b = create_backend("cpu");
    if (!b) std::abort();
    return std::move(*b);
  }();
  auto f = GgufFile::parse(data, size);
  if (!f) return 0;
  LoadOptions opt;
  opt.digest = LoadOptions::Digest::Load;
  auto m = LoadedModel::from_file(std::move(*f), "fuzz", *be, {}, opt);
  if (!m) return 0;
  const LoadedModel& model = **m;
  const Tokenizer& tok = *model.tokenizer;

  std::vector<int32_t> ids = tok.encode("Once upon a time, \xe2\x96\x81 caf\xc3\xa9 <s> 42\n", true);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) std::abort();  // encode promises ids of the vocabulary
  StreamDecoder dec(tok);
  for (int32_t id : ids) (void)dec.push(id);
  (void)dec.flush();

  // A few tokens through the model, as `pagoda eval` runs them.
  if (ids.size() > 4) ids.resize(4);
  auto kv = KvCache::create(*be, kv_shape(model.config, 16, DType::F32), 2);
  if (!kv) return 0;
  ModelRunner runner(*be, model.config, model.weights);
  auto r = evaluate_tokens(runner, *kv, ids, 2);
  if (r) {
    if (r->logits.size() != ids.size() * size_t(model.config.vocab)) std::abort();
    for (int32_t g : r->greedy)
      if (g < 0 || g >= model.config.vocab) std::abort();
  }
  return 0;
}
