// The CUDA backend: device memory from cudaMalloc, hand-written kernels on one stream, ops enqueued
// in order. Argument errors, launch errors and device faults surface at the next sync(); after a
// fault (a "sticky" CUDA error) the backend skips every op and sync() keeps reporting the cause.
// This header includes no CUDA header so the registry and tests compile without the toolkit's.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backends/backend.h"

namespace pagoda {

namespace cuda {
class Device;
class DeviceScratch;
class OpTimer;
class PinnedStaging;
}  // namespace cuda

// Accumulated GPU time of one op kind, measured with CUDA events.
struct CudaOpTime {
  Op op = Op::kCount;
  int64_t count = 0;
  double ms = 0.0;
};

class CudaBackend final : public Backend {
 public:
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  BackendInfo info() const override;
  bool supports(Op op, DType dtype) const override;

  Result<BufferPtr> alloc(size_t bytes) override;
  void upload(const Tensor& dst, const void* src, size_t bytes) override;
  void download(const Tensor& src, void* dst, size_t bytes) override;
  Status sync() override;

  void embed(const Tensor& table, const Tensor& ids, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, const Tensor& out, float eps) override;
  void matmul(const Tensor& w, const Tensor& x, const Tensor& out) override;
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

  // Per-op GPU timing with CUDA events (off by default; each timed op adds two event records).
  void set_op_timing(bool on);
  // Waits for the stream, returns the time per op kind since the last call, and resets the totals.
  std::vector<CudaOpTime> take_op_times();

 private:
  friend Result<BackendPtr> create_cuda_backend(int device);
  CudaBackend(std::unique_ptr<cuda::Device> dev, std::unique_ptr<cuda::PinnedStaging> staging);

  // Brackets every op: begin_op returns false when the op must be skipped (device unusable, or the
  // device cannot be made current); end_op records a launch error (a cudaError_t) against the op.
  bool begin_op(Op op);
  void end_op(Op op, int cuda_error);
  // Keeps the first error until sync() reports it.
  void fail(std::string message);
  // Marks the context unusable; every later op is skipped and sync() reports `message`.
  void mark_lost(std::string message);
  // The device copy of rope's per-pair frequencies for (theta, head_dim); null after fail().
  const float* rope_freq_table(float theta, int32_t head_dim);

  std::unique_ptr<cuda::Device> dev_;
  std::unique_ptr<cuda::PinnedStaging> staging_;
  std::unique_ptr<cuda::DeviceScratch> scratch_;
  std::unique_ptr<cuda::OpTimer> timer_;
  bool timing_ = false;
  std::string pending_error_;
  std::string lost_;
  // Declared after dev_ and staging_, so freed before them.
  std::map<std::pair<uint32_t, int32_t>, BufferPtr> rope_tables_;
};

// Opens CUDA device `device` (-1: the best one). Fails with a message (never aborts) when there is
// no driver or device, the index is out of range, or this build has no kernels for the device.
Result<BackendPtr> create_cuda_backend(int device);

}  // namespace pagoda
