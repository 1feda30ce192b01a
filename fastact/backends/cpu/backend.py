"""The ``cpu`` backend: host arrays run through the compiled module (``cuda/host/``).

The math is the CUDA backend's own: the activation functors of
``cuda/activations.cuh`` and the row ops of ``cuda/rowwise_ops.cuh``,
compiled for this CPU with vector math and run on all cores.  The functor
parameters are packed exactly as for a CUDA launch
(``kernels/plan.py: pack_functor``), so both backends compute the same
expressions on the same values; per-channel operations (PReLU, bias_act) use
the CUDA backend's channel plan (``kernels/plan.py: prelu_plan``).

Layouts: elementwise calls take any strides (the engine gathers and scatters
chunk by chunk, never a full-size copy).  PReLU, bias_act and softmax rows
run on a C-contiguous (outer, channels, inner) / (rows, length) view,
copying only operands that are not laid out that way.

dense and conv2d are the NumPy backend's (BLAS GEMMs through ``np.matmul``)
with this backend's fused epilogue; conv2d's im2col and col2im are compiled
too (CompiledConvKernels).
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..kernels import plan
from ..kernels.fused import channel_plan
from ..numpy.backend import NumpyBackend, _padded
from ..numpy import fused as numpy_fused
from . import build, threads

_ROWWISE = {"softmax": 0, "log_softmax": 1}
_MAX_CACHED_FUNCTORS = 4096
# conv2d's column buffer per batch chunk (see CompiledConvKernels).
COLS_BUDGET_BYTES = 64 << 20


class CpuBackend(NumpyBackend):
    name = "cpu"
    has_fast_path = True  # fast_forward / fast_backward (fastact/_dispatch.py)

    def __init__(self) -> None:
        self.engine = build.load()
        threads.apply(self.engine)  # torch's OpenMP threads, where fastact.torch asked for them
        self._functor_numbers = {name: i for i, name in enumerate(self.engine.functors())}
        self._packed: dict = {}
        self._bfloat16 = _bfloat16_dtype()
        # The NumPy backend's fused calls (GEMMs by np.matmul) with this backend's compiled pieces.
        self.epilogues = self
        self.conv_kernels = CompiledConvKernels(self)
        self._dtypes = frozenset(np.dtype(d) for d in ("float16", "float32", "float64")) | (
            {self._bfloat16} if self._bfloat16 is not None else set())
        # The module's dtype codes (cuda/host/module.cpp: DType) for elementwise_pointers.
        self._dtype_codes = {np.dtype("float16"): 0, np.dtype("float32"): 2, np.dtype("float64"): 3}
        if self._bfloat16 is not None:
            self._dtype_codes[self._bfloat16] = 1
        # None in a module built before them (an old editable build): callers take the general path.
        self._pointers = getattr(self.engine, "elementwise_pointers", None)
        self._row_pointers = getattr(self.engine, "rowwise_pointers", None)
        self.prelu_pointers = getattr(self.engine, "prelu_pointers", None)

    # ---- arguments for the compiled module --------------------------------------
    def functor(self, kernel: str, params: dict, dtype: np.dtype) -> tuple[int, bytes]:
        """(functor number, packed parameter bytes) for an activation kernel, cached.

        Keyed by the params dict's identity first (the public functions pass
        the registry's remembered dicts, see ActivationSpec.kernel_params_of),
        which costs a tenth of hashing its items; the entry keeps the dict, so
        an id is never reused while its entry lives.
        """
        hit = self._packed.get((id(params), dtype))
        if hit is not None and hit[0] is params:
            return hit[1]
        key = (kernel, tuple(params.items()), dtype)
        packed = self._packed.get(key)
        if packed is None:
            number = self._functor_numbers[plan.FUNCTORS[kernel].template]
            packed = (number, plan.pack_functor(kernel, params, dtype).tobytes())
            if len(self._packed) >= _MAX_CACHED_FUNCTORS:
                self._packed.clear()
            self._packed[key] = packed
        self._packed[(id(params), dtype)] = (params, packed)
        return packed

    def buffer(self, a: np.ndarray) -> np.ndarray:
        """``a`` as the module reads it: bfloat16 (no buffer format of its own) as its uint16 bits."""
        return a.view(np.uint16) if a.dtype is self._bfloat16 else a

    def _like(self, out: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """``out``, or a new array with x's memory layout (so a transposed x runs on the flat path)."""
        return np.empty_like(x) if out is None else out

    # ---- the fast path for NumPy arrays (fastact/_dispatch.py) ---------------------------
    def _fast_out(self, out: Any, x: np.ndarray) -> np.ndarray | None:
        """``out`` for a fast call: a new array, or the caller's if it needs no general check; None otherwise."""
        if out is None:
            return np.empty_like(x)
        if type(out) is not np.ndarray or not out.flags.writeable:
            return None
        if out is x or (out.shape == x.shape and out.dtype == x.dtype and not np.may_share_memory(out, x)):
            return out
        return None

    def _fast_rows(self, kernel: str, params: dict, x: np.ndarray, dy: np.ndarray | None, target: np.ndarray):
        """A row-wise call along the last axis of C-contiguous arrays, straight to the module; None otherwise."""
        axis = params["axis"]
        if (type(axis) is not int or x.ndim == 0 or axis not in (-1, x.ndim - 1) or x.size == 0
                or not x.flags.c_contiguous or not target.flags.c_contiguous
                or (dy is not None and not dy.flags.c_contiguous)):
            return None
        length = x.shape[-1]
        self.engine.rowwise(_ROWWISE[kernel], dy is not None, self.buffer(target),
                            None if dy is None else self.buffer(dy), self.buffer(x), x.size // length, length)
        return target

    def pointer_call(self, kernel: str, params: dict, dtype: np.dtype, backward: bool) -> tuple | None:
        """How to run an activation on contiguous memory at raw addresses, or None where this backend cannot.

        For callers that check the memory themselves (fastact/torch: contiguous CPU tensors of
        ``dtype``, the result newly allocated), so that no array views are built.  Returns
        ``(function, leading arguments)``; the call is ``function(*leading, ...)`` with, for an
        elementwise kernel, ``n, out, x`` (forward) or ``n, out, dy, x`` (backward), and for
        softmax/log_softmax along the last axis ``rows, length, out, x`` or ``rows, length, out, x, dy``.
        The arguments are computed once here (the functor's packed parameters included), so a
        caller may keep the pair for every later call with the same kernel, params and dtype.
        """
        code = self._dtype_codes.get(dtype)
        if code is None:
            return None
        if kernel in _ROWWISE:
            if self._row_pointers is None:
                return None
            return self._row_pointers, (_ROWWISE[kernel], backward, code)
        if self._pointers is None:
            return None
        number, packed = self.functor(kernel, params, dtype)
        return self._pointers, (number, backward, packed, code)

    def dtype_code(self, dtype: np.dtype) -> int | None:
        """The module's code for ``dtype`` (the pointer calls' dtype argument), None for one it does not compute."""
        return self._dtype_codes.get(dtype)

    def fast_forward(self, kernel: str, params: dict, x: np.ndarray, out: Any) -> np.ndarray | None:
        """forward() for an ndarray x that needs no conversion or general check; None: take the general path."""
        if x.dtype not in self._dtypes:
            return None
        target = self._fast_out(out, x)
        if target is None:
            return None
        if kernel in _ROWWISE:
            return self._fast_rows(kernel, params, x, None, target)
        number, packed = self.functor(kernel, params, x.dtype)
        self.engine.elementwise(number, False, packed, self.buffer(target), self.buffer(x))
        return target

    def fast_backward(self, kernel: str, params: dict, dy: np.ndarray, x: np.ndarray, out: Any) -> np.ndarray | None:
        if x.dtype not in self._dtypes or dy.dtype != x.dtype or dy.shape != x.shape:
            return None
        target = self._fast_out(out, x)
        if target is None or (target is not dy and target is not x and np.may_share_memory(target, dy)):
            return None
        if kernel in _ROWWISE:
            return self._fast_rows(kernel, params, x, dy, target)
        number, packed = self.functor(kernel, params, x.dtype)
        self.engine.elementwise(number, True, packed, self.buffer(target), self.buffer(dy), self.buffer(x))
        return target

    # ---- elementwise activations --------------------------------------------------
    def forward(self, kernel: str, params: dict, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        if kernel in _ROWWISE:
            return self._rowwise(kernel, False, params["axis"], x, None, out)
        out = self._like(out, x)
        number, packed = self.functor(kernel, params, x.dtype)
        self.engine.elementwise(number, False, packed, self.buffer(out), self.buffer(x))
        return out

    def backward(self, kernel: str, params: dict, dy: np.ndarray, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        if kernel in _ROWWISE:
            return self._rowwise(kernel, True, params["axis"], x, dy, out)
        out = self._like(out, x)
        number, packed = self.functor(kernel, params, x.dtype)
        self.engine.elementwise(number, True, packed, self.buffer(out), self.buffer(dy), self.buffer(x))
        return out

    # ---- softmax rows -----------------------------------------------------------------
    def _rowwise(self, kernel: str, backward: bool, axis: int, x: np.ndarray, dy: np.ndarray | None,
                 out: np.ndarray | None) -> np.ndarray:
        target = self._out(out, x)
        if x.size == 0:
            return target

        def rows(a):  # the axis last, C-contiguous (a copy only when it is not already)
            a = a.reshape(1) if a.ndim == 0 else a
            return np.ascontiguousarray(np.moveaxis(a, axis, -1))

        xr = rows(x)
        dyr = rows(dy) if backward else None
        destination = np.moveaxis(target.reshape(1) if target.ndim == 0 else target, axis, -1)
        work = destination if destination.flags.c_contiguous else np.empty(destination.shape, x.dtype)
        length = xr.shape[-1]
        self.engine.rowwise(_ROWWISE[kernel], backward, self.buffer(work),
                            None if dyr is None else self.buffer(dyr), self.buffer(xr), xr.size // length, length)
        if work is not destination:
            destination[...] = work
        return target

    # ---- per-channel operations: PReLU, bias_act -----------------------------------------
    def _channels(self, p: plan.PreluPlan, target: np.ndarray, inputs: list, values: np.ndarray):
        """(C-contiguous inputs, where results go, work array, values as contiguous compute-type channel values)."""

        def arranged(a):
            return a.transpose(p.axes) if p.axes is not None else a

        inputs = [self.buffer(np.ascontiguousarray(arranged(a))) for a in inputs]
        destination = arranged(target)
        work = destination if destination.flags.c_contiguous else np.empty(destination.shape, destination.dtype)
        padded = _padded(values, target.ndim)
        per_channel = np.ascontiguousarray(arranged(padded), dtype=plan.compute_dtype(target.dtype)).reshape(-1)
        return inputs, destination, work, per_channel

    def _finish(self, destination: np.ndarray, work: np.ndarray) -> None:
        if work is not destination:
            destination[...] = work

    def prelu_forward(self, x: np.ndarray, alpha: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        target = self._out(out, x)
        if x.size == 0:
            return target
        p = plan.prelu_plan(x.shape, alpha.shape)
        (xc,), destination, work, slopes = self._channels(p, target, [x], alpha)
        self.engine.prelu_forward(self.buffer(work), xc, slopes, p.outer, p.channels, p.inner)
        self._finish(destination, work)
        return target

    def prelu_backward(self, dy, x, alpha, out):
        target = self._out(out, x)
        if x.size == 0:
            return target, np.zeros(alpha.shape, alpha.dtype)
        p = plan.prelu_plan(x.shape, alpha.shape)
        (dyc, xc), destination, work, slopes = self._channels(p, target, [dy, x], alpha)
        dalpha = np.empty(p.channels, np.float64)
        self.engine.prelu_backward(self.buffer(work), dyc, xc, slopes, dalpha, p.outer, p.channels, p.inner)
        self._finish(destination, work)
        return target, dalpha.reshape(alpha.shape).astype(alpha.dtype, copy=False)

    def epilogue(self, kernel: str, params: dict, z: np.ndarray, bias: np.ndarray | None, axis: int,
                 out: np.ndarray) -> np.ndarray:
        """out = act(z + bias along ``axis``) in one pass (act(z) without a bias); ``out`` may be ``z``."""
        if z.dtype != out.dtype:  # a 16-bit dense/conv: z is the float32 GEMM result, rounded once at the end
            return numpy_fused.epilogue(kernel, params, z, bias, axis, out)
        if bias is None:
            return self.forward(kernel, params, z, out)
        if z.size == 0:
            return out
        p = channel_plan(z.shape, axis % z.ndim)
        (zc,), destination, work, values = self._channels(p, out, [z], bias)
        number, packed = self.functor(kernel, params, z.dtype)
        self.engine.bias_act_forward(number, packed, self.buffer(work), zc, values, p.outer, p.channels, p.inner)
        self._finish(destination, work)
        return out

    def epilogue_backward(self, kernel: str, params: dict, dy: np.ndarray, z: np.ndarray, bias: np.ndarray | None,
                          axis: int, dz: np.ndarray) -> np.ndarray | None:
        """dz = dy * act'(z + bias) in one pass; dbias as float64 (bias's shape), or None without a bias."""
        if not z.dtype == dy.dtype == dz.dtype:  # 16-bit dense/conv: the NumPy epilogue rounds once
            return numpy_fused.epilogue_backward(kernel, params, dy, z, bias, axis, dz)
        if bias is None:
            self.backward(kernel, params, dy, z, dz)
            return None
        if z.size == 0:
            return np.zeros(bias.shape, np.float64)
        p = channel_plan(z.shape, axis % z.ndim)
        (dyc, zc), destination, work, values = self._channels(p, dz, [dy, z], bias)
        dbias = np.empty(p.channels, np.float64)
        number, packed = self.functor(kernel, params, z.dtype)
        self.engine.bias_act_backward(number, packed, self.buffer(work), dyc, zc, values, dbias,
                                      p.outer, p.channels, p.inner)
        self._finish(destination, work)
        return dbias.reshape(bias.shape)

    def describe(self) -> dict:
        return {"name": self.name, "isa": self.engine.isa, "threads": self.engine.threads(),
                "thread pool": threads.describe(self.engine), "module": self.engine.__file__}


class CompiledConvKernels(numpy_fused.ConvKernels):
    """conv2d's im2col and col2im from the compiled module (cuda/host/conv.h).

    The NumPy backend's GEMM flow (numpy/fused.py: _Conv) runs unchanged
    around them.  The loops read x and write dx in their own dtype (16-bit
    converted in the loop), never materialize the padding, and col2im is a
    gather, so dx has the same bits on any number of threads.  The columns
    of a chunk stay under COLS_BUDGET_BYTES.  Cache-sized chunks (a few MiB)
    were 2-5x slower on the 2-core dev VM, not faster: every multi-threaded
    OpenBLAS call then costs milliseconds of hand-off between its threads,
    this module's pool and the machine's other load, so fewer, larger GEMMs
    win although the columns go through memory (64 MiB: (2048, 16, 32, 32)
    3x3 in 18 chunks; 256 MiB measured no faster).
    """

    def __init__(self, backend: CpuBackend) -> None:
        self.backend = backend
        self._scratch = threading.local()

    def cols_budget_bytes(self) -> int:
        return COLS_BUDGET_BYTES

    def scratch(self, size: int, dtype: np.dtype) -> np.ndarray:
        """The column buffer's memory, kept between calls (per Python thread, at most the budget).

        A new buffer would be page-faulted in (and zeroed by the kernel) on
        every call: 16 Ki faults for 64 MiB.
        """
        nbytes = size * np.dtype(dtype).itemsize
        kept = getattr(self._scratch, "buffer", None)
        if kept is None or kept.nbytes < nbytes:
            kept = np.empty(nbytes, np.uint8)
            if nbytes <= max(COLS_BUDGET_BYTES, 1):
                self._scratch.buffer = kept
        return kept[:nbytes].view(dtype)

    def _plan(self, conv, n: int) -> tuple:
        g = conv.geometry
        (top, _), (left, _) = g.padding
        return (g.data_format == "NHWC", n, g.in_channels, *g.in_size, g.groups, *g.kernel_size, *g.stride,
                *g.dilation, top, left, conv.oh, conv.ow)

    def im2col(self, conv, x: np.ndarray, cols: np.ndarray) -> None:
        image = self.backend.buffer(np.ascontiguousarray(x))
        self.backend.engine.im2col(cols, image, *self._plan(conv, x.shape[0]))

    def col2im(self, conv, cols: np.ndarray, dx: np.ndarray) -> None:
        work = dx if dx.flags.c_contiguous else np.empty(dx.shape, dx.dtype)
        self.backend.engine.col2im(self.backend.buffer(work), cols, *self._plan(conv, dx.shape[0]))
        if work is not dx:
            dx[...] = work


def _bfloat16_dtype() -> np.dtype | None:
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)
