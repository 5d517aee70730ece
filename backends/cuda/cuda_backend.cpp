// CudaBackend: device setup, memory, transfers, sync and error plumbing. The ops are in cuda_ops.cpp.
#include "backends/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <cstring>
#include <string>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_memory.h"
#include "backends/cuda/cuda_timing.h"

#ifndef PAGODA_CUDA_ARCHS
#define PAGODA_CUDA_ARCHS "unknown"
#endif

namespace pagoda {
namespace {

// Pinned staging for uploads: large enough to keep several weight chunks in flight, small enough
// to be a negligible amount of locked host memory.
constexpr size_t kStagingBytes = size_t(32) << 20;

}  // namespace

Result<BackendPtr> create_cuda_backend(int device) {
  auto dev = cuda::Device::open(device);
  if (!dev) return dev.take_error();
  const cuda::DeviceProps& props = (*dev)->props();
  const cudaError_t probe = cuda::probe_kernels();
  if (probe != cudaSuccess) {
    (void)cudaGetLastError();
    return make_error("cuda: device " + std::to_string(props.index) + " (" + props.name + ", sm_" +
                      std::to_string(props.cc_major) + std::to_string(props.cc_minor) +
                      ") cannot run this build's kernels (built for CUDA architectures " PAGODA_CUDA_ARCHS "): " +
                      cuda::error_text(probe));
  }
  auto staging = cuda::PinnedStaging::create(kStagingBytes);
  if (!staging) return staging.take_error();
  return BackendPtr(new CudaBackend(std::move(*dev), std::move(*staging)));
}

CudaBackend::CudaBackend(std::unique_ptr<cuda::Device> dev, std::unique_ptr<cuda::PinnedStaging> staging)
    : dev_(std::move(dev)), staging_(std::move(staging)) {
  scratch_ = std::make_unique<cuda::DeviceScratch>(dev_->props().index, dev_->stream());
  timer_ = std::make_unique<cuda::OpTimer>(dev_->stream());
}

CudaBackend::~CudaBackend() {
  // Finish queued work before the staging ring, scratch and stream it may use go away.
  if (dev_->activate().ok()) (void)cudaStreamSynchronize(dev_->stream());
  (void)cudaGetLastError();
  timer_.reset();
  scratch_.reset();
  staging_.reset();
  dev_.reset();
}

BackendInfo CudaBackend::info() const {
  const cuda::DeviceProps& p = dev_->props();
  BackendInfo i;
  i.name = "cuda";
  i.device = p.name;
  i.vendor = "NVIDIA";
  i.driver = cuda::describe_versions(p) + ", sm_" + std::to_string(p.cc_major) + std::to_string(p.cc_minor) + ", " +
             std::to_string(p.multiprocessors) + " SMs";
  i.memory_bytes = p.total_memory;
  i.subgroup_size = uint32_t(p.warp_size);
  i.is_gpu = true;
  return i;
}

bool CudaBackend::supports(Op op, DType dtype) const {
  switch (op) {
    case Op::Matmul:
    case Op::Embed:  // every weight type: the dense floats and all ggml blocks (cuda_quant_blocks.h)
      return dtype != DType::I32 && size_t(dtype) < size_t(DType::kCount);
    case Op::KvStore:
    case Op::PagedAttention:
    case Op::AttentionWindow: return dtype == DType::F32 || dtype == DType::F16;
    case Op::Copy: return true;
    default: return dtype == DType::F32;
  }
}

void CudaBackend::fail(std::string message) {
  if (pending_error_.empty()) pending_error_ = std::move(message);
}

void CudaBackend::mark_lost(std::string message) {
  if (lost_.empty()) lost_ = std::move(message);
}

bool CudaBackend::begin_op(Op op) {
  if (!lost_.empty()) return false;
  Status s = dev_->activate();
  if (!s) {
    fail(std::string(op_name(op)) + ": " + s.error());
    return false;
  }
  if (timing_) timer_->begin(op);
  return true;
}

void CudaBackend::end_op(Op op, int cuda_error) {
  if (timing_) timer_->end();
  const auto e = static_cast<cudaError_t>(cuda_error);
  if (e == cudaSuccess) return;
  const std::string msg = std::string("cuda: ") + op_name(op) + ": kernel launch failed: " + cuda::error_text(e);
  if (cuda::error_is_sticky()) mark_lost(msg);
  else fail(msg);
}

Result<BufferPtr> CudaBackend::alloc(size_t bytes) {
  if (!lost_.empty()) return make_error("cuda: alloc: device unusable: " + lost_);
  PAGODA_TRY(dev_->activate());
  return cuda::alloc_buffer(bytes, dev_->props().index);
}

void CudaBackend::upload(const Tensor& dst, const void* src, size_t bytes) {
  if (bytes == 0 || !lost_.empty()) return;
  if (!cuda::is_cuda_buffer(dst.buf) || dst.offset > dst.buf->size() || bytes > dst.buf->size() - dst.offset) {
    fail("cuda: upload: destination is not a CUDA buffer or " + std::to_string(bytes) + " bytes at offset " +
         std::to_string(dst.offset) + " overrun it");
    return;
  }
  Status s = dev_->activate();
  if (s) s = staging_->copy_to_device(cuda::device_ptr(dst), src, bytes, dev_->stream());
  if (!s) {
    if (cuda::error_is_sticky()) mark_lost(s.error());
    else fail(s.error());
  }
}

void CudaBackend::download(const Tensor& src, void* dst, size_t bytes) {
  if (bytes == 0) return;
  // A failed download leaves zeros rather than stale host memory; sync() reports why.
  auto give_up = [&](const std::string& why, bool lost) {
    std::memset(dst, 0, bytes);
    if (lost) mark_lost(why);
    else fail(why);
  };
  if (!lost_.empty()) return give_up(lost_, true);
  if (!cuda::is_cuda_buffer(src.buf) || src.offset > src.buf->size() || bytes > src.buf->size() - src.offset)
    return give_up("cuda: download: source is not a CUDA buffer or " + std::to_string(bytes) +
                       " bytes at offset " + std::to_string(src.offset) + " overrun it",
                   false);
  Status s = dev_->activate();
  // Queued on the stream, the copy runs after every earlier op; the sync makes dst valid on return.
  if (s) s = cuda::check(cudaMemcpyAsync(dst, cuda::device_ptr(src), bytes, cudaMemcpyDeviceToHost, dev_->stream()),
                         "cudaMemcpyAsync (download)");
  if (s) s = cuda::check(cudaStreamSynchronize(dev_->stream()), "cudaStreamSynchronize (download)");
  if (!s) give_up(s.error(), cuda::error_is_sticky());
}

Status CudaBackend::sync() {
  if (lost_.empty()) {
    Status s = dev_->activate();
    if (s) s = cuda::check(cudaStreamSynchronize(dev_->stream()), "cudaStreamSynchronize");
    if (!s) {
      if (cuda::error_is_sticky()) mark_lost(s.error());
      else fail(s.error());
    }
  }
  if (!lost_.empty())
    return make_error(lost_ + " (the CUDA context is unusable after this error; every later op is skipped)");
  if (!pending_error_.empty()) {
    std::string e = std::move(pending_error_);
    pending_error_.clear();
    return make_error(std::move(e));
  }
  return {};
}

void CudaBackend::set_op_timing(bool on) { timing_ = on; }

std::vector<CudaOpTime> CudaBackend::take_op_times() {
  if (lost_.empty() && dev_->activate().ok()) {
    // A fault found here is kept for sync() to report, like any other.
    Status s = cuda::check(cudaStreamSynchronize(dev_->stream()), "cudaStreamSynchronize (op times)");
    if (!s) {
      if (cuda::error_is_sticky()) mark_lost(s.error());
      else fail(s.error());
    }
  }
  return timer_->take();
}

}  // namespace pagoda
