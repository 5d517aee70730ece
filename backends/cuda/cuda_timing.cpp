#include "backends/cuda/cuda_timing.h"

#include <cuda_runtime.h>

namespace pagoda::cuda {
namespace {
// Beyond this many unfolded ops the GPU is far behind; stop timing rather than grow without bound.
constexpr size_t kMaxPending = 1 << 16;
}  // namespace

OpTimer::~OpTimer() {
  for (auto& p : pending_) {
    (void)cudaEventDestroy(p.start);
    (void)cudaEventDestroy(p.stop);
  }
  for (auto ev : spare_) (void)cudaEventDestroy(ev);
  (void)cudaGetLastError();
}

cudaEvent_t OpTimer::take_event() {
  if (!spare_.empty()) {
    cudaEvent_t ev = spare_.back();
    spare_.pop_back();
    return ev;
  }
  cudaEvent_t ev = nullptr;
  if (cudaEventCreate(&ev) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return ev;
}

void OpTimer::begin(Op op) {
  open_ = false;
  fold(false);
  if (pending_.size() >= kMaxPending) return;
  cudaEvent_t start = take_event(), stop = take_event();
  if (!start || !stop || cudaEventRecord(start, stream_) != cudaSuccess) {
    (void)cudaGetLastError();
    if (start) spare_.push_back(start);
    if (stop) spare_.push_back(stop);
    return;
  }
  pending_.push_back(Pending{op, start, stop});
  open_ = true;
}

void OpTimer::end() {
  if (!open_) return;
  open_ = false;
  if (cudaEventRecord(pending_.back().stop, stream_) != cudaSuccess) {
    // Without a stop event the pair can never be read: drop it.
    (void)cudaGetLastError();
    spare_.push_back(pending_.back().start);
    spare_.push_back(pending_.back().stop);
    pending_.pop_back();
  }
}

void OpTimer::fold(bool wait) {
  while (!pending_.empty()) {
    Pending& p = pending_.front();
    if (open_ && pending_.size() == 1) break;  // its stop event is not recorded yet
    if (wait) {
      (void)cudaEventSynchronize(p.stop);
    } else if (cudaEventQuery(p.stop) != cudaSuccess) {
      (void)cudaGetLastError();
      break;
    }
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) {
      CudaOpTime& t = totals_[size_t(p.op)];
      t.op = p.op;
      t.count += 1;
      t.ms += ms;
    }
    (void)cudaGetLastError();
    spare_.push_back(p.start);
    spare_.push_back(p.stop);
    pending_.pop_front();
  }
}

std::vector<CudaOpTime> OpTimer::take() {
  fold(true);
  std::vector<CudaOpTime> out;
  for (size_t i = 0; i < totals_.size(); ++i) {
    if (totals_[i].count == 0) continue;
    out.push_back(totals_[i]);
    totals_[i] = CudaOpTime{};
  }
  return out;
}

}  // namespace pagoda::cuda
