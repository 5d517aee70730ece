// Sampling: each filter does what its name says, and the seeded generator is reproducible.
#include <gtest/gtest.h>

#include <cmath>

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
