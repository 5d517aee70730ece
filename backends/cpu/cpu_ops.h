// Host-memory kernels behind the CPU backend. `ref::` is the reference every backend is tested
// against: plain loops, F32 accumulation, no threads. `fast::` is the production path.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "backends/backend.h"

namespace pagoda {

class ThreadPool;

// Dequantize one row of `cols` elements of type t into out.
void dequantize_row(DType t, const void* src, float* out, int64_t cols);
// Quantize one row of floats (cols a multiple of the type's block) into dst. Plain
// round-to-nearest per block; quality close to, not equal to, llama.cpp's searched quantizers.
void quantize_row(DType t, const float* src, void* dst, int64_t cols);

// Six-bit scale/min pair j (0..7) of a Q4_K/Q5_K block's 12 scale bytes: shared by the
// reference dequantizer, the quantizer and the fast integer dots.
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// n default-initialized Ts, on the stack when n <= N: a decode step's per-call arrays (its matrix
// groups are Q/K/V and gate/up) without a heap allocation, any n still served.
template <typename T, size_t N>
class FewOrMany {
 public:
  explicit FewOrMany(size_t n) : n_(n), many_(n > N ? n : 0) {}
  T* data() { return n_ > N ? many_.data() : few_; }
  T& operator[](size_t i) { return data()[i]; }
  std::span<const T> span() { return {data(), n_}; }

 private:
  size_t n_;
  T few_[N];
  std::vector<T> many_;
};

// Host view of a Tensor: pointers resolved by the backend.
struct HostTensor {
  uint8_t* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  // Weights packed by fast::pack_panels (floats: k-major panels of 16 rows; fast::kept_panels
  // types: 8-row groups of quads) rather than row-major: only fast::matmul and fast::matmul_many
  // read them.
  bool panels = false;
  // Float weights, still row-major, that the backend packs into panels later: until then matmul
  // packs them per call, so an output has the same bits before and after.
  bool packable = false;
  float* f32() const { return reinterpret_cast<float*>(data); }
  int32_t* i32() const { return reinterpret_cast<int32_t*>(data); }
  size_t row_stride() const { return row_bytes(dtype, cols); }
};

namespace ref {
void embed(const HostTensor& table, const HostTensor& ids, const HostTensor& out);
void rms_norm(const HostTensor& x, const HostTensor& w, const HostTensor& out, float eps);
// Rows [r0, r1) of rms_norm (each row's arithmetic whatever the range).
void rms_norm_rows(const HostTensor& x, const HostTensor& w, const HostTensor& out, float eps, int64_t r0, int64_t r1);
void matmul(const HostTensor& w, const HostTensor& x, const HostTensor& out);
void rope(const HostTensor& x, const HostTensor& pos, int32_t n_heads, int32_t head_dim, float theta);
// rope with pair i's frequency divided by factors[i] (factors null: plain rope).
void rope_freqs(const HostTensor& x, const HostTensor& pos, const float* factors, int32_t n_heads, int32_t head_dim,
                float theta);
// rope_freqs in two steps: the (cos, sin) of each row's rotation pairs, cs[2 * (r * head_dim / 2
// + i)] and the one after it (rows of pos, factors as above), then rows [r0, r1) of x rotated by it.
void rope_table(const int32_t* pos, int64_t rows, const float* factors, int32_t head_dim, float theta, float* cs);
void rope_rows(const HostTensor& x, const float* cs, int32_t n_heads, int32_t head_dim, int64_t r0, int64_t r1);
// One rotation of (v[0], v[1]) by the angle with cosine c and sine s, in double, where a product of
// two floats is exact: the result is the same whether or not the compiler fuses a product into the
// sum, so every build (native FMA or portable) gives the same bits.
inline void rotate_pair(float* v, float c, float s) {
  const double v0 = v[0], v1 = v[1];
  v[0] = float(v0 * c - v1 * s);
  v[1] = float(v0 * s + v1 * c);
}
void silu_mul(const HostTensor& gate, const HostTensor& up, const HostTensor& out);
void gelu_mul(const HostTensor& gate, const HostTensor& up, const HostTensor& out);
void scale(const HostTensor& x, const HostTensor& out, float s);
void softcap(const HostTensor& x, const HostTensor& out, float cap);
void add(const HostTensor& a, const HostTensor& b, const HostTensor& out);
void kv_store(const HostTensor& k, const HostTensor& v, const HostTensor& kc, const HostTensor& vc,
              const HostTensor& slots);
void paged_attention(const HostTensor& q, const HostTensor& kc, const HostTensor& vc,
                     const HostTensor& seqs, const HostTensor& bt, const HostTensor& out,
                     const AttentionParams& p);
void softmax(const HostTensor& x, const HostTensor& out, float temperature);
void argmax(const HostTensor& x, const HostTensor& out);
void sample_probs(const HostTensor& probs, const HostTensor& u, const HostTensor& out);
void verify(const HostTensor& target, const HostTensor& draft_probs, const HostTensor& draft_tokens,
            const HostTensor& meta, const HostTensor& uniforms, const HostTensor& out,
            const VerifyParams& p);
void adjust_logits(const HostTensor& logits, const HostTensor& adjust);
void filter_probs(const HostTensor& logits, const HostTensor& probs, const HostTensor& params);
// The candidate order's key (Backend::filter_probs): larger for a higher logit, equal for equal
// logits (-0 and +0 alike), NaN lowest. The GPU kernels compute the same key.
uint32_t candidate_key(float logit);
}  // namespace ref

namespace fast {
// Elementwise work on fewer values than this (a decode step's few thousand) stays on the calling
// thread: a pool handoff costs more than it saves there.
inline constexpr int64_t kPoolMinValues = 16384;
void matmul(ThreadPool& pool, const HostTensor& w, const HostTensor& x, const HostTensor& out);
// outs[i] = ws[i] · x, each bit-identical to matmul's; a decode row's matvecs as one pool job.
void matmul_many(ThreadPool& pool, const HostTensor& x, std::span<const HostTensor> ws, std::span<const HostTensor> outs);
void paged_attention(ThreadPool& pool, const HostTensor& q, const HostTensor& kc, const HostTensor& vc,
                     const HostTensor& seqs, const HostTensor& bt, const HostTensor& out,
                     const AttentionParams& p);
// silu / gelu(gate) * up through a vectorized exp (within ~1e-7 of the reference), threaded for prompts.
void silu_mul(ThreadPool& pool, const HostTensor& gate, const HostTensor& up, const HostTensor& out);
void gelu_mul(ThreadPool& pool, const HostTensor& gate, const HostTensor& up, const HostTensor& out);
// Whether this build multiplies BF16 weights (rows of an even width) by activations rounded to
// BF16, in pairs (AVX-512 BF16's vdpbf16ps), as llama.cpp does; otherwise the weights are widened
// and meet the F32 activations.
bool bf16_rounds_activations();
// Float matmul weights (F32, F16, BF16) as k-major panels of 16 rows in bands of a few, which
// matmul and matmul_many take at every batch size with one multiply-add chain per output: the
// bytes that weights of dtype t, rows x cols, take packed (0: not a type the panels take); the
// rows of a band; and the packing of rows [r0, r1) of `src` (row-major, as in the file; r0 on a
// band, r1 on one or at the end) into their place in dst, on the pool.
// The 32-element types' weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) and Q2_K-Q5_K's in AVX2
// builds, and Q2_K's and Q3_K's in AVX-512 VNNI builds, take panels too (kept_panels): 8-row (AVX2)
// or 16-row (AVX-512) groups of quads (or nibbles) and scales in the bytes the rows took
// (fastq::pack_kept_panels), which matmul and matmul_many then take at every batch size, decode
// included, with the bits of the file's layout.
// They are not `packable` in the float sense: before packing they multiply as they are.
size_t panel_bytes(DType t, int64_t rows, int64_t cols);
bool kept_panels(DType t);
int64_t panel_band_rows();
void pack_panels(ThreadPool& pool, DType t, const uint8_t* src, int64_t rows, int64_t cols, int64_t r0, int64_t r1,
                 uint8_t* dst);
}  // namespace fast

}  // namespace pagoda
