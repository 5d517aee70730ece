#include "core/sample/philox.h"

namespace pagoda {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kM0) * c[0];
    const uint64_t p1 = uint64_t(kM1) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1], uint32_t(p0)};
    k[0] += kW0;
    k[1] += kW1;
  }
  return c;
}

float philox_uniform(uint64_t seed, uint32_t stream, uint64_t index, uint32_t lane) {
  const auto r = philox4x32({uint32_t(index), uint32_t(index >> 32), stream, 0},
                            {uint32_t(seed), uint32_t(seed >> 32)});
  // 24 high bits give every float in [0,1) with a 2^-24 grid, never 1.0.
  return float(r[lane & 3] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace pagoda
