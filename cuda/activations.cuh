// One device functor per activation kernel, forward and backward side by side.
//
// A functor is also the activation's parameter struct: the host packs its
// fields (same names, same order) into a NumPy structured scalar and passes
// it to the kernel by value (fastact/backends/kernels/plan.py: FUNCTORS; the cpu backend packs the same bytes).
// C is the compute type: float for float16, bfloat16 and float32, double for
// float64.  The parameters arrive already rounded to C, as in the NumPy
// backend, so both backends compute the same expressions on the same values.
//
// The math mirrors fastact/backends/numpy/math.py: the same stable forms
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

// e^-64: the far tails (Tanh, Mish) take exp(t + 64) e^-64, t + 64 exact,
// where exp(t) itself would be subnormal or 0 before the result is.
constexpr double kExpMinus64 = 1.603810890548638e-28;

template <typename C>
__device__ __forceinline__ C clamp(C x, C low, C high) { return x < low ? low : (x > high ? high : x); }

// Dekker's exact product, without an FMA.  Halves(x) splits x into hi + lo,
// hi holding the upper half of the significand (12 of float's 24 bits, 26 of
// double's 53), so that a product of two halves is exact (|x| below 2^100:
// x (2^27 + 1) must not overflow).  For p = rounded_product(x, y),
// product_error gives x y - p exactly.  The products that must round on their
// own are rounded_product (never fused); the rest are exact, so an FMA
// contracted from them changes nothing.
template <typename C>
struct Halves {
  C hi, lo;
  __device__ __forceinline__ explicit Halves(C x) {
    const C scaled = rounded_product(x, C(sizeof(C) == sizeof(float) ? 4097.0 : 134217729.0));  // 2^12 + 1, 2^27 + 1
    hi = scaled - (scaled - x);
    lo = x - hi;
  }
};

template <typename C>
__device__ __forceinline__ C product_error(const Halves<C>& x, const Halves<C>& y, C p) {
  return ((x.hi * y.hi - p) + x.hi * y.lo + x.lo * y.hi) + x.lo * y.lo;
}

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
// The Gaussian's argument is carried to twice C's precision (Dekker's product,
// as the NumPy backend's erfc exponent): rounding a / sqrt2 or a^2 / 2 alone
// costs a relative error of about a^2 ulps (erfc's relative slope is 2z),
// 93 ulps of float in gelu(-11.4).  erfc(a / sqrt2) is erfc_over_sqrt2 below;
// the density takes a^2 = p + q exactly (p rounded) and g = 2 - p/2 with its
// rounding error g_low (Fast2Sum; 0 for p/2 >= 1, where g is exact):
//   exp(-a^2/2) / sqrt(2 pi) = exp(g) (1 + g_low - q/2) e^-2 / sqrt(2 pi)
// (the shift by 2 keeps exp(g) normal where the density, a times larger, is).
// tanh form, with 0.5 (1 + tanh(u)) = sigmoid(2u) (no cancellation for x < 0) and
// u2 = 2u = x (k1 + k3 x^2):
//   forward    max(x, -kTail) sigmoid(u2)
//   derivative sigmoid(u2) + xc sigmoid'(u2) (k1 + 3 k3 xc^2),  xc = clamp(x, +-kTail)
template <typename C>
struct Gelu {
  int approximate;  // 0: exact (erf), 1: the tanh form

  static constexpr double kSqrtHalf = 0.70710678118654752440;
  static constexpr double kSqrtHalfLow = -4.8336466567264567e-17;  // sqrt(1/2) - kSqrtHalf
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;
  static constexpr double kInvSqrt2PiE2 = 0.05399096651318805;  // e^-2 / sqrt(2 pi)
  static constexpr double kK1 = 2 * 0.79788456080286535588;  // 2 sqrt(2 / pi)
  static constexpr double kK3 = kK1 * 0.044715;

  __device__ __forceinline__ C forward(C x) const {
    if (approximate) return (x < C(-kTail) ? C(-kTail) : x) * Logistic<C>(u2(x)).sigmoid();
    const C a = fabs(x) < C(kTail) ? fabs(x) : C(kTail);
    return (x > C(0) ? x : C(0)) - a * C(0.5) * erfc_over_sqrt2(a, Halves<C>(a));
  }

  __device__ __forceinline__ C derivative(C x) const {
    if (approximate) {
      const C xc = clamp(x, C(-kTail), C(kTail));
      const Logistic<C> gate(u2(xc));
      return gate.sigmoid() + gate.slope() * (xc * (C(kK1) + C(3 * kK3) * xc * xc));
    }
    const C a = fabs(x) < C(kTail) ? fabs(x) : C(kTail);
    const Halves<C> halves(a);
    const C cdf = (signbit(x) ? C(0) : C(1)) + copysign(erfc_over_sqrt2(a, halves) * C(0.5), -x);
    const C p = rounded_product(a, a);
    const C g = C(2) - p * C(0.5);
    const C g_low = (C(2) - g) - p * C(0.5);
    const C density = copysign(a, x) * exp(g) * C(kInvSqrt2PiE2);  // x phi(x) but for the correction
    return cdf + (density + density * (g_low - product_error(halves, halves, p) * C(0.5)));
  }

  // erfc(a / sqrt2) for 0 <= a <= kTail, to erfc's own accuracy: z is
  // a sqrt(1/2) rounded and dz its rounding error (the product's, exactly,
  // plus a times the constant's), and to first order in dz
  //   erfc(z + dz) = erfc(z) (1 - 2 z dz)
  // (the rest of the relative slope, below 1/z, leaves |dz| / z <= 2^-24 (2^-53)).
  __device__ __forceinline__ static C erfc_over_sqrt2(C a, const Halves<C>& halves) {
    const C z = rounded_product(a, C(kSqrtHalf));
    const C dz = product_error(halves, Halves<C>(C(kSqrtHalf)), z) + a * C((kSqrtHalf - double(C(kSqrtHalf))) + kSqrtHalfLow);
    const C tail = erfc(z);
    return tail - tail * (C(2) * z * dz);
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

// tanh: derivative sech(x)^2 = 4 e / (1 + e)^2 with e = exp(-2|x|) in [0, 1]:
// no overflow, and no cancellation (1 - tanh^2 cancels to 0 in the tails).
// exp's error counts once (the relative slope in e is tanh|x| < 1), where
// (1 / cosh)^2 doubled cosh's (5 ulps of float with glibc's coshf).  (1 + e)^2
// is carried to twice C's precision, p + low: d = 1 + e exactly as d + d_low
// (Fast2Sum, 1 >= e), and Dekker's square of d; then
// 4 e / (p + low) = y (1 - low / p) with y = 4 e / p.
// For |x| >= kFar = 40, where (1 + e)^2 is 1: 4 exp(64 - 2|x|) e^-64, so
// that the result is a subnormal where it should be (e itself is
// subnormal from |x| = 43.7 in float, and 0 before 4 e is).
template <typename C>
struct Tanh {
  static constexpr double kFar = 40.0;

  __device__ __forceinline__ C forward(C x) const { return tanh(x); }
  __device__ __forceinline__ C derivative(C x) const {
    const bool far = fabs(x) >= C(kFar);
    const C e = exp(far ? C(64) - C(2) * fabs(x) : C(-2) * fabs(x));  // e^64 e^-2|x| where far
    const C d = C(1) + e;
    const C d_low = e - (d - C(1));
    const Halves<C> halves(d);
    const C p = rounded_product(d, d);
    const C low = product_error(halves, halves, p) + C(2) * d * d_low;  // (1 + e)^2 - p, but for d_low^2
    const C y = C(4) * e / p;
    return far ? C(4) * e * C(kExpMinus64) : y - y * (low / p);
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
//              far left, x < kFar = -64 (e^x < 2^-92): (1 + x) e^x to within a
//              relative e^x, as (1 + xc) e^(xc + 64) e^-64 (xc + 64 is exact
//              there), so that no intermediate is subnormal.  ex is subnormal
//              below x = -87 (float) / -708 (double) and 0 below -104 / -745,
//              where (1 + x) e^x is not yet 0: the general form lost precision
//              and returned 0 there (and the NumPy backend's w / d / d, rounding
//              the slope to 0 before the product with x, the wrong sign).
template <typename C>
struct Mish {
  static constexpr double kCap = 40.0;
  static constexpr double kFar = -64.0;

  __device__ __forceinline__ C forward(C x) const {
    C w, d;
    return (x < C(-kTail) ? C(-kTail) : x) * gate(exp(x < C(kCap) ? x : C(kCap)), w, d);
  }
  __device__ __forceinline__ C derivative(C x) const {
    const C xc = clamp(x, C(-kTail), C(kCap));
    const bool far_left = xc < C(kFar);
    // The shift as arithmetic, not exp(far_left ? a : b): on the host, g++ made
    // the selection two vector exps, one of them out of range for most lanes,
    // and libmvec takes its scalar fallback for such lanes (measured: mish'
    // 20 -> 14 ns per element; still slow, see CONTRIBUTING.md, "The cpu backend").
    const C ex = exp(xc - C(kFar) * C(far_left));  // e^(x + 64) where far left
    C w, d;
    const C tsp = gate(ex, w, d);
    const C inv_d = C(1) / d;  // one division, not two: on sm_90 each double one is a call, and they spilled
    return far_left ? (C(1) + xc) * ex * C(kExpMinus64) : tsp + xc * (C(4) * w * inv_d * inv_d);
  }

  // n / d from ex, and w and d for the derivative.
  __device__ __forceinline__ static C gate(C ex, C& w, C& d) {
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
