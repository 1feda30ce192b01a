"""The test-only "cuda-emulator" backend: fastact's CUDA kernels compiled for the CPU.

Runs the kernels of ``cuda/`` through g++ and a small CUDA shim
(``cuda/emulator/``) on NumPy arrays, with the CUDA backend's own host logic
(:class:`KernelBackend` and :mod:`~fastact.backends.kernels.plan`) unchanged, so CI without a GPU
still runs the real kernel code: the vector and scalar paths, the grid-stride
loops, the PReLU reduction with its barriers.  It is slow and never listed by
``available_backends()``; select it with ``FASTACT_BACKEND=cuda-emulator``.

It reports a device with one SM: the host logic then launches at most
``BLOCKS_PER_SM`` blocks, which keeps emulated grids small while the kernels
still run several blocks and their grid-stride loops.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from ..base import BackendUnavailableError
from ..kernels import plan
from ..kernels.backend import KernelBackend
from ..numpy.backend import NumpyBackend
from . import build


class EmulatorBackend(KernelBackend):
    name = "cuda-emulator"
    xp = np
    array_type = np.ndarray
    native_kinds = ("numpy",)
    # Host arrays in, host arrays out: the same conversions as the NumPy backend.
    to_native = NumpyBackend.to_native
    export = NumpyBackend.export
    data_ptr = NumpyBackend.data_ptr

    SM_COUNT = 1

    def __init__(self, defines: Sequence[str] = ()) -> None:
        """``defines``: preprocessor macros for the kernels (tests plant bugs with them)."""
        if build.compiler() is None:
            raise BackendUnavailableError("backend 'cuda-emulator' is not available: no C++ compiler (g++) found")
        self.defines = tuple(defines)
        self._modules: dict[tuple[str, str], build.EmulatedModule] = {}
        self._elementwise_entries: dict = {}

    def sm_count(self) -> int:
        return self.SM_COUNT

    def module(self, family: str, dtype: Any) -> build.EmulatedModule:
        key = (family, np.dtype(dtype).name)
        module = self._modules.get(key)
        if module is None:
            module = build.EmulatedModule(plan.module_kernels(family, dtype), self.defines)
            self._modules[key] = module
        return module

    def kernel_handle(self, family: str, dtype: Any, kernel: str):
        return functools.partial(self.module(family, dtype).launch, kernel)

    def writable(self, a: Any) -> bool:
        return a.flags.writeable

    def gemm(self, a: Any, b: Any, out: Any) -> Any:
        """What cuBLAS computes: the product in the compute type (float32 for 16-bit data), rounded once to out's dtype."""
        compute = plan.compute_dtype(a.dtype)
        np.copyto(out, np.matmul(a.astype(compute, copy=False), b.astype(compute, copy=False)), casting="unsafe")
        return out

    def describe(self) -> dict:
        return {"name": self.name, "compiler": build.compiler(), "sm_count": self.SM_COUNT,
                "defines": list(self.defines)}
