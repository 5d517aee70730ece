// The real model the tests run on, loaded once per test binary and shared by its tests, on any
// backend. A test that cannot have it (file missing, no such backend on this machine) skips and
// says which.
#pragma once
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <string>

#include "backends/backend.h"
#include "core/model/loaded_model.h"

namespace pagoda::testing {

// The repository's own models/stories260K.gguf (PAGODA_STORIES_GGUF): present in every clone.
const std::string& stories260K_path();

struct LoadedOn {
  BackendPtr be;
  std::unique_ptr<LoadedModel> m;
  std::string why;  // empty: usable; else why not (for GTEST_SKIP)
};

// stories260K on `backend` ("cpu", "cpu-ref", "vulkan", "cuda"), loaded on first use.
LoadedOn& stories260K_on(const std::string& backend);

// Those of `paths` that do not exist, each after a space ("" when all do): files of ../shared.
inline std::string missing_files(std::initializer_list<std::string> paths) {
  std::string missing;
  for (const auto& p : paths)
    if (!std::filesystem::exists(p)) missing += " " + p;
  return missing;
}

}  // namespace pagoda::testing

// Binds `var` to stories260K on `backend`, or skips the test saying why it cannot run.
#define REQUIRE_STORIES_ON(var, backend)                                      \
  ::pagoda::testing::LoadedOn& var = ::pagoda::testing::stories260K_on(backend); \
  if (!var.why.empty()) GTEST_SKIP() << var.why

// Skips the test, naming the files, unless every one of them exists.
#define REQUIRE_FILES(...)                                                              \
  if (const std::string missing_ = ::pagoda::testing::missing_files({__VA_ARGS__}); !missing_.empty()) \
  GTEST_SKIP() << "missing" << missing_
