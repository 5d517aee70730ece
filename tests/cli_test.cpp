// The `pagoda` command as a user runs it: output, exit codes and error messages.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include "tests/shell.h"
#include "tests/test_models.h"

namespace {

const std::string kBin = std::string(PAGODA_BINARY_DIR) + "/pagoda";
const std::string kStories = std::string(PAGODA_STORIES_GGUF);

using Run = pagoda::testing::ShellResult;

Run sh(const std::string& args) { return pagoda::testing::run_shell(kBin + " " + args); }

#define REQUIRE_MODELS() \
  if (!std::filesystem::exists(kStories)) GTEST_SKIP() << "missing " << kStories

}  // namespace

TEST(Cli, HelpListsSubcommands) {
  auto r = sh("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* s : {"run", "info", "convert", "synth", "bench"}) EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

TEST(Cli, RunGreedyPrintsKnownStoryAndSummary) {
  REQUIRE_MODELS();
  auto r = sh("run -m " + kStories + " -p 'Once upon a time' -n 30 --temp 0");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("Once upon a time, there was a little girl named Lily. She loved to play outside in the park."), std::string::npos) << r.out;
  for (const char* k : {"prompt tokens:", "generated:", "prefill:", "decode:", "TTFT:"})
    EXPECT_NE(r.out.find(k), std::string::npos) << k;
}

TEST(Cli, RunJsonIsMachineReadable) {
  REQUIRE_MODELS();
  auto r = sh("run -m " + kStories + " -p 'Once upon a time' -n 8 --temp 0 --json 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["generated_tokens"].get<int>(), 8);
  EXPECT_EQ(j["tokens"].size(), 8u);
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0);
}

TEST(Cli, PromptFromStdin) {
  REQUIRE_MODELS();
  FILE* p = popen(("printf 'Once upon a time' | " + kBin + " run -m " + kStories + " -n 5 --temp 0 --json 2>/dev/null").c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  ASSERT_EQ(pclose(p), 0);
  EXPECT_EQ(nlohmann::json::parse(out)["prompt"].get<std::string>(), "Once upon a time");
}

// A prompt from stdin or -f loses one trailing newline, as llama.cpp's -f: `echo TEXT |` and a file
// an editor saved prompt the model with TEXT, the same tokens as -p TEXT.
TEST(Cli, PromptFromStdinOrFileLosesOneTrailingNewline) {
  REQUIRE_MODELS();
  const std::string args = " -m " + kStories + " -n 6 --temp 0 --json";
  auto json_of = [](const pagoda::testing::ShellResult& r) { return nlohmann::json::parse(r.out); };
  const auto by_flag = pagoda::testing::run_shell(kBin + " run -p 'Once upon a time'" + args, false);
  ASSERT_EQ(by_flag.code, 0) << by_flag.out;
  const auto want = json_of(by_flag)["tokens"];
  const auto piped = pagoda::testing::run_shell("echo 'Once upon a time' | " + kBin + " run" + args, false);
  ASSERT_EQ(piped.code, 0) << piped.out;
  EXPECT_EQ(json_of(piped)["prompt"].get<std::string>(), "Once upon a time");
  EXPECT_EQ(json_of(piped)["tokens"], want);
  // Only one: a blank line the user typed stays.
  const auto two = pagoda::testing::run_shell("printf 'Once upon a time\\n\\n' | " + kBin + " run" + args, false);
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_EQ(json_of(two)["prompt"].get<std::string>(), "Once upon a time\n");

  const std::string file = ::testing::TempDir() + "/pagoda_prompt.txt";
  ASSERT_EQ(pagoda::testing::run_shell("printf 'Once upon a time\\n' > '" + file + "'").code, 0);
  const auto from_file = pagoda::testing::run_shell(kBin + " run -f '" + file + "'" + args, false);
  ASSERT_EQ(from_file.code, 0) << from_file.out;
  EXPECT_EQ(json_of(from_file)["prompt"].get<std::string>(), "Once upon a time");
  EXPECT_EQ(json_of(from_file)["tokens"], want);

  const auto missing = sh("run -m " + kStories + " -f /nonexistent/prompt.txt");
  EXPECT_EQ(missing.code, 1) << missing.out;
  EXPECT_NE(missing.out.find("error: prompt file: cannot open /nonexistent/prompt.txt"), std::string::npos) << missing.out;
  const auto dir = sh("run -m " + kStories + " -f '" + ::testing::TempDir() + "'");
  EXPECT_EQ(dir.code, 1) << dir.out;
  EXPECT_NE(dir.out.find("error: prompt file: cannot read "), std::string::npos) << dir.out;
  EXPECT_NE(dir.out.find(": it is a directory"), std::string::npos) << dir.out;
  const auto both = sh("run -m " + kStories + " -f '" + file + "' -p hi");
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.out.find("excludes"), std::string::npos) << both.out;
  std::filesystem::remove(file);
}

// A prompts file saved with CRLF line endings gives the same prompts as one with LF.
TEST(Cli, PromptsFileWithCrlfLineEndings) {
  REQUIRE_MODELS();
  const pagoda::testing::ScratchDir dir("crlf");
  ASSERT_EQ(pagoda::testing::run_shell("printf 'Once upon a time\\r\\n\\r\\nThe cat\\r\\n' > '" + dir / "crlf.txt" + "' && "
                                       "printf 'Once upon a time\\n\\nThe cat\\n' > '" + dir / "lf.txt" + "'").code, 0);
  auto run = [&](const std::string& file) {
    const auto r = pagoda::testing::run_shell(kBin + " run -m " + kStories + " --prompts '" + dir / file + "' -n 4 --temp 0 --json", false);
    EXPECT_EQ(r.code, 0) << r.out;
    return nlohmann::json::parse(r.out)["requests"];
  };
  const auto crlf = run("crlf.txt"), lf = run("lf.txt");
  ASSERT_EQ(crlf.size(), 2u);
  EXPECT_EQ(crlf[0]["prompt"], "Once upon a time");
  EXPECT_EQ(crlf[1]["prompt"], "The cat");
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(crlf[i]["text"], lf[i]["text"]) << i;
}

// -s is llama.cpp's spelling of --seed: the same seed samples the same tokens either way.
TEST(Cli, ShortSeedFlagIsTheSeed) {
  REQUIRE_MODELS();
  auto tokens = [](const std::string& flag) {
    const auto r = pagoda::testing::run_shell(kBin + " run -m " + kStories + " -p 'Once upon a time' -n 16 " + flag + " --json", false);
    EXPECT_EQ(r.code, 0) << r.out;
    return nlohmann::json::parse(r.out)["tokens"];
  };
  EXPECT_EQ(tokens("-s 11"), tokens("--seed 11"));
  EXPECT_EQ(tokens("-s 11"), tokens("-s 11"));
}

// -n -1, as llama.cpp's: until end of text or the context (2048 for stories260K) is full.
TEST(Cli, NPredictMinusOneRunsToTheEndOfTheContext) {
  REQUIRE_MODELS();
  const auto r = pagoda::testing::run_shell(kBin + " run -m " + kStories + " -p 'Once upon a time' -n -1 --temp 0 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  if (!j["stopped_by_eos"].get<bool>()) {
    EXPECT_EQ(j["prompt_tokens"].get<int>() + j["generated_tokens"].get<int>(), 2048) << r.out;
  }
  EXPECT_GT(j["generated_tokens"].get<int>(), 128);  // more than the default
  const auto bad = sh("run -m " + kStories + " -p hi -n -2");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("not in range"), std::string::npos) << bad.out;
}

// -c, as llama.cpp's: the sequence stops at that many tokens; a prompt that fills it is refused.
TEST(Cli, ContextSizeCapsTheRun) {
  REQUIRE_MODELS();
  const auto r = pagoda::testing::run_shell(kBin + " run -m " + kStories + " -p 'Once upon a time' -c 64 -n -1 --temp 0 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"].get<int>() + j["generated_tokens"].get<int>(), 64) << r.out;
  EXPECT_EQ(j["finish_reason"], "length");  // as OpenAI's: "stop" at end of text, "length" at a limit
  const auto full = sh("run -m " + kStories + " -p 'Once upon a time' -c 5");
  EXPECT_EQ(full.code, 1) << full.out;
  EXPECT_NE(full.out.find("the context of 5 must leave room"), std::string::npos) << full.out;
  const auto past = sh("run -m " + kStories + " -p 'Once upon a time' -c 4096");
  EXPECT_EQ(past.code, 1) << past.out;
  EXPECT_NE(past.out.find("a context of 4096 tokens exceeds the model's context of 2048"), std::string::npos) << past.out;
}

TEST(Cli, MissingModelIsErrorWithNonZeroExit) {
  auto r = sh("run -m /nonexistent.gguf -p hi");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("error: cannot open '/nonexistent.gguf'"), std::string::npos) << r.out;
}

TEST(Cli, EmptyPromptIsError) {
  REQUIRE_MODELS();
  auto r = sh("run -m " + kStories + " -p '' < /dev/null");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("empty prompt"), std::string::npos) << r.out;
}

TEST(Cli, UnknownBackendIsError) {
  REQUIRE_MODELS();
  auto r = sh("run -m " + kStories + " -p hi --backend tpu");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("unknown backend 'tpu'"), std::string::npos) << r.out;
}

TEST(Cli, BadOptionValueIsUsageError) {
  auto r = sh("run -n banana");
  EXPECT_EQ(r.code, 2) << r.out;
}

TEST(Cli, InfoShowsCapacityEquation) {
  REQUIRE_MODELS();
  auto r = sh("info " + kStories);
  EXPECT_EQ(r.code, 0) << r.out;
  // 2 x 5 layers x 4 kv heads x 8 head dim x 4 bytes = 1280
  EXPECT_NE(r.out.find("= 1280 (f32)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blk.0.attn_q.weight"), std::string::npos);
}

TEST(Cli, InfoOnNonGgufFails) {
  REQUIRE_FILES(std::string(PAGODA_MODELS_DIR) + "/tok512.bin");
  auto r = sh("info " + std::string(PAGODA_MODELS_DIR) + "/tok512.bin");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("bad magic"), std::string::npos) << r.out;
}

TEST(Cli, AutoBackendSaysWhatItChose) {
  REQUIRE_MODELS();
  auto r = sh("run -m " + kStories + " -p hi -n 2 --temp 0 --backend auto");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("backend: "), std::string::npos) << r.out;
  // Without a real GPU it must say it fell back; with one it names the GPU backend.
  const bool fell_back = r.out.find("falling back to cpu") != std::string::npos;
  const bool gpu = r.out.find("backend: cuda") != std::string::npos || r.out.find("backend: vulkan") != std::string::npos;
  EXPECT_TRUE(fell_back || gpu) << r.out;
}

// Without -m, the default model that ships in models/ is found from any working directory (CTest
// runs commands from build/tests, users from the repo root or elsewhere), with no ../shared needed.
TEST(Cli, DefaultModelShipsWithTheRepoAndIsFoundFromAnyWorkingDirectory) {
  for (const std::string& dir : {std::string("/"), std::string(PAGODA_BINARY_DIR), std::string(PAGODA_BINARY_DIR) + "/.."}) {
    const auto r = pagoda::testing::run_shell("cd '" + dir + "' && " + kBin + " run -p 'Once upon a time' -n 24 --temp 0 2>&1");
    ASSERT_EQ(r.code, 0) << dir << ": " << r.out;
    EXPECT_NE(r.out.find("Once upon a time, there was a little girl named Lily"), std::string::npos) << dir << ": " << r.out;
  }
}

TEST(Cli, ConformanceRunsOnEveryBackendAndPasses) {
  REQUIRE_MODELS();
  auto r = sh("conformance -m " + kStories + " -n 16 --json 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_FALSE(j.empty());
  for (const auto& b : j) {
    if (b.value("status", "") == "skip") continue;
    ASSERT_TRUE(b.contains("ops") && b.contains("model")) << b.dump();
    for (const auto& op : b["ops"]) EXPECT_NE(op["status"], "fail") << b["backend"] << " " << op.dump();
    ASSERT_EQ(b["model"].size(), 2u) << "one F32 and one F16 KV model check per backend";
    for (const auto& m : b["model"]) {
      if (m["kv"] == "f32") {
        EXPECT_TRUE(m["greedy_identical"].get<bool>()) << b["backend"];
      }
    }
  }
}

// Settings that used to crash (SIGSEGV in ~Engine after a failed create, abort on a huge thread
// count) or were silently ignored (--kv-dtype with --prompts) are clear errors with exit code 1.
TEST(Cli, BadEngineSettingsAreClearErrorsNotCrashes) {
  REQUIRE_MODELS();
  const std::string prompts = std::filesystem::temp_directory_path() / "pagoda_cli_bad_settings.txt";
  { FILE* f = std::fopen(prompts.c_str(), "w"); std::fputs("Once upon a time\n", f); std::fclose(f); }
  const std::string m = "-m " + kStories + " ";
  struct Case { std::string args, says; };
  const std::vector<Case> cases = {
      {"run " + m + "--prompts " + prompts + " -n 2 --kv-memory 0", "holds no KV block"},
      {"run " + m + "-p hi -n 2 --kv-memory 0", "holds no KV block"},
      {"serve " + m + "--kv-memory 0 --port 0", "holds no KV block"},
      {"run " + m + "--prompts " + prompts + " -n 2 --kv-dtype q8", "f32 or f16"},
      {"run " + m + "-p hi -n 2 -t 100000", "threads"},
      {"run " + m + "-p hi -n 2 --kv-memory 90%", "does not report"},
  };
  for (const auto& c : cases) {
    auto r = pagoda::testing::run_shell("timeout 60 " + kBin + " " + c.args + " </dev/null");
    EXPECT_EQ(r.code, 1) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << "\n" << r.out;
  }
  std::filesystem::remove(prompts);
}

// Every command that builds an engine registers its flags through apps/engine_options and checks
// them once: a bad value is the same clear error (exit 1) from each, before any model is opened
// (the model path does not exist, so an error about it would mean the check came too late).
TEST(Cli, EveryEngineCommandRejectsABadEngineValueWithTheSameError) {
  const bool inspect = sh("--help").out.find("\n  inspect ") != std::string::npos;  // built with the UI only
  const std::string m = "-m /nonexistent/model.gguf ";
  struct Case {
    std::string flag, says;
    std::vector<std::string> commands;
  };
  std::vector<Case> cases = {
      {"--kv-dtype q9", "error: --kv-dtype must be f32 or f16 (got 'q9')", {"run -p hi", "serve --port 0", "bench decode"}},
      {"--block-size 0", "error: --block-size must be in 1..1024 (got 0)", {"run -p hi", "serve --port 0"}},
      {"--max-running 0", "error: --max-running must be in 1..65536 (got 0)",
       {"run -p hi", "serve --port 0", "bench mixed", "bench overload"}},
      {"--max-waiting 0", "error: --max-waiting must be in 1..1048576 (got 0)", {"run -p hi", "serve --port 0", "bench overload"}},
      {"--kv-memory 1.2.3MiB", "error: --kv-memory: invalid size '1.2.3MiB'", {"run -p hi", "serve --port 0", "chat"}},
      {"--ngram 17", "error: --ngram must be in 0..16 (got 17)", {"run -p hi", "serve --port 0"}},
      {"--spec-k 0", "error: --spec-k must be 1..16 or auto", {"run -p hi", "serve --port 0"}},
      {"--ctx-size -5", "error: -c/--ctx-size must be in 0..16777216 (got -5)", {"run -p hi", "serve --port 0", "chat"}},
      {"-t 100000", "error: -t/--threads", {"run -p hi", "serve --port 0", "chat", "bench decode"}},
  };
  if (inspect) {
    cases[1].commands.push_back("inspect");
    cases[2].commands.push_back("inspect");
    cases[5].commands.push_back("inspect");
  }
  for (const auto& c : cases)
    for (const auto& cmd : c.commands) {
      auto r = pagoda::testing::run_shell("timeout 60 " + kBin + " " + cmd + " " + m + c.flag + " </dev/null 2>&1");
      EXPECT_EQ(r.code, 1) << cmd << " " << c.flag << "\n" << r.out;
      EXPECT_NE(r.out.find(c.says), std::string::npos) << cmd << " " << c.flag << "\n" << r.out;
      EXPECT_EQ(r.out.find("nonexistent"), std::string::npos) << cmd << " " << c.flag << " opened the model first:\n" << r.out;
    }
}
