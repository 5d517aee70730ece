#include "core/util/file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace pagoda {

Result<std::string> read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return make_error("cannot read " + path + ": it is a directory");
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return make_error("cannot read " + path);
  return ss.str();
}

}  // namespace pagoda
