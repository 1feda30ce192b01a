"""Reference implementations: the float64 oracle and the naive baselines.

Two kinds of reference live here, in one place, so that the tests and the
benchmark use the very same code:

* ``ORACLE[kernel]``: (forward, backward) computed in float64 with
  ``np.where``, written directly from the formulas (``fastact/activations.py``).  Slow and obvious
  on purpose: it is what every backend is checked against.
* ``NAIVE[name]``: the NumPy expression a user would write without fastact
  (``np.where(x > 0, x, alpha * x)`` ...): the benchmark's CPU baseline.
  These work on CuPy arrays too (pass ``xp=cupy``).

The oracle takes *kernel* parameters (see ``ActivationSpec.kernel_params``).
"""
from __future__ import annotations

import math
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


# The wider family (elu ... mish, softmax, linear), straight from the formulas in float64.  Where a
# formula is inf * 0 at x = +-inf, ``_limits`` writes the limit; where the
# textbook form cancels in a tail (1 + erf, 1 - tanh^2, s (1 - s)), the
# equivalent form without cancellation is used, so that the oracle stays
# accurate to float64 rounding over the whole range.
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _limits(x: np.ndarray, y: np.ndarray, at_minus_inf: float, at_plus_inf: float) -> np.ndarray:
    y = np.where(x == -np.inf, at_minus_inf, y)
    return np.where(x == np.inf, at_plus_inf, y)


def _times_dy(function: Callable) -> Callable:
    """The backward oracle dy * f'(x, params) from the derivative oracle f'."""
    def backward(dy, x, **params):
        with np.errstate(all="ignore"):
            return _f64(dy) * function(_f64(x), **params)
    backward.__name__ = function.__name__.replace("_derivative", "_backward")
    return backward


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def elu(x, alpha=1.0, scale=1.0):
    x = _f64(x)
    with np.errstate(over="ignore"):
        return np.where(x > 0, scale * x, scale * alpha * np.expm1(x))


def elu_derivative(x, alpha=1.0, scale=1.0):
    with np.errstate(over="ignore"):
        return np.where(np.isnan(x), np.nan, np.where(x > 0, scale, scale * alpha * np.exp(x)))


def gelu(x, approximate=False):
    x = _f64(x)
    with np.errstate(all="ignore"):
        if approximate:  # 0.5 (1 + tanh(u)) == sigmoid(2u)
            y = x * _sigmoid64(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
        else:  # 0.5 (1 + erf(x / sqrt2)) == 0.5 erfc(-x / sqrt2)
            y = 0.5 * x * _erfc(-x / math.sqrt(2))
    return _limits(x, y, 0.0, np.inf)


def gelu_derivative(x, approximate=False):
    with np.errstate(all="ignore"):
        if approximate:
            k = math.sqrt(2 / math.pi)
            u2 = 2 * k * (x + 0.044715 * x**3)
            s = _sigmoid64(u2)
            slope = s + x * s * _sigmoid64(-u2) * 2 * k * (1 + 3 * 0.044715 * x**2)
        else:
            slope = 0.5 * _erfc(-x / math.sqrt(2)) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return _limits(x, slope, 0.0, 1.0)


def sigmoid(x):
    return _sigmoid64(_f64(x))


def sigmoid_derivative(x):
    return _sigmoid64(x) * _sigmoid64(-x)


def silu(x):
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return _limits(x, x * _sigmoid64(x), 0.0, np.inf)


def silu_derivative(x):
    s = _sigmoid64(x)
    with np.errstate(invalid="ignore"):
        return _limits(x, s * (1 + x * _sigmoid64(-x)), 0.0, 1.0)


def softplus(x):
    with np.errstate(invalid="ignore"):
        return np.logaddexp(0.0, _f64(x))


def tanh(x):
    return np.tanh(_f64(x))


def tanh_derivative(x):
    with np.errstate(over="ignore"):
        return 1.0 / np.cosh(x) ** 2


def hard_sigmoid(x):
    return np.clip(_f64(x) + 3.0, 0.0, 6.0) / 6.0


def hard_sigmoid_derivative(x):
    return np.where(np.isnan(x), np.nan, np.where((x > -3) & (x < 3), 1.0 / 6.0, 0.0))


def hard_silu(x):
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return _limits(x, x * np.clip(x + 3.0, 0.0, 6.0) / 6.0, 0.0, np.inf)


def hard_silu_derivative(x):
    """PyTorch's hardswish_backward (2.13): 0 for x <= -3, x/3 + 1/2 for -3 < x < 3, 1 for x >= 3."""
    return np.where(np.isnan(x), np.nan, np.where(x <= -3, 0.0, np.where(x < 3, x / 3.0 + 0.5, 1.0)))


def mish(x):
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return _limits(x, x * np.tanh(softplus(x)), 0.0, np.inf)


def mish_derivative(x):
    softplus_x = softplus(x)
    with np.errstate(all="ignore"):
        slope = np.tanh(softplus_x) + x * _sigmoid64(x) / np.cosh(softplus_x) ** 2
    return _limits(x, slope, 0.0, 1.0)


def linear(x):
    return _f64(x)


def linear_derivative(x):
    return np.where(np.isnan(x), np.nan, 1.0)


def _row_axes(axis) -> tuple:
    """The row's axes as a tuple (softmax takes an int or a tuple of axes)."""
    return tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)


def _rows(x, axis):
    """x in float64 with the row's axes moved last and made one (a 0-d x is one element)."""
    x = _f64(x)
    x = x.reshape(1) if x.ndim == 0 else x
    axes = _row_axes(axis)
    moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    lead = moved.shape[: moved.ndim - len(axes)]
    return moved.reshape(*lead, math.prod(moved.shape[len(lead):]))


def _from_rows(y, x_shape, axis):
    axes = _row_axes(axis)
    shape = x_shape or (1,)
    moved_shape = np.moveaxis(np.empty(shape, np.bool_), axes, tuple(range(-len(axes), 0))).shape
    return np.moveaxis(y.reshape(moved_shape), tuple(range(-len(axes), 0)), axes).reshape(x_shape)


def softmax(x, axis=-1):
    rows = _rows(x, axis)
    with np.errstate(invalid="ignore"):
        e = np.exp(rows - rows.max(axis=-1, keepdims=True, initial=-np.inf))
        return _from_rows(e / e.sum(axis=-1, keepdims=True), np.shape(x), axis)


def log_softmax(x, axis=-1):
    rows = _rows(x, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = rows - rows.max(axis=-1, keepdims=True, initial=-np.inf)
        return _from_rows(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)), np.shape(x), axis)


def softmax_backward(dy, x, axis=-1):
    y, dy_rows = _rows(softmax(x, axis), axis), _rows(dy, axis)
    with np.errstate(invalid="ignore"):
        return _from_rows(y * (dy_rows - (dy_rows * y).sum(axis=-1, keepdims=True)), np.shape(x), axis)


def log_softmax_backward(dy, x, axis=-1):
    y, dy_rows = _rows(softmax(x, axis), axis), _rows(dy, axis)
    with np.errstate(invalid="ignore"):
        return _from_rows(dy_rows - y * dy_rows.sum(axis=-1, keepdims=True), np.shape(x), axis)


# Kernel name (fastact.activations) -> (forward, backward); tests/test_registry_coverage.py
# checks that every registered kernel has its row.
ORACLE: dict[str, tuple[Callable, Callable]] = {
    "relu": (relu, relu_backward),
    "elu": (elu, _times_dy(elu_derivative)),
    "gelu": (gelu, _times_dy(gelu_derivative)),
    "sigmoid": (sigmoid, _times_dy(sigmoid_derivative)),
    "silu": (silu, _times_dy(silu_derivative)),
    "softplus": (softplus, _times_dy(_sigmoid64)),
    "tanh": (tanh, _times_dy(tanh_derivative)),
    "hard_sigmoid": (hard_sigmoid, _times_dy(hard_sigmoid_derivative)),
    "hard_silu": (hard_silu, _times_dy(hard_silu_derivative)),
    "mish": (mish, _times_dy(mish_derivative)),
    "linear": (linear, _times_dy(linear_derivative)),
    "softmax": (softmax, softmax_backward),
    "log_softmax": (log_softmax, log_softmax_backward),
}


# --------------------------------------------------------------------------- #
# Naive baselines: what a user writes without fastact (benchmark baselines).
# --------------------------------------------------------------------------- #
# Public activation name -> (forward, backward), where a user's expression differs from
# fastact's (tests/test_registry_coverage.py checks the names are registered ones).
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


def _naive_erf(xp):
    """scipy.special.erf (cupyx.scipy.special.erf for CuPy): what a user reaches for (NumPy has no erf)."""
    if xp is np:
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    return erf


def _naive_sigmoid(x, xp=np):
    return 1 / (1 + xp.exp(-x))


def _naive_gelu(x, approximate=False, xp=np):
    if approximate:
        return 0.5 * x * (1 + xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _naive_erf(xp)(x / math.sqrt(2)))


def _naive_gelu_backward(dy, x, approximate=False, xp=np):
    if approximate:
        k = math.sqrt(2 / math.pi)
        t = xp.tanh(k * (x + 0.044715 * x**3))
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
    cdf = 0.5 * (1 + _naive_erf(xp)(x / math.sqrt(2)))
    return dy * (cdf + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))


def _naive_mish_backward(dy, x, xp=np):
    t = xp.tanh(xp.log1p(xp.exp(x)))
    return dy * (t + x * _naive_sigmoid(x, xp) * (1 - t * t))


def _naive_softmax(x, axis=-1, xp=np):
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _naive_log_softmax(x, axis=-1, xp=np):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _naive_softmax_backward(dy, x, axis=-1, xp=np):
    y = _naive_softmax(x, axis, xp)
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def _naive_log_softmax_backward(dy, x, axis=-1, xp=np):
    return dy - _naive_softmax(x, axis, xp) * dy.sum(axis=axis, keepdims=True)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

NAIVE.update({
    "elu": (
        lambda x, alpha=1.0, xp=np: xp.where(x > 0, x, alpha * (xp.exp(x) - 1)),
        lambda dy, x, alpha=1.0, xp=np: xp.where(x > 0, dy, dy * alpha * xp.exp(x)),
    ),
    "selu": (
        lambda x, xp=np: _SELU_SCALE * xp.where(x > 0, x, _SELU_ALPHA * (xp.exp(x) - 1)),
        lambda dy, x, xp=np: dy * _SELU_SCALE * xp.where(x > 0, 1, _SELU_ALPHA * xp.exp(x)),
    ),
    "gelu": (_naive_gelu, _naive_gelu_backward),
    "silu": (
        lambda x, xp=np: x * _naive_sigmoid(x, xp),
        lambda dy, x, xp=np: dy * _naive_sigmoid(x, xp) * (1 + x * (1 - _naive_sigmoid(x, xp))),
    ),
    "softplus": (
        lambda x, xp=np: xp.logaddexp(0, x),
        lambda dy, x, xp=np: dy * _naive_sigmoid(x, xp),
    ),
    "sigmoid": (
        _naive_sigmoid,
        lambda dy, x, xp=np: dy * _naive_sigmoid(x, xp) * (1 - _naive_sigmoid(x, xp)),
    ),
    "tanh": (
        lambda x, xp=np: xp.tanh(x),
        lambda dy, x, xp=np: dy * (1 - xp.tanh(x) ** 2),
    ),
    "hard_sigmoid": (
        lambda x, xp=np: xp.clip(x + 3, 0, 6) / 6,
        lambda dy, x, xp=np: xp.where((x > -3) & (x < 3), dy / 6, 0),
    ),
    "hard_silu": (
        lambda x, xp=np: x * xp.clip(x + 3, 0, 6) / 6,
        lambda dy, x, xp=np: xp.where(x <= -3, 0, xp.where(x < 3, dy * (x / 3 + 0.5), dy)),
    ),
    "mish": (
        lambda x, xp=np: x * xp.tanh(xp.log1p(xp.exp(x))),
        _naive_mish_backward,
    ),
    "softmax": (_naive_softmax, _naive_softmax_backward),
    "log_softmax": (_naive_log_softmax, _naive_log_softmax_backward),
    "linear": (
        lambda x, xp=np: x.copy(),
        lambda dy, x, xp=np: dy.copy(),
    ),
})
