#include "core/speculation/verify.h"

#include <algorithm>

#include "core/sample/sampler.h"

namespace pagoda {

VerifyOutcome verify_drafts(std::span<const std::vector<float>> p, std::span<const std::vector<float>> q,
                            std::span<const int32_t> drafts, std::span<const float> u) {
  const int32_t k = int32_t(drafts.size());
  VerifyOutcome out;
  for (int32_t i = 0; i < k; ++i) {
    const int32_t x = drafts[size_t(i)];
    const float px = p[size_t(i)][size_t(x)], qx = q[size_t(i)][size_t(x)];
    // u < p/q, written without dividing; a draft the draft model gave zero mass is never accepted.
    if (qx > 0 && u[size_t(i)] * qx < px) {
      ++out.accepted;
      continue;
    }
    std::vector<float> residual(p[size_t(i)].size());
    double mass = 0;
    for (size_t v = 0; v < residual.size(); ++v) mass += residual[v] = std::max(0.0f, p[size_t(i)][v] - q[size_t(i)][v]);
    out.next_token = mass > 0 ? draw_from(residual, u[size_t(k)]) : draw_from(p[size_t(i)], u[size_t(k)]);
    return out;
  }
  out.next_token = draw_from(p[size_t(k)], u[size_t(k)]);
  return out;
}

}  // namespace pagoda
