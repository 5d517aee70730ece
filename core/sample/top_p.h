// Top-p's boundary over a dense row of weights, and the candidate order every filter shares:
// internal to core/sample (sampler.cpp builds the weights, top_p.cpp finds where top-p cuts them).
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace pagoda::sample_detail {

// The sampler's candidate order: higher logit first, lower index first among equal logits. Every
// filter (top-k, top-p, min-p) keeps a prefix of this order, so what survives all of them is the
// prefix ending at one boundary element, and a token is kept iff it does not come after it.
struct Rank {
  float logit;
  int32_t index;
};
inline bool before(const Rank& a, const Rank& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.index < b.index);
}
inline bool kept(float logit, int32_t index, const Rank& last) {
  return logit > last.logit || (logit == last.logit && index <= last.index);
}

// The top-p boundary among the tokens `last` keeps (all of them when `all`): the last token of the
// shortest candidate-order prefix whose weight reaches top_p of `mass` (their weight), and the
// weight up to it. `weights` are the row's exp((l - mx) * inv_t); `mn` is the smallest finite
// logit; `selected` and `ranks` are scratch reused across calls.
std::pair<Rank, double> top_p_boundary(std::span<const float> l, std::span<const float> weights,
                                       std::vector<uint32_t>& selected, std::vector<Rank>& ranks, float mx, float mn,
                                       float inv_t, const Rank& last, bool all, double top_p, double mass);

}  // namespace pagoda::sample_detail
