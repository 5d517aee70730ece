// The CPU backend: host memory, ops run synchronously in enqueue order. `reference` mode runs the
// plain single-threaded kernels every other backend is tested against; otherwise the fast path.
#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"

namespace pagoda {

struct CpuOptions {
  bool reference = false;
  int threads = 0;  // 0 = hardware concurrency; at most kMaxCpuThreads
};

// More threads than this never helps a decode step and can exhaust the process's thread limit
// (std::thread then throws and the process aborts), so a larger request is an error up front.
inline constexpr int kMaxCpuThreads = 1024;
Status check_cpu_threads(int threads);

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(CpuOptions opt = {});
  BackendInfo info() const override;
  bool supports(Op op, DType dtype) const override;

  Result<BufferPtr> alloc(size_t bytes) override;
  void upload(const Tensor& dst, const void* src, size_t bytes) override;
  // Uses the memory in place: weights are computed on where the model file is mapped.
  Result<BufferPtr> adopt_host(const void* src, size_t bytes, std::shared_ptr<const void> owner, bool* in_place) override;
  // F32, F16 and BF16 weights (and in AVX2 builds the 32-element types) into panels
  // (fast::pack_panels), in memory that replaces the buffer's, at the weight's first decode-sized
  // matmul (settle); not in reference mode (its kernels read the file's layout).
  Result<bool> repack_matmul_weight(const Tensor& w, std::function<void(size_t, size_t)> read_done = {}) override;
  void download(const Tensor& src, void* dst, size_t bytes) override;
  Status sync() override { return {}; }
  void host_parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) override;
  int host_threads() const override;
  HostPoolStats host_pool_stats() const override;

  void embed(const Tensor& table, const Tensor& ids, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, const Tensor& out, float eps) override;
  void matmul(const Tensor& w, const Tensor& x, const Tensor& out) override;
  void matmul_many(const Tensor& x, const Tensor* ws, const Tensor* outs, size_t n) override;
  void rope(const Tensor& x, const Tensor& pos, int32_t n_heads, int32_t head_dim, float theta) override;
  void rope_freqs(const Tensor& x, const Tensor& pos, const Tensor& freq_factors, int32_t n_heads, int32_t head_dim,
                  float theta) override;
  void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void gelu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void scale(const Tensor& x, const Tensor& out, float s) override;
  void softcap(const Tensor& x, const Tensor& out, float cap) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void kv_store(const Tensor& k, const Tensor& v, const Tensor& k_cache, const Tensor& v_cache,
                const Tensor& slots) override;
  void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Tensor& seqs,
                       const Tensor& block_tables, const Tensor& out, const AttentionParams& p) override;
  void softmax(const Tensor& x, const Tensor& out, float temperature) override;
  void argmax(const Tensor& x, const Tensor& out) override;
  void sample_probs(const Tensor& probs, const Tensor& u, const Tensor& out) override;
  void verify(const Tensor& target, const Tensor& draft_probs, const Tensor& draft_tokens, const Tensor& meta,
              const Tensor& uniforms, const Tensor& out, const VerifyParams& p) override;
  void adjust_logits(const Tensor& logits, const Tensor& adjust) override;
  void filter_probs(const Tensor& logits, const Tensor& probs, const Tensor& params) override;

  // Host pointer behind a tensor of this backend (tests and conformance use it).
  static HostTensor host(const Tensor& t);

 private:
  // Packs w (planned for panels) now if a matmul of `rows` rows should find it packed.
  void settle(const Tensor& w, int64_t rows);
  // rope / rope_freqs through a (cos, sin) table kept for the positions last rotated: the q and k
  // of every layer of a forward share it (one pow, cos and sin per row and pair a forward, not per
  // layer and tensor), and prompts rotate their rows on the pool. Bits as the reference's.
  void rope_cached(const Tensor& x, const Tensor& pos, const float* factors, int32_t n_heads, int32_t head_dim,
                   float theta);
  CpuOptions opt_;
  std::unique_ptr<ThreadPool> pool_;
  struct RopeTable {
    std::vector<int32_t> pos;
    std::vector<float> factors;  // empty: none
    float theta = 0;
    int32_t head_dim = 0;
    std::vector<float> cs;  // ref::rope_table's
  };
  std::mutex rope_mu_;
  RopeTable rope_[2];  // two: models whose local layers rotate by another base alternate
  int rope_next_ = 0;
};

}  // namespace pagoda
