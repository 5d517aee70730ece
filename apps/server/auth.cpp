#include "apps/server/auth.h"

#include <fmt/core.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/server/request_parse.h"
#include "core/util/file.h"

namespace pagoda::server {
namespace {

// Spaces separate the fields of the text format; control characters (NUL above all) never
// belong in a key a client can send in a header.
bool bad_key_char(char c) { return uint8_t(c) <= 0x20 || uint8_t(c) == 0x7f; }

Status set_option(Principal& p, bool& prio_set, std::string_view name, const nlohmann::json& v) {
  if (name == "role") {
    if (!v.is_string()) return make_error("api keys: 'role' must be a string (admin or tenant)");
    auto r = parse_role(v.get<std::string>());
    if (!r) return r.take_error();
    p.role = *r;
  } else if (name == "max_priority") {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxPriority)
      return make_error(fmt::format("api keys: 'max_priority' must be an integer in 0..{}", kMaxPriority));
    p.max_priority = int32_t(v.get<int64_t>());
    prio_set = true;
  } else {
    return make_error(fmt::format("api keys: unknown field '{}' (fields: key, tenant, role, max_priority)", name));
  }
  return {};
}

// An object with "tenant" and optional "role" / "max_priority" (and "key" when `key_field`).
Result<std::pair<std::string, Principal>> entry_of(const nlohmann::json& e, bool key_field) {
  std::pair<std::string, Principal> out;
  bool prio_set = false, has_tenant = false, has_key = false;
  for (const auto& [name, v] : e.items()) {
    if (name == "tenant" || (key_field && name == "key")) {
      if (!v.is_string()) return make_error(fmt::format("api keys: '{}' must be a string", name));
      (name == "tenant" ? out.second.tenant : out.first) = v.get<std::string>();
      (name == "tenant" ? has_tenant : has_key) = true;
      continue;
    }
    PAGODA_TRY(set_option(out.second, prio_set, name, v));
  }
  if (!has_tenant || (key_field && !has_key))
    return make_error(key_field ? "api keys: array entries need \"key\" and \"tenant\"" : "api keys: a key's object needs \"tenant\"");
  if (!prio_set && out.second.role == Role::Admin) out.second.max_priority = kMaxPriority;
  return out;
}

Result<ApiKeys> parse_json_keys(const nlohmann::json& j) {
  ApiKeys keys;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_string()) {
        PAGODA_TRY(keys.add(k, v.get<std::string>()));
        continue;
      }
      if (!v.is_object()) return make_error("api keys: the value of every key must be a tenant string or an object");
      auto e = entry_of(v, false);
      if (!e) return e.take_error();
      PAGODA_TRY(keys.add(k, e->second));
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (!v.is_object()) return make_error("api keys: array entries must be {\"key\": string, \"tenant\": string, ...}");
      auto e = entry_of(v, true);
      if (!e) return e.take_error();
      PAGODA_TRY(keys.add(e->first, e->second));
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
    std::string key, tenant, opt;
    if (!(ls >> key)) continue;  // blank or comment-only line
    if (!(ls >> tenant)) return make_error(fmt::format("api keys: line {} must be 'KEY TENANT [role=...] [max_priority=N]'", n));
    Principal p{tenant, Role::Tenant, 0};
    bool prio_set = false;
    while (ls >> opt) {
      const size_t eq = opt.find('=');
      if (eq == std::string::npos) return make_error(fmt::format("api keys: line {}: '{}' is not name=value", n, opt));
      const std::string name = opt.substr(0, eq), value = opt.substr(eq + 1);
      nlohmann::json v = value;
      if (name == "max_priority") {
        auto num = nlohmann::json::parse(value, nullptr, false);
        v = num.is_number_integer() ? num : nlohmann::json(value);
      }
      if (auto st = set_option(p, prio_set, name, v); !st) return make_error(fmt::format("{} (line {})", st.error(), n));
    }
    if (!prio_set && p.role == Role::Admin) p.max_priority = kMaxPriority;
    PAGODA_TRY(keys.add(key, p));
  }
  return keys;
}

}  // namespace

Result<Role> parse_role(std::string_view s) {
  if (s == "admin") return Role::Admin;
  if (s == "tenant") return Role::Tenant;
  return make_error(fmt::format("api keys: unknown role '{}' (admin or tenant)", s));
}

bool equal_secret(std::string_view a, std::string_view b) {
  unsigned diff = a.size() != b.size() ? 1u : 0u;
  for (size_t i = 0; i < b.size(); ++i) diff |= unsigned(uint8_t(b[i]) ^ (i < a.size() ? uint8_t(a[i]) : 0u));
  return diff == 0;
}

Status ApiKeys::add(std::string key, std::string tenant) { return add(std::move(key), Principal{std::move(tenant), Role::Tenant, 0}); }

Status ApiKeys::add(std::string key, Principal p) {
  for (char c : key)
    if (bad_key_char(c)) return make_error("api keys: a key must not contain spaces or control characters");
  if (key.empty()) return make_error("api keys: a key must be non-empty");
  if (p.tenant.empty()) return make_error("api keys: the tenant of a key must not be empty");
  for (const auto& [k, t] : entries_)
    if (k == key) return make_error("api keys: a key is listed twice");  // never print keys
  entries_.emplace_back(std::move(key), std::move(p));
  return {};
}

std::optional<Principal> ApiKeys::find(std::string_view key) const {
  const Principal* found = nullptr;
  for (const auto& [k, p] : entries_)
    if (equal_secret(key, k) && !found) found = &p;
  if (!found || key.empty()) return std::nullopt;
  return *found;
}

std::optional<std::string> ApiKeys::tenant_of(std::string_view key) const {
  auto p = find(key);
  if (!p) return std::nullopt;
  return p->tenant;
}

Result<ApiKeys> ApiKeys::parse(const std::string& raw) {
  // Editors on some systems start UTF-8 files with a byte-order mark; left in place it would
  // become part of the first key, which then never matches.
  const std::string_view bom = "\xEF\xBB\xBF";
  const std::string text = raw.compare(0, bom.size(), bom) == 0 ? raw.substr(bom.size()) : raw;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (text[first] == '{' || text[first] == '[')) {
    auto j = parse_json_strict(text);
    if (!j) return make_error("api keys: malformed JSON: " + j.error());
    return parse_json_keys(*j);
  }
  return parse_lines(text);
}

Result<ApiKeys> ApiKeys::load(const std::string& path) {
  auto text = read_file(path);
  if (!text) return make_error("api keys: " + text.error());
  auto keys = parse(*text);
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
  for (char c : k)
    if (bad_key_char(c)) return "";  // "KEY\0garbage" is not KEY
  return std::string(k);
}

}  // namespace pagoda::server
