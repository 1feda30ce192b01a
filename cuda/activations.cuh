// One device functor per activation kernel, forward and backward side by side.
//
// A functor is also the activation's parameter struct: the host packs its
// fields (same names, same order) into a NumPy structured scalar and passes
// it to the kernel by value (fastact/backends/cuda_plan.py: FUNCTORS).
// C is the compute type: float for float16, bfloat16 and float32, double for
// float64.  The parameters arrive already rounded to C, as in the NumPy
// backend, so both backends compute the same expressions on the same values.
//
// The math mirrors fastact/backends/numpy_math.py: the same stable forms
// (its comments derive them), so that no finite x overflows or gives NaN.
// Relu agrees with it bit for bit; the smooth kernels agree to the accuracy
// of the math library (CUDA's expf, erfcf, tanhf, ... are within 1 to 4 ulp;
// no fast-math intrinsics such as __expf, whose error grows with |x|).
// NaN x never reaches a functor: every kernel applies it through forward_of /
// backward_of (elementwise.cuh), which map it to NaN.
// Selections are written as comparisons: fmaxf/fminf would drop a NaN.
#pragma once

#include "common.cuh"

namespace fastact {

// relu(x, alpha, max_value, threshold): serves relu, leaky_relu, relu6 and
// thresholded_relu (README.md, What there is).
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
    if (x <= threshold) return alpha == C(0) ? C(0) : alpha * (x - threshold);
    if (!has_max) return x;
    return x < C(0) ? C(0) : (x > max_value ? max_value : x);
  }

  __device__ __forceinline__ C derivative(C x) const {
    if (x <= threshold) return alpha;
    if (!has_max) return C(1);
    return (x > C(0) && x < max_value) ? C(1) : C(0);
  }

};

// A functor is forward(x) and derivative(x); backward_of forms every
// backward as dy * derivative(x), an IEEE product: an inf or NaN dy where the
// derivative is 0 gives NaN (as the NumPy backend; PyTorch's select-based
// relu backward gives 0 there).

// Where smooth gates are exactly 0 or 1 in float and double (exp(-800) == 0):
// multiplicands are clamped to +-kTail so that x = -inf times a gate of 0 is 0
// (the limit), not NaN.  For finite x the clamp only touches zeroed products.
constexpr double kTail = 800.0;

template <typename C>
__device__ __forceinline__ C clamp(C x, C low, C high) { return x < low ? low : (x > high ? high : x); }

// The logistic function without overflow for any z: e = exp(-|z|) and
// r = 1 / (1 + e) are both in (0, 1], and exactly, symmetrically in z,
//   sigmoid(z) = z >= 0 ? r : e r,   sigmoid'(z) = sigmoid(z) sigmoid(-z) = e r r
// (e r r has no cancellation in the tails, unlike s (1 - s)).
template <typename C>
struct Logistic {
  C z, e, r;
  __device__ __forceinline__ explicit Logistic(C z_) : z(z_), e(exp(-fabs(z_))), r(C(1) / (C(1) + e)) {}
  __device__ __forceinline__ C sigmoid() const { return z >= C(0) ? r : e * r; }
  __device__ __forceinline__ C slope() const { return e * r * r; }
};

// elu(x, alpha, scale): serves elu (scale 1) and selu, as PyTorch's elu kernel
// with poscoef = scale and negcoef = scale * alpha:
//   forward   x > 0: scale x;  x <= 0: negcoef expm1(x)  (expm1: no cancellation near 0)
//   derivative x > 0: scale;   x <= 0: negcoef exp(x)    (selu'(0) = scale alpha, PyTorch)
template <typename C>
struct Elu {
  C alpha;
  C scale;

  __device__ __forceinline__ C forward(C x) const { return x > C(0) ? scale * x : scale * alpha * expm1(x); }
  __device__ __forceinline__ C derivative(C x) const { return x > C(0) ? scale : scale * alpha * exp(x); }
};

// gelu(x, approximate).
// exact, with a = min(|x|, kTail) and erfc rather than 1 + erf (which cancels for x < 0):
//   forward    max(x, 0) - a/2 erfc(a / sqrt2)                     (= x Phi(x), both signs)
//   derivative Phi(x) + x phi(x) = [x >= +0] + copysign(erfc(a / sqrt2) / 2, -x)
//                                  + copysign(a, x) exp(-a^2 / 2) / sqrt(2 pi)
// tanh form, with 0.5 (1 + tanh(u)) = sigmoid(2u) (no cancellation for x < 0) and
// u2 = 2u = x (k1 + k3 x^2):
//   forward    max(x, -kTail) sigmoid(u2)
//   derivative sigmoid(u2) + xc sigmoid'(u2) (k1 + 3 k3 xc^2),  xc = clamp(x, +-kTail)
template <typename C>
struct Gelu {
  int approximate;  // 0: exact (erf), 1: the tanh form

  static constexpr double kSqrtHalf = 0.70710678118654752440;
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;
  static constexpr double kK1 = 2 * 0.79788456080286535588;  // 2 sqrt(2 / pi)
  static constexpr double kK3 = kK1 * 0.044715;

  __device__ __forceinline__ C forward(C x) const {
    if (approximate) return (x < C(-kTail) ? C(-kTail) : x) * Logistic<C>(u2(x)).sigmoid();
    const C a = fabs(x) < C(kTail) ? fabs(x) : C(kTail);
    return (x > C(0) ? x : C(0)) - a * C(0.5) * erfc(a * C(kSqrtHalf));
  }

  __device__ __forceinline__ C derivative(C x) const {
    if (approximate) {
      const C xc = clamp(x, C(-kTail), C(kTail));
      const Logistic<C> gate(u2(xc));
      return gate.sigmoid() + gate.slope() * (xc * (C(kK1) + C(3 * kK3) * xc * xc));
    }
    const C a = fabs(x) < C(kTail) ? fabs(x) : C(kTail);
    const C cdf = (signbit(x) ? C(0) : C(1)) + copysign(erfc(a * C(kSqrtHalf)) * C(0.5), -x);
    return cdf + copysign(a, x) * exp(-(a * a * C(0.5))) * C(kInvSqrt2Pi);
  }

  // x (k1 + k3 x^2): +-inf for huge x, which the logistic takes.
  __device__ __forceinline__ static C u2(C x) { return x * (C(kK1) + C(kK3) * x * x); }
};

// sigmoid: forward sigmoid(x); derivative e r r (see Logistic).
template <typename C>
struct Sigmoid {
  __device__ __forceinline__ C forward(C x) const { return Logistic<C>(x).sigmoid(); }
  __device__ __forceinline__ C derivative(C x) const { return Logistic<C>(x).slope(); }
};

// silu (swish): forward max(x, -kTail) sigmoid(x);
// derivative sigmoid(xc) + xc e r r, xc = clamp(x, +-kTail) (PyTorch's
// s (1 + x (1 - s)), the same function without the cancellation).
template <typename C>
struct Silu {
  __device__ __forceinline__ C forward(C x) const { return (x < C(-kTail) ? C(-kTail) : x) * Logistic<C>(x).sigmoid(); }
  __device__ __forceinline__ C derivative(C x) const {
    const C xc = clamp(x, C(-kTail), C(kTail));
    const Logistic<C> gate(xc);
    return gate.sigmoid() + xc * gate.slope();
  }
};

// softplus: forward max(x, 0) + log1p(exp(-|x|)) (no overflow); derivative sigmoid(x).
template <typename C>
struct Softplus {
  __device__ __forceinline__ C forward(C x) const { return (x > C(0) ? x : C(0)) + log1p(Logistic<C>(x).e); }
  __device__ __forceinline__ C derivative(C x) const { return Logistic<C>(x).sigmoid(); }
};

// tanh: derivative sech(x)^2 = (1 / cosh(x))^2, not 1 - tanh^2, which cancels
// to 0 in the tails; squared after the division so that cosh^2 cannot
// overflow while sech^2 is still a normal number.
template <typename C>
struct Tanh {
  __device__ __forceinline__ C forward(C x) const { return tanh(x); }
  __device__ __forceinline__ C derivative(C x) const {
    const C sech = C(1) / cosh(x);
    return sech * sech;
  }
};

// hard_sigmoid, as PyTorch's hardsigmoid (the same rounding: a true division by 6):
//   forward min(max(x + 3, 0), 6) / 6;  derivative 1/6 on (-3, 3), else 0.
template <typename C>
struct HardSigmoid {
  __device__ __forceinline__ C forward(C x) const { return clamp(x + C(3), C(0), C(6)) / C(6); }
  __device__ __forceinline__ C derivative(C x) const { return fabs(x) < C(3) ? C(1.0 / 6.0) : C(0); }
};

// hard_silu (hard_swish), as PyTorch's hardswish:
//   forward xc min(xc + 3, 6) / 6 with xc = max(x, -3) (0 rather than NaN at -inf);
//   derivative 0 for x <= -3, x/3 + 1/2 on (-3, 3), 1 for x >= 3 (PyTorch 2.13's
//   hardswish_backward, measured by the NumPy side: 0 at -3 and 1 at 3).
//   x * (1/3) rather than x / 3 (within an ulp): the double division's slow
//   path is a called routine that gave this kernel a stack frame on sm_90.
template <typename C>
struct HardSilu {
  __device__ __forceinline__ C forward(C x) const {
    const C xc = x < C(-3) ? C(-3) : x;
    return xc * (xc + C(3) < C(6) ? xc + C(3) : C(6)) / C(6);
  }
  __device__ __forceinline__ C derivative(C x) const {
    if (x <= C(-3)) return C(0);
    return x < C(3) ? rounded_product(x, C(1.0 / 3.0)) + C(0.5) : C(1);
  }
};

// mish: x tanh(softplus(x)).  With ex = exp(min(x, 40)) (tanh(softplus(40))
// is 1 in double), w = ex (1 + ex), n = w + ex = (1 + ex)^2 - 1, d = n + 2:
//   tanh(softplus(x)) = n / d   (no overflow: n <= e^80 < FLT_MAX; exactly 1 for large x)
//   forward    max(x, -kTail) n / d
//   derivative n / d + xc 4 w (1 / d)^2, xc = clamp(x, -kTail, 40) (no overflow: w < d)
//              (= tsp + x sigmoid(x) sech^2(softplus(x)), PyTorch's mish_backward,
//              without the cancellation of 1 - tsp^2)
template <typename C>
struct Mish {
  static constexpr double kCap = 40.0;

  __device__ __forceinline__ C forward(C x) const {
    C w, d;
    return (x < C(-kTail) ? C(-kTail) : x) * gate(x, w, d);
  }
  __device__ __forceinline__ C derivative(C x) const {
    C w, d;
    const C tsp = gate(x, w, d);
    const C inv_d = C(1) / d;  // one division, not two: on sm_90 each double one is a call, and they spilled
    return tsp + clamp(x, C(-kTail), C(kCap)) * (C(4) * w * inv_d * inv_d);
  }

  // n / d, and w and d for the derivative.
  __device__ __forceinline__ static C gate(C x, C& w, C& d) {
    const C ex = exp(x < C(kCap) ? x : C(kCap));
    w = ex * (C(1) + ex);
    const C n = w + ex;
    d = n + C(2);
    return n / d;
  }
};

// linear: the identity (Keras' activation of a layer without one).
template <typename C>
struct Linear {
  __device__ __forceinline__ C forward(C x) const { return x; }
  __device__ __forceinline__ C derivative(C) const { return C(1); }
};

}  // namespace fastact
