#include "backends/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cmath>

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

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : slots_(size_t(std::max(1, n_threads))),
      share_(size_t(std::max(1, n_threads)), 1.0 / std::max(1, n_threads)),
      done_by_(share_.size()),
      elapsed_by_(share_.size()) {
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

std::vector<double> ThreadPool::shares() const { return share_; }

void ThreadPool::worker_loop(int self) {
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
        cv_.wait(lk, [&] { return stop_.load() || (claim_.load() >> kGenShift) != seen; });
        sleepers_.fetch_sub(1);
        spin_start = std::chrono::steady_clock::now();
      }
      g = generation();
    }
    if (stop_.load()) return;
    seen = g;
    run_chunks(self);
  }
}

void ThreadPool::run_chunks(int self) {
  Slot& slot = slots_[size_t(self)];
  uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t left = uint32_t(c);
    if (left == 0) return;
    const bool balanced = (c >> 32) & 1;
    // The take is read before the claim, so it may be a later job's; that only sizes the claim.
    const uint32_t take = balanced ? std::clamp(slot.take.load(std::memory_order_relaxed), 1u, left) : 1u;
    if (!claim_.compare_exchange_weak(c, c - take, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    // Claimed: the job is not finished, so its fields are the ones published with `c`.
    const int64_t n = job_n_;
    if (balanced) {
      const int64_t b = n - int64_t(left);
      (*job_)(b, b + take);
      const uint64_t job = c >> kGenShift;
      if (slot.job != job) slot.job = job, slot.done = 0;
      slot.done += take;
      slot.end_ns = now_ns();
    } else {
      const int64_t k = int64_t(job_claims_ - left), b = n * k / job_claims_, e = n * (k + 1) / job_claims_;
      if (b < e) (*job_)(b, e);
    }
    done_.fetch_add(take, std::memory_order_acq_rel);
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::publish(int64_t n, const std::function<void(int64_t, int64_t)>& fn, bool balanced, uint32_t claims) {
  job_ = &fn;
  job_n_ = n;
  job_claims_ = claims;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t g = (claim_.load(std::memory_order_relaxed) >> kGenShift) + 1;
  // seq_cst: publishes the job, wakes spinners and orders the sleepers_ read below
  claim_.store((g << kGenShift) | (uint64_t(balanced) << 32) | claims);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
}

void ThreadPool::wait_done(int64_t want) {
  for (int i = 0; done_.load(std::memory_order_acquire) < want; ++i) {
    if (i < 4096) PAGODA_CPU_RELAX();
    else std::this_thread::yield();  // a worker claimed a part and was preempted: give it the CPU
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (workers_.empty() || n <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  publish(n, fn, false, uint32_t(size()));
  run_chunks(0);  // the caller's share, and any chunk no worker has claimed yet
  wait_done(size());
}

void ThreadPool::parallel_for_balanced(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (workers_.empty() || n <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  if (n > int64_t(UINT32_MAX)) return parallel_for(n, fn);  // any cut will do
  const int p = size();
  for (int i = 0; i < p; ++i)
    slots_[size_t(i)].take.store(uint32_t(std::ceil(double(n) * share_[size_t(i)])), std::memory_order_relaxed);
  const int64_t start = now_ns();
  publish(n, fn, true, uint32_t(n));
  const uint64_t job = claim_.load(std::memory_order_relaxed) >> kGenShift;
  run_chunks(0);
  wait_done(n);
  // Every thread's rate over this job, from the moment it was published to when the thread
  // finished (so a worker that woke late counts as slower, and the split evens the finish times).
  int64_t last = 0;
  for (int i = 0; i < p; ++i) {
    const Slot& s = slots_[size_t(i)];
    if (s.job != job || s.done == 0) return;  // a thread sat this one out (preempted): no measure
    done_by_[size_t(i)] = s.done;
    elapsed_by_[size_t(i)] = s.end_ns - start;
    last = std::max(last, s.end_ns - start);
  }
  ++stats_.jobs;
  stats_.thread_ns += double(last) * p;
  for (int64_t e : elapsed_by_) stats_.idle_ns += double(last - e);
  follow_rates(share_, done_by_, elapsed_by_);
}

// A decode step is ~100 balanced jobs, so with kFollow = 1/16 a vCPU that turns slow is followed
// within a step, and one job's timing noise moves the split by a fraction of a percent. A thread
// that is slow for a while keeps a quarter of an even share, so it keeps being measured.
void ThreadPool::follow_rates(std::span<double> shares, std::span<const int64_t> done, std::span<const int64_t> elapsed_ns) {
  const size_t p = shares.size();
  double sum = 0;
  for (size_t i = 0; i < p; ++i) sum += double(done[i]) / double(std::max<int64_t>(1, elapsed_ns[i]));
  if (!(sum > 0)) return;
  double total = 0;
  for (size_t i = 0; i < p; ++i) {
    const double rate = double(done[i]) / double(std::max<int64_t>(1, elapsed_ns[i]));
    shares[i] = std::clamp(shares[i] + kFollow * (rate / sum - shares[i]), kMinShare / double(p), kMaxShare / double(p));
    total += shares[i];
  }
  for (double& w : shares) w /= total;
}

void ThreadPool::set_shares(std::span<const double> shares) {
  const size_t p = share_.size();
  double total = 0;
  for (size_t i = 0; i < p; ++i) {
    share_[i] = std::clamp(i < shares.size() ? shares[i] : 0.0, kMinShare / double(p), kMaxShare / double(p));
    total += share_[i];
  }
  for (double& w : share_) w /= total;
}

}  // namespace pagoda
