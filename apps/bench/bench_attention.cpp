#include "apps/bench/bench_attention.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "backends/cpu/cpu_backend.h"
#include "apps/bench/bench.h"
#include "core/util/half.h"

namespace pagoda {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The value of element `e` of cache `which` (0 = K, 1 = V): a hash, so any slot's content can be
// rebuilt on the host for the check without keeping a copy of the whole cache.
float cache_value(int which, int64_t e) {
  uint64_t x = (uint64_t(e) << 1 | uint64_t(which)) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return float(x >> 40) * (2.0f / float(1 << 24)) - 1.0f;
}

void store(DType dt, float v, uint8_t* dst, int64_t i) {
  if (dt == DType::F16) reinterpret_cast<uint16_t*>(dst)[i] = float_to_half(v);
  else reinterpret_cast<float*>(dst)[i] = v;
}

// Fills rows [0, rows) of a cache tensor with cache_value, uploading in pieces of ~32 MiB.
void fill_cache(Backend& be, const Tensor& t, int which) {
  const size_t row = t.row_stride();
  const int64_t rows_per_piece = std::max<int64_t>(1, int64_t((32u << 20) / row));
  std::vector<uint8_t> host;
  for (int64_t r0 = 0; r0 < t.rows; r0 += rows_per_piece) {
    const int64_t n = std::min(rows_per_piece, t.rows - r0);
    host.resize(size_t(n) * row);
    for (int64_t i = 0; i < n * t.cols; ++i) store(t.dtype, cache_value(which, r0 * t.cols + i), host.data(), i);
    be.upload(t.row_slice(r0, n), host.data(), host.size());
  }
}

struct TensorSpec {
  Tensor* t;
  DType dtype;
  int64_t rows, cols;
};

// Allocates one buffer per spec (kept alive by `keep`) and points each spec's tensor at it.
Status alloc_tensors(Backend& be, std::initializer_list<TensorSpec> specs, std::vector<BufferPtr>& keep) {
  for (const TensorSpec& s : specs) {
    const size_t bytes = row_bytes(s.dtype, s.cols) * size_t(s.rows);
    auto b = be.alloc(bytes);
    if (!b) return make_error("allocating " + std::to_string(bytes >> 20) + " MiB: " + b.error());
    *s.t = Tensor{b->get(), 0, s.dtype, s.rows, s.cols};
    keep.push_back(std::move(*b));
  }
  return {};
}

// Sequence `s`'s attention recomputed on the CPU backend from a compact copy of its blocks.
Result<std::vector<float>> reference_row(const AttentionBenchOptions& o, int32_t ctx, const std::vector<int32_t>& perm,
                                         int32_t nb, int32_t s, const std::vector<float>& q) {
  CpuBackend cpu;
  const int64_t kv_cols = int64_t(o.n_kv_heads) * o.head_dim, q_cols = int64_t(o.n_heads) * o.head_dim;
  const int64_t slots = int64_t(nb) * o.block_size;
  Tensor kc, vc, tq, tout, tseq, tbt;
  std::vector<BufferPtr> keep;
  if (Status st = alloc_tensors(cpu, {{&kc, o.kv_dtype, slots, kv_cols}, {&vc, o.kv_dtype, slots, kv_cols},
                                      {&tq, DType::F32, 1, q_cols}, {&tout, DType::F32, 1, q_cols},
                                      {&tseq, DType::I32, 1, 4}, {&tbt, DType::I32, nb, 1}}, keep); !st)
    return st.take_error();
  for (int which = 0; which < 2; ++which) {
    uint8_t* dst = CpuBackend::host(which == 0 ? kc : vc).data;
    for (int32_t j = 0; j < nb; ++j) {
      const int64_t g = perm[size_t(s) * size_t(nb) + size_t(j)];
      for (int64_t i = 0; i < int64_t(o.block_size) * kv_cols; ++i)
        store(o.kv_dtype, cache_value(which, g * o.block_size * kv_cols + i), dst, int64_t(j) * o.block_size * kv_cols + i);
    }
  }
  cpu.upload(tq, q.data() + size_t(s) * size_t(q_cols), size_t(q_cols) * 4);
  const SeqInfo info{0, 1, ctx, 0};
  cpu.upload(tseq, &info, sizeof info);
  std::vector<int32_t> ident(static_cast<size_t>(nb));
  std::iota(ident.begin(), ident.end(), 0);
  cpu.upload(tbt, ident.data(), ident.size() * 4);
  AttentionParams p{1, o.n_heads, o.n_kv_heads, o.head_dim, o.block_size, ctx, 1.0f / std::sqrt(float(o.head_dim))};
  cpu.paged_attention(tq, kc, vc, tseq, tbt, tout, p);
  std::vector<float> out(static_cast<size_t>(q_cols));
  cpu.download(tout, out.data(), out.size() * 4);
  return out;
}

Result<AttentionBenchRow> run_context(Backend& be, const AttentionBenchOptions& o, int32_t ctx, uint64_t target) {
  const int64_t kv_cols = int64_t(o.n_kv_heads) * o.head_dim, q_cols = int64_t(o.n_heads) * o.head_dim;
  const int32_t nb = (ctx + o.block_size - 1) / o.block_size;
  const double kv_bytes_per_seq = 2.0 * double(ctx) * double(row_bytes(o.kv_dtype, kv_cols));
  const int32_t n_seqs = o.n_seqs > 0 ? o.n_seqs : std::max<int32_t>(1, int32_t(double(target) / kv_bytes_per_seq));
  const int64_t slots = int64_t(n_seqs) * nb * o.block_size;
  if (slots > INT32_MAX) return make_error("context " + std::to_string(ctx) + " x " + std::to_string(n_seqs) + " sequences needs too many slots");

  // Blocks are handed out in a shuffled order, as a paged cache that has seen churn does.
  std::vector<int32_t> perm(size_t(n_seqs) * size_t(nb));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(uint64_t(ctx)));
  std::vector<SeqInfo> seqs(static_cast<size_t>(n_seqs));
  for (int32_t s = 0; s < n_seqs; ++s) seqs[size_t(s)] = {s, 1, ctx, s * nb};
  std::vector<float> q(size_t(n_seqs) * size_t(q_cols));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& x : q) x = nd(rng);

  Tensor kc, vc, tq, tout, tseq, tbt;
  std::vector<BufferPtr> keep;
  if (Status st = alloc_tensors(be, {{&kc, o.kv_dtype, slots, kv_cols}, {&vc, o.kv_dtype, slots, kv_cols},
                                     {&tq, DType::F32, n_seqs, q_cols}, {&tout, DType::F32, n_seqs, q_cols},
                                     {&tseq, DType::I32, n_seqs, 4}, {&tbt, DType::I32, int64_t(perm.size()), 1}}, keep); !st)
    return st.take_error();
  fill_cache(be, kc, 0);
  fill_cache(be, vc, 1);
  be.upload(tq, q.data(), q.size() * 4);
  be.upload(tseq, seqs.data(), seqs.size() * sizeof(SeqInfo));
  be.upload(tbt, perm.data(), perm.size() * 4);
  const AttentionParams p{n_seqs, o.n_heads, o.n_kv_heads, o.head_dim, o.block_size, ctx, 1.0f / std::sqrt(float(o.head_dim))};

  be.paged_attention(tq, kc, vc, tseq, tbt, tout, p);  // warm-up: pipeline build, scratch
  if (Status s = be.sync(); !s) return make_error("paged_attention at context " + std::to_string(ctx) + ": " + s.error());
  std::vector<double> ms;
  for (int r = 0; r < o.repeats; ++r) {
    const auto t0 = Clock::now();
    for (int c = 0; c < o.calls_per_sample; ++c) be.paged_attention(tq, kc, vc, tseq, tbt, tout, p);
    if (Status s = be.sync(); !s) return make_error("paged_attention: " + s.error());
    ms.push_back(seconds_since(t0) * 1e3 / o.calls_per_sample);
  }

  std::vector<float> got(q.size());
  be.download(tout, got.data(), got.size() * 4);
  double num = 0, den = 0;
  for (int32_t s : {0, n_seqs - 1}) {
    auto want = reference_row(o, ctx, perm, nb, s, q);
    if (!want) return want.take_error();
    for (int64_t i = 0; i < q_cols; ++i) {
      const double d = double(got[size_t(s) * size_t(q_cols) + size_t(i)]) - double((*want)[size_t(i)]);
      num += std::isfinite(d) ? d * d : INFINITY;
      den += double((*want)[size_t(i)]) * double((*want)[size_t(i)]);
    }
    if (n_seqs == 1) break;
  }
  AttentionBenchRow row;
  row.ctx = ctx;
  row.n_seqs = n_seqs;
  row.kv_bytes = kv_bytes_per_seq * n_seqs;
  row.median_ms = median(ms);
  row.min_ms = *std::min_element(ms.begin(), ms.end());
  row.gbps = row.kv_bytes / (row.median_ms * 1e-3) / 1e9;
  row.nmse = num / std::max(den, 1e-30);
  if (!(row.nmse <= 1e-4))
    return make_error("paged_attention at context " + std::to_string(ctx) + " disagrees with the CPU backend (NMSE " +
                      std::to_string(row.nmse) + ")");
  return row;
}

}  // namespace

Result<double> measure_backend_copy_bandwidth(Backend& be, uint64_t bytes, int repeats) {
  Tensor a, b;
  std::vector<BufferPtr> keep;
  if (Status st = alloc_tensors(be, {{&a, DType::I32, int64_t(bytes / 4), 1}, {&b, DType::I32, int64_t(bytes / 4), 1}}, keep); !st)
    return st.take_error();
  // Written once so no page is copied from the zero page (which would flatter a CPU).
  const std::vector<uint8_t> ones(std::min<uint64_t>(bytes, 32u << 20), 0x3c);
  for (uint64_t off = 0; off < a.bytes(); off += ones.size()) {
    const uint64_t n = std::min<uint64_t>(ones.size(), a.bytes() - off);
    be.upload(a.row_slice(int64_t(off / 4), int64_t(n / 4)), ones.data(), n);
  }
  std::vector<double> rates;
  for (int r = 0; r <= repeats; ++r) {
    const auto t0 = Clock::now();
    be.copy(a, b);
    if (Status s = be.sync(); !s) return make_error("copy: " + s.error());
    if (r > 0) rates.push_back(2.0 * double(a.bytes()) / seconds_since(t0));  // first: warm-up
  }
  return median(rates);
}

Result<AttentionBenchResult> bench_attention(Backend& be, const AttentionBenchOptions& o) {
  if (o.n_heads <= 0 || o.n_kv_heads <= 0 || o.n_heads % o.n_kv_heads != 0 || o.head_dim <= 0 || o.block_size <= 0)
    return make_error("n_heads must be a positive multiple of n_kv_heads; head_dim and block_size positive");
  if (o.kv_dtype != DType::F16 && o.kv_dtype != DType::F32) return make_error("kv dtype must be f16 or f32");
  if (o.repeats < 1 || o.calls_per_sample < 1) return make_error("repeats and calls per sample must be positive");
  for (int32_t c : o.contexts)
    if (c < 1) return make_error("context lengths must be positive");
  const uint64_t target = o.kv_target_bytes ? o.kv_target_bytes : (be.info().is_gpu ? 1ull << 30 : 128ull << 20);
  AttentionBenchResult r;
  r.copy_bytes = std::max<uint64_t>(target / 2, 1u << 20) / 4 * 4;
  auto bw = measure_backend_copy_bandwidth(be, r.copy_bytes, std::max(o.repeats, 5));
  if (!bw) return bw.take_error();
  r.copy_gbps = *bw / 1e9;
  for (int32_t ctx : o.contexts) {
    auto row = run_context(be, o, ctx, target);
    if (!row) return row.take_error();
    row->fraction_of_copy = row->gbps / r.copy_gbps;
    r.rows.push_back(*row);
  }
  return r;
}

}  // namespace pagoda
