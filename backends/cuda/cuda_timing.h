// Optional per-op GPU timing: a pair of CUDA events around each op, folded into per-op totals once
// the events have completed. Off by default because every timed op costs two event records.
#pragma once
#include <cuda_runtime_api.h>

#include <array>
#include <deque>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/cuda_backend.h"

namespace pagoda::cuda {

class OpTimer {
 public:
  explicit OpTimer(cudaStream_t stream) : stream_(stream) {}
  ~OpTimer();
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

  void begin(Op op);
  void end();
  // Totals of every op whose events have completed (call after a stream sync to get them all),
  // then starts counting from zero.
  std::vector<CudaOpTime> take();

 private:
  struct Pending {
    Op op;
    cudaEvent_t start, stop;
  };
  cudaEvent_t take_event();
  void fold(bool wait);

  cudaStream_t stream_;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> spare_;
  std::array<CudaOpTime, size_t(Op::kCount)> totals_{};
  bool open_ = false;  // begin() recorded a start that end() has not closed
};

}  // namespace pagoda::cuda
