// The cpu backend's threads: a persistent pool that runs `tasks` numbered
// tasks, taken one at a time from a shared counter by the pool's threads and
// by the calling thread, which works too.
//
// Why a counter and not a static split: on shared VMs one core is often
// slower than the other for a while (measured on the 2-core dev VM for the
// NumPy engine, which works the same way); taking tasks as they come keeps
// both busy to the end.  Results never depend on which thread ran a task:
// reductions write per-task partials and add them in task order.
//
// Idle workers spin for a short while before they sleep, so that
// back-to-back calls (a training step, a benchmark loop) do not pay a
// futex wake-up each (10-50 us on a VM), and sleep after that so an idle
// process uses no CPU.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FASTACT_PAUSE() _mm_pause()
#else
#define FASTACT_PAUSE() std::this_thread::yield()
#endif

namespace fastact_host {

class ThreadPool {
 public:
  static ThreadPool& instance() {
    static ThreadPool* pool = new ThreadPool();  // never destroyed: workers may outlive static destruction
    return *pool;
  }

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Sets the number of threads (the caller included); 0 means one per core.
  void set_threads(int count) {
    if (count <= 0) count = static_cast<int>(std::thread::hardware_concurrency());
    if (count < 1) count = 1;
    stop_workers();
    for (int i = 1; i < count; ++i) workers_.emplace_back([this] { work_loop(); });
  }

  // body(task) for task = 0 .. tasks - 1; returns when every task is done.
  template <typename Body>
  void run(std::int64_t tasks, const Body& body) {
    if (tasks <= 0) return;
    if (tasks == 1 || workers_.empty()) {
      for (std::int64_t t = 0; t < tasks; ++t) body(t);
      return;
    }
    std::lock_guard<std::mutex> one_job(job_mutex_);  // calls from several Python threads take turns
    const std::function<void(std::int64_t)> job = [&body](std::int64_t t) { body(t); };
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      tasks_ = tasks;
      next_.store(0, std::memory_order_relaxed);
      open_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    take_tasks(job);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      open_ = false;  // a worker waking from now on finds nothing to do
      done_.wait(lock, [this] { return running_ == 0; });
      job_ = nullptr;
    }
  }

 private:
  ThreadPool() {
    const char* env = std::getenv("FASTACT_NUM_THREADS");
    set_threads(env ? std::atoi(env) : 0);
  }

  void take_tasks(const std::function<void(std::int64_t)>& job) {
    for (;;) {
      const std::int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= tasks_) return;
      job(t);
    }
  }

  void work_loop() {
    std::uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      if (!wait_for_job(seen)) return;
      const std::function<void(std::int64_t)>* job;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        seen = generation_.load(std::memory_order_acquire);
        if (!open_) continue;  // the caller finished the whole job alone
        ++running_;
        job = job_;
      }
      take_tasks(*job);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --running_;
      }
      done_.notify_all();
    }
  }

  // Waits until a new generation starts (true) or the pool stops (false).
  bool wait_for_job(std::uint64_t seen) {
    using Clock = std::chrono::steady_clock;
    const auto spin_until = Clock::now() + std::chrono::microseconds(kSpinMicroseconds);
    for (int i = 0;; ++i) {
      if (stopping_) return false;
      if (generation_.load(std::memory_order_acquire) != seen) return true;
      FASTACT_PAUSE();
      if ((i & 63) == 63 && Clock::now() > spin_until) break;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    // stopping_ too: a worker that starts after stop_workers() bumped the
    // generation has already counted that bump as seen.
    wake_.wait(lock, [&] { return stopping_ || generation_.load(std::memory_order_acquire) != seen; });
    return !stopping_;
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    stopping_ = false;
  }

  // Long enough to bridge the Python between two calls of a loop, short
  // enough not to hold a core from other work for long.
  static constexpr int kSpinMicroseconds = 50;

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::int64_t> next_{0};
  const std::function<void(std::int64_t)>* job_ = nullptr;
  std::int64_t tasks_ = 0;
  int running_ = 0;
  bool open_ = false;
  std::atomic<bool> stopping_{false};
};

}  // namespace fastact_host
