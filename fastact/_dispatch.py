"""From a public call to a backend: validate, pick the backend, convert, run, convert back.

Everything that can be checked is checked here, before any backend writes:
dtypes, shapes, ``out``, overlap.  A failed call therefore leaves ``out`` and
every input as they were.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import numpy as np

from . import backends
from ._arrays import (
    array_kind,
    check_dtype,
    check_no_partial_overlap,
    check_out,
    check_pair,
    host_array,
)
from ._registry import ActivationSpec, normalize_axes

_DEVICE_KINDS = ("cupy", "cuda")


def _kind_group(kind: str) -> str:
    return "device" if kind in _DEVICE_KINDS else "host"


def _user_overlap_tools(kind: str) -> tuple[Any, Any]:
    """(array module, data pointer function) for overlap checks on the user's own arrays."""
    if kind in _DEVICE_KINDS:
        import cupy

        return cupy, lambda a: a.data.ptr
    return np, lambda a: a.__array_interface__["data"][0]


class _Call:
    """One validated call: the backend, the native inputs, and where the result goes."""

    def __init__(self, function: str, arrays: dict[str, Any], out: Any, check_float: tuple[str, ...]):
        first = next(iter(arrays.values()))
        self.function = function
        self.kind = "numpy" if array_kind(first) == "host" else array_kind(first)
        self.backend = backends.for_kind(self.kind)
        self.user, self.native = {}, {}
        for name, a in arrays.items():
            kind = array_kind(a)
            if kind == "host":
                # Python scalars and lists go with either side; other host arrays must match.
                a, kind = host_array(a), "numpy"
            elif _kind_group(kind) != _kind_group(self.kind):
                raise TypeError(
                    f"{function}: all arrays must live on the same side (host or CUDA device); "
                    f"{next(iter(arrays))} is a {self.kind} array but {name} is a {kind} array"
                )
            self.user[name] = a
            self.native[name] = self.backend.to_native(a, kind)
        for name in check_float:
            check_dtype(function, name, self.native[name].dtype)
        self.out = out
        self.native_out = None

    def set_out(self, shape: tuple, dtype: Any) -> None:
        """Check ``out`` against the result's shape and dtype; decide how to fill it."""
        out = self.out
        if out is None:
            return
        if self.kind == "cuda" and array_kind(out) == "cuda":
            # A foreign CUDA array (a PyTorch tensor, ...): checked and written through its
            # zero-copy native view (its own dtype object, e.g. torch.float16, is not NumPy's).
            out = self.backend.to_native(out, "cuda")
        check_out(self.function, out, shape, dtype, self.kind)
        if array_kind(out) in self.backend.native_kinds:
            self.native_out = out
            check_no_partial_overlap(self.function, out, self.native, self.backend.xp, self.backend.data_ptr)
        else:
            xp, data_ptr = _user_overlap_tools(self.kind)
            check_no_partial_overlap(self.function, out, self.user, xp, data_ptr)

    def export(self, result: Any) -> Any:
        return self.backend.export(result, self.kind, self.out)


def _params_for(spec: ActivationSpec, function: str, params: dict, ndim: int) -> dict:
    """Row-wise activations get their axis (or axes) checked against x (before any write) and made non-negative."""
    if spec.form != "rowwise":
        return params
    return {**params, "axis": normalize_axes(function, params["axis"], ndim)}


def _rows_over_axes(call: _Call, axes: tuple, inputs: list, run: Callable[[list, int, Any], Any]) -> Any:
    """A row-wise kernel over several axes (sorted, distinct), on any backend: the axes become one.

    Backends compute rows along one axis.  Adjacent axes are merged into one by
    a reshape (a view for C-contiguous arrays, so a C-contiguous ``out``, x
    itself included, is written in place); other axes are first moved last,
    the inputs copied, and the result copied back into x's shape.
    ``run(inputs, axis, out)`` calls the backend on the merged arrays.
    """
    device_of = getattr(call.backend, "device_of", None)  # CUDA: allocate on x's device
    with device_of(inputs[-1]) if device_of is not None else contextlib.nullcontext():
        return _merged_rows(call, axes, inputs, run)


def _merged_rows(call: _Call, axes: tuple, inputs: list, run: Callable[[list, int, Any], Any]) -> Any:
    xp, x, target = call.backend.xp, inputs[-1], call.native_out
    first, count = axes[0], len(axes)
    adjacent = axes == tuple(range(first, first + count))
    last = tuple(range(x.ndim - count, x.ndim))
    if not adjacent:
        inputs = [xp.moveaxis(a, axes, last) for a in inputs]
        first = last[0]
    shape = inputs[-1].shape
    merged = (*shape[:first], math.prod(shape[first : first + count]), *shape[first + count :])
    rows = [a.reshape(merged) for a in inputs]
    if adjacent and (target is None or target.flags.c_contiguous):
        target = call.backend.empty(x.shape, x.dtype) if target is None else target
        run(rows, first, target.reshape(merged))
        return target
    result = run(rows, first, None).reshape(shape)
    if not adjacent:
        result = xp.moveaxis(result, last, axes)
    target = call.backend.empty(x.shape, x.dtype) if target is None else target
    target[...] = result
    return target


def forward(spec: ActivationSpec, params: dict, x: Any, out: Any = None) -> Any:
    if spec.form != "prelu":
        # The common call (a NumPy or CuPy array), checked in a few attribute
        # reads (anything unusual returns None and takes the general path
        # below, which raises the proper error): small host calls cost about a
        # microsecond here, not ten; CuPy calls a few (bench/host_overhead.py).
        if type(x) is np.ndarray:
            fast = backends.host_fast_path()
        else:
            fast = backends.device_fast_path()
            if fast is not None and type(x) is not fast.array_type:
                fast = None
        if fast is not None and fast.has_fast_path:
            y = fast.fast_forward(spec.kernel, params, x, out)
            if y is not None:
                return y
    call = _Call(spec.name, {"x": x}, out, ("x",))
    xn = call.native["x"]
    params = _params_for(spec, spec.name, params, xn.ndim)
    call.set_out(xn.shape, xn.dtype)
    if type(params.get("axis")) is tuple:
        run = lambda rows, axis, out: call.backend.forward(spec.kernel, {**params, "axis": axis}, *rows, out)  # noqa: E731
        return call.export(_rows_over_axes(call, params["axis"], [xn], run))
    return call.export(call.backend.forward(spec.kernel, params, xn, call.native_out))


def backward(spec: ActivationSpec, params: dict, dy: Any, x: Any, out: Any = None) -> Any:
    if spec.form != "prelu" and type(dy) is type(x):
        if type(x) is np.ndarray:
            fast = backends.host_fast_path()
        else:
            fast = backends.device_fast_path()
            if fast is not None and type(x) is not fast.array_type:
                fast = None
        if fast is not None and fast.has_fast_path:
            dx = fast.fast_backward(spec.kernel, params, dy, x, out)
            if dx is not None:
                return dx
    function = f"{spec.name}_backward"
    call = _Call(function, {"dy": dy, "x": x}, out, ("dy", "x"))
    dyn, xn = call.native["dy"], call.native["x"]
    check_pair(function, dyn, xn)
    params = _params_for(spec, function, params, xn.ndim)
    call.set_out(xn.shape, xn.dtype)
    if type(params.get("axis")) is tuple:
        run = lambda rows, axis, out: call.backend.backward(spec.kernel, {**params, "axis": axis}, *rows, out)  # noqa: E731
        return call.export(_rows_over_axes(call, params["axis"], [dyn, xn], run))
    return call.export(call.backend.backward(spec.kernel, params, dyn, xn, call.native_out))


def _check_alpha(function: str, alpha: Any, x_shape: tuple) -> None:
    try:
        shape = np.broadcast_shapes(tuple(alpha.shape), tuple(x_shape))
    except ValueError:
        shape = None
    if shape != tuple(x_shape):
        raise ValueError(
            f"{function}: alpha of shape {tuple(alpha.shape)} does not broadcast to x's shape {tuple(x_shape)}; "
            f"use a scalar, (C, 1, 1) for NCHW, (C,) for channels-last, or x's shape"
        )


def untyped_as_x_dtype(user_value: Any, value: Any, x: Any) -> Any:
    """A Python scalar or list operand (alpha, a bias) takes x's dtype (an array keeps its own)."""
    if hasattr(user_value, "dtype") or value.dtype == x.dtype or value.dtype.kind != "f":
        return value
    return value.astype(x.dtype)


def prelu(x: Any, alpha: Any, out: Any = None) -> Any:
    call = _Call("prelu", {"x": x, "alpha": alpha}, out, ("x", "alpha"))
    xn, an = call.native["x"], untyped_as_x_dtype(alpha, call.native["alpha"], call.native["x"])
    _check_alpha("prelu", an, xn.shape)
    call.set_out(xn.shape, xn.dtype)
    return call.export(call.backend.prelu_forward(xn, an, call.native_out))


def prelu_backward(dy: Any, x: Any, alpha: Any, out: Any = None) -> tuple[Any, Any]:
    function = "prelu_backward"
    call = _Call(function, {"dy": dy, "x": x, "alpha": alpha}, out, ("dy", "x", "alpha"))
    dyn, xn = call.native["dy"], call.native["x"]
    an = untyped_as_x_dtype(alpha, call.native["alpha"], xn)
    check_pair(function, dyn, xn)
    _check_alpha(function, an, xn.shape)
    call.set_out(xn.shape, xn.dtype)
    dx, dalpha = call.backend.prelu_backward(dyn, xn, an, call.native_out)
    # dalpha is a new array in the kind of alpha's side; out (if any) only receives dx.
    dalpha_out = call.backend.export(dalpha, call.kind, None)
    return call.export(dx), dalpha_out
