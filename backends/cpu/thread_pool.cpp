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

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation();
    auto spin_start = std::chrono::steady_clock::now();
    for (int i = 0; g == seen && !stop_.load(std::memory_order_relaxed); ++i) {
      PAGODA_CPU_RELAX();
      if ((i & 63) == 63 && std::chrono::steady_clock::now() - spin_start > kSpinFor) {
        // Sleep. sleepers_ is raised before the predicate reads claim_, and the caller publishes
        // claim_ before it reads sleepers_ (both seq_cst), so a wake-up cannot be lost.
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return stop_.load() || (claim_.load() >> 32) != seen; });
        sleepers_.fetch_sub(1);
        spin_start = std::chrono::steady_clock::now();
      }
      g = generation();
    }
    if (stop_.load()) return;
    seen = g;
    run_chunks();
  }
}

void ThreadPool::run_chunks() {
  uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t total = (c >> 16) & 0xFFFF, next = c & 0xFFFF;
    if (next >= total) return;
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    const int64_t n = job_n_, b = n * int64_t(next) / int64_t(total), e = n * int64_t(next + 1) / int64_t(total);
    if (b < e) (*job_)(b, e);
    done_.fetch_add(1, std::memory_order_acq_rel);
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (workers_.empty() || n <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  const int total = size();
  job_ = &fn;
  job_n_ = n;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t g = (claim_.load(std::memory_order_relaxed) >> 32) + 1;
  claim_.store((g << 32) | (uint64_t(total) << 16));  // seq_cst: publishes the job, wakes spinners
                                                      // and orders the sleepers_ read below
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
  run_chunks();  // the caller's share, and any chunk no worker has claimed yet
  for (int i = 0; done_.load(std::memory_order_acquire) < total; ++i) {
    if (i < 4096) PAGODA_CPU_RELAX();
    else std::this_thread::yield();  // a worker claimed a chunk and was preempted: give it the CPU
  }
}

}  // namespace pagoda
