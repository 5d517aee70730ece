// Device memory: VulkanBuffer (the backend's DeviceBuffer: one VkBuffer with its own allocation,
// persistently mapped when host-visible) and StagingArena, the host-visible scratch that uploads
// recorded into a command buffer copy from. Allocation failures come back as errors, never aborts.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "backends/vulkan/device.h"

namespace pagoda::vk {

class VulkanBuffer final : public DeviceBuffer {
 public:
  VulkanBuffer(std::shared_ptr<Device> dev, VkBuffer buffer, VkDeviceMemory memory, size_t size,
               VkDeviceSize capacity, uint8_t* mapped);
  ~VulkanBuffer() override;
  VulkanBuffer(const VulkanBuffer&) = delete;
  VulkanBuffer& operator=(const VulkanBuffer&) = delete;

  size_t size() const override { return size_; }
  VkBuffer handle() const { return buffer_; }
  // Bytes of the VkBuffer: size() rounded up to 16, so word-wide shader reads of the last
  // partial word stay inside the buffer.
  VkDeviceSize capacity() const { return capacity_; }
  // Host pointer to byte 0 when the memory is host-visible and coherent, else null.
  uint8_t* mapped() const { return mapped_; }

 private:
  std::shared_ptr<Device> dev_;
  VkBuffer buffer_;
  VkDeviceMemory memory_;
  size_t size_;
  VkDeviceSize capacity_;
  uint8_t* mapped_;
};

enum class MemoryKind {
  Device,   // storage for tensors: device-local (also host-visible on unified-memory devices)
  Staging,  // host-visible, coherent: the source or destination of transfers
};

Result<std::shared_ptr<VulkanBuffer>> create_buffer(const std::shared_ptr<Device>& dev, size_t bytes, MemoryKind kind);

struct StagingSlice {
  VulkanBuffer* buffer = nullptr;
  VkDeviceSize offset = 0;
  uint8_t* ptr = nullptr;
};

// Bump allocator over host-visible chunks. Slices stay valid until reset(), which the owner calls
// once the command buffer that reads them has completed.
class StagingArena {
 public:
  explicit StagingArena(std::shared_ptr<Device> dev, size_t chunk_bytes = size_t(4) << 20);
  Result<StagingSlice> take(size_t bytes);
  void reset();
  size_t bytes_in_use() const { return in_use_; }

 private:
  std::shared_ptr<Device> dev_;
  size_t chunk_bytes_;
  std::vector<std::shared_ptr<VulkanBuffer>> chunks_;
  size_t current_ = 0;  // chunk being filled
  size_t offset_ = 0;   // next free byte in it
  size_t in_use_ = 0;
};

}  // namespace pagoda::vk
