// `pagoda chat` with its input from a file on stdin: turns, /save, /reset, /help, multi-line
// input, the speed line, and errors, as a script or a pipe would drive it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include <unistd.h>

#include "tests/shell.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kBin = std::string(PAGODA_BINARY_DIR) + "/pagoda";
const std::string kStories = std::string(PAGODA_STORIES_GGUF);

struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() / ("pagoda_chat_cli_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }
};

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str(), nullptr, false);
}

pagoda::testing::ShellResult chat(const std::string& args, const std::string& input_file, bool merge_stderr = true) {
  return pagoda::testing::run_shell(kBin + " chat -m " + kStories + " --temp 0 -n 16 " + args + " < " + input_file, merge_stderr);
}

// "[N tokens | X tok/s | TTFT Y ms | prompt P tokens, C cached]" lines, as (N, C).
std::vector<std::pair<int, int>> speed_lines(const std::string& out) {
  std::vector<std::pair<int, int>> v;
  const std::regex re(R"(\[(\d+) tokens \| [0-9.]+ tok/s \| TTFT [0-9.]+ ms \| prompt \d+ tokens, (\d+) cached\])");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator(); ++it)
    v.emplace_back(std::stoi((*it)[1]), std::stoi((*it)[2]));
  return v;
}

#define REQUIRE_MODELS() \
  if (!fs::exists(kStories)) GTEST_SKIP() << "missing " << kStories

TEST(ChatCli, TurnsSaveResetAndSpeedLines) {
  REQUIRE_MODELS();
  Scratch s;
  const std::string saved = s.path("one.json"), after_reset = s.path("two.json");
  const std::string in = s.write("in.txt", "Tell me about a cat.\nAnd a dog?\n/save " + saved + "\n/reset\n/help\n/save " +
                                               after_reset + "\nHello\n");
  const auto r = chat("--system 'You tell short stories.'", in);
  ASSERT_EQ(r.code, 0) << r.out;
  const json one = read_json(saved);
  ASSERT_TRUE(one.is_array()) << r.out;
  ASSERT_EQ(one.size(), 5u) << one.dump();
  EXPECT_EQ(one[0], (nlohmann::json{{"role", "system"}, {"content", "You tell short stories."}}));
  EXPECT_EQ(one[1]["content"], "Tell me about a cat.");
  EXPECT_EQ(one[2]["role"], "assistant");
  EXPECT_EQ(one[3]["content"], "And a dog?");
  EXPECT_FALSE(one[4]["content"].get<std::string>().empty());
  // The answers were streamed to stdout.
  EXPECT_NE(r.out.find(one[2]["content"].get<std::string>()), std::string::npos) << r.out;
  const json two = read_json(after_reset);
  ASSERT_EQ(two.size(), 1u) << two.dump();  // /reset keeps only the system prompt
  EXPECT_NE(r.out.find("/reset"), std::string::npos);  // /help listed the commands
  const auto lines = speed_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  for (const auto& [n, cached] : lines) EXPECT_GT(n, 0);
  EXPECT_GT(lines[1].second, 0) << "the second turn extends the first, so its prompt prefix is cached";
}

TEST(ChatCli, GreedyAnswersRepeatAndMultiLineInputJoins) {
  REQUIRE_MODELS();
  Scratch s;
  const std::string a = s.path("a.json"), b = s.path("b.json");
  const auto r1 = chat("", s.write("in1.txt", "Once upon a time \\\nthere was\n/save " + a + "\n"));
  const auto r2 = chat("", s.write("in2.txt", "Once upon a time \\\nthere was\n/save " + b + "\n/quit\nnot sent\n"));
  ASSERT_EQ(r1.code, 0) << r1.out;
  ASSERT_EQ(r2.code, 0) << r2.out;
  const json ja = read_json(a), jb = read_json(b);
  ASSERT_EQ(ja.size(), 2u);
  EXPECT_EQ(ja[0]["content"], "Once upon a time \nthere was");
  EXPECT_EQ(ja, jb);  // temperature 0
  EXPECT_EQ(speed_lines(r2.out).size(), 1u);  // nothing after /quit
}

TEST(ChatCli, MistakesAreReportedAndFailAPipedRun) {
  REQUIRE_MODELS();
  Scratch s;
  auto r = chat("", s.write("in.txt", "/frobnicate\n/save\n/save   \nHello\n"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("unknown command /frobnicate"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/save needs a file name"), std::string::npos) << r.out;
  EXPECT_EQ(speed_lines(r.out).size(), 1u);  // the turn after the mistakes still ran
  auto empty = chat("", s.write("empty.txt", ""));
  EXPECT_EQ(empty.code, 0) << empty.out;
  auto missing = pagoda::testing::run_shell(kBin + " chat -m /nonexistent.gguf < /dev/null");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("error:"), std::string::npos) << missing.out;
}

}  // namespace
