// Pre-tokenizers for byte-level BPE: hand-written equivalents of the regex pipelines that
// tokenizer.ggml.pre names (no regex library with Unicode classes is available).
#pragma once
#include <string_view>
#include <vector>

#include "core/util/result.h"

namespace pagoda::tok {

enum class PreTokenizer {
  kGpt2,       // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kStarcoder,  // every \p{N} alone, then the GPT-2 pattern
  kFalcon,     // runs of [\p{P}$+<=>^~|`], then the GPT-2 pattern, then [0-9]{3} groups
};

// Maps a tokenizer.ggml.pre value to its pre-tokenizer; an unknown name is an error rather than a
// silently different tokenization.
Result<PreTokenizer> pre_tokenizer_for(std::string_view name);

// Appends the pre-tokens of `text` (views into it, in order, covering every byte) to `out`.
void pretokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& out);

}  // namespace pagoda::tok
