"""The interface every backend implements.

The dispatcher (``fastact/_dispatch.py``) validates parameters and arrays,
converts the user's arrays into the backend's native arrays (``to_native``),
calls one of the compute methods below, and converts the result back into
the user's kind of array (``export``).  A backend therefore only ever sees
native arrays of a supported dtype, already checked; ``out`` is a native
array it must fill, or None when it should allocate the result.
"""
from __future__ import annotations

from typing import Any


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says why."""


class Backend:
    """Base class: array conversion shared by the backends, compute methods abstract."""

    name: str = ""
    # The array module of the native arrays (numpy or cupy).
    xp: Any = None
    # Array kinds (see fastact._arrays.array_kind) that are already native.
    native_kinds: tuple[str, ...] = ()
    # True where the backend has fast_forward/fast_backward for NumPy arrays
    # (host arrays of a supported dtype, nothing to convert): the dispatcher
    # tries them before its general checks, and they return None to decline.
    has_fast_path: bool = False
    # Replays recorded per-channel and fused calls (fastact/backends/kernels/replay.py: ReplayedCalls).
    replays: bool = False

    # ---- arrays -----------------------------------------------------------
    def to_native(self, a: Any, kind: str) -> Any:
        """The user's array as a native array (a copy only when it lives elsewhere)."""
        raise NotImplementedError

    def export(self, result: Any, kind: str, out: Any) -> Any:
        """The native result as the user's kind of array, copied into ``out`` if given."""
        raise NotImplementedError

    def data_ptr(self, a: Any) -> int:
        raise NotImplementedError

    def empty(self, shape: tuple, dtype: Any) -> Any:
        return self.xp.empty(shape, dtype=dtype)

    # ---- compute ----------------------------------------------------------
    def forward(self, kernel: str, params: dict, x: Any, out: Any) -> Any:
        """y = kernel(x; params) into ``out`` (allocated when None); returns y.

        For a row-wise kernel (softmax), ``params["axis"]`` is already checked
        against x.ndim and non-negative (0 for a 0-d x, taken as one element).
        """
        raise NotImplementedError

    def backward(self, kernel: str, params: dict, dy: Any, x: Any, out: Any) -> Any:
        """dx = dy * kernel'(x; params) into ``out`` (allocated when None); returns dx."""
        raise NotImplementedError

    def prelu_forward(self, x: Any, alpha: Any, out: Any) -> Any:
        raise NotImplementedError

    def prelu_backward(self, dy: Any, x: Any, alpha: Any, out: Any) -> tuple[Any, Any]:
        """(dx, dalpha); dalpha has alpha's shape and dtype."""
        raise NotImplementedError

    # ---- fused calls (README.md, Fused calls) -------------------------------
    # ``kernel``/``params`` name the activation as in forward(); ``bias`` is a
    # 1-d array (None where the call allows no bias), checked against the
    # shapes; gradients of w and bias come back in their own dtypes, dbias
    # None when bias is None.
    def bias_act(self, kernel: str, params: dict, x: Any, bias: Any, axis: int, out: Any) -> Any:
        """y = act(x + bias along axis) into ``out`` (allocated when None); returns y."""
        raise NotImplementedError

    def bias_act_backward(self, kernel: str, params: dict, dy: Any, x: Any, bias: Any, axis: int) -> tuple[Any, Any]:
        """(dx, dbias): dx = dy * act'(x + bias), dbias = dx summed over every axis but ``axis``."""
        raise NotImplementedError

    def dense_bias_act(self, kernel: str, params: dict, x: Any, w: Any, bias: Any) -> Any:
        """act(x @ w + bias) with x (..., in) and w (in, out)."""
        raise NotImplementedError

    def dense_bias_act_backward(self, kernel: str, params: dict, dy: Any, x: Any, w: Any, bias: Any) -> tuple[Any, Any, Any]:
        """(dx, dw, dbias) of dense_bias_act."""
        raise NotImplementedError

    def conv2d_bias_act(self, kernel: str, params: dict, x: Any, w: Any, bias: Any, geometry: Any) -> Any:
        """act(conv2d(x, w) + bias); ``geometry`` is a checked ``fastact._conv_geometry.Conv2dGeometry``."""
        raise NotImplementedError

    def conv2d_bias_act_backward(
        self, kernel: str, params: dict, dy: Any, x: Any, w: Any, bias: Any, geometry: Any
    ) -> tuple[Any, Any, Any]:
        """(dx, dw, dbias) of conv2d_bias_act."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Facts for ``python -m fastact info``."""
        return {"name": self.name}
