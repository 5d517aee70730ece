// libFuzzer target for the HTTP request parser (apps/server/request_parse): any body, for either
// endpoint, must parse or fail with a message naming the problem; anything accepted must have
// every field in range, as the server relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "apps/server/request_parse.h"

using namespace pagoda::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ParseLimits lim;
  lim.ctx_len = 512;
  lim.vocab = 512;
  // The first byte picks the endpoint, the rest is the body.
  const Endpoint ep = data[0] & 1 ? Endpoint::Chat : Endpoint::Completions;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto r = parse_request(body, ep, lim);
  if (!r) {
    if (r.error().empty()) std::abort();
    return 0;
  }
  const ParsedRequest& p = *r;
  if (p.n < 1 || p.n > lim.max_n) std::abort();
  if (p.max_tokens < 1 || p.max_tokens > lim.ctx_len) std::abort();
  if (p.stop.size() > lim.max_stop) std::abort();
  for (const auto& s : p.stop)
    if (s.empty() || s.size() > lim.max_stop_bytes) std::abort();
  if (!(p.timeout_s >= 0 && p.timeout_s <= 86400)) std::abort();
  for (int32_t t : p.prompt_tokens)
    if (t < 0 || t >= lim.vocab) std::abort();
  if (ep == Endpoint::Chat && p.messages.empty()) std::abort();
  if (!p.sampling.validate()) std::abort();
  return 0;
}
