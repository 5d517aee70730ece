// libFuzzer target for the tokenizers on real vocabularies (../shared/models and its vocab/
// folder): any byte string encodes to ids of the vocabulary, and the ids decode back. The first
// input byte picks the vocabulary; the rest is the text. For valid UTF-8 that names no special
// token (no '<', '[' or '|') and has no U+2581 (SentencePiece's space), made of bytes the
// vocabulary keeps (bytes_kept), decoding the ids must give the text back byte for byte. Any id
// sequence (the input read as 16-bit ids) must detokenize to valid UTF-8 without a crash, and every
// pre-tokenizer must cut the text into non-empty pieces that cover it end to end.
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/gguf/gguf.h"
#include "core/tokenizer/pretokenize.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode.h"
#include "core/tokenizer/unicode.h"

#ifndef PAGODA_SHARED_MODELS_DIR
#define PAGODA_SHARED_MODELS_DIR "../shared/models"
#endif

using namespace pagoda;

namespace {

struct Vocab {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
  std::string name;
  std::bitset<256> kept;  // the bytes that decode back alone (bytes_kept)
};

// The bytes a vocabulary can give back alone: a byte-level BPE without a token for a byte (as
// StarCoder's lacks 0xF1, Falcon's the control bytes) drops it, as llama.cpp does.
std::bitset<256> bytes_kept(const Tokenizer& tok) {
  std::bitset<256> kept;
  for (int b = 0; b < 256; ++b) {
    const std::string t(1, char(b));
    kept[size_t(b)] = detokenize(tok, tok.encode(t, false)) == t;
  }
  return kept;
}

std::vector<Vocab>& vocabs() {
  static std::vector<Vocab> v = [] {
    std::vector<Vocab> out;
    const char* names[] = {"stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                           "vocab/ggml-vocab-phi-3.gguf", "vocab/ggml-vocab-deepseek-coder.gguf", "vocab/ggml-vocab-falcon.gguf", "vocab/ggml-vocab-starcoder.gguf"};
    for (const char* n : names) {
      const std::string path = std::string(PAGODA_SHARED_MODELS_DIR) + "/" + n;
      auto f = GgufFile::open(path);
      if (!f) continue;
      auto t = Tokenizer::from_gguf(**f);
      if (!t) {
        std::fprintf(stderr, "tokenizer_fuzz: %s: %s\n", path.c_str(), t.error().c_str());
        continue;
      }
      const std::bitset<256> kept = bytes_kept(**t);
      std::fprintf(stderr, "tokenizer_fuzz: %s (%zu of 256 bytes kept alone)\n", n, kept.count());
      out.push_back({std::move(*f), std::move(*t), n, kept});
    }
    if (out.empty()) {
      std::fprintf(stderr, "tokenizer_fuzz: no vocabulary found under %s\n", PAGODA_SHARED_MODELS_DIR);
      std::abort();
    }
    return out;
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto& vs = vocabs();
  const Vocab& v = vs[data[0] % vs.size()];
  const Tokenizer& tok = *v.tok;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::vector<int32_t> ids = tok.encode(text, false);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  // SentencePiece writes a space as U+2581, so that character itself decodes to a space.
  bool every_byte_kept = true;
  for (char c : text) every_byte_kept = every_byte_kept && v.kept[static_cast<unsigned char>(c)];
  const bool plain = every_byte_kept && text.find_first_of("<[|") == std::string::npos &&
                     text.find("\xe2\x96\x81") == std::string::npos && tok::utf8_valid(text);
  if (plain && detokenize(tok, ids) != text) {
    std::fprintf(stderr, "round trip differs on %s: %zu bytes in, %zu out\n", v.name.c_str(), text.size(), detokenize(tok, ids).size());
    std::abort();
  }

  // Every pre-tokenizer, those no vocabulary above uses included: non-empty pieces that lie end to
  // end over the whole text, whatever its bytes.
  for (const auto kind : tok::kEveryPreTokenizer) {
    std::vector<std::string_view> pieces;
    tok::pretokenize(kind, text, pieces);
    const char* at = text.data();
    for (std::string_view p : pieces) {
      if (p.empty() || p.data() != at) std::abort();
      at += p.size();
    }
    if (at != text.data() + text.size()) std::abort();
  }

  // The input as 16-bit ids, streamed out: valid UTF-8 whatever the ids.
  StreamDecoder dec(tok);
  std::string out;
  for (size_t i = 1; i + 1 < size; i += 2) {
    const int32_t id = int32_t((data[i] | data[i + 1] << 8) % tok.vocab_size());
    out += dec.push(id);
  }
  out += dec.flush();
  if (!tok::utf8_valid(out)) std::abort();
  return 0;
}
