// Vulkan plumbing shared by the backend's files: VkResult checks whose message names the failing
// call, and a move-only owner so every device-level handle is destroyed exactly once.
#pragma once
#include <vulkan/vulkan.h>

#include <string>
#include <utility>

#include "core/util/result.h"

namespace pagoda::vk {

const char* result_name(VkResult r);

// A Vulkan info struct zeroed except for its sType.
template <typename T>
T vk_struct(VkStructureType type) {
  T s{};
  s.sType = type;
  return s;
}

inline Error vk_error(const char* call, VkResult r) {
  return make_error(std::string(call) + " failed: " + result_name(r));
}

}  // namespace pagoda::vk

// Runs `fn args`; on anything but VK_SUCCESS returns an Error naming fn and the result.
#define PAGODA_VK_TRY(fn, args)                                        \
  do {                                                                 \
    const VkResult pagoda_vk_r_ = fn args;                             \
    if (pagoda_vk_r_ != VK_SUCCESS) return ::pagoda::vk::vk_error(#fn, pagoda_vk_r_); \
  } while (0)

namespace pagoda::vk {

// Owner of one handle created from a VkDevice and released by `Destroy(device, handle, nullptr)`.
template <typename T, void (*Destroy)(VkDevice, T, const VkAllocationCallbacks*)>
class Owned {
 public:
  Owned() = default;
  Owned(VkDevice dev, T h) : dev_(dev), h_(h) {}
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  Owned(Owned&& o) noexcept : dev_(o.dev_), h_(std::exchange(o.h_, VK_NULL_HANDLE)) {}
  Owned& operator=(Owned&& o) noexcept {
    if (this != &o) {
      reset();
      dev_ = o.dev_;
      h_ = std::exchange(o.h_, VK_NULL_HANDLE);
    }
    return *this;
  }
  ~Owned() { reset(); }

  T get() const { return h_; }
  // For calls that take an array of handles (vkWaitForFences).
  const T& get_ref() const { return h_; }
  explicit operator bool() const { return h_ != VK_NULL_HANDLE; }
  // Gives up ownership (the caller destroys the handle).
  T release() { return std::exchange(h_, VK_NULL_HANDLE); }
  void reset() {
    if (h_ != VK_NULL_HANDLE) Destroy(dev_, h_, nullptr);
    h_ = VK_NULL_HANDLE;
  }

 private:
  VkDevice dev_ = VK_NULL_HANDLE;
  T h_ = VK_NULL_HANDLE;
};

using UniqueBuffer = Owned<VkBuffer, vkDestroyBuffer>;
using UniqueMemory = Owned<VkDeviceMemory, vkFreeMemory>;
using UniqueShaderModule = Owned<VkShaderModule, vkDestroyShaderModule>;
using UniqueSetLayout = Owned<VkDescriptorSetLayout, vkDestroyDescriptorSetLayout>;
using UniquePipelineLayout = Owned<VkPipelineLayout, vkDestroyPipelineLayout>;
using UniquePipeline = Owned<VkPipeline, vkDestroyPipeline>;
using UniqueDescriptorPool = Owned<VkDescriptorPool, vkDestroyDescriptorPool>;
using UniqueCommandPool = Owned<VkCommandPool, vkDestroyCommandPool>;
using UniqueFence = Owned<VkFence, vkDestroyFence>;
using UniqueQueryPool = Owned<VkQueryPool, vkDestroyQueryPool>;

}  // namespace pagoda::vk
