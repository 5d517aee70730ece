// Pre-tokenizers for byte-level BPE: hand-written equivalents of the regex pipelines that
// tokenizer.ggml.pre names (no regex library with Unicode classes is available).
#pragma once
#include <string_view>
#include <vector>

#include "core/util/result.h"

namespace pagoda::tok {

enum class PreTokenizer {
  // llama.cpp's default (no tokenizer.ggml.pre, or "default"): runs of [\p{P}$+<=>^~|], then the
  // GPT-2 pattern, then \p{N}+, then [0-9]{3}, each splitting the pieces of the one before.
  kDefault,
  kGpt2,       // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kStarcoder,  // every \p{N} alone, then the GPT-2 pattern
  kFalcon,     // runs of [\p{P}$+<=>^~|`], then the GPT-2 pattern, then [0-9]{3} groups
  // Llama 3 (and Qwen2 with one digit a piece): (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|
  // \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  kQwen2,
  // DeepSeek Coder: [\r\n], \s?\p{L}+, \s?\p{P}+, [\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+ and \p{N},
  // each splitting the pieces of the one before it (what none matches stays a piece).
  kDeepseekCoder,
  // Mistral's Tekken and GPT-4o (Llama 4), in the form llama.cpp runs them (case classes by ASCII):
  // [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|...+((?=[\p{L}])([^A-Z]))*|\p{N}|
  // ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ ; GPT-4o adds an optional contraction to
  // each word and takes numbers three digits at a time.
  kTekken,
  kGpt4o,
};

// Whether a pre-token that is itself a vocabulary entry is taken whole, before any merge (Llama 3's
// and Tekken's tokenizer.json set ignore_merges: some such words have no merge path to their token).
bool pre_tokenizer_ignores_merges(PreTokenizer kind);
// Whether BOS is added when the file has no tokenizer.ggml.add_bos_token (Llama 3 and Tekken add it).
bool pre_tokenizer_adds_bos(PreTokenizer kind);

// Maps a tokenizer.ggml.pre value to its pre-tokenizer; an unknown name is an error rather than a
// silently different tokenization.
Result<PreTokenizer> pre_tokenizer_for(std::string_view name);

// Appends the pre-tokens of `text` (views into it, in order, covering every byte) to `out`.
void pretokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& out);

}  // namespace pagoda::tok
