// `pagoda`: the command-line front end. Each subcommand lives in its own file and only parses,
// calls into core/, and prints; all logic is in libraries the tests reach.
#include <CLI/CLI.hpp>

#include "apps/cli_common.h"

int main(int argc, char** argv) {
  CLI::App app{"Pagoda: an LLM inference engine you can watch (paged KV, prefix reuse, speculative decoding)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "pagoda 0.1.0");
  pagoda::cli::register_run(app);
  pagoda::cli::register_info(app);
  pagoda::cli::register_convert(app);
  pagoda::cli::register_bench(app);
  pagoda::cli::register_serve(app);
  pagoda::cli::register_conformance(app);
  pagoda::cli::register_template(app);
  pagoda::cli::register_eval(app);
  pagoda::cli::register_perplexity(app);
  pagoda::cli::register_quantize(app);
  pagoda::cli::register_chat(app);
#ifdef PAGODA_HAVE_UI
  pagoda::cli::register_inspect(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a subcommand failed and already said why
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return 0;
}
