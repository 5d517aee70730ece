// CudaBackend ops: validate shapes and dtypes on the host (a bad argument becomes the op's error,
// reported by the next sync(), and the op is skipped), then hand raw device pointers to a launcher.
// Validation exists because a wrong shape on a GPU is a silent out-of-bounds write, and a fault is
// sticky: it would take the whole context down.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_memory.h"

namespace pagoda {
namespace {

// Attention partials (split-K) are capped so a huge batch degrades to fewer splits, not to OOM.
constexpr size_t kMaxAttentionScratch = size_t(256) << 20;

bool is_quant(DType t) { return dtype_info(t).quantized; }
// Weight layouts the matmul and embed kernels decode: the dense float types and every ggml block.
bool has_kernels(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || is_quant(t); }

size_t dtype_align(DType t) { return (t == DType::F32 || t == DType::I32) ? 4 : 2; }

std::string shape(const Tensor& t) {
  return std::string(dtype_name(t.dtype)) + " [" + std::to_string(t.rows) + ", " + std::to_string(t.cols) + "]";
}

// Collects the first argument error of one op.
class ArgCheck {
 public:
  explicit ArgCheck(Op op) : op_(op) {}

  // t lies in a CUDA buffer, within its bounds, aligned for its dtype, and (if given) has dtype `want`.
  ArgCheck& tensor(const char* name, const Tensor& t, const DType* want = nullptr) {
    if (!error_.empty()) return *this;
    if (t.rows < 0 || t.cols < 0) return set(std::string(name) + " has a negative shape " + shape(t));
    if (!cuda::is_cuda_buffer(t.buf)) return set(std::string(name) + " is not in a CUDA buffer");
    if (t.offset > t.buf->size() || t.bytes() > t.buf->size() - t.offset)
      return set(std::string(name) + " " + shape(t) + " at offset " + std::to_string(t.offset) +
                 " overruns its buffer of " + std::to_string(t.buf->size()) + " bytes");
    if (t.offset % dtype_align(t.dtype) != 0)
      return set(std::string(name) + " offset " + std::to_string(t.offset) + " is misaligned for " +
                 dtype_name(t.dtype));
    if (is_quant(t.dtype) && t.cols % dtype_block_elems(t.dtype) != 0)
      return set(std::string(name) + " " + shape(t) + ": rows must be a whole number of " +
                 std::to_string(dtype_block_elems(t.dtype)) + "-element blocks");
    if (want && t.dtype != *want)
      return set(std::string(name) + " must be " + dtype_name(*want) + ", got " + shape(t));
    return *this;
  }
  ArgCheck& f32(const char* name, const Tensor& t) { return tensor(name, t, &kF32); }
  ArgCheck& i32(const char* name, const Tensor& t) { return tensor(name, t, &kI32); }
  ArgCheck& that(bool ok, const char* what) {
    if (error_.empty() && !ok) set(what);
    return *this;
  }

  bool ok() const { return error_.empty(); }
  std::string error() const { return std::string("cuda: ") + op_name(op_) + ": " + error_; }

 private:
  static constexpr DType kF32 = DType::F32;
  static constexpr DType kI32 = DType::I32;
  ArgCheck& set(std::string e) {
    error_ = std::move(e);
    return *this;
  }
  Op op_;
  std::string error_;
};

float* f32p(const Tensor& t) { return reinterpret_cast<float*>(cuda::device_ptr(t)); }
int32_t* i32p(const Tensor& t) { return reinterpret_cast<int32_t*>(cuda::device_ptr(t)); }
int64_t elems(const Tensor& t) { return t.rows * t.cols; }

}  // namespace

void CudaBackend::embed(const Tensor& table, const Tensor& ids, const Tensor& out) {
  ArgCheck c(Op::Embed);
  c.tensor("table", table).that(has_kernels(table.dtype), "table must be a weight type (f32, f16, bf16 or quantized)");
  c.i32("ids", ids).f32("out", out).that(out.rows >= ids.rows && out.cols >= table.cols,
                                         "out must have ids.rows rows of at least table.cols");
  if (!c.ok()) return fail(c.error());
  if (ids.rows == 0 || table.cols == 0 || !begin_op(Op::Embed)) return;
  end_op(Op::Embed, cuda::launch_embed(dev_->stream(), table.dtype, cuda::device_ptr(table), table.row_stride(),
                                       table.rows, table.cols, i32p(ids), ids.rows, f32p(out), out.cols));
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& w, const Tensor& out, float eps) {
  ArgCheck c(Op::RmsNorm);
  c.f32("x", x).f32("w", w).f32("out", out);
  c.that(elems(w) >= x.cols, "w must hold x.cols weights")
      .that(out.rows >= x.rows && out.cols == x.cols, "out must have x's shape");
  if (!c.ok()) return fail(c.error());
  if (x.rows == 0 || x.cols == 0 || !begin_op(Op::RmsNorm)) return;
  end_op(Op::RmsNorm, cuda::launch_rms_norm(dev_->stream(), f32p(x), f32p(w), f32p(out), x.rows, x.cols, eps));
}

void CudaBackend::matmul(const Tensor& w, const Tensor& x, const Tensor& out) {
  ArgCheck c(Op::Matmul);
  c.tensor("w", w).that(has_kernels(w.dtype), "w must be a weight type (f32, f16, bf16 or quantized)");
  c.f32("x", x).f32("out", out);
  c.that(x.cols == w.cols, "x.cols must equal w.cols (n_in)")
      .that(out.cols == w.rows && out.rows >= x.rows, "out must be [x.rows, w.rows]")
      // The matvec indexes a row's blocks and x rows j * n_in (j < kMatvecMaxRows) with 32-bit ints.
      .that(w.cols <= INT32_MAX / cuda::kMatvecMaxRows, "rows too long for 32-bit indices");
  if (!c.ok()) return fail(c.error());
  if (x.rows == 0 || w.rows == 0 || !begin_op(Op::Matmul)) return;
  cuda::MatmulArgs a;
  a.wtype = w.dtype;
  a.w = cuda::device_ptr(w);
  a.w_stride = w.row_stride();
  a.x = f32p(x);
  a.x_stride = x.cols;
  a.out = f32p(out);
  a.out_stride = out.cols;
  a.n = x.rows;
  a.n_in = w.cols;
  a.n_out = w.rows;
  end_op(Op::Matmul, cuda::launch_matmul(dev_->stream(), a));
}

// theta^(-2i/head_dim) per pair with the reference's host expression, uploaded once per
// (theta, head_dim) and kept for the backend's lifetime (a model uses one or two). Null, with the
// error recorded, when the device has no memory for it.
const float* CudaBackend::rope_freq_table(float theta, int32_t head_dim) {
  uint32_t theta_bits;
  std::memcpy(&theta_bits, &theta, 4);
  const auto key = std::make_pair(theta_bits, head_dim);
  auto it = rope_tables_.find(key);
  if (it == rope_tables_.end()) {
    std::vector<float> f(size_t(head_dim / 2));
    for (int32_t i = 0; i < head_dim; i += 2) f[size_t(i / 2)] = std::pow(theta, -float(i) / float(head_dim));
    auto buf = cuda::alloc_buffer(f.size() * 4, dev_->props().index);
    if (!buf) {
      fail("cuda: rope frequency table: " + buf.error());
      return nullptr;
    }
    // The staging ring copies f before this returns, so f may go out of scope.
    Status s = staging_->copy_to_device(static_cast<cuda::CudaBuffer*>(buf->get())->data(), f.data(), f.size() * 4,
                                        dev_->stream());
    if (!s) {
      fail("cuda: rope frequency table: " + s.error());
      return nullptr;
    }
    it = rope_tables_.emplace(key, std::move(*buf)).first;
  }
  return reinterpret_cast<const float*>(static_cast<cuda::CudaBuffer*>(it->second.get())->data());
}

void CudaBackend::rope(const Tensor& x, const Tensor& pos, int32_t n_heads, int32_t head_dim, float theta) {
  ArgCheck c(Op::Rope);
  c.f32("x", x).i32("pos", pos);
  c.that(elems(pos) >= x.rows, "pos must hold one position per row of x")
      .that(n_heads > 0 && head_dim > 0 && head_dim % 2 == 0, "n_heads and an even head_dim must be positive")
      .that(int64_t(n_heads) * head_dim <= x.cols, "n_heads * head_dim exceeds x.cols");
  if (!c.ok()) return fail(c.error());
  if (x.rows == 0 || !begin_op(Op::Rope)) return;
  const float* freqs = rope_freq_table(theta, head_dim);
  end_op(Op::Rope, freqs ? cuda::launch_rope(dev_->stream(), f32p(x), x.cols, i32p(pos), freqs, nullptr, x.rows,
                                             n_heads, head_dim)
                         : cudaSuccess);  // the table's error is already recorded
}

void CudaBackend::rope_freqs(const Tensor& x, const Tensor& pos, const Tensor& freq_factors, int32_t n_heads,
                             int32_t head_dim, float theta) {
  ArgCheck c(Op::RopeFreqs);
  c.f32("x", x).i32("pos", pos).f32("freq_factors", freq_factors);
  c.that(elems(pos) >= x.rows, "pos must hold one position per row of x")
      .that(n_heads > 0 && head_dim > 0 && head_dim % 2 == 0, "n_heads and an even head_dim must be positive")
      .that(int64_t(n_heads) * head_dim <= x.cols, "n_heads * head_dim exceeds x.cols")
      .that(elems(freq_factors) >= head_dim / 2, "freq_factors must hold head_dim / 2 values");
  if (!c.ok()) return fail(c.error());
  if (x.rows == 0 || !begin_op(Op::RopeFreqs)) return;
  const float* freqs = rope_freq_table(theta, head_dim);
  end_op(Op::RopeFreqs, freqs ? cuda::launch_rope(dev_->stream(), f32p(x), x.cols, i32p(pos), freqs,
                                                  f32p(freq_factors), x.rows, n_heads, head_dim)
                              : cudaSuccess);
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  ArgCheck c(Op::SiluMul);
  c.f32("gate", gate).f32("up", up).f32("out", out);
  c.that(elems(up) >= elems(gate) && elems(out) >= elems(gate), "up and out must be as large as gate");
  if (!c.ok()) return fail(c.error());
  if (elems(gate) == 0 || !begin_op(Op::SiluMul)) return;
  end_op(Op::SiluMul, cuda::launch_silu_mul(dev_->stream(), f32p(gate), f32p(up), f32p(out), elems(gate)));
}

void CudaBackend::gelu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  ArgCheck c(Op::GeluMul);
  c.f32("gate", gate).f32("up", up).f32("out", out);
  c.that(elems(up) >= elems(gate) && elems(out) >= elems(gate), "up and out must be as large as gate");
  if (!c.ok()) return fail(c.error());
  if (elems(gate) == 0 || !begin_op(Op::GeluMul)) return;
  end_op(Op::GeluMul, cuda::launch_gelu_mul(dev_->stream(), f32p(gate), f32p(up), f32p(out), elems(gate)));
}

void CudaBackend::scale(const Tensor& x, const Tensor& out, float s) {
  ArgCheck c(Op::Scale);
  c.f32("x", x).f32("out", out);
  c.that(elems(out) >= elems(x), "out must be as large as x");
  if (!c.ok()) return fail(c.error());
  if (elems(x) == 0 || !begin_op(Op::Scale)) return;
  end_op(Op::Scale, cuda::launch_scale(dev_->stream(), f32p(x), f32p(out), elems(x), s, 0.0f));
}

void CudaBackend::softcap(const Tensor& x, const Tensor& out, float cap) {
  ArgCheck c(Op::Softcap);
  c.f32("x", x).f32("out", out);
  c.that(elems(out) >= elems(x), "out must be as large as x");
  c.that(cap > 0, "softcap needs a cap > 0");
  if (!c.ok()) return fail(c.error());
  if (elems(x) == 0 || !begin_op(Op::Softcap)) return;
  end_op(Op::Softcap, cuda::launch_scale(dev_->stream(), f32p(x), f32p(out), elems(x), 1.0f, cap));
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  ArgCheck c(Op::Copy);
  c.tensor("src", src).tensor("dst", dst);
  c.that(src.dtype == dst.dtype && src.rows == dst.rows && src.cols == dst.cols, "src and dst differ in dtype or shape");
  if (c.ok() && src.buf == dst.buf)
    c.that(src.offset + src.bytes() <= dst.offset || dst.offset + dst.bytes() <= src.offset, "src and dst overlap");
  if (!c.ok()) return fail(c.error());
  if (src.bytes() == 0 || !begin_op(Op::Copy)) return;
  end_op(Op::Copy, cudaMemcpyAsync(cuda::device_ptr(dst), cuda::device_ptr(src), src.bytes(), cudaMemcpyDeviceToDevice,
                                   dev_->stream()));
}

void CudaBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  ArgCheck c(Op::Add);
  c.f32("a", a).f32("b", b).f32("out", out);
  c.that(elems(b) >= elems(a) && elems(out) >= elems(a), "b and out must be as large as a");
  if (!c.ok()) return fail(c.error());
  if (elems(a) == 0 || !begin_op(Op::Add)) return;
  end_op(Op::Add, cuda::launch_add(dev_->stream(), f32p(a), f32p(b), f32p(out), elems(a)));
}

void CudaBackend::kv_store(const Tensor& k, const Tensor& v, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& slots) {
  ArgCheck c(Op::KvStore);
  c.f32("k", k).f32("v", v).tensor("k_cache", k_cache).tensor("v_cache", v_cache).i32("slots", slots);
  c.that(k_cache.dtype == DType::F32 || k_cache.dtype == DType::F16, "caches must be f32 or f16")
      .that(v_cache.dtype == k_cache.dtype, "k_cache and v_cache dtypes differ")
      .that(v.rows == k.rows && v.cols == k.cols, "k and v shapes differ")
      .that(k_cache.cols == k.cols && v_cache.cols == v.cols, "cache rows must have k.cols elements")
      .that(elems(slots) >= k.rows, "slots must hold one slot per row of k");
  if (!c.ok()) return fail(c.error());
  if (k.rows == 0 || !begin_op(Op::KvStore)) return;
  end_op(Op::KvStore, cuda::launch_kv_store(dev_->stream(), f32p(k), f32p(v), k.rows, k.cols, k_cache.dtype,
                                            cuda::device_ptr(k_cache), cuda::device_ptr(v_cache),
                                            std::min(k_cache.rows, v_cache.rows), i32p(slots)));
}

void CudaBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Tensor& seqs,
                                  const Tensor& block_tables, const Tensor& out, const AttentionParams& p) {
  ArgCheck c(Op::PagedAttention);
  c.f32("q", q).f32("out", out).tensor("k_cache", k_cache).tensor("v_cache", v_cache);
  c.i32("seqs", seqs).i32("block_tables", block_tables);
  c.that(k_cache.dtype == DType::F32 || k_cache.dtype == DType::F16, "caches must be f32 or f16")
      .that(v_cache.dtype == k_cache.dtype && v_cache.cols == k_cache.cols && v_cache.rows == k_cache.rows,
            "k_cache and v_cache differ in dtype or shape")
      .that(p.n_seqs >= 0 && p.n_heads > 0 && p.n_kv_heads > 0 && p.head_dim > 0 && p.block_size > 0,
            "n_heads, n_kv_heads, head_dim and block_size must be positive")
      .that(p.n_heads % std::max(p.n_kv_heads, 1) == 0, "n_heads must be a multiple of n_kv_heads")
      .that(int64_t(p.n_heads) * p.head_dim <= q.cols && out.cols == q.cols && out.rows >= q.rows,
            "q and out must be [n_tokens, >= n_heads * head_dim] alike")
      .that(int64_t(p.n_kv_heads) * p.head_dim <= k_cache.cols, "cache rows must hold n_kv_heads * head_dim")
      .that(seqs.cols == 4 && seqs.rows >= p.n_seqs, "seqs must be i32 [n_seqs, 4] (SeqInfo)")
      .that(q.rows <= INT32_MAX && k_cache.rows <= INT32_MAX, "too many tokens or slots for 32-bit indices");
  if (!c.ok()) return fail(c.error());
  if (p.n_seqs == 0 || q.rows == 0) return;

  cuda::AttentionArgs a;
  a.q = f32p(q);
  a.q_stride = q.cols;
  a.out = f32p(out);
  a.out_stride = out.cols;
  a.kv_type = k_cache.dtype;
  a.k_cache = cuda::device_ptr(k_cache);
  a.v_cache = cuda::device_ptr(v_cache);
  a.kv_stride = int64_t(k_cache.row_stride());
  a.kv_slots = k_cache.rows;
  a.seqs = reinterpret_cast<const SeqInfo*>(cuda::device_ptr(seqs));
  a.block_tables = i32p(block_tables);
  a.block_table_len = elems(block_tables);
  a.n_tokens = int32_t(q.rows);
  a.p = p;
  const cuda::DeviceProps& props = dev_->props();
  const cuda::AttentionPlan plan = cuda::plan_attention(a, props.multiprocessors, kMaxAttentionScratch);
  if (plan.smem_bytes + 1024 > props.smem_per_block_optin)  // + the kernel's static shared memory
    return fail("cuda: paged_attention: head_dim " + std::to_string(p.head_dim) + " with " +
                std::to_string(p.n_heads / p.n_kv_heads) + " query heads per KV head needs " +
                std::to_string(plan.smem_bytes) + " bytes of shared memory; the device allows " +
                std::to_string(props.smem_per_block_optin));
  if (!begin_op(Op::PagedAttention)) return;
  void* scratch = nullptr;
  if (plan.scratch_bytes > 0) {
    auto s = scratch_->ensure(plan.scratch_bytes);
    if (!s) {
      end_op(Op::PagedAttention, cudaSuccess);
      return fail("cuda: paged_attention: " + s.error());
    }
    scratch = *s;
  }
  end_op(Op::PagedAttention, cuda::launch_attention(dev_->stream(), a, plan, scratch));
}

void CudaBackend::softmax(const Tensor& x, const Tensor& out, float temperature) {
  ArgCheck c(Op::Softmax);
  c.f32("x", x).f32("out", out);
  c.that(out.rows >= x.rows && out.cols == x.cols, "out must have x's shape")
      .that(temperature > 0.0f && std::isfinite(temperature), "temperature must be positive and finite");
  if (!c.ok()) return fail(c.error());
  if (x.rows == 0 || x.cols == 0 || !begin_op(Op::Softmax)) return;
  end_op(Op::Softmax, cuda::launch_softmax(dev_->stream(), f32p(x), f32p(out), x.rows, x.cols, temperature));
}

void CudaBackend::argmax(const Tensor& x, const Tensor& out) {
  ArgCheck c(Op::Argmax);
  c.f32("x", x).i32("out", out);
  c.that(elems(out) >= x.rows, "out must hold one index per row").that(x.cols <= INT32_MAX, "rows too long");
  if (!c.ok()) return fail(c.error());
  if (x.rows == 0 || !begin_op(Op::Argmax)) return;
  end_op(Op::Argmax, cuda::launch_argmax(dev_->stream(), f32p(x), x.rows, x.cols, i32p(out)));
}

void CudaBackend::sample_probs(const Tensor& probs, const Tensor& u, const Tensor& out) {
  ArgCheck c(Op::SampleProbs);
  c.f32("probs", probs).f32("u", u).i32("out", out);
  c.that(elems(u) >= probs.rows && elems(out) >= probs.rows, "u and out must hold one value per row")
      .that(probs.cols <= INT32_MAX, "rows too long");
  if (!c.ok()) return fail(c.error());
  if (probs.rows == 0 || !begin_op(Op::SampleProbs)) return;
  end_op(Op::SampleProbs,
         cuda::launch_sample_probs(dev_->stream(), f32p(probs), probs.rows, probs.cols, f32p(u), i32p(out)));
}

void CudaBackend::verify(const Tensor& target, const Tensor& draft_probs, const Tensor& draft_tokens,
                         const Tensor& meta, const Tensor& uniforms, const Tensor& out, const VerifyParams& p) {
  ArgCheck c(Op::Verify);
  c.f32("target", target).i32("meta", meta).i32("out", out);
  if (p.max_k > 0) c.i32("draft_tokens", draft_tokens);  // with no drafts it may be an empty tensor
  c.that(p.vocab > 0 && p.n_seqs >= 0 && p.max_k >= 0, "vocab must be positive, n_seqs and max_k non-negative")
      .that(target.cols == p.vocab, "target rows must have vocab entries")
      .that(meta.cols == 3 && meta.rows >= p.n_seqs, "meta must be i32 [n_seqs, 3]")
      .that(out.cols == 2 && out.rows >= p.n_seqs, "out must be i32 [n_seqs, 2]")
      .that(p.max_k == 0 || (draft_tokens.cols >= p.max_k && draft_tokens.rows >= p.n_seqs),
            "draft_tokens must be i32 [n_seqs, >= max_k]");
  if (!p.greedy) {
    c.f32("draft_probs", draft_probs).f32("uniforms", uniforms);
    c.that(draft_probs.cols == p.vocab, "draft_probs rows must have vocab entries")
        .that(uniforms.cols >= p.max_k + 1 && uniforms.rows >= p.n_seqs, "uniforms must be [n_seqs, >= max_k + 1]");
  }
  if (!c.ok()) return fail(c.error());
  if (p.n_seqs == 0 || !begin_op(Op::Verify)) return;
  cuda::VerifyArgs a;
  a.target = f32p(target);
  a.draft_probs = p.greedy ? nullptr : f32p(draft_probs);
  a.draft_tokens = p.max_k > 0 ? i32p(draft_tokens) : nullptr;
  a.draft_tokens_stride = draft_tokens.cols;
  a.meta = i32p(meta);
  a.uniforms = p.greedy ? nullptr : f32p(uniforms);
  a.uniforms_stride = p.greedy ? 0 : uniforms.cols;
  a.out = i32p(out);
  a.n_seqs = p.n_seqs;
  a.vocab = p.vocab;
  a.max_k = p.max_k;
  a.greedy = p.greedy;
  end_op(Op::Verify, cuda::launch_verify(dev_->stream(), a));
}

void CudaBackend::adjust_logits(const Tensor& logits, const Tensor& adjust) {
  ArgCheck c(Op::AdjustLogits);
  c.f32("logits", logits).i32("adjust", adjust);
  c.that(adjust.cols == 6, "adjust must be i32 [n, 6] (LogitAdjust entries)");
  if (!c.ok()) return fail(c.error());
  if (adjust.rows == 0 || logits.rows == 0 || !begin_op(Op::AdjustLogits)) return;
  end_op(Op::AdjustLogits,
         cuda::launch_adjust_logits(dev_->stream(), f32p(logits), logits.rows, logits.cols,
                                    reinterpret_cast<const LogitAdjust*>(cuda::device_ptr(adjust)), adjust.rows));
}

void CudaBackend::filter_probs(const Tensor& logits, const Tensor& probs, const Tensor& params) {
  ArgCheck c(Op::FilterProbs);
  c.f32("logits", logits).f32("probs", probs).i32("params", params);
  c.that(logits.rows >= probs.rows && logits.cols == probs.cols, "logits must have probs' shape")
      .that(params.cols == 3 && params.rows >= probs.rows, "params must be i32 [n, 3] (FilterParams)")
      .that(probs.cols <= INT32_MAX, "rows too long");
  if (!c.ok()) return fail(c.error());
  if (probs.rows == 0 || probs.cols == 0 || !begin_op(Op::FilterProbs)) return;
  end_op(Op::FilterProbs,
         cuda::launch_filter_probs(dev_->stream(), f32p(logits), f32p(probs), probs.rows, probs.cols,
                                   reinterpret_cast<const FilterParams*>(cuda::device_ptr(params))));
}

}  // namespace pagoda
