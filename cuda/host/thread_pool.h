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
//
// Inside PyTorch, jobs run on torch's own threads instead (use_openmp; see
// fastact/backends/cpu/threads.py): torch's OpenMP workers spin for a while
// after each of its ops, and this pool's threads then competed with them for
// the cores.  There each thread starts with its own contiguous range of the
// tasks, as torch splits its work (run_on_openmp says why).  The tasks are
// the same either way, so are the results.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <pthread.h>

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

  // The threads a job runs on now: this pool's, or on an OpenMP runtime the
  // fewer of this pool's count and the runtime's (torch.get_num_threads()).
  int threads() const {
    const int own = static_cast<int>(workers_.size()) + 1;
    if (openmp_.load(std::memory_order_acquire) == nullptr) return own;
    const int theirs = openmp_max_threads_();
    return theirs < own ? theirs : own;
  }

  // Runs later jobs on the OpenMP runtime at `path`, which must already be
  // loaded in this process (PyTorch's libgomp: its team of threads, the one
  // torch's ops run on), through libgomp's GOMP_parallel entry point (LLVM's
  // and Intel's runtimes export it too).  Returns false, changing nothing,
  // where the runtime is not loaded or lacks the entry points.
  // path == nullptr: this pool again.
  bool use_openmp(const char* path) {
    if (path == nullptr) {
      openmp_.store(nullptr, std::memory_order_release);
      return true;
    }
    void* handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);  // never loads a second runtime
    if (handle == nullptr) return false;
    const auto parallel = reinterpret_cast<OpenMpParallel>(dlsym(handle, "GOMP_parallel"));
    const auto max_threads = reinterpret_cast<OpenMpQuery>(dlsym(handle, "omp_get_max_threads"));
    const auto in_parallel = reinterpret_cast<OpenMpQuery>(dlsym(handle, "omp_in_parallel"));
    const auto thread_number = reinterpret_cast<OpenMpQuery>(dlsym(handle, "omp_get_thread_num"));
    if (parallel == nullptr || max_threads == nullptr || in_parallel == nullptr || thread_number == nullptr) {
      dlclose(handle);
      return false;
    }
    openmp_max_threads_ = max_threads;  // the handle stays open: the runtime cannot go away under us
    openmp_in_parallel_ = in_parallel;
    openmp_thread_number_ = thread_number;
    // A forked child has none of the runtime's threads, but libgomp thinks it has: its next team
    // would wait at the barrier for ever.  The child goes back to this pool, which is safe there
    // (its caller does every task when no worker answers).
    static const int registered = pthread_atfork(nullptr, nullptr, [] {
      instance().openmp_.store(nullptr, std::memory_order_relaxed);
    });
    (void)registered;
    openmp_.store(parallel, std::memory_order_release);
    return true;
  }

  bool on_openmp() const { return openmp_.load(std::memory_order_acquire) != nullptr; }

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
    if (const OpenMpParallel parallel = openmp_.load(std::memory_order_acquire); parallel != nullptr) {
      run_on_openmp(parallel, tasks, body);
      return;
    }
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
  using OpenMpParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
  using OpenMpQuery = int (*)();

  // One job on an OpenMP team.  Member i first runs the i-th of `team` contiguous ranges of
  // tasks, in order, then helps with the other ranges (each range's next task comes from its
  // own counter, so every task runs exactly once).  Contiguous ranges, as torch's own
  // at::parallel_for splits its work: the part of a tensor a thread wrote in the op before
  // (torch splits both the same way) is the part it reads next, from its own core's cache.
  // Taking over the rest of a slower member's range keeps the dynamic balance of this pool's
  // shared counter.
  static constexpr int kMaxTeam = 64;
  struct alignas(64) RangeCounter {
    std::atomic<std::int64_t> next{0};
    std::int64_t end = 0;
  };

  template <typename Body>
  struct OpenMpJob {
    const Body& body;
    int team;
    OpenMpQuery member_number;
    RangeCounter ranges[kMaxTeam];

    void take(RangeCounter& range) const {
      for (;;) {
        const std::int64_t t = range.next.fetch_add(1, std::memory_order_relaxed);
        if (t >= range.end) return;
        body(t);
      }
    }
    static void member(void* data) {
      auto& job = *static_cast<OpenMpJob*>(data);
      const int me = job.member_number() % job.team;
      for (int k = 0; k < job.team; ++k) job.take(job.ranges[(me + k) % job.team]);
    }
  };

  template <typename Body>
  void run_on_openmp(OpenMpParallel parallel, std::int64_t tasks, const Body& body) {
    const int team = static_cast<int>(std::min<std::int64_t>({tasks, threads(), kMaxTeam}));
    if (team <= 1 || openmp_in_parallel_()) {  // one task, one thread, or inside a parallel region already
      for (std::int64_t t = 0; t < tasks; ++t) body(t);
      return;
    }
    OpenMpJob<Body> job{body, team, openmp_thread_number_};
    for (int i = 0; i < team; ++i) {
      job.ranges[i].next.store(tasks * i / team, std::memory_order_relaxed);
      job.ranges[i].end = tasks * (i + 1) / team;
    }
    // Returns once the whole team is done (the region's closing barrier); the caller is member 0.
    parallel(&OpenMpJob<Body>::member, &job, static_cast<unsigned>(team), 0);
  }

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
  std::atomic<OpenMpParallel> openmp_{nullptr};
  OpenMpQuery openmp_max_threads_ = nullptr;
  OpenMpQuery openmp_in_parallel_ = nullptr;
  OpenMpQuery openmp_thread_number_ = nullptr;
};

}  // namespace fastact_host
