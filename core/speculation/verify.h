// Speculative verification (rejection sampling) on host distributions. Accept draft i with
// probability min(1, p_i(x)/q_i(x)); at the first rejection sample from normalize(max(0, p_i - q_i));
// after k acceptances sample a bonus token from p_k. The output distribution equals p exactly.
// Same semantics as Backend::verify (the CPU reference op); tests check the two agree.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace pagoda {

struct VerifyOutcome {
  int32_t accepted = 0;    // leading draft tokens kept
  int32_t next_token = -1; // the correction (on rejection) or bonus token
};

// p: k+1 target distributions; q: k draft distributions; u: k+1 uniforms in [0,1) (u[k] draws the
// final token). Distributions need not be normalized; q rows may be one-hot (n-gram drafts).
VerifyOutcome verify_drafts(std::span<const std::vector<float>> p, std::span<const std::vector<float>> q,
                            std::span<const int32_t> drafts, std::span<const float> u);

}  // namespace pagoda
