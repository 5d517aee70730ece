// Backend registry: maps a name to a constructor; GPU backends are compiled in only when enabled.
#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#ifdef PAGODA_HAVE_VULKAN
#include "backends/vulkan/vulkan_backend.h"
#endif
#ifdef PAGODA_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace pagoda {

std::vector<std::string> available_backends() {
  std::vector<std::string> v = {"cpu", "cpu-ref"};
#ifdef PAGODA_HAVE_VULKAN
  v.push_back("vulkan");
#endif
#ifdef PAGODA_HAVE_CUDA
  v.push_back("cuda");
#endif
  return v;
}

Result<BackendPtr> create_backend(const std::string& name, int device, std::string* note) {
  if (name == "cpu") return BackendPtr(std::make_unique<CpuBackend>(CpuOptions{}));
  if (name == "cpu-ref") return BackendPtr(std::make_unique<CpuBackend>(CpuOptions{.reference = true}));
  if (name == "vulkan") {
#ifdef PAGODA_HAVE_VULKAN
    return create_vulkan_backend(device);
#else
    return make_error("this build has no Vulkan backend (configure with -DPAGODA_VULKAN=ON)");
#endif
  }
  if (name == "cuda") {
#ifdef PAGODA_HAVE_CUDA
    return create_cuda_backend(device);
#else
    return make_error("this build has no CUDA backend (configure with -DPAGODA_CUDA=ON)");
#endif
  }
  if (name == "auto") {
    std::string why;
    for (const char* gpu : {"cuda", "vulkan"}) {
      auto b = create_backend(gpu, device, nullptr);
      // A software device (lavapipe) is slower than the native CPU path: auto only takes real GPUs.
      if (b && (*b)->info().is_gpu) return b;
      why += std::string(gpu) + ": " + (b ? "only a software device (" + (*b)->info().device + ")" : b.error()) + "; ";
    }
    if (note) *note = "no GPU backend available (" + why + "), falling back to cpu";
    return create_backend("cpu", device, nullptr);
  }
  return make_error("unknown backend '" + name + "' (choose cpu, cpu-ref, vulkan, cuda or auto)");
}

}  // namespace pagoda
