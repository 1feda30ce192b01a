"""The NumPy backend's math: one forward and one backward per kernel, side by side.

Each ``*_forward`` / ``*_backward`` takes the kernel's parameters and the
compute dtype and returns a *chunk function* for :func:`numpy_engine.run`:
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

from typing import Callable

import numpy as np

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

    if t == 0 and a == 0:
        def capped_relu(s, out, x):
            np.maximum(x, s.full(0), out=out)
            np.minimum(out, s.full(m), out=out)
        return capped_relu

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


FORWARD = {"relu": relu_forward}
BACKWARD = {"relu": relu_backward}
