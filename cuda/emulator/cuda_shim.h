// Just enough of CUDA for g++ to compile fastact's kernels for the CPU.
//
// Used only by the test-only "cuda-emulator" backend.  The kernels in ../ are
// compiled unchanged; this header supplies the CUDA names they use:
//   * __global__/__device__/__shared__ and friends (__shared__ becomes a static
//     local: blocks run one at a time, and every thread of a block sees it);
//   * threadIdx/blockIdx/blockDim/gridDim, set by the scheduler in launcher.h;
//   * __syncthreads(), a real barrier between the block's threads, each of
//     which runs as its own coroutine (launcher.h);
//   * __half and __nv_bfloat16 with CUDA's round-to-nearest-even conversions;
//   * the _rn arithmetic intrinsics, __umulhi and isnan.
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
}  // namespace fastact_emulator

#define threadIdx (::fastact_emulator::thread_index)
#define blockIdx (::fastact_emulator::block_index)
#define blockDim (::fastact_emulator::block_dim)
#define gridDim (::fastact_emulator::grid_dim)

inline void __syncthreads() { fastact_emulator::syncthreads(); }

using std::isnan;

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
