// API keys -> tenant names. The tenant is the prefix-cache scope (Request::tenant): it comes only
// from the key a caller authenticated with, never from anything the caller writes in a body.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/util/result.h"

namespace pagoda::server {

class ApiKeys {
 public:
  // JSON ({"KEY": "tenant", ...} or [{"key": ..., "tenant": ...}, ...]) or text with one
  // "KEY TENANT" pair a line ('#' starts a comment). Empty keys or tenants and duplicate keys are
  // errors: a typo in this file must not silently open or merge a scope.
  static Result<ApiKeys> parse(const std::string& text);
  static Result<ApiKeys> load(const std::string& path);

  Status add(std::string key, std::string tenant);
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  // The tenant of `key`, if it is known. Every stored key is compared in full, so the time taken
  // does not tell an attacker how many leading characters of a guess were right.
  std::optional<std::string> tenant_of(std::string_view key) const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;  // key, tenant
};

// "Bearer KEY" -> KEY; "" when the header is missing or uses another scheme.
std::string bearer_token(std::string_view authorization);

}  // namespace pagoda::server
