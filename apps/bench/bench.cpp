#include "apps/bench/bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pagoda {
namespace {

constexpr int kChains = 12;  // FMA latency (4 cycles) x 2 ports needs 8 in flight; 12 leaves margin
constexpr int kLanes = 8;

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iters) {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);  // converges: no inf, no denormals
  __m256 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(float(j));
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  __m256 sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm256_add_ps(sum, acc[j]);
  float lanes[kLanes];
  _mm256_storeu_ps(lanes, sum);
  return lanes[0] + lanes[kLanes - 1];
}

// The same chains in 512-bit registers, for a CPU that executes AVX-512 FMAs (a 256-bit peak would
// understate it by up to half, and the integer kernels there are 512-bit). kChains x 16 lanes.
__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iters) {
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(float(j));
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  __m512 sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm512_add_ps(sum, acc[j]);
  float lanes[16];
  _mm512_storeu_ps(lanes, sum);
  return lanes[0] + lanes[15];
}

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool cpu_has_avx512f() { return __builtin_cpu_supports("avx512f"); }
#else
float fma_chains_avx2(int64_t) { return 0; }
float fma_chains_avx512(int64_t) { return 0; }
bool cpu_has_avx2_fma() { return false; }
bool cpu_has_avx512f() { return false; }
#endif

// The same chains in plain C++: the compiler vectorizes them for whatever the build targets.
float fma_chains_portable(int64_t iters) {
  float acc[kChains][kLanes];
  for (int j = 0; j < kChains; ++j)
    for (int l = 0; l < kLanes; ++l) acc[j][l] = float(j + l);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kChains; ++j)
      for (int l = 0; l < kLanes; ++l) acc[j][l] = acc[j][l] * 0.999f + 1e-3f;
  float sum = 0;
  for (int j = 0; j < kChains; ++j)
    for (int l = 0; l < kLanes; ++l) sum += acc[j][l];
  return sum;
}

uint64_t tensor_bytes(const Tensor& t) { return uint64_t(t.bytes()); }

}  // namespace

DecodeByteBudget decode_byte_budget(const ModelConfig& c, const ModelWeights& w, DType kv_dtype, double context) {
  DecodeByteBudget b;
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) b.matmul_weights += tensor_bytes(*t);
    b.norms += tensor_bytes(l.attn_norm) + tensor_bytes(l.ffn_norm);
  }
  b.matmul_weights += tensor_bytes(w.output);  // the whole vocabulary projection, tied or not
  b.norms += tensor_bytes(w.output_norm);
  b.embedding_row = row_bytes(w.tok_embd.dtype, w.tok_embd.cols);
  const uint64_t per_token = c.kv_bytes_per_token(uint32_t(row_bytes(kv_dtype, 1)));
  b.context = context;
  b.kv_read = uint64_t(double(per_token) * context);
  b.kv_write = per_token;
  return b;
}

FmaPeak measure_fma_peak(int threads, int repeats) {
  FmaPeak p;
  p.threads = std::max(1, threads);
  const bool avx512 = cpu_has_avx512f(), avx2 = cpu_has_avx2_fma();
  p.isa = avx512 ? "avx512f" : avx2 ? "avx2+fma" : "portable";
  const int lanes = avx512 ? 16 : kLanes;
  constexpr int64_t kIters = 1 << 23;  // ~30 ms per thread at AVX2 rates
  std::vector<float> sink(size_t(p.threads));
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < p.threads; ++t)
      ts.emplace_back([&, t] {
        sink[size_t(t)] = avx512 ? fma_chains_avx512(kIters) : avx2 ? fma_chains_avx2(kIters) : fma_chains_portable(kIters);
      });
    for (auto& th : ts) th.join();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Best, not median: a peak is what the cores can do, and other load only ever lowers a run.
    p.flop_s = std::max(p.flop_s, double(p.threads) * double(kIters) * 2.0 * kChains * lanes / sec);
  }
  volatile float keep = sink[0];
  (void)keep;
  return p;
}

double median(std::vector<double> v) { return percentile(std::move(v), 50); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(idx), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - double(lo));
}

Result<double> measure_matmul_rate(Backend& be, int64_t m, int64_t k, int64_t n, int repeats) {
  std::vector<BufferPtr> keep;
  Tensor t[3];
  const int64_t shapes[3][2] = {{n, k}, {m, k}, {m, n}};  // w, x, out
  for (int i = 0; i < 3; ++i) {
    auto b = be.alloc(size_t(shapes[i][0] * shapes[i][1]) * 4);
    if (!b) return make_error("matmul rate: " + b.error());
    t[i] = Tensor{b->get(), 0, DType::F32, shapes[i][0], shapes[i][1]};
    keep.push_back(std::move(*b));
  }
  for (int i = 0; i < 2; ++i) {  // small values, so nothing denormal or infinite slows the math
    std::vector<float> v(static_cast<size_t>(shapes[i][0] * shapes[i][1]));
    for (size_t j = 0; j < v.size(); ++j) v[j] = float(int(j * 2654435761u % 2001) - 1000) * 1e-3f;
    be.upload(t[i], v.data(), v.size() * 4);
  }
  // In the layout the model loader gives F32 weights (the CPU backend's panels).
  if (Result<bool> packed = be.repack_matmul_weight(t[0]); !packed) return make_error("matmul rate: " + packed.error());
  std::vector<double> rates;
  for (int r = 0; r <= repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    be.matmul(t[0], t[1], t[2]);
    if (Status s = be.sync(); !s) return make_error("matmul rate: " + s.error());
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) rates.push_back(2.0 * double(m) * double(k) * double(n) / sec);  // first: warm-up
  }
  return median(rates);
}

double matmul_flops_per_token(const ModelConfig& c, bool with_output) {
  const double q = double(c.n_heads) * c.head_dim, kv = double(c.n_kv_heads) * c.head_dim;
  const double per_layer = c.dim * q + 2 * c.dim * kv + q * c.dim + 3.0 * c.dim * c.ffn_dim;
  return 2.0 * (c.n_layers * per_layer + (with_output ? double(c.vocab) * c.dim : 0.0));
}

double measure_copy_bandwidth(uint64_t bytes, int repeats) {
  std::unique_ptr<char[]> a(new char[bytes]), b(new char[bytes]);
  std::memset(a.get(), 1, bytes);
  std::memset(b.get(), 2, bytes);
  std::vector<double> rates;
  for (int i = 0; i <= repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.get(), a.get(), bytes);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) rates.push_back(2.0 * double(bytes) / s);  // first pass is warm-up (page faults)
  }
  // Keep the copy observable so it is not optimized away.
  volatile char sink = b[bytes / 2];
  (void)sink;
  return median(rates);
}

namespace {

// The probe's loops measure the memory system, so a sanitizer's checks on every load would only
// slow them (with them the sanitized suite's `bench decode` test took 182 s, without 148 s).
__attribute__((no_sanitize("address", "undefined"))) void fill_probe(float* buf, size_t n) {
  for (size_t i = 0; i < n; ++i) buf[i] = float(i & 7);
}

// The sum of buf[b, e) (b and e multiples of 32): 4 independent 32-byte vector accumulators (GCC
// vector extension, so 2x AVX2 or 4x SSE adds per 128 bytes), so the kernel is not the bottleneck.
__attribute__((no_sanitize("address", "undefined"))) double stream_sum(const float* buf, size_t b, size_t e) {
  typedef float v8 __attribute__((vector_size(32)));
  v8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (size_t i = b; i < e; i += 32) {
    v8 x0, x1, x2, x3;
    std::memcpy(&x0, buf + i, sizeof x0);
    std::memcpy(&x1, buf + i + 8, sizeof x1);
    std::memcpy(&x2, buf + i + 16, sizeof x2);
    std::memcpy(&x3, buf + i + 24, sizeof x3);
    a0 += x0, a1 += x1, a2 += x2, a3 += x3;
  }
  const v8 a = (a0 + a1) + (a2 + a3);
  double s = 0;
  for (int j = 0; j < 8; ++j) s += a[j];
  return s;
}

}  // namespace

double measure_read_bandwidth(int threads, uint64_t bytes, int repeats) {
  // The roof is the best rate at which `threads` threads can stream a buffer far larger than any
  // cache, as a decode step streams its weights (stream_sum: the kernel must not be the
  // bottleneck), and the best repeat is the roof (a peak; a median of a shared VM understates it
  // and made decode read as more than 100% of its roofline).
  threads = std::max(1, threads);
  const size_t n = size_t(bytes / sizeof(float)) / 32 * 32;
  std::unique_ptr<float[]> buf(new float[n]);
  fill_probe(buf.get(), n);
  std::vector<double> sums(static_cast<size_t>(threads));
  double best = 0;
  for (int rep = 0; rep <= repeats; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        const size_t b = n / 32 * size_t(t) / size_t(threads) * 32, e = n / 32 * size_t(t + 1) / size_t(threads) * 32;
        sums[size_t(t)] = stream_sum(buf.get(), b, e);
      });
    for (auto& th : ts) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::max(best, double(n * sizeof(float)) / s);  // first pass is warm-up
  }
  volatile double sink = sums[0];
  (void)sink;
  return best;
}

Result<DecodeBenchResult> bench_decode(LoadedModel& m, Backend& be, int32_t prompt_tokens, int32_t gen_tokens,
                                       int repeats, EngineConfig ec, const std::function<void()>& after_warmup) {
  const int32_t ctx = prompt_tokens + gen_tokens + 1;
  if (ctx > m.config.ctx_len) return make_error("prompt + generated tokens exceed the model context");
  ec.num_blocks = (ctx + ec.block_size - 1) / ec.block_size + 1;
  ec.prefix_caching = false;
  ec.spec = SpecConfig{};
  auto e = Engine::create(m, be, ec);
  if (!e) return e.take_error();
  // A fixed pseudo-prompt of ordinary tokens: speed does not depend on which tokens they are.
  Request req;
  req.prompt_tokens.resize(static_cast<size_t>(prompt_tokens));
  for (int32_t i = 0; i < prompt_tokens; ++i) req.prompt_tokens[size_t(i)] = 3 + (i * 7919) % std::max(1, m.config.vocab - 3);
  req.add_bos = false;
  req.max_tokens = gen_tokens;
  req.sampling.temperature = 0;
  req.stop_at_eos = false;  // measure exactly gen_tokens steps
  DecodeBenchResult r;
  r.prompt_tokens = prompt_tokens;
  for (int i = 0; i <= repeats; ++i) {
    const auto submitted = std::chrono::steady_clock::now();
    auto c = complete(**e, req);
    if (!c) return c.take_error();
    const RequestMetrics& rm = c->metrics;
    // Prefill ends with the first token (the queue before it is excluded); the decode rate
    // excludes that token.
    const double prefill_s = rm.ttft_s - rm.queue_s;
    const double decode_s = rm.e2e_s - rm.ttft_s;
    if (i == 0) {  // warm-up
      r.first_token_at = submitted + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                         std::chrono::duration<double>(rm.ttft_s));
      if (after_warmup) {
        after_warmup();
        // The probes (bandwidth buffers of hundreds of MB, their own threads) run between the
        // warm-up and the timed runs and leave caches, heap and the pool's threads elsewhere: the
        // warm-up's prompt again (two tokens generated) puts the first timed run where the
        // others are. Without it a 64-token prompt of a 1 MB model took 2.2 ms in the first run
        // and 0.75-0.86 ms in the next eleven, so two repeats reported half the rate; a 16-token
        // prompt in its place did not help.
        Request rewarm = req;
        rewarm.max_tokens = std::min(gen_tokens, 2);
        if (auto w = complete(**e, rewarm); !w) return w.take_error();
      }
      continue;
    }
    const int32_t n = int32_t(c->tokens.size());
    r.decode_tok_s.push_back(n > 1 && decode_s > 0 ? (n - 1) / decode_s : 0);
    r.prefill_tok_s.push_back(prefill_s > 0 ? prompt_tokens / prefill_s : 0);
    r.ttft_ms.push_back(rm.ttft_s * 1e3);
    r.generated_tokens = n;
  }
  r.median_decode_tok_s = median(r.decode_tok_s);
  r.p99_decode_tok_s = percentile(r.decode_tok_s, 1);  // the slow tail of a rate is its low end
  r.median_prefill_tok_s = median(r.prefill_tok_s);
  r.median_ttft_ms = median(r.ttft_ms);
  return r;
}

}  // namespace pagoda
