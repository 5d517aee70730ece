// Google Benchmark of the CPU backend's matmul (backends/cpu fast::matmul) per weight type, on one
// thread, so CPU time is the kernel's own and another process on the machine does not distort it
// the way it distorts a two-thread decode:
//   Matvec/<type>/l2    one activation row against 192 KiB of weights (they stay in L2): the
//                       kernel's instruction cost, reported as Gweights (10^9 weights) per second;
//   Matvec768/<type>/l2 the same with rows of 768 weights (the 110M shape's attention and
//                       ffn_gate/ffn_up matrices), where a kernel's per-row costs show;
//   Matvec/<type>/dram  one row against 64 MiB of weights (read from memory once per call): the
//                       decode case, reported as weight bytes per second;
//   Matmul2/3/4/<type>, Matmul32/<type>  2, 3, 4 and 32 activation rows against the same 512
//                       rows (a speculative verify of one to three drafts, or that many streams'
//                       decode step; a short prompt), where small batches change kernels;
//   Matmul8/<type>      8 activation rows (a speculative verify pass, or eight streams' decode
//                       step) against 512 weight rows: the small-batch kernel, in Gmadds/s;
//   Matmul64/<type>     64 activation rows (a prompt chunk) against 512 weight rows (the same
//                       shape for every type): the prefill kernel, reported as Gmadds (10^9
//                       multiply-adds) per second, comparable with F32's GEMM;
//   Matmul256/<type>    a 256-token prompt against 768 weight rows (the 110M shape's ffn_down):
//                       activations past L2, as in `bench decode`'s 256-token prefill;
//   Matmul256w768/<type> the same prompt against 2048 rows of 768 weights (the 110M shape's
//                       ffn_gate/ffn_up; its attention matrices are 768 wide too): short rows,
//                       where a kernel's per-row costs and its 8-block tail path show;
//   Matvec2t/q4_k/dram  Matvec/q4_k/dram on two threads (real time);
//   Decode1B/q4_k       one decode token's 112 Q4_K matvecs of the 1B shape on two threads, as
//                       the engine issues them (real time): against Matvec2t, what cutting a
//                       token into the pool jobs its data dependencies require costs.
// <type>+panels: F32, F16 and BF16 weights (and in AVX2 builds the 32-element types and Q2_K-Q5_K, in compact
// 8-row panels) packed as the CPU backend packs them at a weight's first decode-sized matmul
// (CpuBackend::repack_matmul_weight); <type>+later: the float weights before that (the file's
// layout, packed per call into the same panels); the plain <type>
// cases are the file's row-major layout of a weight never packed (a tied token_embd as the
// output matrix).
// Rows are 2048 weights (the 1B shape's width) unless a name says otherwise. Weights are random
// floats quantized with the backend's quantizer, so every block's scales are valid.
// Run: ./build/pagoda_kernel_bench [--benchmark_filter=q4_k] [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "core/sample/philox.h"

namespace {

using pagoda::DType;

constexpr int64_t kWide = 2048;

struct Case {
  std::vector<uint8_t> w, packed;
  std::vector<float> x, out;
  pagoda::HostTensor tw, tx, tout;
};

// `rows` weight rows of type t and `cols` weights, `tokens` activation rows.
Case make_case(DType t, int64_t rows, int64_t tokens, int64_t cols = kWide, int layout = 0) {
  Case c;
  const size_t stride = pagoda::row_bytes(t, cols);
  c.w.resize(size_t(rows) * stride);
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) row[size_t(i)] = pagoda::philox_uniform(7, uint32_t(r), uint64_t(i)) - 0.5f;
    pagoda::quantize_row(t, row.data(), c.w.data() + size_t(r) * stride, cols);
  }
  // On a cache line, as the backend allocates activations (a vector's data is 16-byte aligned).
  c.x.resize(size_t(tokens * cols) + 16);
  float* x = c.x.data() + (64 - reinterpret_cast<uintptr_t>(c.x.data()) % 64) % 64 / sizeof(float);
  for (size_t i = 0; i < size_t(tokens * cols); ++i) x[i] = pagoda::philox_uniform(8, 0, i) * 2.0f - 1.0f;
  c.out.resize(size_t(tokens * rows));
  c.tw = {c.w.data(), t, rows, cols};
  c.tw.packable = layout == 2;
  if (layout == 1) {
    pagoda::ThreadPool pool(1);
    c.packed.resize(pagoda::fast::panel_bytes(t, rows, cols) + 64);
    uint8_t* p = c.packed.data() + (64 - reinterpret_cast<uintptr_t>(c.packed.data()) % 64) % 64;
    pagoda::fast::pack_panels(pool, t, c.w.data(), rows, cols, 0, rows, p);
    c.tw = {p, t, rows, cols, true};
  }
  c.tx = {reinterpret_cast<uint8_t*>(x), DType::F32, tokens, cols};
  c.tout = {reinterpret_cast<uint8_t*>(c.out.data()), DType::F32, tokens, rows};
  return c;
}

// Whole rows of type t in about `bytes`.
int64_t rows_in(DType t, size_t bytes) { return int64_t(std::max<size_t>(1, bytes / pagoda::row_bytes(t, kWide))); }

void run(benchmark::State& state, DType t, int64_t rows, int64_t tokens, bool per_byte, int64_t cols = kWide,
         int threads = 1, int layout = 0) {
  pagoda::ThreadPool pool(threads);
  Case c = make_case(t, rows, tokens, cols, layout);
  for (auto _ : state) {
    pagoda::fast::matmul(pool, c.tw, c.tx, c.tout);
    benchmark::DoNotOptimize(c.out.data());
    benchmark::ClobberMemory();
  }
  const double weights = double(c.tw.rows) * double(cols);
  const double iters = double(state.iterations());
  if (per_byte) {
    state.SetBytesProcessed(int64_t(iters * double(c.w.size())));
  } else {
    // Per second of CPU time, in units of 10^9: weights (matvec) or multiply-adds (matmul).
    state.counters[tokens == 1 ? "Gweights" : "Gmadds"] =
        benchmark::Counter(iters * weights * double(tokens) * 1e-9, benchmark::Counter::kIsRate);
  }
}

// One decode token's matvecs through the 16 layers of the 1B shape (dim 2048, ffn 5632, kv 256),
// every matrix Q4_K, on two threads as the engine runs them (q/k/v and gate/up through
// matmul_many; 64 pool jobs a token), weights streamed from memory: bytes per second of weights.
// Against Matvec2t/q4_k/dram (one matrix, one job), the cost of cutting a token into the jobs its
// data dependencies require. One layer is quantized and copied 16 times (the values do not
// matter to the speed).
void run_layers(benchmark::State& state) {
  using pagoda::HostTensor;
  constexpr int kLayers = 16;
  constexpr int64_t kDim = 2048, kFfn = 5632, kKv = 256;
  struct Shape { int64_t rows, cols; };
  const Shape shapes[7] = {{kDim, kDim}, {kKv, kDim}, {kKv, kDim}, {kDim, kDim}, {kFfn, kDim}, {kFfn, kDim}, {kDim, kFfn}};
  std::vector<std::vector<uint8_t>> one;
  for (const Shape& sh : shapes) one.push_back(make_case(DType::Q4_K, sh.rows, 1, sh.cols).w);
  // Every matrix in its own 64-byte aligned block, layer after layer.
  size_t total = 0;
  std::vector<size_t> at;
  for (int l = 0; l < kLayers; ++l)
    for (int m = 0; m < 7; ++m) at.push_back(total), total += (one[m].size() + 63) / 64 * 64;
  std::vector<uint8_t> store(total + 64);
  uint8_t* base = store.data() + (64 - reinterpret_cast<uintptr_t>(store.data()) % 64) % 64;
  std::vector<HostTensor> w;
  for (int l = 0; l < kLayers; ++l)
    for (int m = 0; m < 7; ++m) {
      uint8_t* p = base + at[size_t(l * 7 + m)];
      std::memcpy(p, one[size_t(m)].data(), one[size_t(m)].size());
      w.push_back({p, DType::Q4_K, shapes[m].rows, shapes[m].cols});
    }
  std::vector<float> x(size_t(kFfn), 0.25f), hb(size_t(kFfn), 0.5f), y(size_t(4 * kFfn));
  auto vec = [](float* p, int64_t n) { return HostTensor{reinterpret_cast<uint8_t*>(p), DType::F32, 1, n}; };
  const HostTensor xd = vec(x.data(), kDim), xf = vec(hb.data(), kFfn);
  const HostTensor qkv[3] = {vec(y.data(), kDim), vec(y.data() + kDim, kKv), vec(y.data() + kDim + kKv, kKv)};
  const HostTensor gate_up[2] = {vec(y.data(), kFfn), vec(y.data() + kFfn, kFfn)};
  pagoda::ThreadPool pool(2);
  for (auto _ : state)
    for (int l = 0; l < kLayers; ++l) {
      const HostTensor* L = &w[size_t(l * 7)];
      pagoda::fast::matmul_many(pool, xd, std::span<const HostTensor>(L, 3), qkv);
      pagoda::fast::matmul(pool, L[3], xd, qkv[0]);
      pagoda::fast::matmul_many(pool, xd, std::span<const HostTensor>(L + 4, 2), gate_up);
      pagoda::fast::matmul(pool, L[6], xf, qkv[0]);
      benchmark::ClobberMemory();
    }
  size_t bytes = 0;
  for (const HostTensor& t : w) bytes += size_t(t.rows) * t.row_stride();
  state.SetBytesProcessed(int64_t(double(state.iterations()) * double(bytes)));
}

}  // namespace

int main(int argc, char** argv) {
  const DType types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                         DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL, DType::Q2_K,
                         DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (DType t : types)
  for (int p : {0, 1, 2}) {
    const bool floats = t == DType::F32 || t == DType::F16 || t == DType::BF16;
    if ((p == 1 && !floats && !pagoda::fast::kept_panels(t)) || (p == 2 && !floats)) continue;
    const std::string name = pagoda::dtype_name(t) + std::string(p == 1 ? "+panels" : p == 2 ? "+later" : "");
    benchmark::RegisterBenchmark(("Matvec/" + name + "/l2").c_str(),
                                 [t, p](benchmark::State& s) { run(s, t, rows_in(t, 192 << 10), 1, false, kWide, 1, p); });
    benchmark::RegisterBenchmark(("Matvec768/" + name + "/l2").c_str(), [t, p](benchmark::State& s) {
      run(s, t, int64_t((192 << 10) / pagoda::row_bytes(t, 768)), 1, false, 768, 1, p);
    });
    benchmark::RegisterBenchmark(("Matvec/" + name + "/dram").c_str(),
                                 [t, p](benchmark::State& s) { run(s, t, rows_in(t, 64 << 20), 1, true, kWide, 1, p); })
        ->MinTime(0.5);
    for (const int64_t n : {2, 3, 4, 8, 32, 64})  // against the same 512 rows
      benchmark::RegisterBenchmark(("Matmul" + std::to_string(n) + "/" + name).c_str(),
                                   [t, p, n](benchmark::State& s) { run(s, t, 512, n, false, kWide, 1, p); });
    benchmark::RegisterBenchmark(("Matmul256/" + name).c_str(), [t, p](benchmark::State& s) { run(s, t, 768, 256, false, kWide, 1, p); });
    benchmark::RegisterBenchmark(("Matmul256w768/" + name).c_str(),
                                 [t, p](benchmark::State& s) { run(s, t, 2048, 256, false, 768, 1, p); });
  }
  // The decode case on two threads: one 64 MiB matrix (one pool job a call), then a token's
  // matvecs of the 1B shape as the engine issues them.
  benchmark::RegisterBenchmark("Matvec2t/q4_k/dram", [](benchmark::State& s) {
    run(s, DType::Q4_K, rows_in(DType::Q4_K, 64 << 20), 1, true, kWide, 2);
  })->MinTime(0.5)->UseRealTime();
  benchmark::RegisterBenchmark("Decode1B/q4_k", [](benchmark::State& s) { run_layers(s); })
      ->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
