// Google Benchmark of the CPU backend's matmul (backends/cpu fast::matmul) per weight type, on one
// thread, so CPU time is the kernel's own and another process on the machine does not distort it
// the way it distorts a two-thread decode:
//   Matvec/<type>/l2    one activation row against 192 KiB of weights (they stay in L2): the
//                       kernel's instruction cost, reported as Gweights (10^9 weights) per second;
//   Matvec768/<type>/l2 the same with rows of 768 weights (the 110M shape's attention and
//                       ffn_gate/ffn_up matrices), where a kernel's per-row costs show;
//   Matvec/<type>/dram  one row against 64 MiB of weights (read from memory once per call): the
//                       decode case, reported as weight bytes per second;
//   Matmul64/<type>     64 activation rows (a prompt chunk) against 512 weight rows (the same
//                       shape for every type): the prefill kernel, reported as Gmadds (10^9
//                       multiply-adds) per second, comparable with F32's GEMM;
//   Matmul256/<type>    a 256-token prompt against 768 weight rows (the 110M shape's ffn_down):
//                       activations past L2, as in `bench decode`'s 256-token prefill;
//   Matmul256w768/<type> the same prompt against 2048 rows of 768 weights (the 110M shape's
//                       ffn_gate/ffn_up; its attention matrices are 768 wide too): short rows,
//                       where a kernel's per-row costs and its 8-block tail path show.
// Rows are 2048 weights (the 1B shape's width) unless a name says otherwise. Weights are random
// floats quantized with the backend's quantizer, so every block's scales are valid.
// Run: ./build/pagoda_kernel_bench [--benchmark_filter=q4_k] [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "core/sample/philox.h"

namespace {

using pagoda::DType;

constexpr int64_t kWide = 2048;

struct Case {
  std::vector<uint8_t> w;
  std::vector<float> x, out;
  pagoda::HostTensor tw, tx, tout;
};

// `rows` weight rows of type t and `cols` weights, `tokens` activation rows.
Case make_case(DType t, int64_t rows, int64_t tokens, int64_t cols = kWide) {
  Case c;
  const size_t stride = pagoda::row_bytes(t, cols);
  c.w.resize(size_t(rows) * stride);
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) row[size_t(i)] = pagoda::philox_uniform(7, uint32_t(r), uint64_t(i)) - 0.5f;
    pagoda::quantize_row(t, row.data(), c.w.data() + size_t(r) * stride, cols);
  }
  c.x.resize(size_t(tokens * cols));
  for (size_t i = 0; i < c.x.size(); ++i) c.x[i] = pagoda::philox_uniform(8, 0, i) * 2.0f - 1.0f;
  c.out.resize(size_t(tokens * rows));
  c.tw = {c.w.data(), t, rows, cols};
  c.tx = {reinterpret_cast<uint8_t*>(c.x.data()), DType::F32, tokens, cols};
  c.tout = {reinterpret_cast<uint8_t*>(c.out.data()), DType::F32, tokens, rows};
  return c;
}

// Whole rows of type t in about `bytes`.
int64_t rows_in(DType t, size_t bytes) { return int64_t(std::max<size_t>(1, bytes / pagoda::row_bytes(t, kWide))); }

void run(benchmark::State& state, DType t, int64_t rows, int64_t tokens, bool per_byte, int64_t cols = kWide) {
  pagoda::ThreadPool pool(1);
  Case c = make_case(t, rows, tokens, cols);
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

}  // namespace

int main(int argc, char** argv) {
  const DType types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                         DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL, DType::Q2_K,
                         DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (DType t : types) {
    const std::string name = pagoda::dtype_name(t);
    benchmark::RegisterBenchmark(("Matvec/" + name + "/l2").c_str(),
                                 [t](benchmark::State& s) { run(s, t, rows_in(t, 192 << 10), 1, false); });
    benchmark::RegisterBenchmark(("Matvec768/" + name + "/l2").c_str(), [t](benchmark::State& s) {
      run(s, t, int64_t((192 << 10) / pagoda::row_bytes(t, 768)), 1, false, 768);
    });
    benchmark::RegisterBenchmark(("Matvec/" + name + "/dram").c_str(),
                                 [t](benchmark::State& s) { run(s, t, rows_in(t, 64 << 20), 1, true); })
        ->MinTime(0.5);
    benchmark::RegisterBenchmark(("Matmul64/" + name).c_str(), [t](benchmark::State& s) { run(s, t, 512, 64, false); });
    benchmark::RegisterBenchmark(("Matmul256/" + name).c_str(), [t](benchmark::State& s) { run(s, t, 768, 256, false); });
    benchmark::RegisterBenchmark(("Matmul256w768/" + name).c_str(),
                                 [t](benchmark::State& s) { run(s, t, 2048, 256, false, 768); });
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
