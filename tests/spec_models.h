// The speculation tests' model pair: stories260K as the target and llama2xs-260K (converted from
// llama2.c's .bin once per test binary) as the draft. Missing files skip the tests that need them;
// files that exist but do not load (or convert) are a failure, recorded in `error`, never a skip.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "backends/cpu/cpu_backend.h"
#include "core/model/llama2c_import.h"
#include "core/model/loaded_model.h"

namespace pagoda::testing {

struct SpecModels {
  CpuBackend be;
  std::unique_ptr<LoadedModel> target, draft;
  std::string draft_path, missing, error;
  // `tag` names the converted draft's temporary file, so test binaries running at once do not share it.
  SpecModels(CpuOptions opt, const std::string& tag) : be(opt) {
    const std::string dir = PAGODA_MODELS_DIR, stories = PAGODA_STORIES_GGUF;
    for (const std::string& f : {stories, dir + "/llama2xs-260K.bin", dir + "/tok512.bin"})
      if (!std::filesystem::exists(f)) missing += " " + f;
    if (!missing.empty()) return;
    auto t = LoadedModel::load(stories, be);
    if (!t) {
      error = stories + ": " + t.error();
      return;
    }
    target = std::move(*t);
    draft_path = (std::filesystem::temp_directory_path() / ("pagoda_" + tag + "_xs_" + std::to_string(getpid()) + ".gguf")).string();
    if (auto st = import_llama2c({dir + "/llama2xs-260K.bin", dir + "/tok512.bin", draft_path, ""}); !st) {
      error = "converting llama2xs-260K.bin: " + st.error();
      return;
    }
    auto d = LoadedModel::load(draft_path, be);
    if (!d) {
      error = draft_path + ": " + d.error();
      return;
    }
    draft = std::move(*d);
  }
  ~SpecModels() {
    if (!draft_path.empty()) std::filesystem::remove(draft_path);
  }
};

}  // namespace pagoda::testing

// Skips when the model files are missing; fails when they exist but did not load.
#define REQUIRE_SPEC_MODELS(e)                                        \
  if (!(e).missing.empty()) GTEST_SKIP() << "missing" << (e).missing; \
  ASSERT_TRUE((e).error.empty()) << "models exist but do not load: " << (e).error
