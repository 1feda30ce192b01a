"""The fused calls (README.md, "Fused calls"): bias + activation, dense and conv2d with that epilogue.

As in :mod:`fastact._dispatch`, everything is checked here before a backend
runs: the activation (any elementwise one in the registry, by name or as
``fastact.Activation``), dtypes, every shape against every other, the
convolution geometry.  Backends receive native arrays, the activation's
kernel name and kernel parameters, a 1-d bias (or None) and, for conv2d, a
checked :class:`fastact._conv_geometry.Conv2dGeometry`.
"""
from __future__ import annotations

from typing import Any

from numpy import ndarray

from ._conv_geometry import conv2d_geometry
from ._dispatch import _Call, replaying_backend, untyped_as_x_dtype
from ._arrays import check_pair
from ._registry import REGISTRY, get_spec, integer
from .backends import device_fast_path, host_fast_path
from .backends.kernels.replay import BIAS_ACT, BIAS_ACT_BACKWARD, params_key
from .functions import Activation

__all__ = [
    "bias_act",
    "bias_act_backward",
    "dense_bias_act",
    "dense_bias_act_backward",
    "conv2d_bias_act",
    "conv2d_bias_act_backward",
]


# --------------------------------------------------------------------------- #
# Checks shared by the fused calls.
# --------------------------------------------------------------------------- #
# Activation name -> (kernel, kernel parameters as a key, Activation, (kernel, kernel parameters), and the
# bias_act and bias_act_backward replay tags less the axis) for the fast paths,
# filled by the general path once the name has been accepted (see _activation).
_NAMED: dict[str, tuple] = {}


def _activation(function: str, activation: Any) -> Activation:
    """A name or Activation, refused unless it is elementwise (PReLU's slope is an array, not a parameter)."""
    spec = get_spec(activation) if isinstance(activation, str) else getattr(activation, "spec", None)
    if spec is not None and spec.form != "elementwise":
        elementwise = sorted(name for name, s in REGISTRY.items() if s.form == "elementwise")
        raise ValueError(
            f"{function}: activation {spec.name!r} is not elementwise and cannot be fused; "
            f"accepted: {elementwise} (by name or as fastact.Activation)"
        )
    if type(activation) is str:
        named = _NAMED.get(activation)
        if named is None:
            act = Activation.coerce(activation)
            params = act.kernel_params
            key = params_key(params)
            named = _NAMED[activation] = (act.kernel, key, act, (act.kernel, params),
                                          (*BIAS_ACT, act.kernel, key), (*BIAS_ACT_BACKWARD, act.kernel, key))
        return named[2]  # Activation is immutable: one per name
    return Activation.coerce(activation)


def _bias_act_replayed(tag_slot: int, x: Any, axis: Any, activation: Any, operands: tuple, out: Any) -> Any:
    """A replayed bias_act (``tag_slot`` 4 of the name's _NAMED entry) or bias_act_backward (5) for an
    activation named by a string and an int axis; None: the general path (which checks and records)."""
    fast = host_fast_path() if type(x) is ndarray else device_fast_path()  # replaying_backend, written out
    if fast is None or not fast.replays or type(x) is not fast.array_type or type(axis) is not int \
            or type(activation) is not str:
        return None
    named, ndim = _NAMED.get(activation), x.ndim
    if named is None or not -ndim <= axis < ndim:
        return None
    return fast.replayed(named[tag_slot] + (axis % ndim,), operands, out)


# Calls of dense_bias_act / conv2d_bias_act the general path has checked, by key (the op, the activation's
# name, the options, and per array its layout, dtype, alignment and device: what every check reads), with
# what the checks produced (conv2d: the geometry).  A call with a known key on a kernel backend skips
# the checks and goes straight to the backend, recorded there once (kernels/replay.py); later calls with
# the key replay that recording before any of this (ReplayedCalls.replayed).
_CHECKED: dict = {}


def _checked_key(tag: tuple, arrays: tuple) -> tuple[Any, Any]:
    """(the replaying backend, the key of this call) or (None, None): not a call whose checks are remembered."""
    fast = replaying_backend(arrays[0])
    if fast is None or type(tag[1]) is not str or tag[1] not in _NAMED:
        return None, None
    try:
        key = fast._replay_key(tag, arrays, fast.current_device(), fast.array_type)
        hash(key)
    except TypeError:  # an option given as a list
        return None, None
    return (fast, key) if key is not None else (None, None)


def _remember_checked(key: Any, checked: Any) -> None:
    if key is not None:
        if len(_CHECKED) >= 4096:
            _CHECKED.clear()
        _CHECKED[key] = checked


def _start(function: str, out: Any = None, **arrays: Any) -> _Call:
    """A validated call over the given arrays (None ones left out: no bias)."""
    given = {name: a for name, a in arrays.items() if a is not None}
    return _Call(function, given, out, tuple(given))


def _bias(call: _Call, name: str, value: Any, length: int, where: str) -> Any:
    """The native bias ``name`` (``value`` as the user passed it; a list takes x's dtype), checked to be 1-d of ``length``."""
    if value is None:
        return None
    bias = untyped_as_x_dtype(value, call.native[name], call.native["x"])
    if tuple(bias.shape) != (length,):
        raise ValueError(f"{call.function}: {name} must be 1-d with {length} values ({where}), got shape {tuple(bias.shape)}")
    return bias


def _same_dtype(call: _Call, name: str) -> None:
    a, x = call.native[name], call.native["x"]
    if a.dtype != x.dtype:
        raise TypeError(f"{call.function}: {name} and x must have the same dtype, got {name} {a.dtype} and x {x.dtype}")


def _check_dy(call: _Call, shape: tuple) -> None:
    """dy must have the forward output's shape and x's dtype."""
    dy = call.native["dy"]
    if tuple(dy.shape) != tuple(shape):
        raise ValueError(f"{call.function}: dy has shape {tuple(dy.shape)}, the forward output has shape {tuple(shape)}")
    _same_dtype(call, "dy")


def _export(call: _Call, *results: Any) -> tuple:
    """Every result as the user's kind of array; None (no bias, no dbias) stays None."""
    return tuple(None if r is None else call.backend.export(r, call.kind, None) for r in results)


# --------------------------------------------------------------------------- #
# bias_act
# --------------------------------------------------------------------------- #
def _bias_axis(call: _Call, axis: Any) -> int:
    x = call.native["x"]
    axis = integer(call.function, "axis", axis)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{call.function}: axis {axis} is out of range for x of shape {tuple(x.shape)}")
    return axis % x.ndim


def bias_act(x: Any, bias: Any, activation: Any = "relu", *, axis: int = 1, out: Any = None) -> Any:
    """act(x + bias), the bias broadcast along ``axis``, in one pass over memory.

        y = act(x + bias[i]) at index i of ``axis``

    Parameters:
        x: array of a supported float dtype, at least 1-d.
        bias: 1-d, with ``x.shape[axis]`` values (any supported float dtype; a list takes x's).
        activation: an elementwise activation's name ("relu", "leaky_relu", ...) with its
            default parameters, or ``fastact.Activation(name, **params)``.
        axis: the channel axis: 1 for NCHW (the default, as PyTorch), -1 for channels-last.
        out: optional array for y (x's shape, dtype and kind); may be x itself.

    Returns y, of x's shape, dtype and kind.

    Example::

        >>> x = np.zeros((2, 3, 4, 4), np.float32)
        >>> y = fastact.bias_act(x, np.array([-1.0, 0.5, 7.0], np.float32), "relu6")
        >>> y[0, :, 0, 0]
        array([0. , 0.5, 6. ], dtype=float32)
    """
    y = _bias_act_replayed(4, x, axis, activation, (x, bias, out), out)
    if y is not None:
        return y
    act = _activation("bias_act", activation)
    call = _start("bias_act", out, x=x, bias=bias)
    xn = call.native["x"]
    axis = _bias_axis(call, axis)
    bn = _bias(call, "bias", bias, xn.shape[axis], f"x.shape[{axis}] of x {tuple(xn.shape)}")
    call.set_out(xn.shape, xn.dtype)
    return call.export(call.backend.bias_act(act.kernel, act.kernel_params, xn, bn, axis, call.native_out))


def bias_act_backward(dy: Any, x: Any, bias: Any, activation: Any = "relu", *, axis: int = 1) -> tuple[Any, Any]:
    """Backward of :func:`bias_act`: (dx, dbias), with x + bias recomputed, never stored.

        dx    = dy * act'(x + bias)
        dbias = dx summed over every axis but ``axis`` (in float64, deterministic; bias's dtype)

    Parameters are those of :func:`bias_act`; dy has x's shape and dtype.

    Example::

        >>> dx, dbias = fastact.bias_act_backward(np.ones((2, 3)), np.zeros((2, 3)), np.array([-1.0, 1.0, 2.0]))
        >>> dbias
        array([0., 2., 2.])
    """
    result = _bias_act_replayed(5, x, axis, activation, (dy, x, bias), None)
    if result is not None:
        return result
    function = "bias_act_backward"
    act = _activation(function, activation)
    call = _start(function, dy=dy, x=x, bias=bias)
    dyn, xn = call.native["dy"], call.native["x"]
    check_pair(function, dyn, xn)
    axis = _bias_axis(call, axis)
    bn = _bias(call, "bias", bias, xn.shape[axis], f"x.shape[{axis}] of x {tuple(xn.shape)}")
    return _export(call, *call.backend.bias_act_backward(act.kernel, act.kernel_params, dyn, xn, bn, axis))


# --------------------------------------------------------------------------- #
# dense_bias_act
# --------------------------------------------------------------------------- #
def _dense_call(function: str, x: Any, w: Any, b: Any, dy: Any = None) -> tuple[_Call, Any]:
    """The validated call and the native bias; x is (..., in), w (in, out) as Keras Dense."""
    call = _start(function, dy=dy, x=x, w=w, b=b)
    xn, wn = call.native["x"], call.native["w"]
    _same_dtype(call, "w")
    if xn.ndim < 1 or wn.ndim != 2 or xn.shape[-1] != wn.shape[0]:
        raise ValueError(
            f"{function}: x must be (..., in) and w (in, out) as Keras Dense, got x {tuple(xn.shape)} and w {tuple(wn.shape)}"
        )
    bn = _bias(call, "b", b, wn.shape[1], f"w.shape[1] of w {tuple(wn.shape)}")
    if dy is not None:
        _check_dy(call, (*xn.shape[:-1], wn.shape[1]))
    return call, bn


def dense_bias_act(x: Any, w: Any, b: Any = None, activation: Any = "relu") -> Any:
    """act(x @ w + b): a dense layer with its bias and activation fused into one epilogue pass.

        y[..., j] = act(sum_i x[..., i] * w[i, j] + b[j])

    Parameters:
        x: (..., in): any number of leading axes (at least 1-d).
        w: (in, out), as Keras Dense (PyTorch's Linear stores w.T); x's dtype.
        b: None, or 1-d with ``out`` values.
        activation: an elementwise activation's name or ``fastact.Activation``.

    Returns y of shape (..., out), x's dtype and kind.  The product runs in
    float32 for 16-bit inputs, float64 for float64.

    Example::

        >>> fastact.dense_bias_act(np.ones((2, 3)), np.ones((3, 4)), np.arange(4.0) - 4, "relu")
        array([[0., 0., 1., 2.],
               [0., 0., 1., 2.]])
    """
    fast = host_fast_path() if type(x) is ndarray else device_fast_path()  # replaying_backend, written out
    if fast is not None and fast.replays and type(activation) is str:
        y = fast.replayed(("dense_bias_act", activation), (x, w, b), None)  # a call recorded below
        if y is not None:
            return y
    fast, key = _checked_key(("dense_bias_act", activation), (x, w, b))
    if key is not None and key in _CHECKED:  # checked before: record the backend's call (once per key)
        kernel, params = _NAMED[activation][3]
        return fast.recorded_call(key[0], (x, w, b), lambda: fast.dense_bias_act(kernel, params, x, w, b))
    act = _activation("dense_bias_act", activation)
    call, bn = _dense_call("dense_bias_act", x, w, b)
    y = call.export(call.backend.dense_bias_act(act.kernel, act.kernel_params, call.native["x"], call.native["w"], bn))
    _remember_checked(key or _checked_key(("dense_bias_act", activation), (x, w, b))[1], True)
    return y


def dense_bias_act_backward(dy: Any, x: Any, w: Any, b: Any = None, activation: Any = "relu") -> tuple[Any, Any, Any]:
    """Backward of :func:`dense_bias_act`: (dx, dw, db); x @ w + b is recomputed.

        dz = dy * act'(x @ w + b);  dx = dz @ w.T;  dw = x.T @ dz (leading axes flattened);  db = sum of dz

    dy has the forward output's shape (..., out) and x's dtype; db is None when b is None.

    Example::

        >>> dx, dw, db = fastact.dense_bias_act_backward(np.ones((2, 4)), np.ones((2, 3)), np.ones((3, 4)), np.zeros(4))
        >>> db
        array([2., 2., 2., 2.])
    """
    function = "dense_bias_act_backward"
    act = _activation(function, activation)
    call, bn = _dense_call(function, x, w, b, dy)
    native = call.native
    return _export(call, *call.backend.dense_bias_act_backward(act.kernel, act.kernel_params, native["dy"], native["x"], native["w"], bn))


# --------------------------------------------------------------------------- #
# conv2d_bias_act
# --------------------------------------------------------------------------- #
def _conv_call(function: str, x: Any, w: Any, b: Any, dy: Any, **options: Any):
    """The validated call, the native bias and the checked geometry."""
    call = _start(function, dy=dy, x=x, w=w, b=b)
    _same_dtype(call, "w")
    geometry = conv2d_geometry(function, call.native["x"].shape, call.native["w"].shape, **options)
    bn = _bias(call, "b", b, geometry.out_channels, f"one per output channel of w {tuple(call.native['w'].shape)}")
    if dy is not None:
        _check_dy(call, geometry.out_shape)
    return call, bn, geometry


def conv2d_bias_act(
    x: Any, w: Any, b: Any = None, activation: Any = "relu", *,
    stride: Any = 1, padding: Any = "valid", dilation: Any = 1, groups: int = 1, data_format: str = "NCHW",
) -> Any:
    """act(conv2d(x, w) + b): a convolution layer with bias and activation fused into its epilogue.

        y[n, o, p, q] = act(b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, g*C/G + c, p*sh + i*dh, q*sw + j*dw])

    (written for NCHW; g is o's group; this is PyTorch's conv2d and Keras' Conv2D).

    Parameters:
        x: (N, C, H, W) for ``data_format="NCHW"``, (N, H, W, C) for ``"NHWC"``.
        w: (O, C/groups, kh, kw) for NCHW (PyTorch), (kh, kw, C/groups, O) for NHWC (Keras); x's dtype.
        b: None, or 1-d with O values.
        activation: an elementwise activation's name or ``fastact.Activation``.
        stride, dilation: an int or a pair (rows, columns), each >= 1.
        padding: "valid", "same" (TensorFlow: output ceil(in / stride), the odd extra pixel at the
            bottom/right), an int, a pair (rows, columns), or ((top, bottom), (left, right)).
        groups: divides C and O; groups == C gives a depthwise convolution.
        data_format: "NCHW" or "NHWC"; y comes back in the same layout.

    Returns y of shape (N, O, OH, OW) or (N, OH, OW, O), x's dtype and kind, with
    ``OH = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1`` (and OW alike).

    On the NumPy backend this is im2col + BLAS GEMM on batch chunks, whose
    im2col buffer stays under 256 MiB (or one sample's buffer when that is
    larger); 1x1 stride-1 unpadded convolutions need no im2col at all.  The
    CUDA backend does the same with an im2col kernel and cuBLAS, the bias and
    activation fused into one kernel over the GEMM's output.

    Example::

        >>> x = np.ones((1, 2, 4, 4), np.float32); w = np.ones((3, 2, 3, 3), np.float32)
        >>> fastact.conv2d_bias_act(x, w, np.array([-20.0, 0.0, 1.0], np.float32), padding="same")[0, :, 0, 0]
        array([0., 8., 9.], dtype=float32)
    """
    function = "conv2d_bias_act"
    tag = (function, activation, stride, padding, dilation, groups, data_format)
    fast = host_fast_path() if type(x) is ndarray else device_fast_path()  # replaying_backend, written out
    if fast is not None and fast.replays and type(activation) is str:
        try:
            y = fast.replayed(tag, (x, w, b), None)  # a call recorded below
        except TypeError:  # an option given as a list: no key
            y = None
        if y is not None:
            return y
    fast, key = _checked_key(tag, (x, w, b))
    geometry = _CHECKED.get(key) if key is not None else None
    if geometry is not None:  # checked before: record the backend's call (once per key)
        kernel, params = _NAMED[activation][3]
        return fast.recorded_call(tag, (x, w, b), lambda: fast.conv2d_bias_act(kernel, params, x, w, b, geometry))
    act = _activation(function, activation)
    call, bn, geometry = _conv_call(
        function, x, w, b, None, stride=stride, padding=padding, dilation=dilation, groups=groups, data_format=data_format
    )
    y = call.backend.conv2d_bias_act(act.kernel, act.kernel_params, call.native["x"], call.native["w"], bn, geometry)
    _remember_checked(key or _checked_key((function, activation, stride, padding, dilation, groups, data_format),
                                          (x, w, b))[1], geometry)
    return call.export(y)


def conv2d_bias_act_backward(
    dy: Any, x: Any, w: Any, b: Any = None, activation: Any = "relu", *,
    stride: Any = 1, padding: Any = "valid", dilation: Any = 1, groups: int = 1, data_format: str = "NCHW",
) -> tuple[Any, Any, Any]:
    """Backward of :func:`conv2d_bias_act`: (dx, dw, db); the convolution is recomputed, not stored.

        dz = dy * act'(conv2d(x, w) + b);  db = dz summed over all but the channel axis;
        dw = the correlation of x with dz;  dx = the transposed convolution of dz with w

    Parameters are those of :func:`conv2d_bias_act`; dy has the forward output's shape and
    x's dtype.  db is None when b is None; dw has w's shape, dtype and kind.

    Example::

        >>> x = np.ones((1, 1, 3, 3)); w = np.ones((1, 1, 2, 2))
        >>> dx, dw, db = fastact.conv2d_bias_act_backward(np.ones((1, 1, 2, 2)), x, w, np.zeros(1))
        >>> dx[0, 0]
        array([[1., 2., 1.],
               [2., 4., 2.],
               [1., 2., 1.]])
    """
    function = "conv2d_bias_act_backward"
    act = _activation(function, activation)
    call, bn, geometry = _conv_call(
        function, x, w, b, dy, stride=stride, padding=padding, dilation=dilation, groups=groups, data_format=data_format
    )
    native = call.native
    results = call.backend.conv2d_bias_act_backward(
        act.kernel, act.kernel_params, native["dy"], native["x"], native["w"], bn, geometry
    )
    return _export(call, *results)
