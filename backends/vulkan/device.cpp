// Instance, validation messenger, physical-device choice and logical device.
#include "backends/vulkan/device.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "backends/vulkan/vulkan_backend.h"

namespace pagoda {
namespace {

using vk::vk_struct;

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";
std::atomic<uint64_t> g_validation_errors{0};

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                VkDebugUtilsMessageTypeFlagsEXT,
                                                const VkDebugUtilsMessengerCallbackDataEXT* data, void*) {
  const char* msg = data && data->pMessage ? data->pMessage : "(no message)";
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    g_validation_errors.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "[vulkan validation error] %s\n", msg);
  } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
    std::fprintf(stderr, "[vulkan validation warning] %s\n", msg);
  }
  return VK_FALSE;  // never abort the call that triggered the message
}

bool instance_has_layer(const char* name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceLayerProperties(&n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkLayerProperties> layers(n);
  if (vkEnumerateInstanceLayerProperties(&n, layers.data()) != VK_SUCCESS) return false;
  return std::any_of(layers.begin(), layers.end(), [&](const auto& l) { return std::strcmp(l.layerName, name) == 0; });
}

bool instance_has_extension(const char* name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkExtensionProperties> exts(n);
  if (vkEnumerateInstanceExtensionProperties(nullptr, &n, exts.data()) != VK_SUCCESS) return false;
  return std::any_of(exts.begin(), exts.end(), [&](const auto& e) { return std::strcmp(e.extensionName, name) == 0; });
}

VkDebugUtilsMessengerCreateInfoEXT messenger_info() {
  auto ci = vk_struct<VkDebugUtilsMessengerCreateInfoEXT>(VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT);
  ci.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  ci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                   VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  ci.pfnUserCallback = on_debug_message;
  return ci;
}

// The instance plus its messenger; used alone by enumerate() and owned by Device otherwise.
struct InstanceHandles {
  VkInstance instance = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
  bool validation = false;
};

void destroy_instance(InstanceHandles& h) {
  if (h.messenger != VK_NULL_HANDLE) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(h.instance, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy) destroy(h.instance, h.messenger, nullptr);
  }
  if (h.instance != VK_NULL_HANDLE) vkDestroyInstance(h.instance, nullptr);
  h = {};
}

Result<InstanceHandles> create_instance(bool want_validation) {
  InstanceHandles h;
  auto app = vk_struct<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
  app.pApplicationName = "pagoda";
  app.pEngineName = "pagoda";
  app.apiVersion = VK_API_VERSION_1_2;
  std::vector<const char*> layers, exts;
  if (want_validation) {
    if (instance_has_layer(kValidationLayer) && instance_has_extension(VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
      layers.push_back(kValidationLayer);
      exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
      h.validation = true;
    } else {
      std::fprintf(stderr, "pagoda: PAGODA_VK_VALIDATION=1 but %s (with VK_EXT_debug_utils) is not installed; "
                   "running without validation\n", kValidationLayer);
    }
  }
  VkDebugUtilsMessengerCreateInfoEXT dbg = messenger_info();
  auto ci = vk_struct<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
  ci.pNext = h.validation ? &dbg : nullptr;  // also catches messages from instance creation itself
  ci.pApplicationInfo = &app;
  ci.enabledLayerCount = uint32_t(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  ci.enabledExtensionCount = uint32_t(exts.size());
  ci.ppEnabledExtensionNames = exts.data();
  const VkResult r = vkCreateInstance(&ci, nullptr, &h.instance);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    return make_error("no Vulkan driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER); "
                      "install a Vulkan ICD, e.g. mesa-vulkan-drivers");
  if (r != VK_SUCCESS) return vk::vk_error("vkCreateInstance", r);
  if (h.validation) {
    auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(h.instance, "vkCreateDebugUtilsMessengerEXT"));
    if (!create || create(h.instance, &dbg, nullptr, &h.messenger) != VK_SUCCESS) {
      destroy_instance(h);
      return make_error("vkCreateDebugUtilsMessengerEXT failed although VK_EXT_debug_utils is present");
    }
  }
  return h;
}

vk::PhysicalDeviceInfo describe(VkPhysicalDevice pd, uint32_t index) {
  vk::PhysicalDeviceInfo d;
  d.index = index;
  VkPhysicalDeviceProperties base{};
  vkGetPhysicalDeviceProperties(pd, &base);
  d.name = base.deviceName;
  d.type = base.deviceType;
  d.vendor_id = base.vendorID;
  d.api_version = base.apiVersion;
  if (base.apiVersion >= VK_API_VERSION_1_1) {
    auto sg = vk_struct<VkPhysicalDeviceSubgroupProperties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES);
    auto drv = vk_struct<VkPhysicalDeviceDriverProperties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES);
    if (base.apiVersion >= VK_API_VERSION_1_2) sg.pNext = &drv;
    auto p2 = vk_struct<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
    p2.pNext = &sg;
    vkGetPhysicalDeviceProperties2(pd, &p2);
    d.subgroup_size = sg.subgroupSize;
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    d.subgroup_arithmetic = (sg.supportedOperations & need) == need &&
                            (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
    if (base.apiVersion >= VK_API_VERSION_1_2) d.driver = std::string(drv.driverName) + " " + drv.driverInfo;
  }
  if (d.driver.empty()) d.driver = "driver version " + std::to_string(base.driverVersion);
  VkPhysicalDeviceMemoryProperties mem{};
  vkGetPhysicalDeviceMemoryProperties(pd, &mem);
  for (uint32_t i = 0; i < mem.memoryHeapCount; ++i)
    if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) d.device_local_bytes += mem.memoryHeaps[i].size;
  uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
  for (const auto& q : qf) d.has_compute_queue |= (q.queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
  return d;
}

Result<std::vector<VkPhysicalDevice>> physical_devices(VkInstance instance) {
  uint32_t n = 0;
  PAGODA_VK_TRY(vkEnumeratePhysicalDevices, (instance, &n, nullptr));
  std::vector<VkPhysicalDevice> pds(n);
  PAGODA_VK_TRY(vkEnumeratePhysicalDevices, (instance, &n, pds.data()));
  pds.resize(n);
  return pds;
}

bool usable(const vk::PhysicalDeviceInfo& d) { return d.api_version >= VK_API_VERSION_1_1 && d.has_compute_queue; }

}  // namespace

uint64_t vulkan_validation_error_count() { return g_validation_errors.load(std::memory_order_relaxed); }

namespace vk {

const char* result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_INVALID_SHADER_NV: return "VK_ERROR_INVALID_SHADER_NV";
    default: return "VkResult(unknown)";
  }
}

const char* device_type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

std::string vendor_name(uint32_t id) {
  switch (id) {
    case 0x10DE: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x106B: return "Apple";
    case 0x10005: return "Mesa";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "vendor 0x%04x", id);
      return buf;
    }
  }
}

int pick_best_device(const std::vector<PhysicalDeviceInfo>& devices) {
  auto rank = [](VkPhysicalDeviceType t) {
    switch (t) {
      case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
      case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
      case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
      case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
      default: return 0;
    }
  };
  int best = -1;
  for (size_t i = 0; i < devices.size(); ++i) {
    if (!usable(devices[i])) continue;
    if (best < 0 || rank(devices[i].type) > rank(devices[size_t(best)].type)) best = int(i);
  }
  return best;
}

Result<std::vector<PhysicalDeviceInfo>> Device::enumerate() {
  auto inst = create_instance(false);
  if (!inst) return inst.take_error();
  auto pds = physical_devices(inst->instance);
  std::vector<PhysicalDeviceInfo> out;
  if (pds)
    for (uint32_t i = 0; i < pds->size(); ++i) out.push_back(describe((*pds)[i], i));
  destroy_instance(*inst);
  if (!pds) return pds.take_error();
  return out;
}

Result<std::shared_ptr<Device>> Device::create(int index, bool validation) {
  std::shared_ptr<Device> d(new Device());
  PAGODA_TRY(d->init_instance(validation));
  PAGODA_TRY(d->init_device(index));
  return d;
}

Status Device::init_instance(bool validation) {
  auto inst = create_instance(validation);
  if (!inst) return inst.take_error();
  instance_ = inst->instance;
  messenger_ = inst->messenger;
  validation_ = inst->validation;
  return {};
}

namespace {

std::string device_list(const std::vector<PhysicalDeviceInfo>& infos) {
  std::string s;
  for (const auto& d : infos)
    s += (s.empty() ? "" : ", ") + std::to_string(d.index) + ": " + d.name + " (" + device_type_name(d.type) + ")";
  return s;
}

// Limits every shader here assumes; Vulkan's required minimums already satisfy them, so a
// failure means a non-conformant driver, reported by name rather than as a bad pipeline later.
Status check_limits(const PhysicalDeviceInfo& d, const VkPhysicalDeviceLimits& l) {
  if (l.maxComputeWorkGroupInvocations < 128 || l.maxComputeWorkGroupSize[0] < 128)
    return make_error("Vulkan device " + d.name + " lacks a feature: compute workgroups of 128 invocations");
  if (l.maxPushConstantsSize < 128)
    return make_error("Vulkan device " + d.name + " lacks a feature: 128 bytes of push constants");
  if (l.maxComputeSharedMemorySize < 8192)
    return make_error("Vulkan device " + d.name + " lacks a feature: 8 KiB of compute shared memory");
  return {};
}

}  // namespace

Status Device::init_device(int index) {
  auto pds = physical_devices(instance_);
  if (!pds) return pds.take_error();
  std::vector<PhysicalDeviceInfo> infos;
  for (uint32_t i = 0; i < pds->size(); ++i) infos.push_back(describe((*pds)[i], i));
  if (infos.empty()) return make_error("no Vulkan device found (the loader reports 0 physical devices)");
  if (index >= int(infos.size()))
    return make_error("Vulkan device index " + std::to_string(index) + " is out of range: " +
                      std::to_string(infos.size()) + " device(s) available (" + device_list(infos) + ")");
  if (index >= 0 && !usable(infos[size_t(index)]))
    return make_error("Vulkan device " + std::to_string(index) + " (" + infos[size_t(index)].name +
                      ") is unusable: it needs Vulkan 1.1 and a compute queue");
  const int chosen = index >= 0 ? index : pick_best_device(infos);
  if (chosen < 0) return make_error("no usable Vulkan device (need Vulkan 1.1 with a compute queue): " + device_list(infos));
  physical_ = (*pds)[size_t(chosen)];
  info_ = infos[size_t(chosen)];

  auto m3 = vk_struct<VkPhysicalDeviceMaintenance3Properties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES);
  auto m4 = vk_struct<VkPhysicalDeviceMaintenance4Properties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES);
  if (info_.api_version >= VK_API_VERSION_1_3) m3.pNext = &m4;
  auto p2 = vk_struct<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
  p2.pNext = &m3;
  vkGetPhysicalDeviceProperties2(physical_, &p2);
  limits_ = p2.properties.limits;
  max_alloc_ = m3.maxMemoryAllocationSize;
  max_buffer_ = info_.api_version >= VK_API_VERSION_1_3 ? std::min<uint64_t>(m4.maxBufferSize, max_alloc_) : max_alloc_;
  vkGetPhysicalDeviceMemoryProperties(physical_, &mem_props_);
  PAGODA_TRY(check_limits(info_, limits_));

  uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, qf.data());
  for (uint32_t i = 0; i < nq; ++i) {
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
      queue_family_ = i;
      timestamp_bits_ = qf[i].timestampValidBits;
      break;
    }
  }
  const float priority = 1.0f;
  auto qci = vk_struct<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
  qci.queueFamilyIndex = queue_family_;
  qci.queueCount = 1;
  qci.pQueuePriorities = &priority;
  auto dci = vk_struct<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  PAGODA_VK_TRY(vkCreateDevice, (physical_, &dci, nullptr, &device_));
  vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
  return {};
}

void Device::retire(VkBuffer buffer, VkDeviceMemory memory) {
  std::lock_guard<std::mutex> lock(retire_mu_);
  if (pending_) {
    retired_.emplace_back(buffer, memory);
    return;
  }
  vkDestroyBuffer(device_, buffer, nullptr);
  vkFreeMemory(device_, memory, nullptr);
}

void Device::set_pending(bool pending) {
  std::lock_guard<std::mutex> lock(retire_mu_);
  pending_ = pending;
  if (!pending_) destroy_retired();
}

void Device::destroy_retired() {
  for (auto [b, m] : retired_) {
    vkDestroyBuffer(device_, b, nullptr);
    vkFreeMemory(device_, m, nullptr);
  }
  retired_.clear();
}

Device::~Device() {
  if (device_ != VK_NULL_HANDLE) {
    vkDeviceWaitIdle(device_);  // a lost device reports an error here; destruction goes on regardless
    destroy_retired();
    vkDestroyDevice(device_, nullptr);
  }
  InstanceHandles h{instance_, messenger_, validation_};
  destroy_instance(h);
}

}  // namespace vk

Result<std::vector<VulkanDeviceDesc>> list_vulkan_devices() {
  auto infos = vk::Device::enumerate();
  if (!infos) return infos.take_error();
  std::vector<VulkanDeviceDesc> out;
  for (const auto& d : *infos) {
    VulkanDeviceDesc v;
    v.index = int(d.index);
    v.name = d.name;
    v.type = vk::device_type_name(d.type);
    v.vendor = vk::vendor_name(d.vendor_id);
    v.driver = d.driver;
    v.memory_bytes = d.device_local_bytes;
    v.subgroup_size = d.subgroup_size;
    v.usable = usable(d);
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace pagoda
