// `pagoda serve`: placeholder until the server lands.
#include "apps/cli_common.h"

namespace pagoda::cli {
void register_serve(CLI::App& app) {}
}  // namespace pagoda::cli
