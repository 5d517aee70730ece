#include "apps/cli_common.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backends/cpu/cpu_backend.h"

namespace pagoda::cli {

void add_backend_flags(CLI::App* app, std::string& backend, int& device, int& threads) {
  app->add_option("--backend", backend, "Backend: cpu, cpu-ref, vulkan, cuda, auto")->capture_default_str();
  app->add_option("--device", device, "GPU device index (default: best available)");
  app->add_option("-t,--threads", threads, "CPU threads (default: all cores)");
}

void add_backend_options(CLI::App* app, BackendOptions& o) { add_backend_flags(app, o.backend, o.device, o.threads); }

Result<BackendPtr> open_backend(const BackendOptions& o, bool quiet) {
  if (auto st = check_cpu_threads(o.threads); !st) return make_error("-t/--threads: " + st.error());
  if (o.backend == "cpu" && o.threads > 0) return BackendPtr(std::make_unique<CpuBackend>(CpuOptions{.threads = o.threads}));
  std::string note;
  auto be = create_backend(o.backend, o.device, &note);
  if (!be) return be.take_error();
  if (!quiet) {
    if (!note.empty()) fmt::print(stderr, "note: {}\n", note);
    const auto info = (*be)->info();
    fmt::print(stderr, "backend: {} on {}\n", info.name, info.device);
  }
  return be;
}

Result<std::unique_ptr<LoadedModel>> load_model(const std::string& path, Backend& be, bool quiet, DigestAt digest) {
  const bool bar = !quiet && isatty(STDERR_FILENO);
  int last = -1;
  auto progress = [&](uint64_t done, uint64_t total) {
    if (!bar || total < (64ull << 20)) return;
    const int pct = int(done * 100 / total);
    if (pct == last) return;
    last = pct;
    const int w = 40, fill = pct * w / 100;
    fmt::print(stderr, "\rloading [{}{}] {:3d}% {:.0f}/{:.0f} MiB", std::string(size_t(fill), '#'),
               std::string(size_t(w - fill), ' '), pct, double(done) / (1 << 20), double(total) / (1 << 20));
    if (done == total) fmt::print(stderr, "\n");
  };
  LoadOptions opt;
  opt.digest = digest;
  return LoadedModel::load(path, be, progress, opt);
}

Result<uint64_t> parse_size(const std::string& s) {
  const std::string examples = " (examples: 512MiB, 2GiB, 1.5GiB, 1048576)";
  // Digits with at most one decimal point, then a unit: "1.2.3MiB" and ".MiB" are not sizes.
  size_t i = 0, digits = 0, dots = 0;
  for (; i < s.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(s[i]))) ++digits;
    else if (s[i] == '.') ++dots;
    else break;
  }
  if (digits == 0 || dots > 1) return make_error("invalid size '" + s + "'" + examples);
  const double v = std::strtod(s.substr(0, i).c_str(), nullptr);
  std::string unit = s.substr(i);
  for (auto& c : unit) c = char(std::tolower(static_cast<unsigned char>(c)));
  double mul = 1;
  if (unit == "" || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kib" || unit == "kb") mul = 1024.0;
  else if (unit == "m" || unit == "mib" || unit == "mb") mul = 1024.0 * 1024;
  else if (unit == "g" || unit == "gib" || unit == "gb") mul = 1024.0 * 1024 * 1024;
  else return make_error("invalid size unit in '" + s + "' (use KiB, MiB or GiB)");
  // 2^64 is exactly representable; anything at or past it would wrap in the conversion.
  if (!(v * mul < 18446744073709551616.0)) return make_error("size '" + s + "' is too large (over 2^64 bytes)");
  return uint64_t(v * mul);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> v;
  size_t p = 0;
  while (p <= s.size()) {
    const size_t q = std::min(s.find(',', p), s.size());
    v.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  return v;
}

Result<std::vector<double>> parse_numbers(const std::string& s, const std::string& flag) {
  std::vector<double> v;
  for (const std::string& item : split_commas(s)) {
    size_t used = 0;
    double x = 0;
    try { x = std::stod(item, &used); } catch (...) { used = 0; }
    if (used == 0 || used != item.size() || !std::isfinite(x))
      return make_error(flag + " must be a number or comma-separated numbers (got '" + s + "')");
    v.push_back(x);
  }
  return v;
}

Result<std::vector<int32_t>> parse_ints(const std::string& s, const std::string& flag, int32_t min) {
  auto nums = parse_numbers(s, flag);
  const std::string want = flag + " must be comma-separated integers >= " + std::to_string(min) + " (got '" + s + "')";
  if (!nums) return make_error(want);
  std::vector<int32_t> v;
  for (double x : *nums) {
    if (x != std::floor(x) || x < double(min) || x > double(INT32_MAX)) return make_error(want);
    v.push_back(int32_t(x));
  }
  return v;
}

std::string without_final_newline(std::string text) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

std::string default_model_path() {
  // The default model ships in the repository (models/). Look for it from the working directory
  // first (README commands run from the repo root), then in the ancestors of the executable
  // (build/pagoda -> models/), so `pagoda` run from anywhere finds the same file.
  const std::string rel = "models/stories260K.gguf";
  if (std::filesystem::exists(rel)) return rel;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (auto dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path())
      if (std::filesystem::exists(dir / rel)) return (dir / rel).lexically_normal().string();
  return rel;
}

int fail(const std::string& msg) {
  fmt::print(stderr, "error: {}\n", msg);
  return 1;
}

}  // namespace pagoda::cli
