// The Vulkan compute backend: every Backend op as a SPIR-V compute shader embedded at build time,
// recorded in order into one command buffer and submitted by sync(). This header is GPU-API free.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backends/backend.h"

namespace pagoda {

// `device` indexes list_vulkan_devices(); -1 picks the best (discrete > integrated > virtual > cpu).
// Environment: PAGODA_VK_VALIDATION=1 enables VK_LAYER_KHRONOS_validation when installed;
// PAGODA_VK_NO_SUBGROUP=1 forces the shared-memory reductions; PAGODA_VK_PROFILE=1 starts with
// per-op timestamps on; PAGODA_VK_NO_HOST_MAPPING=1 sends every transfer through staging buffers
// even where device memory is host-visible (the discrete-GPU path, testable on any device).
Result<BackendPtr> create_vulkan_backend(int device = -1);

struct VulkanDeviceDesc {
  int index = 0;
  std::string name;
  std::string type;  // "discrete", "integrated", "virtual", "cpu", "other"
  std::string vendor;
  std::string driver;
  uint64_t memory_bytes = 0;  // device-local heaps
  uint32_t subgroup_size = 0;
  bool usable = false;  // Vulkan 1.1 and a compute queue
};
// Every physical device the loader reports, in its order (the order `device` indexes).
Result<std::vector<VulkanDeviceDesc>> list_vulkan_devices();

// Validation-layer errors reported since the process started (all Vulkan backends together).
uint64_t vulkan_validation_error_count();
// Whether `backend` is a Vulkan backend running under VK_LAYER_KHRONOS_validation.
bool vulkan_validation_active(const Backend& backend);

// Per-op GPU timestamps (best effort: off on devices without compute timestamps). Timings are
// accumulated at each sync() while on; vulkan_op_timings returns (op, total ms) sorted by time,
// and nothing for a backend that is not Vulkan.
void vulkan_set_profiling(Backend& backend, bool on);
std::vector<std::pair<std::string, double>> vulkan_op_timings(const Backend& backend);

}  // namespace pagoda
