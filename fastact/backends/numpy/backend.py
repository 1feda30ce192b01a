"""The NumPy backend: host arrays, the block engine (engine.py), and the math (math.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..base import Backend
from . import engine, fused
from . import math as numpy_math


def _padded(alpha: np.ndarray, ndim: int) -> np.ndarray:
    """alpha with leading 1-axes so it has x's ndim (NumPy broadcasting, spelled out)."""
    return alpha.reshape((1,) * (ndim - alpha.ndim) + alpha.shape)


class NumpyBackend(Backend):
    name = "numpy"
    xp = np
    native_kinds = ("numpy",)

    # ---- arrays -----------------------------------------------------------
    def to_native(self, a: Any, kind: str) -> np.ndarray:
        if kind == "numpy":
            return a
        if kind in ("cupy", "cuda"):
            import cupy  # a device array forced onto the host

            return cupy.asnumpy(cupy.asarray(a))
        return np.asarray(a)

    def export(self, result: np.ndarray, kind: str, out: Any) -> Any:
        if kind == "numpy":
            return result if out is None or out is result else out
        import cupy  # back to the device the input came from

        if out is not None:
            out.set(result)
            return out
        return cupy.asarray(result)

    def data_ptr(self, a: np.ndarray) -> int:
        return a.__array_interface__["data"][0]

    # ---- compute ----------------------------------------------------------
    def _out(self, out: np.ndarray | None, like: np.ndarray) -> np.ndarray:
        return np.empty(like.shape, like.dtype) if out is None else out

    def forward(self, kernel: str, params: dict, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        out = self._out(out, x)
        self._apply("forward", kernel, params, [out], [x])
        return out

    def backward(self, kernel: str, params: dict, dy: np.ndarray, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        out = self._out(out, x)
        self._apply("backward", kernel, params, [out], [dy, x])
        return out

    def _apply(self, direction: str, kernel: str, params: dict, outs: list, ins: list) -> None:
        """Plan the kernel's chunk function and run it elementwise, or over rows for row-wise kernels."""
        params = dict(params)
        axis = params.pop("axis") if kernel in numpy_math.ROWWISE else None
        chunk = numpy_math.plan(direction, kernel, params, engine.compute_dtype(ins[-1].dtype))
        if axis is None:
            engine.run(chunk, outs, ins)
        else:
            engine.run_rows(chunk, outs, ins, axis)

    def prelu_forward(self, x: np.ndarray, alpha: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        out = self._out(out, x)
        alpha = _padded(alpha, x.ndim)
        if alpha.shape == x.shape:
            engine.run(numpy_math.prelu_forward, [out], [x, alpha])
        else:
            engine.run(numpy_math.prelu_forward, [out], [x], small=alpha)
        return out

    def prelu_backward(self, dy, x, alpha, out):
        out = self._out(out, x)
        shape = alpha.shape
        alpha = _padded(alpha, x.ndim)
        if alpha.shape == x.shape:
            dalpha = np.empty(shape, alpha.dtype)
            engine.run(numpy_math.prelu_backward_elementwise, [out, dalpha.reshape(alpha.shape)], [dy, x, alpha])
            return out, dalpha
        total = engine.run(numpy_math.prelu_backward, [out], [dy, x], small=alpha, reduce=True)
        return out, total.reshape(shape).astype(alpha.dtype)

    # ---- fused calls -----------------------------------------------------------
    # One flow (fused.py) for this backend and the cpu backend, which swaps in
    # its compiled epilogue and im2col/col2im through these two attributes.
    epilogues: fused.Epilogues = fused.NUMPY_EPILOGUES
    conv_kernels: fused.ConvKernels = fused.NUMPY_CONV_KERNELS

    def bias_act(self, kernel, params, x, bias, axis, out):
        return self.epilogues.epilogue(kernel, params, x, bias, axis, self._out(out, x))

    def bias_act_backward(self, kernel, params, dy, x, bias, axis):
        dx = np.empty(x.shape, x.dtype)
        dbias = self.epilogues.epilogue_backward(kernel, params, dy, x, bias, axis, dx)
        return dx, fused.in_dtype(dbias, bias)

    def dense_bias_act(self, kernel, params, x, w, bias):
        return fused.dense_bias_act(kernel, params, x, w, bias, epilogues=self.epilogues)

    def dense_bias_act_backward(self, kernel, params, dy, x, w, bias):
        return fused.dense_bias_act_backward(kernel, params, dy, x, w, bias, epilogues=self.epilogues)

    def conv2d_bias_act(self, kernel, params, x, w, bias, geometry):
        return fused.conv2d_bias_act(kernel, params, x, w, bias, geometry, epilogues=self.epilogues,
                                     kernels=self.conv_kernels)

    def conv2d_bias_act_backward(self, kernel, params, dy, x, w, bias, geometry):
        return fused.conv2d_bias_act_backward(kernel, params, dy, x, w, bias, geometry, epilogues=self.epilogues,
                                              kernels=self.conv_kernels)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "numpy": np.__version__,
            "threads": engine.NUM_THREADS,
            "block_elements": engine.BLOCK_ELEMENTS,
            "im2col_budget_bytes": fused.IM2COL_BUDGET_BYTES,
        }
