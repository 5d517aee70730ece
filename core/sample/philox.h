// Philox4x32-10: a counter-based generator. A draw is a pure function of (key, counter), so a
// request's randomness depends only on its seed and token index, never on batch composition,
// thread timing or backend.
#pragma once
#include <array>
#include <cstdint>

namespace pagoda {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// Uniform in [0, 1) for (seed, stream, index): stream separates purposes (sampling, verification).
float philox_uniform(uint64_t seed, uint32_t stream, uint64_t index, uint32_t lane = 0);

}  // namespace pagoda
