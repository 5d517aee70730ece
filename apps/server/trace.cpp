#include "apps/server/trace.h"

#include <fmt/core.h>

#include <memory>
#include <random>

namespace pagoda::server {
namespace {

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;  // the spec asks for lowercase
  return true;
}

bool all_zero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

std::string random_hex(size_t digits) {
  thread_local std::mt19937_64 rng{(uint64_t(std::random_device{}()) << 32) ^ std::random_device{}()};
  std::string out;
  while (out.size() < digits) out += fmt::format("{:016x}", rng());
  out.resize(digits);
  if (all_zero(out)) out.back() = '1';  // an all-zero id is invalid
  return out;
}

}  // namespace

std::string TraceContext::header() const { return fmt::format("00-{}-{}-{:02x}", trace_id, span_id, flags); }

std::optional<TraceContext> parse_traceparent(std::string_view v) {
  // Leading and trailing blanks are allowed around a header value.
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  // version(2) - trace-id(32) - parent-id(16) - flags(2); a later version may append fields after
  // another dash, version 00 may not; version ff is invalid.
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const std::string_view version = v.substr(0, 2), trace = v.substr(3, 32), parent = v.substr(36, 16), flags = v.substr(53, 2);
  if (!is_hex(version) || version == "ff" || !is_hex(trace) || !is_hex(parent) || !is_hex(flags)) return std::nullopt;
  if (version == "00" ? v.size() != 55 : (v.size() > 55 && v[55] != '-')) return std::nullopt;
  if (all_zero(trace) || all_zero(parent)) return std::nullopt;
  TraceContext t;
  t.trace_id = std::string(trace);
  t.flags = uint8_t(std::stoi(std::string(flags), nullptr, 16));
  t.from_caller = true;
  return t;
}

TraceContext trace_for(std::string_view header) {
  TraceContext t;
  if (auto p = parse_traceparent(header)) t = std::move(*p);
  else t.trace_id = random_hex(32);
  t.span_id = random_hex(16);
  return t;
}

Result<std::unique_ptr<AccessLog>> AccessLog::open(const std::string& where) {
  if (where.empty()) return make_error("access-log: no file named (use - for standard output)");
  if (where == "-") return std::unique_ptr<AccessLog>(new AccessLog(stdout, false));
  std::FILE* f = std::fopen(where.c_str(), "a");
  if (!f) return make_error("access-log: cannot open '" + where + "' for appending");
  return std::unique_ptr<AccessLog>(new AccessLog(f, true));
}

AccessLog::~AccessLog() {
  if (owned_ && f_) std::fclose(f_);
}

void AccessLog::write(const nlohmann::json& line) {
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lk(mu_);
  std::fwrite(text.data(), 1, text.size(), f_);
  std::fflush(f_);
}

}  // namespace pagoda::server
