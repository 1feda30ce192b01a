// One device functor per activation kernel, forward and backward side by side.
//
// A functor is also the activation's parameter struct: the host packs its
// fields (same names, same order) into a NumPy structured scalar and passes
// it to the kernel by value (fastact/backends/cuda_plan.py: FUNCTORS).
// C is the compute type: float for float16, bfloat16 and float32, double for
// float64.  The parameters arrive already rounded to C, as in the NumPy
// backend, so both backends compute the same expressions on the same values.
//
// The math must agree bit for bit with fastact/backends/numpy_math.py.
// NaN is handled with explicit tests: fmaxf/fminf would drop a NaN x.
#pragma once

#include "common.cuh"

namespace fastact {

// relu(x, alpha, max_value, threshold): serves relu, leaky_relu, relu6 and
// thresholded_relu (SPEC 2.1).
//   x <= t: a * (x - t), exactly 0 when a == 0 (also for x = -inf, where the
//           product would be NaN);
//   x >  t: x, or min(max(x, 0), m) when capped.
// Derivative: a below and at t (left derivative at the kink); above t, 1, or
// when capped 1 on (0, m) and 0 elsewhere (0 at x == 0 and x == m).
template <typename C>
struct Relu {
  C alpha;
  C max_value;
  C threshold;
  int has_max;  // max_value is used only when has_max != 0 (None in Python)

  __device__ __forceinline__ C forward(C x) const {
    if (isnan(x)) return x;
    if (x <= threshold) return alpha == C(0) ? C(0) : alpha * (x - threshold);
    if (!has_max) return x;
    return x < C(0) ? C(0) : (x > max_value ? max_value : x);
  }

  __device__ __forceinline__ C derivative(C x) const {
    if (x <= threshold) return alpha;
    if (!has_max) return C(1);
    return (x > C(0) && x < max_value) ? C(1) : C(0);
  }

  // An IEEE product, so an inf or NaN dy where the derivative is 0 gives NaN
  // (as the NumPy backend; PyTorch's select-based backward gives 0 there).
  __device__ __forceinline__ C backward(C dy, C x) const {
    if (isnan(x)) return x;
    return dy * derivative(x);
  }
};

}  // namespace fastact
