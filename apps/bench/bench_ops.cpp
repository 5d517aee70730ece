#include "apps/bench/bench_ops.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "apps/bench/bench.h"

namespace pagoda::cli {

std::vector<ConformanceCase> bench_op_cases(const std::string& filter) {
  constexpr int32_t kHeads = 16, kKvHeads = 16, kHd = 64, kDim = kHeads * kHd, kFfn = 2816, kVocab = 32000;
  std::vector<ConformanceCase> v;
  auto add = [&](Op op, DType dt, std::string name, ConformanceShape s) {
    const std::string id = std::string(op_name(op)) + "/" + dtype_name(dt) + "/" + name;
    // The conformance suite's own bound: a timing of a wrong result must show up as "fail".
    if (filter.empty() || id.find(filter) != std::string::npos)
      v.push_back({op, dt, std::move(name), std::move(s), conformance_bound(op, dt)});
  };
  auto attn = [&](std::vector<std::pair<int32_t, int32_t>> seqs) {
    ConformanceShape s;
    s.n_heads = kHeads;
    s.n_kv_heads = kKvHeads;
    s.head_dim = kHd;
    s.block_size = 16;
    s.seqs = std::move(seqs);
    return s;
  };
  for (DType dt : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    add(Op::Matmul, dt, "matvec_1x1024x1024", rows_cols(1, kDim, kDim));
    add(Op::Matmul, dt, "matmul_16x1024x1024", rows_cols(16, kDim, kDim));
  }
  add(Op::Embed, DType::F32, "16rows_dim1024", rows_cols(16, kDim, kVocab / 8));
  add(Op::RmsNorm, DType::F32, "16x1024", rows_cols(16, kDim, 0, 1e-5f));
  ConformanceShape rope = rows_cols(16, 0, 2048, 10000.0f);
  rope.n_heads = kHeads;
  rope.head_dim = kHd;
  add(Op::Rope, DType::F32, "16x16heads_hd64", rope);
  add(Op::SiluMul, DType::F32, "16x2816", rows_cols(16, kFfn));
  add(Op::Add, DType::F32, "16x1024", rows_cols(16, kDim));
  for (DType dt : {DType::F32, DType::F16}) {
    add(Op::KvStore, dt, "16tok_1024", rows_cols(16, kDim, 1024));
    add(Op::PagedAttention, dt, "decode_4seq_ctx512", attn({{512, 1}, {512, 1}, {512, 1}, {512, 1}}));
    add(Op::PagedAttention, dt, "prefill_128_ctx128", attn({{128, 128}}));
  }
  add(Op::Copy, DType::F16, "kv_block_16x1024", rows_cols(16, kDim));
  add(Op::Softmax, DType::F32, "4x32000", rows_cols(4, kVocab, 0, 1.0f));
  add(Op::Argmax, DType::F32, "4x32000", rows_cols(4, kVocab));
  add(Op::SampleProbs, DType::F32, "4x32000", rows_cols(4, kVocab));
  add(Op::AdjustLogits, DType::F32, "16x32000_e1024", rows_cols(16, kVocab, 1024));
  add(Op::FilterProbs, DType::F32, "4x32000", rows_cols(4, kVocab));
  ConformanceShape ver = rows_cols(0, kVocab);
  ver.greedy = true;
  ver.seqs = {{4, 0}, {4, 0}};
  add(Op::Verify, DType::F32, "greedy_2seq_k4_v32000", ver);
  return v;
}

std::vector<OpTiming> bench_ops(Backend& be, const std::vector<ConformanceCase>& cases, int repeats) {
  std::vector<OpTiming> out;
  uint64_t seed = 0x0b5eed;
  for (const auto& c : cases) {
    OpTiming t;
    t.op = op_name(c.op);
    t.dtype = dtype_name(c.dtype);
    t.name = c.name;
    std::vector<double> ms;
    ConformanceStatus st = ConformanceStatus::Pass;
    for (int r = 0; r <= repeats; ++r) {
      const ConformanceResult res = run_conformance_case(be, c, seed);
      st = res.status;
      // A wrong result is reported as such, never timed as if it were fine (skip: unsupported).
      if (res.status == ConformanceStatus::Fail)
        t.detail = fmt::format("reference check failed: nmse {:.3g} > {:.3g}: {}", res.nmse, res.threshold, res.detail);
      if (res.status != ConformanceStatus::Pass) {
        if (t.detail.empty()) t.detail = res.detail;
        break;
      }
      if (r > 0) ms.push_back(res.dut_ms);  // run 0 warms up
    }
    ++seed;
    t.status = st == ConformanceStatus::Skip ? "skip" : st == ConformanceStatus::Fail ? "fail" : "ok";
    if (st != ConformanceStatus::Pass) ms.clear();
    t.repeats = int(ms.size());
    if (!ms.empty()) {
      t.median_ms = median(ms);
      t.p99_ms = percentile(ms, 99);
      t.min_ms = *std::min_element(ms.begin(), ms.end());
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::string format_op_table(const std::string& backend, const std::string& device, const std::vector<OpTiming>& rows) {
  std::string s = fmt::format("{} ({})\n  {:<15} {:<5} {:<24} {:>11} {:>11}\n", backend, device, "op", "dtype", "shape",
                              "median ms", "p99 ms");
  for (const auto& r : rows) {
    if (r.status == "ok")
      s += fmt::format("  {:<15} {:<5} {:<24} {:>11.4f} {:>11.4f}\n", r.op, r.dtype, r.name, r.median_ms, r.p99_ms);
    else
      s += fmt::format("  {:<15} {:<5} {:<24} {:>11} {:>11}  {}\n", r.op, r.dtype, r.name, r.status, "", r.detail);
  }
  return s;
}

nlohmann::json op_timings_json(const std::vector<OpTiming>& rows) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : rows)
    a.push_back({{"op", r.op}, {"dtype", r.dtype}, {"shape", r.name}, {"status", r.status}, {"median_ms", r.median_ms},
                 {"p99_ms", r.p99_ms}, {"min_ms", r.min_ms}, {"repeats", r.repeats}, {"detail", r.detail}});
  return a;
}

}  // namespace pagoda::cli
