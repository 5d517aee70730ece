#include "apps/server/auth.h"

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace pagoda::server {
namespace {

bool equal_ct(std::string_view a, std::string_view b) {
  unsigned diff = a.size() != b.size() ? 1u : 0u;
  for (size_t i = 0; i < b.size(); ++i) diff |= unsigned(uint8_t(b[i]) ^ (i < a.size() ? uint8_t(a[i]) : 0u));
  return diff == 0;
}

bool has_space(const std::string& s) { return s.find_first_of(" \t\r\n") != std::string::npos; }

Result<ApiKeys> parse_json_keys(const nlohmann::json& j) {
  ApiKeys keys;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (!v.is_string()) return make_error("api keys: the tenant of every key must be a string");
      PAGODA_TRY(keys.add(k, v.get<std::string>()));
    }
  } else if (j.is_array()) {
    for (const auto& e : j) {
      if (!e.is_object() || !e.contains("key") || !e.contains("tenant") || !e["key"].is_string() || !e["tenant"].is_string())
        return make_error("api keys: array entries must be {\"key\": string, \"tenant\": string}");
      PAGODA_TRY(keys.add(e["key"].get<std::string>(), e["tenant"].get<std::string>()));
    }
  } else {
    return make_error("api keys: JSON must be an object of key -> tenant or an array of {key, tenant}");
  }
  return keys;
}

Result<ApiKeys> parse_lines(const std::string& text) {
  ApiKeys keys;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::string key, tenant, extra;
    if (!(ls >> key)) continue;  // blank or comment-only line
    if (!(ls >> tenant) || (ls >> extra))
      return make_error("api keys: line " + std::to_string(n) + " must be 'KEY TENANT'");
    PAGODA_TRY(keys.add(key, tenant));
  }
  return keys;
}

}  // namespace

Status ApiKeys::add(std::string key, std::string tenant) {
  if (key.empty() || has_space(key)) return make_error("api keys: a key must be non-empty and without spaces");
  if (tenant.empty()) return make_error("api keys: the tenant of a key must not be empty");
  for (const auto& [k, t] : entries_)
    if (k == key) return make_error("api keys: a key is listed twice");  // never print keys
  entries_.emplace_back(std::move(key), std::move(tenant));
  return {};
}

std::optional<std::string> ApiKeys::tenant_of(std::string_view key) const {
  const std::string* found = nullptr;
  for (const auto& [k, t] : entries_)
    if (equal_ct(key, k) && !found) found = &t;
  if (!found || key.empty()) return std::nullopt;
  return *found;
}

Result<ApiKeys> ApiKeys::parse(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (text[first] == '{' || text[first] == '[')) {
    try {
      return parse_json_keys(nlohmann::json::parse(text));
    } catch (const nlohmann::json::exception& e) {
      return make_error(std::string("api keys: malformed JSON: ") + e.what());
    }
  }
  return parse_lines(text);
}

Result<ApiKeys> ApiKeys::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error("api keys: cannot open '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  auto keys = parse(ss.str());
  if (!keys) return make_error(keys.error() + " (in '" + path + "')");
  if (keys->empty()) return make_error("api keys: '" + path + "' lists no keys");
  return keys;
}

std::string bearer_token(std::string_view h) {
  constexpr std::string_view kScheme = "Bearer ";
  if (h.size() <= kScheme.size()) return "";
  for (size_t i = 0; i < kScheme.size(); ++i)  // the scheme name is case-insensitive (RFC 7235)
    if (std::tolower(uint8_t(h[i])) != std::tolower(uint8_t(kScheme[i]))) return "";
  std::string_view k = h.substr(kScheme.size());
  while (!k.empty() && (k.front() == ' ' || k.front() == '\t')) k.remove_prefix(1);
  while (!k.empty() && (k.back() == ' ' || k.back() == '\t')) k.remove_suffix(1);
  return std::string(k);
}

}  // namespace pagoda::server
