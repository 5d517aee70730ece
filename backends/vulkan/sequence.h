// Sequence (Kompute's term): the one command buffer ops are recorded into, in enqueue order, and
// submitted by submit_and_wait(). It inserts a buffer memory barrier only where a command touches
// a range an earlier, not yet fenced command wrote (or writes one it read), so independent
// dispatches may overlap. It also owns the descriptor pools, the staging arena for recorded
// uploads, and optional per-dispatch timestamps.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/vulkan/memory.h"
#include "backends/vulkan/pipelines.h"

namespace pagoda::vk {

// One storage-buffer descriptor: a range of a buffer, offset aligned for the device.
struct Binding {
  const VulkanBuffer* buffer = nullptr;
  VkDeviceSize offset = 0;
  VkDeviceSize range = 0;
};

// A buffer range one command reads or writes.
struct Access {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize offset = 0;
  VkDeviceSize size = 0;
  bool write = false;
};

class Sequence {
 public:
  static Result<std::unique_ptr<Sequence>> create(std::shared_ptr<Device> dev);
  ~Sequence();

  // Records `alg` over `groups` workgroups (folded into a 2-D grid) with `bindings` in binding
  // order and `push_bytes` of push constants, which must match the shader's reflected block.
  Status dispatch(const Algorithm& alg, const std::vector<Binding>& bindings, const void* push,
                  uint32_t push_bytes, uint64_t groups, const char* label);
  // Records a copy of host bytes into dst (through the staging arena), ordered with prior commands.
  Status upload(const VulkanBuffer& dst, VkDeviceSize dst_offset, const void* src, size_t bytes);
  // Records a buffer-to-buffer copy.
  Status copy(const VulkanBuffer& src, VkDeviceSize src_offset, const VulkanBuffer& dst, VkDeviceSize dst_offset,
              VkDeviceSize bytes);
  bool recording() const { return recording_; }
  size_t staged_bytes() const { return staging_.bytes_in_use(); }
  // Submits what was recorded and waits on the fence; a no-op when nothing was recorded.
  Status submit_and_wait();

  void set_profiling(bool on) { profiling_ = on && dev_->timestamp_valid_bits() > 0; }
  bool profiling() const { return profiling_; }
  // (label, total ms) accumulated over every submission while profiling was on.
  const std::map<std::string, double>& timings() const { return timings_; }

 private:
  explicit Sequence(std::shared_ptr<Device> dev) : dev_(dev), staging_(dev) {}
  Status begin_if_needed();
  void order_after_pending(const std::vector<Access>& next);
  Result<VkDescriptorSet> allocate_set(VkDescriptorSetLayout layout);
  void stamp(const char* label);
  void collect_timestamps();
  void reset_after_fence();

  std::shared_ptr<Device> dev_;
  UniqueCommandPool pool_;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  UniqueFence fence_;
  bool recording_ = false;
  std::vector<Access> pending_;  // accesses since the last barrier
  std::vector<UniqueDescriptorPool> desc_pools_;
  size_t desc_pool_ = 0;
  StagingArena staging_;

  static constexpr uint32_t kMaxQueries = 1024;
  UniqueQueryPool queries_;
  bool profiling_ = false;
  bool stamping_ = false;  // this command buffer carries timestamps
  std::vector<std::string> stamp_labels_;
  std::map<std::string, double> timings_;
};

}  // namespace pagoda::vk
