// `pagoda bench grammar`: time to compute a structured-output token mask over a whole vocabulary
// (Llama 2's 32,000 tokens by default), per mask, at every token position of sample documents.
#pragma once
#include <string>

namespace pagoda::cli {

struct GrammarBenchOptions {
  std::string vocab;  // GGUF whose tokenizer gives the vocabulary; empty: the shared Llama 2 vocab
  int repeats = 5;    // cold measurements per token position
  bool json = false;  // print one JSON object instead of the table
};

// Prints median and p99 microseconds per mask for each sample schema, in three regimes: cold (first
// mask of a state on a fresh matcher), generation (masks while walking the document, caches as
// they fill), cached (the same state masked again). Returns a process exit code.
int run_grammar_bench(const GrammarBenchOptions& o);

}  // namespace pagoda::cli
