"""Where a benchmark runs: the host (NumPy, perf_counter) or a CUDA device (CuPy, CUDA events).

A :class:`Device` owns what differs between the two: the array module, how an
input set is made, how a run of calls is timed, the cache size that decides
how many input sets to rotate through, and the copy/add rooflines.  The CUDA
device imports CuPy only when it is constructed, so nothing here touches a GPU
(or needs CuPy) on a CPU-only run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

# Rotate through enough input sets that one pass over them is twice the
# largest cache: each call then reads operands the previous calls evicted,
# which is what a layer sees in a network (its input was written long ago).
CACHE_MULTIPLE = 2
MAX_INPUT_SETS = 1024


def as_bits(a: Any) -> Any:
    """``a`` viewed as unsigned integers of its item size: the same bytes.

    The add roofline runs on these views because NumPy computes float16 and
    bfloat16 arithmetic element by element in software; an integer add moves
    the same bytes and is limited by memory, which is what a roofline must be.
    """
    return a.view(f"u{a.dtype.itemsize}")


def resolve_dtype(name: str) -> np.dtype:
    """A dtype name as the host holds it (bfloat16 from ml_dtypes, as fastact takes it)."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as error:
            raise SystemExit("bfloat16 needs the ml_dtypes package (pip install ml_dtypes)") from error
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _host_cache_bytes() -> int:
    """The largest CPU cache (the last level) from sysfs; 32 MiB where sysfs does not say."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KM")) * scale)
    return max(sizes, default=32 << 20)


class HostDevice:
    """NumPy arrays, timed call by call with ``time.perf_counter``."""

    name = "numpy"
    xp = np
    timer = "time.perf_counter around each call (no synchronization needed on the host)"

    def __init__(self) -> None:
        self.cache_bytes = _host_cache_bytes()

    def asarray(self, host: np.ndarray) -> np.ndarray:
        return host

    def empty(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        # Zeros written, not np.zeros: the pages must be mapped before timing (calloc maps them lazily).
        out = np.empty(shape, dtype)
        out.fill(0)
        return out

    def synchronize(self) -> None:
        pass

    def time_calls(self, call: Callable[[Any], Any], arg_sets: list, reps: int) -> np.ndarray:
        """Seconds taken by each of ``reps`` calls, cycling through ``arg_sets``."""
        times = np.empty(reps)
        clock = time.perf_counter
        for i in range(reps):
            args = arg_sets[i % len(arg_sets)]
            start = clock()
            call(args)
            times[i] = clock() - start
        return times

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src)

    def add(self, out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        np.add(as_bits(a), as_bits(b), out=as_bits(out))

    def describe(self) -> dict:
        return {"cache_bytes": self.cache_bytes}


class CudaDevice:
    """CuPy arrays on the current device, timed with CUDA events on the current stream."""

    name = "cuda"
    timer = (
        "CUDA events recorded around each call on CuPy's current stream, elapsed times read after "
        "one synchronize; host launch overhead shows where it exceeds the kernel time"
    )

    def __init__(self) -> None:
        from .. import backends  # the backend says why CUDA is unusable here, if it is

        reason = backends.unavailable_reason("cuda")
        if reason is not None:
            raise SystemExit(f"--backend cuda: the CUDA backend is not usable here: {reason}")
        import cupy

        self.xp = cupy
        self._cupy = cupy
        properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        self.cache_bytes = int(properties["l2CacheSize"])
        self.device_name = properties["name"].decode() if isinstance(properties["name"], bytes) else properties["name"]

    def asarray(self, host: np.ndarray) -> Any:
        return self._cupy.array(host)

    def empty(self, shape: tuple, dtype: np.dtype) -> Any:
        return self._cupy.zeros(shape, dtype)

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()

    def time_calls(self, call: Callable[[Any], Any], arg_sets: list, reps: int) -> np.ndarray:
        cuda = self._cupy.cuda
        events = [(cuda.Event(), cuda.Event()) for _ in range(reps)]
        for i, (start, end) in enumerate(events):
            args = arg_sets[i % len(arg_sets)]
            start.record()
            call(args)
            end.record()
        events[-1][1].synchronize()
        return np.array([cuda.get_elapsed_time(start, end) / 1e3 for start, end in events])

    def copy(self, dst: Any, src: Any) -> None:
        self._cupy.copyto(dst, src)

    def add(self, out: Any, a: Any, b: Any) -> None:
        self._cupy.add(as_bits(a), as_bits(b), out=as_bits(out))

    def describe(self) -> dict:
        return {"cache_bytes": self.cache_bytes, "gpu": self.device_name}


def get_device(name: str) -> HostDevice | CudaDevice:
    """The device for ``--backend name``: CUDA for 'cuda', the host for every other backend fastact has.

    'auto' is the host too (the benchmark's arrays are NumPy arrays, so fastact's
    automatic choice is its host backend).
    """
    if name == "cuda":
        return CudaDevice()
    from .. import backends

    if name in backends.BACKEND_NAMES:
        return HostDevice()
    raise SystemExit(f"unknown --backend {name!r}; this fastact has: {', '.join(backends.BACKEND_NAMES)}")


def input_sets_needed(set_bytes: int, cache_bytes: int) -> int:
    """How many input sets to rotate through so that one pass is CACHE_MULTIPLE x the cache."""
    return int(min(MAX_INPUT_SETS, max(1, math.ceil(CACHE_MULTIPLE * cache_bytes / max(set_bytes, 1)))))
