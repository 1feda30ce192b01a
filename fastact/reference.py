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


# --------------------------------------------------------------------------- #
# Linear layers in float64, for the fused calls: written as directly as
# possible (one einsum per group and kernel tap), sharing no code with the
# backends.  Padding is explicit: ((top, bottom), (left, right)).
# --------------------------------------------------------------------------- #
def dense(x, w, b=None):
    """x @ w (+ b) in float64; x (..., in), w (in, out)."""
    z = np.einsum("...i,io->...o", _f64(x), _f64(w))
    return z if b is None else z + _f64(b)


def dense_backward(dz, x, w):
    """(dx, dw) of x @ w for the gradient dz of the product, in float64."""
    dz, x, w = _f64(dz), _f64(x), _f64(w)
    rows = x.reshape(-1, x.shape[-1]), dz.reshape(-1, dz.shape[-1])
    return np.einsum("...o,io->...i", dz, w), np.einsum("ri,ro->io", *rows)


def _to_nchw(x, w, data_format):
    """x and w in PyTorch's layout: NHWC (N, H, W, C) and (kh, kw, C/g, O) are transposed."""
    x, w = _f64(x), _f64(w)
    if data_format == "NHWC":
        return x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
    return x, w


def _taps(w_shape, out_size, stride, dilation):
    """(i, j, rows, columns): the padded-input pixels that kernel tap (i, j) meets."""
    (oh, ow), (sh, sw), (dh, dw) = out_size, stride, dilation
    for i in range(w_shape[2]):
        for j in range(w_shape[3]):
            yield i, j, slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)


def _conv_sizes(x_shape, w_shape, stride, padding, dilation):
    return tuple(
        (n + sum(p) - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(x_shape[2:], padding, dilation, w_shape[2:], stride)
    )


def conv2d(x, w, b=None, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, data_format="NCHW"):
    """conv2d(x, w) (+ b) in float64, as PyTorch's conv2d (NCHW) or Keras' Conv2D (NHWC)."""
    x, w = _to_nchw(x, w, data_format)
    xpad = np.pad(x, ((0, 0), (0, 0), *padding))
    out_size = _conv_sizes(x.shape, w.shape, stride, padding, dilation)
    cin, cout = x.shape[1] // groups, w.shape[0] // groups
    z = np.zeros((x.shape[0], w.shape[0], *out_size))
    for g in range(groups):
        xs, ws = xpad[:, g * cin : (g + 1) * cin], w[g * cout : (g + 1) * cout]
        for i, j, rows, cols in _taps(w.shape, out_size, stride, dilation):
            z[:, g * cout : (g + 1) * cout] += np.einsum("nchw,oc->nohw", xs[:, :, rows, cols], ws[:, :, i, j])
    if b is not None:
        z += _f64(b)[:, None, None]
    return z.transpose(0, 2, 3, 1) if data_format == "NHWC" else z


def conv2d_backward(dz, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, data_format="NCHW"):
    """(dx, dw) of conv2d(x, w) for the gradient dz of its output, in float64, in the given layout."""
    x, w = _to_nchw(x, w, data_format)
    dz = _f64(dz).transpose(0, 3, 1, 2) if data_format == "NHWC" else _f64(dz)
    xpad = np.pad(x, ((0, 0), (0, 0), *padding))
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(w)
    cin, cout = x.shape[1] // groups, w.shape[0] // groups
    for g in range(groups):
        ci, co = slice(g * cin, (g + 1) * cin), slice(g * cout, (g + 1) * cout)
        for i, j, rows, cols in _taps(w.shape, dz.shape[2:], stride, dilation):
            dxpad[:, ci, rows, cols] += np.einsum("nohw,oc->nchw", dz[:, co], w[co, :, i, j])
            dw[co, :, i, j] += np.einsum("nohw,nchw->oc", dz[:, co], xpad[:, ci, rows, cols])
    (top, _), (left, _) = padding
    dx = dxpad[:, :, top : top + x.shape[2], left : left + x.shape[3]]
    if data_format == "NHWC":
        return dx.transpose(0, 2, 3, 1), dw.transpose(2, 3, 1, 0)
    return dx, dw
