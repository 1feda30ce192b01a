"""A null CUDA device: fastact's ``cuda`` backend on a machine without a GPU, every launch a no-op.

Used by ``bench/host_overhead.py`` (the Python cost of a call) and by
``tests/test_cuda_host_path.py`` (which kernel and parameters each call
launches).  fastact's own code runs unchanged: the real
:class:`~fastact.backends.cuda.backend.CudaBackend`, its caches and the
dispatcher, on real ``cupy.ndarray`` objects.  Only what needs a driver is
replaced:

* arrays: :class:`NullDeviceArray`, a ``cupy.ndarray`` subclass over host
  memory.  CuPy's own attribute reads, views and reshapes run as they do on a
  GPU; three members that would reach the driver are replaced:
  ``__cuda_array_interface__`` (CuPy's asks for the current stream),
  ``device`` (entering CuPy's ``Device`` sets the current device) and
  ``astype`` (a conversion kernel: here a new array, nothing computed).
* the array module: :class:`NullCupy`, CuPy itself except for allocation
  (``empty``, ``zeros``: :func:`pooled`, one array per shape and dtype over
  host memory, handed out again each time, so that CuPy's allocator is not
  counted, like its launch), ``ascontiguousarray`` with a dtype change and
  ``matmul`` (kernels: nothing computed), ``cuda.Device``,
  ``cuda.runtime.getDevice`` and ``cuda.function.Module``.
* compiling: NVRTC is not called; every name expression is its own lowered
  name (a real compile happens once per module and device, and
  ``tests/test_cuda_compile.py`` checks it).
* launching: :class:`NullFunction` records each launch (kernel name, grid,
  block, arguments) in :data:`LAUNCHES` when recording is on, and does nothing;
  ``matmul`` records itself there too, as ("matmul", None, None, (a, b, out)).

Nothing computed is ever correct: results hold whatever the host buffer held.

    with null_cuda.installed() as backend:      # "auto" now runs CuPy arrays on it
        x = null_cuda.array((32, 128), "float32")
        fastact.relu(x)                          # one launch of a no-op
"""
from __future__ import annotations

import contextlib
import types
from typing import Any, Iterator

import cupy
import numpy as np

# (kernel name, grid, block, args) of every launch while recording (see recording()).
LAUNCHES: list[tuple] = []
_recording = False
SM_COUNT = 132  # an H100/H200's multiprocessors: grids are sized as on those GPUs
COMPUTE_CAPABILITY = "90"


class NullDevice:
    """Stands in for ``cupy.cuda.Device``: an id, attributes, and a context that changes nothing."""

    compute_capability = COMPUTE_CAPABILITY
    current = 0  # the "current device" (what cudaGetDevice would return)

    def __init__(self, device: int | None = None) -> None:
        self.id = NullDevice.current if device is None else int(device)
        self.attributes = {"MultiProcessorCount": SM_COUNT}

    def __enter__(self) -> "NullDevice":
        self._previous, NullDevice.current = NullDevice.current, self.id
        return self

    def __exit__(self, *exc: Any) -> None:
        NullDevice.current = self._previous

    def use(self) -> None:
        NullDevice.current = self.id

    def __repr__(self) -> str:
        return f"<NullDevice {self.id}>"


def _get_device() -> int:
    return NullDevice.current


class NullDeviceArray(cupy.ndarray):
    """A ``cupy.ndarray`` over host memory: CuPy's host-side methods, no driver calls."""

    @property
    def __cuda_array_interface__(self) -> dict:  # as CuPy builds it, without the stream
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "descr": self.dtype.descr,
            "data": (self.data.ptr, False),
            "version": 3,
            "strides": None if self._c_contiguous else self.strides,
        }

    @property
    def device(self) -> NullDevice:
        return NullDevice(self.data.device_id)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype and not copy:
            return self
        fortran = order == "F" or (order == "K" and self._f_contiguous and not self._c_contiguous)
        return pooled(self.shape, dtype, "F" if fortran else "C")


# CuPy arrays are recognized by their module (fastact._arrays.array_kind).
NullDeviceArray.__module__ = "cupy_null_device"

_buffers: dict[int, list] = {}  # device -> [host buffer, its MemoryPointer, bytes handed out]
_POOL_BYTES = 256 << 20


def empty(shape, dtype=float, order="C", device: int | None = None) -> NullDeviceArray:
    """A new array on ``device`` (the current one by default) over host memory no other array uses.

    Memory is handed out from one host buffer per device and never reused
    (the bench and the tests allocate little, mostly through :func:`pooled`).
    """
    device = NullDevice.current if device is None else device
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    pool = _buffers.get(device)
    if pool is None:
        buffer = np.zeros(_POOL_BYTES + 256, np.uint8)
        start = (-buffer.ctypes.data) % 256
        memory = cupy.cuda.UnownedMemory(buffer.ctypes.data + start, _POOL_BYTES, buffer, device)
        pool = _buffers[device] = [buffer, cupy.cuda.MemoryPointer(memory, 0), 0]
    offset = pool[2]
    if offset + nbytes > _POOL_BYTES:
        raise MemoryError(f"the null device's {_POOL_BYTES} bytes of host memory are used up")
    pool[2] = offset + -(-max(nbytes, 1) // 256) * 256  # 256-byte aligned, as CuPy's pool
    return NullDeviceArray(shape, dtype, memptr=pool[1] + offset, order=order)


_results: dict[tuple, NullDeviceArray] = {}


def pooled(shape, dtype=float, order="C") -> NullDeviceArray:
    """``cupy.empty`` as the null device does it: one array per (shape, dtype, order, device), the same
    object each time.  CuPy's own allocation (memory pool and ndarray constructor) is then not counted,
    like its launch; bench/host_overhead.py measures the constructor alone as a row of its own."""
    key = (shape, dtype, order, NullDevice.current)
    try:
        return _results[key]
    except KeyError:
        result = _results[key] = empty(shape, dtype, order)
        return result
    except TypeError:  # an unhashable shape
        return empty(shape, dtype, order)


def array(shape, dtype="float32", device: int | None = None) -> NullDeviceArray:
    """A C-contiguous null device array (contents undefined)."""
    return empty(shape, dtype, "C", device)


class NullFunction:
    """A loaded kernel whose launch records its arguments (when recording) and does nothing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, grid, block, args, **kwargs) -> None:
        if _recording:
            LAUNCHES.append((self.name, grid, block, args))


class NullModule:
    def load(self, binary: bytes) -> None:
        self.binary = binary

    def get_function(self, name: str) -> NullFunction:
        return NullFunction(name)


class NullCupy(types.ModuleType):
    """CuPy with allocation, conversion kernels, GEMMs and the device/driver calls replaced (module docstring)."""

    def __init__(self) -> None:
        super().__init__("cupy")
        self.ndarray = NullDeviceArray
        cuda = types.ModuleType("cupy.cuda")
        cuda.__getattr__ = lambda name: getattr(cupy.cuda, name)  # noqa: E731 (module __getattr__)
        cuda.Device = NullDevice
        cuda.runtime = types.SimpleNamespace(getDevice=_get_device, getDeviceCount=lambda: 2,
                                             getDeviceProperties=lambda device: {"name": b"null device"})
        cuda.function = types.SimpleNamespace(Module=NullModule)
        self.cuda = cuda

    def __getattr__(self, name: str) -> Any:
        return getattr(cupy, name)

    empty = staticmethod(pooled)

    @staticmethod
    def zeros(shape, dtype=float, order="C") -> NullDeviceArray:
        return pooled(shape, dtype, order)

    @staticmethod
    def empty_like(a, dtype=None) -> NullDeviceArray:
        return pooled(a.shape, a.dtype if dtype is None else dtype)

    @staticmethod
    def ascontiguousarray(a, dtype=None) -> NullDeviceArray:
        if (dtype is None or np.dtype(dtype) == a.dtype) and a._c_contiguous:
            return a
        return pooled(a.shape, a.dtype if dtype is None else np.dtype(dtype))

    @staticmethod
    def matmul(a, b, out=None) -> NullDeviceArray:
        if _recording:  # as a launch named "matmul" (cuBLAS' GEMM), to tell which operands a call multiplies
            LAUNCHES.append(("matmul", None, None, (a, b, out)))
        if out is None:
            shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
            out = pooled(shape, a.dtype)
        return out


def _fake_compile(kernels, arch, kind, extra_options=()):
    from fastact.backends.cuda.compile import CompiledModule

    return CompiledModule(b"", kind, {name: name for name in kernels}, "")


@contextlib.contextmanager
def installed() -> Iterator[Any]:
    """A CudaBackend on the null device, loaded as fastact's "cuda" backend for the duration."""
    from fastact import backends
    from fastact.backends.cuda import backend as cuda_backend

    saved = (cuda_backend._import_cupy, cuda_backend.compile_kernels,
             backends._loaded.get("cuda"), backends._errors.pop("cuda", None))
    cuda_backend._import_cupy = NullCupy
    cuda_backend.compile_kernels = _fake_compile
    try:
        backend = cuda_backend.CudaBackend()
        backends._loaded["cuda"] = backend
        yield backend
    finally:
        cuda_backend._import_cupy, cuda_backend.compile_kernels = saved[:2]
        backends._loaded.pop("cuda", None)
        if saved[2] is not None:
            backends._loaded["cuda"] = saved[2]
        if saved[3] is not None:
            backends._errors["cuda"] = saved[3]


@contextlib.contextmanager
def recording() -> Iterator[list]:
    """Record the launches made inside the block; yields the list they are appended to."""
    global _recording
    LAUNCHES.clear()
    _recording = True
    try:
        yield LAUNCHES
    finally:
        _recording = False
