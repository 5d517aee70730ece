// The Vulkan device manager (Kompute's "Manager"): instance, optional validation messenger,
// physical-device choice, logical device and compute queue. Shared by every buffer and pipeline
// made from it, so it outlives them all; buffers freed while work is pending are retired here.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/vulkan/vk_common.h"

namespace pagoda::vk {

// The properties of one physical device the backend cares about.
struct PhysicalDeviceInfo {
  uint32_t index = 0;
  std::string name;
  VkPhysicalDeviceType type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
  uint32_t vendor_id = 0;
  std::string driver;
  uint32_t api_version = 0;
  uint64_t device_local_bytes = 0;
  uint32_t subgroup_size = 0;
  bool subgroup_arithmetic = false;  // basic + arithmetic subgroup ops in compute shaders
  bool has_compute_queue = false;
};

const char* device_type_name(VkPhysicalDeviceType t);
std::string vendor_name(uint32_t vendor_id);
// Index of the preferred device: discrete > integrated > virtual > cpu, first on ties; -1 if none
// is usable (Vulkan 1.1 with a compute queue).
int pick_best_device(const std::vector<PhysicalDeviceInfo>& devices);

class Device {
 public:
  // `index` < 0 picks the best device. `validation` enables VK_LAYER_KHRONOS_validation if present.
  static Result<std::shared_ptr<Device>> create(int index, bool validation);
  static Result<std::vector<PhysicalDeviceInfo>> enumerate();
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  VkDevice handle() const { return device_; }
  VkPhysicalDevice physical() const { return physical_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }
  const PhysicalDeviceInfo& info() const { return info_; }
  const VkPhysicalDeviceLimits& limits() const { return limits_; }
  const VkPhysicalDeviceMemoryProperties& memory_properties() const { return mem_props_; }
  uint64_t max_allocation_bytes() const { return max_alloc_; }
  uint64_t max_buffer_bytes() const { return max_buffer_; }
  // CPU and integrated devices share host memory, so device-local host-visible memory is cheap.
  bool unified_memory() const {
    return info_.type == VK_PHYSICAL_DEVICE_TYPE_CPU || info_.type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
  }
  uint32_t timestamp_valid_bits() const { return timestamp_bits_; }
  // Whether storage buffers in host-visible memory are mapped (off: every transfer goes through
  // staging, as on a discrete GPU; tests use it to cover that path on unified-memory devices).
  bool map_device_memory() const { return map_device_memory_; }
  void set_map_device_memory(bool on) { map_device_memory_ = on; }
  bool validation_enabled() const { return validation_; }

  // Destroys a buffer and its memory now, or after the pending command buffer completes if one
  // may still reference them (set_pending(true) between the first record and the fence wait).
  void retire(VkBuffer buffer, VkDeviceMemory memory);
  void set_pending(bool pending);

 private:
  Device() = default;
  Status init_instance(bool validation);
  Status init_device(int index);
  void destroy_retired();

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  PhysicalDeviceInfo info_;
  VkPhysicalDeviceLimits limits_{};
  VkPhysicalDeviceMemoryProperties mem_props_{};
  uint64_t max_alloc_ = 0;
  uint64_t max_buffer_ = 0;
  uint32_t timestamp_bits_ = 0;
  bool validation_ = false;
  bool map_device_memory_ = true;

  std::mutex retire_mu_;
  bool pending_ = false;
  std::vector<std::pair<VkBuffer, VkDeviceMemory>> retired_;
};

}  // namespace pagoda::vk
