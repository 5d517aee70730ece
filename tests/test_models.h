// The real model the tests run on, loaded once per test binary and shared by its tests, on any
// backend. A test that cannot have it (file missing, no such backend on this machine) skips and
// says which.
#pragma once
#include <atomic>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <string>
#include <system_error>

#include <unistd.h>

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

// A fresh directory under the temporary directory, removed with everything in it when this goes
// (a skip or a failed ASSERT included): a test's files neither outlive it nor meet another test
// binary's running at the same time.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    static std::atomic<int> n{0};
    path_ = std::filesystem::temp_directory_path() /
            ("pagoda_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  // `name` inside the directory.
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace pagoda::testing

// Binds `var` to stories260K on `backend`, or skips the test saying why it cannot run.
#define REQUIRE_STORIES_ON(var, backend)                                      \
  ::pagoda::testing::LoadedOn& var = ::pagoda::testing::stories260K_on(backend); \
  if (!var.why.empty()) GTEST_SKIP() << var.why

// Skips the test, naming the files, unless every one of them exists.
#define REQUIRE_FILES(...)                                                              \
  if (const std::string missing_ = ::pagoda::testing::missing_files({__VA_ARGS__}); !missing_.empty()) \
  GTEST_SKIP() << "missing" << missing_
