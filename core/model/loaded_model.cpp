#include "core/model/loaded_model.h"

namespace pagoda {

Result<std::unique_ptr<LoadedModel>> LoadedModel::load(const std::string& path, Backend& be,
                                                       const std::function<void(uint64_t, uint64_t)>& progress,
                                                       const LoadOptions& opt) {
  auto f = GgufFile::open(path);
  if (!f) return f.take_error();
  return from_file(std::move(*f), path, be, progress, opt);
}

Result<std::unique_ptr<LoadedModel>> LoadedModel::from_file(std::unique_ptr<GgufFile> file, const std::string& path,
                                                            Backend& be,
                                                            const std::function<void(uint64_t, uint64_t)>& progress,
                                                            const LoadOptions& opt) {
  auto m = std::make_unique<LoadedModel>();
  m->file = std::move(file);
  // Unsupported types first, without the path prefix: the message names the tensor and its type.
  PAGODA_TRY(check_tensor_types(*m->file));
  auto cfg = ModelConfig::from_gguf(*m->file);
  if (!cfg) return make_error(path + ": " + cfg.error());
  m->config = *cfg;
  auto tok = Tokenizer::from_gguf(*m->file);
  if (!tok) return make_error(path + ": " + tok.error());
  m->tokenizer = std::move(*tok);
  if (m->tokenizer->vocab_size() != m->config.vocab)
    return make_error(path + ": tokenizer has " + std::to_string(m->tokenizer->vocab_size()) +
                      " tokens but token_embd.weight has " + std::to_string(m->config.vocab) + " rows");
  // A host backend computes on the file's bytes where they lie: in 2 MiB pages where possible.
  if (!be.info().is_gpu) m->file->prefer_huge_pages();
  auto w = ModelWeights::load(*m->file, m->config, be, progress, opt);
  if (!w) return make_error(path + ": " + w.error());
  m->weights = std::move(*w);
  return m;
}

}  // namespace pagoda
