// Sampling: each filter does what its name says, and the seeded generator is reproducible.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/sample/philox.h"
#include "core/sample/sampler.h"

using namespace pagoda;

TEST(Philox, KnownAnswerVector) {
  // Random123's published known-answer test for philox4x32-10 with zero counter and key.
  auto r = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
}

TEST(Philox, UniformIsAPureFunctionOfSeedAndIndex) {
  EXPECT_EQ(philox_uniform(42, 0, 7), philox_uniform(42, 0, 7));
  EXPECT_NE(philox_uniform(42, 0, 7), philox_uniform(43, 0, 7));
  EXPECT_NE(philox_uniform(42, 0, 7), philox_uniform(42, 1, 7));
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const float u = philox_uniform(1, 0, uint64_t(i));
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
}

TEST(Sampler, GreedyPicksFirstMaximum) {
  std::vector<float> l = {1, 5, 5, 2};
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(sample_token(l, {}, p, 0), 1);
}

// argmax against the plain scan (largest value, first index among equals, NaN ignored, the first
// -inf when nothing is larger, 0 when every logit is NaN) on rows of every length mod 8, with the
// maximum in the vector body and in the tail, repeated in several lanes, and next to NaN.
TEST(Sampler, ArgmaxIsTheFirstLargestLogit) {
  auto reference = [](const std::vector<float>& l) {
    int32_t best = -1;
    for (size_t i = 0; i < l.size(); ++i)
      if (!std::isnan(l[i]) && (best < 0 || l[i] > l[size_t(best)])) best = int32_t(i);
    return best < 0 ? 0 : best;
  };
  const float ninf = -std::numeric_limits<float>::infinity(), nan = std::nanf("");
  for (size_t n : {size_t(1), size_t(7), size_t(8), size_t(9), size_t(31), size_t(32000), size_t(32003)}) {
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<float> l(n);
      for (size_t i = 0; i < n; ++i) {
        const float u = philox_uniform(3, uint32_t(trial), i);
        // Few distinct values, so the maximum repeats across lanes; some NaN and -inf.
        l[i] = u < 0.05f ? nan : u < 0.1f ? ninf : std::floor(u * (trial % 2 ? 4.0f : 1000.0f));
      }
      if (trial % 5 == 1) l[n - 1] = 1e9f;      // the maximum in the tail
      if (trial % 5 == 2) l[n / 2] = 1e9f;      // a lone maximum in the body
      if (trial % 5 == 3) for (float& x : l) x = std::isnan(x) ? x : ninf;  // nothing above -inf
      if (trial % 10 == 9) for (float& x : l) x = nan;                       // every logit NaN
      ASSERT_EQ(argmax(l), reference(l)) << "n " << n << " trial " << trial;
    }
  }
}

TEST(Sampler, TopKKeepsExactlyK) {
  std::vector<float> l = {1, 4, 3, 2, 0};
  SamplingParams p;
  p.temperature = 1; p.top_k = 2; p.top_p = 1; p.min_p = 0;
  auto d = sampling_distribution(l, {}, p);
  EXPECT_GT(d[1], 0); EXPECT_GT(d[2], 0);
  EXPECT_EQ(d[0], 0); EXPECT_EQ(d[3], 0); EXPECT_EQ(d[4], 0);
  EXPECT_NEAR(d[1] + d[2], 1.0, 1e-6);
  EXPECT_NEAR(d[1] / d[2], std::exp(1.0), 1e-4);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingP) {
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  p.temperature = 1; p.top_k = 0; p.top_p = 0.75f; p.min_p = 0;  // 0.5 alone < 0.75 <= 0.5 + 0.3
  auto d = sampling_distribution(l, {}, p);
  EXPECT_NEAR(d[0], 0.5 / 0.8, 1e-5);
  EXPECT_NEAR(d[1], 0.3 / 0.8, 1e-5);
  EXPECT_EQ(d[2], 0);
  EXPECT_EQ(d[3], 0);
}

TEST(Sampler, MinPDropsTokensBelowFractionOfMax) {
  std::vector<float> l = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  SamplingParams p;
  p.temperature = 1; p.top_k = 0; p.top_p = 1; p.min_p = 0.2f;
  auto d = sampling_distribution(l, {}, p);
  EXPECT_GT(d[1], 0);
  EXPECT_EQ(d[2], 0);  // 0.1 < 0.2 * 0.6
}

TEST(Sampler, TemperatureSharpens) {
  std::vector<float> l = {1, 2};
  SamplingParams p;
  p.top_k = 0; p.top_p = 1; p.min_p = 0;
  p.temperature = 0.5f;
  auto d = sampling_distribution(l, {}, p);
  EXPECT_NEAR(d[1] / d[0], std::exp(2.0), 1e-4);
}

TEST(Sampler, RepetitionPenaltyLowersSeenTokens) {
  std::vector<float> l = {2, 2, -1};
  SamplingParams p;
  p.repeat_penalty = 2; p.repeat_last_n = 8;
  std::vector<int32_t> hist = {0, 2};
  apply_repetition_penalty(l, hist, p);
  EXPECT_FLOAT_EQ(l[0], 1);
  EXPECT_FLOAT_EQ(l[1], 2);
  EXPECT_FLOAT_EQ(l[2], -2);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDiffers) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[size_t(i)] = float(i % 7) * 0.1f;
  SamplingParams p;
  p.temperature = 1; p.top_k = 0; p.top_p = 1; p.min_p = 0; p.seed = 9;
  std::vector<int32_t> a, b, c;
  for (uint64_t i = 0; i < 64; ++i) {
    a.push_back(sample_token(l, {}, p, i));
    b.push_back(sample_token(l, {}, p, i));
  }
  p.seed = 10;
  for (uint64_t i = 0; i < 64; ++i) c.push_back(sample_token(l, {}, p, i));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Sampler, EmpiricalFrequenciesMatchDistribution) {
  std::vector<float> l = {0.0f, 1.0f, 2.0f};
  SamplingParams p;
  p.temperature = 1; p.top_k = 0; p.top_p = 1; p.min_p = 0; p.seed = 3;
  auto d = sampling_distribution(l, {}, p);
  std::vector<int> counts(3);
  const int n = 200000;
  for (int i = 0; i < n; ++i) ++counts[size_t(sample_token(l, {}, p, uint64_t(i)))];
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(double(counts[size_t(i)]) / n, d[size_t(i)], 0.005);
}

TEST(Sampler, InvalidParamsAreRejected) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  p.temperature = NAN;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  p.repeat_penalty = -1;
  EXPECT_FALSE(p.validate().ok());
}

// The filtered distribution written the obvious way (sort the whole vocabulary, cut prefixes,
// double-precision weights): the fast sampler must keep exactly the same tokens with the same
// probabilities.
static std::vector<double> reference_distribution(const std::vector<float>& l, const SamplingParams& p) {
  std::vector<int32_t> idx(l.size());
  for (size_t i = 0; i < l.size(); ++i) idx[i] = int32_t(i);
  std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
    return l[size_t(a)] > l[size_t(b)] || (l[size_t(a)] == l[size_t(b)] && a < b);
  });
  size_t keep = idx.size();
  if (p.top_k > 0 && size_t(p.top_k) < keep) keep = size_t(p.top_k);
  std::vector<double> w(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += w[i] = std::exp(double(l[size_t(idx[i])] - l[size_t(idx[0])]) / p.temperature);
  size_t cut = keep;
  if (p.top_p < 1) {
    double acc = 0;
    for (size_t i = 0; i < keep; ++i)
      if ((acc += w[i] / sum) >= p.top_p) { cut = i + 1; break; }
  }
  size_t m = 1;
  if (p.min_p > 0) {
    while (m < cut && w[m] >= p.min_p * w[0]) ++m;
    cut = m;
  }
  double kept = 0;
  for (size_t i = 0; i < cut; ++i) kept += w[i];
  std::vector<double> d(l.size(), 0.0);
  for (size_t i = 0; i < cut; ++i) d[size_t(idx[i])] = w[i] / kept;
  return d;
}

TEST(Sampler, FastFiltersKeepExactlyWhatTheSortedReferenceKeeps) {
  const uint64_t seed = 20261201;
  std::printf("seed %llu\n", (unsigned long long)seed);
  struct Setting { float t; int32_t k; float top_p, min_p; };
  const Setting settings[] = {{0.8f, 0, 1, 0},    {1.0f, 40, 1, 0},   {0.7f, 0, 0.95f, 0}, {0.8f, 0, 1, 0.05f},
                              {0.8f, 40, 0.95f, 0.05f}, {1.3f, 1000, 0.5f, 0}, {0.5f, 0, 0.9f, 0.01f}, {2.0f, 3, 1, 0}};
  for (int trial = 0; trial < 24; ++trial) {
    // Vocabularies of several sizes; logits flat, peaked, or heavy with ties (quantized values).
    const size_t n = size_t(1 + philox_uniform(seed, 1, uint64_t(trial)) * 5000);
    std::vector<float> l(n);
    for (size_t i = 0; i < n; ++i) {
      const float u = philox_uniform(seed, 2, uint64_t(trial) * 100000 + i);
      l[i] = trial % 3 == 0 ? u * 4 : trial % 3 == 1 ? std::round(u * 8) : 20 * u * u * u;
    }
    for (const auto& s : settings) {
      SamplingParams p;
      p.temperature = s.t; p.top_k = s.k; p.top_p = s.top_p; p.min_p = s.min_p;
      const auto want = reference_distribution(l, p);
      const auto got = sampling_distribution(l, {}, p);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(want[i] > 0, got[i] > 0) << "trial " << trial << " token " << i << " t=" << s.t << " k=" << s.k
                                           << " top_p=" << s.top_p << " min_p=" << s.min_p;
        ASSERT_NEAR(got[i], want[i], 1e-6 + 1e-5 * want[i]) << "trial " << trial << " token " << i;
      }
    }
  }
}

// Full-size rows through the dense top-p path (the histogram limited by a bound on the dropped
// mass, the selection of its tokens, the draw over the kept tokens without a zeroing pass), with
// and without a dense top-k in front: flat, peaked (a few strong candidates), heavy with ties (so
// the boundary often falls inside a run of equal logits and the index decides), near-uniform (the
// whole row within 1.2 logits: the buckets narrow to the row's span) and within 1e-4 of each other
// (the narrowest buckets there are).
TEST(Sampler, DenseTopPOnFullRowsKeepsWhatTheSortedReferenceKeepsAndDrawsFromIt) {
  struct Setting { float t; int32_t k; float top_p, min_p; };
  const Setting settings[] = {{0.8f, 0, 0.95f, 0},          {1.0f, 5000, 0.9f, 0}, {1.0f, 5000, 0.999f, 0},
                              {1.0f, 5000, 0.99999994f, 0}, {0.7f, 0, 0.5f, 0},    {0.8f, 0, 0.99f, 0.001f}};
  for (int shape = 0; shape < 5; ++shape) {
    std::vector<float> l(32000);
    for (size_t i = 0; i < l.size(); ++i) {
      const float u = philox_uniform(17, 4, uint64_t(shape) * 100000 + i);
      l[i] = shape == 0   ? 6 * u
             : shape == 1 ? 4 * u + (i % 3001 == 7 ? 12.0f - float(i / 3001) : 0.0f)
             : shape == 2 ? std::round(u * 8)
             : shape == 3 ? 1.2f * u
                          : 3.0f + 1e-4f * u;
    }
    for (const auto& st : settings) {
      SamplingParams p;
      p.temperature = st.t; p.top_k = st.k; p.top_p = st.top_p; p.min_p = st.min_p; p.seed = 5;
      const auto want = reference_distribution(l, p);
      const auto got = sampling_distribution(l, {}, p);
      for (size_t i = 0; i < l.size(); ++i) {
        ASSERT_EQ(want[i] > 0, got[i] > 0) << "shape " << shape << " token " << i << " k=" << st.k << " top_p=" << st.top_p;
        ASSERT_NEAR(got[i], want[i], 1e-6 + 1e-5 * want[i]) << "shape " << shape << " token " << i;
      }
      int differ = 0;
      for (uint64_t i = 0; i < 100; ++i) {
        const int32_t t = sample_token(l, {}, p, i);
        ASSERT_GT(got[size_t(t)], 0.0f) << "shape " << shape << ": drew a dropped token";
        differ += t != draw_from(got, philox_uniform(p.seed, 0, i));
      }
      EXPECT_LE(differ, 1) << "shape " << shape << " k=" << st.k << " top_p=" << st.top_p;
    }
  }
}

// Top-p's last token sits inside a tie and before a stronger token in index order: the draw must
// give it its share rather than skip to the next kept token.
TEST(Sampler, TopPBoundaryInsideATieIsDrawnWithItsShare) {
  const std::vector<float> l = {2, 2, 3, 2};
  SamplingParams p;
  p.temperature = 1; p.top_k = 0; p.top_p = 0.7f; p.min_p = 0; p.seed = 4;
  const auto d = sampling_distribution(l, {}, p);
  const double e = std::exp(-1.0), kept = 1 + 2 * e;
  EXPECT_NEAR(d[0], e / kept, 1e-6);
  EXPECT_NEAR(d[1], e / kept, 1e-6) << "the tie's second token closes the 0.7 prefix";
  EXPECT_NEAR(d[2], 1 / kept, 1e-6);
  EXPECT_EQ(d[3], 0.0f);
  int ones = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    const int32_t t = sample_token(l, {}, p, i);
    EXPECT_EQ(t, draw_from(d, philox_uniform(p.seed, 0, i))) << "draw " << i;
    ones += t == 1;
  }
  EXPECT_NEAR(ones / 1000.0, e / kept, 0.05);
}

TEST(Sampler, DrawEqualsInverseCdfOfTheDistribution) {
  std::vector<float> l(32000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = 3 * philox_uniform(7, 3, i);
  SamplingParams p;
  p.temperature = 0.8f; p.top_k = 0; p.top_p = 0.9f; p.min_p = 0; p.seed = 11;
  const auto d = sampling_distribution(l, {}, p);
  int differ = 0;
  for (uint64_t i = 0; i < 2000; ++i)
    differ += sample_token(l, {}, p, i) != draw_from(d, philox_uniform(p.seed, 0, i));
  EXPECT_LE(differ, 2) << "only draws landing within rounding of a token boundary may differ";
}

TEST(Sampler, BannedAndNanLogitsAreNeverDrawn) {
  std::vector<float> l(1000, -std::numeric_limits<float>::infinity());
  l[10] = 0.0f;
  l[500] = 0.5f;
  l[20] = std::nanf("");
  SamplingParams p;
  p.temperature = 1.5f; p.top_k = 0; p.top_p = 1; p.min_p = 0;
  for (uint64_t i = 0; i < 500; ++i) {
    const int32_t t = sample_token(l, {}, p, i);
    ASSERT_TRUE(t == 10 || t == 500) << t;
  }
  const auto d = sampling_distribution(l, {}, p);
  EXPECT_EQ(d[20], 0.0f);
  EXPECT_NEAR(d[10] + d[500], 1.0, 1e-6);
  std::vector<float> none(8, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(sample_token(none, {}, p, 0), 0) << "no finite logit: falls back to argmax, never crashes";
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountOnlyGeneratedTokens) {
  std::vector<float> l(6, 1.0f);
  SamplingParams p;
  p.presence_penalty = 0.5f; p.frequency_penalty = 0.25f;
  // History: prompt {1, 1, 2}, then generated {2, 3, 3, 3}.
  const std::vector<int32_t> hist = {1, 1, 2, 2, 3, 3, 3};
  apply_penalties(l, hist, 4, p);
  EXPECT_FLOAT_EQ(l[0], 1.0f);
  EXPECT_FLOAT_EQ(l[1], 1.0f) << "prompt-only tokens are not penalized";
  EXPECT_FLOAT_EQ(l[2], 1.0f - 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(l[3], 1.0f - 3 * 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(l[4], 1.0f);
}

TEST(Sampler, LogitBiasBansAndForcesTokensUnderGreedyAndSampling) {
  std::vector<float> l = {0.0f, 3.0f, 2.9f, 0.5f};
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{1, -100.0f}};
  EXPECT_EQ(sample_token(l, {}, p, 0), 2) << "the argmax is banned";
  p.logit_bias = {{0, 100.0f}};
  EXPECT_EQ(sample_token(l, {}, p, 0), 0);
  p.temperature = 1.0f; p.top_k = 0; p.top_p = 1; p.min_p = 0;
  p.logit_bias = {{1, -100.0f}, {2, -100.0f}, {9999, 5.0f}};  // an id past the vocabulary is ignored
  for (uint64_t i = 0; i < 200; ++i) {
    const int32_t t = sample_token(l, {}, p, i);
    ASSERT_TRUE(t == 0 || t == 3) << t;
  }
}

TEST(Sampler, PenaltyRangesAreValidated) {
  SamplingParams p;
  p.presence_penalty = 2.5f;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  p.frequency_penalty = -3.0f;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  p.logit_bias = {{5, 101.0f}};
  EXPECT_FALSE(p.validate().ok());
  p.logit_bias = {{-1, 1.0f}};
  EXPECT_FALSE(p.validate().ok());
  p.logit_bias = {{5, -100.0f}};
  EXPECT_TRUE(p.validate().ok());
}

// The list the device decoder uploads for adjust_logits is the one apply_penalties applies: one
// entry per affected token in the vocabulary, sorted, each category folded in exactly once.
TEST(Sampler, LogitAdjustmentListFoldsEveryPenaltyPerToken) {
  SamplingParams p;
  p.repeat_penalty = 1.5f;
  p.repeat_last_n = 3;  // window: the last three history tokens {2, 9, 9}
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.logit_bias = {{1, 2.0f}, {2, -1.0f}, {2, -0.5f}, {50, 3.0f}};  // 50 is outside a 10-token vocabulary
  // Prompt {2, 2, 7}, then generated {7, 4, -3, 2, 9, 9}: only those count for presence/frequency.
  const std::vector<int32_t> hist = {2, 2, 7, 7, 4, -3, 2, 9, 9};
  std::vector<LogitAdjust> adj;
  append_logit_adjustments(hist, 6, p, 10, 5, adj);  // the last 6 history entries were generated
  std::vector<int32_t> toks;
  for (const auto& a : adj) {
    EXPECT_EQ(a.row, 5);
    toks.push_back(a.token);
  }
  EXPECT_EQ(toks, (std::vector<int32_t>{1, 2, 4, 7, 9})) << "sorted, one entry per token, -3 and 50 dropped";
  auto at = [&](int32_t t) { return *std::find_if(adj.begin(), adj.end(), [t](const LogitAdjust& a) { return a.token == t; }); };
  EXPECT_EQ(at(1).bias, 2.0f);
  EXPECT_EQ(at(1).pos_scale, 1.0f);
  EXPECT_EQ(at(1).subtract, 0.0f);
  EXPECT_EQ(at(2).bias, -1.5f) << "repeated logit_bias entries add up";
  EXPECT_EQ(at(2).pos_scale, 1.0f / 1.5f);
  EXPECT_EQ(at(2).neg_scale, 1.5f);
  EXPECT_EQ(at(2).subtract, 1 * 0.25f + 0.5f);
  EXPECT_EQ(at(4).pos_scale, 1.0f) << "4 is outside the repetition window";
  EXPECT_EQ(at(4).subtract, 1 * 0.25f + 0.5f);
  EXPECT_EQ(at(7).subtract, 1 * 0.25f + 0.5f) << "the prompt's 7 does not count";
  EXPECT_EQ(at(9).pos_scale, 1.0f / 1.5f);
  EXPECT_EQ(at(9).subtract, 2 * 0.25f + 0.5f);
  // apply_penalties is this list through adjust_logit, bit for bit.
  std::vector<float> l = {0.5f, 1.25f, -2.0f, 3.0f, 0.75f, 0.0f, 0.0f, -0.3f, 2.2f, 1.0f}, want = l;
  for (const auto& a : adj) want[size_t(a.token)] = adjust_logit(want[size_t(a.token)], a);
  apply_penalties(l, hist, 6, p);
  for (size_t i = 0; i < l.size(); ++i) EXPECT_EQ(std::bit_cast<uint32_t>(l[i]), std::bit_cast<uint32_t>(want[i])) << i;
  // The repetition penalty divides positive logits as a multiply by the float reciprocal.
  EXPECT_EQ(l[9], 1.0f * (1.0f / 1.5f) - (2 * 0.25f + 0.5f));
}

// Near-uniform rows (every token within top-p's reach) find the boundary through a window of
// buckets a sample of the row places; it must keep exactly what the sorted reference keeps, and
// must actually be the path taken (else the full histogram, which the test above covers, hides it).
TEST(Sampler, TopPWindowOnNearUniformRowsKeepsWhatTheSortedReferenceKeeps) {
  // (At these settings every token of these rows lies within top-p's reach, where the window is
  // tried; a lower top-p reaches less far and takes the full histogram.)
  const float top_ps[] = {0.9f, 0.95f, 0.99f};
  for (int shape = 0; shape < 3; ++shape) {
    std::vector<float> l(32000);
    for (size_t i = 0; i < l.size(); ++i) {
      const float u = philox_uniform(23, 6, uint64_t(shape) * 100000 + i);
      // A 1.2-logit span, a normal-ish row of standard deviation 0.34 (the synth models'), and
      // a ramp by index (strongly ordered: the sample's groups see every part of it).
      l[i] = shape == 0 ? 1.2f * u : shape == 1 ? 0.34f * (u + philox_uniform(23, 7, i) + philox_uniform(23, 8, i) - 1.5f) * 2.0f
                                                : 2.5f * float(i) / float(l.size()) + 0.01f * u;
    }
    for (float top_p : top_ps) {
      SamplingParams p;
      p.temperature = 0.8f; p.top_k = 0; p.top_p = top_p; p.min_p = 0; p.seed = 8;
      const auto want = reference_distribution(l, p);
      const uint64_t before = top_p_window_boundaries();
      const auto got = sampling_distribution(l, {}, p);
      EXPECT_EQ(top_p_window_boundaries(), before + 1) << "shape " << shape << " top_p " << top_p << ": the window was not used";
      for (size_t i = 0; i < l.size(); ++i) {
        ASSERT_EQ(want[i] > 0, got[i] > 0) << "shape " << shape << " token " << i << " top_p=" << top_p;
        ASSERT_NEAR(got[i], want[i], 1e-6 + 1e-5 * want[i]) << "shape " << shape << " token " << i;
      }
    }
  }
}

// The engine's in-place draw: the same token as sample_token (which penalizes a copy) for every
// setting, and the row bit-identical afterwards, penalties and all.
TEST(Sampler, InPlaceDrawMatchesTheCopyingDrawAndRestoresTheRow) {
  std::vector<float> l(32000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = 4 * philox_uniform(31, 2, i) - (i % 97 == 0 ? 3.0f : 0.0f);
  const std::vector<float> original = l;
  std::vector<int32_t> hist;
  for (int32_t i = 0; i < 80; ++i) hist.push_back((i * 7919) % 32000);
  hist.push_back(-5);     // outside the vocabulary: ignored by both
  hist.push_back(40000);
  struct Setting { float t, top_p, rep, pres, freq; int32_t k; };
  const Setting settings[] = {{0, 1, 1.3f, 0, 0, 0},        {0.8f, 0.95f, 1.1f, 0, 0, 0}, {0.8f, 1, 1, 0.5f, 0.25f, 40},
                              {1.0f, 0.9f, 1.2f, -0.5f, 1.0f, 0}, {0.7f, 1, 1, 0, 0, 0}};
  for (const auto& st : settings) {
    SamplingParams p;
    p.temperature = st.t; p.top_k = st.k; p.top_p = st.top_p; p.min_p = 0;
    p.repeat_penalty = st.rep; p.presence_penalty = st.pres; p.frequency_penalty = st.freq;
    p.logit_bias = {{3, 5.0f}, {hist[10], -100.0f}};
    p.seed = 12;
    for (uint64_t i = 0; i < 20; ++i) {
      const int32_t want = sample_token(original, hist, p, i, 30);
      EXPECT_EQ(sample_token_in_place(l, hist, p, i, 30), want) << "draw " << i << " t=" << st.t << " rep=" << st.rep;
      ASSERT_EQ(std::memcmp(l.data(), original.data(), l.size() * sizeof(float)), 0) << "the row was not restored";
    }
  }
}
