// API keys -> principals. The tenant is the prefix-cache scope (Request::tenant): it comes only
// from the key a caller authenticated with, never from anything the caller writes in a body; so
// do the key's role (what /v1/inspect shows it) and its priority ceiling.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/util/result.h"

namespace pagoda::server {

enum class Role : uint8_t {
  Tenant,  // sees only its own requests and blocks
  Admin,   // sees every tenant (block keys still only as a keyed hash)
};

inline constexpr int32_t kMaxPriority = 1000000;  // the request parser's bound on "priority"

struct Principal {
  std::string tenant;
  Role role = Role::Tenant;
  int32_t max_priority = 0;  // a body's "priority" above this is lowered to it
};

class ApiKeys {
 public:
  // Formats (a UTF-8 byte-order mark at the start is ignored):
  //  - text, one key a line: "KEY TENANT [role=admin|tenant] [max_priority=N]", '#' starts a comment;
  //  - JSON object: {"KEY": "tenant", "KEY2": {"tenant": ..., "role": ..., "max_priority": N}};
  //  - JSON array: [{"key": ..., "tenant": ..., "role": ..., "max_priority": N}, ...].
  // role defaults to tenant; max_priority to 0 for tenants and kMaxPriority for admins. Empty
  // keys or tenants, keys with spaces or control characters, duplicate keys (also duplicate JSON
  // object members) and unknown fields are errors: a typo must not silently open or merge a scope.
  static Result<ApiKeys> parse(const std::string& text);
  static Result<ApiKeys> load(const std::string& path);

  Status add(std::string key, std::string tenant);
  Status add(std::string key, Principal p);
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  // The principal of `key`, if it is known. Every stored key is compared in full, so the time
  // taken does not tell an attacker how many leading characters of a guess were right.
  std::optional<Principal> find(std::string_view key) const;
  std::optional<std::string> tenant_of(std::string_view key) const;

 private:
  std::vector<std::pair<std::string, Principal>> entries_;
};

// "Bearer KEY" -> KEY; "" when the header is missing, uses another scheme, or the key holds a
// control character or space (a NUL would otherwise cut the key short in C-string code).
std::string bearer_token(std::string_view authorization);

// Constant-time comparison of two secrets.
bool equal_secret(std::string_view a, std::string_view b);

// Parses "role=..."/"max_priority=..." and the JSON equivalents.
Result<Role> parse_role(std::string_view s);

}  // namespace pagoda::server
