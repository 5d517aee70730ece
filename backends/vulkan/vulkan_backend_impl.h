// VulkanBackend: the Backend implementation. Device setup, memory and sync live in
// vulkan_backend.cpp; the ops are split by family into ops_basic.cpp, ops_attention.cpp and
// ops_sampling.cpp. Ops cannot return errors, so the first failure is kept and sync() reports it.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backends/vulkan/device.h"
#include "backends/vulkan/memory.h"
#include "backends/vulkan/pipelines.h"
#include "backends/vulkan/sequence.h"
#include "backends/vulkan/vulkan_backend.h"

namespace pagoda::vk {

// Specialization constant ids shared by the shaders.
constexpr uint32_t kSpecLocalSize = 0;
constexpr uint32_t kSpecDType = 1;
constexpr uint32_t kSpecHeadsPerGroup = 2;  // paged_attention: query heads per workgroup

class VulkanBackend final : public Backend {
 public:
  static Result<std::unique_ptr<VulkanBackend>> create(int device);
  ~VulkanBackend() override;

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

  void set_profiling(bool on) { seq_->set_profiling(on); }
  bool validation_active() const { return dev_->validation_enabled(); }
  std::vector<std::pair<std::string, double>> timings() const;

 private:
  VulkanBackend() = default;
  Status scale_or_cap(const Tensor& x, const Tensor& out, float s, float cap);

  // A tensor as a descriptor: the offset aligned down for the device, `elem` the rest of it in
  // units of `unit` bytes, which the shader adds to its indices.
  struct Bound {
    Binding binding;
    uint32_t elem = 0;
  };
  Result<Bound> bind(const Tensor& t, uint32_t unit, size_t bytes) const;
  Result<Bound> bind(const Tensor& t, uint32_t unit) const { return bind(t, unit, t.bytes()); }
  // Largest byte range one descriptor may cover (the device limit).
  size_t max_binding_bytes() const;
  Result<const VulkanBuffer*> buffer_of(const Tensor& t) const;

  // Dispatches `shader`; timestamps are labelled `label` (the op name) or else the shader's name.
  template <typename Push>
  Status run(const char* shader, const std::vector<SpecValue>& spec, const std::vector<Binding>& bindings,
             const Push& push, uint64_t groups, const char* label = nullptr) {
    auto alg = pipes_->get(shader, spec);
    if (!alg) return alg.take_error();
    return seq_->dispatch(**alg, bindings, &push, uint32_t(sizeof(Push)), groups, label ? label : shader);
  }
  // Runs an op body unless an earlier failure is pending; keeps the first failure.
  template <typename F>
  void guarded(const char* op, F&& body) {
    if (error_) return;
    Status s = body();
    if (!s) error_ = make_error(std::string(op) + ": " + s.error());
  }
  Status upload_bytes(const VulkanBuffer& dst, size_t offset, const uint8_t* src, size_t bytes);
  Status download_bytes(const VulkanBuffer& src, size_t offset, uint8_t* dst, size_t bytes);
  Result<const VulkanBuffer*> rope_freq_table(float theta, int32_t head_dim);

  Status embed_impl(const Tensor& table, const Tensor& ids, const Tensor& out);
  Status matmul_impl(const Tensor& w, const Tensor& x, const Tensor& out);
  // rope and rope_freqs; factors null for plain rope.
  Status rope_impl(const Tensor& x, const Tensor& pos, const Tensor* factors, int32_t n_heads, int32_t head_dim,
                   float theta);
  // out = act(gate) * up elementwise with the shader `name` (silu_mul, gelu_mul: same bindings).
  Status binary_impl(const char* name, const Tensor& gate, const Tensor& up, const Tensor& out);
  Status kv_store_impl(const Tensor& k, const Tensor& v, const Tensor& kc, const Tensor& vc, const Tensor& slots);
  Status attention_impl(const Tensor& q, const Tensor& kc, const Tensor& vc, const Tensor& seqs, const Tensor& bt,
                        const Tensor& out, const AttentionParams& p);
  Status verify_impl(const Tensor& target, const Tensor& draft_probs, const Tensor& draft_tokens, const Tensor& meta,
                     const Tensor& uniforms, const Tensor& out, const VerifyParams& p);

  // Declaration order is destruction order reversed: everything below dev_ uses it.
  std::shared_ptr<Device> dev_;
  std::unique_ptr<PipelineCache> pipes_;
  std::unique_ptr<Sequence> seq_;
  std::shared_ptr<VulkanBuffer> dummy_;  // bound where an op's optional tensor is absent
  std::map<std::pair<uint32_t, int32_t>, std::shared_ptr<VulkanBuffer>> rope_freqs_;
  BufferPtr attn_parts_;  // paged_attention's split-K partials, grown on demand
  std::optional<Error> error_;
  // Workgroup sizes (powers of two), chosen per device in create().
  uint32_t row_group_ = 128;     // row-wise reductions: rms_norm, softmax, argmax, sampling
  uint32_t matmul_group_ = 128;  // one weight row's dot products
  uint32_t elem_group_ = 256;    // elementwise ops
};

inline uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

}  // namespace pagoda::vk

// Binds `expr` (a Result<Bound>) to `name`, returning its error from the enclosing function.
#define PAGODA_BIND(name, expr)                    \
  auto name##_result_ = (expr);                    \
  if (!name##_result_) return name##_result_.take_error(); \
  const auto& name = *name##_result_
