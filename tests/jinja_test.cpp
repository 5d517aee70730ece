// Chat-template interpreter tests: every real template in shared/chat-templates rendered with every
// conversation and compared byte for byte with Jinja2's output, plus focused interpreter cases.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/chat/template.h"

#ifndef PAGODA_CHAT_TEMPLATES_DIR
#define PAGODA_CHAT_TEMPLATES_DIR "../shared/chat-templates"
#endif

namespace pagoda {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// render.py pins strftime_now to 2024-07-26 12:00:00.
ChatRenderOptions fixture_options() {
  ChatRenderOptions o;
  std::tm t{};
  t.tm_year = 124;
  t.tm_mon = 6;
  t.tm_mday = 26;
  t.tm_hour = 12;
  t.tm_wday = 5;
  t.tm_yday = 207;
  o.now = t;
  return o;
}

// The first place two strings differ, with some context, for a readable failure.
std::string first_difference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t from = i > 40 ? i - 40 : 0;
  return "at byte " + std::to_string(i) + "\n  want: " + ojson(want.substr(from, 120)).dump() +
         "\n  got:  " + ojson(got.substr(from, 120)).dump();
}

TEST(ChatTemplateCorpus, EveryTemplateMatchesJinja2OnEveryConversation) {
  const fs::path root = PAGODA_CHAT_TEMPLATES_DIR;
  if (!fs::exists(root / "templates")) GTEST_SKIP() << "no " << root;
  std::vector<fs::path> templates, convs;
  for (const auto& e : fs::directory_iterator(root / "templates")) templates.push_back(e.path());
  for (const auto& e : fs::directory_iterator(root / "conversations")) convs.push_back(e.path());
  std::sort(templates.begin(), templates.end());
  std::sort(convs.begin(), convs.end());
  int total = 0, passed = 0;
  for (const auto& tp : templates) {
    auto t = ChatTemplate::parse(slurp(tp));
    for (const auto& cp : convs) {
      const fs::path want_path = root / "expected" / tp.stem() / (cp.stem().string() + ".txt");
      if (!fs::exists(want_path)) continue;
      ++total;
      const std::string want = slurp(want_path);
      const std::string name = tp.stem().string() + " / " + cp.stem().string();
      if (!t) {
        if (want.rfind("ERROR: ", 0) == 0) ++passed;
        else ADD_FAILURE() << name << ": " << t.error();
        continue;
      }
      auto got = t->render(ojson::parse(slurp(cp)), fixture_options());
      if (want.rfind("ERROR: ", 0) == 0) {
        if (!got) ++passed;
        else ADD_FAILURE() << name << ": Jinja2 refuses (" << want << ") but we rendered";
      } else if (!got) {
        ADD_FAILURE() << name << ": " << got.error();
      } else if (*got != want) {
        ADD_FAILURE() << name << ": output differs " << first_difference(want, *got);
      } else {
        ++passed;
      }
    }
  }
  std::printf("chat-template corpus: %d of %d renders match Jinja2\n", passed, total);
  EXPECT_EQ(passed, total);
  EXPECT_GE(total, 280);
}

}  // namespace
}  // namespace pagoda
