#include "backends/cuda/cuda_memory.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "backends/cuda/cuda_device.h"

namespace pagoda::cuda {
namespace {

std::string mib(size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Runs `fn` with `device` current, restoring the caller's device afterwards (destructors may run
// on any thread, with any device current).
template <class F>
void with_device(int device, F&& fn) {
  int prev = -1;
  const bool have_prev = cudaGetDevice(&prev) == cudaSuccess;
  if (!have_prev || prev != device) (void)cudaSetDevice(device);
  fn();
  if (have_prev && prev != device) (void)cudaSetDevice(prev);
}

}  // namespace

CudaBuffer::~CudaBuffer() {
  // cudaFree waits for work already queued on the device, so ops still reading this buffer finish
  // first. A failure here (context torn down at exit) has nobody to report to.
  with_device(device_, [&] { (void)cudaFree(ptr_); });
  (void)cudaGetLastError();
}

Result<BufferPtr> alloc_buffer(size_t bytes, int device) {
  void* p = nullptr;
  // cudaMalloc(0) returns null; keep a real allocation so every buffer has a distinct address.
  const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // an allocation failure is not sticky; clear it for later launches
    size_t free_b = 0, total_b = 0;
    std::string room;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) room = ", " + mib(free_b) + " of " + mib(total_b) + " free";
    (void)cudaGetLastError();
    return make_error("cuda: cudaMalloc(" + std::to_string(bytes) + " bytes) failed: " + error_text(e) + room);
  }
  return BufferPtr(std::make_shared<CudaBuffer>(p, bytes, device));
}

bool is_cuda_buffer(const DeviceBuffer* b) { return dynamic_cast<const CudaBuffer*>(b) != nullptr; }

uint8_t* device_ptr(const Tensor& t) {
  if (!t.buf) return nullptr;
  return static_cast<const CudaBuffer*>(t.buf)->data() + t.offset;
}

DeviceScratch::~DeviceScratch() {
  if (ptr_) with_device(device_, [&] { (void)cudaFree(ptr_); });
  (void)cudaGetLastError();
}

Result<void*> DeviceScratch::ensure(size_t bytes) {
  if (bytes <= size_) return ptr_;
  if (ptr_) {
    PAGODA_TRY(check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (scratch growth)"));
    PAGODA_TRY(check(cudaFree(ptr_), "cudaFree (scratch)"));
    ptr_ = nullptr;
    size_ = 0;
  }
  const size_t want = std::max(bytes, size_t(1) << 20);
  const cudaError_t e = cudaMalloc(&ptr_, want);
  if (e != cudaSuccess) {
    ptr_ = nullptr;
    (void)cudaGetLastError();
    return make_error("cuda: cudaMalloc(" + std::to_string(want) + " bytes of scratch) failed: " + error_text(e));
  }
  size_ = want;
  return ptr_;
}

Result<std::unique_ptr<PinnedStaging>> PinnedStaging::create(size_t capacity) {
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, capacity, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return make_error("cuda: cudaHostAlloc(" + std::to_string(capacity) + " bytes of staging) failed: " +
                      error_text(e));
  }
  return std::unique_ptr<PinnedStaging>(new PinnedStaging(static_cast<uint8_t*>(p), capacity));
}

PinnedStaging::~PinnedStaging() {
  // Copies still reading the ring must finish before it is freed.
  for (auto& f : in_flight_) {
    (void)cudaEventSynchronize(f.done);
    (void)cudaEventDestroy(f.done);
  }
  for (auto ev : spare_events_) (void)cudaEventDestroy(ev);
  (void)cudaFreeHost(base_);
  (void)cudaGetLastError();
}

Result<cudaEvent_t> PinnedStaging::take_event() {
  if (!spare_events_.empty()) {
    cudaEvent_t ev = spare_events_.back();
    spare_events_.pop_back();
    return ev;
  }
  cudaEvent_t ev = nullptr;
  PAGODA_TRY(check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreateWithFlags"));
  return ev;
}

Result<size_t> PinnedStaging::reserve(size_t bytes) {
  const size_t n = (bytes + 255) / 256 * 256;  // keep every staged copy 256-byte aligned
  // Retire finished copies first so their events are reused.
  while (!in_flight_.empty()) {
    const cudaError_t q = cudaEventQuery(in_flight_.front().done);
    if (q == cudaErrorNotReady) {
      (void)cudaGetLastError();  // "not ready" is reported through the last-error slot too
      break;
    }
    PAGODA_TRY(check(q, "cudaEventQuery (staging)"));
    spare_events_.push_back(in_flight_.front().done);
    in_flight_.pop_front();
  }
  if (head_ + n > capacity_) head_ = 0;  // wrap; the unused tail is simply skipped
  const size_t begin = head_, end = head_ + n;
  // Copies finish in queue order, so waiting for the newest overlapping one covers all older ones.
  size_t last = in_flight_.size();
  for (size_t i = 0; i < in_flight_.size(); ++i)
    if (in_flight_[i].begin < end && begin < in_flight_[i].end) last = i;
  if (last != in_flight_.size()) {
    PAGODA_TRY(check(cudaEventSynchronize(in_flight_[last].done), "cudaEventSynchronize (staging)"));
    for (size_t i = 0; i <= last; ++i) {
      spare_events_.push_back(in_flight_.front().done);
      in_flight_.pop_front();
    }
  }
  head_ = end;
  return begin;
}

Status PinnedStaging::copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  const size_t chunk_max = capacity_ / 4;  // several chunks in flight: host memcpy overlaps the DMA
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  while (bytes > 0) {
    const size_t n = std::min(bytes, chunk_max);
    auto at = reserve(n);
    if (!at) return at.take_error();
    std::memcpy(base_ + *at, s, n);
    PAGODA_TRY(check(cudaMemcpyAsync(d, base_ + *at, n, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (upload)"));
    auto ev = take_event();
    if (!ev) return ev.take_error();
    if (Status rec = check(cudaEventRecord(*ev, stream), "cudaEventRecord (staging)"); !rec) {
      spare_events_.push_back(*ev);  // not in flight: keep it for the destructor to destroy
      return rec;
    }
    in_flight_.push_back(InFlight{*at, *at + ((n + 255) / 256 * 256), *ev});
    d += n;
    s += n;
    bytes -= n;
  }
  return {};
}

}  // namespace pagoda::cuda
