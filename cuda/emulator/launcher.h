// Runs kernels compiled with cuda_shim.h: a grid, block after block, and each
// block's threads as coroutines (ucontext) on one OS thread.
//
// Why coroutines and not one std::thread per CUDA thread: the schedule is
// deterministic, so a missing __syncthreads() gives the same wrong answer on
// every run instead of now and then, and a launch costs microseconds, not
// thousands of thread creations.  The scheduler runs every thread of a block
// up to its next __syncthreads() (or its end) before any goes past it: that
// is the barrier's contract, and nothing more is promised, as on the GPU.
//
// Fast path: thread 0 runs first; if it ends without reaching a barrier the
// kernel has none (CUDA requires __syncthreads to be reached by all threads or
// none), so the other threads run as plain calls.  A thread that then reaches
// a barrier is reported as an error, as is a barrier some threads skip.
#pragma once

#include <ucontext.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace fastact_emulator {

struct Coroutine {
  ucontext_t context{};
  std::vector<char> stack;
  uint3 index;
  bool waiting = false;  // parked at __syncthreads()
  bool done = false;
};

constexpr std::size_t kStackBytes = 64 * 1024;

inline ucontext_t scheduler_context;
inline Coroutine* current = nullptr;
inline const std::function<void()>* current_body = nullptr;
inline bool barriers_forbidden = false;
inline std::string error;

inline void fail(const std::string& message) {
  if (error.empty()) error = message;
}

inline void syncthreads() {
  if (barriers_forbidden || current == nullptr) {
    fail("__syncthreads() reached by some threads of a block but not by thread 0 (divergent barrier)");
    return;
  }
  current->waiting = true;
  swapcontext(&current->context, &scheduler_context);
}

inline void coroutine_entry() {
  (*current_body)();
  current->done = true;
  swapcontext(&current->context, &scheduler_context);
}

inline void resume(Coroutine& c) {
  current = &c;
  thread_index = c.index;
  c.waiting = false;
  swapcontext(&scheduler_context, &c.context);
  current = nullptr;
}

inline void start(Coroutine& c, uint3 index) {
  c.index = index;
  c.waiting = c.done = false;
  c.stack.resize(kStackBytes);
  getcontext(&c.context);
  c.context.uc_stack.ss_sp = c.stack.data();
  c.context.uc_stack.ss_size = c.stack.size();
  c.context.uc_link = nullptr;
  makecontext(&c.context, coroutine_entry, 0);
}

inline uint3 thread_at(unsigned linear) {
  return {linear % block_dim.x, (linear / block_dim.x) % block_dim.y, linear / (block_dim.x * block_dim.y)};
}

inline void run_block(const std::function<void()>& body) {
  static std::vector<Coroutine> threads;
  const unsigned count = block_dim.x * block_dim.y * block_dim.z;
  if (threads.size() < count) threads.resize(count);
  current_body = &body;
  start(threads[0], thread_at(0));
  resume(threads[0]);
  if (threads[0].done) {  // no barrier in this kernel: plain calls for the rest
    barriers_forbidden = true;
    for (unsigned t = 1; t < count && error.empty(); ++t) {
      thread_index = thread_at(t);
      body();
    }
    barriers_forbidden = false;
    return;
  }
  for (unsigned t = 1; t < count; ++t) start(threads[t], thread_at(t));
  for (;;) {
    unsigned waiting = 0, done = 0;
    for (unsigned t = 0; t < count; ++t) {
      Coroutine& c = threads[t];
      if (!c.done && !c.waiting) resume(c);
      waiting += c.waiting;
      done += c.done;
    }
    if (waiting == 0) return;  // every thread finished
    if (done != 0) {
      fail("__syncthreads() not reached by every thread of a block (divergent barrier)");
      return;
    }
    for (unsigned t = 0; t < count; ++t) threads[t].waiting = false;  // release the barrier
  }
}

inline void run_grid(const unsigned* grid, const unsigned* block, const std::function<void()>& body) {
  grid_dim = {grid[0], grid[1], grid[2]};
  block_dim = {block[0], block[1], block[2]};
  for (unsigned z = 0; z < grid[2]; ++z)
    for (unsigned y = 0; y < grid[1]; ++y)
      for (unsigned x = 0; x < grid[0] && error.empty(); ++x) {
        block_index = {x, y, z};
        run_block(body);
      }
}

// Calls kernel(args...) where args[i] points at the i-th argument's value,
// as cuLaunchKernel's kernelParams.
template <typename... Args, std::size_t... I>
void call(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(args[I])...);
}

template <typename... Args>
void call_kernel(void (*kernel)(Args...), void** args) {
  call(kernel, args, std::index_sequence_for<Args...>{});
}

template <auto Kernel>
int launch(const unsigned* grid, const unsigned* block, void** args) {
  static std::mutex one_launch_at_a_time;  // the grid state above is global
  std::lock_guard<std::mutex> lock(one_launch_at_a_time);
  error.clear();
  const std::function<void()> body = [args] { call_kernel(Kernel, args); };
  run_grid(grid, block, body);
  return error.empty() ? 0 : 1;
}

using Launcher = int (*)(const unsigned*, const unsigned*, void**);

struct Entry {
  const char* name;
  Launcher launch;
};

}  // namespace fastact_emulator

extern "C" const char* fastact_emulator_error() { return fastact_emulator::error.c_str(); }
