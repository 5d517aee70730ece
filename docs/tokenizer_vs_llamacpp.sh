#!/usr/bin/env bash
# Pagoda's tokenizers against llama.cpp's on the same vocabularies and texts: token ids, text by
# text. llama.cpp is the build docs/compare_llamacpp.sh makes (WORK, default /tmp/llamacpp-ref:
# its include/ and build/bin/libllama.so); nothing of it enters Pagoda. Texts: the 500-odd of
# tests/data/pretokenize_ref.json (llama.cpp's tokenizer test texts, hard cases, random strings).
# Vocabularies: every ../shared/models/vocab GGUF that both load, and GPT-2's vocabulary with
# tokenizer.ggml.pre set to each byte-level pattern Pagoda implements (so the patterns whose own
# vocabularies are not in ../shared, Llama 3's, Qwen2's, Tekken's, GPT-4o's, meet llama.cpp's
# splitting on real merges).
# Usage: bash docs/tokenizer_vs_llamacpp.sh   (after a build in BUILD, default build)
# Output: per vocabulary, how many texts tokenize differently (the differing texts with both id
# lists), and how many pieces detokenize differently (each id alone, after an ordinary word).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/llamacpp-ref}
VOCAB=${VOCAB:-../shared/models/vocab}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat > "$T/mkvocab.cpp" <<'EOF'
// Copies a GGUF's metadata (a vocabulary-only file) with tokenizer.ggml.pre replaced.
#include <cstdio>
#include "core/gguf/gguf.h"
#include "core/gguf/gguf_writer.h"
using namespace pagoda;
int main(int argc, char** argv) {
  auto f = GgufFile::open(argv[1]);
  if (!f) { std::fprintf(stderr, "%s\n", f.error().c_str()); return 1; }
  GgufWriter w;
  for (const auto& [k, v] : (*f)->metadata())
    if (k != "tokenizer.ggml.pre") w.set_value(k, v);
  w.set_string("tokenizer.ggml.pre", argv[3]);
  auto st = w.write(argv[2]);
  if (!st) { std::fprintf(stderr, "%s\n", st.error().c_str()); return 1; }
}
EOF
cat > "$T/pg.cpp" <<'EOF'
// Pagoda's token ids for each text of an .inp-style file, one line each (a third argument: with
// BOS where the vocabulary adds it).
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include "core/gguf/gguf.h"
#include "core/tokenizer/tokenizer.h"
using namespace pagoda;
int main(int argc, char** argv) {
  auto f = GgufFile::open(argv[1]);
  auto t = Tokenizer::from_gguf(**f);
  if (!t) { std::fprintf(stderr, "%s\n", t.error().c_str()); return 1; }
  std::ifstream in(argv[2], std::ios::binary); std::stringstream ss; ss << in.rdbuf();
  const std::string all = ss.str(), sep = "\n__ggml_vocab_test__\n";
  size_t at = 0;
  while (at < all.size()) {
    size_t e = all.find(sep, at); if (e == std::string::npos) break;
    for (int id : (*t)->encode(all.substr(at, e - at), argc > 3 && (*t)->add_bos())) std::printf(" %d", id);
    std::printf("\n"); at = e + sep.size();
  }
}
EOF
cat > "$T/pgp.cpp" <<'EOF'
#include <cstdio>
#include <string>
#include "core/gguf/gguf.h"
#include "core/tokenizer/tokenizer.h"
using namespace pagoda;
int main(int argc, char** argv) {
  auto f = GgufFile::open(argv[1]); auto t = Tokenizer::from_gguf(**f);
  if (!t) return 1;
  const int prev = (*t)->vocab_size() > 300 ? 300 : 0;
  for (int id = 0; id < (*t)->vocab_size(); ++id) {
    std::string b = (*t)->token_bytes(prev, id);
    std::printf("%d", id); for (unsigned char c : b) std::printf(" %02x", c); std::printf("\n");
  }
}
EOF
cat > "$T/lcp.cpp" <<'EOF'
#include <cstdio>
#include "llama.h"
int main(int argc, char** argv) {
  llama_backend_init();
  auto mp = llama_model_default_params(); mp.vocab_only = true;
  llama_model* m = llama_model_load_from_file(argv[1], mp);
  const llama_vocab* v = llama_model_get_vocab(m);
  char buf[4096];
  for (int id = 0; id < llama_vocab_n_tokens(v); ++id) {
    int n = llama_token_to_piece(v, id, buf, sizeof buf, 0, false);
    std::printf("%d", id); for (int i = 0; i < n; ++i) std::printf(" %02x", (unsigned char)buf[i]); std::printf("\n");
  }
}
EOF
cat > "$T/lc.cpp" <<'EOF'
// llama.cpp's token ids (specials not parsed) for each text of an .inp-style file (a third
// argument: add_special, its BOS and EOS where the vocabulary adds them).
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include "llama.h"
int main(int argc, char** argv) {
  llama_backend_init();
  auto mp = llama_model_default_params(); mp.vocab_only = true;
  llama_model* m = llama_model_load_from_file(argv[1], mp);
  if (!m) return 1;
  const llama_vocab* v = llama_model_get_vocab(m);
  std::ifstream in(argv[2], std::ios::binary); std::stringstream ss; ss << in.rdbuf();
  const std::string all = ss.str(), sep = "\n__ggml_vocab_test__\n";
  size_t at = 0;
  while (at < all.size()) {
    size_t e = all.find(sep, at); if (e == std::string::npos) break;
    const std::string text = all.substr(at, e - at);
    std::vector<llama_token> ids(text.size() * 2 + 8);
    int n = llama_tokenize(v, text.data(), int(text.size()), ids.data(), int(ids.size()), argc > 3, false);
    for (int i = 0; i < n; ++i) std::printf(" %d", ids[i]);
    std::printf("\n"); at = e + sep.size();
  }
}
EOF
CORE="$BUILD/core/libpagoda_core.a"
g++ -std=c++20 -O1 -I. "$T/mkvocab.cpp" "$CORE" -lssl -lcrypto -o "$T/mkvocab"
g++ -std=c++20 -O1 -I. "$T/pg.cpp" "$CORE" -lssl -lcrypto -o "$T/pg"
g++ -std=c++20 -O1 -I. "$T/pgp.cpp" "$CORE" -lssl -lcrypto -o "$T/pgp"
for p in lc lcp; do
  g++ -std=c++17 -O1 -I"$WORK/src/include" -I"$WORK/src/ggml/include" "$T/$p.cpp" -L"$WORK/build/bin" -lllama \
    -Wl,-rpath,"$WORK/build/bin" -o "$T/$p"
done
python3 -c "
import json, sys
d = json.load(open('tests/data/pretokenize_ref.json'))
open(sys.argv[1], 'w', encoding='utf-8').write(''.join(c['text'] + '\n__ggml_vocab_test__\n' for c in d['cases']))
" "$T/texts.inp"
compare() {  # name gguf
  "$T/pg" "$2" "$T/texts.inp" > "$T/pg.txt" 2> /dev/null || { echo "$1: Pagoda refuses it"; return; }
  "$T/lc" "$2" "$T/texts.inp" > "$T/lc.txt" 2> /dev/null || { echo "$1: llama.cpp refuses it"; return; }
  echo "$1: $(diff "$T/pg.txt" "$T/lc.txt" | grep -c '^<' || true) of $(wc -l < "$T/lc.txt") texts differ"
  "$T/pg" "$2" "$T/texts.inp" bos > "$T/pgb.txt" 2> /dev/null
  "$T/lc" "$2" "$T/texts.inp" bos > "$T/lcb.txt" 2> /dev/null
  echo "$1: $(diff "$T/pgb.txt" "$T/lcb.txt" | grep -c '^<' || true) of $(wc -l < "$T/lcb.txt") texts differ with BOS/EOS as each adds them"
  diff "$T/pg.txt" "$T/lc.txt" | sed 's/^</  Pagoda:   /; s/^>/  llama.cpp:/' | grep -v '^---' || true
  "$T/pgp" "$2" > "$T/pgp.txt" 2> /dev/null
  "$T/lcp" "$2" > "$T/lcp.txt" 2> /dev/null
  echo "$1: $(diff "$T/pgp.txt" "$T/lcp.txt" | grep -c '^<' || true) of $(wc -l < "$T/lcp.txt") pieces differ"
}
for f in "$VOCAB"/ggml-vocab-*.gguf; do compare "$(basename "$f" .gguf)" "$f"; done
for pre in default gpt-2 llama-bpe qwen2 tekken gpt-4o deepseek-coder starcoder falcon deepseek-llm seed-coder smaug-bpe bloom viking; do
  "$T/mkvocab" "$VOCAB/ggml-vocab-gpt-2.gguf" "$T/gpt2-$pre.gguf" "$pre"
  compare "gpt-2 vocabulary, pre $pre" "$T/gpt2-$pre.gguf"
done
