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
//   * __half and __nv_bfloat16 with CUDA's round-to-nearest-even conversions;
//   * the _rn arithmetic intrinsics, __umulhi, and the math functions the
//     kernels use (glibc's, correctly rounded or within 1 ulp: CUDA's are
//     within 1 to 4 ulp).
#pragma once

#define FASTACT_EMULATOR 1

#include <cmath>
#include <cstdint>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

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

// CUDA's device math library: float and double overloads of the same names.
using std::copysign;
using std::cosh;
using std::erfc;
using std::exp;
using std::expm1;
using std::fabs;
using std::isnan;
using std::log;
using std::log1p;
using std::signbit;
using std::tanh;

inline float __int_as_float(int bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline double __longlong_as_double(long long bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((std::uint64_t(a) * b) >> 32); }

namespace fastact_emulator {
inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace fastact_emulator

// IEEE binary16 storage.  g++ converts _Float16 <-> float exactly as the
// hardware does (round to nearest even, NaN kept NaN).
struct __half {
  std::uint16_t bits;
};
inline float __half2float(__half h) {
  _Float16 v;
  std::memcpy(&v, &h.bits, sizeof v);
  return static_cast<float>(v);
}
inline __half __float2half_rn(float f) {
  _Float16 v = static_cast<_Float16>(f);
  __half h;
  std::memcpy(&h.bits, &v, sizeof v);
  return h;
}

// bfloat16 storage: the top 16 bits of a float.
struct __nv_bfloat16 {
  std::uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) { return fastact_emulator::bits_float(std::uint32_t(h.bits) << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  std::uint32_t u = fastact_emulator::float_bits(f);
  if (std::isnan(f)) return {static_cast<std::uint16_t>((u >> 16) | 0x0040u)};  // stays a quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return {static_cast<std::uint16_t>(u >> 16)};
}
