"""Reference implementations: the float64 oracle and the naive baselines.

Two kinds of reference live here, in one place, so that the tests and the
benchmark use the very same code:

* ``ORACLE[kernel]``: (forward, backward) computed in float64 with
  ``np.where``, written directly from SPEC.md's formulas.  Slow and obvious
  on purpose: it is what every backend is checked against.
* ``NAIVE[name]``: the NumPy expression a user would write without fastact
  (``np.where(x > 0, x, alpha * x)`` ...): the benchmark's CPU baseline.
  These work on CuPy arrays too (pass ``xp=cupy``).

The oracle takes *kernel* parameters (see ``ActivationSpec.kernel_params``).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


# --------------------------------------------------------------------------- #
# The oracle (float64).
# --------------------------------------------------------------------------- #
def relu(x, alpha=0.0, max_value=None, threshold=0.0):
    x = _f64(x)
    with np.errstate(invalid="ignore", over="ignore"):
        below = np.zeros_like(x) if alpha == 0 else alpha * (x - threshold)
        above = x if max_value is None else np.minimum(np.maximum(x, 0.0), max_value)
        return np.where(np.isnan(x), np.nan, np.where(x <= threshold, below, above))


def relu_derivative(x, alpha=0.0, max_value=None, threshold=0.0):
    x = _f64(x)
    if max_value is None:
        above = np.ones_like(x)
    else:
        above = ((x > 0) & (x < max_value)).astype(np.float64)
    return np.where(np.isnan(x), np.nan, np.where(x <= threshold, alpha, above))


def relu_backward(dy, x, alpha=0.0, max_value=None, threshold=0.0):
    with np.errstate(invalid="ignore"):
        return _f64(dy) * relu_derivative(x, alpha, max_value, threshold)


def prelu(x, alpha):
    x, alpha = _f64(x), _f64(alpha)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(x > 0, x, alpha * x)


def prelu_backward(dy, x, alpha):
    """(dx, dalpha) with dalpha summed over alpha's broadcast axes, in float64."""
    dy, x, alpha = _f64(dy), _f64(x), _f64(alpha)
    with np.errstate(invalid="ignore", over="ignore"):
        dx = np.where(np.isnan(x), np.nan, np.where(x > 0, dy, alpha * dy))
        contribution = np.where(x > 0, 0.0, x * dy)
    return dx, sum_to_shape(contribution, alpha.shape)


def sum_to_shape(values: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``values`` over the axes that NumPy broadcasting added or stretched to reach its shape."""
    lead = values.ndim - len(shape)
    values = values.sum(axis=tuple(range(lead))) if lead else values
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and values.shape[i] != 1)
    return values.sum(axis=axes, keepdims=True).reshape(shape) if axes else values.reshape(shape)


ORACLE: dict[str, tuple[Callable, Callable]] = {
    "relu": (relu, relu_backward),
}


# --------------------------------------------------------------------------- #
# Naive baselines: what a user writes without fastact (benchmark baselines).
# --------------------------------------------------------------------------- #
NAIVE: dict[str, tuple[Callable, Callable]] = {
    "relu": (
        lambda x, xp=np: xp.maximum(x, 0),
        lambda dy, x, xp=np: xp.where(x > 0, dy, 0),
    ),
    "leaky_relu": (
        lambda x, alpha=0.2, xp=np: xp.where(x > 0, x, alpha * x),
        lambda dy, x, alpha=0.2, xp=np: xp.where(x > 0, dy, alpha * dy),
    ),
    "relu6": (
        lambda x, xp=np: xp.minimum(xp.maximum(x, 0), 6),
        lambda dy, x, xp=np: xp.where((x > 0) & (x < 6), dy, 0),
    ),
    "thresholded_relu": (
        lambda x, theta=1.0, xp=np: xp.where(x > theta, x, 0),
        lambda dy, x, theta=1.0, xp=np: xp.where(x > theta, dy, 0),
    ),
    "prelu": (
        lambda x, alpha, xp=np: xp.where(x > 0, x, alpha * x),
        lambda dy, x, alpha, xp=np: (xp.where(x > 0, dy, alpha * dy), xp.where(x > 0, 0, x * dy)),
    ),
}
