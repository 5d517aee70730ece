// Buffer creation with memory-type choice, deferred release, and the staging arena.
#include "backends/vulkan/memory.h"

#include <algorithm>
#include <initializer_list>

namespace pagoda::vk {
namespace {

constexpr VkMemoryPropertyFlags kHostVisible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;

// First memory type allowed by `type_bits` that has all the flags of one preference, trying the
// preferences in order.
int find_memory_type(const VkPhysicalDeviceMemoryProperties& mp, uint32_t type_bits,
                     std::initializer_list<VkMemoryPropertyFlags> prefs) {
  for (VkMemoryPropertyFlags want : prefs)
    for (uint32_t i = 0; i < mp.memoryTypeCount; ++i)
      if ((type_bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return int(i);
  return -1;
}

int choose_type(const Device& dev, uint32_t type_bits, MemoryKind kind) {
  const auto& mp = dev.memory_properties();
  if (kind == MemoryKind::Staging)
    return find_memory_type(mp, type_bits, {kHostVisible | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, kHostVisible});
  // Unified memory: device-local and mappable, so uploads and downloads skip staging. On discrete
  // GPUs the mappable device-local window (BAR) is small and slow to read, so stay device-only.
  if (dev.unified_memory())
    return find_memory_type(mp, type_bits, {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | kHostVisible,
                                            VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0});
  return find_memory_type(mp, type_bits, {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0});
}

std::string oom(size_t bytes, const std::string& why) {
  return "out of device memory allocating " + std::to_string(bytes) + " bytes (" + why + ")";
}

}  // namespace

VulkanBuffer::VulkanBuffer(std::shared_ptr<Device> dev, VkBuffer buffer, VkDeviceMemory memory, size_t size,
                           VkDeviceSize capacity, uint8_t* mapped)
    : dev_(std::move(dev)), buffer_(buffer), memory_(memory), size_(size), capacity_(capacity), mapped_(mapped) {}

// Unmapping is implicit in vkFreeMemory; the device defers both while work may still use them.
VulkanBuffer::~VulkanBuffer() { dev_->retire(buffer_, memory_); }

Result<std::shared_ptr<VulkanBuffer>> create_buffer(const std::shared_ptr<Device>& dev, size_t bytes, MemoryKind kind) {
  const VkDeviceSize capacity = (VkDeviceSize(std::max<size_t>(bytes, 1)) + 15) / 16 * 16;
  if (capacity > dev->max_buffer_bytes() || capacity > dev->max_allocation_bytes())
    return make_error(oom(bytes, "the device's largest buffer is " + std::to_string(dev->max_buffer_bytes()) + " bytes"));
  const VkDevice d = dev->handle();
  auto bci = vk_struct<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  bci.size = capacity;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkBuffer raw_buffer = VK_NULL_HANDLE;
  const VkResult rb = vkCreateBuffer(d, &bci, nullptr, &raw_buffer);
  if (rb == VK_ERROR_OUT_OF_DEVICE_MEMORY || rb == VK_ERROR_OUT_OF_HOST_MEMORY)
    return make_error(oom(bytes, std::string("vkCreateBuffer: ") + result_name(rb)));
  if (rb != VK_SUCCESS) return vk_error("vkCreateBuffer", rb);
  UniqueBuffer buffer(d, raw_buffer);

  VkMemoryRequirements req{};
  vkGetBufferMemoryRequirements(d, buffer.get(), &req);
  const int type = choose_type(*dev, req.memoryTypeBits, kind);
  if (type < 0) return make_error("no Vulkan memory type fits a " + std::string(kind == MemoryKind::Staging ? "staging" : "storage") + " buffer");
  const VkMemoryType& mt = dev->memory_properties().memoryTypes[type];
  const VkDeviceSize heap = dev->memory_properties().memoryHeaps[mt.heapIndex].size;
  if (req.size > heap) return make_error(oom(bytes, "the memory heap holds " + std::to_string(heap) + " bytes"));

  auto mai = vk_struct<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = uint32_t(type);
  VkDeviceMemory raw_memory = VK_NULL_HANDLE;
  const VkResult rm = vkAllocateMemory(d, &mai, nullptr, &raw_memory);
  if (rm == VK_ERROR_OUT_OF_DEVICE_MEMORY || rm == VK_ERROR_OUT_OF_HOST_MEMORY || rm == VK_ERROR_TOO_MANY_OBJECTS)
    return make_error(oom(bytes, std::string("vkAllocateMemory: ") + result_name(rm)));
  if (rm != VK_SUCCESS) return vk_error("vkAllocateMemory", rm);
  UniqueMemory memory(d, raw_memory);
  PAGODA_VK_TRY(vkBindBufferMemory, (d, buffer.get(), memory.get(), 0));

  uint8_t* mapped = nullptr;
  if ((mt.propertyFlags & kHostVisible) == kHostVisible && (kind == MemoryKind::Staging || dev->map_device_memory())) {
    void* p = nullptr;
    PAGODA_VK_TRY(vkMapMemory, (d, memory.get(), 0, VK_WHOLE_SIZE, 0, &p));
    mapped = static_cast<uint8_t*>(p);
  }
  return std::make_shared<VulkanBuffer>(dev, buffer.release(), memory.release(), bytes, capacity, mapped);
}

StagingArena::StagingArena(std::shared_ptr<Device> dev, size_t chunk_bytes)
    : dev_(std::move(dev)), chunk_bytes_(chunk_bytes) {}

Result<StagingSlice> StagingArena::take(size_t bytes) {
  bytes = (bytes + 15) / 16 * 16;  // keeps every slice 16-byte aligned for vkCmdCopyBuffer
  while (current_ < chunks_.size() && offset_ + bytes > chunks_[current_]->capacity()) {
    ++current_;
    offset_ = 0;
  }
  if (current_ == chunks_.size()) {
    auto chunk = create_buffer(dev_, std::max(bytes, chunk_bytes_), MemoryKind::Staging);
    if (!chunk) return chunk.take_error();
    chunks_.push_back(std::move(*chunk));
    offset_ = 0;
  }
  VulkanBuffer* b = chunks_[current_].get();
  StagingSlice s{b, offset_, b->mapped() + offset_};
  offset_ += bytes;
  in_use_ += bytes;
  return s;
}

void StagingArena::reset() {
  // Oversized chunks were for one large upload; keep only standard chunks for reuse.
  std::erase_if(chunks_, [&](const auto& c) { return c->capacity() > chunk_bytes_; });
  if (chunks_.size() > 4) chunks_.resize(4);
  current_ = 0;
  offset_ = 0;
  in_use_ = 0;
}

}  // namespace pagoda::vk
