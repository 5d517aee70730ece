// A test backend that forwards every call to a real one and fails on command: matmul throws, or
// sync() reports a lost device. Lets engine tests trip and clear faults at chosen steps.
#pragma once
#include <atomic>
#include <stdexcept>

#include "backends/backend.h"

namespace pagoda::testing {

class FaultBackend : public Backend {
 public:
  enum class Fault { None, Throw, SyncError };

  explicit FaultBackend(Backend& inner, uint64_t reported_memory = 0) : inner_(inner), memory_(reported_memory) {}
  void inject(Fault f) { fault_.store(f); }

  BackendInfo info() const override {
    BackendInfo i = inner_.info();
    i.name = "faulty-" + i.name;  // a distinct kernel-precision identity from the inner backend's
    if (memory_) i.memory_bytes = memory_;
    return i;
  }
  bool supports(Op op, DType dtype) const override { return inner_.supports(op, dtype); }
  Result<BufferPtr> alloc(size_t bytes) override { return inner_.alloc(bytes); }
  void upload(const Tensor& dst, const void* src, size_t bytes) override { inner_.upload(dst, src, bytes); }
  void download(const Tensor& src, void* dst, size_t bytes) override { inner_.download(src, dst, bytes); }
  Status sync() override {
    if (fault_.load() == Fault::SyncError) return make_error("injected: device lost");
    return inner_.sync();
  }
  void copy(const Tensor& src, const Tensor& dst) override { inner_.copy(src, dst); }
  void embed(const Tensor& t, const Tensor& ids, const Tensor& out) override { inner_.embed(t, ids, out); }
  void rms_norm(const Tensor& x, const Tensor& w, const Tensor& out, float eps) override { inner_.rms_norm(x, w, out, eps); }
  void matmul(const Tensor& w, const Tensor& x, const Tensor& out) override {
    if (fault_.load() == Fault::Throw) throw std::runtime_error("injected: kernel launch failed");
    inner_.matmul(w, x, out);
  }
  void rope(const Tensor& x, const Tensor& pos, int32_t nh, int32_t hd, float theta) override { inner_.rope(x, pos, nh, hd, theta); }
  void rope_freqs(const Tensor& x, const Tensor& pos, const Tensor& f, int32_t nh, int32_t hd, float theta) override {
    inner_.rope_freqs(x, pos, f, nh, hd, theta);
  }
  void silu_mul(const Tensor& g, const Tensor& u, const Tensor& out) override { inner_.silu_mul(g, u, out); }
  void gelu_mul(const Tensor& g, const Tensor& u, const Tensor& out) override { inner_.gelu_mul(g, u, out); }
  void scale(const Tensor& x, const Tensor& out, float s) override { inner_.scale(x, out, s); }
  void softcap(const Tensor& x, const Tensor& out, float cap) override { inner_.softcap(x, out, cap); }
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override { inner_.add(a, b, out); }
  void kv_store(const Tensor& k, const Tensor& v, const Tensor& kc, const Tensor& vc, const Tensor& slots) override {
    inner_.kv_store(k, v, kc, vc, slots);
  }
  void paged_attention(const Tensor& q, const Tensor& kc, const Tensor& vc, const Tensor& seqs, const Tensor& bt,
                       const Tensor& out, const AttentionParams& p) override {
    inner_.paged_attention(q, kc, vc, seqs, bt, out, p);
  }
  void softmax(const Tensor& x, const Tensor& out, float t) override { inner_.softmax(x, out, t); }
  void argmax(const Tensor& x, const Tensor& out) override { inner_.argmax(x, out); }
  void sample_probs(const Tensor& probs, const Tensor& u, const Tensor& out) override { inner_.sample_probs(probs, u, out); }
  void verify(const Tensor& target, const Tensor& dp, const Tensor& dt, const Tensor& meta, const Tensor& u,
              const Tensor& out, const VerifyParams& p) override {
    inner_.verify(target, dp, dt, meta, u, out, p);
  }

 private:
  Backend& inner_;
  uint64_t memory_;
  std::atomic<Fault> fault_{Fault::None};
};

}  // namespace pagoda::testing
