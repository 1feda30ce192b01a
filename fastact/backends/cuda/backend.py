"""The "cuda" backend: fastact's kernels (cuda/) on CuPy arrays and other CUDA arrays.

The host logic is :class:`KernelBackend` and :mod:`~fastact.backends.kernels.plan`, shared with the
CPU emulator; this module adds only what needs a GPU: finding the device,
compiling and caching the kernel modules per device (lazily, one module per
activation kernel and dtype), and launching on CuPy's current stream.

Construction fails with :class:`BackendUnavailableError` carrying the reason
(CuPy missing, no driver, no device), which makes ``"auto"`` fall back to
NumPy and an explicit ``"cuda"`` raise.
"""
from __future__ import annotations

import contextlib
import operator
import threading
from typing import Any

from ..base import BackendUnavailableError
from ..kernels import plan
from ..kernels.backend import KernelBackend
from ..kernels.replay import ReplayedCalls
from .compile import arch_option, compile_kernels


def _import_cupy():
    try:
        import cupy
    except ImportError as error:
        raise BackendUnavailableError(f"backend 'cuda' is not available: CuPy cannot be imported: {error}") from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError: no driver, insufficient driver, ...
        raise BackendUnavailableError(f"backend 'cuda' is not available: {error}") from error
    if count == 0:
        raise BackendUnavailableError("backend 'cuda' is not available: no CUDA device found")
    return cupy


class CudaBackend(ReplayedCalls, KernelBackend):
    name = "cuda"
    native_kinds = ("cupy",)

    def __init__(self) -> None:
        self.xp = _import_cupy()
        self.array_type = self.xp.ndarray  # the fast path's arrays (fastact/_dispatch.py)
        # cudaGetDevice: the current device, one C call (constructing a cupy.cuda.Device costs more).
        self.current_device = self.xp.cuda.runtime.getDevice
        # The fast path's attribute reads as C-level getters (no Python frame per read).
        # _c_contiguous is what a.flags.c_contiguous reads, without building a flags object.
        contiguous = "_c_contiguous" if hasattr(self.xp.ndarray, "_c_contiguous") else "flags.c_contiguous"
        self.c_contiguous = operator.attrgetter(contiguous)
        self.array_device = operator.attrgetter("data.device_id")
        self.data_ptr = operator.attrgetter("data.ptr")
        self.gemm_into = self.xp.matmul  # what gemm() calls for a C-contiguous out (replays call it directly)
        self._functions: dict[tuple, Any] = {}
        self._elementwise_entries: dict = {}
        self._modules: dict[tuple, Any] = {}
        self._sm_counts: dict[int, int] = {}
        self._lock = threading.Lock()
        # The framework module ("torch", ...) of the last foreign CUDA input,
        # per thread, so export() can hand back the same kind of array.
        self._foreign = threading.local()

    # ---- arrays -----------------------------------------------------------
    def to_native(self, a: Any, kind: str) -> Any:
        cupy = self.xp
        if kind == "cupy":
            return a
        if kind == "cuda":  # zero-copy views of other CUDA arrays (PyTorch, JAX, ...)
            self._foreign.module = type(a).__module__.split(".")[0]
            # DLPack first: it names bfloat16 (the CUDA array interface gives PyTorch's
            # bfloat16 as raw 2-byte voids) and orders the producer's stream before ours.
            if hasattr(a, "__dlpack__"):
                return cupy.from_dlpack(a)
            return cupy.asarray(a)
        import numpy as np

        return cupy.asarray(np.asarray(a))  # host input with "cuda" forced: copy to the device

    def export(self, result: Any, kind: str, out: Any) -> Any:
        cupy = self.xp
        if kind == "cupy":
            return result if out is None or out is result else _copy_into(cupy.asarray(out), result, out)
        if kind == "cuda":
            if out is not None:
                return _copy_into(self.to_native(out, "cuda"), result, out)
            return self._as_foreign(result)
        # NumPy input with "cuda" forced: back to the host.
        if out is not None:
            out[...] = cupy.asnumpy(result)
            return out
        return cupy.asnumpy(result)

    def _as_foreign(self, result: Any) -> Any:
        if getattr(self._foreign, "module", None) == "torch":
            import torch

            return torch.from_dlpack(result)
        return result  # no known framework: a CuPy array (itself a CUDA array)

    # ---- device primitives ------------------------------------------------
    def device_of(self, a: Any):
        # a.device, a cupy.cuda.Device, is a context manager making it current; entering
        # it costs two driver calls and a Python object, for nothing when it already is.
        return _ALREADY_CURRENT if a.data.device_id == self.current_device() else a.device

    def sm_count(self) -> int:
        device = self.current_device()
        count = self._sm_counts.get(device)
        if count is None:
            count = self._sm_counts[device] = self.xp.cuda.Device(device).attributes["MultiProcessorCount"]
        return count

    def kernel_handle(self, family: str, dtype: Any, kernel: str) -> Any:
        # A cupy.cuda.Function: calling it launches on CuPy's current stream.
        return self._function(family, dtype, kernel)

    def gemm(self, a: Any, b: Any, out: Any) -> Any:
        # cuBLAS through CuPy: 16-bit products accumulate in float32.  CuPy's
        # matmul takes out= only as a C-contiguous array of the result's dtype.
        if self.c_contiguous(out):
            return self.xp.matmul(a, b, out=out)
        out[...] = self.xp.matmul(a, b)
        return out

    def _function(self, family: str, dtype: Any, kernel: str) -> Any:
        """The loaded kernel on the current device, by (device, name expression): compiled and loaded once."""
        key = (self.current_device(), kernel)
        function = self._functions.get(key)
        if function is None:
            module, lowered = self._module(self.xp.cuda.Device(key[0]), family, dtype)
            function = self._functions[key] = module.get_function(lowered[kernel])
        return function

    def _module(self, device: Any, family: str, dtype: Any) -> tuple[Any, dict]:
        """The compiled module of (family, dtype) on ``device``: every instantiation, compiled once."""
        key = (device.id, family, self.xp.dtype(dtype).name)
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                arch, kind = arch_option(int(device.compute_capability))  # "90" for 9.0
                compiled = compile_kernels(plan.module_kernels(family, dtype), arch, kind)
                loaded = self.xp.cuda.function.Module()
                loaded.load(compiled.binary)
                module = self._modules[key] = (loaded, compiled.lowered_names)
        return module

    def describe(self) -> dict:
        device = self.xp.cuda.Device()
        props = self.xp.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return {"name": self.name, "cupy": self.xp.__version__, "device": name,
                "compute_capability": device.compute_capability, "sm_count": self.sm_count()}


_ALREADY_CURRENT = contextlib.nullcontext()  # reusable: it holds no state


def _copy_into(native_out: Any, result: Any, out: Any) -> Any:
    if native_out.data.ptr != result.data.ptr:
        native_out[...] = result
    return out
