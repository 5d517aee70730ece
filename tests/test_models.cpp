#include "tests/test_models.h"

#include <filesystem>
#include <map>

namespace pagoda::testing {

const std::string& stories260K_path() {
  static const std::string p = PAGODA_STORIES_GGUF;
  return p;
}

LoadedOn& stories260K_on(const std::string& backend) {
  static std::map<std::string, LoadedOn> cache;
  auto it = cache.find(backend);
  if (it != cache.end()) return it->second;
  LoadedOn& l = cache[backend];
  const std::string& path = stories260K_path();
  if (!std::filesystem::exists(path)) {
    l.why = "missing " + path;
    return l;
  }
  auto be = create_backend(backend);
  if (!be) {
    l.why = "no " + backend + " backend here: " + be.error();
    return l;
  }
  l.be = std::move(*be);
  auto m = LoadedModel::load(path, *l.be);
  if (!m) {
    l.why = "loading " + path + " on " + backend + ": " + m.error();
    return l;
  }
  l.m = std::move(*m);
  return l;
}

}  // namespace pagoda::testing
