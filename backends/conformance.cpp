// Conformance harness: per-op input builders, the dual run (reference vs. backend under test),
// poison-aware comparison, and reporting.
#include "backends/conformance.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "backends/cpu/cpu_backend.h"
#include "core/util/half.h"

namespace pagoda {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int32_t kPoisonI32 = -0x5a5a5a5b;  // an index no op returns: unwritten I32 outputs differ
// Attention compares float math on identical K/V (an F16 cache holds the same halves on both
// sides), so only summation order differs: observed NMSE ~1e-13. 1e-7 still catches a 0.03%
// scale error (a wrong split-K merge weight gave 1e-4, under the quantized matmul bound).
// kReduction allows for quantized activations in the integer-dot paths (every quantized weight type).
constexpr double kElementwise = 1e-7, kReduction = 5e-4, kAttention = 1e-7, kExact = 0;
// F32 and F16 weights have no quantized path: the CPU only reorders float sums (NMSE ~1e-14), and
// CUDA's prefill tensor cores take each operand as a TF32 pair (3xTF32: about F32's accuracy; a
// single TF32 rounding would give NMSE ~1.6e-7 on random data, an estimate: not yet run on a GPU).
// 1e-6 holds either and fails a 0.2% scale error (NMSE 4e-6), which kReduction lets through.
constexpr double kFloatMatmul = 1e-6;

// The bound of a matmul case by weight type; other ops keep the bound their case names.
double matmul_bound(DType weights, double named) {
  return weights == DType::F32 || weights == DType::F16 ? kFloatMatmul : named;
}

}  // namespace

double conformance_bound(Op op, DType dtype) {
  switch (op) {
    case Op::Matmul: return matmul_bound(dtype, kReduction);
    case Op::PagedAttention: case Op::AttentionWindow: return kAttention;
    case Op::Argmax: case Op::SampleProbs: case Op::Verify: case Op::Copy: case Op::AdjustLogits: return kExact;
    default: return kElementwise;
  }
}

namespace {
// Every tensor starts kGuard bytes into its buffer and is followed by kGuard more bytes, all 0xff
// (NaN as F32 and F16): a read outside the tensor turns results into NaN, a write outside it is
// caught by compare(), and every descriptor offset is unaligned (36 is no power of two).
constexpr size_t kGuard = 36;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// One tensor allocated on both backends with identical contents.
struct Twin {
  BufferPtr dut_buf, ref_buf;
  Tensor dut, ref;
  const Tensor& on(bool is_dut) const { return is_dut ? dut : ref; }
};

// Owns the reference backend, the random stream, and the running comparison of one case. Setup
// failures are recorded (first one wins) so the per-op builders stay straight-line code.
class Harness {
 public:
  Harness(Backend& dut, uint64_t seed) : dut_(dut), ref_(CpuOptions{.reference = true}), rng_(seed) {}

  std::mt19937_64& rng() { return rng_; }
  std::vector<float> randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng_);
    return v;
  }
  int64_t uniform_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  Twin make(DType dt, int64_t rows, int64_t cols, const void* bytes) {
    Twin t;
    const size_t n = row_bytes(dt, cols) * size_t(rows), total = n + 2 * kGuard;
    auto a = dut_.alloc(total);
    auto b = ref_.alloc(total);
    if (!a || !b) {
      fail(!a ? "backend alloc failed: " + a.error() : "reference alloc failed: " + b.error());
      return t;
    }
    t.dut_buf = std::move(*a);
    t.ref_buf = std::move(*b);
    std::vector<uint8_t> image(total, 0xff);
    if (n > 0) std::memcpy(image.data() + kGuard, bytes, n);
    dut_.upload(whole(t.dut_buf.get()), image.data(), total);
    ref_.upload(whole(t.ref_buf.get()), image.data(), total);
    t.dut = Tensor{t.dut_buf.get(), kGuard, dt, rows, cols};
    t.ref = Tensor{t.ref_buf.get(), kGuard, dt, rows, cols};
    return t;
  }
  Twin f32(int64_t rows, int64_t cols, const std::vector<float>& v) { return make(DType::F32, rows, cols, v.data()); }
  Twin i32(int64_t rows, int64_t cols, const std::vector<int32_t>& v) { return make(DType::I32, rows, cols, v.data()); }
  Twin nan_f32(int64_t rows, int64_t cols) { return f32(rows, cols, std::vector<float>(size_t(rows * cols), kNaN)); }
  Twin poison_i32(int64_t rows, int64_t cols) { return i32(rows, cols, std::vector<int32_t>(size_t(rows * cols), kPoisonI32)); }
  // Rows of floats stored as dtype `dt` (quantized by the reference's own quantizer).
  Twin typed(DType dt, int64_t rows, int64_t cols, const std::vector<float>& v) {
    std::vector<uint8_t> bytes(row_bytes(dt, cols) * size_t(rows));
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(dt, v.data() + r * cols, bytes.data() + size_t(r) * row_bytes(dt, cols), cols);
    return make(dt, rows, cols, bytes.data());
  }

  // Runs op(backend, is_dut) on the reference, then on the backend under test (timed with sync).
  // The inputs' uploads are finished first: a backend that queues them (Vulkan) would otherwise
  // bill them to the op, e.g. 2-3 ms for an F32 embed table or matvec weights on an H200, against
  // 0.2 ms for the same op on already-resident F16 weights.
  template <typename F>
  void run(F&& op) {
    if (!error_.empty()) return;
    op(static_cast<Backend&>(ref_), false);
    if (const Status pre = dut_.sync(); !pre) {
      fail("backend error before the op: " + pre.error());
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    op(dut_, true);
    const Status s = dut_.sync();
    dut_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!s) fail("backend error: " + s.error());
  }

  // Adds tensor `t` to the comparison: values (F32/F16) by NMSE, I32 exactly, guard bytes exactly.
  void compare(const Twin& t) {
    if (!error_.empty()) return;
    const size_t n = t.ref.bytes(), total = n + 2 * kGuard;
    std::vector<uint8_t> a(total), b(total);
    dut_.download(whole(t.dut_buf.get()), a.data(), total);
    ref_.download(whole(t.ref_buf.get()), b.data(), total);
    if (const Status s = dut_.sync(); !s) return fail("backend error on download: " + s.error());
    for (size_t i = 0; i < total; i = (i + 1 == kGuard ? kGuard + n : i + 1)) {
      if (a[i] == b[i]) continue;
      ++outside_;
      note("wrote byte " + std::to_string(i) + " of a buffer outside its " + std::to_string(n) + "-byte tensor at " +
           std::to_string(kGuard));
    }
    a.erase(a.begin(), a.begin() + kGuard);
    b.erase(b.begin(), b.begin() + kGuard);
    if (t.ref.dtype == DType::I32) return compare_exact(a, b, t.ref.cols);
    const int64_t count = t.ref.rows * t.ref.cols;
    std::vector<float> got(static_cast<size_t>(count)), want(static_cast<size_t>(count));
    for (int64_t r = 0; r < t.ref.rows; ++r) {
      dequantize_row(t.ref.dtype, a.data() + size_t(r) * t.ref.row_stride(), got.data() + r * t.ref.cols, t.ref.cols);
      dequantize_row(t.ref.dtype, b.data() + size_t(r) * t.ref.row_stride(), want.data() + r * t.ref.cols, t.ref.cols);
    }
    compare_values(got, want, t.ref.cols);
  }

  // compare() that also wants zeros exactly where the reference has them: a filter must drop the
  // same tokens, whatever the rounding of the kept ones.
  void compare_zeros(const Twin& t) {
    zeros_ = true;
    compare(t);
    zeros_ = false;
  }

  void fail(const std::string& why) {
    if (error_.empty()) error_ = why;
  }

  // Fills the result's status, nmse and detail from the comparison.
  void finish(ConformanceResult& r, bool exact) const {
    r.dut_ms = dut_ms_;
    if (!error_.empty()) {
      r.status = ConformanceStatus::Fail;
      r.nmse = std::numeric_limits<double>::infinity();
      r.detail = error_;
      return;
    }
    // Exact cases on integers count differing values; on floats (copy) any error is above 0.
    if (exact && compared_ > 0) r.nmse = double(mismatches_) / double(compared_);
    else r.nmse = poison_ > 0 ? std::numeric_limits<double>::infinity() : num_ / std::max(den_, 1e-30);
    const bool clean = poison_ == 0 && mismatches_ == 0 && outside_ == 0;
    r.status = clean && r.nmse <= r.threshold ? ConformanceStatus::Pass : ConformanceStatus::Fail;
    if (r.status == ConformanceStatus::Fail) r.detail = first_bad_.empty() ? "error above threshold" : first_bad_;
  }

 private:
  // A byte view of a whole buffer, guards included.
  static Tensor whole(DeviceBuffer* buf) { return Tensor{buf, 0, DType::I32, 0, 0}; }
  static std::string where(size_t i, int64_t cols) {
    return "[" + std::to_string(int64_t(i) / std::max<int64_t>(cols, 1)) + "," +
           std::to_string(int64_t(i) % std::max<int64_t>(cols, 1)) + "]";
  }
  void note(const std::string& s) {
    if (first_bad_.empty()) first_bad_ = s;
  }
  void compare_exact(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, int64_t cols) {
    for (size_t i = 0; i + 4 <= a.size(); i += 4) {
      int32_t x, y;
      std::memcpy(&x, a.data() + i, 4);
      std::memcpy(&y, b.data() + i, 4);
      ++compared_;
      if (x == y) continue;
      ++mismatches_;
      note("element " + where(i / 4, cols) + ": got " + std::to_string(x) + ", want " + std::to_string(y));
    }
  }
  // A NaN in the reference is poison nothing was meant to overwrite; a NaN anywhere else in the
  // result means the backend left poison in place or read it.
  void compare_values(const std::vector<float>& got, const std::vector<float>& want, int64_t cols) {
    char buf[96];
    for (size_t i = 0; i < got.size(); ++i) {
      const bool want_nan = std::isnan(want[i]);
      if (want_nan || !std::isfinite(got[i])) {
        if (want_nan && std::isnan(got[i])) continue;
        ++poison_;
        std::snprintf(buf, sizeof buf, ": got %g, want %g", double(got[i]), double(want[i]));
        note("element " + where(i, cols) + buf);
        continue;
      }
      if (zeros_ && (got[i] == 0.0f) != (want[i] == 0.0f)) {
        ++mismatches_;
        std::snprintf(buf, sizeof buf, ": got %g, want %g (kept/dropped differs)", double(got[i]), double(want[i]));
        note("element " + where(i, cols) + buf);
      }
      const double d = double(got[i]) - double(want[i]);
      num_ += d * d;
      den_ += double(want[i]) * double(want[i]);
    }
  }

  Backend& dut_;
  CpuBackend ref_;
  std::mt19937_64 rng_;
  std::string error_, first_bad_;
  double num_ = 0, den_ = 0, dut_ms_ = 0;
  size_t poison_ = 0, mismatches_ = 0, compared_ = 0, outside_ = 0;
  bool zeros_ = false;
};

// ---- per-op builders: inputs, one run on both backends, outputs into the comparison ----

void check_embed(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const Twin table = h.typed(c.dtype, s.extra, s.cols, h.randn(size_t(s.extra * s.cols)));
  std::vector<int32_t> ids(size_t(s.rows));
  for (auto& id : ids) id = int32_t(h.uniform_int(0, s.extra - 1));
  ids.front() = int32_t(s.extra - 1);  // the table's last row: a stride or bound error shows here
  const Twin tid = h.i32(s.rows, 1, ids), out = h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.embed(table.on(d), tid.on(d), out.on(d)); });
  h.compare(out);
}

void check_rms_norm(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  std::vector<float> x = h.randn(size_t(s.rows * s.cols));
  for (int64_t r = 0; r < s.rows; ++r)  // rows of very different scale
    for (int64_t i = 0; i < s.cols; ++i) x[size_t(r * s.cols + i)] *= std::pow(4.0f, float(r % 5) - 2.0f);
  const Twin tx = h.f32(s.rows, s.cols, x), w = h.f32(1, s.cols, h.randn(size_t(s.cols)));
  const Twin out = s.in_place ? tx : h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.rms_norm(tx.on(d), w.on(d), out.on(d), s.param); });
  h.compare(out);
}

void check_matmul(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const Twin w = h.typed(c.dtype, s.extra, s.cols, h.randn(size_t(s.extra * s.cols)));
  const Twin x = h.f32(s.rows, s.cols, h.randn(size_t(s.rows * s.cols)));
  const Twin out = h.nan_f32(s.rows, s.extra);
  h.run([&](Backend& b, bool d) { b.matmul(w.on(d), x.on(d), out.on(d)); });
  h.compare(out);
}

void check_rope(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const int64_t cols = int64_t(s.n_heads) * s.head_dim;
  std::vector<int32_t> pos(size_t(s.rows));
  for (auto& p : pos) p = int32_t(h.uniform_int(0, s.extra));
  pos.front() = int32_t(s.extra);  // the largest angle: where sin/cos accuracy suffers first
  // Rope is in place, so a row a kernel skips keeps its input; at position 0 that input is also
  // the right answer. A nonzero last position keeps a skipped last row visible.
  if (s.rows > 1 && pos.back() == 0) pos.back() = 1;
  const Twin x = h.f32(s.rows, cols, h.randn(size_t(s.rows * cols))), tp = h.i32(s.rows, 1, pos);
  h.run([&](Backend& b, bool d) { b.rope(x.on(d), tp.on(d), s.n_heads, s.head_dim, s.param); });
  h.compare(x);
}

// Rope with Llama 3 frequency divisors: factors between 1 and 8 as Llama 3 files hold them.
void check_rope_freqs(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const int64_t cols = int64_t(s.n_heads) * s.head_dim;
  std::vector<int32_t> pos(size_t(s.rows));
  for (auto& p : pos) p = int32_t(h.uniform_int(1, s.extra));
  pos.front() = int32_t(s.extra);
  std::vector<float> factors(size_t(s.head_dim / 2));
  for (auto& f : factors) f = float(1.0 + 7.0 * h.uniform());
  const Twin x = h.f32(s.rows, cols, h.randn(size_t(s.rows * cols))), tp = h.i32(s.rows, 1, pos);
  const Twin tf = h.f32(1, s.head_dim / 2, factors);
  h.run([&](Backend& b, bool d) { b.rope_freqs(x.on(d), tp.on(d), tf.on(d), s.n_heads, s.head_dim, s.param); });
  h.compare(x);
}

void check_silu_mul(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const size_t n = size_t(s.rows * s.cols);
  const Twin g = h.f32(s.rows, s.cols, h.randn(n, 3.0f)), u = h.f32(s.rows, s.cols, h.randn(n));
  const Twin out = s.in_place ? g : h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.silu_mul(g.on(d), u.on(d), out.on(d)); });
  h.compare(out);
}

// GELU(tanh)-gated product; gate values spread wide enough to reach tanh's flat tails.
void check_gelu_mul(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const size_t n = size_t(s.rows * s.cols);
  const Twin g = h.f32(s.rows, s.cols, h.randn(n, 3.0f)), u = h.f32(s.rows, s.cols, h.randn(n));
  const Twin out = s.in_place ? g : h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.gelu_mul(g.on(d), u.on(d), out.on(d)); });
  h.compare(out);
}

void check_scale(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const Twin x = h.f32(s.rows, s.cols, h.randn(size_t(s.rows * s.cols)));
  const Twin out = s.in_place ? x : h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.scale(x.on(d), out.on(d), s.param); });
  h.compare(out);
}

// Inputs around the cap (std 2 cap), so both the linear middle and the saturated ends are hit.
void check_softcap(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const Twin x = h.f32(s.rows, s.cols, h.randn(size_t(s.rows * s.cols), 2.0f * s.param));
  const Twin out = s.in_place ? x : h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.softcap(x.on(d), out.on(d), s.param); });
  h.compare(out);
}

void check_add(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const size_t n = size_t(s.rows * s.cols);
  const Twin a = h.f32(s.rows, s.cols, h.randn(n)), bb = h.f32(s.rows, s.cols, h.randn(n));
  const Twin out = s.in_place ? a : h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.add(a.on(d), bb.on(d), out.on(d)); });
  h.compare(out);
}

// Byte copy into a poisoned destination: any dtype, compared exactly.
void check_copy(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const size_t n = size_t(s.rows * s.cols);
  const bool ints = c.dtype == DType::I32;
  std::vector<int32_t> iv(n);
  for (auto& x : iv) x = int32_t(h.rng()());
  const Twin src = ints ? h.i32(s.rows, s.cols, iv) : h.typed(c.dtype, s.rows, s.cols, h.randn(n));
  const Twin dst = ints ? h.poison_i32(s.rows, s.cols) : h.typed(c.dtype, s.rows, s.cols, std::vector<float>(n, kNaN));
  h.run([&](Backend& b, bool d) { b.copy(src.on(d), dst.on(d)); });
  h.compare(dst);
}

// A cache of `slots` rows in dtype dt, every value NaN (for F16 the NaN half 0x7e00).
std::vector<float> nan_rows(int64_t slots, int64_t cols) { return std::vector<float>(size_t(slots * cols), kNaN); }

void check_kv_store(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  std::vector<int32_t> all(size_t(s.extra));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), h.rng());
  std::vector<int32_t> slots(all.begin(), all.begin() + s.rows);
  for (size_t i = 1; i < slots.size(); i += 4) slots[i] = -1;  // padding rows store nothing
  const Twin k = h.f32(s.rows, s.cols, h.randn(size_t(s.rows * s.cols)));
  const Twin v = h.f32(s.rows, s.cols, h.randn(size_t(s.rows * s.cols)));
  const Twin kc = h.typed(c.dtype, s.extra, s.cols, nan_rows(s.extra, s.cols));
  const Twin vc = h.typed(c.dtype, s.extra, s.cols, nan_rows(s.extra, s.cols));
  const Twin ts = h.i32(s.rows, 1, slots);
  h.run([&](Backend& b, bool d) { b.kv_store(k.on(d), v.on(d), kc.on(d), vc.on(d), ts.on(d)); });
  h.compare(kc);
  h.compare(vc);
}

void check_paged_attention(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const int32_t bs = s.block_size, n_seqs = int32_t(s.seqs.size());
  const int64_t kv_cols = int64_t(s.n_kv_heads) * s.head_dim, q_cols = int64_t(s.n_heads) * s.head_dim;
  // Blocks come from a shuffled pool with spare blocks no sequence owns (they stay NaN).
  int32_t needed = 0, max_ctx = 0;
  for (auto [ctx, ql] : s.seqs) needed += (ctx + bs - 1) / bs, max_ctx = std::max(max_ctx, ctx);
  const int32_t n_blocks = needed + 3;
  std::vector<int32_t> pool(static_cast<size_t>(n_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), h.rng());
  // Query rows of the sequences in shuffled order: q_start need not follow sequence order.
  std::vector<int32_t> order(static_cast<size_t>(n_seqs));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), h.rng());
  std::vector<SeqInfo> info(static_cast<size_t>(n_seqs));
  int32_t rows = 0;
  for (int32_t i : order) info[size_t(i)].q_start = rows, rows += s.seqs[size_t(i)].second;
  std::vector<int32_t> bt;
  size_t next_block = 0;
  std::vector<float> kv = nan_rows(int64_t(n_blocks) * bs, kv_cols), vv = kv;
  const std::vector<float> kr = h.randn(kv.size()), vr = h.randn(kv.size());
  for (int32_t i = 0; i < n_seqs; ++i) {
    SeqInfo& si = info[size_t(i)];
    si.ctx_len = s.seqs[size_t(i)].first;
    si.q_len = s.seqs[size_t(i)].second;
    si.bt_offset = int32_t(bt.size());
    for (int32_t b = 0; b < (si.ctx_len + bs - 1) / bs; ++b) bt.push_back(pool[next_block++]);
    // Only positions < ctx_len get values; the tail of the last block stays NaN.
    for (int32_t p = 0; p < si.ctx_len; ++p) {
      const size_t slot = size_t(bt[size_t(si.bt_offset + p / bs)]) * size_t(bs) + size_t(p % bs);
      std::copy_n(kr.begin() + slot * kv_cols, kv_cols, kv.begin() + slot * kv_cols);
      std::copy_n(vr.begin() + slot * kv_cols, kv_cols, vv.begin() + slot * kv_cols);
    }
  }
  const int64_t n_slots = int64_t(n_blocks) * bs;
  const Twin kc = h.typed(c.dtype, n_slots, kv_cols, kv), vc = h.typed(c.dtype, n_slots, kv_cols, vv);
  const Twin q = h.f32(rows, q_cols, h.randn(size_t(rows * q_cols)));
  const Twin seqs = h.make(DType::I32, n_seqs, 4, info.data());
  const Twin tbt = h.i32(int64_t(bt.size()), 1, bt), out = h.nan_f32(rows, q_cols);
  AttentionParams p;
  p.n_seqs = n_seqs;
  p.n_heads = s.n_heads;
  p.n_kv_heads = s.n_kv_heads;
  p.head_dim = s.head_dim;
  p.block_size = bs;
  p.max_ctx_len = max_ctx;
  p.scale = 1.0f / std::sqrt(float(s.head_dim));
  p.window = s.window;
  p.softcap = s.softcap;
  h.run([&](Backend& b, bool d) { b.paged_attention(q.on(d), kc.on(d), vc.on(d), seqs.on(d), tbt.on(d), out.on(d), p); });
  h.compare(out);
}

void check_softmax(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const Twin x = h.f32(s.rows, s.cols, h.randn(size_t(s.rows * s.cols), 3.0f));
  const Twin out = s.in_place ? x : h.nan_f32(s.rows, s.cols);
  h.run([&](Backend& b, bool d) { b.softmax(x.on(d), out.on(d), s.param); });
  h.compare(out);
}

void check_argmax(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  std::vector<float> x = h.randn(size_t(s.rows * s.cols));
  for (int64_t r = 0; s.ties && s.cols > 1 && r < s.rows; ++r) {  // the maximum twice: the first must win
    float* row = x.data() + r * s.cols;
    const float top = *std::max_element(row, row + s.cols) + 1.0f;
    const int64_t a = h.uniform_int(0, s.cols - 2);
    row[a] = row[h.uniform_int(a + 1, s.cols - 1)] = top;
  }
  const Twin tx = h.f32(s.rows, s.cols, x), out = h.poison_i32(s.rows, 1);
  h.run([&](Backend& b, bool d) { b.argmax(tx.on(d), out.on(d)); });
  h.compare(out);
}

// A uniform landing in the middle of the CDF bucket of a randomly chosen index whose weight is at
// least the mean positive weight, so float and double prefix sums agree on the drawn index.
float mid_bucket_uniform(Harness& h, const float* w, int64_t n) {
  double total = 0, positive = 0;
  int64_t n_pos = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += w[i];
    if (w[i] > 0) positive += w[i], ++n_pos;
  }
  if (n_pos == 0) return 0.5f;
  std::vector<int64_t> heavy;
  for (int64_t i = 0; i < n; ++i)
    if (w[i] > 0 && double(w[i]) >= positive / double(n_pos)) heavy.push_back(i);
  const int64_t j = heavy[size_t(h.uniform_int(0, int64_t(heavy.size()) - 1))];
  double before = 0;
  for (int64_t i = 0; i < j; ++i) before += w[i] > 0 ? w[i] : 0.0f;
  return float((before + 0.5 * w[j]) / total);
}

// Rows of unnormalized, skewed weights (log-normal) with about a quarter exact zeros.
std::vector<float> weight_rows(Harness& h, int64_t rows, int64_t cols) {
  std::vector<float> w = h.randn(size_t(rows * cols), 1.5f);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = float(std::pow(10.0, h.uniform() * 4 - 2));
    for (int64_t i = 0; i < cols; ++i) {
      float& x = w[size_t(r * cols + i)];
      x = h.uniform() < 0.25 ? 0.0f : scale * std::exp(x);
    }
  }
  return w;
}

void check_sample_probs(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const std::vector<float> w = weight_rows(h, s.rows, s.cols);
  std::vector<float> u(size_t(s.rows));
  for (int64_t r = 0; r < s.rows; ++r) u[size_t(r)] = mid_bucket_uniform(h, w.data() + r * s.cols, s.cols);
  const Twin probs = h.f32(s.rows, s.cols, w), tu = h.f32(s.rows, 1, u), out = h.poison_i32(s.rows, 1);
  h.run([&](Backend& b, bool d) { b.sample_probs(probs.on(d), tu.on(d), out.on(d)); });
  h.compare(out);
}

std::vector<float> softmax_rows(Harness& h, int64_t rows, int64_t cols) {
  std::vector<float> x = h.randn(size_t(rows * cols), 1.5f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * cols;
    const float mx = *std::max_element(row, row + cols);
    double sum = 0;
    for (int64_t i = 0; i < cols; ++i) sum += (row[i] = std::exp(row[i] - mx));
    for (int64_t i = 0; i < cols; ++i) row[i] = float(row[i] / sum);
  }
  return x;
}

// Greedy plan: the first `accept` drafts are the target's argmax, the next one is not.
void plan_greedy(Harness& h, const float* target, int64_t vocab, int32_t k, int32_t* toks) {
  const int32_t accept = int32_t(h.uniform_int(0, k));
  for (int32_t i = 0; i < k; ++i) {
    const float* row = target + i * vocab;
    const int32_t best = int32_t(std::max_element(row, row + vocab) - row);
    if (i < accept) toks[i] = best;
    else if (i == accept) toks[i] = int32_t((best + 1 + h.uniform_int(0, vocab - 2)) % vocab);
    else toks[i] = int32_t(h.uniform_int(0, vocab - 1));
  }
}

// Sampled plan: each acceptance test is clear-cut (accept: u = min(1, p/q) / 2; reject: u halfway
// between p/q and 1), and the final uniform lands mid-bucket of the distribution the reference
// draws from (the residual max(0, p - q) after a rejection, else the bonus row).
void plan_sampled(Harness& h, const float* target, const float* draft, int64_t vocab, int32_t k, int32_t* toks,
                  float* u) {
  int32_t i = 0;
  for (; i < k; ++i) {
    const float* q = draft + i * vocab;
    std::discrete_distribution<int32_t> pick(q, q + vocab);
    toks[i] = pick(h.rng());
    const double r = double(target[i * vocab + toks[i]]) / double(q[toks[i]]);
    if (h.uniform() < 0.35 && r < 0.9) {
      u[i] = float(r + (1.0 - r) * 0.5);
      break;
    }
    u[i] = float(0.5 * std::min(r, 1.0));
  }
  for (int32_t j = i + 1; j < k; ++j) toks[j] = int32_t(h.uniform_int(0, vocab - 1)), u[j] = 0.5f;
  std::vector<float> w(target + std::min(i, k) * vocab, target + (std::min(i, k) + 1) * vocab);
  if (i < k) {
    double mass = 0;
    for (int64_t x = 0; x < vocab; ++x) mass += (w[size_t(x)] = std::max(0.0f, w[size_t(x)] - draft[i * vocab + x]));
    if (mass == 0) w.assign(target + i * vocab, target + (i + 1) * vocab);
  }
  u[k] = mid_bucket_uniform(h, w.data(), vocab);
}

void check_verify(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const int64_t vocab = s.cols;
  const int32_t n = int32_t(s.seqs.size());
  int32_t max_k = 1;
  for (auto [k, unused] : s.seqs) max_k = std::max(max_k, k);
  // Target and draft rows in two independent shuffled orders, target rows with a gap row between
  // sequences, so row_start and draft_row_start are both exercised.
  std::vector<int32_t> meta(size_t(n) * 3), order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  int32_t trows = 0, drows = 0;
  std::shuffle(order.begin(), order.end(), h.rng());
  for (int32_t i : order) meta[size_t(i) * 3] = trows, trows += s.seqs[size_t(i)].first + 2;
  std::shuffle(order.begin(), order.end(), h.rng());
  for (int32_t i : order) {
    meta[size_t(i) * 3 + 1] = drows;
    meta[size_t(i) * 3 + 2] = s.seqs[size_t(i)].first;
    drows += s.seqs[size_t(i)].first;
  }
  drows = std::max(drows, 1);
  const std::vector<float> target = s.greedy ? h.randn(size_t(trows * vocab), 2.0f) : softmax_rows(h, trows, vocab);
  // Greedy verification must not read draft probabilities or uniforms: they are NaN there.
  const std::vector<float> draft = s.greedy ? std::vector<float>(size_t(drows * vocab), kNaN) : softmax_rows(h, drows, vocab);
  std::vector<int32_t> toks(size_t(n * max_k), 0);
  std::vector<float> u(size_t(n * (max_k + 1)), s.greedy ? kNaN : 0.5f);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t row0 = meta[size_t(i) * 3], drow0 = meta[size_t(i) * 3 + 1], k = meta[size_t(i) * 3 + 2];
    if (s.greedy) plan_greedy(h, target.data() + row0 * vocab, vocab, k, toks.data() + i * max_k);
    else plan_sampled(h, target.data() + row0 * vocab, draft.data() + drow0 * vocab, vocab, k, toks.data() + i * max_k,
                      u.data() + i * (max_k + 1));
  }
  const Twin tt = h.f32(trows, vocab, target), td = h.f32(drows, vocab, draft);
  const Twin tk = h.i32(n, max_k, toks), tm = h.i32(n, 3, meta), tu = h.f32(n, max_k + 1, u);
  const Twin out = h.poison_i32(n, 2);
  VerifyParams p;
  p.n_seqs = n;
  p.vocab = int32_t(vocab);
  p.max_k = max_k;
  p.greedy = s.greedy;
  h.run([&](Backend& b, bool d) { b.verify(tt.on(d), td.on(d), tk.on(d), tm.on(d), tu.on(d), out.on(d), p); });
  h.compare(out);
}

// Logit adjustments on distinct (row, token) pairs: biases (none, small, +-100), repetition
// scales (none, or a penalty in [0.5, 2] as 1/penalty and penalty), subtractions built like the
// frequency/presence penalty (none, or count * frequency + presence); logits of both signs, exact
// zeros of both signs and huge ones, plus entries outside the tensor that must be ignored.
void check_adjust_logits(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  std::vector<float> x = h.randn(size_t(s.rows * s.cols), 3.0f);
  for (auto& v : x) {
    const double u = h.uniform();
    if (u < 0.05) v = 0.0f;
    else if (u < 0.1) v = -0.0f;
    else if (u < 0.12) v = (h.uniform() < 0.5 ? -1e30f : 1e30f);
  }
  std::vector<int64_t> cells(static_cast<size_t>(s.rows * s.cols));
  std::iota(cells.begin(), cells.end(), 0);
  std::shuffle(cells.begin(), cells.end(), h.rng());
  // The first entry is in the last row, on an ordinary logit, with a bias: a backend that skips
  // the last row cannot pass by luck.
  const auto in_last = std::find_if(cells.begin(), cells.end(), [&](int64_t c) { return c / s.cols == s.rows - 1; });
  std::iter_swap(cells.begin(), in_last);
  x[size_t(cells[0])] = 1.25f;
  cells.resize(size_t(std::min<int64_t>(s.extra, s.rows * s.cols)));
  std::vector<LogitAdjust> adj;
  for (int64_t cell : cells) {
    LogitAdjust a;
    a.row = int32_t(cell / s.cols);
    a.token = int32_t(cell % s.cols);
    const double kb = h.uniform(), kr = h.uniform(), ks = h.uniform();
    if (kb > 0.33) a.bias = kb > 0.9 ? (h.uniform() < 0.5 ? -100.0f : 100.0f) : h.randn(1, 5.0f)[0];
    if (kr > 0.33) {
      const float penalty = float(0.5 + 1.5 * h.uniform());
      a.pos_scale = 1.0f / penalty;
      a.neg_scale = penalty;
    }
    if (ks > 0.33) {
      const float freq = float(4 * h.uniform() - 2), pres = float(4 * h.uniform() - 2);
      a.subtract = float(h.uniform_int(1, 20)) * freq + pres;
    }
    if (adj.empty()) a.bias = 0.75f;
    adj.push_back(a);
  }
  adj.push_back({int32_t(s.rows), 0, 1.0f, 2.0f, 2.0f, 1.0f});  // past the last row
  adj.push_back({0, int32_t(s.cols), 1.0f, 2.0f, 2.0f, 1.0f});  // past the last column
  adj.push_back({0, -1, 1.0f, 2.0f, 2.0f, 1.0f});
  std::shuffle(adj.begin(), adj.end(), h.rng());
  const Twin tx = h.f32(s.rows, s.cols, x);
  const Twin ta = h.make(DType::I32, int64_t(adj.size()), 6, adj.data());
  h.run([&](Backend& b, bool d) { b.adjust_logits(tx.on(d), ta.on(d)); });
  h.compare(tx);
}

// Filter rows: logits (with ties when the case asks: values rounded to a coarse grid, so many
// tokens share a logit and cuts fall inside tie groups) and their exact softmax, one setting per
// row cycling through top-k, top-p, min-p, all three, top_k 1, a tiny top_p, min_p 1 (every tied
// maximum stays) and nothing active. top_p lands mid-way through a token of non-negligible mass,
// so the order of float sums cannot move the cut; min-p compares the same float product everywhere.
void check_filter_probs(Harness& h, const ConformanceCase& c) {
  const auto& s = c.shape;
  const int64_t V = s.cols;
  std::vector<float> x = h.randn(size_t(s.rows * V), 2.0f), pr(x.size());
  std::vector<FilterParams> fp(static_cast<size_t>(s.rows));
  for (int64_t r = 0; r < s.rows; ++r) {
    float* l = x.data() + r * V;
    float* p = pr.data() + r * V;
    if (s.ties)
      for (int64_t i = 0; i < V; ++i) l[i] = std::round(l[i] * 2.0f) / 2.0f;
    const float mx = *std::max_element(l, l + V);
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(l[i]) - mx);
    for (int64_t i = 0; i < V; ++i) p[i] = float(std::exp(double(l[i]) - mx) / sum);
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    FilterParams& f = fp[size_t(r)];
    const int mode = int((r + 1) % 8);  // the last row always filters (mode 0)
    if (mode == 0 || mode == 3) f.top_k = int32_t(h.uniform_int(1, V - 1));
    if (mode == 1 || mode == 3) {
      const int64_t m = f.top_k > 0 ? f.top_k : V;
      double mass = 0;
      for (int64_t i = 0; i < m; ++i) mass += p[order[size_t(i)]];
      std::vector<int64_t> heavy;  // cut candidates: tokens j+1 carrying at least 0.1% of the mass
      for (int64_t j = 0; j + 1 < m; ++j)
        if (double(p[order[size_t(j + 1)]]) >= 1e-3 * mass) heavy.push_back(j);
      if (!heavy.empty()) {
        const int64_t j = heavy[size_t(h.uniform_int(0, int64_t(heavy.size()) - 1))];
        double prefix = 0;
        for (int64_t i = 0; i <= j; ++i) prefix += p[order[size_t(i)]];
        f.top_p = float((prefix + 0.5 * p[order[size_t(j + 1)]]) / mass);
      } else {
        f.top_p = 0.5f;
      }
    }
    if (mode == 2 || mode == 3) f.min_p = float(std::pow(10.0, -3.0 * h.uniform()));
    if (mode == 4) f.top_k = 1;
    if (mode == 5) f.top_p = 1e-7f;
    if (mode == 6) f.min_p = 1.0f;
    if (mode == 7) f.top_k = int32_t(V);  // filters nothing: the row stays as it is
  }
  const Twin tl = h.f32(s.rows, V, x), tp = h.f32(s.rows, V, pr);
  const Twin tf = h.make(DType::I32, s.rows, 3, fp.data());
  h.run([&](Backend& b, bool d) { b.filter_probs(tl.on(d), tp.on(d), tf.on(d)); });
  h.compare_zeros(tp);
}

using Builder = void (*)(Harness&, const ConformanceCase&);

Builder builder_for(Op op) {
  switch (op) {
    case Op::Embed: return check_embed;
    case Op::RmsNorm: return check_rms_norm;
    case Op::Matmul: return check_matmul;
    case Op::Rope: return check_rope;
    case Op::SiluMul: return check_silu_mul;
    case Op::Add: return check_add;
    case Op::KvStore: return check_kv_store;
    case Op::PagedAttention: return check_paged_attention;
    case Op::Softmax: return check_softmax;
    case Op::Argmax: return check_argmax;
    case Op::SampleProbs: return check_sample_probs;
    case Op::Verify: return check_verify;
    case Op::Copy: return check_copy;
    case Op::RopeFreqs: return check_rope_freqs;
    case Op::GeluMul: return check_gelu_mul;
    case Op::Scale: return check_scale;
    case Op::Softcap: return check_softcap;
    case Op::AttentionWindow: return check_paged_attention;
    case Op::AdjustLogits: return check_adjust_logits;
    case Op::FilterProbs: return check_filter_probs;
    case Op::kCount: break;
  }
  return nullptr;
}

ConformanceShape in_place(ConformanceShape s) {
  s.in_place = true;
  return s;
}

ConformanceShape attention(int32_t heads, int32_t kv_heads, int32_t head_dim, int32_t block,
                           std::vector<std::pair<int32_t, int32_t>> seqs) {
  ConformanceShape s;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.block_size = block;
  s.seqs = std::move(seqs);
  return s;
}

}  // namespace

ConformanceShape rows_cols(int64_t rows, int64_t cols, int64_t extra, float param) {
  ConformanceShape s;
  s.rows = rows;
  s.cols = cols;
  s.extra = extra;
  s.param = param;
  return s;
}

const char* conformance_status_name(ConformanceStatus s) {
  switch (s) {
    case ConformanceStatus::Pass: return "pass";
    case ConformanceStatus::Fail: return "fail";
    case ConformanceStatus::Skip: return "skip";
  }
  return "?";
}

std::vector<ConformanceCase> conformance_cases() {
  std::vector<ConformanceCase> v;
  auto add = [&](Op op, DType dt, std::string name, ConformanceShape s, double thr) {
    v.push_back({op, dt, std::move(name), std::move(s), op == Op::Matmul ? matmul_bound(dt, thr) : thr});
  };
  for (DType dt : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
    add(Op::Embed, dt, "rows7_dim96", rows_cols(7, 96, 50), kElementwise);
    add(Op::Embed, dt, "rows3_dim4096", rows_cols(3, 4096, 20), kElementwise);
    add(Op::Matmul, dt, "decode_256x67", rows_cols(1, 256, 67), kReduction);
    add(Op::Matmul, dt, "batch7_96x130", rows_cols(7, 96, 130), kReduction);
    add(Op::Matmul, dt, "prefill33_512x64", rows_cols(33, 512, 64), kReduction);
    add(Op::Matmul, dt, "prefill40_288x67", rows_cols(40, 288, 67), kReduction);
    // 25 blocks a row: a group of sixteen, one of eight and a single block (the wide-vector CPU
    // kernels' three steps), for one row alone and for a group of four plus two.
    add(Op::Matmul, dt, "decode_800x37", rows_cols(1, 800, 37), kReduction);
    add(Op::Matmul, dt, "prefill6_800x37", rows_cols(6, 800, 37), kReduction);
    // A prompt through the CPU's 16-row panels: two passes of eight tokens, three lone tokens,
    // two panels and five rows past them, all three block steps.
    add(Op::Matmul, dt, "prefill19_800x37", rows_cols(19, 800, 37), kReduction);
  }
  // The layouts added with the K-quants: 32-element blocks (and BF16) on the shapes above...
  for (DType dt : {DType::BF16, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL}) {
    add(Op::Embed, dt, "rows7_dim96", rows_cols(7, 96, 50), kElementwise);
    add(Op::Matmul, dt, "decode_256x67", rows_cols(1, 256, 67), kReduction);
    add(Op::Matmul, dt, "batch7_96x130", rows_cols(7, 96, 130), kReduction);
    add(Op::Matmul, dt, "prefill33_512x64", rows_cols(33, 512, 64), kReduction);
    add(Op::Matmul, dt, "decode_800x37", rows_cols(1, 800, 37), kReduction);
    add(Op::Matmul, dt, "prefill6_800x37", rows_cols(6, 800, 37), kReduction);
    add(Op::Matmul, dt, "prefill19_800x37", rows_cols(19, 800, 37), kReduction);
  }
  // ...and 256-element super-blocks on widths that are multiples of 256.
  for (DType dt : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    add(Op::Embed, dt, "rows7_dim256", rows_cols(7, 256, 50), kElementwise);
    add(Op::Embed, dt, "rows3_dim4096", rows_cols(3, 4096, 20), kElementwise);
    add(Op::Matmul, dt, "decode_256x67", rows_cols(1, 256, 67), kReduction);
    add(Op::Matmul, dt, "batch7_512x130", rows_cols(7, 512, 130), kReduction);
    add(Op::Matmul, dt, "prefill33_512x64", rows_cols(33, 512, 64), kReduction);
    add(Op::Matmul, dt, "prefill40_768x67", rows_cols(40, 768, 67), kReduction);
    // Rows of 9 super-blocks (the CPU's exact form: two groups of four and one) for one token and
    // for a prompt through its 16-row panels (two passes of eight tokens, three lone tokens).
    add(Op::Matmul, dt, "decode_2304x37", rows_cols(1, 2304, 37), kReduction);
    add(Op::Matmul, dt, "prefill19_2304x37", rows_cols(19, 2304, 37), kReduction);
  }
  for (DType dt : {DType::F32, DType::F16}) {  // widths a quantized block layout cannot hold
    add(Op::Embed, dt, "rows5_dim67", rows_cols(5, 67, 11), kElementwise);
    add(Op::Matmul, dt, "batch5_67x33", rows_cols(5, 67, 33), kReduction);
  }
  add(Op::RmsNorm, DType::F32, "row1_64", rows_cols(1, 64, 0, 1e-5f), kElementwise);
  add(Op::RmsNorm, DType::F32, "rows7_67", rows_cols(7, 67, 0, 1e-5f), kElementwise);
  add(Op::RmsNorm, DType::F32, "rows5_4096", rows_cols(5, 4096, 0, 1e-6f), kElementwise);
  add(Op::RmsNorm, DType::F32, "in_place_3x333", in_place(rows_cols(3, 333, 0, 1e-5f)), kElementwise);
  auto rope = [&](std::string name, int64_t rows, int32_t heads, int32_t hd, float theta, int64_t max_pos) {
    ConformanceShape s = rows_cols(rows, 0, max_pos, theta);
    s.n_heads = heads;
    s.head_dim = hd;
    add(Op::Rope, DType::F32, std::move(name), s, kElementwise);
  };
  rope("hd64_heads4_pos4096", 5, 4, 64, 10000.0f, 4096);
  rope("hd128_heads2_pos32768", 3, 2, 128, 500000.0f, 32768);
  rope("hd8_heads3_pos100", 9, 3, 8, 10000.0f, 100);
  auto rope_freqs = [&](std::string name, int64_t rows, int32_t heads, int32_t hd, float theta, int64_t max_pos) {
    ConformanceShape s = rows_cols(rows, 0, max_pos, theta);
    s.n_heads = heads;
    s.head_dim = hd;
    add(Op::RopeFreqs, DType::F32, std::move(name), s, kElementwise);
  };
  rope_freqs("llama3_hd64_heads4_pos512", 6, 4, 64, 500000.0f, 512);
  rope_freqs("llama3_hd128_heads2_pos8192", 3, 2, 128, 500000.0f, 8192);
  for (Op op : {Op::SiluMul, Op::Add}) {
    add(op, DType::F32, "1x1", rows_cols(1, 1), kElementwise);
    add(op, DType::F32, "7x1000", rows_cols(7, 1000), kElementwise);
    add(op, DType::F32, "3x4097", rows_cols(3, 4097), kElementwise);
    add(op, DType::F32, "9x5001", rows_cols(9, 5001), kElementwise);  // past the CPU's threading threshold
    add(op, DType::F32, "in_place_4x333", in_place(rows_cols(4, 333)), kElementwise);
  }
  for (DType dt : {DType::F32, DType::F16}) {
    add(Op::KvStore, dt, "kv2_hd64", rows_cols(9, 128, 64), kElementwise);
    add(Op::KvStore, dt, "kv1_hd8", rows_cols(5, 8, 16), kElementwise);
    add(Op::KvStore, dt, "kv4_hd128", rows_cols(17, 512, 96), kElementwise);
    add(Op::PagedAttention, dt, "decode_mha_hd64", attention(4, 4, 64, 16, {{1, 1}, {17, 1}, {40, 1}}), kAttention);
    add(Op::PagedAttention, dt, "mix_gqa4_hd128", attention(8, 2, 128, 16, {{33, 33}, {50, 1}, {20, 5}}), kAttention);
    add(Op::PagedAttention, dt, "mix_gqa2_hd8_bs4", attention(4, 2, 8, 4, {{13, 13}, {9, 2}, {30, 1}, {4, 4}}), kAttention);
    add(Op::PagedAttention, dt, "long_gqa2_hd64", attention(2, 1, 64, 16, {{300, 1}, {200, 70}}), kAttention);
    // Head sizes off the CPU kernels' 8- and 64-float steps (scalar tails, partial register tiles),
    // decode tiles cut short by the context and by a span edge.
    add(Op::PagedAttention, dt, "decode_gqa3_hd12_bs4", attention(6, 2, 12, 4, {{9, 1}, {23, 1}, {5, 5}}), kAttention);
    add(Op::PagedAttention, dt, "decode_gqa2_hd80", attention(4, 2, 80, 16, {{41, 1}, {600, 1}, {3, 1}}), kAttention);
    // Query-head groups the CPU's grouped decode kernels cut into blocks of four: 8 (two blocks,
    // a 1B Llama's shape) and 3 (one partial block), on whole 16-float chunks.
    add(Op::PagedAttention, dt, "decode_gqa8_hd64", attention(16, 2, 64, 16, {{70, 1}, {700, 1}, {5, 1}}), kAttention);
    add(Op::PagedAttention, dt, "decode_gqa3_hd32", attention(6, 2, 32, 16, {{45, 1}, {530, 1}}), kAttention);
    // Heads of 8 (stories260K's), which the CPU pairs in 16-float registers: a group of three (a
    // pair and one alone) and single heads, past a decode span, decode and prompt rows.
    add(Op::PagedAttention, dt, "mix_gqa3_hd8", attention(6, 2, 8, 16, {{600, 1}, {45, 19}, {7, 7}}), kAttention);
    add(Op::PagedAttention, dt, "mix_mha_hd8", attention(3, 3, 8, 16, {{530, 1}, {33, 9}}), kAttention);
    // Decode rows past 512 positions, few rows: CPU spans, Vulkan and CUDA split-K partials.
    add(Op::PagedAttention, dt, "decode_split_gqa4_hd128",
        attention(8, 2, 128, 16, {{1500, 1}, {513, 1}, {40, 33}, {2100, 1}}), kAttention);
  }
  for (DType dt : {DType::F32, DType::F16}) {
    // Sliding windows shorter than, equal to and longer than a block, crossing block edges, with
    // prefill chunks, decode rows and a decode split into spans; with and without a logit cap.
    auto windowed = [&](std::string name, ConformanceShape s, int32_t window, float cap) {
      s.window = window;
      s.softcap = cap;
      add(Op::AttentionWindow, dt, std::move(name), std::move(s), kAttention);
    };
    windowed("win5_gqa2_hd8_bs4", attention(4, 2, 8, 4, {{13, 13}, {9, 2}, {30, 1}, {4, 4}}), 5, 0.0f);
    windowed("win16_cap2_gqa2_hd64", attention(4, 2, 64, 16, {{40, 40}, {50, 1}, {20, 5}}), 16, 2.0f);
    windowed("cap1.5_mha_hd64", attention(4, 4, 64, 16, {{33, 33}, {17, 1}}), 0, 1.5f);
    windowed("win600_split_gqa4_hd128", attention(8, 2, 128, 16, {{1500, 1}, {700, 3}, {40, 33}}), 600, 0.0f);
  }
  for (auto [r, cols] : {std::pair<int64_t, int64_t>{1, 1}, {7, 1000}, {3, 4097}}) {
    const std::string name = std::to_string(r) + "x" + std::to_string(cols);
    add(Op::GeluMul, DType::F32, name, rows_cols(r, cols), kElementwise);
    add(Op::Scale, DType::F32, name + "_s16", rows_cols(r, cols, 0, 16.0f), kElementwise);
    add(Op::Softcap, DType::F32, name + "_cap30", rows_cols(r, cols, 0, 30.0f), kElementwise);
  }
  add(Op::GeluMul, DType::F32, "in_place_4x333", in_place(rows_cols(4, 333)), kElementwise);
  add(Op::GeluMul, DType::F32, "9x5001", rows_cols(9, 5001), kElementwise);  // past the CPU's threading threshold
  add(Op::Scale, DType::F32, "in_place_4x333", in_place(rows_cols(4, 333, 0, 0.125f)), kElementwise);
  add(Op::Softcap, DType::F32, "in_place_4x333", in_place(rows_cols(4, 333, 0, 15.0f)), kElementwise);
  add(Op::Softmax, DType::F32, "1x10", rows_cols(1, 10, 0, 1.0f), kElementwise);
  add(Op::Softmax, DType::F32, "4x32000_t0.7", rows_cols(4, 32000, 0, 0.7f), kElementwise);
  add(Op::Softmax, DType::F32, "3x67_t1.3", rows_cols(3, 67, 0, 1.3f), kElementwise);
  add(Op::Softmax, DType::F32, "in_place_2x333", in_place(rows_cols(2, 333, 0, 1.0f)), kElementwise);
  add(Op::Argmax, DType::F32, "5x32000", rows_cols(5, 32000), kExact);
  add(Op::Argmax, DType::F32, "3x67", rows_cols(3, 67), kExact);
  add(Op::Argmax, DType::F32, "1x1", rows_cols(1, 1), kExact);
  ConformanceShape ties = rows_cols(6, 100);
  ties.ties = true;
  add(Op::Argmax, DType::F32, "ties_6x100", ties, kExact);
  add(Op::SampleProbs, DType::F32, "4x1000", rows_cols(4, 1000), kExact);
  add(Op::SampleProbs, DType::F32, "2x32000", rows_cols(2, 32000), kExact);
  add(Op::SampleProbs, DType::F32, "3x67", rows_cols(3, 67), kExact);
  auto verify = [&](std::string name, int64_t vocab, bool greedy, std::vector<int32_t> ks) {
    ConformanceShape s = rows_cols(0, vocab);
    s.greedy = greedy;
    for (int32_t k : ks) s.seqs.emplace_back(k, 0);
    add(Op::Verify, DType::F32, std::move(name), s, kExact);
  };
  add(Op::Copy, DType::F32, "9x130", rows_cols(9, 130), kExact);
  add(Op::Copy, DType::F16, "kv_block_16x256", rows_cols(16, 256), kExact);
  add(Op::Copy, DType::I32, "1x1", rows_cols(1, 1), kExact);
  add(Op::Copy, DType::I32, "3x1001", rows_cols(3, 1001), kExact);
  verify("greedy_v100_k0244", 100, true, {0, 2, 4, 4});
  verify("greedy_v32000_k31", 32000, true, {3, 1});
  verify("sampled_v100_k01344", 100, false, {0, 1, 3, 4, 4});
  verify("sampled_v1000_k244", 1000, false, {2, 4, 4});
  add(Op::AdjustLogits, DType::F32, "1x1_e1", rows_cols(1, 1, 1), kExact);
  add(Op::AdjustLogits, DType::F32, "5x1000_e700", rows_cols(5, 1000, 700), kExact);
  add(Op::AdjustLogits, DType::F32, "3x32000_e64", rows_cols(3, 32000, 64), kExact);
  ConformanceShape filter_ties = rows_cols(16, 1000);
  filter_ties.ties = true;
  add(Op::FilterProbs, DType::F32, "8x67", rows_cols(8, 67), kElementwise);
  add(Op::FilterProbs, DType::F32, "ties_16x1000", filter_ties, kElementwise);
  add(Op::FilterProbs, DType::F32, "8x32000", rows_cols(8, 32000), kElementwise);
  return v;
}

ConformanceResult run_conformance_case(Backend& dut, const ConformanceCase& c, uint64_t seed) {
  ConformanceResult r;
  r.op = op_name(c.op);
  r.dtype = dtype_name(c.dtype);
  r.name = c.name;
  r.threshold = c.threshold;
  r.seed = seed;
  if (!dut.supports(c.op, c.dtype)) {
    r.status = ConformanceStatus::Skip;
    r.detail = dut.info().name + " does not support " + r.op + " on " + r.dtype;
    return r;
  }
  Harness h(dut, seed);
  builder_for(c.op)(h, c);
  h.finish(r, c.threshold == kExact);
  return r;
}

std::vector<ConformanceResult> run_conformance(Backend& dut, uint64_t seed, const std::string& filter) {
  if (seed == 0) {
    std::random_device rd;
    seed = (uint64_t(rd()) << 32) ^ rd();
  }
  std::vector<ConformanceResult> out;
  const auto cases = conformance_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string id = std::string(op_name(c.op)) + "/" + dtype_name(c.dtype) + "/" + c.name;
    if (!filter.empty() && id.find(filter) == std::string::npos) continue;
    out.push_back(run_conformance_case(dut, c, splitmix64(seed + i)));
  }
  return out;
}

std::string format_conformance_table(const std::vector<ConformanceResult>& results) {
  std::string s;
  char line[512];
  std::snprintf(line, sizeof line, "%-16s %-5s %-24s %-5s %10s %9s %9s  %-20s %s\n", "op", "dtype", "case", "status",
                "nmse", "threshold", "ms", "seed", "detail");
  s += line;
  int pass = 0, fail = 0, skip = 0;
  for (const auto& r : results) {
    (r.status == ConformanceStatus::Pass ? pass : r.status == ConformanceStatus::Fail ? fail : skip)++;
    std::snprintf(line, sizeof line, "%-16s %-5s %-24s %-5s %10.3g %9.3g %9.3f  %-20" PRIu64 " %s\n", r.op.c_str(),
                  r.dtype.c_str(), r.name.c_str(), conformance_status_name(r.status), r.nmse, r.threshold, r.dut_ms,
                  r.seed, r.detail.c_str());
    s += line;
  }
  std::snprintf(line, sizeof line, "%d passed, %d failed, %d skipped\n", pass, fail, skip);
  return s + line;
}

namespace {
std::string json_string(const std::string& in) {
  std::string o = "\"";
  for (unsigned char ch : in) {
    if (ch == '"' || ch == '\\') o += '\\', o += char(ch);
    else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      o += buf;
    } else o += char(ch);
  }
  return o + "\"";
}
std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";  // JSON has no infinity: an unbounded error reads as null
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}
}  // namespace

std::string conformance_json(const std::vector<ConformanceResult>& results) {
  std::string s = "[";
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    s += (i ? ",\n " : "\n ");
    s += "{\"op\": " + json_string(r.op) + ", \"dtype\": " + json_string(r.dtype) + ", \"case\": " + json_string(r.name) +
         ", \"status\": " + json_string(conformance_status_name(r.status)) + ", \"nmse\": " + json_number(r.nmse) +
         ", \"threshold\": " + json_number(r.threshold) + ", \"seed\": " + std::to_string(r.seed) +
         ", \"dut_ms\": " + json_number(r.dut_ms) + ", \"detail\": " + json_string(r.detail) + "}";
  }
  return s + "\n]\n";
}

}  // namespace pagoda
