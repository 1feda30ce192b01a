// Runs kernels compiled with cuda_shim.h: a grid, block after block, and each
// block's threads as coroutines (ucontext) on one OS thread.
//
// Why coroutines and not one std::thread per CUDA thread: the schedule is
// deterministic, so a missing __syncthreads() gives the same wrong answer on
// every run instead of now and then, and a launch costs microseconds, not
// thousands of thread creations.  The scheduler runs every thread of a block
// up to its next __syncthreads() (or its end) before any goes past it: that
// is the barrier's contract, and nothing more is promised, as on the GPU.
// A warp shuffle (cuda_shim.h) is a smaller barrier: a thread parked at one
// goes on once all 32 threads of its warp are parked at one; so lanes of a
// warp run in lockstep from shuffle to shuffle, and warps drift apart until
// the next __syncthreads(), as they may on the GPU.
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

enum class Parked { kNo, kAtSyncthreads, kAtShuffle };

struct Coroutine {
  ucontext_t context{};
  std::vector<char> stack;
  uint3 index;
  Parked parked = Parked::kNo;
  bool done = false;
};

constexpr std::size_t kStackBytes = 64 * 1024;

inline ucontext_t scheduler_context;
inline Coroutine* current = nullptr;
inline const std::function<void()>* current_body = nullptr;
inline bool barriers_forbidden = false;
inline std::string error;

inline void fail(const char* message) {
  if (error.empty()) error = message;
}

inline void park(Parked where, const char* name) {
  if (barriers_forbidden || current == nullptr) {
    fail((std::string(name) + " reached by some threads of a block but not by thread 0 (divergent barrier)").c_str());
    return;
  }
  current->parked = where;
  swapcontext(&current->context, &scheduler_context);
}

inline void syncthreads() { park(Parked::kAtSyncthreads, "__syncthreads()"); }
inline void syncwarp() { park(Parked::kAtShuffle, "a warp shuffle"); }

inline void coroutine_entry() {
  (*current_body)();
  current->done = true;
  swapcontext(&current->context, &scheduler_context);
}

inline void resume(Coroutine& c) {
  current = &c;
  thread_index = c.index;
  c.parked = Parked::kNo;
  swapcontext(&scheduler_context, &c.context);
  current = nullptr;
}

inline void start(Coroutine& c, uint3 index) {
  c.index = index;
  c.parked = Parked::kNo;
  c.done = false;
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

inline bool release_warps(Coroutine* threads, unsigned count);
inline bool release_block(Coroutine* threads, unsigned count);

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
    for (unsigned t = 0; t < count && error.empty(); ++t) {
      Coroutine& c = threads[t];
      if (!c.done && c.parked == Parked::kNo) resume(c);
    }
    if (!error.empty()) return;
    if (release_warps(threads.data(), count)) continue;
    if (!release_block(threads.data(), count)) return;  // every thread finished, or an error
  }
}

// Lets every warp whose threads are all parked at a shuffle go on; true if any did.
inline bool release_warps(Coroutine* threads, unsigned count) {
  bool released = false;
  for (unsigned first = 0; first < count; first += 32) {
    const unsigned end = first + 32 < count ? first + 32 : count;
    unsigned parked = 0;
    for (unsigned t = first; t < end; ++t) parked += threads[t].parked == Parked::kAtShuffle;
    if (parked != end - first) continue;
    for (unsigned t = first; t < end; ++t) threads[t].parked = Parked::kNo;
    released = true;
  }
  return released;
}

// When no thread can run: releases __syncthreads() if every thread is parked
// there (true), or returns false with every thread finished, or with the
// error that explains why not.
inline bool release_block(Coroutine* threads, unsigned count) {
  unsigned at_barrier = 0, at_shuffle = 0, done = 0;
  for (unsigned t = 0; t < count; ++t) {
    at_barrier += threads[t].parked == Parked::kAtSyncthreads;
    at_shuffle += threads[t].parked == Parked::kAtShuffle;
    done += threads[t].done;
  }
  if (done == count) return false;
  if (at_shuffle != 0) {
    fail("a warp shuffle not reached by every thread of the warp (a lane exited or waits at __syncthreads())");
    return false;
  }
  if (done != 0) {
    fail("__syncthreads() not reached by every thread of a block (divergent barrier)");
    return false;
  }
  for (unsigned t = 0; t < count; ++t) threads[t].parked = Parked::kNo;  // release the barrier
  return true;
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
