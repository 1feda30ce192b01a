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

}  // namespace fastact
