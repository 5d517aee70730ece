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
  // Seed-Coder: Qwen2's pattern but for the symbols, which take no line breaks after them:
  // ... ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|...
  kSeedCoder,
  // DeepSeek LLM: [\r\n], \s?[cased letters]+ (a fixed list of ranges, not \p{L}), \s?[ASCII and
  // full-width punctuation]+, \s+$, the CJK runs of DeepSeek Coder, then \p{N}+, each splitting the
  // pieces of the one before.
  kDeepseekLlm,
  // BLOOM (Poro, GPT-3 Finnish):  ?[^(\s|.,!?…。，、।۔،)]+ ; Viking adds \p{N} after it.
  kBloom,
  kViking,
};
// Every pre-tokenizer, for the checks that run them all (the fuzzer, the long-input test).
inline constexpr PreTokenizer kEveryPreTokenizer[] = {
    PreTokenizer::kDefault, PreTokenizer::kGpt2, PreTokenizer::kStarcoder, PreTokenizer::kFalcon,
    PreTokenizer::kLlama3, PreTokenizer::kQwen2, PreTokenizer::kDeepseekCoder, PreTokenizer::kTekken,
    PreTokenizer::kGpt4o, PreTokenizer::kSeedCoder, PreTokenizer::kDeepseekLlm, PreTokenizer::kBloom,
    PreTokenizer::kViking,
};

// A tokenizer.ggml.pre value's pattern and the two settings llama.cpp ties to the name, not to
// the pattern (Smaug's and Llama 3's patterns are one, only Llama 3 sets them).
struct PreTokenizerSpec {
  PreTokenizer kind = PreTokenizer::kDefault;
  // A pre-token that is itself a vocabulary entry is taken whole, before any merge (Llama 3's and
  // Tekken's tokenizer.json set ignore_merges: some such words have no merge path to their token).
  bool ignore_merges = false;
  // BOS is added when the file has no tokenizer.ggml.add_bos_token (Llama 3 and Tekken).
  bool add_bos = false;
};

// Maps a tokenizer.ggml.pre value to its pre-tokenizer; an unknown name is an error rather than a
// silently different tokenization.
Result<PreTokenizerSpec> pre_tokenizer_for(std::string_view name);

// Appends the pre-tokens of `text` (views into it, in order, covering every byte) to `out`.
void pretokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& out);

}  // namespace pagoda::tok
