// Temporary command-line driver for run_grammar_bench until `pagoda bench grammar` is wired:
//   grammar_bench_driver [--json] [--repeats N] [--vocab FILE.gguf]
#include <cstdlib>
#include <string>

#include "apps/bench_grammar.h"

int main(int argc, char** argv) {
  pagoda::cli::GrammarBenchOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") o.json = true;
    else if (a == "--repeats" && i + 1 < argc) o.repeats = std::atoi(argv[++i]);
    else if (a == "--vocab" && i + 1 < argc) o.vocab = argv[++i];
    else return 2;
  }
  return pagoda::cli::run_grammar_bench(o);
}
