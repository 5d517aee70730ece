// Command recording, hazard-driven barriers, submission and timestamps.
#include "backends/vulkan/sequence.h"

#include <algorithm>
#include <cstring>

namespace pagoda::vk {
namespace {

constexpr VkPipelineStageFlags kWorkStages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
constexpr VkAccessFlags kWrites = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
constexpr VkAccessFlags kAllAccess =
    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
constexpr uint32_t kSetsPerPool = 256;

bool overlaps(const Access& a, const Access& b) {
  return a.buffer == b.buffer && a.offset < b.offset + b.size && b.offset < a.offset + a.size;
}

}  // namespace

Result<std::unique_ptr<Sequence>> Sequence::create(std::shared_ptr<Device> dev) {
  std::unique_ptr<Sequence> s(new Sequence(dev));
  const VkDevice d = dev->handle();
  auto pci = vk_struct<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = dev->queue_family();
  VkCommandPool pool = VK_NULL_HANDLE;
  PAGODA_VK_TRY(vkCreateCommandPool, (d, &pci, nullptr, &pool));
  s->pool_ = UniqueCommandPool(d, pool);
  auto ai = vk_struct<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
  ai.commandPool = pool;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  PAGODA_VK_TRY(vkAllocateCommandBuffers, (d, &ai, &s->cmd_));  // freed with the pool
  auto fci = vk_struct<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
  VkFence fence = VK_NULL_HANDLE;
  PAGODA_VK_TRY(vkCreateFence, (d, &fci, nullptr, &fence));
  s->fence_ = UniqueFence(d, fence);
  if (dev->timestamp_valid_bits() > 0) {
    auto qci = vk_struct<VkQueryPoolCreateInfo>(VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO);
    qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qci.queryCount = kMaxQueries;
    VkQueryPool qp = VK_NULL_HANDLE;
    PAGODA_VK_TRY(vkCreateQueryPool, (d, &qci, nullptr, &qp));
    s->queries_ = UniqueQueryPool(d, qp);
  }
  return s;
}

// Nothing recorded here was ever submitted (submit_and_wait always waits), so nothing in flight
// can still use buffers retired meanwhile.
Sequence::~Sequence() { dev_->set_pending(false); }

Status Sequence::begin_if_needed() {
  if (recording_) return {};
  auto bi = vk_struct<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  PAGODA_VK_TRY(vkBeginCommandBuffer, (cmd_, &bi));
  recording_ = true;
  dev_->set_pending(true);
  stamping_ = profiling_ && queries_;
  stamp_labels_.clear();
  if (stamping_) {
    vkCmdResetQueryPool(cmd_, queries_.get(), 0, kMaxQueries);
    vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_.get(), 0);
  }
  return {};
}

void Sequence::order_after_pending(const std::vector<Access>& next) {
  bool hazard = false;
  for (const Access& a : next)
    for (const Access& p : pending_)
      hazard |= (a.write || p.write) && overlaps(a, p);
  if (hazard) {
    // One barrier per written buffer, spanning everything written to it since the last barrier.
    std::vector<VkBufferMemoryBarrier> bars;
    for (const Access& p : pending_) {
      if (!p.write) continue;
      auto it = std::find_if(bars.begin(), bars.end(), [&](const auto& b) { return b.buffer == p.buffer; });
      if (it == bars.end()) {
        auto b = vk_struct<VkBufferMemoryBarrier>(VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER);
        b.srcAccessMask = kWrites;
        b.dstAccessMask = kAllAccess;
        b.srcQueueFamilyIndex = b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
        b.buffer = p.buffer;
        b.offset = p.offset;
        b.size = p.size;
        bars.push_back(b);
      } else {
        const VkDeviceSize end = std::max(it->offset + it->size, p.offset + p.size);
        it->offset = std::min(it->offset, p.offset);
        it->size = end - it->offset;
      }
    }
    // A pure write-after-read needs only the execution dependency, which the barrier gives too.
    vkCmdPipelineBarrier(cmd_, kWorkStages, kWorkStages, 0, 0, nullptr, uint32_t(bars.size()), bars.data(), 0, nullptr);
    pending_.clear();
  }
  pending_.insert(pending_.end(), next.begin(), next.end());
}

Result<VkDescriptorSet> Sequence::allocate_set(VkDescriptorSetLayout layout) {
  for (;;) {
    const bool fresh = desc_pool_ == desc_pools_.size();
    if (fresh) {
      const VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * 8};
      auto ci = vk_struct<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
      ci.maxSets = kSetsPerPool;
      ci.poolSizeCount = 1;
      ci.pPoolSizes = &size;
      VkDescriptorPool pool = VK_NULL_HANDLE;
      PAGODA_VK_TRY(vkCreateDescriptorPool, (dev_->handle(), &ci, nullptr, &pool));
      desc_pools_.emplace_back(dev_->handle(), pool);
    }
    auto ai = vk_struct<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
    ai.descriptorPool = desc_pools_[desc_pool_].get();
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &layout;
    VkDescriptorSet set = VK_NULL_HANDLE;
    const VkResult r = vkAllocateDescriptorSets(dev_->handle(), &ai, &set);
    if (r == VK_SUCCESS) return set;
    const bool exhausted = r == VK_ERROR_OUT_OF_POOL_MEMORY || r == VK_ERROR_FRAGMENTED_POOL;
    if (!exhausted || fresh) return vk_error("vkAllocateDescriptorSets", r);
    ++desc_pool_;  // this pool is full until the next fence; move on to the next one
  }
}

void Sequence::stamp(const char* label) {
  if (!stamping_ || stamp_labels_.size() + 1 >= kMaxQueries) return;
  stamp_labels_.emplace_back(label);
  vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_.get(), uint32_t(stamp_labels_.size()));
}

Status Sequence::dispatch(const Algorithm& alg, const std::vector<Binding>& bindings, const void* push,
                          uint32_t push_bytes, uint64_t groups, const char* label) {
  const ShaderLayout& sl = alg.shader();
  if (bindings.size() != sl.writable.size())
    return make_error(alg.name() + ": " + std::to_string(bindings.size()) + " buffers passed, the shader binds " +
                      std::to_string(sl.writable.size()));
  if (push_bytes != sl.push_bytes)
    return make_error(alg.name() + ": " + std::to_string(push_bytes) + " bytes of push constants passed, the shader's block has " +
                      std::to_string(sl.push_bytes));
  if (groups == 0) return {};
  const uint32_t* max_count = dev_->limits().maxComputeWorkGroupCount;
  const uint64_t gx = std::min<uint64_t>(groups, max_count[0]);
  const uint64_t gy = (groups + gx - 1) / gx;
  if (gy > max_count[1]) return make_error(alg.name() + ": " + std::to_string(groups) + " workgroups exceed the device's grid");
  PAGODA_TRY(begin_if_needed());

  std::vector<Access> acc;
  std::vector<VkDescriptorBufferInfo> infos(bindings.size());
  for (size_t i = 0; i < bindings.size(); ++i) {
    const Binding& b = bindings[i];
    acc.push_back({b.buffer->handle(), b.offset, b.range, bool(sl.writable[i])});
    infos[i] = {b.buffer->handle(), b.offset, b.range};
  }
  order_after_pending(acc);
  auto set = allocate_set(alg.set_layout());
  if (!set) return set.take_error();
  std::vector<VkWriteDescriptorSet> writes(bindings.size(), vk_struct<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET));
  for (size_t i = 0; i < bindings.size(); ++i) {
    writes[i].dstSet = *set;
    writes[i].dstBinding = uint32_t(i);
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
  }
  vkUpdateDescriptorSets(dev_->handle(), uint32_t(writes.size()), writes.data(), 0, nullptr);
  vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, alg.pipeline());
  vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, alg.layout(), 0, 1, &*set, 0, nullptr);
  if (push_bytes > 0) vkCmdPushConstants(cmd_, alg.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  vkCmdDispatch(cmd_, uint32_t(gx), uint32_t(gy), 1);
  stamp(label);
  return {};
}

Status Sequence::upload(const VulkanBuffer& dst, VkDeviceSize dst_offset, const void* src, size_t bytes) {
  if (bytes == 0) return {};
  PAGODA_TRY(begin_if_needed());
  auto slice = staging_.take(bytes);
  if (!slice) return slice.take_error();
  std::memcpy(slice->ptr, src, bytes);
  return copy(*slice->buffer, slice->offset, dst, dst_offset, bytes);
}

Status Sequence::copy(const VulkanBuffer& src, VkDeviceSize src_offset, const VulkanBuffer& dst, VkDeviceSize dst_offset,
                      VkDeviceSize bytes) {
  if (bytes == 0) return {};
  PAGODA_TRY(begin_if_needed());
  order_after_pending({{src.handle(), src_offset, bytes, false}, {dst.handle(), dst_offset, bytes, true}});
  const VkBufferCopy region{src_offset, dst_offset, bytes};
  vkCmdCopyBuffer(cmd_, src.handle(), dst.handle(), 1, &region);
  stamp("copy");
  return {};
}

Status Sequence::submit_and_wait() {
  if (!recording_) return {};
  // Device writes become visible to host reads of mapped memory after the fence.
  auto to_host = vk_struct<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  to_host.srcAccessMask = kWrites;
  to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(cmd_, kWorkStages, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host, 0, nullptr, 0, nullptr);
  PAGODA_VK_TRY(vkEndCommandBuffer, (cmd_));
  auto si = vk_struct<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd_;
  VkResult r = vkQueueSubmit(dev_->queue(), 1, &si, fence_.get());
  if (r == VK_SUCCESS) r = vkWaitForFences(dev_->handle(), 1, &fence_.get_ref(), VK_TRUE, UINT64_MAX);
  if (r == VK_ERROR_DEVICE_LOST) return make_error("Vulkan device lost while running queued work (VK_ERROR_DEVICE_LOST)");
  if (r != VK_SUCCESS) return vk_error("vkQueueSubmit/vkWaitForFences", r);
  if (stamping_) collect_timestamps();
  reset_after_fence();
  return {};
}

void Sequence::collect_timestamps() {
  const uint32_t n = uint32_t(stamp_labels_.size()) + 1;
  std::vector<uint64_t> ts(n);
  const VkResult r = vkGetQueryPoolResults(dev_->handle(), queries_.get(), 0, n, n * sizeof(uint64_t), ts.data(),
                                           sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
  if (r != VK_SUCCESS) return;  // timings are best effort
  const uint32_t bits = dev_->timestamp_valid_bits();
  const uint64_t mask = bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
  const double ns_per_tick = dev_->limits().timestampPeriod;
  for (uint32_t i = 0; i + 1 < n; ++i) {
    const uint64_t a = ts[i] & mask, b = ts[i + 1] & mask;
    // Overlapping dispatches may finish out of order; such a step counts as zero, not negative.
    timings_[stamp_labels_[i]] += b > a ? double(b - a) * ns_per_tick * 1e-6 : 0.0;
  }
}

void Sequence::reset_after_fence() {
  for (auto& p : desc_pools_) vkResetDescriptorPool(dev_->handle(), p.get(), 0);
  desc_pool_ = 0;
  staging_.reset();
  pending_.clear();
  vkResetCommandBuffer(cmd_, 0);
  vkResetFences(dev_->handle(), 1, &fence_.get_ref());
  recording_ = false;
  dev_->set_pending(false);
}

}  // namespace pagoda::vk
