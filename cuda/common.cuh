// Types shared by every kernel: the storage types, the compute type of each,
// and the conversions between them.
//
// Policy (README.md, Conventions: dtypes): float16 and bfloat16 are loaded, computed in float and
// rounded back to nearest-even; float32 computes in float; float64 in double.
#pragma once

#ifndef FASTACT_HOST_COMPILER  // host builds: cuda/host/device.h supplies these
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif

namespace fastact {

template <typename T> struct ComputeTypeOf { using type = float; };
template <> struct ComputeTypeOf<double> { using type = double; };
template <typename T> using ComputeType = typename ComputeTypeOf<T>::type;

__device__ __forceinline__ float to_compute(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_compute(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_compute(float v) { return v; }
__device__ __forceinline__ double to_compute(double v) { return v; }

template <typename T> __device__ __forceinline__ T from_compute(ComputeType<T> v);
template <> __device__ __forceinline__ __half from_compute<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_compute<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ float from_compute<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_compute<double>(double v) { return v; }

// -inf of the compute type (no <limits> under NVRTC).
__device__ __forceinline__ float negative_infinity(float) { return __int_as_float(0xff800000); }
__device__ __forceinline__ double negative_infinity(double) { return __longlong_as_double(0xfff0000000000000ull); }

// A product that is rounded on its own: the _rn intrinsics are never fused
// into an FMA with a following add, so a sum of products rounds each product
// first, exactly as the NumPy backend does.
__device__ __forceinline__ float rounded_product(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double rounded_product(double a, double b) { return __dmul_rn(a, b); }

// ---------------------------------------------------------------------------
// Math for results stored in 16 bits (activations.cuh, "Accuracy").
//
// float16 keeps 11 significant bits and bfloat16 8, so a result computed in
// float to a relative 2^-16.5 or better rounds to within 0.53 ulp of the exact
// value (README's bound is 2 ulps; where a derivative crosses zero the
// functors are factored so that this still holds, see activations.cuh).  For those storage types the functors use
// the hardware's approximate instructions instead of the math library:
//   ex2_approx(t) = 2^t    ex2.approx.ftz.f32: within 2 ulps (CUDA's exp2f,
//                          documented at 2 ulps, is this instruction plus
//                          subnormal scaling); results below 2^-126 flush to 0
//   rcp_approx(d) = 1/d    rcp.approx.ftz.f32: within 1 ulp; 1/+-0 = +-inf,
//                          1/+-inf = +-0; subnormal d reads as 0
// The functors keep every argument of ex2_approx at -126 or above where the
// result matters (they scale by 2^64: exp_scaled_narrow in activations.cuh),
// so the flush never touches a result a 16-bit type can hold.  Host builds (cuda/host/device.h)
// model both as the exact value with a relative error of 2^-21, larger than
// either bound, so that the emulator's tests of the 16-bit paths are
// pessimistic; the cpu backend never calls them (it computes every dtype
// in float or double, with the math library, or, for exact gelu on its FMA
// builds, the GPU's float32 form with a division: kGpuFormsForFloat32 below).
template <typename T> struct NarrowStorage { static constexpr bool value = false; };
template <> struct NarrowStorage<__half> { static constexpr bool value = true; };
template <> struct NarrowStorage<__nv_bfloat16> { static constexpr bool value = true; };

#ifndef FASTACT_HOST_COMPILER
__device__ __forceinline__ float ex2_approx(float t) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(t));
  return y;
}
__device__ __forceinline__ float rcp_approx(float d) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(d));
  return y;
}
#endif

// 1/d correctly rounded, for d in [1, 2^126): CUDA's own IEEE reciprocal
// (an approximate reciprocal and one Newton step with FMAs, exact for normal
// d with a normal reciprocal) without the range check that sends other d to
// a called slow path, a branch per element.  Host builds divide.
__device__ __forceinline__ float reciprocal_from_one(float d) {
#ifdef FASTACT_HOST_COMPILER
  return 1.0f / d;
#else
  const float r = rcp_approx(d);
  return fmaf(r, fmaf(-d, r, 1.0f), r);
#endif
}
__device__ __forceinline__ double reciprocal_from_one(double d) { return 1.0 / d; }

// n / d correctly rounded, for normal n and d whose quotient is normal, or
// n = 0: CUDA's own IEEE division (a reciprocal, its Newton step, the
// quotient and one correction, all FMAs) without the range check (FCHK) that
// sends other operands to a called slow path, a branch per element.  Host
// builds divide.
__device__ __forceinline__ float divide_in_range(float n, float d) {
#ifdef FASTACT_HOST_COMPILER
  return n / d;
#else
  const float r = reciprocal_from_one(d);
  const float q = n * r;
  return fmaf(fmaf(-d, q, n), r, q);
#endif
}
__device__ __forceinline__ double divide_in_range(double n, double d) { return n / d; }

// Whether float32 results take the GPU's own form where a functor has one
// (exact gelu: polynomials evaluated with FMAs, activations.cuh:
// GaussianTailFloat): on the GPU, and in the emulator, which runs the GPU's
// code (so that its tests check that form, with the same arithmetic: its one
// approximate reciprocal is corrected to nearly correct rounding); and in the
// cpu backend's builds with an FMA instruction (AVX2, AVX-512: __FMA__), where
// the form vectorizes: 0.80 ns per element forward and 1.0 backward on one core
// of the AVX-512 dev VM, against 1.6 and 2.4 with libmvec's erfcf and expf
// (bench/results/cpu-costs-gelu-fma-form-epyc-avx512-2c.md), with the division
// exact instead of the GPU's approximate reciprocal (activations.cuh:
// GaussianTailFloat), and within the GPU's bounds (tests/test_family.py:
// test_gelu_float32_gpu_form).  Not in its x86-64 baseline
// build, which has no FMA instruction (fmaf is a library call there, which no
// loop vectorizes): the math library's forms there, measured in
// tests/test_family.py.
#if !defined(FASTACT_HOST_COMPILER) || defined(FASTACT_EMULATOR) || defined(__FMA__)
constexpr bool kGpuFormsForFloat32 = true;
#else
constexpr bool kGpuFormsForFloat32 = false;
#endif

// T, or C when T is void: the storage type a functor's result is rounded to.
template <typename T, typename C> struct StorageOrType { using type = T; };
template <typename C> struct StorageOrType<void, C> { using type = C; };
template <typename T, typename C> using StorageOr = typename StorageOrType<T, C>::type;

}  // namespace fastact
