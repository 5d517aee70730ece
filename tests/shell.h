// Runs a shell command the way a user would and captures what it printed (tests of the `pagoda`
// command and its subcommands).
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace pagoda::testing {

struct ShellResult {
  int code = 0;     // exit status, -1 when the command did not exit normally
  std::string out;  // stdout, plus stderr unless it was sent elsewhere
};

// `merge_stderr` false drops stderr, so stdout alone can be parsed (JSON).
inline ShellResult run_shell(const std::string& cmd, bool merge_stderr = true) {
  ShellResult r;
  FILE* p = popen((cmd + (merge_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::array<char, 4096> buf;
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace pagoda::testing
