// Just enough of CUDA for g++ to compile fastact's kernels for the CPU.
//
// Used only by the test-only "cuda-emulator" backend.  The kernels in ../ are
// compiled unchanged; this header supplies the CUDA names they use:
//   * __global__/__device__/__shared__ and friends (__shared__ becomes a static
//     local: blocks run one at a time, and every thread of a block sees it);
//   * threadIdx/blockIdx/blockDim/gridDim, set by the scheduler in launcher.h;
//   * __syncthreads(), a real barrier between the block's threads, each of
//     which runs as its own coroutine (launcher.h);
//   * __shfl_xor_sync and __shfl_down_sync over full warps: each is a
//     synchronization point among the warp's 32 threads (launcher.h);
//   * the CUDA keywords, __half and __nv_bfloat16, the _rn intrinsics and the
//     math functions come from ../host/device.h, shared with the cpu backend
//     (glibc's math, correctly rounded or within 1 ulp: CUDA's are within 1 to 4 ulp).
#pragma once

#define FASTACT_EMULATOR 1
#include "../host/device.h"

#include <cstdint>
#include <cstring>

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
using dim3 = uint3;

namespace fastact_emulator {
inline uint3 thread_index, block_index, block_dim, grid_dim;
void syncthreads();  // launcher.h
void syncwarp();     // launcher.h: parks the thread until every thread of its warp gets there
void fail(const char* message);
}  // namespace fastact_emulator

#define threadIdx (::fastact_emulator::thread_index)
#define blockIdx (::fastact_emulator::block_index)
#define blockDim (::fastact_emulator::block_dim)
#define gridDim (::fastact_emulator::grid_dim)

inline void __syncthreads() { fastact_emulator::syncthreads(); }

// Warp shuffles.  Every thread publishes its value in its slot, waits for
// its whole warp (so a lane that never arrives is an error, as the full mask
// promises all 32), reads the source lane's slot, and waits again before any
// slot is reused.  Only the full mask and width 32 are emulated.
namespace fastact_emulator {
constexpr unsigned kWarpSize = 32;
constexpr unsigned kMaxBlockThreads = 1024;
inline std::uint64_t shuffle_slots[kMaxBlockThreads];

inline unsigned linear_thread() { return thread_index.x + block_dim.x * (thread_index.y + block_dim.y * thread_index.z); }

template <typename V, typename SourceLane>
V shuffle(unsigned mask, V value, int width, SourceLane source_lane) {
  static_assert(sizeof(V) <= sizeof(std::uint64_t), "shuffles move 32- or 64-bit values");
  if (mask != 0xffffffffu || width != static_cast<int>(kWarpSize)) fail("only full-warp shuffles (mask 0xffffffff, width 32) are emulated");
  const unsigned self = linear_thread();
  const unsigned warp_start = self - self % kWarpSize;
  if (warp_start + kWarpSize > block_dim.x * block_dim.y * block_dim.z || warp_start + kWarpSize > kMaxBlockThreads) {
    fail("shuffle in a warp of fewer than 32 threads (the block size is not a multiple of 32)");
    return value;
  }
  std::memcpy(&shuffle_slots[self], &value, sizeof value);
  syncwarp();
  V result;
  std::memcpy(&result, &shuffle_slots[warp_start + source_lane(self % kWarpSize)], sizeof result);
  syncwarp();
  return result;
}
}  // namespace fastact_emulator

template <typename V>
V __shfl_xor_sync(unsigned mask, V value, int lane_mask, int width = 32) {
  return fastact_emulator::shuffle(mask, value, width, [lane_mask](unsigned lane) { return lane ^ (lane_mask & 31u); });
}

// A source lane past the warp's end gives the caller's own value (CUDA's rule).
template <typename V>
V __shfl_down_sync(unsigned mask, V value, unsigned delta, int width = 32) {
  return fastact_emulator::shuffle(mask, value, width, [delta](unsigned lane) { return lane + delta < 32 ? lane + delta : lane; });
}
