// The Backend interface: device memory plus a fixed set of coarse ops, enqueued in order and
// completed by sync(). The model loop, scheduler and verifier live in core/; a backend only runs ops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/util/result.h"

namespace pagoda {

// Element types a tensor may hold. The quantized ones use ggml's block layouts byte for byte, so a
// GGUF tensor is used as it lies in the file:
//   Q8_0   32 elems, 34 B: f16 d, int8 q[32]                          x = d*q
//   Q4_0   32 elems, 18 B: f16 d, nibbles[16] (low = elems 0..15)      x = d*(q-8)
//   Q4_1   32 elems, 20 B: f16 d, f16 m, nibbles[16]                   x = d*q + m
//   Q5_0   32 elems, 22 B: f16 d, u32 high bits, nibbles[16]           x = d*(q-16)
//   Q5_1   32 elems, 24 B: f16 d, f16 m, u32 high bits, nibbles[16]    x = d*q + m
//   IQ4_NL 32 elems, 18 B: f16 d, nibbles[16] indexing a fixed 16-entry non-linear table
//   Q2_K..Q6_K 256 elems ("super-blocks" of 16- or 32-element sub-blocks with their own scales;
//   byte layouts in cpu_ref_quants.cpp), BF16 the top half of an F32.
// Values are stable: the Vulkan shaders receive them as a specialization constant.
enum class DType : uint8_t {
  F32, F16, Q8_0, Q4_0, I32,
  BF16, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
  kCount
};

struct DTypeInfo {
  const char* name;     // lower case, as the CLI spells it ("q4_k")
  int64_t block_elems;  // elements per block (1 for plain types)
  int64_t block_bytes;  // bytes per block
  bool quantized;       // block-quantized (needs the dequantizer)
};
const DTypeInfo& dtype_info(DType t);
const char* dtype_name(DType t);
int64_t dtype_block_elems(DType t);
int64_t dtype_block_bytes(DType t);
// Parses a dtype name as dtype_name() writes it (case-insensitive); nullopt if unknown.
std::optional<DType> dtype_from_name(const std::string& name);
inline size_t row_bytes(DType t, int64_t cols) {
  return size_t(cols / dtype_block_elems(t) * dtype_block_bytes(t));
}

// Device memory owned by a backend; released when the last owner drops it.
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  virtual size_t size() const = 0;
};
using BufferPtr = std::shared_ptr<DeviceBuffer>;

// A 2-D row-major view into a buffer: `rows` rows of `cols` elements. Non-owning.
struct Tensor {
  DeviceBuffer* buf = nullptr;
  size_t offset = 0;  // bytes from the start of buf
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;

  size_t row_stride() const { return row_bytes(dtype, cols); }
  size_t bytes() const { return row_stride() * size_t(rows); }
  // Rows [r0, r0 + n) of this tensor.
  Tensor row_slice(int64_t r0, int64_t n) const {
    Tensor t = *this;
    t.offset += size_t(r0) * row_stride();
    t.rows = n;
    return t;
  }
};

// Per-sequence layout of one attention batch (all fields are token counts or indices).
// Query rows [q_start, q_start + q_len) belong to the sequence; they sit at positions
// [ctx_len - q_len, ctx_len) and attend causally to positions [0, their own position].
// The sequence's KV slots are block_tables[bt_offset + p / block_size] * block_size + p % block_size.
struct SeqInfo {
  int32_t q_start;
  int32_t q_len;
  int32_t ctx_len;
  int32_t bt_offset;
};
static_assert(sizeof(SeqInfo) == 16);

struct AttentionParams {
  int32_t n_seqs = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  int32_t max_ctx_len = 0;  // max over sequences of ctx_len (lets kernels size their work)
  float scale = 1.0f;       // usually 1/sqrt(head_dim)
  // Gemma-style extras (a backend runs them only if supports(Op::AttentionWindow, kv dtype)):
  // window > 0: key position j is visible to the query at position i iff i - j < window.
  // softcap > 0: each scaled score s becomes softcap * tanh(s / softcap) before the softmax.
  int32_t window = 0;
  float softcap = 0.0f;
};

// Inputs of one speculative verification. Per sequence s: k_s = draft_len[s] draft tokens,
// target probabilities p for rows [row_start[s], row_start[s] + k_s] (k_s + 1 rows of the
// target probs tensor), draft probabilities q for the k_s draft rows [draft_row_start[s], +k_s).
// Uniforms: row s of `uniforms` holds k_s + 1 values in [0,1): one per acceptance test, and the
// last for the final sample. Output row s: [accepted_count, next_token].
struct VerifyParams {
  int32_t n_seqs = 0;
  int32_t vocab = 0;
  int32_t max_k = 0;
  bool greedy = false;  // argmax agreement; p/q/uniforms then only need the target logits rows
};

// One token's logit adjustment for adjust_logits (24 bytes, as the device reads them). The
// sampler's logit_bias, repetition penalty and frequency/presence penalties for one token, in the
// order it applies them: l += bias; l *= (l > 0 ? pos_scale : neg_scale); l -= subtract. The
// repetition penalty divides positive logits as a multiply by the float reciprocal (pos_scale =
// 1/penalty), because a Vulkan device may round a division by up to 2.5 ulp while every device
// rounds +, - and * exactly; with three separately rounded steps (never fused), the host and every
// backend compute the same bits. core/sample/sampler.cpp builds these lists and applies them on
// the host with adjust_logit below.
struct LogitAdjust {
  int32_t row = 0;    // logits row (the op's tensor); unused on the host
  int32_t token = 0;  // column
  float bias = 0.0f;
  float pos_scale = 1.0f;
  float neg_scale = 1.0f;
  float subtract = 0.0f;
};
static_assert(sizeof(LogitAdjust) == 24);

inline float adjust_logit(float l, const LogitAdjust& a) {
  const float biased = l + a.bias;
  const float scaled = biased > 0.0f ? biased * a.pos_scale : biased * a.neg_scale;
  return scaled - a.subtract;
}

// One row's sampling filters for filter_probs (12 bytes). top_k <= 0 (or >= the row width),
// top_p >= 1 and min_p <= 0 each disable their filter.
struct FilterParams {
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  bool active(int64_t cols) const { return (top_k > 0 && top_k < cols) || top_p < 1.0f || min_p > 0.0f; }
};
static_assert(sizeof(FilterParams) == 12);

enum class Op : uint8_t {
  Embed, RmsNorm, Matmul, Rope, SiluMul, Add, KvStore, PagedAttention, Softmax, Argmax,
  SampleProbs, Verify, Copy, RopeFreqs,
  // Added with the architecture descriptions (issue 14); optional like RopeFreqs: a model that
  // needs one is refused at load on a backend that does not report it.
  GeluMul, Scale, Softcap, AttentionWindow,
  // Device-side sampling filters (issue 15); optional: without them the engine samples such
  // sequences on the host.
  AdjustLogits, FilterProbs, kCount
};
const char* op_name(Op op);

struct BackendInfo {
  std::string name;        // "cpu", "cpu-ref", "vulkan", "cuda"
  std::string device;      // device name as the driver reports it
  std::string vendor;
  std::string driver;
  uint64_t memory_bytes = 0;
  uint32_t subgroup_size = 0;
  bool is_gpu = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendInfo info() const = 0;
  // Whether `op` runs on tensors of `dtype` (the weight dtype for Matmul/Embed, the KV dtype for
  // KvStore/PagedAttention, F32 otherwise).
  virtual bool supports(Op op, DType dtype) const = 0;

  // ---- memory ----
  virtual Result<BufferPtr> alloc(size_t bytes) = 0;
  // Ordered with the ops enqueued before it; `src` may be reused as soon as upload returns.
  virtual void upload(const Tensor& dst, const void* src, size_t bytes) = 0;
  // A buffer holding `bytes` of host memory at `src` that stay valid and unchanged while `owner`
  // lives (weights inside a mapped model file). A backend that computes from host memory uses
  // them in place, keeps `owner` and sets *in_place; the default allocates a buffer and uploads a
  // copy (*in_place false: the caller may then drop its own pages). Ops never write to it.
  virtual Result<BufferPtr> adopt_host(const void* src, size_t bytes, std::shared_ptr<const void> owner, bool* in_place);
  // Lets the backend keep a weight in a layout of its own, made once, when the backend chooses:
  // `w` fills its buffer from byte 0 to the end and is from now on only ever matmul's or
  // matmul_many's `w` (never embed's table, copied or downloaded). Returns whether it takes the
  // weight. Once it has made its layout, the bytes the buffer held (a mapped file's, for
  // adopt_host) are no longer read, and as it copies them the backend calls read_done(offset,
  // bytes) (if given; possibly later, from the thread of a matmul) for each range it has finished
  // with, so their pages can be dropped before the next are copied: read_done must stay callable
  // as long as the buffer lives. The CPU backend packs F32, F16 and BF16 weights into k-major
  // panels (in AVX2 builds the 32-element quantized types into 8-row groups of the same size) at a
  // weight's first decode-sized matmul (a prompt before that multiplies from the
  // file's layout with the same bits), so every batch size sums an output in the same order and a
  // cold start does not wait for the packing; the default keeps the buffer as it is.
  virtual Result<bool> repack_matmul_weight(const Tensor& w, std::function<void(size_t, size_t)> read_done = {}) {
    (void)w;
    (void)read_done;
    return false;
  }
  // Waits for every enqueued op, then copies `bytes` from the tensor's start into dst.
  virtual void download(const Tensor& src, void* dst, size_t bytes) = 0;
  // Waits until every enqueued op has finished. Returns an error if the device was lost.
  virtual Status sync() = 0;
  // Host work between steps (the engine samples each row of a batch): fn over [0, n) in chunks
  // on the backend's host threads where it has them and they are idle then (the CPU backend's
  // pool: its kernels ran synchronously), else in one call on this thread. fn must be safe to run
  // concurrently on disjoint ranges; the result may not depend on how [0, n) is split.
  virtual void host_parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n > 0) fn(0, n);
  }
  virtual int host_threads() const { return 1; }  // how many threads host_parallel_for uses
  // A host thread pool's split of row-independent work (the CPU backend's decode matvecs), for
  // benchmarks: each thread's share, and what its balanced jobs cost (ThreadPool::BalanceStats).
  struct HostPoolStats {
    std::vector<double> shares;  // empty: no pool
    int64_t balanced_jobs = 0;
    double thread_ns = 0, idle_ns = 0;
  };
  virtual HostPoolStats host_pool_stats() const { return {}; }

  // ---- ops (F32 activations unless stated; `out` may not alias inputs unless stated) ----
  // dst = src byte for byte (any dtype; same dtype and shape; the two may not overlap). Used for
  // copy-on-write of KV blocks, so the data never leaves the device.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  // out[i,:] = table[ids[i], :]  (ids: I32 [n,1]; table any dtype; out F32 [n,dim])
  virtual void embed(const Tensor& table, const Tensor& ids, const Tensor& out) = 0;
  // out = x / sqrt(mean(x^2) + eps) * w   (row-wise; w: [1,dim]; out may alias x)
  virtual void rms_norm(const Tensor& x, const Tensor& w, const Tensor& out, float eps) = 0;
  // out[n, o] = sum_i x[n, i] * w[o, i]   (w: [n_out, n_in] any dtype; x: [n, n_in])
  virtual void matmul(const Tensor& w, const Tensor& x, const Tensor& out) = 0;
  // outs[i] = ws[i] · x for i < n: several matmuls of one input (a layer's q, k and v, or its
  // gate and up), each weight of any dtype. Every result is matmul's, bit for bit; a backend may
  // run the group as one job. The default calls matmul for each. (Pointer and count, not
  // std::span: this header is also compiled as C++17 by nvcc.)
  virtual void matmul_many(const Tensor& x, const Tensor* ws, const Tensor* outs, size_t n);
  // In-place rotary embedding on x [n, n_heads*head_dim]: pairs (2i, 2i+1) within each head
  // are rotated by pos[n] * theta^(-2i/head_dim). pos: I32 [n,1].
  virtual void rope(const Tensor& x, const Tensor& pos, int32_t n_heads, int32_t head_dim,
                    float theta) = 0;
  // rope() with per-pair frequency divisors (Llama 3's `rope_freqs.weight`): pair i rotates by
  // pos[n] * theta^(-2i/head_dim) / freq_factors[i]; freq_factors F32 [1, head_dim/2]. Optional:
  // a backend whose supports(Op::RopeFreqs, F32) is false never gets the call (the model loader
  // refuses such a file on it), and the default body aborts.
  virtual void rope_freqs(const Tensor& x, const Tensor& pos, const Tensor& freq_factors, int32_t n_heads,
                          int32_t head_dim, float theta);
  // out = silu(gate) * up   (out may alias gate)
  virtual void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  // The optional ops below abort by default; callers check supports(op, F32) first.
  // out = gelu(gate) * up with GELU's tanh approximation,
  // gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (out may alias gate)
  virtual void gelu_mul(const Tensor& gate, const Tensor& up, const Tensor& out);
  // out = x * s   (out may alias x)
  virtual void scale(const Tensor& x, const Tensor& out, float s);
  // out = cap * tanh(x / cap)   (out may alias x; cap > 0)
  virtual void softcap(const Tensor& x, const Tensor& out, float cap);
  // out = a + b   (out may alias a)
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // Scatter rows: k_cache[slots[i], :] = k[i, :], same for v. Caches are [n_slots, n_kv_heads*head_dim]
  // in the KV dtype (F32 or F16). A negative slot means "do not store" (padding).
  virtual void kv_store(const Tensor& k, const Tensor& v, const Tensor& k_cache,
                        const Tensor& v_cache, const Tensor& slots) = 0;
  // Causal attention of q [n_tokens, n_heads*head_dim] over each sequence's paged K/V, written to
  // out [n_tokens, n_heads*head_dim]. seqs: I32 [n_seqs, 4] of SeqInfo; block_tables: I32 [*,1].
  // GQA: head h reads kv head h / (n_heads / n_kv_heads). Never reads a slot past ctx_len.
  // p.window / p.softcap nonzero only where supports(Op::AttentionWindow, kv dtype).
  virtual void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                               const Tensor& seqs, const Tensor& block_tables, const Tensor& out,
                               const AttentionParams& p) = 0;
  // Row-wise softmax(x / temperature) -> out (F32; out may alias x). temperature > 0.
  virtual void softmax(const Tensor& x, const Tensor& out, float temperature) = 0;
  // Row-wise index of the maximum (first on ties) -> out I32 [n,1].
  virtual void argmax(const Tensor& x, const Tensor& out) = 0;
  // Row-wise inverse-CDF sampling: out[n] = smallest i with cumsum(probs[n, :i+1]) > u[n] * sum(probs[n,:]).
  // probs F32 [n, vocab] (need not be normalized), u F32 [n,1], out I32 [n,1].
  virtual void sample_probs(const Tensor& probs, const Tensor& u, const Tensor& out) = 0;
  // Speculative verification (see VerifyParams). target: F32 [rows, vocab] probabilities (or logits
  // when greedy); draft_probs: F32 [rows, vocab]; draft_tokens: I32 [n_seqs, max_k];
  // meta: I32 [n_seqs, 3] = (row_start, draft_row_start, draft_len); uniforms: F32 [n_seqs, max_k+1];
  // out: I32 [n_seqs, 2] = (accepted, next_token).
  virtual void verify(const Tensor& target, const Tensor& draft_probs, const Tensor& draft_tokens,
                      const Tensor& meta, const Tensor& uniforms, const Tensor& out,
                      const VerifyParams& p) = 0;
  // The two below are optional (supports(Op::AdjustLogits / Op::FilterProbs, F32)); the default
  // bodies abort.
  // In place: logits[a.row, a.token] = adjust_logit(logits[a.row, a.token], a) for each LogitAdjust
  // `a` of `adjust` (I32 [n, 6], the struct's words; float fields as their bits). No (row, token)
  // appears twice; entries outside the logits tensor are ignored.
  virtual void adjust_logits(const Tensor& logits, const Tensor& adjust);
  // Row-wise, in place on probs F32 [n, vocab] (the softmax of logits F32 [n, vocab]) with the
  // FilterParams of params (I32 [n, 3], floats as bits). Candidate order: higher logit first,
  // lower index first among equal logits, NaN logits last. A token is kept iff it is among the
  // first top_k candidates; within the shortest candidate prefix of those whose probability sum
  // reaches top_p times theirs (all of them if rounding leaves the sum short); and its
  // probability is at least min_p times the row's largest. Dropped tokens become 0 and the kept
  // ones are divided by their sum (a distribution again, as verify needs). Rows whose params
  // filter nothing are left untouched. Bisection/selection, never a full sort, on devices.
  virtual void filter_probs(const Tensor& logits, const Tensor& probs, const Tensor& params);
};

using BackendPtr = std::unique_ptr<Backend>;

// Backend registry: "cpu" (fast path), "cpu-ref" (the reference), "vulkan", "cuda", "auto".
// `device` selects a device index for GPU backends (-1 = pick the best). On failure the error says
// why (no loader, no device, feature missing); "auto" falls back to CPU and notes it in `note`.
Result<BackendPtr> create_backend(const std::string& name, int device = -1, std::string* note = nullptr);
std::vector<std::string> available_backends();

}  // namespace pagoda
