// A fixed pool of worker threads running index-range jobs; the caller's thread takes part too.
// parallel_for blocks until every index is done, so kernels stay ordered like a device stream.
//
// A decode step is dozens of small kernels a few microseconds apart, so waking sleeping threads
// through the kernel for each one costs more than the kernels (on a 2-vCPU VM a condition-variable
// handoff measured ~60 us: 485 tok/s with 2 threads against 16,000 with 1 on stories260K). Workers
// therefore spin on an atomic job counter for a short while after each job and only then sleep;
// the caller spins for completion. An idle pool sleeps, so a quiet server costs no CPU.
//
// parallel_for cuts a job into one chunk per thread, always at the same boundaries (so results
// never depend on which thread ran what), but chunks are claimed, not assigned: when a worker is
// descheduled (another process wants the core) the caller runs its chunk instead of waiting a
// whole time slice for it. With fixed owners, one busy neighbour process made every kernel of a
// step wait for the preempted worker (2-thread decode fell to a quarter of the 1-thread rate).
//
// parallel_for_balanced is for jobs whose result for an index does not depend on the range it
// comes in (a matvec's rows): there each thread takes a share sized by how fast it finished its
// recent shares, so a thread on a vCPU the host runs slower (measured 1.2-2x slower for seconds at
// a time on a 2-vCPU VM, docs/perf.md) gets less, and neither waits for the other. A share is one
// contiguous range, so the kernels' prefetch streams run unbroken.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

namespace pagoda {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  // Calls fn(begin, end) over [0, n) split into contiguous chunks, one per thread, at fixed
  // boundaries (n * i / size()).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
  // Calls fn(begin, end) over [0, n) in contiguous ranges sized by each thread's measured speed;
  // the cut changes from job to job, so fn(b, e)'s result for index i must not depend on b or e.
  void parallel_for_balanced(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
  // Each thread's current share of a balanced job (the caller's first), summing to 1.
  std::vector<double> shares() const;
  // Sets them (normalized; clamped like measured ones): to pin a split for a benchmark or a test.
  void set_shares(std::span<const double> shares);
  // The shares after a balanced job in which thread i ran done[i] indices and finished
  // elapsed_ns[i] after the job was published: each moves kFollow of the way to the thread's
  // fraction of the summed rates (done / elapsed), within [kMinShare, kMaxShare] of an even share.
  static void follow_rates(std::span<double> shares, std::span<const int64_t> done, std::span<const int64_t> elapsed_ns);
  // Balanced jobs so far in which every thread took part, and their cost in thread time:
  // thread_ns sums (threads x time from publication to the last thread's finish), idle_ns the time
  // each thread then waited for the last one. Caller-only, like shares().
  struct BalanceStats {
    int64_t jobs = 0;
    double thread_ns = 0, idle_ns = 0;
  };
  BalanceStats balance_stats() const { return stats_; }
  static constexpr double kFollow = 1.0 / 16;
  static constexpr double kMinShare = 0.25, kMaxShare = 1.75;

 private:
  void worker_loop(int self);
  void publish(int64_t n, const std::function<void(int64_t, int64_t)>& fn, bool balanced, uint32_t claims);
  void wait_done(int64_t want);
  // Claims and runs parts of the current job until none is left unclaimed.
  void run_chunks(int self);

  std::vector<std::thread> workers_;
  // The job: written by the caller before `claim_` publishes it (release), read by a thread only
  // after it claimed a part of it (acquire), and left unchanged until every part is done, so a
  // thread that claimed a part always runs that job's function.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  uint32_t job_claims_ = 0;  // parallel_for: the chunk count; balanced: job_n_
  // generation (high 31 bits, bumped per job: what sleeping and spinning workers watch) |
  // balanced (1 bit) | what is left to claim (32 bits: chunks, or indices of a balanced job). A
  // claim is one compare-and-swap, so a late thread cannot claim a part of a finished job.
  alignas(64) std::atomic<uint64_t> claim_{0};
  static constexpr int kGenShift = 33;
  uint64_t generation() const { return claim_.load(std::memory_order_acquire) >> kGenShift; }
  alignas(64) std::atomic<int64_t> done_{0};  // chunks (or balanced indices) of the current job finished
  alignas(64) std::atomic<int> sleepers_{0};  // workers blocked on cv_ (the caller notifies only if any)
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;

  // Per thread (0 = the caller): its claim size in the current balanced job (read before a claim,
  // so atomic), and what it did in that job (written by the thread before it reports the work
  // done, read by the caller after the job is done).
  struct alignas(64) Slot {
    std::atomic<uint32_t> take{0};
    uint64_t job = 0;      // the generation `done`/`end_ns` belong to
    int64_t done = 0;      // indices it ran
    int64_t end_ns = 0;    // when it finished its last claim (steady clock)
  };
  std::vector<Slot> slots_;
  std::vector<double> share_;  // caller-only: each thread's share of a balanced job
  std::vector<int64_t> done_by_, elapsed_by_;  // caller-only scratch for follow_rates
  BalanceStats stats_;
};

}  // namespace pagoda
