// VulkanBackend: creation, device info, memory, transfers and sync; the public entry points.
#include "backends/vulkan/vulkan_backend_impl.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace pagoda {
namespace vk {
namespace {

// Uploads recorded behind pending work stage through host memory until sync; past this much
// staged data the pending work is flushed first so staging stays bounded (e.g. weight loading).
constexpr size_t kStagingLimit = size_t(64) << 20;

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

}  // namespace

Result<std::unique_ptr<VulkanBackend>> VulkanBackend::create(int device) {
  auto dev = Device::create(device, env_on("PAGODA_VK_VALIDATION"));
  if (!dev) return make_error("vulkan: " + dev.error());
  std::unique_ptr<VulkanBackend> be(new VulkanBackend());
  be->dev_ = std::move(*dev);
  be->dev_->set_map_device_memory(!env_on("PAGODA_VK_NO_HOST_MAPPING"));
  const bool subgroups = be->dev_->info().subgroup_arithmetic && !env_on("PAGODA_VK_NO_SUBGROUP");
  be->pipes_ = std::make_unique<PipelineCache>(be->dev_, subgroups);
  auto seq = Sequence::create(be->dev_);
  if (!seq) return make_error("vulkan: " + seq.error());
  be->seq_ = std::move(*seq);
  be->seq_->set_profiling(env_on("PAGODA_VK_PROFILE"));
  if (be->dev_->info().type == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    // CPU implementations (lavapipe) run a workgroup as a loop over SIMD lanes and pay for every
    // barrier, so reductions use one or two subgroups per group (6x faster decode on lavapipe).
    const uint32_t sg = std::clamp<uint32_t>(be->dev_->info().subgroup_size, 8, 64);
    be->matmul_group_ = sg;
    be->row_group_ = 2 * sg;
  }
  auto dummy = create_buffer(be->dev_, 16, MemoryKind::Device);
  if (!dummy) return make_error("vulkan: " + dummy.error());
  be->dummy_ = std::move(*dummy);
  return be;
}

VulkanBackend::~VulkanBackend() {
  if (seq_ && !error_) (void)seq_->submit_and_wait();  // let queued work finish before its buffers go
}

BackendInfo VulkanBackend::info() const {
  const PhysicalDeviceInfo& d = dev_->info();
  BackendInfo i;
  i.name = "vulkan";
  i.device = d.name + " (" + device_type_name(d.type) + (pipes_->use_subgroups() ? "" : ", no subgroup ops") + ")";
  i.vendor = vendor_name(d.vendor_id);
  i.driver = d.driver;
  i.memory_bytes = d.device_local_bytes;
  i.subgroup_size = d.subgroup_size;
  i.is_gpu = d.type != VK_PHYSICAL_DEVICE_TYPE_CPU;
  return i;
}

bool VulkanBackend::supports(Op op, DType dtype) const {
  switch (op) {
    case Op::Embed:
    case Op::Matmul:  // every weight layout: shaders/dequant.glsl decodes each
      return dtype != DType::I32 && size_t(dtype) < size_t(DType::kCount);
    case Op::KvStore:
    case Op::PagedAttention:
    case Op::AttentionWindow: return dtype == DType::F32 || dtype == DType::F16;
    case Op::Copy: return true;
    default: return dtype == DType::F32;
  }
}

Result<BufferPtr> VulkanBackend::alloc(size_t bytes) {
  auto b = create_buffer(dev_, bytes, MemoryKind::Device);
  if (!b) return make_error("vulkan: " + b.error());
  return BufferPtr(std::move(*b));
}

Result<const VulkanBuffer*> VulkanBackend::buffer_of(const Tensor& t) const {
  const auto* b = dynamic_cast<const VulkanBuffer*>(t.buf);
  if (!b) return make_error(t.buf ? "tensor memory was not allocated by this Vulkan backend" : "tensor has no buffer");
  return b;
}

size_t VulkanBackend::max_binding_bytes() const { return dev_->limits().maxStorageBufferRange; }

Result<VulkanBackend::Bound> VulkanBackend::bind(const Tensor& t, uint32_t unit, size_t bytes) const {
  if (!t.buf) return Bound{Binding{dummy_.get(), 0, dummy_->capacity()}, 0};
  auto b = buffer_of(t);
  if (!b) return b.take_error();
  const VkDeviceSize align = std::max<VkDeviceSize>(dev_->limits().minStorageBufferOffsetAlignment, 4);
  const VkDeviceSize base = t.offset / align * align;
  const VkDeviceSize rem = t.offset - base;
  if (rem % unit != 0)
    return make_error("tensor offset " + std::to_string(t.offset) + " is not a multiple of " + std::to_string(unit) + " bytes");
  if (t.offset + bytes > (*b)->size())
    return make_error("tensor of " + std::to_string(bytes) + " bytes at offset " + std::to_string(t.offset) +
                      " overruns its buffer of " + std::to_string((*b)->size()) + " bytes");
  // Whole words: shaders read uint-packed data up to the word holding the last byte.
  const VkDeviceSize range = std::min<VkDeviceSize>(std::max<VkDeviceSize>((rem + bytes + 3) / 4 * 4, 4),
                                                    (*b)->capacity() - base);
  if (range > max_binding_bytes())
    return make_error("a tensor of " + std::to_string(bytes) + " bytes exceeds the device's storage-buffer range of " +
                      std::to_string(max_binding_bytes()) + " bytes");
  return Bound{Binding{*b, base, range}, uint32_t(rem / unit)};
}

Status VulkanBackend::upload_bytes(const VulkanBuffer& dst, size_t offset, const uint8_t* src, size_t bytes) {
  size_t done = 0;
  while (done < bytes) {
    // Nothing recorded can touch dst, so a mappable buffer is written directly.
    if (!seq_->recording() && dst.mapped()) {
      std::memcpy(dst.mapped() + offset + done, src + done, bytes - done);
      return {};
    }
    const size_t chunk = std::min(bytes - done, kStagingLimit);
    if (seq_->staged_bytes() > 0 && seq_->staged_bytes() + chunk > kStagingLimit) {
      PAGODA_TRY(seq_->submit_and_wait());
      continue;
    }
    PAGODA_TRY(seq_->upload(dst, offset + done, src + done, chunk));
    done += chunk;
  }
  return {};
}

void VulkanBackend::upload(const Tensor& dst, const void* src, size_t bytes) {
  guarded("upload", [&]() -> Status {
    auto b = buffer_of(dst);
    if (!b) return b.take_error();
    if (dst.offset + bytes > (*b)->size())
      return make_error(std::to_string(bytes) + " bytes at offset " + std::to_string(dst.offset) +
                        " overrun a buffer of " + std::to_string((*b)->size()) + " bytes");
    return upload_bytes(**b, dst.offset, static_cast<const uint8_t*>(src), bytes);
  });
}

Status VulkanBackend::download_bytes(const VulkanBuffer& src, size_t offset, uint8_t* dst, size_t bytes) {
  PAGODA_TRY(seq_->submit_and_wait());
  if (src.mapped()) {
    std::memcpy(dst, src.mapped() + offset, bytes);
    return {};
  }
  auto staging = create_buffer(dev_, std::min(bytes, kStagingLimit), MemoryKind::Staging);
  if (!staging) return staging.take_error();
  for (size_t done = 0; done < bytes;) {
    const size_t chunk = std::min(bytes - done, kStagingLimit);
    PAGODA_TRY(seq_->copy(src, offset + done, **staging, 0, chunk));
    PAGODA_TRY(seq_->submit_and_wait());
    std::memcpy(dst + done, (*staging)->mapped(), chunk);
    done += chunk;
  }
  return {};
}

void VulkanBackend::download(const Tensor& src, void* dst, size_t bytes) {
  guarded("download", [&]() -> Status {
    auto b = buffer_of(src);
    if (!b) return b.take_error();
    if (src.offset + bytes > (*b)->size())
      return make_error(std::to_string(bytes) + " bytes at offset " + std::to_string(src.offset) +
                        " overrun a buffer of " + std::to_string((*b)->size()) + " bytes");
    return download_bytes(**b, src.offset, static_cast<uint8_t*>(dst), bytes);
  });
}

Status VulkanBackend::sync() {
  guarded("sync", [&] { return seq_->submit_and_wait(); });
  if (error_) return *error_;
  return {};
}

// The reference computes theta^(-2i/head_dim) with powf; computing the table on the host with
// the same expression keeps the rotation angles bit-identical to it.
Result<const VulkanBuffer*> VulkanBackend::rope_freq_table(float theta, int32_t head_dim) {
  uint32_t theta_bits;
  std::memcpy(&theta_bits, &theta, 4);
  const auto key = std::make_pair(theta_bits, head_dim);
  if (auto it = rope_freqs_.find(key); it != rope_freqs_.end()) return static_cast<const VulkanBuffer*>(it->second.get());
  std::vector<float> f(size_t(head_dim / 2));
  for (int32_t i = 0; i < head_dim; i += 2) f[size_t(i / 2)] = std::pow(theta, -float(i) / float(head_dim));
  auto buf = create_buffer(dev_, f.size() * 4, MemoryKind::Device);
  if (!buf) return buf.take_error();
  PAGODA_TRY(upload_bytes(**buf, 0, reinterpret_cast<const uint8_t*>(f.data()), f.size() * 4));
  const VulkanBuffer* raw = buf->get();
  rope_freqs_.emplace(key, std::move(*buf));
  return raw;
}

std::vector<std::pair<std::string, double>> VulkanBackend::timings() const {
  std::vector<std::pair<std::string, double>> v(seq_->timings().begin(), seq_->timings().end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return v;
}

}  // namespace vk

Result<BackendPtr> create_vulkan_backend(int device) {
  auto be = vk::VulkanBackend::create(device);
  if (!be) return be.take_error();
  return BackendPtr(std::move(*be));
}

void vulkan_set_profiling(Backend& backend, bool on) {
  if (auto* vb = dynamic_cast<vk::VulkanBackend*>(&backend)) vb->set_profiling(on);
}

bool vulkan_validation_active(const Backend& backend) {
  const auto* vb = dynamic_cast<const vk::VulkanBackend*>(&backend);
  return vb && vb->validation_active();
}

std::vector<std::pair<std::string, double>> vulkan_op_timings(const Backend& backend) {
  if (const auto* vb = dynamic_cast<const vk::VulkanBackend*>(&backend)) return vb->timings();
  return {};
}

}  // namespace pagoda
