// Import of llama2.c checkpoints (.bin: 7 int32 header, then F32 tensors) and its tokenizer format
// into GGUF with the standard llama metadata keys.
#pragma once
#include <string>

#include "core/util/result.h"

namespace pagoda {

struct Llama2cImportOptions {
  std::string checkpoint;  // model .bin
  std::string tokenizer;   // tok512.bin / tokenizer.bin
  std::string output;      // .gguf to write
  std::string name;        // general.name (defaults to the checkpoint's file name)
};

Status import_llama2c(const Llama2cImportOptions& opt);

}  // namespace pagoda
