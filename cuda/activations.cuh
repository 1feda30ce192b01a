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
// for float32 and float64 results no fast-math intrinsics such as __expf,
// whose error grows with |x|; 16-bit results: see Accuracy below).
// NaN x never reaches a functor's result: every kernel applies it through
// forward_of / backward_of (elementwise.cuh), which select NaN over it.
//
// Accuracy: forward<T> and derivative<T> take the storage type T the result
// is rounded to (the compute type C by default, as the cpu backend and the
// fused epilogues call them).  For float32 and float64 they compute the
// forms below with the math library, as the NumPy backend does, but for
// exact gelu's float32 results on the GPU (kGpuFormsForFloat32, common.cuh):
// polynomials in FMAs whose one approximate instruction, a reciprocal, is
// corrected (within 3.8 ulps forward, see Gelu), where CUDA's erfcf alone took
// ~45 instructions per element.  For float16
// and bfloat16 (NarrowStorage, common.cuh) the CUDA kernels compute the same
// stable forms with the hardware's approximate exp2 and reciprocal and short
// polynomials, to a relative 2^-16.5 or better, which rounds to the same
// 2 ulps of the result (README.md, Conventions); where a derivative crosses
// zero (silu, gelu, mish near x = -1), the 16-bit form is factored so that
// the approximations reach the cancelling factor scaled down (by 0.2 or
// less) or not at all (gelu's Mills ratio is a polynomial), leaving mostly
// rounding errors there (tests/test_narrow_math.py checks every float16 and
// bfloat16 value).  The divisions and reciprocals of the float32 forms are
// CUDA's own IEEE sequences without their slow-path checks (common.cuh:
// reciprocal_from_one, divide_in_range), used only where those checks
// cannot fire, so the bits are unchanged.
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

  // Both sides are computed and one selected: no branch per element.
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const {
    const C below = alpha == C(0) ? C(0) : alpha * (x - threshold);
    const C upper = x > max_value ? max_value : x;
    const C capped = x < C(0) ? C(0) : upper;
    return x <= threshold ? below : (has_max ? capped : x);
  }

  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    const C inside = (x > C(0) && x < max_value) ? C(1) : C(0);
    return x <= threshold ? alpha : (has_max ? inside : C(1));
  }
};

// One of Relu's four formulas with the choice (alpha == 0, max_value given)
// fixed at compile time, the same expressions (elementwise.cuh: with_form):
// the compiler otherwise versions the loop body on both inside the loop.
template <typename C, bool AlphaZero, bool HasMax>
struct ReluForm {
  C alpha;
  C max_value;
  C threshold;

  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const {
    const C below = AlphaZero ? C(0) : alpha * (x - threshold);
    const C upper = x > max_value ? max_value : x;
    const C capped = x < C(0) ? C(0) : upper;
    return x <= threshold ? below : (HasMax ? capped : x);
  }

  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    const C inside = (x > C(0) && x < max_value) ? C(1) : C(0);
    return x <= threshold ? alpha : (HasMax ? inside : C(1));
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

// x y - p exactly, for p = rounded_product(x, y) (the same conditions): one
// FMA on the GPU, Dekker's product of halves in host builds (which never
// contract, and whose baseline build has no FMA instruction).  Both are exact,
// so both give the same bits.
template <typename C>
__device__ __forceinline__ C exact_product_error(C x, C y, C p) {
#ifdef FASTACT_HOST_COMPILER
  return product_error(Halves<C>(x), Halves<C>(y), p);
#else
  return fma(x, y, -p);
#endif
}

// ---------------------------------------------------------------------------
// The 16-bit paths' building blocks (see "Accuracy" above).
constexpr double kLog2e = 1.4426950408889634074;
// 2^-64: exp(t) is taken as ex2(t log2(e) + 64) 2^-64, so that the
// instruction's result stays normal (it flushes results below 2^-126) for
// every t above -131 ln 2 - 64 ln 2 = -135; the product by 2^-64 then
// rounds once, to a subnormal where the exact value is one (bfloat16 has
// float's exponent range, so its results can be float subnormals).
constexpr double kTwoToMinus64 = 5.421010862427522e-20;

// exp(t) 2^64, for t <= 64 ln 2 (44.3).
__device__ __forceinline__ float exp_scaled_narrow(float t) { return ex2_approx(fmaf(t, float(kLog2e), 64.0f)); }

// exp(-|z|) in [0, 1]: the math library's, or the scaled approximation for 16-bit results.
template <typename T, typename C>
__device__ __forceinline__ C exp_minus_abs(C z) {
  if constexpr (NarrowStorage<T>::value) {
    return exp_scaled_narrow(-fabs(z)) * C(kTwoToMinus64);
  } else {
    return exp(-fabs(z));
  }
}

// 1 / d for d in [1, 2^126): exact in float32/float64 (reciprocal_from_one),
// the approximate instruction for 16-bit results.
template <typename T, typename C>
__device__ __forceinline__ C reciprocal(C d) {
  if constexpr (NarrowStorage<T>::value) {
    return rcp_approx(d);
  } else {
    return reciprocal_from_one(d);
  }
}

// The logistic function without overflow for any z: e = exp(-|z|) and
// r = 1 / (1 + e) are both in (0, 1], and exactly, symmetrically in z,
//   sigmoid(z) = z >= 0 ? r : e r,   sigmoid'(z) = sigmoid(z) sigmoid(-z) = e r r
// (e r r has no cancellation in the tails, unlike s (1 - s)).
// complement() = 1 - sigmoid(z) = sigmoid(-z) = z >= 0 ? e r : r, also without cancellation.
template <typename C, typename T = C>
struct Logistic {
  C z, e, r;
  __device__ __forceinline__ explicit Logistic(C z_) : z(z_), e(exp_minus_abs<T>(z_)), r(reciprocal<T>(C(1) + e)) {}
  __device__ __forceinline__ C sigmoid() const { return z >= C(0) ? r : e * r; }
  __device__ __forceinline__ C complement() const { return z >= C(0) ? e * r : r; }
  __device__ __forceinline__ C slope() const { return e * r * r; }
};

// Exact gelu's Gaussian for float32 results on the GPU (kGpuFormsForFloat32,
// common.cuh), for 0 <= a <= kFloatTail = 16 (see Gelu), in FMAs; the
// polynomials come from tools/fit_gelu_mills.py.
//   Mills' ratio M(a) = Phi(-a) / phi(a) = t R(u), t = 1 / (1 + a/2),
//     u = 2t - 1 = 1 - 2w, R of degree 11 (relative error 2^-25.5, 2^-23.6
//     with Horner's roundings) on a in [0, 15] (beyond, every product with
//     the density underflows to 0; R stays finite to a = 16).  The variable
//     is w = 1 - t = a / (2 + a), nearly correctly rounded: q = a rcp(2 + a)
//     (the approximate reciprocal), then w = q + (a - q (a + 2)) / (a + 2),
//     the remainder with a + 2 unrounded (a - 2q is exact for a <= 2, where
//     it matters).  An error in the variable moves M's argument, by
//     a (2 + a) / 2 times w's relative error: little near a = 0, where t
//     itself would be off by its rounding, 2^-25 absolute; the results take
//     M as a M = 2 w R (forward: its relative slope in w stays below 1) and
//     as M - a (derivative: where the move is large, M is small beside a).
//   The density phi(a) 2^64 = 2^n E(f): the exponent 64 - c a^2
//     (c = log2(e) / 2) split exactly into an integer n and f in [-1/2, 1/2]
//     plus a low part: a^2 = s + s_low exactly (FMA), d = s c_hi rounded and
//     d_low its error; j = (64 + 1.5 2^23) - d rounds 64 - d to an integer,
//     64 - n = (64 + 1.5 2^23) - j exactly, and f = (64 - n) - d exactly (|f|
//     <= 1/2 on d's grid), then f - d_low - s c_low - s_low c, rounded (2^-25).
//     E(f) = 2^f / sqrt(2 pi), degree 6 (2^-25.0, 2^-23.3 with Horner), and
//     2^n is n added to E's exponent bits (j's bits shifted left by 23 are
//     n's: the offset 1.5 2^23 shifts out).  No approximate instruction
//     there: rounding the exponent to float alone would cost its ulp, a^2 ulps
//     of float (100 at a = 13.5), and ex2.approx has 2 ulps of its own.  The
//     shift by 2^64 keeps the density normal wherever a result is not 0
//     (a < 14.6; n >= -121 for a <= 16); the callers scale it back with the
//     last product, whose one rounding gives the subnormal results.
struct GaussianTailFloat {
  static constexpr float kC = 0.7213475108146667f;       // log2(e) / 2, rounded
  static constexpr float kCLow = 9.629815167500055e-09f;  // log2(e) / 2 - kC
  static constexpr float kShifted64 = 12582976.0f;        // 64 + 1.5 2^23
  static constexpr float kFloatTail = 16.0f;  // a's clamp: the density is 0 in float beyond (and n >= -121)

  float w, r, density;  // w = a / (2 + a), r = R(1 - 2w): M = (1 - w) r and a M = 2 w r; density = phi(a) 2^64

  __device__ __forceinline__ explicit GaussianTailFloat(float a) {
#if defined(FASTACT_HOST_COMPILER) && !defined(FASTACT_EMULATOR)
    const float r2 = 1.0f / (a + 2.0f);  // the cpu backend divides (then w is exact to its rounding)
#else
    const float r2 = rcp_approx(a + 2.0f);
#endif
    const float q = a * r2;
    w = fmaf(fmaf(-q, a, fmaf(-2.0f, q, a)), r2, q);  // q + (a - q (a + 2)) / (a + 2)
    const float u = fmaf(w, -2.0f, 1.0f);
    float p = 8.338668703800067e-05f;
    p = fmaf(p, u, -0.0001876759488368407f);
    p = fmaf(p, u, -0.00016918133769650012f);
    p = fmaf(p, u, 0.0010495063615962863f);
    p = fmaf(p, u, -0.001030183513648808f);
    p = fmaf(p, u, -0.002446470782160759f);
    p = fmaf(p, u, 0.008439690805971622f);
    p = fmaf(p, u, -0.0005886242142878473f);
    p = fmaf(p, u, -0.04602081701159477f);
    p = fmaf(p, u, 0.03609214350581169f);
    p = fmaf(p, u, 0.4153538942337036f);
    r = fmaf(p, u, 0.8427384495735168f);

    const float s = rounded_product(a, a);
    const float s_low = fmaf(a, a, -s);
    const float d = rounded_product(s, kC);
    const float d_low = fmaf(s, kC, -d);
    const float j = kShifted64 - d;
    const float f = ((kShifted64 - j) - d) - d_low;
    const float g = fmaf(s_low, -kC, fmaf(s, -kCLow, f));
    float e = 6.122086779214442e-05f;
    e = fmaf(e, g, 0.0005345802055671811f);
    e = fmaf(e, g, 0.0038372220005840063f);
    e = fmaf(e, g, 0.02214260771870613f);
    e = fmaf(e, g, 0.09583649784326553f);
    e = fmaf(e, g, 0.27652573585510254f);
    e = fmaf(e, g, 0.3989422917366028f);
    density = __int_as_float(int(unsigned(__float_as_int(e)) + (unsigned(__float_as_int(j)) << 23)));
  }
  // M(a) - a with two roundings, (r - a) - w r.
  __device__ __forceinline__ float mills_minus(float a) const { return fmaf(-w, r, r - a); }
};

// elu(x, alpha, scale): serves elu (scale 1) and selu, as PyTorch's elu kernel
// with poscoef = scale and negcoef = scale * alpha:
//   forward   x > 0: scale x;  x <= 0: negcoef expm1(x)  (expm1: no cancellation near 0)
//   derivative x > 0: scale;   x <= 0: negcoef exp(x)    (selu'(0) = scale alpha, PyTorch)
// 16-bit results: expm1(x) for x <= 0 as x P(x) on [-1/4, 0] (P a cubic,
// relative error 2^-21.7) and exp(x) - 1 below (exact subtraction, exp(x) >= 1/2
// excepted: |expm1| > 0.22 there, so exp's relative 2^-22 stays below 2^-19).
template <typename C>
struct Elu {
  C alpha;
  C scale;

  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const {
    if constexpr (NarrowStorage<T>::value) {
      const C near = x * fmaf(fmaf(fmaf(0.03773385286331177f, x, 0.1660640984773636f), x, 0.4999701678752899f), x,
                              0.9999997615814209f);
      const C far = ex2_approx(x * C(kLog2e)) - C(1);
      return x > C(0) ? scale * x : scale * alpha * (x < C(-0.25) ? far : near);
    } else {
      return x > C(0) ? scale * x : scale * alpha * expm1(x);
    }
  }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    if constexpr (NarrowStorage<T>::value) {
      return x > C(0) ? scale : scale * alpha * (exp_scaled_narrow(x) * C(kTwoToMinus64));
    } else {
      return x > C(0) ? scale : scale * alpha * exp(x);
    }
  }
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
// float32 results on the GPU (and in the emulator; not the cpu backend's, see
// kGpuFormsForFloat32), b = min(|x|, 16), from Mills' ratio M(b) = Phi(-b) / phi(b)
// and the density, in FMAs (GaussianTailFloat above), as the 16-bit derivative:
//   forward    max(x, 0) - b M(b) phi(b) = max(x, 0) - 2 w R phi(b)
//   derivative x < 0: phi(b) (M(b) - b);  x >= 0: 1 - phi(b) (M(b) - b)
// each with the density's 2^64 taken out by an exact product, so that the last
// operation rounds the result once, also where it is subnormal (M - b crosses 0
// at x = -0.75, where the derivative does: M's error is scaled by phi there,
// absolute 4e-8).  Errors against the float64 oracle over every float32 in
// [-15, 15] (emulator; tests/test_family.py: test_gelu_float32_gpu_form):
// forward 3.8 ulps (x in [-0.5, 0.5), where the roundings of w, R, E and two
// products add up; 3.5 in [-13, -1], 3.0 below -13, 1.7 above 0.5, 1 for
// |x| < 2^-20, where erfc gave x/2 exactly); derivative 4.4 ulps outside x in
// [-1, -0.5] (at x = -0.36, M / (M - b) = 1.6 scales M's error), absolute
// 1.3e-7 anywhere.  With CUDA's erfcf (~45 instructions per element alone)
// the forward kernel took 59 instructions per element, now 44.
// tanh form, with 0.5 (1 + tanh(u)) = sigmoid(2u) (no cancellation for x < 0) and
// u2 = 2u = x (k1 + k3 x^2):
//   forward    max(x, -kTail) sigmoid(u2)
//   derivative sigmoid(u2) + xc sigmoid'(u2) (k1 + 3 k3 xc^2),  xc = clamp(x, +-kTail)
// 16-bit results (a few float operations, no erfc):
//   exact forward: Phi(-a) = t 2^(P(t) - a^2 log2(e) / 2), t = 1 / (1 + 0.3 a),
//     P a degree-6 fit in t (relative error 2^-16.6 over a in [0, 14.5], in float);
//   exact derivative: with M(a) = Phi(-a) / phi(a) (Mills' ratio) = t R(u),
//     t = 1 / (1 + a/2), u = 2t - 1, R a degree-10 fit (2^-21.6, float):
//       x < 0:  phi(a) (M(a) - a);   x >= 0:  1 - phi(a) (M(a) - a)
//     where the derivative crosses zero (x = -0.75), M - a cancels but phi's
//     approximation only scales the difference;
//   tanh-form derivative: sigmoid(u2) (1 + xc sigmoid(-u2) u2'(xc)), the
//     factor crossing zero computed from r alone where x < 0 (Logistic::complement).
template <typename C>
struct Gelu {
  int approximate;  // 0: exact (erf), 1: the tanh form

  static constexpr double kSqrtHalf = 0.70710678118654752440;
  static constexpr double kSqrtHalfLow = -4.8336466567264567e-17;  // sqrt(1/2) - kSqrtHalf
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;
  static constexpr double kInvSqrt2PiE2 = 0.05399096651318805;  // e^-2 / sqrt(2 pi)
  static constexpr double kK1 = 2 * 0.79788456080286535588;  // 2 sqrt(2 / pi)
  static constexpr double kK3 = kK1 * 0.044715;
  static constexpr double kLog2InvSqrt2PiShifted = 62.674251935263839;  // 64 + log2(1 / sqrt(2 pi))

  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const { return approximate ? tanh_forward<T>(x) : exact_forward<T>(x); }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const { return approximate ? tanh_derivative<T>(x) : exact_derivative<T>(x); }

  template <typename T>
  __device__ __forceinline__ static C tanh_forward(C x) {
    return (x < C(-kTail) ? C(-kTail) : x) * Logistic<C, T>(u2(x)).sigmoid();
  }

  template <typename T>
  __device__ __forceinline__ static C tanh_derivative(C x) {
    const C xc = clamp(x, C(-kTail), C(kTail));
    const C slope = C(kK1) + C(3 * kK3) * xc * xc;  // u2'(xc)
    if constexpr (NarrowStorage<T>::value) {
      const Logistic<C, T> gate(u2(xc));
      return gate.sigmoid() * fmaf(xc * gate.complement(), slope, C(1));
    } else {
      const Logistic<C, T> gate(u2(xc));
      return gate.sigmoid() + gate.slope() * (xc * slope);
    }
  }

  template <typename T>
  __device__ __forceinline__ static C exact_forward(C x) {
    const C a = fabs(x) < C(kTail) ? fabs(x) : C(kTail);
    if constexpr (NarrowStorage<T>::value) {
      const C t = rcp_approx(fmaf(a, 0.3f, 1.0f));
      C p = 0.29304603113623423f;
      p = fmaf(p, t, -0.8077955216752357f);
      p = fmaf(p, t, 0.4389999123299627f);
      p = fmaf(p, t, 0.08444008872090769f);
      p = fmaf(p, t, 0.6128057776600693f);
      p = fmaf(p, t, 1.4411898977454287f);
      p = fmaf(p, t, 60.93732325685175f);  // P(t) + 64
      const C tail = ex2_approx(fmaf(a, a * C(-0.5 * kLog2e), p)) * (t * C(kTwoToMinus64));  // Phi(-a)
      return (x > C(0) ? x : C(0)) - a * tail;
    } else if constexpr (kGpuFormsForFloat32 && sizeof(C) == sizeof(float)) {
      // b Phi(-b) = 2 w R phi(b); the density times -2^-63 is exact wherever the result is normal
      // (where it is not, that product's rounding is below the result's ulp, 2 w R being below 1),
      // and the FMA rounds the result once.
      const float b = fabs(x) < GaussianTailFloat::kFloatTail ? fabs(x) : GaussianTailFloat::kFloatTail;
      const GaussianTailFloat g(b);
      return fmaf(g.w * g.r, g.density * (-2.0f * float(kTwoToMinus64)), x > C(0) ? x : C(0));
    } else {
      return (x > C(0) ? x : C(0)) - a * C(0.5) * erfc_over_sqrt2(a);
    }
  }

  template <typename T>
  __device__ __forceinline__ static C exact_derivative(C x) {
    const C a = fabs(x) < C(kTail) ? fabs(x) : C(kTail);
    if constexpr (NarrowStorage<T>::value) {
      const C t = reciprocal_from_one(fmaf(a, 0.5f, 1.0f));
      const C u = fmaf(t, 2.0f, -1.0f);
      C p = -0.00017911090062263852f;
      p = fmaf(p, u, 5.609803560981025e-05f);
      p = fmaf(p, u, 0.0010292985619812548f);
      p = fmaf(p, u, -0.001250191766200942f);
      p = fmaf(p, u, -0.002430890465766634f);
      p = fmaf(p, u, 0.008533587411712139f);
      p = fmaf(p, u, -0.0005933086195762016f);
      p = fmaf(p, u, -0.04603719402748768f);
      p = fmaf(p, u, 0.036092618686918904f);
      p = fmaf(p, u, 0.41535470951420866f);
      p = fmaf(p, u, 0.8427384512390488f);
      const C mills = t * p;
      const C density = ex2_approx(fmaf(a, a * C(-0.5 * kLog2e), C(kLog2InvSqrt2PiShifted))) * C(kTwoToMinus64);
      const C part = density * (mills - a);  // Phi(-a) - a phi(a)
      return x < C(0) ? part : C(1) - part;
    } else if constexpr (kGpuFormsForFloat32 && sizeof(C) == sizeof(float)) {
      // Phi(-b) - b phi(b) = phi(b) (M(b) - b), M - b (crossing 0 at x = -0.75) times 2^-64 exactly, so
      // that the last product or FMA rounds the result once, also where it is subnormal.
      const float b = fabs(x) < GaussianTailFloat::kFloatTail ? fabs(x) : GaussianTailFloat::kFloatTail;
      const GaussianTailFloat g(b);
      const C mills_minus = g.mills_minus(b) * float(kTwoToMinus64);  // normal, and so is the density
      return x < C(0) ? mills_minus * g.density : fmaf(mills_minus, -g.density, C(1));
    } else {
      const C cdf = (signbit(x) ? C(0) : C(1)) + copysign(erfc_over_sqrt2(a) * C(0.5), -x);
      const C p = rounded_product(a, a);
      const C g = C(2) - p * C(0.5);
      const C g_low = (C(2) - g) - p * C(0.5);
      const C density = copysign(a, x) * exp(g) * C(kInvSqrt2PiE2);  // x phi(x) but for the correction
      return cdf + (density + density * (g_low - exact_product_error(a, a, p) * C(0.5)));
    }
  }

  // erfc(a / sqrt2) for 0 <= a <= kTail, to erfc's own accuracy: z is
  // a sqrt(1/2) rounded and dz its rounding error (the product's, exactly,
  // plus a times the constant's), and to first order in dz
  //   erfc(z + dz) = erfc(z) (1 - 2 z dz)
  // (the rest of the relative slope, below 1/z, leaves |dz| / z <= 2^-24 (2^-53)).
  __device__ __forceinline__ static C erfc_over_sqrt2(C a) {
    const C z = rounded_product(a, C(kSqrtHalf));
    const C dz = exact_product_error(a, C(kSqrtHalf), z) + a * C((kSqrtHalf - double(C(kSqrtHalf))) + kSqrtHalfLow);
    const C tail = erfc(z);
    return tail - tail * (C(2) * z * dz);
  }

  // x (k1 + k3 x^2): +-inf for huge x, which the logistic takes.
  __device__ __forceinline__ static C u2(C x) { return x * (C(kK1) + C(kK3) * x * x); }
};

// One GELU form with the choice fixed at compile time (elementwise.cuh: with_form).
template <typename C, int Approximate>
struct GeluForm {
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const {
    if constexpr (Approximate) return Gelu<C>::template tanh_forward<T>(x);
    else return Gelu<C>::template exact_forward<T>(x);
  }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    if constexpr (Approximate) return Gelu<C>::template tanh_derivative<T>(x);
    else return Gelu<C>::template exact_derivative<T>(x);
  }
};

// sigmoid: forward sigmoid(x); derivative e r r (see Logistic).
template <typename C>
struct Sigmoid {
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const { return Logistic<C, T>(x).sigmoid(); }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const { return Logistic<C, T>(x).slope(); }
};

// silu (swish): forward max(x, -kTail) sigmoid(x);
// derivative sigmoid(xc) + xc e r r, xc = clamp(x, +-kTail) (PyTorch's
// s (1 + x (1 - s)), the same function without the cancellation).
// 16-bit results: s (1 + xc sigmoid(-xc)), the factor that crosses zero
// (x = -1.28) from r alone where x < 0 (Logistic::complement).
template <typename C>
struct Silu {
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const { return (x < C(-kTail) ? C(-kTail) : x) * Logistic<C, T>(x).sigmoid(); }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    const C xc = clamp(x, C(-kTail), C(kTail));
    const Logistic<C, T> gate(xc);
    if constexpr (NarrowStorage<T>::value) {
      return gate.sigmoid() * fmaf(xc, gate.complement(), C(1));
    } else {
      return gate.sigmoid() + xc * gate.slope();
    }
  }
};

// softplus: forward max(x, 0) + log1p(exp(-|x|)) (no overflow); derivative sigmoid(x).
// 16-bit results: log1p(e) = e L(e) on e in [0, 1], L a degree-6 fit
// (relative error 2^-19.5, in float).
template <typename C>
struct Softplus {
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const {
    const C e = exp_minus_abs<T>(x);
    if constexpr (NarrowStorage<T>::value) {
      C p = 0.014202993363142014f;
      p = fmaf(p, e, -0.06658882647752762f);
      p = fmaf(p, e, 0.1494358479976654f);
      p = fmaf(p, e, -0.2351495623588562f);
      p = fmaf(p, e, 0.3311208486557007f);
      p = fmaf(p, e, -0.49987196922302246f);
      p = fmaf(p, e, 0.9999987483024597f);
      return fmaf(e, p, x > C(0) ? x : C(0));
    } else {
      return (x > C(0) ? x : C(0)) + log1p(e);
    }
  }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const { return Logistic<C, T>(x).sigmoid(); }
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
// 16-bit results: 4 e r r with r = 1 / (1 + e) and e scaled by 2^64 (which
// serves the far tail too).
template <typename C>
struct Tanh {
  static constexpr double kFar = 40.0;

  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const { return tanh(x); }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    if constexpr (NarrowStorage<T>::value) {
      const C e_scaled = exp_scaled_narrow(C(-2) * fabs(x));  // e 2^64
      const C r = rcp_approx(fmaf(e_scaled, C(kTwoToMinus64), C(1)));
      return e_scaled * C(4 * kTwoToMinus64) * r * r;
    } else {
      const bool far = fabs(x) >= C(kFar);
      const C e = exp(far ? C(64) - C(2) * fabs(x) : C(-2) * fabs(x));  // e^64 e^-2|x| where far
      const C d = C(1) + e;
      const C d_low = e - (d - C(1));
      const C p = rounded_product(d, d);
      const C low = exact_product_error(d, d, p) + C(2) * d * d_low;  // (1 + e)^2 - p, but for d_low^2
      const C y = divide_in_range(C(4) * e, p);
      return far ? C(4) * e * C(kExpMinus64) : y - y * divide_in_range(low, p);
    }
  }
};

// hard_sigmoid, as PyTorch's hardsigmoid (the same rounding: a true division by 6):
//   forward min(max(x + 3, 0), 6) / 6;  derivative 1/6 on (-3, 3), else 0.
template <typename C>
struct HardSigmoid {
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const { return divide_in_range(clamp(x + C(3), C(0), C(6)), C(6)); }
  template <typename T = C>
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
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const {
    const C xc = x < C(-3) ? C(-3) : x;
    return xc * (xc + C(3) < C(6) ? xc + C(3) : C(6)) / C(6);  // IEEE: x = inf must give inf
  }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    const C inside = rounded_product(x, C(1.0 / 3.0)) + C(0.5);
    return x <= C(-3) ? C(0) : (x < C(3) ? inside : C(1));
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
// 16-bit results: ex scaled by 2^64 (exp_scaled_narrow), and the derivative
// as tsp (1 + xc g), g = 4 w / (n d) = 4 (1 + ex) / ((2 + ex) d): the factor
// that crosses zero (x = -1.19) takes ex's approximation only through g's
// relative slope (0.2), and the far left is tsp (1 + xc) with no special
// case (ex rounds once, to float's subnormal grid, 2^-149, far below
// bfloat16's 2^-133).  xc <= 12 there: beyond, mish' is 1 within 2^-30.
template <typename C>
struct Mish {
  static constexpr double kCap = 40.0;
  static constexpr double kFar = -64.0;
  static constexpr double kNarrowCap = 12.0;

  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const {
    C w, d;
    const C xc = x < C(kCap) ? x : C(kCap);
    if constexpr (NarrowStorage<T>::value) {
      const C ex = exp_scaled_narrow(xc) * C(kTwoToMinus64);
      const C n = ex * (ex + C(2));
      return (x < C(-kTail) ? C(-kTail) : x) * (n * rcp_approx(n + C(2)));
    } else {
      return (x < C(-kTail) ? C(-kTail) : x) * gate(exp(xc), w, d);
    }
  }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C x) const {
    if constexpr (NarrowStorage<T>::value) {
      const C xc = clamp(x, C(-kTail), C(kNarrowCap));
      const C ex = exp_scaled_narrow(xc) * C(kTwoToMinus64);
      const C two_ex = ex + C(2);
      const C n = ex * two_ex;
      const C d = n + C(2);
      const C tsp = n * rcp_approx(d);
      const C g = fmaf(ex, C(4), C(4)) * rcp_approx(two_ex * d);
      return tsp * fmaf(xc, g, C(1));
    } else {
      const C xc = clamp(x, C(-kTail), C(kCap));
      const bool far_left = xc < C(kFar);
      // The shift as arithmetic, not exp(far_left ? a : b): on the host, g++ made
      // the selection two vector exps, one of them out of range for most lanes,
      // and libmvec takes its scalar fallback for such lanes (measured: mish'
      // 20 -> 14 ns per element; still slow, see CONTRIBUTING.md, "The cpu backend").
      const C ex = exp(xc - C(kFar) * C(far_left));  // e^(x + 64) where far left
      C w, d;
      const C tsp = gate(ex, w, d);
      const C inv_d = reciprocal_from_one(d);  // one division, not two: on sm_90 each double one is a call, and they spilled
      return far_left ? (C(1) + xc) * ex * C(kExpMinus64) : tsp + xc * (C(4) * w * inv_d * inv_d);
    }
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
  template <typename T = C>
  __device__ __forceinline__ C forward(C x) const { return x; }
  template <typename T = C>
  __device__ __forceinline__ C derivative(C) const { return C(1); }
};

}  // namespace fastact
