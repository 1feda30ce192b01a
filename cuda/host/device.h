// The CUDA names fastact's device code uses, for a host C++ compiler.
//
// Included before the kernel headers (../common.cuh, ../activations.cuh, ...)
// by both host builds of them: the "cpu" backend (engine.cpp, vectorized) and
// the test-only CUDA emulator (../emulator/cuda_shim.h, which adds threads,
// blocks and barriers).  The activation functors are compiled unchanged.
//
// * __device__ and friends expand to nothing (or inline);
// * __half and __nv_bfloat16 are 16-bit storage with CUDA's conversions,
//   written in integer arithmetic with no branch per element so that a loop
//   converting them vectorizes (g++'s _Float16 casts are library calls on
//   x86 without AVX-512 FP16).  Both match NumPy's casts bit for bit
//   (round to nearest-even, NaN stays a quiet NaN with its payload's top bits);
// * the math functions are the C library's, declared as SIMD functions on
//   x86-64 glibc so that g++ vectorizes loops that call them into glibc's
//   libmvec (vector expf, expm1f, log1pf, erfcf, tanhf, coshf and their double
//   versions, within 4 ulp; see CONTRIBUTING.md, "The cpu backend").
#pragma once

#define FASTACT_HOST_COMPILER 1

#include <cmath>
#include <cstdint>
#include <cstring>

#ifndef __global__
#define __global__
#endif
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static

// SIMD variants of the math functions, where glibc's libmvec has them (x86-64).
// notinbranch: the loops call them unconditionally (see engine.cpp).
#if defined(FASTACT_LIBMVEC)
extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
float expm1f(float) noexcept;
#pragma omp declare simd notinbranch
float log1pf(float) noexcept;
#pragma omp declare simd notinbranch
float logf(float) noexcept;
#pragma omp declare simd notinbranch
float erfcf(float) noexcept;
#pragma omp declare simd notinbranch
float tanhf(float) noexcept;
#pragma omp declare simd notinbranch
float coshf(float) noexcept;
#pragma omp declare simd notinbranch
double exp(double) noexcept;
#pragma omp declare simd notinbranch
double expm1(double) noexcept;
#pragma omp declare simd notinbranch
double log1p(double) noexcept;
#pragma omp declare simd notinbranch
double log(double) noexcept;
#pragma omp declare simd notinbranch
double erfc(double) noexcept;
#pragma omp declare simd notinbranch
double tanh(double) noexcept;
#pragma omp declare simd notinbranch
double cosh(double) noexcept;
}
#endif

// CUDA's device math library: float and double overloads of the same names.
using std::copysign;
using std::cosh;
using std::erfc;
using std::exp;
using std::expm1;
using std::fabs;
using std::fma;
using std::fmaf;
using std::isnan;
using std::log;
using std::log1p;
using std::signbit;
using std::tanh;

namespace fastact_host {
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
}  // namespace fastact_host

inline float __int_as_float(int bits) { return fastact_host::bits_float(static_cast<std::uint32_t>(bits)); }
inline int __float_as_int(float f) { return static_cast<int>(fastact_host::float_bits(f)); }
inline double __longlong_as_double(long long bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

// Models of the GPU's approximate instructions (../common.cuh: ex2_approx,
// rcp_approx), for the emulator: the exact result (double, rounded to float)
// times 1 + s 2^-21, s = +1 or -1 from a hash of the argument's bits, so
// that tests see errors of both signs, each at least as large as the
// instruction's documented bound (2 ulps for ex2, 1 for rcp, <= 2^-22);
// subnormal arguments and results flush to zero as with .ftz.
namespace fastact_host {
inline bool subnormal(float f) { return f != 0.0f && std::fabs(f) < 0x1p-126f; }
inline float flush(float f) { return subnormal(f) ? std::copysign(0.0f, f) : f; }
inline float with_approximation_error(float exact, float argument) {
  const std::uint32_t hash = float_bits(argument) * 0x9e3779b1u;
  const double sign = (hash >> 31) ? -1.0 : 1.0;
  return flush(static_cast<float>(static_cast<double>(exact) * (1.0 + sign * 0x1p-21)));
}
}  // namespace fastact_host

inline float ex2_approx(float t) {
  t = fastact_host::flush(t);
  return fastact_host::with_approximation_error(static_cast<float>(std::exp2(static_cast<double>(t))), t);
}
inline float rcp_approx(float d) {
  d = fastact_host::flush(d);
  return fastact_host::with_approximation_error(static_cast<float>(1.0 / static_cast<double>(d)), d);
}

// Host builds never contract a * b + c into an FMA (-ffp-contract=off), so
// these are plain products, rounded on their own.
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((std::uint64_t(a) * b) >> 32); }

// IEEE binary16 storage.
struct __half {
  std::uint16_t bits;
};

// Exact: the 15 magnitude bits moved into float32 position read as a float32
// 2**-112 times the value (subnormals included), one multiply rescales it;
// infinities and NaN (exponent all ones) take float32's all-ones exponent.
inline float __half2float(__half h) {
  const std::uint32_t magnitude = h.bits & 0x7fffu;
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const float scaled = fastact_host::bits_float(magnitude << 13) * 0x1p112f;
  const std::uint32_t special = (magnitude << 13) | 0x7f800000u;
  const std::uint32_t value = magnitude >= 0x7c00u ? special : fastact_host::float_bits(scaled);
  return fastact_host::bits_float(value | sign);
}

// Round to nearest-even with two candidates and no branch (the same method as
// fastact/backends/numpy/half.py, which documents it):
//   normal: re-biased bits, the 13 dropped bits rounded by adding 0xfff plus
//           the lowest kept bit, from a magnitude raised to at least 2**-14;
//   subnormal: float32 addition of 0.5 rounds to the float16 subnormal step;
// the smaller candidate wins, capped at inf; NaN keeps its payload's top bits.
inline __half __float2half_rn(float f) {
  const std::uint32_t bits = fastact_host::float_bits(f);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  const std::uint32_t raised = magnitude < 0x38800000u ? 0x38800000u : magnitude;
  const std::uint32_t normal = (raised + ((raised >> 13) & 1u) + (0xfffu - (112u << 23))) >> 13;
  const std::uint32_t subnormal = fastact_host::float_bits(fastact_host::bits_float(magnitude) + 0.5f) - 0x3f000000u;
  std::uint32_t result = normal < subnormal ? normal : subnormal;
  result = result < 0x7c00u ? result : 0x7c00u;
  const std::uint32_t nan = 0x7e00u | ((magnitude & 0x7fffffu) >> 13);
  result = magnitude > 0x7f800000u ? nan : result;
  return {static_cast<std::uint16_t>(result | ((bits >> 16) & 0x8000u))};
}

// bfloat16 storage: the top 16 bits of a float.
struct __nv_bfloat16 {
  std::uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) { return fastact_host::bits_float(std::uint32_t(h.bits) << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  const std::uint32_t u = fastact_host::float_bits(f);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // nearest, ties to even
  const std::uint32_t quiet = (u >> 16) | 0x0040u;                       // NaN stays a quiet NaN
  return {static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded)};
}
