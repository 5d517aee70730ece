#include "backends/cpu/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PAGODA_CPU_RELAX() _mm_pause()
#else
#define PAGODA_CPU_RELAX() std::this_thread::yield()
#endif

namespace pagoda {
namespace {

// How long a worker keeps polling for the next job before it sleeps: longer than the host work
// between two kernels of a step, far shorter than anything a person would notice as idle load.
constexpr auto kSpinFor = std::chrono::microseconds(200);

void run_chunk(const std::function<void(int64_t, int64_t)>& fn, int64_t n, int index, int total) {
  const int64_t b = n * index / total, e = n * (index + 1) / total;
  if (b < e) fn(b, e);
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    auto spin_start = std::chrono::steady_clock::now();
    for (int i = 0; g == seen && !stop_.load(std::memory_order_relaxed); ++i) {
      PAGODA_CPU_RELAX();
      if ((i & 63) == 63 && std::chrono::steady_clock::now() - spin_start > kSpinFor) {
        // Sleep. sleepers_ is raised before the predicate reads generation_, and the caller bumps
        // generation_ before it reads sleepers_ (both seq_cst), so a wake-up cannot be lost.
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
        sleepers_.fetch_sub(1);
        spin_start = std::chrono::steady_clock::now();
      }
      g = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load()) return;
    seen = g;
    run_chunk(*job_, job_n_, index, size());
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (workers_.empty() || n <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job (release) and orders the read below
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
  run_chunk(fn, n, 0, size());
  for (int i = 0; pending_.load(std::memory_order_acquire) > 0; ++i) {
    if (i < 4096) PAGODA_CPU_RELAX();
    else std::this_thread::yield();  // a worker is being woken or was preempted: give it the CPU
  }
}

}  // namespace pagoda
