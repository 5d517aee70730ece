// Device memory for the CUDA backend: buffers from plain cudaMalloc (no managed memory), a
// grow-only scratch allocation for kernels that need temporary space, and the pinned staging
// ring that makes upload() asynchronous yet safe to return from immediately.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "backends/backend.h"

namespace pagoda::cuda {

class CudaBuffer final : public DeviceBuffer {
 public:
  CudaBuffer(void* ptr, size_t size, int device) : ptr_(ptr), size_(size), device_(device) {}
  ~CudaBuffer() override;
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  size_t size() const override { return size_; }
  uint8_t* data() const { return static_cast<uint8_t*>(ptr_); }

 private:
  void* ptr_;
  size_t size_;
  int device_;
};

// cudaMalloc on `device` (made current by the caller); an out-of-memory error names the request
// and what the device has free.
Result<BufferPtr> alloc_buffer(size_t bytes, int device);

// The device address of a tensor's first byte; null for a tensor without a buffer. The buffer must
// be a CudaBuffer (checked by the caller with is_cuda_buffer).
uint8_t* device_ptr(const Tensor& t);
bool is_cuda_buffer(const DeviceBuffer* b);

// A device allocation that only grows; growing waits for `stream` so in-flight users finish first.
class DeviceScratch {
 public:
  DeviceScratch(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  Result<void*> ensure(size_t bytes);

 private:
  int device_;
  cudaStream_t stream_;
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// Host->device copies through a ring of pinned memory: the source is copied into the ring, the DMA
// is queued on the stream (so it is ordered after earlier ops), and an event marks when that part
// of the ring may be reused. Large uploads stream through the ring in chunks.
class PinnedStaging {
 public:
  static Result<std::unique_ptr<PinnedStaging>> create(size_t capacity);
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  Status copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream);

 private:
  struct InFlight {
    size_t begin, end;
    cudaEvent_t done;
  };
  explicit PinnedStaging(uint8_t* base, size_t capacity) : base_(base), capacity_(capacity) {}
  // Reserves `bytes` of the ring, waiting for earlier copies that still read that range.
  Result<size_t> reserve(size_t bytes);
  Result<cudaEvent_t> take_event();

  uint8_t* base_;
  size_t capacity_;
  size_t head_ = 0;
  std::deque<InFlight> in_flight_;  // oldest first; completes in order (one stream)
  std::vector<cudaEvent_t> spare_events_;
};

}  // namespace pagoda::cuda
