// Architectures without a llama.cpp fixture here (gemma3) and RoPE scaling (linear, YaRN, Phi-3
// LongRoPE): random-weight GGUFs written by the test, run on cpu and cpu-ref, and compared with a
// straightforward float model written below in plain loops (RMSNorm, RoPE on the unpermuted
// weights with NEOX or NORM pairing, windowed softmax attention, gated FFN). The per-pair RoPE
// divisors are derived here from the published definitions (HF's formulation of YaRN, the
// LongRoPE factor tensors), not from Pagoda's code. Vulkan (lavapipe) is compared with the CPU
// when present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <unistd.h>

#include "backends/backend.h"
#include "core/gguf/gguf_writer.h"
#include "core/model/evaluate.h"
#include "core/model/model_config.h"
#include "core/model/model_runner.h"
#include "core/model/model_weights.h"
#include "core/model/rope_scaling.h"
#include "shell.h"

using namespace pagoda;

namespace {

using Vec = std::vector<float>;

// What the reference computes, and the weights it computes with (matrices [out][in], row-major,
// as GGUF stores them).
struct Spec {
  std::string arch = "gemma3";
  int dim = 64, ffn = 96, layers = 6, heads = 4, kv_heads = 2, head_dim = 32, vocab = 48, ctx = 64;
  bool neox = true, qk_norm = true, post_norms = true, gelu = true, embed_scale = true, fused = false;
  bool key_length = true;  // write attention.key_length (head_dim differs from dim / heads)
  float eps = 1e-6f, theta = 1e6f;
  float local_theta = 10000.0f;  // on the local layers of a window_period pattern (0 = none)
  int window = 4, window_period = 6;
  Vec divisors;          // per-pair divisors of the global layers (empty = none)
  float magnitude = 1;   // multiplies q and k of the global layers
  float query_scale = 0; // 0 = 1/sqrt(head_dim)
  // Weights.
  Vec emb, out_norm, out;
  struct Layer { Vec attn_norm, wq, wk, wv, wo, q_norm, k_norm, post_attn, ffn_norm, gate, up, down, post_ffn; };
  std::vector<Layer> L;

  int q_dim() const { return heads * head_dim; }
  int kv_dim() const { return kv_heads * head_dim; }
  bool local(int l) const { return window_period == 0 || l % window_period != window_period - 1; }
};

Vec random_vec(std::mt19937& rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  Vec v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

void randomize(Spec& s, uint32_t seed) {
  std::mt19937 rng(seed);
  const float a = 0.3f;
  s.emb = random_vec(rng, size_t(s.vocab) * s.dim, -1, 1);
  s.out_norm = random_vec(rng, size_t(s.dim), 0.8f, 1.2f);
  s.out = random_vec(rng, size_t(s.vocab) * s.dim, -a, a);
  s.L.resize(size_t(s.layers));
  for (auto& l : s.L) {
    l.attn_norm = random_vec(rng, size_t(s.dim), 0.8f, 1.2f);
    l.wq = random_vec(rng, size_t(s.q_dim()) * s.dim, -a, a);
    l.wk = random_vec(rng, size_t(s.kv_dim()) * s.dim, -a, a);
    l.wv = random_vec(rng, size_t(s.kv_dim()) * s.dim, -a, a);
    l.wo = random_vec(rng, size_t(s.dim) * s.q_dim(), -a, a);
    l.q_norm = random_vec(rng, size_t(s.head_dim), 0.5f, 1.5f);
    l.k_norm = random_vec(rng, size_t(s.head_dim), 0.5f, 1.5f);
    l.post_attn = random_vec(rng, size_t(s.dim), 0.8f, 1.2f);
    l.ffn_norm = random_vec(rng, size_t(s.dim), 0.8f, 1.2f);
    l.gate = random_vec(rng, size_t(s.ffn) * s.dim, -a, a);
    l.up = random_vec(rng, size_t(s.ffn) * s.dim, -a, a);
    l.down = random_vec(rng, size_t(s.dim) * s.ffn, -a, a);
    l.post_ffn = random_vec(rng, size_t(s.dim), 0.8f, 1.2f);
  }
}

// ---- the reference: one float forward pass over all positions, plain loops ----

Vec rms_norm(const Vec& x, const Vec& g, float eps) {
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const float r = float(1.0 / std::sqrt(ss / double(x.size()) + eps));
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * g[i];
  return y;
}

Vec matvec(const Vec& w, const Vec& x, int rows) {
  const size_t cols = x.size();
  Vec y(size_t(rows), 0.0f);
  for (int o = 0; o < rows; ++o) {
    double acc = 0;
    for (size_t i = 0; i < cols; ++i) acc += double(w[size_t(o) * cols + i]) * x[i];
    y[size_t(o)] = float(acc);
  }
  return y;
}

// Rotates every head of v in place: pair i is (i, i + hd/2) for NEOX, (2i, 2i+1) otherwise.
void rope(Vec& v, int n_heads, int hd, int pos, float theta, const Vec& divisors, bool neox) {
  for (int h = 0; h < n_heads; ++h) {
    float* x = v.data() + size_t(h) * hd;
    for (int i = 0; i < hd / 2; ++i) {
      double freq = std::pow(double(theta), -2.0 * i / hd);
      if (!divisors.empty()) freq /= divisors[size_t(i)];
      const double ang = pos * freq, c = std::cos(ang), s = std::sin(ang);
      const int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
      const double x0 = x[a], x1 = x[b];
      x[a] = float(x0 * c - x1 * s);
      x[b] = float(x0 * s + x1 * c);
    }
  }
}

float gelu_tanh(float x) {
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  return float(0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * double(x) * x * x))));
}

Vec reference_logits(const Spec& s, const std::vector<int32_t>& tokens) {
  const int n = int(tokens.size()), hd = s.head_dim, group = s.heads / s.kv_heads;
  std::vector<Vec> x(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) {
    x[size_t(t)].assign(s.emb.begin() + ptrdiff_t(tokens[size_t(t)]) * s.dim,
                        s.emb.begin() + ptrdiff_t(tokens[size_t(t)] + 1) * s.dim);
    if (s.embed_scale)
      for (auto& v : x[size_t(t)]) v *= std::sqrt(float(s.dim));
  }
  for (int l = 0; l < s.layers; ++l) {
    const auto& W = s.L[size_t(l)];
    const bool local_rope = s.local_theta > 0 && s.window_period > 0 && s.local(l);
    const bool windowed = s.window > 0 && s.local(l);
    const float theta = local_rope ? s.local_theta : s.theta;
    const Vec none;
    const Vec& div = local_rope ? none : s.divisors;
    const float mag = local_rope ? 1.0f : s.magnitude;
    std::vector<Vec> q(static_cast<size_t>(n)), k(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    for (int t = 0; t < n; ++t) {
      const Vec h = rms_norm(x[size_t(t)], W.attn_norm, s.eps);
      q[size_t(t)] = matvec(W.wq, h, s.q_dim());
      k[size_t(t)] = matvec(W.wk, h, s.kv_dim());
      v[size_t(t)] = matvec(W.wv, h, s.kv_dim());
      if (s.qk_norm) {
        for (int hh = 0; hh < s.heads; ++hh) {
          Vec part(q[size_t(t)].begin() + hh * hd, q[size_t(t)].begin() + (hh + 1) * hd);
          part = rms_norm(part, W.q_norm, s.eps);
          std::copy(part.begin(), part.end(), q[size_t(t)].begin() + hh * hd);
        }
        for (int hh = 0; hh < s.kv_heads; ++hh) {
          Vec part(k[size_t(t)].begin() + hh * hd, k[size_t(t)].begin() + (hh + 1) * hd);
          part = rms_norm(part, W.k_norm, s.eps);
          std::copy(part.begin(), part.end(), k[size_t(t)].begin() + hh * hd);
        }
      }
      rope(q[size_t(t)], s.heads, hd, t, theta, div, s.neox);
      rope(k[size_t(t)], s.kv_heads, hd, t, theta, div, s.neox);
      for (auto& e : q[size_t(t)]) e *= mag;
      for (auto& e : k[size_t(t)]) e *= mag;
    }
    const float scale = s.query_scale > 0 ? s.query_scale : 1.0f / std::sqrt(float(hd));
    for (int t = 0; t < n; ++t) {
      Vec att(size_t(s.q_dim()), 0.0f);
      for (int hh = 0; hh < s.heads; ++hh) {
        const int kvh = hh / group;
        std::vector<double> sc;
        std::vector<int> js;
        for (int j = 0; j <= t; ++j) {
          if (windowed && t - j >= s.window) continue;
          double dot = 0;
          for (int e = 0; e < hd; ++e) dot += double(q[size_t(t)][size_t(hh * hd + e)]) * k[size_t(j)][size_t(kvh * hd + e)];
          sc.push_back(dot * scale);
          js.push_back(j);
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double sum = 0;
        for (auto& e : sc) sum += (e = std::exp(e - mx));
        for (size_t m = 0; m < js.size(); ++m)
          for (int e = 0; e < hd; ++e)
            att[size_t(hh * hd + e)] += float(sc[m] / sum * v[size_t(js[m])][size_t(kvh * hd + e)]);
      }
      Vec o = matvec(W.wo, att, s.dim);
      if (s.post_norms) o = rms_norm(o, W.post_attn, s.eps);
      for (int i = 0; i < s.dim; ++i) x[size_t(t)][size_t(i)] += o[size_t(i)];
    }
    for (int t = 0; t < n; ++t) {
      const Vec h = rms_norm(x[size_t(t)], W.ffn_norm, s.eps);
      Vec g = matvec(W.gate, h, s.ffn);
      const Vec u = matvec(W.up, h, s.ffn);
      for (int i = 0; i < s.ffn; ++i) {
        const float a = g[size_t(i)];
        g[size_t(i)] = (s.gelu ? gelu_tanh(a) : a / (1.0f + std::exp(-a))) * u[size_t(i)];
      }
      Vec o = matvec(W.down, g, s.dim);
      if (s.post_norms) o = rms_norm(o, W.post_ffn, s.eps);
      for (int i = 0; i < s.dim; ++i) x[size_t(t)][size_t(i)] += o[size_t(i)];
    }
  }
  Vec logits;
  for (int t = 0; t < n; ++t) {
    const Vec l = matvec(s.out, rms_norm(x[size_t(t)], s.out_norm, s.eps), s.vocab);
    logits.insert(logits.end(), l.begin(), l.end());
  }
  return logits;
}

// ---- the GGUF the engine reads ----

std::vector<uint8_t> bytes(const Vec& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

Vec concat(std::initializer_list<const Vec*> parts) {
  Vec out;
  for (const Vec* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

// Writes the spec's weights under its architecture's tensor names; `extra` adds metadata.
void write_gguf(const Spec& s, const std::string& path, const std::function<void(GgufWriter&)>& extra = {}) {
  GgufWriter w;
  const std::string p = s.arch + ".";
  w.set_string("general.architecture", s.arch);
  w.set_u32(p + "context_length", uint32_t(s.ctx));
  w.set_u32(p + "embedding_length", uint32_t(s.dim));
  w.set_u32(p + "feed_forward_length", uint32_t(s.ffn));
  w.set_u32(p + "block_count", uint32_t(s.layers));
  w.set_u32(p + "attention.head_count", uint32_t(s.heads));
  w.set_u32(p + "attention.head_count_kv", uint32_t(s.kv_heads));
  if (s.key_length) {
    w.set_u32(p + "attention.key_length", uint32_t(s.head_dim));
    w.set_u32(p + "attention.value_length", uint32_t(s.head_dim));
  }
  w.set_f32(p + "attention.layer_norm_rms_epsilon", s.eps);
  w.set_f32(p + "rope.freq_base", s.theta);
  if (s.window > 0) w.set_u32(p + "attention.sliding_window", uint32_t(s.window));
  if (extra) extra(w);
  auto mat = [&](const std::string& name, const Vec& v, int rows, int cols) {
    w.add_tensor(name, GgmlType::F32, {uint64_t(cols), uint64_t(rows)}, bytes(v));
  };
  auto vec = [&](const std::string& name, const Vec& v) { w.add_tensor(name, GgmlType::F32, {uint64_t(v.size())}, bytes(v)); };
  mat("token_embd.weight", s.emb, s.vocab, s.dim);
  for (int l = 0; l < s.layers; ++l) {
    const auto& W = s.L[size_t(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    vec(b + "attn_norm.weight", W.attn_norm);
    if (s.fused) {
      mat(b + "attn_qkv.weight", concat({&W.wq, &W.wk, &W.wv}), s.q_dim() + 2 * s.kv_dim(), s.dim);
    } else {
      mat(b + "attn_q.weight", W.wq, s.q_dim(), s.dim);
      mat(b + "attn_k.weight", W.wk, s.kv_dim(), s.dim);
      mat(b + "attn_v.weight", W.wv, s.kv_dim(), s.dim);
    }
    if (s.qk_norm) {
      vec(b + "attn_q_norm.weight", W.q_norm);
      vec(b + "attn_k_norm.weight", W.k_norm);
    }
    mat(b + "attn_output.weight", W.wo, s.dim, s.q_dim());
    if (s.post_norms) vec(b + "post_attention_norm.weight", W.post_attn);
    vec(b + "ffn_norm.weight", W.ffn_norm);
    if (s.fused) {
      mat(b + "ffn_up.weight", concat({&W.gate, &W.up}), 2 * s.ffn, s.dim);
    } else {
      mat(b + "ffn_gate.weight", W.gate, s.ffn, s.dim);
      mat(b + "ffn_up.weight", W.up, s.ffn, s.dim);
    }
    mat(b + "ffn_down.weight", W.down, s.dim, s.ffn);
    if (s.post_norms) vec(b + "post_ffw_norm.weight", W.post_ffn);
  }
  vec("output_norm.weight", s.out_norm);
  mat("output.weight", s.out, s.vocab, s.dim);
  ASSERT_TRUE(w.write(path).ok());
}

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("pagoda_arch_" + std::to_string(::getpid()) + "_" + name)).string();
}

struct Loaded {
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  ModelWeights weights;
};

Result<Loaded> load(const std::string& path, Backend& be) {
  Loaded m;
  auto f = GgufFile::open(path);
  if (!f) return f.take_error();
  m.file = std::move(*f);
  auto c = ModelConfig::from_gguf(*m.file);
  if (!c) return c.take_error();
  m.config = *c;
  auto w = ModelWeights::load(*m.file, m.config, be);
  if (!w) return w.take_error();
  m.weights = std::move(*w);
  return m;
}

Result<Vec> run(const std::string& path, const std::string& backend, const std::vector<int32_t>& tokens) {
  auto be = create_backend(backend);
  if (!be) return be.take_error();
  auto m = load(path, **be);
  if (!m) return m.take_error();
  auto kv = KvCache::create(**be, kv_shape(m->config, 16, DType::F32), 8);
  if (!kv) return kv.take_error();
  ModelRunner runner(**be, m->config, m->weights);
  auto r = evaluate_tokens(runner, *kv, tokens, 0);
  if (!r) return r.take_error();
  return r->logits;
}

double nmse(const Vec& got, const Vec& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return num / den;
}

const std::vector<int32_t> kTokens = {1, 7, 30, 2, 45, 11, 11, 19, 3, 40, 22, 5, 9, 31};

// The file runs on cpu and cpu-ref and matches the reference; `off` variants of the spec (a feature
// switched off in the reference) must move the reference far, so the comparison depends on them.
void expect_matches_reference(const Spec& s, const std::string& path, const std::vector<std::pair<const char*, Spec>>& off) {
  const Vec want = reference_logits(s, kTokens);
  for (const std::string backend : {"cpu", "cpu-ref"}) {
    auto got = run(path, backend, kTokens);
    ASSERT_TRUE(got.ok()) << backend << ": " << got.error();
    EXPECT_LE(nmse(*got, want), 1e-9) << s.arch << " on " << backend;
  }
  for (const auto& [what, o] : off) EXPECT_GT(nmse(reference_logits(o, kTokens), want), 1e-4) << what << " changes nothing";
}

TEST(Gemma3, MatchesReferenceWithLocalRopeBaseWindowAndLinearScaling) {
  Spec s;  // 6 layers: 0-4 local (window 4, base 10000), 5 global (base 1e6, linear factor 8)
  randomize(s, 3);
  s.divisors.assign(size_t(s.head_dim / 2), 8.0f);
  const std::string path = tmp("gemma3.gguf");
  write_gguf(s, path, [](GgufWriter& w) {
    w.set_string("gemma3.rope.scaling.type", "linear");
    w.set_f32("gemma3.rope.scaling.factor", 8.0f);
  });
  Spec no_window = s, one_base = s, no_scaling = s, no_qk = s;
  no_window.window = 0;
  one_base.local_theta = 0;
  no_scaling.divisors.clear();
  no_qk.qk_norm = false;
  expect_matches_reference(s, path, {{"window", no_window}, {"local RoPE base", one_base},
                                     {"linear scaling", no_scaling}, {"q/k norms", no_qk}});
  std::filesystem::remove(path);
}

TEST(Gemma3, ConfigReadsThePatternAndThe27BQueryScale) {
  Spec s;
  s.layers = 62;  // Gemma 3 27B's depth: queries scaled by 1/sqrt(dim / heads), not 1/sqrt(head_dim)
  s.dim = 64;
  s.ffn = 32;
  randomize(s, 5);
  const std::string path = tmp("gemma3-62.gguf");
  write_gguf(s, path);
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok());
  auto c = ModelConfig::from_gguf(**f);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_FLOAT_EQ(c->desc.query_scale, 1.0f / std::sqrt(64.0f / 4.0f));
  EXPECT_EQ(c->desc.window, 4);
  for (int l : {0, 4, 6, 10}) EXPECT_TRUE(c->desc.layer_local_rope(l) && c->desc.layer_windowed(l)) << l;
  for (int l : {5, 11, 59}) EXPECT_FALSE(c->desc.layer_local_rope(l) || c->desc.layer_windowed(l)) << l;
  // A file's own period (attention.sliding_window_pattern) replaces the default 6.
  {
    const std::string p4 = tmp("gemma3-p4.gguf");
    Spec t = s;
    t.layers = 8;
    write_gguf(t, p4, [](GgufWriter& w) { w.set_u32("gemma3.attention.sliding_window_pattern", 4); });
    auto f4 = GgufFile::open(p4);
    ASSERT_TRUE(f4.ok());
    auto c4 = ModelConfig::from_gguf(**f4);
    ASSERT_TRUE(c4.ok()) << c4.error();
    EXPECT_FALSE(c4->desc.layer_windowed(3));
    EXPECT_FALSE(c4->desc.layer_local_rope(7));
    EXPECT_TRUE(c4->desc.layer_windowed(5) && c4->desc.layer_local_rope(5));
    std::filesystem::remove(p4);
  }
  // The reference agrees at that depth (the scale and 10 global layers).
  s.query_scale = 1.0f / std::sqrt(16.0f);
  Spec plain = s;
  plain.query_scale = 0;
  expect_matches_reference(s, path, {{"27B query scale", plain}});
  std::filesystem::remove(path);
}

// HF's YaRN (modeling_rope_utils): inverse frequencies mixed between interpolation (1/factor) and
// extrapolation by a linear ramp over the pair index between the dimensions where a wavelength
// fits beta_fast and beta_slow times into the original context.
Vec yarn_divisors_hf(int hd, float theta, float factor, int orig, float beta_fast, float beta_slow) {
  auto dim_for = [&](double rotations) {  // pair index i with orig / wavelength(i) == rotations
    return hd * std::log(orig / (rotations * 2 * 3.14159265358979323846)) / (2 * std::log(double(theta)));
  };
  const double low = std::max(0.0, std::floor(dim_for(beta_fast))), high = std::min(double(hd - 1), std::ceil(dim_for(beta_slow)));
  Vec out;
  for (int i = 0; i < hd / 2; ++i) {
    const double extrap = std::pow(double(theta), -2.0 * i / hd), interp = extrap / factor;
    const double ramp = std::clamp((i - low) / std::max(high - low, 0.001), 0.0, 1.0);
    const double mask = 1 - ramp;  // extrapolation weight
    out.push_back(float(extrap / (interp * (1 - mask) + extrap * mask)));
  }
  return out;
}

TEST(RopeScaling, YarnDivisorsMatchTheRampAtItsEnds) {
  // head_dim 32, base 1e4, original context 256, factor 4: beta_fast = 32 turns at pair
  // 32 ln(256 / 64 pi) / 2 ln 1e4 = 0.4196 (floored to 0), beta_slow = 1 turn at 6.4403 (ceiled
  // to 7). Pair 0 keeps its frequency, pairs >= 7 are divided by 4, and pair 3, 3/7 of the way
  // along the ramp, by 1 / (4/7 + (3/7) / 4).
  RopeScaling s;
  s.type = RopeScalingType::Yarn;
  s.factor = 4;
  s.orig_ctx = 256;
  EXPECT_NEAR(yarn_corr_dim(32, 256, 32, 1e4f), 0.41964, 1e-4);
  EXPECT_NEAR(yarn_corr_dim(32, 256, 1, 1e4f), 6.44030, 1e-4);
  const Vec d = s.divisors(32, 1e4f);
  ASSERT_EQ(d.size(), 16u);
  EXPECT_FLOAT_EQ(d[0], 1.0f);
  EXPECT_NEAR(d[3], 1.0 / (4.0 / 7 + 3.0 / 7 / 4), 1e-6);
  for (int i = 7; i < 16; ++i) EXPECT_FLOAT_EQ(d[size_t(i)], 4.0f) << i;
  const Vec hf = yarn_divisors_hf(32, 1e4f, 4, 256, 32, 1);
  for (size_t i = 0; i < hf.size(); ++i) EXPECT_NEAR(d[i], hf[i], 1e-5 * hf[i]) << i;
  // Linear: the factor everywhere; none: nothing.
  s.type = RopeScalingType::Linear;
  EXPECT_EQ(s.divisors(32, 1e4f), Vec(16, 4.0f));
  s.type = RopeScalingType::None;
  EXPECT_TRUE(s.divisors(32, 1e4f).empty());
}

TEST(RopeScaling, YarnFileMatchesReference) {
  Spec s;  // a Qwen 3 model (NEOX, q/k norms, SwiGLU) with YaRN x4 over an original 256 positions
  s.arch = "qwen3";
  s.post_norms = s.gelu = s.embed_scale = false;
  s.window = 0;
  s.window_period = 0;
  s.local_theta = 0;
  s.theta = 1e4f;
  s.layers = 2;
  s.ctx = 1024;
  randomize(s, 7);
  s.divisors = yarn_divisors_hf(s.head_dim, s.theta, 4, 256, 32, 1);
  s.magnitude = float(0.1 * std::log(4.0) + 1.0);
  const std::string path = tmp("yarn.gguf");
  write_gguf(s, path, [](GgufWriter& w) {
    w.set_string("qwen3.rope.scaling.type", "yarn");
    w.set_f32("qwen3.rope.scaling.factor", 4.0f);
    w.set_u32("qwen3.rope.scaling.original_context_length", 256);
  });
  Spec no_div = s, no_mag = s;
  no_div.divisors.clear();
  no_mag.magnitude = 1;
  expect_matches_reference(s, path, {{"yarn divisors", no_div}, {"yarn magnitude", no_mag}});

  // rope.scaling.attn_factor multiplies the magnitude (llama.cpp's rope_attn_factor).
  write_gguf(s, path, [](GgufWriter& w) {
    w.set_string("qwen3.rope.scaling.type", "yarn");
    w.set_f32("qwen3.rope.scaling.factor", 4.0f);
    w.set_u32("qwen3.rope.scaling.original_context_length", 256);
    w.set_f32("qwen3.rope.scaling.attn_factor", 0.8f);
  });
  Spec with_attn = s;
  with_attn.magnitude = s.magnitude * 0.8f;
  expect_matches_reference(with_attn, path, {{"attn_factor", s}});
  std::filesystem::remove(path);
}

TEST(RopeScaling, Phi3LongRopeFileMatchesReference) {
  Spec s;  // Phi-3: fused q/k/v and gate/up, NEOX, SwiGLU; LongRoPE factor tensors
  s.arch = "phi3";
  s.fused = true;
  s.qk_norm = s.post_norms = s.gelu = s.embed_scale = false;
  s.key_length = false;
  s.head_dim = s.dim / s.heads;
  s.kv_heads = s.heads;
  s.window = 0;
  s.window_period = 0;
  s.local_theta = 0;
  s.theta = 1e4f;
  s.layers = 2;
  randomize(s, 11);
  std::mt19937 rng(13);
  const Vec long_f = random_vec(rng, size_t(s.head_dim / 2), 1.0f, 6.0f), short_f = random_vec(rng, size_t(s.head_dim / 2), 1.0f, 1.5f);
  const std::string path = tmp("phi3.gguf");
  auto write = [&](int ctx, bool attn_key) {
    s.ctx = ctx;
    write_gguf(s, path, [&](GgufWriter& w) {
      w.set_u32("phi3.rope.scaling.original_context_length", 64);
      if (attn_key) w.set_f32("phi3.rope.scaling.attn_factor", 1.19f);
      w.add_tensor("rope_factors_long.weight", GgmlType::F32, {uint64_t(long_f.size())}, bytes(long_f));
      w.add_tensor("rope_factors_short.weight", GgmlType::F32, {uint64_t(short_f.size())}, bytes(short_f));
    });
  };
  // Context 1024 > original 64: the long factors, and without the key HF's attention factor
  // sqrt(1 + ln(1024 / 64) / ln(64)).
  write(1024, false);
  s.divisors = long_f;
  s.magnitude = float(std::sqrt(1 + std::log(16.0) / std::log(64.0)));
  Spec short_instead = s, no_mag = s;
  short_instead.divisors = short_f;
  no_mag.magnitude = 1;
  expect_matches_reference(s, path, {{"long factors", short_instead}, {"attention factor", no_mag}});
  // Context 64 (not beyond the original): the short factors, and the file's attn_factor.
  write(64, true);
  s.divisors = short_f;
  s.magnitude = 1.19f;
  Spec long_instead = s;
  long_instead.divisors = long_f;
  expect_matches_reference(s, path, {{"short factors", long_instead}});
  std::filesystem::remove(path);
}

// What the runner cannot apply is refused with the key named; scaling enters the cache identity.
TEST(RopeScaling, UnappliedScalingIsRefusedAndScalingIsInTheIdentity) {
  Spec s;
  s.layers = 1;
  randomize(s, 17);
  const std::string path = tmp("bad.gguf");
  auto be = create_backend("cpu");
  ASSERT_TRUE(be.ok());
  struct Bad {
    std::function<void(GgufWriter&)> extra;
    std::string want;
  };
  const Bad bad[] = {
      {[](GgufWriter& w) { w.set_string("gemma3.rope.scaling.type", "dynamic"); },
       "metadata 'gemma3.rope.scaling.type' = 'dynamic' is not implemented"},
      {[](GgufWriter& w) {
         w.set_string("gemma3.rope.scaling.type", "yarn");
         w.set_f32("gemma3.rope.scaling.factor", 4);
         w.set_f32("gemma3.rope.scaling.yarn_log_multiplier", 0.1f);
       },
       "metadata 'gemma3.rope.scaling.yarn_log_multiplier' is not applied by Pagoda's gemma3 runner"},
      {[](GgufWriter& w) {
         w.add_tensor("rope_factors_long.weight", GgmlType::F32, {16}, std::vector<uint8_t>(64, 0));
       },
       "tensor 'rope_factors_short.weight' is missing: LongRoPE needs both factor tensors"},
      {[](GgufWriter& w) { w.set_f32("gemma3.rope.scaling.factor", -2); },
       "metadata 'gemma3.rope.scaling.factor' must be a number >= 0"},
  };
  for (const auto& b : bad) {
    write_gguf(s, path, b.extra);
    auto m = load(path, **be);
    ASSERT_FALSE(m.ok()) << b.want;
    EXPECT_NE(m.error().find(b.want), std::string::npos) << m.error();
  }
  Spec no_window = s;
  no_window.window = 0;
  write_gguf(no_window, path);
  auto m = load(path, **be);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().find("missing metadata 'gemma3.attention.sliding_window', which gemma3 needs"), std::string::npos)
      << m.error();

  // The compute signature (the prefix cache's model_compute) differs with the scaling, the
  // window and the RoPE bases.
  auto signature = [&](const std::function<void(GgufWriter&)>& extra, const Spec& spec) {
    write_gguf(spec, path, extra);
    auto f = GgufFile::open(path);
    auto c = ModelConfig::from_gguf(**f);
    EXPECT_TRUE(c.ok()) << c.error();
    return c ? c->compute_signature() : std::string();
  };
  const std::string base = signature({}, s);
  Spec other_window = s, other_base = s;
  other_window.window = 8;
  other_base.theta = 5e5f;
  EXPECT_NE(base, signature([](GgufWriter& w) { w.set_f32("gemma3.rope.scaling.factor", 8); }, s));
  EXPECT_NE(base, signature([](GgufWriter& w) {
              w.set_string("gemma3.rope.scaling.type", "yarn");
              w.set_f32("gemma3.rope.scaling.factor", 8);
            }, s));
  EXPECT_NE(base, signature({}, other_window));
  EXPECT_NE(base, signature({}, other_base));
  EXPECT_EQ(base, signature({}, s));
  std::filesystem::remove(path);
}

// Vulkan runs gemma3 (no RoPE factors needed without scaling) and agrees with the CPU.
TEST(Gemma3, VulkanMatchesCpu) {
  auto vk = create_backend("vulkan");
  if (!vk) GTEST_SKIP() << "vulkan: " << vk.error();
  Spec s;
  randomize(s, 23);
  const std::string path = tmp("gemma3-vk.gguf");
  write_gguf(s, path);
  auto cpu = run(path, "cpu", kTokens);
  ASSERT_TRUE(cpu.ok()) << cpu.error();
  auto gpu = run(path, "vulkan", kTokens);
  if (!gpu && gpu.error().find("backend does not support") != std::string::npos) GTEST_SKIP() << gpu.error();
  ASSERT_TRUE(gpu.ok()) << gpu.error();
  EXPECT_LE(nmse(*gpu, *cpu), 1e-6);
  EXPECT_LE(nmse(*cpu, reference_logits(s, kTokens)), 1e-9);
  std::filesystem::remove(path);
}

// `pagoda synth --arch A` writes each architecture's tensors and keys: every one loads (nothing
// refused as unused or missing) and evaluates; an unknown architecture is a clear error.
TEST(Synth, EveryArchitectureLoadsAndRuns) {
  const std::string pagoda = std::string(PAGODA_BINARY_DIR) + "/pagoda";
  const std::string vocab = std::string(PAGODA_MODELS_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";
  if (!std::filesystem::exists(vocab)) GTEST_SKIP() << "missing " << vocab;
  const std::string path = tmp("synth.gguf");
  for (const std::string a : {"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"}) {
    const auto w = pagoda::testing::run_shell(pagoda + " synth --preset tiny --arch " + a + " --vocab-from " + vocab +
                                              " -o " + path);
    ASSERT_EQ(w.code, 0) << w.out;
    const auto info = pagoda::testing::run_shell(pagoda + " info " + path);
    EXPECT_NE(info.out.find("architecture: " + a + " "), std::string::npos) << info.out;
    const auto r = pagoda::testing::run_shell(pagoda + " eval -m " + path + " --tokens \"1 403 407\" --greedy 2");
    EXPECT_EQ(r.code, 0) << a << ": " << r.out;
  }
  const auto bad = pagoda::testing::run_shell(pagoda + " synth --preset tiny --arch mamba -o " + path);
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("synth: unknown architecture 'mamba' (choose llama, qwen2, qwen3, gemma2, gemma3 or phi3)"),
            std::string::npos)
      << bad.out;
  std::filesystem::remove(path);
}

}  // namespace
