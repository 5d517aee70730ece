#include "backends/cuda/cuda_device.h"

#include <cuda_runtime.h>

#include <tuple>

namespace pagoda::cuda {

std::string error_text(cudaError_t e) {
  return std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
}

Status check(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return {};
  return make_error(std::string("cuda: ") + call + " failed: " + error_text(e));
}

bool error_is_sticky() {
  // The first call clears an ordinary error; a sticky one survives it.
  (void)cudaGetLastError();
  return cudaGetLastError() != cudaSuccess;
}

namespace {

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

Result<cudaDeviceProp> properties(int index) {
  cudaDeviceProp prop{};
  const cudaError_t e = cudaGetDeviceProperties(&prop, index);
  if (e != cudaSuccess)
    return make_error("cuda: cudaGetDeviceProperties(" + std::to_string(index) + ") failed: " + error_text(e));
  return prop;
}

}  // namespace

Result<std::unique_ptr<Device>> Device::open(int index) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // leave no error behind for later calls to trip over
    return make_error("cuda: no CUDA device (cudaGetDeviceCount: " + error_text(e) + ")");
  }
  if (count <= 0) return make_error("cuda: no CUDA device (cudaGetDeviceCount: 0 devices)");
  if (index >= count)
    return make_error("cuda: device " + std::to_string(index) + " requested but only " + std::to_string(count) +
                      " present");
  if (index < 0) {
    std::tuple<int, int, size_t> best{-1, -1, 0};
    for (int i = 0; i < count; ++i) {
      auto p = properties(i);
      if (!p) return p.take_error();
      const std::tuple<int, int, size_t> score{p->major * 10 + p->minor, p->multiProcessorCount, p->totalGlobalMem};
      if (score > best) {
        best = score;
        index = i;
      }
    }
  }
  auto prop = properties(index);
  if (!prop) return prop.take_error();

  std::unique_ptr<Device> dev(new Device());
  DeviceProps& d = dev->props_;
  d.index = index;
  d.name = prop->name;
  d.cc_major = prop->major;
  d.cc_minor = prop->minor;
  d.total_memory = prop->totalGlobalMem;
  d.multiprocessors = prop->multiProcessorCount;
  d.warp_size = prop->warpSize;
  d.smem_per_block_optin = prop->sharedMemPerBlockOptin;
  PAGODA_TRY(check(cudaDriverGetVersion(&d.driver_version), "cudaDriverGetVersion"));
  PAGODA_TRY(check(cudaRuntimeGetVersion(&d.runtime_version), "cudaRuntimeGetVersion"));
  PAGODA_TRY(dev->activate());
  // Non-blocking: the legacy default stream (used by other libraries in the process) never
  // serializes against our work.
  PAGODA_TRY(check(cudaStreamCreateWithFlags(&dev->stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"));
  return dev;
}

Device::~Device() {
  if (!stream_) return;
  // Errors here are not actionable (the context may already be gone at process exit).
  if (cudaSetDevice(props_.index) == cudaSuccess) {
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
  }
  (void)cudaGetLastError();
}

Status Device::activate() const {
  const cudaError_t e = cudaSetDevice(props_.index);
  if (e == cudaSuccess) return {};
  return make_error("cuda: cudaSetDevice(" + std::to_string(props_.index) + ") failed: " + error_text(e));
}

std::string describe_versions(const DeviceProps& d) {
  return "driver " + version_text(d.driver_version) + ", runtime " + version_text(d.runtime_version);
}

}  // namespace pagoda::cuda
