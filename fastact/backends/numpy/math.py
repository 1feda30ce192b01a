"""The NumPy backend's math: one forward and one backward per kernel, side by side.

Each ``*_forward`` / ``*_backward`` takes the kernel's parameters and the
compute dtype and returns a *chunk function* for :func:`engine.run`:
``f(scratch, out, x)`` or ``f(scratch, out, dy, x)`` working on one
cache-resident block in the compute dtype.  Parameters are turned into
compute-dtype scalars once, so float32 math stays float32 (as in the CUDA
functors, which makes the two backends agree bit for bit on the ReLU family).

Selections are written as exact arithmetic on 0/1 masks rather than
``np.where``/``copyto(where=)`` (4-10x slower per block, measured): for
h in {0, 1}, ``h + (1 - h) * a`` is exactly 1 or a, and ``u * h + l`` with
``l == 0`` where ``h == 1`` is exactly u or l, provided the unselected side is
finite — which is why the branches are evaluated on ``max(x, t)`` /
``min(x, t)``.  NaN inputs are fixed up per block, only when a block has one.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from ...activations import ROWWISE_KERNELS
from .engine import Scratch

ChunkFn = Callable[..., object]


def _nan_mask(scratch, x: np.ndarray) -> np.ndarray | None:
    """Where x is NaN, or None when the block has no NaN (one fast reduction in the common case)."""
    if x.size == 0 or not np.isnan(np.minimum.reduce(x, axis=None)):
        return None
    return np.isnan(x, out=scratch.mask(7))


def _put_nan(out: np.ndarray, nan_mask: np.ndarray | None) -> None:
    if nan_mask is not None:
        out[nan_mask] = np.nan


# --------------------------------------------------------------------------- #
# relu(x, alpha, max_value, threshold) — serves relu, leaky_relu, relu6 and
# thresholded_relu.
#   forward:  x <= t: a * (x - t) (0 when a == 0); x > t: x, or min(max(x, 0), m)
#   backward: x <= t: a;  x > t: 1, or 1 on (0, m) and 0 elsewhere
# --------------------------------------------------------------------------- #
def relu_forward(alpha: float, max_value: float | None, threshold: float, dtype: np.dtype) -> ChunkFn:
    cast = dtype.type
    a, t = cast(alpha), cast(threshold)
    m = None if max_value is None else cast(max_value)

    if t == 0 and m is None and a == 0:
        def relu(s, out, x):
            np.maximum(x, s.full(0), out=out)  # NaN-propagating
        return relu

    if t == 0 and m is None:
        # max(x, a*x) for a <= 1 and min(x, a*x) for a > 1 select x above 0 and
        # a*x below it exactly, NaN and infinities included; a == 0 is above.
        pick = np.maximum if a <= 1 else np.minimum

        def leaky_relu(s, out, x):
            ax = np.multiply(x, a, out=s.tmp(0))
            pick(x, ax, out=out)
        return leaky_relu

    if m is not None and t <= 0:
        # At or below t <= 0 the cap clip(x, 0, m) is 0, and above t the slope
        # term a * (min(x, t) - t) is 0: their sum is exact, with no mask.
        def capped_leaky_relu(s, out, x):
            below = None
            if a != 0:
                below = np.minimum(x, s.full(t), out=s.tmp(0))
                np.subtract(below, t, out=below)
                np.multiply(below, a, out=below)
            np.maximum(x, s.full(0), out=out)
            np.minimum(out, s.full(m), out=out)
            if below is not None:
                np.add(out, below, out=out)
        return capped_leaky_relu

    relu_general = _relu_general(a, m, t)
    if a == 0 and m is None:
        def thresholded_relu(s, out, x):
            above = np.greater(x, t, out=s.mask(0))
            if x.size and np.fmin.reduce(x, axis=None) == -np.inf:  # fmin: NaN-ignoring
                relu_general(s, out, x)  # x * 0 would give NaN at -inf: the general form handles it
                return
            np.multiply(x, above, out=out)  # x above t, 0 below; NaN stays NaN (NaN * 0)
        return thresholded_relu

    return relu_general


def _relu_general(a, m, t):
    """relu(x; a, m, t) for any parameters: exact selections on max(x, t) / min(x, t)."""

    def relu_general(s, out, x):
        above = np.greater(x, t, out=s.mask(0))
        upper = np.maximum(x, s.full(t), out=s.tmp(0))  # x above t, t (finite) below
        if m is not None:
            np.maximum(upper, s.full(0), out=upper)
            np.minimum(upper, s.full(m), out=upper)
        if a == 0:
            np.multiply(upper, above, out=out)
            return
        lower = np.minimum(x, s.full(t), out=s.tmp(1))  # x below t, t above: a*(t-t) == 0
        np.subtract(lower, t, out=lower)
        np.multiply(lower, a, out=lower)
        np.multiply(upper, above, out=upper)
        np.add(upper, lower, out=out)
    return relu_general


def relu_backward(alpha: float, max_value: float | None, threshold: float, dtype: np.dtype) -> ChunkFn:
    cast = dtype.type
    a, t = cast(alpha), cast(threshold)
    m = None if max_value is None else cast(max_value)

    def slope_one_where(s, x):
        """Mask of where the derivative is 1 (x > t, and 0 < x < m when capped)."""
        ones = np.greater(x, t, out=s.mask(0))
        if m is not None:
            np.logical_and(ones, np.less(x, m, out=s.mask(1)), out=ones)
            if t < 0:
                np.logical_and(ones, np.greater(x, 0, out=s.mask(1)), out=ones)
        return ones

    if a == 0:
        def relu_grad(s, out, dy, x):
            nan = _nan_mask(s, x)
            np.multiply(dy, slope_one_where(s, x), out=out)
            _put_nan(out, nan)
        return relu_grad

    def leaky_relu_grad(s, out, dy, x):
        nan = _nan_mask(s, x)
        slope = s.tmp(0)
        np.copyto(slope, slope_one_where(s, x))
        if m is None and 0 < a <= 1:
            np.maximum(slope, s.full(a), out=slope)  # {0, 1} -> {a, 1}
        else:
            below = np.less_equal(x, t, out=s.mask(2))
            below_slope = np.multiply(s.full(a), below, out=s.tmp(1))  # a where x <= t, else 0
            np.add(slope, below_slope, out=slope)  # exactly 1, a or 0
        np.multiply(dy, slope, out=out)
        _put_nan(out, nan)
    return leaky_relu_grad


# --------------------------------------------------------------------------- #
# prelu(x, alpha):  y = x if x > 0 else alpha * x
#   dx = dy if x > 0 else alpha * dy;  dalpha = sum(0 if x > 0 else x * dy)
# ``alpha`` arrives as the block's slice of the (broadcast) slope array.
# --------------------------------------------------------------------------- #
def _finite(values: np.ndarray) -> bool:
    """True when every value is finite (one reduction; an overflowing sum only costs the slow path)."""
    return bool(np.isfinite(np.add.reduce(values, axis=None)))


def prelu_forward(s, out, x, alpha):
    if not _finite(alpha):
        # inf/NaN slopes must not leak into x > 0 through 0 * alpha: true select.
        np.copyto(out, np.where(np.greater(x, 0), x, alpha * x))
        return
    positive = np.maximum(x, s.full(0), out=s.tmp(0))
    negative = np.minimum(x, s.full(0), out=s.tmp(1))
    np.multiply(negative, alpha, out=negative)
    np.add(positive, negative, out=out)  # exactly x or alpha * x (the other side is 0)


def _prelu_slope(s, x, alpha):
    """alpha where x <= 0, 1 where x > 0 (exactly, for finite alpha)."""
    above = np.greater(x, 0, out=s.mask(0))
    if not _finite(alpha):
        return np.where(above, 1, alpha).astype(x.dtype, copy=False)
    slope = np.subtract(s.full(1), above, out=s.tmp(0))  # 1 where x <= 0
    np.multiply(slope, alpha, out=slope)
    np.add(slope, above, out=slope)
    return slope


def _prelu_contribution(s, dy, x):
    """0 where x > 0, else x * dy (exactly, whatever dy holds where x > 0)."""
    contribution = np.minimum(x, s.full(0), out=s.tmp(1))
    np.multiply(contribution, dy, out=contribution)
    if not _finite(contribution):
        # dy (or x) has inf/NaN somewhere: recompute with a true select, so that
        # x > 0 contributes exactly 0 whatever dy holds there.
        np.copyto(contribution, np.where(np.greater(x, 0), 0, x * dy))
    return contribution


def prelu_backward(s, out, dy, x, alpha):
    """dx into ``out``; returns this block's dalpha contribution, reduced to alpha's slice shape."""
    nan = _nan_mask(s, x)
    partial = reduce_to(_prelu_contribution(s, dy, x), alpha.shape)
    np.multiply(dy, _prelu_slope(s, x, alpha), out=out)
    _put_nan(out, nan)
    return partial


def prelu_backward_elementwise(s, out, dalpha, dy, x, alpha):
    """Per-element alpha (x's shape): dalpha is elementwise, no reduction."""
    nan = _nan_mask(s, x)
    contribution = _prelu_contribution(s, dy, x)
    slope = _prelu_slope(s, x, alpha)
    np.multiply(dy, slope, out=out)
    np.copyto(dalpha, contribution)
    _put_nan(out, nan)


def reduce_to(values: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum over the axes where ``shape`` is 1 (keepdims), in float64."""
    axes = tuple(i for i, (n, k) in enumerate(zip(values.shape, shape)) if k == 1 and n != 1)
    return np.add.reduce(values, axis=axes, dtype=np.float64, keepdims=True) if axes else values.astype(np.float64)


# =========================================================================== #
# The wider family (elu ... mish, linear).  Each section states the exact forms used, so
# that the CUDA functor can mirror them: stable forms that never overflow
# (every exp gets an argument <= 0, or a clamped one) and never produce
# inf * 0 for infinite x.  Those forms are exact selections or smooth, so NaN
# in x propagates by itself unless a section says otherwise.
# =========================================================================== #

# Where smooth gates are exactly 0 or 1 in float32 and float64: exp(-800) == 0.
# Multiplicands are clamped to [-TAIL, TAIL] so that x = -inf times a gate of 0
# gives 0 (the limit) rather than NaN; for finite x the clamp changes nothing
# that the gate does not already zero.
TAIL = 800.0


def _logistic(s, z: np.ndarray, e_slot: int, r_slot: int) -> tuple[np.ndarray, np.ndarray]:
    """e = exp(-|z|) and r = 1 / (1 + e), both in (0, 1]: no overflow for any z.

    From them, exactly and symmetrically in z:
        sigmoid(z)  = max(e, z >= 0) * r       (e*r below 0, r above)
        sigmoid'(z) = sigmoid(z) * sigmoid(-z) = e * r * r
    """
    e = np.abs(z, out=s.tmp(e_slot))
    np.negative(e, out=e)
    np.exp(e, out=e)
    r = np.add(e, s.full(1), out=s.tmp(r_slot))
    np.reciprocal(r, out=r)
    return e, r


def _sigmoid_into(s, out: np.ndarray, z: np.ndarray, e: np.ndarray, r: np.ndarray) -> np.ndarray:
    """sigmoid(z) = max(e, z >= 0) * r into out (z is read before out is written)."""
    above = np.greater_equal(z, s.full(0), out=s.mask(0))
    np.maximum(e, above, out=out)  # 1 where z >= 0, e below; NaN stays NaN
    np.multiply(out, r, out=out)
    return out


def _sigmoid_slope_into(out: np.ndarray, e: np.ndarray, r: np.ndarray) -> np.ndarray:
    """sigmoid'(z) = e * r * r (no cancellation in the tails, unlike s * (1 - s))."""
    np.multiply(e, r, out=out)
    np.multiply(out, r, out=out)
    return out


def _clamped(s, x: np.ndarray, low: float, high: float, slot: int) -> np.ndarray:
    """x clamped to [low, high] in tmp(slot); NaN stays NaN."""
    c = np.maximum(x, s.full(low), out=s.tmp(slot))
    return np.minimum(c, s.full(high), out=c)


# --------------------------------------------------------------------------- #
# elu(x, alpha, scale) — serves elu (scale 1) and selu.  As PyTorch's elu
# kernel, with poscoef = scale and negcoef = scale * alpha:
#   forward:  scale * max(x, 0) + negcoef * expm1(min(x, 0))
#             (each side is exactly 0 where the other applies)
#   backward: x > 0: scale;  x <= 0: negcoef * exp(x)   (selu'(0) = scale*alpha)
# --------------------------------------------------------------------------- #
def elu_forward(alpha: float, scale: float, dtype: np.dtype) -> ChunkFn:
    cast = dtype.type
    positive, negative = cast(scale), cast(scale) * cast(alpha)

    def elu(s, out, x):
        below = np.minimum(x, s.full(0), out=s.tmp(0))
        np.expm1(below, out=below)
        np.multiply(below, negative, out=below)
        above = np.maximum(x, s.full(0), out=s.tmp(1))
        if positive != 1:
            np.multiply(above, positive, out=above)
        np.add(above, below, out=out)
    return elu


def elu_backward(alpha: float, scale: float, dtype: np.dtype) -> ChunkFn:
    cast = dtype.type
    positive, negative = cast(scale), cast(scale) * cast(alpha)

    def elu_grad(s, out, dy, x):
        slope = np.minimum(x, s.full(0), out=s.tmp(0))
        np.exp(slope, out=slope)
        np.multiply(slope, negative, out=slope)
        np.multiply(slope, np.less_equal(x, s.full(0), out=s.mask(0)), out=slope)  # NaN * 0 stays NaN
        above = np.greater(x, s.full(0), out=s.mask(1))
        if positive == 1:
            np.add(slope, above, out=slope)
        else:
            np.add(slope, np.multiply(above, positive, out=s.tmp(1)), out=slope)
        np.multiply(dy, slope, out=out)
    return elu_grad


# --------------------------------------------------------------------------- #
# erfc for gelu: for z >= 0 (or NaN),
#   erfc(z) = t * exp(f(y) - z*z),  t = 2 / (2 + z),  y = 2t - 1,
# f a Chebyshev series in y fitted to log(erfcx(z) / t) (tools/fit_erfc.py,
# the form of Numerical Recipes 3rd ed. 6.2.2), summed by Clenshaw's
# recurrence.  One formula for all z >= 0, no region selection; the relative
# error is the first dropped coefficient: < 1e-17 with 27 terms (float64),
# < 1e-8 with 12 (float32).  NumPy has no erf, and scipy is not a dependency.
# gelu's z is a / sqrt2, so z*z = a*a/2, which the caller passes exactly as
# hi + lo (Dekker's square, _half_square): the exponent's rounding is what
# grows in the tail (a relative z*z ulps: 93 ulps of float32 in gelu(-11.4)),
# so f - hi is summed with its rounding error r (Knuth's TwoSum) and
#   exp(f - hi - lo) = exp(f - hi rounded) (1 + r - lo).
# t = K / (K + a) with K = 2 sqrt2 (one rounding fewer than from z); its
# rounding and the float32 series leave erfc within about 6 ulps of float32
# (NumPy's float32 exp is within 2.5).
# --------------------------------------------------------------------------- #
ERFC_CHEBYSHEV = (
    -6.5132685989085472e-1, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.5615147868086316e-3,
    -9.4659534448203687e-4, 3.6683949785276145e-4, 4.2523324806907772e-5, -2.0278578112534243e-5,
    -1.6242900046470255e-6, 1.3036558355805232e-6, 1.5626441722066143e-8, -8.5238095914926543e-8,
    6.5290544390988515e-9, 5.0593434955514689e-9, -9.9136415649303309e-10, -2.2736512229318359e-10,
    9.6467911020155268e-11, 2.3940380830391147e-12, -6.8860275264975534e-12, 8.9448792730907257e-13,
    3.1309213993429581e-13, -1.1270822361367252e-13, 3.8109052551892321e-16, 7.106097613609237e-15,
    -1.5230282014571043e-15, -9.457494571291234e-17, 1.210237189224279e-16,
)
ERFC_TERMS = {np.dtype(np.float32): 12, np.dtype(np.float64): 27}
TWO_SQRT2 = 2.8284271247461900976  # 2 / (2 + a / sqrt2) = 2 sqrt2 / (2 sqrt2 + a)
# Dekker's split: a * SPLIT - (a * SPLIT - a) keeps the upper half of a's significand.
SPLIT = {np.dtype(np.float32): 4097.0, np.dtype(np.float64): 134217729.0}  # 2**12 + 1, 2**27 + 1


def _half_square(s, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a*a/2 as hi + lo exactly (hi rounded), in tmp slots 1 and 3 (4 and 5 scratch).

    Dekker's product without an FMA: with a = ah + al, ah holding the upper
    half of the significand, the half products are exact and
    a*a - fl(a*a) = ((ah*ah - fl(a*a)) + 2*ah*al) + al*al.  0 <= a <= TAIL.
    """
    hi = np.multiply(a, a, out=s.tmp(1))
    scaled = np.multiply(a, s.full(SPLIT[s.dtype]), out=s.tmp(4))
    ah = np.subtract(scaled, a, out=s.tmp(5))
    np.subtract(scaled, ah, out=ah)
    al = np.subtract(a, ah, out=scaled)
    lo = np.multiply(ah, ah, out=s.tmp(3))
    np.subtract(lo, hi, out=lo)
    cross = np.multiply(ah, al, out=ah)
    np.add(cross, cross, out=cross)
    np.add(lo, cross, out=lo)
    np.add(lo, np.multiply(al, al, out=al), out=lo)
    np.multiply(hi, s.full(0.5), out=hi)
    np.multiply(lo, s.full(0.5), out=lo)
    return hi, lo


def _erfc_into(s, out: np.ndarray, a: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """erfc(a / sqrt2) for a >= 0 (or NaN) into out (scratch slots 10-14), with a*a/2 == hi + lo."""
    coefficients = ERFC_CHEBYSHEV[: ERFC_TERMS[s.dtype]]
    t = np.add(a, s.full(TWO_SQRT2), out=s.tmp(10))
    np.divide(s.full(TWO_SQRT2), t, out=t)
    y2 = np.multiply(t, s.full(4), out=s.tmp(11))
    np.subtract(y2, s.full(2), out=y2)  # 2y = 4t - 2
    b1, b2, product = s.tmp(12), s.tmp(13), s.tmp(14)
    b1.fill(coefficients[-1])
    b2.fill(0)
    for c in coefficients[-2:0:-1]:  # b_k = 2y b_(k+1) - b_(k+2) + c_k
        np.multiply(y2, b1, out=product)
        np.subtract(product, b2, out=b2)
        np.add(b2, c, out=b2)
        b1, b2 = b2, b1
    # f = c_0 + y b_1 - b_2
    f = np.multiply(y2, b1, out=product)
    np.multiply(f, s.full(0.5), out=f)
    np.subtract(f, b2, out=f)
    np.add(f, coefficients[0], out=f)
    # exponent = f - hi rounded; r = (f - hi) - exponent exactly (TwoSum)
    exponent = np.subtract(f, hi, out=b2)
    back = np.subtract(exponent, f, out=b1)
    r = np.subtract(exponent, back, out=y2)
    np.subtract(f, r, out=r)
    np.subtract(r, np.add(back, hi, out=back), out=r)
    np.subtract(r, lo, out=r)
    np.exp(exponent, out=exponent)
    np.multiply(exponent, t, out=exponent)
    np.multiply(r, exponent, out=r)
    return np.add(exponent, r, out=out)


# --------------------------------------------------------------------------- #
# gelu(x, approximate)
# exact, with a = min(|x|, TAIL), Phi the normal CDF, phi its density:
#   forward:  max(x, 0) - a/2 * erfc(a/sqrt2)        (= x Phi(x), both signs,
#             without the cancellation of 1 + erf(x/sqrt2) for x < 0)
#   backward: Phi(x) + x phi(x), with Phi(x) = [x >= +0] + copysign(erfc(a/sqrt2)/2, -x)
#             and x phi(x) = copysign(a, x) * exp(-a*a/2) / sqrt(2 pi)
# a*a/2 = hi + lo exactly (Dekker, _half_square) in both: erfc's exponent
# (above), and the density as (g, g_low) = 2 - hi by Fast2Sum (g exact for
# hi >= 1; the shift by 2 keeps exp(g) normal where the density, a times
# larger, is): exp(-a*a/2) / sqrt(2 pi) = exp(g) (1 + g_low - lo) e**-2 / sqrt(2 pi).
# The CUDA functor Gelu does the same (its erfc is the library's: it carries
# a/sqrt2 as z + dz and takes erfc(z) (1 - 2 z dz)).
# tanh form, u2 = 2 sqrt(2/pi) (x + 0.044715 x^3) = x (k1 + k3 x^2), using
# 0.5 (1 + tanh(u)) = sigmoid(2u) (no cancellation for x < 0):
#   forward:  max(x, -TAIL) * sigmoid(u2)
#   backward: sigmoid(u2) + xc * sigmoid'(u2) * (k1 + 3 k3 xc^2), xc = clamp(x, +-TAIL)
# --------------------------------------------------------------------------- #
INV_SQRT_2PI_E2 = 0.05399096651318805  # e**-2 / sqrt(2 pi)
GELU_K1 = 2 * 0.79788456080286535588  # 2 sqrt(2/pi)
GELU_K3 = GELU_K1 * 0.044715


def _gelu_tail(s, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a, hi, lo, erfc(a/sqrt2)) with a = min(|x|, TAIL) and a*a/2 == hi + lo, in tmp slots 0, 1, 3, 2."""
    a = np.abs(x, out=s.tmp(0))
    np.minimum(a, s.full(TAIL), out=a)
    hi, lo = _half_square(s, a)
    return a, hi, lo, _erfc_into(s, s.tmp(2), a, hi, lo)


def gelu_forward(approximate: bool, dtype: np.dtype) -> ChunkFn:
    if approximate:
        return _gelu_tanh_forward

    def gelu(s, out, x):
        a, _, _, tail = _gelu_tail(s, x)
        np.multiply(tail, a, out=tail)
        np.multiply(tail, s.full(0.5), out=tail)
        np.subtract(np.maximum(x, s.full(0), out=s.tmp(0)), tail, out=out)
    return gelu


def gelu_backward(approximate: bool, dtype: np.dtype) -> ChunkFn:
    if approximate:
        return _gelu_tanh_backward

    def gelu_grad(s, out, dy, x):
        a, hi, lo, tail = _gelu_tail(s, x)
        cdf = np.multiply(tail, s.full(0.5), out=tail)
        np.copysign(cdf, np.negative(x, out=s.tmp(4)), out=cdf)
        np.add(cdf, np.logical_not(np.signbit(x, out=s.mask(0)), out=s.mask(0)), out=cdf)
        g = np.subtract(s.full(2), hi, out=s.tmp(4))
        correction = np.subtract(s.full(2), g, out=s.tmp(5))
        np.subtract(correction, hi, out=correction)  # g_low: 2 - hi == g + g_low
        np.subtract(correction, lo, out=correction)
        density = np.exp(g, out=g)
        np.multiply(np.copysign(a, x, out=a), density, out=density)
        np.multiply(density, s.full(INV_SQRT_2PI_E2), out=density)
        np.multiply(correction, density, out=correction)
        np.add(density, correction, out=density)
        np.add(cdf, density, out=cdf)
        np.multiply(dy, cdf, out=out)
    return gelu_grad


def _gelu_u2(s, x: np.ndarray) -> np.ndarray:
    """x (k1 + k3 x^2) in tmp(2); +-inf for huge x, which sigmoid takes."""
    u2 = np.multiply(x, x, out=s.tmp(2))
    np.multiply(u2, s.full(GELU_K3), out=u2)
    np.add(u2, s.full(GELU_K1), out=u2)
    return np.multiply(u2, x, out=u2)


def _gelu_tanh_forward(s, out, x):
    u2 = _gelu_u2(s, x)
    e, r = _logistic(s, u2, 0, 1)
    gate = _sigmoid_into(s, u2, u2, e, r)
    np.multiply(np.maximum(x, s.full(-TAIL), out=s.tmp(0)), gate, out=out)


def _gelu_tanh_backward(s, out, dy, x):
    xc = _clamped(s, x, -TAIL, TAIL, 3)
    u2 = _gelu_u2(s, xc)
    e, r = _logistic(s, u2, 0, 1)
    gate = _sigmoid_into(s, s.tmp(4), u2, e, r)
    slope = _sigmoid_slope_into(e, e, r)
    du2 = np.multiply(xc, xc, out=u2)
    np.multiply(du2, s.full(3 * GELU_K3), out=du2)
    np.add(du2, s.full(GELU_K1), out=du2)
    np.multiply(du2, xc, out=du2)
    np.multiply(slope, du2, out=slope)
    np.add(slope, gate, out=slope)
    np.multiply(dy, slope, out=out)


# --------------------------------------------------------------------------- #
# sigmoid, silu (= swish), softplus, with e = exp(-|x|), r = 1/(1+e):
#   sigmoid:  forward max(e, x >= 0) r;   backward e r r
#   silu:     forward max(x, -TAIL) sigmoid(x);
#             backward sigmoid(xc) + xc e r r, xc = clamp(x, +-TAIL)  (PyTorch:
#             s (1 + x (1 - s)), the same function without the cancellation)
#   softplus: forward max(x, 0) + log1p(e);   backward sigmoid(x)
# --------------------------------------------------------------------------- #
def _sigmoid(s, out, x):
    e, r = _logistic(s, x, 0, 1)
    _sigmoid_into(s, out, x, e, r)


def _sigmoid_grad(s, out, dy, x):
    e, r = _logistic(s, x, 0, 1)
    np.multiply(dy, _sigmoid_slope_into(e, e, r), out=out)


def _softplus_grad(s, out, dy, x):
    e, r = _logistic(s, x, 0, 1)
    np.multiply(dy, _sigmoid_into(s, e, x, e, r), out=out)


def _silu(s, out, x):
    e, r = _logistic(s, x, 0, 1)
    gate = _sigmoid_into(s, e, x, e, r)
    np.multiply(np.maximum(x, s.full(-TAIL), out=s.tmp(1)), gate, out=out)


def _silu_grad(s, out, dy, x):
    xc = _clamped(s, x, -TAIL, TAIL, 2)
    e, r = _logistic(s, xc, 0, 1)
    gate = _sigmoid_into(s, s.tmp(3), xc, e, r)
    slope = _sigmoid_slope_into(e, e, r)
    np.multiply(slope, xc, out=slope)
    np.add(slope, gate, out=slope)
    np.multiply(dy, slope, out=out)


def _softplus(s, out, x):
    e, _ = _logistic(s, x, 0, 1)
    np.log1p(e, out=e)
    np.add(np.maximum(x, s.full(0), out=s.tmp(1)), e, out=out)


# --------------------------------------------------------------------------- #
# tanh:  forward np.tanh;
#        backward sech(x)^2 = 4 e / (1 + e)^2, e = exp(-2|x|) in [0, 1]
# (no overflow, and no cancellation: 1 - tanh^2 cancels to 0 in the tails;
# exp's error counts once, the relative slope in e being tanh|x| < 1, where
# (1 / cosh)^2 doubled cosh's: 5 ulps of float32); for |x| >= TANH_FAR = 40,
# where (1 + e)^2 is 1, 4 exp(64 - 2|x|) e**-64 (64 - 2|x| exact), so that
# float64's subnormal results are not lost with a subnormal e (fixed up per
# block, only when a block has such an x).  Evaluated in float64 whatever the
# compute dtype, dy * sech^2 included, and rounded once: float32 within half
# an ulp.  The CUDA functor Tanh computes the same in its compute type, with
# (1 + e)^2 carried to twice its precision (float within 2 ulps of exp's error).
# --------------------------------------------------------------------------- #
_FLOAT64 = np.dtype(np.float64)
TANH_FAR = 40.0
EXP_MINUS_64 = 1.603810890548638e-28  # the far tails (tanh, mish): exp(t + 64) e**-64


def _tanh(s, out, x):
    np.tanh(x, out=out)


def _tanh_grad(s, out, dy, x):
    w = s if s.dtype == _FLOAT64 else Scratch.get(_FLOAT64, s.shape)  # float64 slots for float32 math
    magnitude = np.abs(x, out=w.tmp(0))
    e = np.multiply(magnitude, w.full(-2), out=w.tmp(1))
    np.exp(e, out=e)
    d = np.add(e, w.full(1), out=w.tmp(2))
    np.multiply(d, d, out=d)
    np.multiply(e, w.full(4), out=e)
    slope = np.divide(e, d, out=e)
    if x.size and np.fmax.reduce(magnitude, axis=None) >= TANH_FAR:  # fmax: a NaN does not hide the rest
        far = np.greater_equal(magnitude, w.full(TANH_FAR), out=s.mask(0))
        slope[far] = 4 * np.exp(64 - 2 * magnitude[far]) * EXP_MINUS_64
    np.multiply(dy, slope, out=out)


# --------------------------------------------------------------------------- #
# hard_sigmoid and hard_silu (= hard_swish), as PyTorch's hardsigmoid and
# hardswish kernels (the same roundings: divide by 6 and by 3):
#   hard_sigmoid: forward min(max(x + 3, 0), 6) / 6
#                 backward 1/6 where -3 < x < 3, else 0 (NaN where x is NaN)
#   hard_silu:    forward xc * min(xc + 3, 6) / 6 with xc = max(x, -3)
#                 (= PyTorch's x * relu6(x + 3) / 6, and 0 rather than NaN at -inf)
#                 backward 0 for x <= -3, x/3 + 1/2 for -3 < x < 3, 1 for x >= 3
#                 (PyTorch 2.13's hardswish_backward, measured: 0 at -3 and 1 at 3;
#                 ATen sources before it gave x/3 + 1/2 on the closed interval)
# --------------------------------------------------------------------------- #
def _hard_sigmoid(s, out, x):
    shifted = np.add(x, s.full(3), out=s.tmp(0))
    np.maximum(shifted, s.full(0), out=shifted)
    np.minimum(shifted, s.full(6), out=shifted)
    np.divide(shifted, s.full(6), out=out)


def _hard_sigmoid_grad(s, out, dy, x):
    nan = _nan_mask(s, x)
    inside = np.less(np.abs(x, out=s.tmp(0)), s.full(3), out=s.mask(0))
    np.multiply(dy, s.full(1 / 6), out=out)  # dy read before out is written (out may be dy)
    np.multiply(out, inside, out=out)
    _put_nan(out, nan)


def _hard_silu(s, out, x):
    xc = np.maximum(x, s.full(-3), out=s.tmp(0))
    gate = np.add(xc, s.full(3), out=s.tmp(1))
    np.minimum(gate, s.full(6), out=gate)
    np.multiply(xc, gate, out=gate)
    np.divide(gate, s.full(6), out=out)


def _hard_silu_grad(s, out, dy, x):
    inside = np.less(np.abs(x, out=s.tmp(0)), s.full(3), out=s.mask(0))
    above = np.greater_equal(x, s.full(3), out=s.mask(1))
    slope = _clamped(s, x, -3.0, 3.0, 0)
    np.divide(slope, s.full(3), out=slope)
    np.add(slope, s.full(0.5), out=slope)
    np.multiply(slope, inside, out=slope)  # NaN * 0 stays NaN
    np.add(slope, above, out=slope)
    np.multiply(dy, slope, out=out)


# --------------------------------------------------------------------------- #
# mish: x tanh(softplus(x)).  With ex = exp(min(x, 40)) (tanh(softplus(40)) is
# 1 in float64), w = ex (1 + ex), n = w + ex = ex (ex + 2) = (1 + ex)^2 - 1,
# d = n + 2:
#   tanh(softplus(x)) = n / d               (no overflow: n <= e^80; a true
#                                            division, so exactly 1 for large x)
#   forward:  max(x, -TAIL) * n / d
#   backward: n / d + xc * (4 w (1 / d) (1 / d)), xc = clamp(x, -TAIL, 40)
#             (= tsp + x sigmoid(x) sech^2(softplus(x)), as PyTorch's
#             mish_backward; sigmoid(x) sech^2(sp) = 4 ex (1 + ex) / (n + 2)^2,
#             with no cancellation in 1 - tsp^2);
#             far left, x < MISH_FAR = -64 (ex < 2**-92): (1 + x) e^x to within a
#             relative e^x, as (1 + xc) exp(xc + 64) e**-64 (xc + 64 exact), with
#             no subnormal intermediate.  ex is subnormal below x = -87 (float32)
#             / -708 (float64) and 0 below -104 / -745, where (1 + x) e^x is not
#             yet 0: the general form lost precision there, returned 0, and
#             (with w / d / d, which rounded the slope to 0) the wrong sign.
#             Fixed up per block, only when a block has such an x.
# --------------------------------------------------------------------------- #
MISH_CAP = 40.0
MISH_FAR = -64.0


def _mish_parts(s, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(w, n / d, d) in tmp slots 0-2, from x (read only)."""
    ex = np.minimum(x, s.full(MISH_CAP), out=s.tmp(3))
    np.exp(ex, out=ex)
    w = np.add(ex, s.full(1), out=s.tmp(0))
    np.multiply(w, ex, out=w)
    n = np.add(w, ex, out=s.tmp(1))
    d = np.add(n, s.full(2), out=s.tmp(2))
    return w, np.divide(n, d, out=n), d


def _mish(s, out, x):
    _, gate, _ = _mish_parts(s, x)
    np.multiply(np.maximum(x, s.full(-TAIL), out=s.tmp(0)), gate, out=out)


def _mish_grad(s, out, dy, x):
    w, gate, d = _mish_parts(s, x)
    inv_d = np.reciprocal(d, out=d)
    slope = np.multiply(w, s.full(4), out=w)
    np.multiply(slope, inv_d, out=slope)
    np.multiply(slope, inv_d, out=slope)
    np.multiply(slope, _clamped(s, x, -TAIL, MISH_CAP, 3), out=slope)
    np.add(slope, gate, out=slope)
    if x.size and np.fmin.reduce(x, axis=None) < MISH_FAR:  # fmin: a NaN does not hide the rest
        far = np.less(x, s.full(MISH_FAR), out=s.mask(0))
        xc = np.maximum(x[far], s.dtype.type(-TAIL))
        slope[far] = (1 + xc) * np.exp(xc - MISH_FAR) * s.dtype.type(EXP_MINUS_64)
    np.multiply(dy, slope, out=out)


# --------------------------------------------------------------------------- #
# linear: the identity.  backward: dy, NaN where x is NaN (NaN in, NaN out, as every kernel).
# --------------------------------------------------------------------------- #
def _linear(s, out, x):
    np.copyto(out, x)


def _linear_grad(s, out, dy, x):
    nan = _nan_mask(s, x)
    np.copyto(out, dy)
    _put_nan(out, nan)


# --------------------------------------------------------------------------- #
# softmax and log_softmax along the block's last axis (engine.run_rows
# hands over blocks of whole, contiguous rows), with m = max over the row:
#   softmax:      e = exp(x - m), y = e / sum(e)
#   log_softmax:  y = (x - m) - log(sum(exp(x - m)))
#   backward (softmax recomputed from x):
#     softmax:      dx = y (dy - sum(dy y))
#     log_softmax:  dx = dy - y sum(dy)
# Logits of any finite size are safe (every exp argument is <= 0).  As in
# PyTorch, a row with NaN or +inf, or all -inf, is NaN; -inf alone gives 0.
# log_softmax sums in float64: the sum is 1 + (the rest), and for the row's
# max element the result is -log(1 + rest), which a float32 sum would round
# to 0 when rest < 6e-8.
# --------------------------------------------------------------------------- #
def _row_sum(s, values: np.ndarray, slot: int) -> np.ndarray:
    return np.add.reduce(values, axis=-1, keepdims=True, out=s.per_row(slot))


def _shifted(s, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """x - max(x) over the row, into out."""
    top = np.maximum.reduce(x, axis=-1, keepdims=True, out=s.per_row(0))
    return np.subtract(x, top, out=out)


def _softmax_into(s, out: np.ndarray, x: np.ndarray) -> np.ndarray:
    e = np.exp(_shifted(s, x, out), out=out)
    return np.divide(e, _row_sum(s, e, 1), out=out)


def _softmax(s, out, x):
    _softmax_into(s, out, x)


def _log_softmax(s, out, x):
    shifted = _shifted(s, x, s.tmp(0))
    exps = np.exp(shifted, out=s.tmp(1))
    total = np.add.reduce(exps, axis=-1, keepdims=True, dtype=np.float64, out=s.per_row(1, np.float64))
    log_total = s.per_row(2)  # in the compute dtype
    np.copyto(log_total, np.log(total, out=total), casting="same_kind")
    np.subtract(shifted, log_total, out=out)


def _softmax_grad(s, out, dy, x):
    y = _softmax_into(s, s.tmp(0), x)
    weighted = _row_sum(s, np.multiply(dy, y, out=s.tmp(1)), 2)
    np.subtract(dy, weighted, out=s.tmp(1))
    np.multiply(s.tmp(1), y, out=out)


def _log_softmax_grad(s, out, dy, x):
    y = _softmax_into(s, s.tmp(0), x)
    np.multiply(y, _row_sum(s, dy, 2), out=y)
    np.subtract(dy, y, out=out)


def _plain(forward: ChunkFn, backward: ChunkFn) -> tuple[Callable[..., ChunkFn], Callable[..., ChunkFn]]:
    """The plans of a kernel without parameters: the same chunk functions for every dtype."""
    return (lambda dtype: forward), (lambda dtype: backward)


# kernel name (fastact.activations) -> (forward plan, backward plan): a plan
# takes the kernel's parameters and the compute dtype and returns a chunk
# function.  tests/test_registry_coverage.py checks that every registered
# kernel has its row.
KERNELS = {
    "relu": (relu_forward, relu_backward),
    "elu": (elu_forward, elu_backward),
    "gelu": (gelu_forward, gelu_backward),
    "sigmoid": _plain(_sigmoid, _sigmoid_grad),
    "silu": _plain(_silu, _silu_grad),
    "softplus": _plain(_softplus, _softplus_grad),
    "tanh": _plain(_tanh, _tanh_grad),
    "hard_sigmoid": _plain(_hard_sigmoid, _hard_sigmoid_grad),
    "hard_silu": _plain(_hard_silu, _hard_silu_grad),
    "mish": _plain(_mish, _mish_grad),
    "linear": _plain(_linear, _linear_grad),
    "softmax": _plain(_softmax, _softmax_grad),
    "log_softmax": _plain(_log_softmax, _log_softmax_grad),
}
# Kernels that work on whole rows along an axis (engine.run_rows), as the registry declares them.
ROWWISE = frozenset(ROWWISE_KERNELS)


@functools.lru_cache(maxsize=512)
def _cached_plan(direction: str, kernel: str, params: tuple, dtype: np.dtype) -> ChunkFn:
    return KERNELS[kernel][0 if direction == "forward" else 1](**dict(params), dtype=dtype)


def plan(direction: str, kernel: str, params: dict, dtype: np.dtype) -> ChunkFn:
    """The chunk function of ``kernel`` ("forward" or "backward") for ``params`` in compute dtype ``dtype``.

    Built once per distinct (direction, kernel, params, dtype): plans are pure
    closures, and building one costs about as much as running a small call.
    """
    return _cached_plan(direction, kernel, tuple(params.items()), dtype)
