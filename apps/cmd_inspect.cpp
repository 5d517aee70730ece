// `pagoda inspect`: placeholder until the inspector lands.
#include "apps/cli_common.h"

namespace pagoda::cli {
void register_inspect(CLI::App& app) {}
}  // namespace pagoda::cli
