#include "apps/server/views.h"

#include <fmt/core.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <random>
#include <set>

namespace pagoda::server {

ViewSecret random_view_secret() {
  ViewSecret s{};
  if (RAND_bytes(s.data(), int(s.size())) != 1) {
    std::random_device rd;  // the OS entropy source either way; OpenSSL failing is unexpected
    for (auto& b : s) b = uint8_t(rd());
  }
  return s;
}

namespace {

uint32_t keyed(uint32_t key_prefix, const ViewSecret& secret) {
  if (key_prefix == 0) return 0;  // 0 means "unkeyed" to the inspector
  uint8_t msg[4] = {uint8_t(key_prefix), uint8_t(key_prefix >> 8), uint8_t(key_prefix >> 16), uint8_t(key_prefix >> 24)};
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()), msg, sizeof(msg), out, &len);
  const uint32_t v = uint32_t(out[0]) | uint32_t(out[1]) << 8 | uint32_t(out[2]) << 16 | uint32_t(out[3]) << 24;
  return v ? v : 1;
}

}  // namespace

Snapshot view_for(const Snapshot& s, const Principal& who, const ViewSecret& secret) {
  Snapshot v = s;
  for (BlockInfo& b : v.blocks) b.key_prefix = keyed(b.key_prefix, secret);
  if (who.role == Role::Admin) return v;
  std::set<uint64_t> mine;
  std::vector<RequestInfo> kept;
  for (RequestInfo& r : v.requests)
    if (r.tenant == who.tenant) {
      mine.insert(r.id);
      kept.push_back(std::move(r));
    }
  v.requests = std::move(kept);
  const uint32_t th = tenant_hash(who.tenant);
  for (BlockInfo& b : v.blocks) {
    const bool own = b.owner != 0 ? mine.count(b.owner) > 0 : (b.tenant != 0 && b.tenant == th);
    if (own) continue;
    const uint8_t state = b.state;
    b = BlockInfo{};
    b.state = state;
  }
  for (auto it = v.counters.per_tenant.begin(); it != v.counters.per_tenant.end();)
    it = it->first == who.tenant ? std::next(it) : v.counters.per_tenant.erase(it);
  return v;
}

}  // namespace pagoda::server
