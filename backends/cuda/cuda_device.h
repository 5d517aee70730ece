// One CUDA device as the backend sees it: chosen once, its properties read once, and the single
// stream every op and copy of the backend is ordered on. Also the error-text helpers every
// CUDA call site uses, so messages always name the call that failed.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>

#include "core/util/result.h"

namespace pagoda::cuda {

// "out of memory (cudaErrorMemoryAllocation)"
std::string error_text(cudaError_t e);
// Ok, or "cuda: <call> failed: <error text>".
Status check(cudaError_t e, const char* call);
// True when the context is unusable after an error (a fault in a kernel, a lost device): such
// "sticky" errors are returned again by every later call instead of being cleared.
bool error_is_sticky();

struct DeviceProps {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  size_t total_memory = 0;
  int multiprocessors = 0;
  int warp_size = 32;
  size_t smem_per_block_optin = 48 * 1024;  // dynamic shared memory a kernel may opt into
  int driver_version = 0;                   // e.g. 13000
  int runtime_version = 0;
};

// "driver 13.0, runtime 13.0"
std::string describe_versions(const DeviceProps& d);

class Device {
 public:
  // index < 0 picks the best device (highest compute capability, then most multiprocessors).
  static Result<std::unique_ptr<Device>> open(int index);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const DeviceProps& props() const { return props_; }
  cudaStream_t stream() const { return stream_; }
  // Makes this device current on the calling thread (the runtime's current device is per thread).
  Status activate() const;

 private:
  Device() = default;
  DeviceProps props_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace pagoda::cuda
