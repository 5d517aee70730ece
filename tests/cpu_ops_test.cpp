// CPU kernels: the reference against double-precision math, and the fast path against the
// reference, on fresh random inputs (seed printed).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <utility>

#include <sys/mman.h>

#include "backends/conformance.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_fast_quant.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "core/kv/kv_cache.h"
#include "core/util/half.h"

using namespace pagoda;

namespace {

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
  auto b = be.alloc(row_bytes(dt, cols) * size_t(rows));
  EXPECT_TRUE(b.ok());
  Buf out{std::move(*b), {}};
  out.t = Tensor{out.owner.get(), 0, dt, rows, cols};
  return out;
}

std::vector<float> randn(std::mt19937_64& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double nmse(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return num / std::max(den, 1e-30);
}

}  // namespace

TEST(Half, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_half(f), h) << "half bits " << h;
  }
}

TEST(CpuRef, MatmulMatchesDoublePrecision) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend be(CpuOptions{.reference = true});
  const int64_t n = 3, n_in = 96, n_out = 37;
  auto w = randn(rng, size_t(n_in * n_out)), x = randn(rng, size_t(n * n_in));
  for (DType dt : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
    Buf wb = make(be, dt, n_out, n_in), xb = make(be, DType::F32, n, n_in), ob = make(be, DType::F32, n, n_out);
    std::vector<uint8_t> wq(wb.t.bytes());
    for (int64_t o = 0; o < n_out; ++o) quantize_row(dt, w.data() + o * n_in, wq.data() + size_t(o) * wb.t.row_stride(), n_in);
    be.upload(wb.t, wq.data(), wq.size());
    be.upload(xb.t, x.data(), x.size() * 4);
    be.matmul(wb.t, xb.t, ob.t);
    std::vector<float> got(size_t(n * n_out));
    be.download(ob.t, got.data(), got.size() * 4);
    // Reference in double over the *dequantized* weights: isolates accumulation error.
    std::vector<float> deq(static_cast<size_t>(n_in));
    std::vector<double> want(got.size());
    for (int64_t o = 0; o < n_out; ++o) {
      dequantize_row(dt, wq.data() + size_t(o) * wb.t.row_stride(), deq.data(), n_in);
      for (int64_t r = 0; r < n; ++r) {
        double acc = 0;
        for (int64_t i = 0; i < n_in; ++i) acc += double(deq[size_t(i)]) * x[size_t(r * n_in + i)];
        want[size_t(r * n_out + o)] = acc;
      }
    }
    EXPECT_LT(nmse(got, want), 1e-10) << dtype_name(dt);
  }
}

TEST(CpuRef, QuantizationErrorIsBounded) {
  std::mt19937_64 rng(fresh_seed());
  auto x = randn(rng, 256);
  std::vector<double> xd(x.begin(), x.end());
  const std::pair<DType, double> cases[] = {{DType::F16, 1e-6}, {DType::Q8_0, 1e-4}, {DType::Q4_0, 2e-2}};
  for (auto [dt, tol] : cases) {
    std::vector<uint8_t> q(row_bytes(dt, 256));
    std::vector<float> back(256);
    quantize_row(dt, x.data(), q.data(), 256);
    dequantize_row(dt, q.data(), back.data(), 256);
    EXPECT_LT(nmse(back, xd), tol) << dtype_name(dt);
  }
}

// Builds a paged layout with shuffled blocks and compares the reference attention with a direct
// double-precision evaluation over contiguous K/V.
TEST(CpuRef, PagedAttentionMatchesContiguousDouble) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend be(CpuOptions{.reference = true});
  const int32_t nh = 4, nkv = 2, hd = 8, bs = 4;
  const std::vector<std::pair<int32_t, int32_t>> seqs = {{5, 9}, {1, 14}, {3, 3}};  // (q_len, ctx_len)
  int32_t total_q = 0, total_blocks = 0;
  for (auto [q, c] : seqs) { total_q += q; total_blocks += (c + bs - 1) / bs; }
  std::vector<int32_t> perm(size_t(total_blocks + 3));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const int64_t slots = int64_t(perm.size()) * bs, kvc = nkv * hd;
  auto kdata = randn(rng, size_t(slots * kvc)), vdata = randn(rng, size_t(slots * kvc));
  auto qdata = randn(rng, size_t(total_q * nh * hd));
  std::vector<SeqInfo> info;
  std::vector<int32_t> bt;
  int32_t qs = 0, used = 0;
  for (auto [q, c] : seqs) {
    info.push_back({qs, q, c, int32_t(bt.size())});
    for (int32_t b = 0; b < (c + bs - 1) / bs; ++b) bt.push_back(perm[size_t(used++)]);
    qs += q;
  }
  Buf kb = make(be, DType::F32, slots, kvc), vb = make(be, DType::F32, slots, kvc);
  Buf qb = make(be, DType::F32, total_q, nh * hd), ob = make(be, DType::F32, total_q, nh * hd);
  Buf sb = make(be, DType::I32, int64_t(info.size()), 4), bb = make(be, DType::I32, int64_t(bt.size()), 1);
  be.upload(kb.t, kdata.data(), kdata.size() * 4);
  be.upload(vb.t, vdata.data(), vdata.size() * 4);
  be.upload(qb.t, qdata.data(), qdata.size() * 4);
  be.upload(sb.t, info.data(), info.size() * 16);
  be.upload(bb.t, bt.data(), bt.size() * 4);
  AttentionParams p{int32_t(info.size()), nh, nkv, hd, bs, 14, 1.0f / std::sqrt(float(hd))};
  be.paged_attention(qb.t, kb.t, vb.t, sb.t, bb.t, ob.t, p);
  std::vector<float> got(size_t(total_q * nh * hd));
  be.download(ob.t, got.data(), got.size() * 4);

  std::vector<double> want(got.size());
  for (const auto& si : info) {
    for (int32_t j = 0; j < si.q_len; ++j) {
      const int32_t pos = si.ctx_len - si.q_len + j, row = si.q_start + j;
      for (int32_t h = 0; h < nh; ++h) {
        const int32_t kvh = h / (nh / nkv);
        std::vector<double> sc(size_t(pos + 1));
        for (int32_t t = 0; t <= pos; ++t) {
          const int64_t slot = int64_t(bt[size_t(si.bt_offset + t / bs)]) * bs + t % bs;
          double d = 0;
          for (int32_t e = 0; e < hd; ++e) d += double(qdata[size_t(row * nh * hd + h * hd + e)]) * kdata[size_t(slot * kvc + kvh * hd + e)];
          sc[size_t(t)] = d * p.scale;
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double sum = 0;
        for (auto& s : sc) sum += (s = std::exp(s - mx));
        for (int32_t e = 0; e < hd; ++e) {
          double acc = 0;
          for (int32_t t = 0; t <= pos; ++t) {
            const int64_t slot = int64_t(bt[size_t(si.bt_offset + t / bs)]) * bs + t % bs;
            acc += sc[size_t(t)] / sum * vdata[size_t(slot * kvc + kvh * hd + e)];
          }
          want[size_t(row * nh * hd + h * hd + e)] = acc;
        }
      }
    }
  }
  EXPECT_LT(nmse(got, want), 1e-10);
}

TEST(CpuRef, VerifyGreedyAcceptsMatchingPrefixAndCorrects) {
  CpuBackend be(CpuOptions{.reference = true});
  const int32_t vocab = 5, k = 3;
  // Target argmax per row: 2, 4, 1, 0 ; drafts 2, 4, 3 -> accept 2, next = 1.
  std::vector<float> target = {0, 0, 9, 0, 0, /**/ 0, 0, 0, 0, 9, /**/ 0, 9, 0, 0, 0, /**/ 9, 0, 0, 0, 0};
  std::vector<int32_t> drafts = {2, 4, 3}, meta = {0, 0, k};
  std::vector<float> u(size_t(k + 1), 0.5f);
  Buf tb = make(be, DType::F32, 4, vocab), db = make(be, DType::F32, 4, vocab), dtb = make(be, DType::I32, 1, k);
  Buf mb = make(be, DType::I32, 1, 3), ub = make(be, DType::F32, 1, k + 1), ob = make(be, DType::I32, 1, 2);
  be.upload(tb.t, target.data(), target.size() * 4);
  be.upload(dtb.t, drafts.data(), drafts.size() * 4);
  be.upload(mb.t, meta.data(), meta.size() * 4);
  be.upload(ub.t, u.data(), u.size() * 4);
  be.verify(tb.t, db.t, dtb.t, mb.t, ub.t, ob.t, VerifyParams{1, vocab, k, true});
  int32_t out[2];
  be.download(ob.t, out, 8);
  EXPECT_EQ(out[0], 2);
  EXPECT_EQ(out[1], 1);
}

TEST(CpuFast, MatchesReferenceOnEveryOp) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend ref(CpuOptions{.reference = true}), fast(CpuOptions{.threads = 3});
  for (DType dt : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
    // Rows: decode, a small batch, and prefill-sized batches with row and column tails for the
    // packed GEMM kernel (67 outputs = 4 panels of 16 + 3, or 2 of 32 + 3); 288 inputs = two K blocks.
    // Float widths that leave K blocks of 77, 232 (1000 in four) and 8 inputs: the panel packing's
    // 16-input transposes and its scalar rest.
    const std::pair<int64_t, int64_t> shapes[] = {{1, 128}, {5, 128}, {23, 128}, {40, 288}, {17, 32},
                                                  {19, 77}, {33, 1000}, {16, 8}};
    for (const auto& [n, n_in] : shapes) {
      if (n_in % dtype_block_elems(dt) != 0) continue;
      const int64_t n_out = 67;
      auto w = randn(rng, size_t(n_in * n_out)), x = randn(rng, size_t(n * n_in));
      std::vector<uint8_t> wq(row_bytes(dt, n_in) * size_t(n_out));
      for (int64_t o = 0; o < n_out; ++o) quantize_row(dt, w.data() + o * n_in, wq.data() + size_t(o) * row_bytes(dt, n_in), n_in);
      std::vector<float> outs[2];
      int i = 0;
      for (Backend* be : {static_cast<Backend*>(&ref), static_cast<Backend*>(&fast)}) {
        Buf wb = make(*be, dt, n_out, n_in), xb = make(*be, DType::F32, n, n_in), ob = make(*be, DType::F32, n, n_out);
        be->upload(wb.t, wq.data(), wq.size());
        be->upload(xb.t, x.data(), x.size() * 4);
        be->matmul(wb.t, xb.t, ob.t);
        outs[i].resize(size_t(n * n_out));
        be->download(ob.t, outs[i].data(), outs[i].size() * 4);
        ++i;
      }
      std::vector<double> want(outs[0].begin(), outs[0].end());
      // The Q8_0 and Q4_0 fast paths also quantize activations (integer dots; Q4_0 below GEMM
      // sizes), so they get the matmul conformance bound; the others only reorder float sums.
      const double tol = dt == DType::Q8_0 || dt == DType::Q4_0 ? 5e-4 : 1e-9;
      EXPECT_LT(nmse(outs[1], want), tol) << dtype_name(dt) << " rows " << n << " inputs " << n_in;
    }
  }
  // Every other op too, on the same 3-thread backend: each conformance case (poisoned outputs,
  // guard bytes, the op's own bound) against the reference, and no op may go uncovered.
  std::set<Op> passed;
  for (const ConformanceCase& c : conformance_cases()) {
    const ConformanceResult r = run_conformance_case(fast, c, rng());
    EXPECT_EQ(r.status, ConformanceStatus::Pass) << r.op << "/" << r.dtype << "/" << r.name << " seed " << r.seed
                                                 << " nmse " << r.nmse << ": " << r.detail;
    if (r.status == ConformanceStatus::Pass) passed.insert(c.op);
  }
  for (int op = 0; op < int(Op::kCount); ++op) EXPECT_TRUE(passed.count(Op(op))) << op_name(Op(op)) << " never passed";
  // Copy splits across threads only from 128 KiB, past every conformance case: 3 pieces + a tail.
  const auto src = randn(rng, 3 * 16384 + 77);
  Buf a = make(fast, DType::F32, 1, int64_t(src.size())), b = make(fast, DType::F32, 1, int64_t(src.size()));
  fast.upload(a.t, src.data(), src.size() * 4);
  fast.copy(a.t, b.t);
  std::vector<float> got(src.size());
  fast.download(b.t, got.data(), got.size() * 4);
  EXPECT_EQ(got, src) << "threaded copy";
}

// kv_store makes each 64 KiB chunk of a cache present (shared out over the pool's threads) the
// first time it writes there. That must leave every byte already in the cache as it was: here the
// whole cache is uploaded first (which does not populate), then single rows are stored into fresh
// chunks, the first and the last row included (the chunks at the buffer's ends reach past it,
// where ASan would catch a read), and every other row must still hold its uploaded bytes.
// Each cache size takes another allocation path: 400 KiB from the heap; 1.9 MiB and 2.3 MiB
// mappings on a 2 MiB boundary (huge pages, then huge pages with a tail of small ones).
class KvStorePopulating : public ::testing::TestWithParam<int64_t> {};
INSTANTIATE_TEST_SUITE_P(CpuFast, KvStorePopulating, ::testing::Values(1031, 4981, 6029));

TEST_P(KvStorePopulating, FreshChunksKeepTheCacheContents) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend be(CpuOptions{.threads = 3});
  const int64_t slots = GetParam(), cols = 100;  // 400 B rows: not a whole number of pages
  Buf kc = make(be, DType::F32, slots, cols), vc = make(be, DType::F32, slots, cols);
#if !defined(__SANITIZE_ADDRESS__)
  if (slots * cols * 4 >= (int64_t(7) << 18)) {  // 1.75 MiB and more: on a 2 MiB boundary
    EXPECT_EQ(reinterpret_cast<uintptr_t>(CpuBackend::host(kc.t).data) % (uintptr_t(2) << 20), 0u);
  }
#endif
  const auto k0 = randn(rng, size_t(slots * cols)), v0 = randn(rng, size_t(slots * cols));
  be.upload(kc.t, k0.data(), k0.size() * 4);
  be.upload(vc.t, v0.data(), v0.size() * 4);
  auto want_k = k0, want_v = v0;
  Buf k = make(be, DType::F32, 3, cols), v = make(be, DType::F32, 3, cols), sl = make(be, DType::I32, 3, 1);
  const int32_t last = int32_t(slots - 1);
  const int32_t writes[][3] = {{0, 700, -1}, {last, 300, 301}, {500, 0, last - 1}};
  for (const auto& w : writes) {
    const auto kr = randn(rng, size_t(3 * cols)), vr = randn(rng, size_t(3 * cols));
    be.upload(k.t, kr.data(), kr.size() * 4);
    be.upload(v.t, vr.data(), vr.size() * 4);
    be.upload(sl.t, w, sizeof(w));
    be.kv_store(k.t, v.t, kc.t, vc.t, sl.t);
    for (int i = 0; i < 3; ++i) {
      if (w[i] < 0) continue;  // a padding row: stored nowhere
      std::copy_n(kr.begin() + i * cols, cols, want_k.begin() + w[i] * cols);
      std::copy_n(vr.begin() + i * cols, cols, want_v.begin() + w[i] * cols);
    }
  }
  ASSERT_TRUE(be.sync().ok());
  std::vector<float> got_k(want_k.size()), got_v(want_v.size());
  be.download(kc.t, got_k.data(), got_k.size() * 4);
  be.download(vc.t, got_v.data(), got_v.size() * 4);
  EXPECT_EQ(got_k, want_k);
  EXPECT_EQ(got_v, want_v);
}

#if !defined(__SANITIZE_ADDRESS__)
// The kB of huge pages backing the mapping that contains p (/proc/self/smaps), or -1 if not found.
long anon_huge_kb_at(const void* p) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool in = false;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  while (std::getline(f, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      in = lo <= a && a < hi;
      continue;
    }
    long kb = 0;
    if (in && std::sscanf(line.c_str(), "AnonHugePages: %ld kB", &kb) == 1) return kb;
  }
  return -1;
}

// A KV buffer's 2 MiB span turns into a huge page once kv_store has written half of it, not before:
// one row of a short context keeps the span in small pages (the resident set a short run had), a
// long context's cache is read through huge pages, and the rows keep their values across the
// collapse.
TEST(CpuFast, KvSpansBecomeHugePagesOnceHalfWritten) {
  {  // MADV_COLLAPSE needs Linux 6.1
    const size_t h = size_t(2) << 20;
    void* m = mmap(nullptr, 2 * h, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    auto* at = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(m) + h - 1) / h * h);
    at[0] = 1;
    const bool can = madvise(at, h, 25 /* MADV_COLLAPSE */) == 0;
    munmap(m, 2 * h);
    if (!can) GTEST_SKIP() << "this kernel cannot collapse pages into huge pages (MADV_COLLAPSE)";
  }
  std::mt19937_64 rng(fresh_seed());
  CpuBackend be(CpuOptions{.threads = 2});
  // 1 KiB rows: a 2 MiB span and one of which the cache fills 0.9 (eligible from 7/8).
  const int64_t cols = 256, slots = 3891;
  Buf kc = make(be, DType::F32, slots, cols), vc = make(be, DType::F32, slots, cols);
  Buf k = make(be, DType::F32, 1, cols), v = make(be, DType::F32, 1, cols), sl = make(be, DType::I32, 1, 1);
  std::map<int32_t, std::vector<float>> rows;  // by slot
  auto store = [&](int32_t slot) {
    const std::vector<float>& row = rows[slot] = randn(rng, size_t(cols));
    be.upload(k.t, row.data(), size_t(cols) * 4);
    be.upload(v.t, row.data(), size_t(cols) * 4);
    be.upload(sl.t, &slot, 4);
    be.kv_store(k.t, v.t, kc.t, vc.t, sl.t);
  };
  const uint8_t* kdata = CpuBackend::host(kc.t).data;
  store(0);
  EXPECT_EQ(anon_huge_kb_at(kdata), 0) << "one row made a whole span resident";
  for (int32_t s = 1; s < 1024; ++s) store(s);  // the first span half written
  ASSERT_TRUE(be.sync().ok());
  EXPECT_GE(anon_huge_kb_at(kdata), 2048) << "the half-written span stayed in small pages";
  for (int32_t s = 2048; s < 3072; ++s) store(s);  // half of the last, partial span
  EXPECT_GE(anon_huge_kb_at(kdata), 4096) << "the last span stayed in small pages";
  store(int32_t(slots - 1));
  std::vector<float> got(static_cast<size_t>(cols));
  for (const int32_t s : {0, 511, 1023, 2048, 3071, int32_t(slots - 1)}) {
    be.download(kc.t.row_slice(s, 1), got.data(), got.size() * 4);
    EXPECT_EQ(got, rows[s]) << "slot " << s;
  }
}
#endif

// x (rows x heads * hd) rotated on be at positions pos, by rope or (with_factors) rope_freqs.
std::vector<float> rope_on(Backend& be, const std::vector<float>& x, const std::vector<int32_t>& pos, int64_t rows,
                           const std::vector<float>& factors, int32_t heads, int32_t hd, float theta, bool with_factors) {
  Buf xb = make(be, DType::F32, rows, int64_t(heads) * hd), pb = make(be, DType::I32, rows, 1),
      fb = make(be, DType::F32, 1, hd / 2);
  be.upload(xb.t, x.data(), x.size() * 4);
  be.upload(pb.t, pos.data(), size_t(rows) * 4);
  be.upload(fb.t, factors.data(), factors.size() * 4);
  if (with_factors) be.rope_freqs(xb.t, pb.t, fb.t, heads, hd, theta);
  else be.rope(xb.t, pb.t, heads, hd, theta);
  std::vector<float> out(x.size());
  be.download(xb.t, out.data(), x.size() * 4);
  return out;
}

// Rope in the fast backend mode must give the reference's values exactly (a model's output may not
// depend on the backend mode in f32), with and without per-pair frequency factors, at large
// positions where an angle's rounding shows.
TEST(CpuFast, RopeEqualsTheReferenceBitForBit) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend ref(CpuOptions{.reference = true}), fast(CpuOptions{.threads = 2});
  for (const auto& [heads, hd] : {std::pair<int32_t, int32_t>{3, 64}, {5, 6}, {2, 128}}) {
    const int64_t rows = 7;
    const auto x = randn(rng, size_t(rows * heads * hd));
    std::vector<int32_t> pos(static_cast<size_t>(rows));
    for (auto& p : pos) p = int32_t(rng() % 40000);
    std::vector<float> factors(size_t(hd / 2));
    for (auto& f : factors) f = 1.0f + float(rng() % 1000) / 100.0f;
    for (bool with_factors : {false, true}) {
      const float theta = with_factors ? 500000.0f : 10000.0f;
      const std::vector<float> outs[2] = {rope_on(ref, x, pos, rows, factors, heads, hd, theta, with_factors),
                                          rope_on(fast, x, pos, rows, factors, heads, hd, theta, with_factors)};
      EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[1].data(), x.size() * 4))
          << heads << " heads of " << hd << (with_factors ? ", with factors" : "");
    }
  }
}

// The fast backend keeps the (cos, sin) table of the positions it last rotated (two: a local and a
// global base): every call, hit or miss, must still give the reference's bits. A sequence on one
// backend: q then k with the same positions (a hit), one position changed, with factors, the other
// base, back to the first (a hit on the older entry), the factors' values changed in place (a
// miss), and a prompt-sized batch (rows on the pool).
TEST(CpuFast, RopeTableFollowsPositionsBaseAndFactors) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend ref(CpuOptions{.reference = true}), fast(CpuOptions{.threads = 2});
  const int32_t hd = 64;
  std::vector<float> factors(size_t(hd / 2));
  for (auto& f : factors) f = 1.0f + float(rng() % 1000) / 100.0f;
  std::vector<int32_t> pos(9);
  for (auto& p : pos) p = int32_t(rng() % 30000);
  struct Call {
    int32_t heads;
    float theta;
    bool with_factors;
    int64_t rows;
  };
  const Call calls[] = {{4, 10000.0f, false, 9},  {2, 10000.0f, false, 9},  {2, 10000.0f, false, 9},
                        {4, 10000.0f, true, 9},   {4, 1000000.0f, false, 9}, {4, 10000.0f, true, 9},
                        {4, 10000.0f, true, 9},   {4, 10000.0f, true, 70},  {4, 10000.0f, true, 70}};
  for (size_t c = 0; c < std::size(calls); ++c) {
    const Call& k = calls[c];
    if (c == 2) pos[5] += 1;                    // same length, one position moved
    if (c == 6) factors[3] *= 1.5f;             // the factors' values, not their buffer, changed
    if (c == 7) {                               // a prompt: 70 rows x 4 heads x 64 on the pool
      pos.resize(70);
      for (auto& p : pos) p = int32_t(rng() % 30000);
    }
    const auto x = randn(rng, size_t(k.rows * k.heads * hd));
    const std::vector<float> outs[2] = {rope_on(ref, x, pos, k.rows, factors, k.heads, hd, k.theta, k.with_factors),
                                        rope_on(fast, x, pos, k.rows, factors, k.heads, hd, k.theta, k.with_factors)};
    EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[1].data(), x.size() * 4)) << "call " << c;
  }
}

// Every quantized weight type through the fast backend, at token counts around the four-token
// pass (1, 3, 4, 5) and prompt sizes (17, 33: 16-row panels with 8-token passes and a lone
// token, 37 outputs = 2 panels + 5 rows): near the reference, and each token's row bit-identical
// to the same token multiplied alone wherever the build has integer kernels (the result of a token
// must not depend on the batch or the prompt chunking around it). Rows of 768 and 1280 (3 and 5
// super-blocks: the K-quants' lane form), 2048 and 2304 (8 and 9: their exact form, two whole
// groups of four and a partial one), and for the 32-element types 800 (16 + 8 + a tail block) and
// 1056 (2 x 16 + a tail).
// out = w · x on backend be: n_out weight rows of type dt (their bytes wq) against n rows of x.
// `layout`: File, the weight as uploaded; Later, offered to Backend::repack_matmul_weight as the
// model loader's are, and multiplied at its first use (the CPU backend packs per call then);
// Packed, the same after two single-row matmuls (the second packs it into panels).
enum class Layout { File, Later, Packed };
std::vector<float> matmul_on(Backend& be, DType dt, const std::vector<uint8_t>& wq, int64_t n_out, int64_t n_in,
                             const float* x, int64_t n, Layout layout = Layout::File) {
  Buf wb = make(be, dt, n_out, n_in), xb = make(be, DType::F32, n, n_in), ob = make(be, DType::F32, n, n_out);
  be.upload(wb.t, wq.data(), wq.size());
  if (layout != Layout::File) {
    Result<bool> r = be.repack_matmul_weight(wb.t);
    EXPECT_TRUE(r.ok() && *r) << dtype_name(dt) << " weight not taken";
  }
  if (layout == Layout::Packed) {
    Buf x1 = make(be, DType::F32, 1, n_in), o1 = make(be, DType::F32, 1, n_out);
    std::vector<float> zeros(static_cast<size_t>(n_in));
    be.upload(x1.t, zeros.data(), zeros.size() * 4);
    be.matmul(wb.t, x1.t, o1.t);
    be.matmul(wb.t, x1.t, o1.t);
    EXPECT_TRUE(CpuBackend::host(wb.t).panels) << dtype_name(dt) << " weight not packed";
  }
  be.upload(xb.t, x, size_t(n * n_in) * 4);
  be.matmul(wb.t, xb.t, ob.t);
  std::vector<float> got(size_t(n * n_out));
  be.download(ob.t, got.data(), got.size() * 4);
  return got;
}

// Widths past the kernels' groups of eight 32-element blocks: one block (800, 1056), a pair (832),
// two pairs and a block (928), each AVX2 build pairing them as fastq::x32_layout says.
TEST(CpuFast, QuantizedMatmulIsBatchIndependentAndNearReference) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend ref(CpuOptions{.reference = true}), fast(CpuOptions{.threads = 3});
  const DType types[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL,
                         DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (DType dt : types)
  for (int64_t n_in : {768, 800, 832, 928, 1056, 1280, 2048, 2304}) {
    if (n_in % dtype_block_elems(dt) != 0) continue;
    // Two or three panels of 16 rows and 5 rows past them: AVX-512 prompts take panels in pairs,
    // so an odd count leaves one thread a panel alone.
    const int64_t n_out = (n_in / 32) % 2 ? 53 : 37;
    const bool integer = fastq::int_dot_for(dt) != nullptr || fastq::super_dot_for(dt, 1, n_in / 256) != nullptr;
    auto w = randn(rng, size_t(n_in * n_out));
    std::vector<uint8_t> wq(row_bytes(dt, n_in) * size_t(n_out));
    for (int64_t o = 0; o < n_out; ++o) quantize_row(dt, w.data() + o * n_in, wq.data() + size_t(o) * row_bytes(dt, n_in), n_in);
    auto run = [&](Backend& be, const float* x, int64_t n) { return matmul_on(be, dt, wq, n_out, n_in, x, n); };
    // 2, 3 and 4 rows: the row kernels' two-, three- and four-row passes (6 and 7 for Q6_K: 4 + 2 and
    // 4 + 3); 4, 5, 7 and 9 rows: the panels in AVX2 builds as fastq::panel_min_tokens gives them
    // (Q2_K-Q5_K, Q4_0, Q4_1 and IQ4_NL from 4, Q8_0 from 8, the rest from 6), in AVX-512 ones the
    // row kernels below 5 tokens (5 and 7: passes of 4 + 1 and 4 + 2 + 1; Q4_K and Q5_K from 7 =
    // 6 + 1, Q6_K from 15); 15: passes of 8, 4, 2 and 1 tokens (K-quants 6, 6, 2, 1; 17: 6, 6, 4, 1);
    // 65: IQ4_NL's full panels (its nibble panels below 64 rows).
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 9, 15, 17, 33, 65}) {
      const auto x = randn(rng, size_t(n * n_in));
      const auto got = run(fast, x.data(), n), want = run(ref, x.data(), n);
      EXPECT_LT(nmse(got, std::vector<double>(want.begin(), want.end())), 5e-4) << dtype_name(dt) << " width " << n_in << " rows " << n;
      if (!integer) continue;
      for (int64_t r : {int64_t(0), n / 2, n - 1}) {
        const auto alone = run(fast, x.data() + r * n_in, 1);
        for (int64_t o = 0; o < n_out; ++o)
          ASSERT_EQ(got[size_t(r * n_out + o)], alone[size_t(o)])
              << dtype_name(dt) << " width " << n_in << " row " << r << " of " << n << " output " << o;
      }
    }
  }
}

// The integer kernels' int16 partial sums stay below saturation at the formats' extremes: every
// quant byte (and scale byte) 0xFF, 0x00, 0x80 or 0x88 (largest and smallest unsigned quants, Q8_0's
// -128, IQ4_NL's -127, Q6_K's scale -128), against activations that all quantize to +127 or -127,
// alternate, or are random. Prompt-sized batches (the panels) and one row alone (decode) give the
// same bits, and the activations int8 holds exactly give the dequantized weights' sum in double to
// float rounding (a saturated sum would be off by percent).
TEST(CpuFast, IntegerKernelsHoldAtTheFormatsExtremes) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend fast(CpuOptions{.threads = 2});
  struct Scales { DType t; int d, dmin; };  // byte offsets of the f16 scales in a block (-1: none)
  const Scales types[] = {{DType::Q8_0, 0, -1}, {DType::Q4_0, 0, -1}, {DType::Q4_1, 0, 2}, {DType::Q5_0, 0, -1},
                          {DType::Q5_1, 0, 2}, {DType::IQ4_NL, 0, -1}, {DType::Q2_K, 80, 82}, {DType::Q3_K, 108, -1},
                          {DType::Q4_K, 0, 2}, {DType::Q5_K, 0, 2}, {DType::Q6_K, 208, -1}};
  const int64_t n_out = 37, n_in = 2304, tokens = 17;
  for (const auto& [dt, d_at, dmin_at] : types)
    for (uint8_t fill : {uint8_t(0xFF), uint8_t(0x00), uint8_t(0x80), uint8_t(0x88)}) {
      const size_t rb = row_bytes(dt, n_in), block = size_t(dtype_block_bytes(dt));
      std::vector<uint8_t> wq(rb * size_t(n_out), fill);
      const uint16_t hd = float_to_half(0.01f), hm = float_to_half(0.005f);
      for (size_t b = 0; b < wq.size() / block; ++b) {
        std::memcpy(wq.data() + b * block + size_t(d_at), &hd, 2);
        if (dmin_at >= 0) std::memcpy(wq.data() + b * block + size_t(dmin_at), &hm, 2);
      }
      std::vector<float> x(size_t(tokens * n_in));
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t i = 0; i < n_in; ++i)
          x[size_t(t * n_in + i)] = t == 0 ? 1.0f : t == 1 ? -1.0f : t == 2 ? (i % 2 ? 1.0f : -1.0f) : std::normal_distribution<float>()(rng);
      const auto got = matmul_on(fast, dt, wq, n_out, n_in, x.data(), tokens);
      // The first three tokens as a batch of their own: the row kernels' three-row pass.
      const auto three = matmul_on(fast, dt, wq, n_out, n_in, x.data(), 3);
      for (size_t i = 0; i < three.size(); ++i) ASSERT_EQ(three[i], got[i]) << dtype_name(dt) << " fill " << int(fill) << " at " << i;
      std::vector<float> deq(static_cast<size_t>(n_in));
      for (int64_t t = 0; t < tokens; ++t) {
        const auto alone = matmul_on(fast, dt, wq, n_out, n_in, x.data() + t * n_in, 1);
        for (int64_t o = 0; o < n_out; ++o) {
          const float g = got[size_t(t * n_out + o)];
          ASSERT_EQ(g, alone[size_t(o)]) << dtype_name(dt) << " fill " << int(fill) << " token " << t << " output " << o;
          if (t >= 3) continue;  // activations int8 holds exactly (the random ones only for the bits above)
          dequantize_row(dt, wq.data() + size_t(o) * rb, deq.data(), n_in);
          double want = 0, mag = 0;
          for (int64_t i = 0; i < n_in; ++i) {
            want += double(deq[size_t(i)]) * x[size_t(t * n_in + i)];
            mag += std::fabs(double(deq[size_t(i)]));
          }
          ASSERT_NEAR(g, want, 1e-5 * mag + 1e-6) << dtype_name(dt) << " fill " << int(fill) << " token " << t << " output " << o;
        }
      }
    }
}

// Float weights (F32, F16, BF16) against a small batch (a verify pass, a few streams: the rows
// below the GEMM) give each row exactly what the one-row decode kernel gives it, at widths with
// every kind of tail (32-float steps, 8-float steps, single floats).
// A query row's attention is the same bits whether it is computed alone (decode) or among other
// rows of its sequence (a prompt chunk, a verify pass), and whatever other sequences share the
// call: otherwise a prefix cache hit, a different chunking or speculation could change a greedy
// continuation. Across the kernels' paths: head sizes that take the grouped kernels (16, 64), the
// paired heads of 8 (AVX-512: groups of two, three and one) and those that take the one-head
// kernels (24, 72 with AVX-512), grouped-query and multi-head layouts, F32 and F16
// caches, contexts past the decode span (512 positions, merged), a sliding window and a soft cap.
// Slots no row may read (free blocks, and positions that left the window) hold NaN, and blocks
// wholly behind the window are released in the block table.
TEST(CpuFast, AttentionRowsAreTheSameAloneOrInAChunk) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend be(CpuOptions{.threads = 3});
  struct Shape {
    int32_t nh, nkv, hd;
  };
  const int32_t bs = 16;
  for (Shape sh : {Shape{4, 4, 64}, Shape{8, 2, 16}, Shape{6, 2, 24}, Shape{4, 2, 8}, Shape{6, 2, 8}, Shape{3, 3, 8}, Shape{3, 1, 72}, Shape{10, 2, 64}})
  for (DType kvt : {DType::F32, DType::F16})
  for (auto [window, softcap] : {std::pair{0, 0.0f}, std::pair{37, 0.0f}, std::pair{300, 20.0f}}) {
    // Sequence 0: a chunk of 21 rows ending at position 700 (spans of 512 and their merge);
    // sequence 1: a chunk of 5 rows from position 0; sequence 2: one decode row at 40.
    const std::vector<std::pair<int32_t, int32_t>> seqs = {{21, 700}, {5, 5}, {1, 40}};  // (q_len, ctx_len)
    const int32_t kvc = sh.nkv * sh.hd, qc = sh.nh * sh.hd;
    int32_t total_q = 0, total_blocks = 0;
    for (auto [q, c] : seqs) {
      total_q += q;
      total_blocks += (c + bs - 1) / bs;
    }
    std::vector<int32_t> perm(size_t(total_blocks + 4));  // four free blocks
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const int64_t slots = int64_t(perm.size()) * bs;
    std::vector<float> kf(size_t(slots * kvc), NAN), vf(size_t(slots * kvc), NAN);
    std::vector<SeqInfo> info;
    std::vector<int32_t> bt;
    int32_t qs = 0;
    for (auto [q, c] : seqs) {
      info.push_back({qs, q, c, int32_t(bt.size())});
      const int32_t first_row_lo = window > 0 ? std::max(0, c - q + 1 - window) : 0;
      for (int32_t b = 0; b < (c + bs - 1) / bs; ++b) bt.push_back(perm[bt.size()]);
      for (int32_t t = first_row_lo; t < c; ++t) {  // older positions left the window: NaN
        const int64_t slot = int64_t(bt[size_t(info.back().bt_offset + t / bs)]) * bs + t % bs;
        const auto k = randn(rng, size_t(kvc)), v = randn(rng, size_t(kvc));
        std::copy(k.begin(), k.end(), kf.begin() + slot * kvc);
        std::copy(v.begin(), v.end(), vf.begin() + slot * kvc);
      }
      // Blocks wholly behind the window are given back as the scheduler does (kReleased): a
      // kernel that looked them up would read outside the cache.
      for (int32_t b = 0; (b + 1) * bs <= first_row_lo; ++b) bt[size_t(info.back().bt_offset + b)] = BlockTable::kReleased;
      qs += q;
    }
    const auto qdata = randn(rng, size_t(total_q * qc));
    Buf kb = make(be, kvt, slots, kvc), vb = make(be, kvt, slots, kvc);
    std::vector<uint8_t> kbytes(row_bytes(kvt, kvc) * size_t(slots)), vbytes(kbytes.size());
    for (int64_t r = 0; r < slots; ++r) {
      quantize_row(kvt, kf.data() + r * kvc, kbytes.data() + size_t(r) * row_bytes(kvt, kvc), kvc);
      quantize_row(kvt, vf.data() + r * kvc, vbytes.data() + size_t(r) * row_bytes(kvt, kvc), kvc);
    }
    be.upload(kb.t, kbytes.data(), kbytes.size());
    be.upload(vb.t, vbytes.data(), vbytes.size());
    Buf bb = make(be, DType::I32, int64_t(bt.size()), 1);
    be.upload(bb.t, bt.data(), bt.size() * 4);
    AttentionParams p{0, sh.nh, sh.nkv, sh.hd, bs, 0, 1.0f / std::sqrt(float(sh.hd)), window, softcap};
    // Runs the given sequences (their rows of q) in one call; returns each row's output.
    auto attend = [&](const std::vector<SeqInfo>& run, const std::vector<const float*>& q_rows) {
      const int64_t n = int64_t(q_rows.size());
      std::vector<float> qv;
      for (const float* r : q_rows) qv.insert(qv.end(), r, r + qc);
      Buf qb = make(be, DType::F32, n, qc), ob = make(be, DType::F32, n, qc);
      Buf sb = make(be, DType::I32, int64_t(run.size()), 4);
      be.upload(qb.t, qv.data(), qv.size() * 4);
      be.upload(sb.t, run.data(), run.size() * 16);
      AttentionParams pr = p;
      pr.n_seqs = int32_t(run.size());
      for (const auto& si : run) pr.max_ctx_len = std::max(pr.max_ctx_len, si.ctx_len);
      be.paged_attention(qb.t, kb.t, vb.t, sb.t, bb.t, ob.t, pr);
      std::vector<float> o(size_t(n * qc));
      be.download(ob.t, o.data(), o.size() * 4);
      return o;
    };
    std::vector<const float*> all_rows;
    for (int32_t r = 0; r < total_q; ++r) all_rows.push_back(qdata.data() + size_t(r) * size_t(qc));
    const auto together = attend(info, all_rows);
    for (const auto& si : info)
      for (int32_t j = 0; j < si.q_len; ++j) {
        const int32_t row = si.q_start + j;
        const auto alone = attend({{0, 1, si.ctx_len - si.q_len + j + 1, si.bt_offset}}, {all_rows[size_t(row)]});
        for (int32_t e = 0; e < qc; ++e) {
          const float a = alone[size_t(e)], t = together[size_t(row * qc + e)];
          ASSERT_FALSE(std::isnan(a)) << "decode read a slot it may not";
          ASSERT_EQ(std::bit_cast<uint32_t>(a), std::bit_cast<uint32_t>(t))
              << "heads " << sh.nh << "/" << sh.nkv << " head_dim " << sh.hd << " " << dtype_name(kvt) << " window " << window
              << " softcap " << softcap << ": row " << j << " of a " << si.q_len << "-row chunk at context " << si.ctx_len
              << ", element " << e;
        }
      }
  }
}

// A float row's outputs are decode's bits at every batch size: small batches (verify steps, a few
// streams) and prompt-sized ones (16+ rows, the tiled GEMM), across widths with and without a
// tail past the last 32 (or 64) elements, rows that are not on cache lines (72, 77, 100 floats),
// widths past the GEMM's K block (2100), and output counts that leave partial tiles.
TEST(CpuFast, FloatRowsEqualDecodeRowsAtEveryBatchSize) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend fast(CpuOptions{.threads = 3}), single(CpuOptions{.threads = 1});
  // 37 outputs: partial tiles; 95 on one thread: a 96-row weight block ending in two single-row
  // tiles (which once overran the tile buffers).
  for (auto [n_out, threads] : {std::pair<int64_t, int>{37, 3}, std::pair<int64_t, int>{95, 1}})
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
  for (int64_t n_in : {64, 72, 77, 100, 768, 2100}) {
    CpuBackend& be = threads == 1 ? single : fast;
    const auto wf = randn(rng, size_t(n_in * n_out));
    std::vector<uint8_t> w(row_bytes(dt, n_in) * size_t(n_out));
    for (int64_t o = 0; o < n_out; ++o) quantize_row(dt, wf.data() + o * n_in, w.data() + size_t(o) * row_bytes(dt, n_in), n_in);
    auto run = [&](const float* x, int64_t n) { return matmul_on(be, dt, w, n_out, n_in, x, n); };
    for (int64_t n : {3, 4, 5, 8, 15, 16, 17, 34}) {
      const auto x = randn(rng, size_t(n * n_in));
      const auto got = run(x.data(), n);
      for (int64_t r = 0; r < n; ++r) {
        const auto alone = run(x.data() + r * n_in, 1);
        for (int64_t o = 0; o < n_out; ++o)
          ASSERT_EQ(got[size_t(r * n_out + o)], alone[size_t(o)])
              << dtype_name(dt) << " width " << n_in << " row " << r << " of " << n << " output " << o;
      }
    }
  }
}

// Float weights packed into panels (CpuBackend::repack_matmul_weight, at a weight's first
// decode-sized matmul): every row of a batch gets the bits it gets alone, at every batch size (the
// decode tile, the prompt tiles of 1-6 rows, groups of four panels and single ones, a last panel
// part empty), on several threads (whose decode ranges must fall on panel boundaries) and one, and
// the same bits before the weight is packed (each band packed per call, with register transposes
// of 16 or 8 lanes and a scalar tail: widths of 7, 77 and 2100 leave tails, 2100 spans K blocks);
// and the results are the reference product up to F32 summation (with AVX-512 BF16, of the
// activations rounded to BF16). A panel packed from the wrong rows, steps out of order or a lost
// tail shows as an NMSE near 1.
TEST(CpuFast, PackedFloatWeightsGiveEveryRowItsDecodeBits) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend fast(CpuOptions{.threads = 3}), single(CpuOptions{.threads = 1});
  for (auto [n_out, threads] : {std::pair<int64_t, int>{37, 3}, std::pair<int64_t, int>{95, 1}, std::pair<int64_t, int>{160, 3}})
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
  for (int64_t n_in : {7, 64, 77, 768, 2100}) {
    CpuBackend& be = threads == 1 ? single : fast;
    const auto wf = randn(rng, size_t(n_in * n_out));
    const size_t stride = row_bytes(dt, n_in);
    std::vector<uint8_t> w(stride * size_t(n_out));
    std::vector<float> wd(wf.size());
    for (int64_t o = 0; o < n_out; ++o) {
      quantize_row(dt, wf.data() + o * n_in, w.data() + size_t(o) * stride, n_in);
      dequantize_row(dt, w.data() + size_t(o) * stride, wd.data() + o * n_in, n_in);
    }
    const bool rounded = dt == DType::BF16 && fast::bf16_rounds_activations() && n_in % 2 == 0;
    auto run = [&](const float* x, int64_t n, Layout l = Layout::Packed) { return matmul_on(be, dt, w, n_out, n_in, x, n, l); };
    for (int64_t n : {1, 2, 3, 5, 6, 7, 13, 16, 34}) {
      const auto x = randn(rng, size_t(n * n_in));
      const auto got = run(x.data(), n);
      std::vector<double> want(size_t(n * n_out));
      for (int64_t r = 0; r < n; ++r) {
        std::vector<float> xr(x.begin() + r * n_in, x.begin() + (r + 1) * n_in);
        if (rounded) {
          std::vector<uint8_t> b(row_bytes(DType::BF16, n_in));
          quantize_row(DType::BF16, xr.data(), b.data(), n_in);
          dequantize_row(DType::BF16, b.data(), xr.data(), n_in);
        }
        for (int64_t o = 0; o < n_out; ++o) {
          double s = 0;
          for (int64_t k = 0; k < n_in; ++k) s += double(xr[size_t(k)]) * wd[size_t(o * n_in + k)];
          want[size_t(r * n_out + o)] = s;
        }
      }
      EXPECT_LT(nmse(got, want), 1e-10) << dtype_name(dt) << " " << n_out << " x " << n_in << ", " << n << " rows";
      const auto before = run(x.data(), n, Layout::Later);
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], before[i]) << dtype_name(dt) << " " << n_out << " x " << n_in << ", " << n << " rows, output " << i
                                     << ": packed per call and packed once differ";
      if (n == 1) continue;
      for (int64_t r = 0; r < n; ++r) {
        const auto alone = run(x.data() + r * n_in, 1);
        for (int64_t o = 0; o < n_out; ++o)
          ASSERT_EQ(got[size_t(r * n_out + o)], alone[size_t(o)])
              << dtype_name(dt) << " " << n_out << " x " << n_in << ", row " << r << " of " << n << ", output " << o;
      }
    }
  }
}

// Weights kept in compact panels (fast::kept_panels: the 32-element types and Q2_K-Q5_K in 8-row
// groups in AVX2 builds without the 512-bit kernels, Q2_K and Q3_K in 16-row groups in AVX-512 VNNI
// builds): at every batch size (decode, the 1-3 token passes, the 4-token ones and a partial last
// pass) every output is the bits the file's layout gives (the row kernels for a few tokens, the
// panels packed per call from 4-8), on several threads, whose decode ranges fall on groups, and
// on one; with 8 or 16 rows (one group), 5 (only rows past the groups) and 37 or 163 (groups and
// a tail). A group packed from the wrong rows, a transposed quad, a fifth bit or a
// scale (or a K-quant's sub-block scale, min or top bits) from the wrong row shows as a differing bit; the file layout's nearness to the reference is
// QuantizedMatmulIsBatchIndependentAndNearReference's.
TEST(CpuFast, KeptQuantPanelsGiveTheFileLayoutsBits) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend fast(CpuOptions{.threads = 3}), single(CpuOptions{.threads = 1});
  int kept = 0;
  for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL, DType::Q2_K, DType::Q3_K,
                   DType::Q4_K, DType::Q5_K}) {
    if (!fast::kept_panels(dt)) continue;
    ++kept;
    const bool k = dtype_block_elems(dt) == 256;
    for (auto [n_out, threads] : {std::pair<int64_t, int>{37, 3}, std::pair<int64_t, int>{8, 3}, std::pair<int64_t, int>{16, 3},
                                  std::pair<int64_t, int>{5, 3}, std::pair<int64_t, int>{163, 1}, std::pair<int64_t, int>{163, 3}})
    for (int64_t n_in : k ? std::vector<int64_t>{256, 768, 1536} : std::vector<int64_t>{768, 800, 1056}) {
      CpuBackend& be = threads == 1 ? single : fast;
      const auto wf = randn(rng, size_t(n_in * n_out));
      const size_t stride = row_bytes(dt, n_in);
      std::vector<uint8_t> w(stride * size_t(n_out));
      for (int64_t o = 0; o < n_out; ++o) quantize_row(dt, wf.data() + o * n_in, w.data() + size_t(o) * stride, n_in);
      for (int64_t n : {1, 2, 3, 4, 6, 9, 70}) {
        const auto x = randn(rng, size_t(n * n_in));
        const auto packed = matmul_on(be, dt, w, n_out, n_in, x.data(), n, Layout::Packed);
        const auto file = matmul_on(be, dt, w, n_out, n_in, x.data(), n, Layout::File);
        const auto later = matmul_on(be, dt, w, n_out, n_in, x.data(), n, Layout::Later);
        for (size_t i = 0; i < packed.size(); ++i) {
          ASSERT_EQ(packed[i], file[i]) << dtype_name(dt) << " " << n_out << " x " << n_in << ", " << n << " rows, output " << i;
          ASSERT_EQ(later[i], file[i]) << dtype_name(dt) << " " << n_out << " x " << n_in << ", " << n << " rows, output " << i;
        }
      }
    }
  }
  if (kept == 0) GTEST_SKIP() << "this build keeps every quantized weight as it is";
}

// What repack_matmul_weight leaves alone: the reference backend's weights (its kernels read the
// file's layout), quantized types without kept panels (Q6_K here), a tensor that does not fill
// its buffer, and one packed already.
TEST(CpuFast, RepackTakesOnlyWholeWeightsOfPanelTypes) {
  CpuBackend fast(CpuOptions{.threads = 2}), ref(CpuOptions{.reference = true});
  Buf a = make(ref, DType::F32, 32, 64);
  EXPECT_FALSE(*ref.repack_matmul_weight(a.t));
  Buf q = make(fast, DType::Q6_K, 32, 256);
  EXPECT_FALSE(*fast.repack_matmul_weight(q.t));
  Buf f = make(fast, DType::F32, 32, 64);
  EXPECT_FALSE(*fast.repack_matmul_weight(f.t.row_slice(0, 16)));
  EXPECT_FALSE(CpuBackend::host(f.t).panels);
  EXPECT_TRUE(*fast.repack_matmul_weight(f.t));
  EXPECT_TRUE(CpuBackend::host(f.t).packable);
  EXPECT_FALSE(*fast.repack_matmul_weight(f.t));
  // Packed at its first decode-sized matmul after its first use; a prompt-sized one (64 rows or
  // more) leaves it as it is.
  Buf x64 = make(fast, DType::F32, 64, 64), o64 = make(fast, DType::F32, 64, 32);
  Buf x1 = make(fast, DType::F32, 1, 64), o1 = make(fast, DType::F32, 1, 32);
  fast.matmul(f.t, x1.t, o1.t);
  EXPECT_FALSE(CpuBackend::host(f.t).panels) << "packed at its first use";
  fast.matmul(f.t, x64.t, o64.t);
  EXPECT_FALSE(CpuBackend::host(f.t).panels) << "packed for a prompt";
  const Tensor many[] = {f.t};
  const Tensor outs[] = {o1.t};
  fast.matmul_many(x1.t, many, outs, 1);
  EXPECT_TRUE(CpuBackend::host(f.t).panels);
  EXPECT_FALSE(CpuBackend::host(f.t).packable);
}

// A weight bigger than the packing's chunk (4 MiB of the source) is packed chunk by chunk, and each
// chunk's source bytes are handed back once, in order, covering the weight exactly (the model
// loader drops those mapped pages as they come); the packed result is still the weight.
TEST(CpuFast, PackingHandsBackEachChunkOfTheSource) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend fast(CpuOptions{.threads = 2}), ref(CpuOptions{.reference = true});
  const int64_t n_out = 1100, n_in = 1024;  // 4.3 MiB of F32
  const auto w = randn(rng, size_t(n_out * n_in));
  std::vector<uint8_t> bytes(w.size() * 4);
  std::memcpy(bytes.data(), w.data(), bytes.size());
  Buf wb = make(fast, DType::F32, n_out, n_in);
  fast.upload(wb.t, bytes.data(), bytes.size());
  std::vector<std::pair<size_t, size_t>> done;
  Result<bool> r = fast.repack_matmul_weight(wb.t, [&](size_t off, size_t n) { done.emplace_back(off, n); });
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_TRUE(done.empty()) << "nothing is packed before a matmul asks";
  Buf x1 = make(fast, DType::F32, 1, n_in), o1 = make(fast, DType::F32, 1, n_out);
  fast.matmul(wb.t, x1.t, o1.t);
  fast.matmul(wb.t, x1.t, o1.t);
  ASSERT_TRUE(CpuBackend::host(wb.t).panels);
  ASSERT_GE(done.size(), 2u);
  size_t next = 0;
  for (const auto& [off, n] : done) {
    EXPECT_EQ(off, next);
    next = off + n;
  }
  EXPECT_EQ(next, bytes.size());
  const int64_t rows = 7;
  const auto x = randn(rng, size_t(rows * n_in));
  Buf xb = make(fast, DType::F32, rows, n_in), ob = make(fast, DType::F32, rows, n_out);
  fast.upload(xb.t, x.data(), x.size() * 4);
  fast.matmul(wb.t, xb.t, ob.t);
  std::vector<float> got(size_t(rows * n_out));
  fast.download(ob.t, got.data(), got.size() * 4);
  const auto want = matmul_on(ref, DType::F32, bytes, n_out, n_in, x.data(), rows);
  EXPECT_LT(nmse(got, std::vector<double>(want.begin(), want.end())), 1e-10);
}

// BF16 weights: with AVX-512 BF16 the products are those of the activations rounded to BF16
// (nearest even) and the weights, exact in F32, so the result is that product sum in double up to
// F32's summation (NMSE ~1e-14; truncating instead of rounding gives ~1e-5, a wrong pair order or
// a lost K block ~1). Without it, or at an odd width, the F32 activations. For decode, small
// batches and prompts alike; and a row's outputs do not depend on the batch around it, among
// prompts (16 rows against 40) and below them (each row against the row alone).
TEST(CpuFast, Bf16WeightsMeetRoundedActivations) {
  std::mt19937_64 rng(fresh_seed());
  CpuBackend fast(CpuOptions{.threads = 3});
  const int64_t n_out = 37;
  for (int64_t n_in : {64, 90, 91, 806, 1030}) {  // tails of 10 and 6 floats; 91: odd
    const auto wf = randn(rng, size_t(n_in * n_out));
    std::vector<uint8_t> w(row_bytes(DType::BF16, n_in) * size_t(n_out));
    std::vector<float> wd(wf.size());
    for (int64_t o = 0; o < n_out; ++o) {
      quantize_row(DType::BF16, wf.data() + o * n_in, w.data() + size_t(o) * row_bytes(DType::BF16, n_in), n_in);
      dequantize_row(DType::BF16, w.data() + size_t(o) * row_bytes(DType::BF16, n_in), wd.data() + o * n_in, n_in);
    }
    const bool rounded = fast::bf16_rounds_activations() && n_in % 2 == 0;
    const int64_t n_max = 40;
    const auto x = randn(rng, size_t(n_max * n_in));
    std::vector<float> xr(x.size());
    for (int64_t r = 0; r < n_max && rounded; ++r) {
      std::vector<uint8_t> b(row_bytes(DType::BF16, n_in));
      quantize_row(DType::BF16, x.data() + r * n_in, b.data(), n_in);
      dequantize_row(DType::BF16, b.data(), xr.data() + r * n_in, n_in);
    }
    const float* xa = rounded ? xr.data() : x.data();
    std::vector<double> want(size_t(n_max * n_out));
    for (int64_t r = 0; r < n_max; ++r)
      for (int64_t o = 0; o < n_out; ++o) {
        double s = 0;
        for (int64_t k = 0; k < n_in; ++k) s += double(xa[r * n_in + k]) * wd[size_t(o * n_in + k)];
        want[size_t(r * n_out + o)] = s;
      }
    std::vector<float> first16, all;
    for (int64_t n : {1, 2, 5, 16, 40}) {
      auto got = matmul_on(fast, DType::BF16, w, n_out, n_in, x.data(), n);
      EXPECT_LT(nmse(got, std::vector<double>(want.begin(), want.begin() + n * n_out)), 1e-10)
          << "width " << n_in << ", " << n << " rows" << (rounded ? ", rounded activations" : ", F32 activations");
      if (n == 16) first16 = std::move(got);
      else if (n == 40) all = std::move(got);
    }
    for (size_t e = 0; e < first16.size(); ++e)
      ASSERT_EQ(first16[e], all[e]) << "width " << n_in << " row " << e / size_t(n_out) << " of 16 against 40";
  }
}

// matmul_many (a layer's q/k/v or gate/up as one job on the pool, shared out in KiB across
// matrices of different types) gives each output exactly what matmul gives it, for a decode row
// and for a batch, at every thread count, and writes nothing past an output.
TEST(CpuFast, MatmulManyEqualsMatmulBitForBit) {
  std::mt19937_64 rng(fresh_seed());
  struct W { DType t; int64_t rows; };
  const std::vector<std::vector<W>> groups = {
      {{DType::Q4_K, 64}, {DType::Q4_K, 16}, {DType::Q6_K, 16}},  // a Q4_K_M layer's q, k, v
      {{DType::Q4_K, 43}, {DType::Q4_K, 43}},                     // gate, up
      {{DType::F32, 7}, {DType::Q8_0, 33}, {DType::F16, 5}, {DType::BF16, 9}, {DType::Q5_0, 17}, {DType::IQ4_NL, 3}},
      {{DType::Q6_K, 1}, {DType::Q2_K, 50}}};
  const int64_t n_in = 2048;
  constexpr float kPoison = 7.5f;
  for (int threads : {1, 2, 3}) {
    CpuBackend be(CpuOptions{.threads = threads});
    for (const auto& g : groups)
      for (int64_t n : {1, 3}) {
        std::vector<Buf> ws, outs, want;
        std::vector<Tensor> wt, ot;
        for (const W& w : g) {
          const auto f = randn(rng, size_t(w.rows * n_in));
          std::vector<uint8_t> q(row_bytes(w.t, n_in) * size_t(w.rows));
          for (int64_t o = 0; o < w.rows; ++o) quantize_row(w.t, f.data() + o * n_in, q.data() + size_t(o) * row_bytes(w.t, n_in), n_in);
          ws.push_back(make(be, w.t, w.rows, n_in));
          be.upload(ws.back().t, q.data(), q.size());
          // One float more than the output, poisoned, so a write past it shows.
          outs.push_back(make(be, DType::F32, 1, n * w.rows + 1));
          const std::vector<float> poison(size_t(n * w.rows + 1), kPoison);
          be.upload(outs.back().t, poison.data(), poison.size() * 4);
          want.push_back(make(be, DType::F32, n, w.rows));
          wt.push_back(ws.back().t);
          ot.push_back(Tensor{outs.back().t.buf, 0, DType::F32, n, w.rows});
        }
        const auto x = randn(rng, size_t(n * n_in));
        Buf xb = make(be, DType::F32, n, n_in);
        be.upload(xb.t, x.data(), x.size() * 4);
        for (size_t i = 0; i < g.size(); ++i) be.matmul(ws[i].t, xb.t, want[i].t);
        be.matmul_many(xb.t, wt.data(), ot.data(), wt.size());
        for (size_t i = 0; i < g.size(); ++i) {
          std::vector<float> got(size_t(n * g[i].rows + 1)), exp(size_t(n * g[i].rows));
          be.download(outs[i].t, got.data(), got.size() * 4);
          be.download(want[i].t, exp.data(), exp.size() * 4);
          for (size_t e = 0; e < exp.size(); ++e)
            ASSERT_EQ(got[e], exp[e]) << dtype_name(g[i].t) << " matrix " << i << " element " << e << ", " << n << " rows, "
                                      << threads << " threads";
          EXPECT_EQ(got.back(), kPoison) << "wrote past matrix " << i;
        }
      }
  }
}

// A decode matvec's rows go to the threads by measured speed (parallel_for_balanced), and small
// ones stay on the calling thread: whatever the split, every row is what one thread computes for it,
// including odd row counts and shares pinned far from even.
TEST(CpuFast, MatvecRowsAreTheSameWhateverTheShares) {
  std::mt19937_64 rng(fresh_seed());
  const int64_t n_in = 2048;
  for (DType dt : {DType::Q4_K, DType::Q2_K, DType::Q8_0, DType::F32, DType::IQ4_NL})
    for (int64_t rows : {601, 7}) {  // 601 rows: 0.4-4.9 MB, split; 7 rows: under the handoff size
      const auto f = randn(rng, size_t(rows * n_in));
      const size_t rb = row_bytes(dt, n_in);
      std::vector<uint8_t> q(rb * size_t(rows));
      for (int64_t o = 0; o < rows; ++o) quantize_row(dt, f.data() + o * n_in, q.data() + size_t(o) * rb, n_in);
      auto x = randn(rng, size_t(n_in));
      const HostTensor w{q.data(), dt, rows, n_in}, xt{reinterpret_cast<uint8_t*>(x.data()), DType::F32, 1, n_in};
      std::vector<float> want(static_cast<size_t>(rows)), got(static_cast<size_t>(rows));
      ThreadPool one(1);
      fast::matmul(one, w, xt, HostTensor{reinterpret_cast<uint8_t*>(want.data()), DType::F32, 1, rows});
      for (const std::vector<double>& shares : {std::vector<double>{0.5, 0.5, 0.0}, {0.1, 0.8, 0.1}, {0.58, 0.09, 0.33}}) {
        ThreadPool pool(3);
        for (int rep = 0; rep < 20; ++rep) {
          pool.set_shares(shares);
          std::fill(got.begin(), got.end(), -1.0f);
          fast::matmul(pool, w, xt, HostTensor{reinterpret_cast<uint8_t*>(got.data()), DType::F32, 1, rows});
          for (int64_t o = 0; o < rows; ++o)
            ASSERT_EQ(got[size_t(o)], want[size_t(o)]) << dtype_name(dt) << " row " << o << " of " << rows << ", shares "
                                                       << shares[0] << "/" << shares[1] << "/" << shares[2];
        }
      }
    }
}

// The K-quant kernels against the exact dot of the dequantized weights with the dequantized
// activations (quantized per 256 as the kernels take them). The weight blocks are random bytes
// (every scale, min and quant bit pattern the format allows, e.g. Q6_K scale -128, Q3_K scale -32),
// with finite random halves for d and dmin; the activations include an all-zero super-block and a
// spike. The four-row kernel must give the one-row kernel's results bit for bit, on rows of 1, 3
// and 5 super-blocks (the lane form) and of 8 and 9 (the exact form, and the 16-row panels where
// the build has them).
TEST(CpuFast, SuperBlockKernelsMatchDequantizedDots) {
  if (!fastq::super_dot_for(DType::Q4_K, 1, 1)) GTEST_SKIP() << "this build has no AVX2 kernels (portable path)";
  std::mt19937_64 rng(fresh_seed());
  struct Halves { DType t; int d, dmin; };  // byte offsets of the f16 scales in a block (-1: none)
  const Halves types[] = {{DType::Q2_K, 80, 82}, {DType::Q3_K, 108, -1}, {DType::Q4_K, 0, 2}, {DType::Q5_K, 0, 2}, {DType::Q6_K, 208, -1}};
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  for (const auto& [dt, d_at, dmin_at] : types) {
    for (int64_t nsb : {1, 3, 5, 8, 9}) {
      const int64_t n = 256 * nsb;
      auto x = randn(rng, size_t(4 * n));
      std::fill(x.begin() + n, x.begin() + n + 256, 0.0f);  // row 1: a zero super-block (scale 0)
      x[size_t(2 * n + 5)] = 40.0f;                          // row 2: a spike sets its scale
      std::vector<int8_t> q(size_t(4 * n));
      std::vector<float> d(size_t(4 * nsb));
      std::vector<int16_t> sums(size_t(4 * n / 16));
      fastq::quantize_x256(x.data(), 0, 4 * nsb, q.data(), d.data(), sums.data(), dt);
      // qe: q in element order (the kernels' layout may order a super-block's sub-blocks otherwise).
      std::vector<int8_t> qe(q.size());
      std::vector<int> seen(256);
      for (int i = 0; i < 256; ++i) {
        const int slot = fastq::x256_slot(dt, i);
        ASSERT_TRUE(slot >= 0 && slot < 256 && seen[size_t(slot)]++ == 0) << "slot of element " << i;
        for (int64_t sb = 0; sb < 4 * nsb; ++sb) qe[size_t(256 * sb + i)] = q[size_t(256 * sb + slot)];
      }
      for (int64_t i = 0; i < 4 * n; ++i) {
        const float dq = d[size_t(i / 256)];
        ASSERT_LE(std::fabs(qe[size_t(i)] * dq - x[size_t(i)]), 0.5f * dq * 1.0001f + 1e-30f) << "activation " << i;
      }
      for (int64_t r = 0; r < 4 * n / 16; ++r) {
        int s = 0;
        for (int64_t i = 0; i < 16; ++i) s += qe[size_t(16 * r + i)];
        ASSERT_EQ(sums[size_t(r)], s) << "run " << r;
      }
      const size_t rb = row_bytes(dt, n);
      std::vector<uint8_t> rows16(16 * rb);  // the rows below, for the 16-row panels
      for (int rep = 0; rep < 16; ++rep) {
        std::vector<uint8_t> wrow(rb);
        for (auto& b : wrow) b = uint8_t(rng());
        const size_t block = rb / size_t(nsb);
        for (int64_t b = 0; b < nsb; ++b) {
          const uint16_t hd = float_to_half(scale(rng)), hm = float_to_half(scale(rng));
          std::memcpy(wrow.data() + size_t(b) * block + size_t(d_at), &hd, 2);
          if (dmin_at >= 0) std::memcpy(wrow.data() + size_t(b) * block + size_t(dmin_at), &hm, 2);
        }
        std::vector<float> deq(static_cast<size_t>(n));
        dequantize_row(dt, wrow.data(), deq.data(), n);
        float four[4];
        fastq::super_dot_for(dt, 4, nsb)(wrow.data(), q.data(), d.data(), sums.data(), nsb, four);
        for (int64_t t = 0; t < 4; ++t) {
          double want = 0, mag = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double term = double(deq[size_t(i)]) * qe[size_t(t * n + i)] * d[size_t(t * nsb + i / 256)];
            want += term;
            mag += std::fabs(term);
          }
          float one;
          fastq::super_dot_for(dt, 1, nsb)(wrow.data(), q.data() + t * n, d.data() + t * nsb, sums.data() + t * 16 * nsb, nsb, &one);
          EXPECT_NEAR(one, want, 1e-5 * mag + 1e-30) << dtype_name(dt) << " super-blocks " << nsb << " row " << t;
          EXPECT_EQ(four[t], one) << dtype_name(dt) << " super-blocks " << nsb << " row " << t;
        }
        std::memcpy(rows16.data() + size_t(rep) * rb, wrow.data(), rb);
      }
      // A matvec's row range in one call (AVX-512 builds): one row, two (a pair in the lane form),
      // then rows 1..15 (seven pairs and a lone row, or a run of the exact form), each result the
      // one-row kernel's.
      if (const fastq::SuperDotRows range = fastq::super_dot_rows_for(dt, nsb)) {
        for (const auto& [first, rows] : {std::pair<int64_t, int64_t>{0, 1}, {0, 2}, {1, 15}})
          for (int64_t t = 0; t < 4; ++t) {
            float got[15];
            range(rows16.data() + size_t(first) * rb, rb, rows, q.data() + t * n, d.data() + t * nsb, sums.data() + t * 16 * nsb,
                  nsb, got);
            for (int64_t j = 0; j < rows; ++j) {
              float one;
              fastq::super_dot_for(dt, 1, nsb)(rows16.data() + size_t(first + j) * rb, q.data() + t * n, d.data() + t * nsb,
                                          sums.data() + t * 16 * nsb, nsb, &one);
              ASSERT_EQ(got[j], one) << dtype_name(dt) << " super-blocks " << nsb << " row " << first + j << " of a range of " << rows;
            }
          }
      }
      // The 16-row panels (AVX-512 builds: 16 rows a lane each, Q4_K-Q6_K two panels side by side
      // against 6 tokens a pass, then passes of 2 and 1; AVX2: two panels of 8 rows, 4 tokens a
      // pass): 15 tokens (token t is activation row t % 4) against one panel and against two (the
      // second holding the rows in reverse order), each output bit-identical to the one-row kernel's.
      if (!fastq::has_gemm16_k(dt)) continue;
      const int64_t tokens = 15;
      std::vector<int8_t> qt(size_t(tokens * n));
      std::vector<float> dt_(size_t(tokens * nsb));
      std::vector<int16_t> st(size_t(tokens * n / 16));
      for (int64_t t = 0; t < tokens; ++t) {
        std::memcpy(qt.data() + t * n, q.data() + (t % 4) * n, size_t(n));
        std::memcpy(dt_.data() + t * nsb, d.data() + (t % 4) * nsb, size_t(nsb) * 4);
        std::memcpy(st.data() + t * n / 16, sums.data() + (t % 4) * n / 16, size_t(n / 16) * 2);
      }
      std::vector<int32_t> xi(fastq::gemm16k_x_words(dt, tokens, nsb));
      fastq::gemm16k_x(dt, qt.data(), dt_.data(), st.data(), tokens, nsb, 0, fastq::gemm16k_x_passes(dt, tokens), xi.data());
      std::vector<uint8_t> rows32(32 * rb);
      std::memcpy(rows32.data(), rows16.data(), 16 * rb);
      for (int64_t j = 0; j < 16; ++j) std::memcpy(rows32.data() + size_t(16 + j) * rb, rows16.data() + size_t(15 - j) * rb, rb);
      for (int panels : {1, 2}) {
        std::vector<float> got(size_t(tokens * 32), -1.0f);
        ASSERT_TRUE(fastq::gemm16_k(dt, rows32.data(), rb, nsb, qt.data(), dt_.data(), st.data(), xi.data(), tokens, got.data(), 32,
                                    panels));
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t j = 0; j < 16 * panels; ++j) {
            float one;
            fastq::super_dot_for(dt, 1, nsb)(rows32.data() + size_t(j) * rb, q.data() + (t % 4) * n, d.data() + (t % 4) * nsb,
                                        sums.data() + (t % 4) * 16 * nsb, nsb, &one);
            ASSERT_EQ(got[size_t(t * 32 + j)], one) << dtype_name(dt) << " panels " << panels << " row " << j << " token " << t;
          }
      }
    }
  }
}

// The pool hands jobs to spinning workers, and to sleeping ones after its spin window: every index
// runs exactly once per job either way, for fixed and for balanced jobs (shares sized by each
// thread's measured speed, in contiguous ranges), and destruction never hangs on a sleeping worker.
TEST(ThreadPool, EveryIndexOnceWhetherWorkersSpinOrSleep) {
  for (bool balanced : {false, true})
    for (int threads : {1, 2, 3, 5}) {
      ThreadPool pool(threads);
      std::vector<std::atomic<int>> hits(3000);
      for (int job = 0; job < 300; ++job) {
        const int64_t n = 1 + job * 37 % 3000;
        std::atomic<int> calls{0};
        auto fn = [&](int64_t b, int64_t e) {
          ASSERT_LT(b, e);
          calls.fetch_add(1);
          for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
        };
        // Even shares before each balanced job: every claim is then a whole share (ceil(n / threads)
        // indices), so there are at most `threads` of them however late a worker wakes. (With the
        // shares the previous jobs' timings leave, a thread whose share fell to the floor claims
        // its small share again and again while a late one sleeps: more calls, not a fault. Under
        // TSan that failed a bound of 2 x threads once.)
        if (balanced) {
          pool.set_shares(std::vector<double>(size_t(threads), 1.0 / threads));
          pool.parallel_for_balanced(n, fn);
        } else {
          pool.parallel_for(n, fn);
        }
        for (int64_t i = 0; i < 3000; ++i) {
          ASSERT_EQ(hits[size_t(i)].exchange(0), i < n ? 1 : 0)
              << "threads " << threads << " job " << job << " index " << i << (balanced ? ", balanced" : "");
        }
        // One contiguous range per thread, a late thread's share taken whole by another.
        if (balanced) {
          EXPECT_LE(calls.load(), threads) << "threads " << threads << " job " << job;
        }
        if (job % 100 == 50) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // workers go to sleep
      }
      const std::vector<double> sh = pool.shares();
      ASSERT_EQ(sh.size(), size_t(threads));
      EXPECT_NEAR(std::accumulate(sh.begin(), sh.end(), 0.0), 1.0, 1e-9);
    }
  ThreadPool idle(4);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

// The split follows measured rates: a thread three times slower than the other ends at a quarter
// of the work (both then finish together), one outlier job moves it by at most kFollow, and a
// thread that stalls keeps the floor share so it is still measured.
TEST(ThreadPool, BalancedSharesFollowTheThreadsRates) {
  std::vector<double> sh = {0.5, 0.5};
  auto job = [&](double cost0, double cost1) {  // ns per index of each thread, 1000 indices
    const int64_t d0 = int64_t(std::ceil(1000 * sh[0])), d1 = 1000 - d0;
    const std::vector<int64_t> done = {d0, d1}, elapsed = {int64_t(double(d0) * cost0), int64_t(double(d1) * cost1)};
    ThreadPool::follow_rates(sh, done, elapsed);
  };
  for (int i = 0; i < 300; ++i) job(100, 300);
  EXPECT_NEAR(sh[0], 0.75, 0.01);
  EXPECT_NEAR(sh[0] + sh[1], 1.0, 1e-12);
  const double before = sh[0];
  job(100, 3000);  // one job where the worker was ten times slower
  EXPECT_LE(sh[0] - before, ThreadPool::kFollow + 1e-12);
  EXPECT_GT(sh[0], before);
  for (int i = 0; i < 300; ++i) job(100, 100000);  // the worker all but stalls
  EXPECT_NEAR(sh[1], ThreadPool::kMinShare / 2, 0.01);
  for (int i = 0; i < 300; ++i) job(100, 100);  // and recovers
  EXPECT_NEAR(sh[0], 0.5, 0.01);
  std::vector<double> three = {1.0 / 3, 1.0 / 3, 1.0 / 3};
  for (int i = 0; i < 300; ++i)
    ThreadPool::follow_rates(three, std::vector<int64_t>{100, 100, 100}, std::vector<int64_t>{100, 200, 400});
  EXPECT_NEAR(three[0], 4.0 / 7, 0.01);
  EXPECT_NEAR(three[2], 1.0 / 7, 0.01);
}

// A balanced job's ranges are the shares: with the caller pinned at 3/4, whichever thread claims
// first, the caller's range is 750 of 1000 indices and the worker's the other 250.
TEST(ThreadPool, BalancedJobsCutAtTheShares) {
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  int both = 0;
  for (int job = 0; job < 2000 && both < 20; ++job) {
    pool.set_shares(std::vector<double>{0.75, 0.25});
    std::mutex mu;
    std::vector<std::pair<bool, int64_t>> ranges;  // (run by the caller, length)
    pool.parallel_for_balanced(1000, [&](int64_t b, int64_t e) {
      {
        std::lock_guard<std::mutex> lk(mu);
        ranges.emplace_back(std::this_thread::get_id() == caller, e - b);
      }
      // Long enough for a spinning worker to claim its range before the caller is done with its own.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
      while (std::chrono::steady_clock::now() < until) {
      }
    });
    if (ranges.size() != 2 || ranges[0].first == ranges[1].first) continue;  // the worker came late
    ++both;
    for (const auto& [by_caller, len] : ranges) EXPECT_EQ(len, by_caller ? 750 : 250) << "job " << job;
  }
  EXPECT_GT(both, 0) << "the worker never took part";
  // Every job both threads ran counts in the pool's stats; a thread waits at most for the job's
  // whole span, and one of them (the last) not at all.
  const ThreadPool::BalanceStats st = pool.balance_stats();
  EXPECT_GE(st.jobs, both);
  EXPECT_GT(st.thread_ns, 0);
  EXPECT_GE(st.idle_ns, 0);
  EXPECT_LE(st.idle_ns, st.thread_ns / 2);
}

// Whoever runs a chunk (its worker, or the caller when the worker is late), a job is cut at the same
// boundaries, one chunk per thread: kernels whose numerics depend on the split (partial sums per
// chunk) stay deterministic.
TEST(ThreadPool, ChunksAreTheFixedPerThreadSplitWhoeverRunsThem) {
  for (int threads : {2, 3, 7}) {
    ThreadPool pool(threads);
    for (int64_t n : {2, 5, 64, 1001}) {
      for (int job = 0; job < 50; ++job) {
        std::mutex mu;
        std::vector<std::pair<int64_t, int64_t>> ranges;
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          std::lock_guard<std::mutex> lk(mu);
          ranges.emplace_back(b, e);
        });
        std::sort(ranges.begin(), ranges.end());
        std::vector<std::pair<int64_t, int64_t>> want;
        for (int i = 0; i < threads; ++i) {
          const int64_t b = n * i / threads, e = n * (i + 1) / threads;
          if (b < e) want.emplace_back(b, e);
        }
        ASSERT_EQ(ranges, want) << "threads " << threads << " n " << n;
      }
    }
  }
}
