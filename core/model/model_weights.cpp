#include "core/model/model_weights.h"

#include "core/prefix/cache_identity.h"

#include <openssl/evp.h>
#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#include <memory>
#include <set>

namespace pagoda {

Result<DType> dtype_from_ggml(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return DType::F32;
    case GgmlType::F16: return DType::F16;
    case GgmlType::BF16: return DType::BF16;
    case GgmlType::Q8_0: return DType::Q8_0;
    case GgmlType::Q4_0: return DType::Q4_0;
    case GgmlType::Q4_1: return DType::Q4_1;
    case GgmlType::Q5_0: return DType::Q5_0;
    case GgmlType::Q5_1: return DType::Q5_1;
    case GgmlType::IQ4_NL: return DType::IQ4_NL;
    case GgmlType::Q2_K: return DType::Q2_K;
    case GgmlType::Q3_K: return DType::Q3_K;
    case GgmlType::Q4_K: return DType::Q4_K;
    case GgmlType::Q5_K: return DType::Q5_K;
    case GgmlType::Q6_K: return DType::Q6_K;
    default: break;
  }
  return make_error(std::string("type ") + ggml_type_name(t) + ", which Pagoda does not support");
}

GgmlType ggml_from_dtype(DType t) {
  switch (t) {
    case DType::F16: return GgmlType::F16;
    case DType::BF16: return GgmlType::BF16;
    case DType::Q8_0: return GgmlType::Q8_0;
    case DType::Q4_0: return GgmlType::Q4_0;
    case DType::Q4_1: return GgmlType::Q4_1;
    case DType::Q5_0: return GgmlType::Q5_0;
    case DType::Q5_1: return GgmlType::Q5_1;
    case DType::IQ4_NL: return GgmlType::IQ4_NL;
    case DType::Q2_K: return GgmlType::Q2_K;
    case DType::Q3_K: return GgmlType::Q3_K;
    case DType::Q4_K: return GgmlType::Q4_K;
    case DType::Q5_K: return GgmlType::Q5_K;
    case DType::Q6_K: return GgmlType::Q6_K;
    case DType::I32: return GgmlType::I32;
    default: return GgmlType::F32;
  }
}

Status check_tensor_types(const GgufFile& f) {
  for (const auto& t : f.tensors())
    if (auto dt = dtype_from_ggml(t.type); !dt) return make_error("tensor '" + t.name + "' has " + dt.error());
  return {};
}

namespace {

// How a tensor goes to the device: rows [row0, row0 + rows) of it (a part of a fused tensor;
// rows 0 = all), and for neox_hd > 0 the NEOX-to-NORM permutation within each head of neox_hd
// (over the rows of a matrix, over the columns of a vector).
struct Part {
  int64_t row0 = 0, rows = 0;
  int32_t neox_hd = 0;
};

// One tensor's share of the digest: its name, type and shape (and part), then its bytes.
struct Hashed {
  std::string header;
  const uint8_t* src = nullptr;
  size_t n_bytes = 0;
  unsigned char md[32] = {};  // SHA-256 of the bytes
};

}  // namespace

// The hashing threads' shared state. Workers take tensors largest first (in load order a file
// ends with its output matrix, a fifth of a small model's bytes, which one thread would hash
// alone while the others had finished), hash them in pieces so that a cancel is seen within a
// millisecond, and the last one to finish combines the tensors' digests in load order.
struct WeightsDigest::State {
  std::vector<Hashed> hashed;
  std::vector<size_t> order;                // indices into hashed, largest first
  std::shared_ptr<const void> keep;         // the file's bytes, alive while hashing
  std::function<void()> after;              // once hashed (not when cancelled)
  std::function<void()> gate;               // LoadOptions::digest_gate
  std::atomic<size_t> next{0};
  std::atomic<unsigned> running{0};
  std::atomic<bool> cancel{false};
  std::vector<std::thread> threads;
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  bool done = false;
  std::string hex;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now(), ended;

  ~State() {
    cancel = true;
    for (auto& t : threads) t.join();
  }

  void work() {
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    constexpr size_t kPiece = size_t(4) << 20;
    if (gate) gate();
    for (size_t k = next++; k < order.size() && !cancel; k = next++) {
      Hashed& h = hashed[order[k]];
      EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
      for (size_t off = 0; off < h.n_bytes && !cancel; off += kPiece)
        EVP_DigestUpdate(ctx.get(), h.src + off, std::min(kPiece, h.n_bytes - off));
      unsigned int len = 0;
      EVP_DigestFinal_ex(ctx.get(), h.md, &len);
    }
    if (--running == 0) finish();
  }

  void finish() {
    std::string out;
    if (!cancel) {
      std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
      EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
      for (const Hashed& h : hashed) {
        EVP_DigestUpdate(sha.get(), h.header.data(), h.header.size());
        EVP_DigestUpdate(sha.get(), h.md, sizeof(h.md));
      }
      BlockKey md{};
      unsigned int len = 0;
      EVP_DigestFinal_ex(sha.get(), md.data(), &len);
      out = to_hex(md);
      if (after) after();
    }
    std::lock_guard<std::mutex> lk(mu);
    hex = std::move(out);
    ended = std::chrono::steady_clock::now();
    done = true;
    cv.notify_all();
  }
};

const std::string& WeightsDigest::get() const {
  static const std::string kNone;
  if (!s_) return kNone;
  std::unique_lock<std::mutex> lk(s_->mu);
  s_->cv.wait(lk, [&] { return s_->done; });
  return s_->hex;
}

double WeightsDigest::seconds() const {
  if (!s_) return 0;
  get();
  std::lock_guard<std::mutex> lk(s_->mu);
  return std::chrono::duration<double>(s_->ended - s_->started).count();
}

bool WeightsDigest::ready() const {
  if (!s_) return true;
  std::lock_guard<std::mutex> lk(s_->mu);
  return s_->done;
}

namespace {

// Hashes on up to 8 threads: in the background at nice 10 (the first token's threads keep the
// cores they need, and the hashing takes what they leave), else on this thread and others
// before returning. Threads that cannot be had leave the work to those that could, or to this
// thread.
WeightsDigest start_digest(std::vector<Hashed> hashed, std::shared_ptr<const void> keep, std::function<void()> after,
                           bool background, std::function<void()> gate) {
  auto s = std::make_shared<WeightsDigest::State>();
  s->gate = std::move(gate);
  s->hashed = std::move(hashed);
  s->keep = std::move(keep);
  s->after = std::move(after);
  s->order.resize(s->hashed.size());
  for (size_t i = 0; i < s->order.size(); ++i) s->order[i] = i;
  std::stable_sort(s->order.begin(), s->order.end(),
                   [&](size_t a, size_t b) { return s->hashed[a].n_bytes > s->hashed[b].n_bytes; });
  const unsigned n_threads = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  WeightsDigest::State* st = s.get();
  const unsigned spawn = background ? n_threads : n_threads - 1;
  st->running = spawn + 1;  // and this thread's share, given up below when it does not hash
  unsigned started = 0;
  for (; started < spawn; ++started) {
    try {
      st->threads.emplace_back([st, background] {
#ifdef __linux__
        if (background) setpriority(PRIO_PROCESS, id_t(syscall(SYS_gettid)), 10);
#endif
        st->work();
      });
    } catch (const std::system_error&) {
      break;
    }
  }
  const unsigned missing = spawn - started;
  if (!background || started == 0) {
    st->running -= missing;
    st->work();
    for (auto& t : st->threads) t.join();
    st->threads.clear();
  } else if ((st->running -= missing + 1) == 0) {
    st->finish();  // every thread was done before this one gave up its share
  }
  return WeightsDigest(std::move(s));
}

struct Loader {
  const GgufFile& f;
  Backend& be;
  ModelWeights& w;
  std::vector<Hashed>& hashed;
  uint64_t total = 0, done = 0;
  const std::function<void(uint64_t, uint64_t)>& progress;
  std::set<std::string> used;  // tensors the runner consumes; anything else in the file is refused
  // Weights only ever multiplied by (Backend::repack_matmul_weight), with the file bytes they came from.
  struct MatmulWeight {
    Tensor t;
    const uint8_t* src;
    bool in_place;
  };
  std::vector<MatmulWeight> matmul;

  // A matmul weight: as get(), and offered to the backend's own layout once the file is hashed.
  Result<Tensor> matmul_weight(const std::string& name, int64_t rows, int64_t cols, Part part = Part{}) {
    return get(name, rows, cols, part, true);
  }

  Result<Tensor> get(const std::string& name, int64_t rows, int64_t cols, Part part = Part{}, bool for_matmul = false) {
    const auto* t = f.find_tensor(name);
    if (!t) return make_error("missing tensor '" + name + "'");
    const int64_t got_cols = int64_t(t->dims[0]);
    const int64_t got_rows = t->dims.size() > 1 ? int64_t(t->dims[1]) : 1;
    if (got_cols != cols || got_rows != rows || t->dims.size() > 2)
      return make_error("tensor '" + name + "' has shape [" + std::to_string(got_cols) + ", " + std::to_string(got_rows) +
                        "], expected [" + std::to_string(cols) + ", " + std::to_string(rows) + "]");
    auto dt = dtype_from_ggml(t->type);
    if (!dt) return make_error("tensor '" + name + "' has " + dt.error());
    if (!be.supports(Op::Matmul, *dt) || !be.supports(Op::Embed, *dt))
      return make_error("tensor '" + name + "' has type " + ggml_type_name(t->type) + ", which the " + be.info().name +
                        " backend does not support (the cpu backend runs every type)");
    used.insert(name);
    const bool whole = part.rows == 0;
    const int64_t n_rows = whole ? rows : part.rows;
    const size_t stride = row_bytes(*dt, cols), n_bytes = whole ? t->n_bytes : stride * size_t(n_rows);
    const uint8_t* src = f.tensor_data(*t) + (whole ? 0 : stride * size_t(part.row0));
    std::vector<uint8_t> permuted;
    if (part.neox_hd > 0) {
      const int64_t hd = part.neox_hd, half = hd / 2;
      // Element (or row) i of a head goes to 2i for i < half, to 2(i - half) + 1 after.
      auto dst_of = [&](int64_t i) { const int64_t h = i / hd * hd, j = i % hd; return h + (j < half ? 2 * j : 2 * (j - half) + 1); };
      permuted.resize(n_bytes);
      if (n_rows == 1) {
        if (*dt != DType::F32 || cols % hd != 0) return make_error("tensor '" + name + "' must be F32 with whole heads");
        const auto* in = reinterpret_cast<const float*>(src);
        auto* out = reinterpret_cast<float*>(permuted.data());
        for (int64_t i = 0; i < cols; ++i) out[dst_of(i)] = in[i];
      } else {
        if (n_rows % hd != 0) return make_error("tensor '" + name + "' rows are not whole heads of " + std::to_string(hd));
        for (int64_t r = 0; r < n_rows; ++r)
          std::memcpy(permuted.data() + size_t(dst_of(r)) * stride, src + size_t(r) * stride, stride);
      }
    }
    // As it lies in the file: the backend may use the mapped bytes in place (CPU) or copy them.
    // Vectors (norm gains, biases: a few KiB) are always copied. In place, each would keep its
    // 2 MiB page of the mapping resident after the matrices around it were packed and their pages
    // dropped (a 110M F32 file kept 36 MiB so).
    Result<BufferPtr> buf = make_error("");
    bool in_place = false;
    if (permuted.empty() && n_rows > 1) {
      buf = be.adopt_host(src, n_bytes, f.bytes_owner(), &in_place);
      if (buf && in_place) w.mapped_bytes += n_bytes;
    } else {
      buf = be.alloc(n_bytes);
      if (buf) be.upload(Tensor{buf->get(), 0, *dt, n_rows, cols}, permuted.empty() ? src : permuted.data(), n_bytes);
    }
    if (!buf) return make_error("allocating '" + name + "': " + buf.error());
    Tensor out{buf->get(), 0, *dt, n_rows, cols};
    if (for_matmul) matmul.push_back({out, src, in_place});
    // The digest covers names, types and shapes as well as the file's bytes, so a re-shaped file
    // differs; a part also hashes where it starts.
    Hashed h;
    h.header = name;
    const uint32_t meta[3] = {uint32_t(t->type), uint32_t(cols), uint32_t(rows)};
    h.header.append(reinterpret_cast<const char*>(meta), sizeof(meta));
    if (!whole) {
      const uint64_t span[2] = {uint64_t(part.row0), uint64_t(part.rows)};
      h.header.append(reinterpret_cast<const char*>(span), sizeof(span));
    }
    h.src = src;
    h.n_bytes = n_bytes;
    hashed.push_back(std::move(h));
    w.buffers.push_back(std::move(*buf));
    w.bytes += n_bytes;
    done += n_bytes;
    if (progress) progress(done, total);
    return out;
  }

  // A small F32 vector [cols] read on the host (consumed and hashed like any tensor, not uploaded).
  Result<std::vector<float>> host_f32(const std::string& name, int64_t cols) {
    const auto* t = f.find_tensor(name);
    if (!t) return make_error("missing tensor '" + name + "'");
    if (t->type != GgmlType::F32 || int64_t(t->n_elements()) != cols || int64_t(t->dims[0]) != cols)
      return make_error("tensor '" + name + "' must be F32 [" + std::to_string(cols) + "]");
    used.insert(name);
    std::vector<float> v(static_cast<size_t>(cols));
    std::memcpy(v.data(), f.tensor_data(*t), size_t(cols) * 4);
    Hashed h;
    h.header = name;
    h.src = f.tensor_data(*t);
    h.n_bytes = size_t(cols) * 4;
    hashed.push_back(std::move(h));
    done += t->n_bytes;
    return v;
  }
};

}  // namespace

Result<ModelWeights> ModelWeights::load(const GgufFile& f, const ModelConfig& c, Backend& be,
                                        const std::function<void(uint64_t, uint64_t)>& progress,
                                        const LoadOptions& opt) {
  ModelWeights w;
  std::vector<Hashed> hashed;
  Loader ld{f, be, w, hashed, 0, 0, progress, {}, {}};
  for (const auto& t : f.tensors()) ld.total += t.n_bytes;

  const ArchDesc& d = c.desc;
  const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int32_t neox = d.rope == RopeStyle::Neox ? c.head_dim : 0;  // see LayerWeights
  auto assign = [](Tensor& dst, Result<Tensor> r) -> Status {
    if (!r) return r.take_error();
    dst = *r;
    return {};
  };
  auto f32_gain = [&](Tensor& dst, const std::string& name, int64_t cols, int32_t neox_hd = 0) -> Status {
    PAGODA_TRY(assign(dst, ld.get(name, 1, cols, {0, 0, neox_hd})));
    if (dst.dtype != DType::F32) return make_error("tensor '" + name + "' must be F32");
    return {};
  };
  PAGODA_TRY(assign(w.tok_embd, ld.get("token_embd.weight", c.vocab, c.dim)));
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights L;
    PAGODA_TRY(f32_gain(L.attn_norm, p + "attn_norm.weight", c.dim));
    if (d.fused_qkv) {
      const std::string n = p + "attn_qkv.weight";
      const int64_t rows = q_dim + 2 * kv_dim;
      PAGODA_TRY(assign(L.wq, ld.matmul_weight(n, rows, c.dim, {0, q_dim, neox})));
      PAGODA_TRY(assign(L.wk, ld.matmul_weight(n, rows, c.dim, {q_dim, kv_dim, neox})));
      PAGODA_TRY(assign(L.wv, ld.matmul_weight(n, rows, c.dim, {q_dim + kv_dim, kv_dim, 0})));
    } else {
      PAGODA_TRY(assign(L.wq, ld.matmul_weight(p + "attn_q.weight", q_dim, c.dim, {0, 0, neox})));
      PAGODA_TRY(assign(L.wk, ld.matmul_weight(p + "attn_k.weight", kv_dim, c.dim, {0, 0, neox})));
      PAGODA_TRY(assign(L.wv, ld.matmul_weight(p + "attn_v.weight", kv_dim, c.dim)));
    }
    if (d.qkv_bias) {
      PAGODA_TRY(f32_gain(L.bq, p + "attn_q.bias", q_dim, neox));
      PAGODA_TRY(f32_gain(L.bk, p + "attn_k.bias", kv_dim, neox));
      PAGODA_TRY(f32_gain(L.bv, p + "attn_v.bias", kv_dim));
    }
    if (d.qk_norm) {
      PAGODA_TRY(f32_gain(L.q_norm, p + "attn_q_norm.weight", c.head_dim, neox));
      PAGODA_TRY(f32_gain(L.k_norm, p + "attn_k_norm.weight", c.head_dim, neox));
    }
    PAGODA_TRY(assign(L.wo, ld.matmul_weight(p + "attn_output.weight", c.dim, q_dim)));
    if (d.post_norms) PAGODA_TRY(f32_gain(L.post_attn_norm, p + "post_attention_norm.weight", c.dim));
    PAGODA_TRY(f32_gain(L.ffn_norm, p + "ffn_norm.weight", c.dim));
    if (d.fused_gate_up) {
      const std::string n = p + "ffn_up.weight";
      PAGODA_TRY(assign(L.w_gate, ld.matmul_weight(n, 2 * int64_t(c.ffn_dim), c.dim, {0, c.ffn_dim, 0})));
      PAGODA_TRY(assign(L.w_up, ld.matmul_weight(n, 2 * int64_t(c.ffn_dim), c.dim, {c.ffn_dim, c.ffn_dim, 0})));
    } else {
      PAGODA_TRY(assign(L.w_gate, ld.matmul_weight(p + "ffn_gate.weight", c.ffn_dim, c.dim)));
      PAGODA_TRY(assign(L.w_up, ld.matmul_weight(p + "ffn_up.weight", c.ffn_dim, c.dim)));
    }
    PAGODA_TRY(assign(L.w_down, ld.matmul_weight(p + "ffn_down.weight", c.dim, c.ffn_dim)));
    if (d.post_norms) PAGODA_TRY(f32_gain(L.post_ffn_norm, p + "post_ffw_norm.weight", c.dim));
    w.layers.push_back(L);
  }
  PAGODA_TRY(f32_gain(w.output_norm, "output_norm.weight", c.dim));
  if (c.tied_output) w.output = w.tok_embd;
  else PAGODA_TRY(assign(w.output, ld.matmul_weight("output.weight", c.vocab, c.dim)));
  // RoPE frequency divisors of the global layers, multiplied together: Llama 3's rope_freqs.weight,
  // Phi-3's LongRoPE factors for the context length, and the scaling type's own (linear, YaRN).
  const int64_t half = c.head_dim / 2;
  std::vector<float> divisors(size_t(half), 1.0f);
  bool scaled = false;
  const char* scaled_by = "";
  auto multiply = [&](const std::string& name, bool apply, const char* what) -> Status {
    auto v = ld.host_f32(name, half);
    if (!v) return v.take_error();
    if (!apply) return {};  // the other LongRoPE set: read (and hashed), not this context's
    for (int64_t i = 0; i < half; ++i) {
      if (!((*v)[size_t(i)] > 0) || !std::isfinite((*v)[size_t(i)]))
        return make_error("tensor '" + name + "' must hold positive factors");
      divisors[size_t(i)] *= (*v)[size_t(i)];
    }
    scaled = true;
    scaled_by = what;
    return {};
  };
  if (d.rope_freqs && f.find_tensor("rope_freqs.weight"))
    PAGODA_TRY(multiply("rope_freqs.weight", true, "rope_freqs.weight (Llama 3 RoPE frequency factors)"));
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == RopeScalingType::LongRope) {
    PAGODA_TRY(multiply("rope_factors_long.weight", rs.long_factors, "LongRoPE (rope_factors_long/short)"));
    PAGODA_TRY(multiply("rope_factors_short.weight", !rs.long_factors, "LongRoPE (rope_factors_long/short)"));
  }
  if (const auto own = rs.divisors(c.head_dim, c.rope_theta); !own.empty()) {
    for (int64_t i = 0; i < half; ++i) divisors[size_t(i)] *= own[size_t(i)];
    scaled = true;
    scaled_by = rs.type == RopeScalingType::Yarn ? "YaRN RoPE scaling" : "linear RoPE scaling";
  }
  if (scaled) {
    if (!be.supports(Op::RopeFreqs, DType::F32))
      return make_error(std::string(scaled_by) + ": the " + be.info().name +
                        " backend does not support RoPE frequency factors yet (the cpu backend applies them)");
    auto buf = be.alloc(size_t(half) * 4);
    if (!buf) return make_error("allocating the RoPE divisors: " + buf.error());
    w.rope_freqs = Tensor{buf->get(), 0, DType::F32, 1, half};
    be.upload(w.rope_freqs, divisors.data(), size_t(half) * 4);
    w.buffers.push_back(std::move(*buf));
  }
  // Ops beyond the llama set that this description needs: a backend without them refuses here.
  struct Need { bool needed; Op op; DType dt; const char* what; };
  const Need needs[] = {
      {d.activation == FfnActivation::GeluTanh, Op::GeluMul, DType::F32, "the GELU-gated FFN (gelu_mul)"},
      {d.embed_scale_sqrt_dim, Op::Scale, DType::F32, "the embedding scale (scale)"},
      {d.final_softcap > 0, Op::Softcap, DType::F32, "final logit soft-capping (softcap)"},
      {d.window > 0 || d.attn_softcap > 0, Op::AttentionWindow, DType::F32,
       "attention with a sliding window or logit soft cap (attention_window)"},
  };
  for (const auto& n : needs)
    if (n.needed && !be.supports(n.op, n.dt))
      return make_error(std::string(n.what) + ", which " + d.name + " needs: the " + be.info().name +
                        " backend does not support it yet (the cpu backend does)");
  // A tensor the layer loop would not read means the file computes something else: refuse it.
  for (const auto& t : f.tensors())
    if (!ld.used.count(t.name))
      return make_error("tensor '" + t.name + "' is not used by Pagoda's " + c.arch +
                        " runner; the file needs something the architecture description does not have");

  PAGODA_TRY(be.sync());
  // Every tensor was copied to the device: the mapping's pages are no longer needed resident once
  // the digest has read them.
  std::function<void()> after;
  if (w.mapped_bytes == 0 && f.mapped() && !hashed.empty()) {
    const uint8_t *lo = hashed[0].src, *hi = hashed[0].src;
    for (const Hashed& h : hashed) lo = std::min(lo, h.src), hi = std::max(hi, h.src + h.n_bytes);
    after = [lo, hi] { GgufFile::drop_pages(lo, size_t(hi - lo)); };
  }
  if (opt.digest == LoadOptions::Digest::Never) {
    if (after) after();
  } else {
    w.digest = start_digest(std::move(hashed), f.bytes_owner(), std::move(after), opt.digest == LoadOptions::Digest::Background, opt.digest_gate);
  }
  // Weights the backend may keep in a layout of its own (the CPU backend's float panels, made at a
  // weight's first decode-sized use): the mapped pages of each part are dropped as it is copied,
  // so the resident set stays near the file's size, but not before the digest has read them (a
  // page read again would stay resident). The callback outlives this GgufFile object (the
  // backend keeps the mapping itself alive).
  for (const auto& m : ld.matmul) {
    std::function<void(size_t, size_t)> read_done;
    if (m.in_place && f.mapped())
      read_done = [src = m.src, digest = w.digest](size_t off, size_t n) {
        digest.get();
        GgufFile::drop_pages(src + off, n);
      };
    Result<bool> taken = be.repack_matmul_weight(m.t, read_done);
    if (!taken) return make_error("packing weights: " + taken.error());
  }
  return w;
}

}  // namespace pagoda
