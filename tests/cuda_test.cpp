// CUDA backend against the CPU reference: every op on random inputs (seed printed), matmul and
// embed for every weight type (F32, F16, BF16 and all ggml blocks) and row count (matvec and
// tensor-core paths, NMSE < 5e-4), rope with Llama 3 frequency factors, paged attention for
// decode at a long context (split-K) and mixed prefill, exact argmax/sampling/verify, and error
// reporting (out-of-memory alloc, bad shapes). Every test skips, saying why, on a machine with no
// NVIDIA GPU or driver; where one is present but the backend cannot open it (a driver older than
// the runtime, a device hidden from the process), every test FAILS: that build cannot run there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cuda/cuda_backend.h"
#include "core/util/half.h"

using namespace pagoda;

namespace {

// The NVIDIA kernel driver is loaded (it publishes its version) or a GPU device node exists.
bool nvidia_gpu_present() {
  return std::filesystem::exists("/proc/driver/nvidia/version") || std::filesystem::exists("/dev/nvidia0");
}

uint64_t fresh_seed() {
  const uint64_t s = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(s));
  return s;
}

struct Buf {
  BufferPtr owner;
  Tensor t;
};

Buf make(Backend& be, DType dt, int64_t rows, int64_t cols) {
  auto b = be.alloc(std::max<size_t>(row_bytes(dt, cols) * size_t(rows), 1));
  EXPECT_TRUE(b.ok()) << (b.ok() ? "" : b.error());
  if (!b.ok()) return {};
  Buf out{std::move(*b), {}};
  out.t = Tensor{out.owner.get(), 0, dt, rows, cols};
  return out;
}

// The same tensor on the GPU and on the reference, filled with the same bytes.
struct Twin {
  Buf g, c;
};

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = create_cuda_backend(-1);
    if (!b && nvidia_gpu_present())
      FAIL() << "an NVIDIA GPU/driver is present but the CUDA backend cannot run on it: " << b.error();
    if (!b) GTEST_SKIP() << "no NVIDIA GPU or driver here (no /proc/driver/nvidia/version, no /dev/nvidia0): " << b.error();
    gpu_ = std::move(*b);
    rng_.seed(fresh_seed());
  }

  Twin twin(DType dt, int64_t rows, int64_t cols, const void* bytes) {
    Twin t{make(*gpu_, dt, rows, cols), make(cpu_, dt, rows, cols)};
    const size_t n = row_bytes(dt, cols) * size_t(rows);
    if (bytes && n) {
      gpu_->upload(t.g.t, bytes, n);
      cpu_.upload(t.c.t, bytes, n);
    }
    return t;
  }
  Twin twin_f32(int64_t rows, int64_t cols, const std::vector<float>& v) { return twin(DType::F32, rows, cols, v.data()); }
  Twin twin_i32(int64_t rows, int64_t cols, const std::vector<int32_t>& v) { return twin(DType::I32, rows, cols, v.data()); }
  Twin twin_out(DType dt, int64_t rows, int64_t cols) {
    std::vector<uint8_t> zeros(row_bytes(dt, cols) * size_t(rows), 0);
    return twin(dt, rows, cols, zeros.data());
  }

  template <class T>
  std::vector<T> read(Backend& be, const Buf& b) {
    std::vector<T> v(b.t.bytes() / sizeof(T));
    be.download(b.t, v.data(), v.size() * sizeof(T));
    return v;
  }
  void expect_synced() {
    Status s = gpu_->sync();
    EXPECT_TRUE(s.ok()) << s.error();
  }

  std::vector<float> randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng_);
    return v;
  }
  std::vector<uint8_t> quantize(DType dt, const std::vector<float>& v, int64_t rows, int64_t cols) {
    std::vector<uint8_t> q(row_bytes(dt, cols) * size_t(rows));
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(dt, v.data() + r * cols, q.data() + size_t(r) * row_bytes(dt, cols), cols);
    return q;
  }

  static double nmse(const std::vector<float>& got, const std::vector<float>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double d = double(got[i]) - double(want[i]);
      num += d * d;
      den += double(want[i]) * want[i];
    }
    return num / std::max(den, 1e-30);
  }
  // Downloads `out` from both sides and checks the normalized mean squared error.
  void expect_close(const Twin& out, double tol, const std::string& what) {
    const auto g = read<float>(*gpu_, out.g), c = read<float>(cpu_, out.c);
    expect_synced();
    for (float x : g) ASSERT_TRUE(std::isfinite(x)) << what << ": non-finite output";
    EXPECT_LT(nmse(g, c), tol) << what;
  }
  void expect_equal_i32(const Twin& out, const std::string& what) {
    const auto g = read<int32_t>(*gpu_, out.g), c = read<int32_t>(cpu_, out.c);
    expect_synced();
    EXPECT_EQ(g, c) << what;
  }

  // Paged attention on both backends. Blocks are handed out in shuffled order, and every slot no
  // sequence owns is poisoned with NaN: reading past ctx_len would show up as a non-finite output.
  void check_attention(std::vector<SeqInfo> seqs, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                       int32_t block_size, DType kv, const std::string& what) {
    const int64_t kv_cols = int64_t(n_kv_heads) * head_dim, q_cols = int64_t(n_heads) * head_dim;
    int32_t n_tokens = 0, n_blocks = 0;
    for (const auto& s : seqs) {
      n_tokens = std::max(n_tokens, s.q_start + s.q_len);
      n_blocks += (s.ctx_len + block_size - 1) / block_size;
    }
    const int64_t n_slots = int64_t(n_blocks + 3) * block_size;
    std::vector<int32_t> perm(size_t(n_blocks + 3));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng_);
    std::vector<int32_t> bt;
    std::vector<float> kf(size_t(n_slots * kv_cols), NAN), vf(size_t(n_slots * kv_cols), NAN);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& s : seqs) {
      s.bt_offset = int32_t(bt.size());
      const int32_t nb = (s.ctx_len + block_size - 1) / block_size;
      for (int32_t b = 0; b < nb; ++b) bt.push_back(perm[bt.size()]);
      for (int32_t p = 0; p < s.ctx_len; ++p) {
        const int64_t slot = int64_t(bt[size_t(s.bt_offset + p / block_size)]) * block_size + p % block_size;
        for (int64_t i = 0; i < kv_cols; ++i) {
          kf[size_t(slot * kv_cols + i)] = nd(rng_);
          vf[size_t(slot * kv_cols + i)] = nd(rng_);
        }
      }
    }
    const auto q = randn(size_t(n_tokens * q_cols));
    const auto kb = quantize(kv, kf, n_slots, kv_cols), vb = quantize(kv, vf, n_slots, kv_cols);
    Twin tq = twin_f32(n_tokens, q_cols, q);
    Twin tk = twin(kv, n_slots, kv_cols, kb.data()), tv = twin(kv, n_slots, kv_cols, vb.data());
    Twin ts = twin(DType::I32, int64_t(seqs.size()), 4, seqs.data());
    Twin tb = twin_i32(int64_t(bt.size()), 1, bt);
    Twin to = twin_out(DType::F32, n_tokens, q_cols);
    AttentionParams p;
    p.n_seqs = int32_t(seqs.size());
    p.n_heads = n_heads;
    p.n_kv_heads = n_kv_heads;
    p.head_dim = head_dim;
    p.block_size = block_size;
    for (const auto& s : seqs) p.max_ctx_len = std::max(p.max_ctx_len, s.ctx_len);
    p.scale = 1.0f / std::sqrt(float(head_dim));
    gpu_->paged_attention(tq.g.t, tk.g.t, tv.g.t, ts.g.t, tb.g.t, to.g.t, p);
    cpu_.paged_attention(tq.c.t, tk.c.t, tv.c.t, ts.c.t, tb.c.t, to.c.t, p);
    expect_close(to, 1e-5, what);
  }

  BackendPtr gpu_;
  CpuBackend cpu_{CpuOptions{.reference = true}};
  std::mt19937_64 rng_;
};

// Every weight type the CUDA backend has kernels for.
constexpr DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16,   DType::Q8_0, DType::Q4_0,
                                  DType::Q4_1, DType::Q5_0, DType::Q5_1,   DType::IQ4_NL, DType::Q2_K,
                                  DType::Q3_K, DType::Q4_K, DType::Q5_K,   DType::Q6_K};

TEST_F(CudaTest, ReportsDeviceInfo) {
  const BackendInfo i = gpu_->info();
  EXPECT_EQ(i.name, "cuda");
  EXPECT_TRUE(i.is_gpu);
  EXPECT_EQ(i.subgroup_size, 32u);
  EXPECT_GT(i.memory_bytes, 0u);
  EXPECT_FALSE(i.device.empty());
  std::printf("%s | %s\n", i.device.c_str(), i.driver.c_str());
}

// Row counts cover the matvec widths (1, 2, 4, 8 rows per weight pass) and the GEMM with partial
// tiles; n_in values cover partial staging chunks, K tails and unaligned (scalar) rows.
TEST_F(CudaTest, MatmulMatchesReferenceForEveryWeightType) {
  struct Shape {
    int64_t n, n_in, n_out;
  };
  // 9 and 23 rows: matvec passes of 8 (the last partial); 65 and 70: the tiled GEMM (over 32 rows).
  const Shape shapes[] = {{1, 4096, 256}, {2, 320, 130}, {3, 1088, 67}, {8, 256, 33}, {9, 320, 130},
                          {23, 1088, 67}, {65, 256, 40}, {70, 1024, 200}};
  // 256-element super-blocks: widths cover one and several staging chunks (1024 or 2048 elements)
  // and partial ones.
  const Shape k_shapes[] = {{1, 4096, 256}, {2, 512, 130}, {3, 2304, 67}, {8, 256, 33}, {9, 768, 130},
                            {23, 2304, 67}, {65, 512, 40}, {70, 1024, 200}};
  for (DType dt : kWeightTypes) {
    const bool super = dtype_block_elems(dt) == 256;
    for (const Shape& s : super ? k_shapes : shapes) {
      const auto w = randn(size_t(s.n_out * s.n_in)), x = randn(size_t(s.n * s.n_in));
      const auto wq = quantize(dt, w, s.n_out, s.n_in);
      Twin tw = twin(dt, s.n_out, s.n_in, wq.data()), tx = twin_f32(s.n, s.n_in, x);
      Twin to = twin_out(DType::F32, s.n, s.n_out);
      gpu_->matmul(tw.g.t, tx.g.t, to.g.t);
      cpu_.matmul(tw.c.t, tx.c.t, to.c.t);
      expect_close(to, 5e-4, std::string(dtype_name(dt)) + " n=" + std::to_string(s.n) +
                                  " n_in=" + std::to_string(s.n_in) + " n_out=" + std::to_string(s.n_out));
    }
  }
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {  // n_in not a multiple of 8: scalar tails
    for (int64_t n : {1, 12}) {
      const int64_t n_in = 100, n_out = 45;
      const auto w = randn(size_t(n_out * n_in)), x = randn(size_t(n * n_in));
      const auto wq = quantize(dt, w, n_out, n_in);
      Twin tw = twin(dt, n_out, n_in, wq.data()), tx = twin_f32(n, n_in, x), to = twin_out(DType::F32, n, n_out);
      gpu_->matmul(tw.g.t, tx.g.t, to.g.t);
      cpu_.matmul(tw.c.t, tx.c.t, to.c.t);
      expect_close(to, 5e-4, std::string(dtype_name(dt)) + " odd n_in, n=" + std::to_string(n));
    }
  }
}

// Up to kMatvecPassRows (32) rows, a row's result is bit-identical to the same row computed alone: a
// speculative verify batch or a short prompt must score a token exactly as decode does.
TEST_F(CudaTest, MatmulRowsDoNotDependOnTheirBatch) {
  for (DType dt : kWeightTypes) {
    const int64_t n = 23, n_in = dtype_block_elems(dt) == 256 ? 2304 : 1088, n_out = 67;
    const auto x = randn(size_t(n * n_in));
    const auto wq = quantize(dt, randn(size_t(n_out * n_in)), n_out, n_in);
    Twin tw = twin(dt, n_out, n_in, wq.data()), tx = twin_f32(n, n_in, x), to = twin_out(DType::F32, n, n_out);
    gpu_->matmul(tw.g.t, tx.g.t, to.g.t);
    const auto all = read<float>(*gpu_, to.g);
    for (int64_t r : {0, 7, 8, 17, 22}) {
      Twin t1 = twin_f32(1, n_in, std::vector<float>(x.begin() + r * n_in, x.begin() + (r + 1) * n_in));
      Twin o1 = twin_out(DType::F32, 1, n_out);
      gpu_->matmul(tw.g.t, t1.g.t, o1.g.t);
      const auto one = read<float>(*gpu_, o1.g);
      expect_synced();
      EXPECT_TRUE(std::equal(one.begin(), one.end(), all.begin() + r * n_out))
          << dtype_name(dt) << ": row " << r << " of " << n << " differs from the row alone";
    }
  }
}

TEST_F(CudaTest, PagedAttentionMatchesReference) {
  for (DType kv : {DType::F32, DType::F16}) {
    const std::string tag = std::string(" kv=") + dtype_name(kv);
    // Decode at long contexts: few CTAs per query, so the context is split and recombined.
    check_attention({{0, 1, 3000, 0}, {1, 1, 1700, 0}, {2, 1, 5, 0}}, 8, 2, 128, 16, kv, "decode split-K" + tag);
    // Mixed batch: a prefill chunk continuing a cached prefix, a decode row and a fresh prompt,
    // with GQA groups of 4 and head_dim 64.
    check_attention({{0, 40, 100, 0}, {40, 1, 77, 0}, {41, 23, 23, 0}}, 8, 2, 64, 16, kv, "prefill+decode" + tag);
    // Speculative verification rows (q_len 5), no GQA, block size 32.
    check_attention({{0, 5, 600, 0}, {5, 5, 9, 0}}, 4, 4, 128, 32, kv, "spec rows" + tag);
  }
}

TEST_F(CudaTest, ElementwiseOpsMatchReference) {
  const int64_t n = 5, dim = 256, heads = 4, hd = 64, vocab = 40;
  // embed, every table type
  for (DType dt : kWeightTypes) {
    EXPECT_TRUE(gpu_->supports(Op::Embed, dt) && gpu_->supports(Op::Matmul, dt)) << dtype_name(dt);
    const auto table = quantize(dt, randn(size_t(vocab * dim)), vocab, dim);
    Twin tt = twin(dt, vocab, dim, table.data()), ti = twin_i32(n, 1, {3, 0, 39, 3, 17});
    Twin to = twin_out(DType::F32, n, dim);
    gpu_->embed(tt.g.t, ti.g.t, to.g.t);
    cpu_.embed(tt.c.t, ti.c.t, to.c.t);
    expect_close(to, 1e-12, std::string("embed ") + dtype_name(dt));
  }
  const auto x = randn(size_t(n * dim)), y = randn(size_t(n * dim)), w = randn(size_t(dim));
  {
    Twin tx = twin_f32(n, dim, x), tw = twin_f32(1, dim, w), to = twin_out(DType::F32, n, dim);
    gpu_->rms_norm(tx.g.t, tw.g.t, to.g.t, 1e-5f);
    cpu_.rms_norm(tx.c.t, tw.c.t, to.c.t, 1e-5f);
    expect_close(to, 1e-10, "rms_norm");
  }
  {
    Twin tx = twin_f32(n, heads * hd, x), tp = twin_i32(n, 1, {0, 1, 7, 1000, 4095});
    gpu_->rope(tx.g.t, tp.g.t, int32_t(heads), int32_t(hd), 10000.0f);
    cpu_.rope(tx.c.t, tp.c.t, int32_t(heads), int32_t(hd), 10000.0f);
    // The frequencies come from the host's powf as the reference's do (the device powf differed by
    // an ulp, which turns a pair at position 4095 by ~2e-4 rad), so only sincosf's last bit differs.
    expect_close(tx, 1e-7, "rope");
  }
  {  // Llama 3 frequency divisors (1..8, as its files hold them)
    ASSERT_TRUE(gpu_->supports(Op::RopeFreqs, DType::F32));
    std::vector<float> factors(size_t(hd / 2));
    std::uniform_real_distribution<float> ud(1.0f, 8.0f);
    for (auto& f : factors) f = ud(rng_);
    Twin tx = twin_f32(n, heads * hd, x), tp = twin_i32(n, 1, {0, 1, 7, 1000, 8191}), tf = twin_f32(1, hd / 2, factors);
    gpu_->rope_freqs(tx.g.t, tp.g.t, tf.g.t, int32_t(heads), int32_t(hd), 500000.0f);
    cpu_.rope_freqs(tx.c.t, tp.c.t, tf.c.t, int32_t(heads), int32_t(hd), 500000.0f);
    expect_close(tx, 1e-7, "rope_freqs");
  }
  {
    Twin ta = twin_f32(n, dim, x), tb = twin_f32(n, dim, y);
    gpu_->silu_mul(ta.g.t, tb.g.t, ta.g.t);  // out aliases gate
    cpu_.silu_mul(ta.c.t, tb.c.t, ta.c.t);
    expect_close(ta, 1e-10, "silu_mul");
    gpu_->add(ta.g.t, tb.g.t, ta.g.t);  // out aliases a
    cpu_.add(ta.c.t, tb.c.t, ta.c.t);
    expect_close(ta, 1e-12, "add");
  }
  for (DType kv : {DType::F32, DType::F16}) {
    Twin tk = twin_f32(n, dim, x), tv = twin_f32(n, dim, y), ts = twin_i32(n, 1, {7, -1, 0, 9, -5});
    Twin kc = twin_out(kv, 10, dim), vc = twin_out(kv, 10, dim);
    gpu_->kv_store(tk.g.t, tv.g.t, kc.g.t, vc.g.t, ts.g.t);
    cpu_.kv_store(tk.c.t, tv.c.t, kc.c.t, vc.c.t, ts.c.t);
    const auto gk = read<uint8_t>(*gpu_, kc.g), ck = read<uint8_t>(cpu_, kc.c);
    const auto gv = read<uint8_t>(*gpu_, vc.g), cv = read<uint8_t>(cpu_, vc.c);
    expect_synced();
    EXPECT_EQ(gk, ck) << "kv_store k " << dtype_name(kv);
    EXPECT_EQ(gv, cv) << "kv_store v " << dtype_name(kv);
  }
  {
    const auto logits = randn(size_t(3 * 50000), 4.0f);
    Twin tx = twin_f32(3, 50000, logits), to = twin_out(DType::F32, 3, 50000);
    gpu_->softmax(tx.g.t, to.g.t, 0.7f);
    cpu_.softmax(tx.c.t, to.c.t, 0.7f);
    expect_close(to, 1e-10, "softmax");
    gpu_->softmax(tx.g.t, tx.g.t, 1.3f);  // in place
    cpu_.softmax(tx.c.t, tx.c.t, 1.3f);
    expect_close(tx, 1e-10, "softmax in place");
  }
}

TEST_F(CudaTest, ArgmaxTakesFirstIndexOnTies) {
  const int64_t rows = 4, vocab = 50000;
  std::vector<float> x = randn(size_t(rows * vocab));
  x[size_t(0 * vocab + 123)] = 50.0f;  // ties: the first must win
  x[size_t(0 * vocab + 40000)] = 50.0f;
  x[size_t(1 * vocab + 49999)] = 60.0f;
  x[size_t(1 * vocab + 7)] = 60.0f;
  std::fill(x.begin() + 2 * vocab, x.begin() + 3 * vocab, -INFINITY);  // all equal: index 0
  Twin tx = twin_f32(rows, vocab, x), to = twin_out(DType::I32, rows, 1);
  gpu_->argmax(tx.g.t, to.g.t);
  cpu_.argmax(tx.c.t, to.c.t);
  const auto g = read<int32_t>(*gpu_, to.g);
  expect_synced();
  EXPECT_EQ(g[0], 123);
  EXPECT_EQ(g[1], 7);
  EXPECT_EQ(g[2], 0);
  expect_equal_i32(to, "argmax");
  Twin small = twin_f32(1, 7, {1, 3, 2, 3, -1, 0, 3}), so = twin_out(DType::I32, 1, 1);
  gpu_->argmax(small.g.t, so.g.t);
  cpu_.argmax(small.c.t, so.c.t);
  expect_equal_i32(so, "argmax short row");
}

TEST_F(CudaTest, SampleProbsMatchesReference) {
  const int64_t rows = 64, vocab = 32000;
  std::vector<float> probs(size_t(rows * vocab));
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  for (auto& p : probs) p = ud(rng_) < 0.3f ? 0.0f : ud(rng_);  // unnormalized, with zeros
  std::fill(probs.begin() + 5 * vocab + 100, probs.begin() + 6 * vocab, 0.0f);  // zero tail: fallback path
  std::vector<float> u(static_cast<size_t>(rows));
  for (auto& x : u) x = ud(rng_);
  u[5] = 0.99999994f;
  u[0] = 0.0f;
  Twin tp = twin_f32(rows, vocab, probs), tu = twin_f32(rows, 1, u), to = twin_out(DType::I32, rows, 1);
  gpu_->sample_probs(tp.g.t, tu.g.t, to.g.t);
  cpu_.sample_probs(tp.c.t, tu.c.t, to.c.t);
  expect_equal_i32(to, "sample_probs");
}

TEST_F(CudaTest, VerifyMatchesReference) {
  const int32_t n_seqs = 6, vocab = 1000, max_k = 4;
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  std::vector<int32_t> meta, toks(size_t(n_seqs * max_k), 0);
  int32_t rows = 0, drows = 0;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const int32_t k = s % (max_k + 1);
    meta.insert(meta.end(), {rows, drows, k});
    rows += k + 1;
    drows += k;
  }
  // Peaked distributions so both acceptances and rejections occur.
  auto dist = [&](int32_t n) {
    std::vector<float> p(size_t(n) * vocab);
    for (int32_t r = 0; r < n; ++r) {
      double sum = 0;
      for (int32_t i = 0; i < vocab; ++i) sum += p[size_t(r * vocab + i)] = std::pow(ud(rng_), 8.0f);
      for (int32_t i = 0; i < vocab; ++i) p[size_t(r * vocab + i)] = float(p[size_t(r * vocab + i)] / sum);
    }
    return p;
  };
  const auto target = dist(rows), draft = dist(std::max(drows, 1));
  for (int32_t s = 0; s < n_seqs; ++s)
    for (int32_t j = 0; j < meta[size_t(s * 3 + 2)]; ++j) {  // draft tokens: mostly the target's argmax
      const float* pt = target.data() + size_t(meta[size_t(s * 3)] + j) * vocab;
      toks[size_t(s * max_k + j)] = ud(rng_) < 0.7f ? int32_t(std::max_element(pt, pt + vocab) - pt)
                                                    : int32_t(ud(rng_) * (vocab - 1));
    }
  std::vector<float> uni(size_t(n_seqs * (max_k + 1)));
  for (auto& x : uni) x = ud(rng_);
  Twin tt = twin_f32(rows, vocab, target), td = twin_f32(std::max(drows, 1), vocab, draft);
  Twin tk = twin_i32(n_seqs, max_k, toks), tm = twin_i32(n_seqs, 3, meta), tu = twin_f32(n_seqs, max_k + 1, uni);
  for (bool greedy : {false, true}) {
    Twin to = twin_out(DType::I32, n_seqs, 2);
    VerifyParams p{n_seqs, vocab, max_k, greedy};
    gpu_->verify(tt.g.t, td.g.t, tk.g.t, tm.g.t, tu.g.t, to.g.t, p);
    cpu_.verify(tt.c.t, td.c.t, tk.c.t, tm.c.t, tu.c.t, to.c.t, p);
    expect_equal_i32(to, greedy ? "verify greedy" : "verify sampled");
  }
}

TEST_F(CudaTest, OutOfMemoryAllocReturnsError) {
  auto b = gpu_->alloc(size_t(1) << 50);  // 1 PiB
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().find("cudaMalloc"), std::string::npos) << b.error();
  auto small = gpu_->alloc(4096);  // the failure is not sticky
  EXPECT_TRUE(small.ok());
  expect_synced();
}

TEST_F(CudaTest, BadShapeIsReportedBySyncAndCleared) {
  Buf w = make(*gpu_, DType::F32, 16, 32), x = make(*gpu_, DType::F32, 2, 48), o = make(*gpu_, DType::F32, 2, 16);
  gpu_->matmul(w.t, x.t, o.t);  // x.cols != w.cols
  Status s = gpu_->sync();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("matmul"), std::string::npos) << s.error();
  expect_synced();  // reported once; the device is still usable
  // A K-quant row that is not a whole number of 256-element super-blocks.
  Buf wk = make(*gpu_, DType::Q4_K, 4, 288), xk = make(*gpu_, DType::F32, 1, 288), ok = make(*gpu_, DType::F32, 1, 4);
  gpu_->matmul(wk.t, xk.t, ok.t);
  s = gpu_->sync();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("256-element blocks"), std::string::npos) << s.error();
  expect_synced();
}

TEST_F(CudaTest, OpTimingCountsOps) {
  auto* cuda = dynamic_cast<CudaBackend*>(gpu_.get());
  ASSERT_NE(cuda, nullptr);
  cuda->set_op_timing(true);
  const auto v = randn(1024);
  Twin a = twin_f32(1, 1024, v);
  for (int i = 0; i < 3; ++i) gpu_->add(a.g.t, a.g.t, a.g.t);
  const auto times = cuda->take_op_times();
  ASSERT_EQ(times.size(), 1u);
  EXPECT_EQ(times[0].op, Op::Add);
  EXPECT_EQ(times[0].count, 3);
  EXPECT_GE(times[0].ms, 0.0);
  expect_synced();
}

}  // namespace
