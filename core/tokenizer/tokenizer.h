// Tokenizers built from GGUF metadata: SentencePiece-style BPE with scores and byte fallback
// ("llama"), and byte-level BPE with merges ("gpt2"). Special tokens come only from the file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/gguf/gguf.h"
#include "core/util/result.h"

namespace pagoda {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Reads tokenizer.ggml.model ("llama" or "gpt2"), tokens, scores, token_type, merges,
  // bos/eos/unk ids and add_bos/add_space_prefix flags. Missing or inconsistent data is an error.
  static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& f);

  // Text -> ids. `add_bos` prepends BOS when the vocabulary has one. Never fails: unknown bytes
  // fall back to byte tokens (or UNK when the vocabulary has no byte tokens).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  // The raw bytes one token stands for (byte tokens <0xAB> give that byte; "▁" becomes a space).
  // A leading space that the encoder added as a prefix is dropped when `prev` is BOS or -1.
  virtual std::string token_bytes(int32_t prev, int32_t id) const = 0;
  // The vocabulary entry as stored (for display and `pagoda info`).
  virtual const std::string& piece(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos() const = 0;  // -1 if none
  // tokenizer.ggml.add_bos_token (default: true for "llama", false for "gpt2"): whether a prompt
  // the caller assembles itself (a rendered chat) should start with BOS.
  virtual bool add_bos() const = 0;
  virtual int32_t eos() const = 0;  // -1 if none
  virtual bool is_special(int32_t id) const = 0;  // control tokens are never printed
  // End of generation: EOS, the file's EOT/EOM ids (tokenizer.ggml.eot_token_id, ...) and the
  // control tokens that end a chat turn (<|eot_id|>, <|im_end|>, <end_of_turn>, <|end|>, ...).
  virtual bool is_eog(int32_t id) const = 0;
  virtual const std::vector<int32_t>& eog_ids() const = 0;  // sorted
  // SHA-256 (hex) over the model type, every piece, score, type and merge: the tokenizer digest
  // that the prefix cache identity binds to.
  virtual const std::string& digest() const = 0;
};

// The bytes of `ids` one after another (token_bytes, each after the one before it; `prev` before
// the first): the whole text at once, where StreamDecoder gives it piece by piece.
std::string detokenize(const Tokenizer& tok, const std::vector<int32_t>& ids, int32_t prev = -1);

// Streaming detokenizer: feeds token ids, returns text that is safe to print now. Holds back an
// incomplete UTF-8 sequence until its remaining bytes arrive, so no character is ever split.
class StreamDecoder {
 public:
  // `prev`: the token before the first one pushed (the prompt's last token when decoding a
  // continuation), so a word-initial space is kept unless the text really starts there.
  explicit StreamDecoder(const Tokenizer& tok, int32_t prev = -1) : tok_(tok), prev_(prev) {}
  std::string push(int32_t id);
  std::string flush();  // whatever is held back (invalid UTF-8 comes out as U+FFFD)

 private:
  const Tokenizer& tok_;
  int32_t prev_ = -1;
  std::string pending_;
};

}  // namespace pagoda
