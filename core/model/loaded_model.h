// LoadedModel: a GGUF opened, validated and uploaded to a backend, with its tokenizer — the one
// thing every command and the engine start from.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "core/gguf/gguf.h"
#include "core/model/model_config.h"
#include "core/model/model_weights.h"
#include "core/tokenizer/tokenizer.h"

namespace pagoda {

struct LoadedModel {
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;

  static Result<std::unique_ptr<LoadedModel>> load(const std::string& path, Backend& be,
                                                   const std::function<void(uint64_t, uint64_t)>& progress = {},
                                                   const LoadOptions& opt = {});
  // The same checks and upload for a file already opened or parsed (`name` prefixes errors).
  static Result<std::unique_ptr<LoadedModel>> from_file(std::unique_ptr<GgufFile> file, const std::string& name,
                                                        Backend& be,
                                                        const std::function<void(uint64_t, uint64_t)>& progress = {},
                                                        const LoadOptions& opt = {});
};

}  // namespace pagoda
