"""What kind of array the user passed, and the checks every call shares.

Every public call goes through these checks before any backend writes a byte:
supported dtype, same shape/dtype for ``dy`` and ``x``, and a valid ``out``
(kind, shape, dtype, writable, no partial overlap with an input).
"""
from __future__ import annotations

from typing import Any

import numpy as np

SUPPORTED_DTYPES = ("float16", "bfloat16", "float32", "float64")
_SUPPORTED = frozenset(SUPPORTED_DTYPES)

# DLPack device types that mean "memory on a CUDA device".
_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def array_kind(a: Any) -> str:
    """'numpy', 'cupy', 'cuda' (another CUDA array, e.g. a torch CUDA tensor) or 'host'.

    Decided without importing CuPy: a module name and two protocol attributes.
    'host' means anything else, taken as a NumPy array (lists, scalars, ...).
    """
    if isinstance(a, np.ndarray):
        return "numpy"
    if type(a) in _CUPY_TYPES:
        return "cupy"
    module = type(a).__module__
    if module.startswith("cupy") and hasattr(a, "__cuda_array_interface__"):
        # Remembered per type: every CuPy array is a CUDA array, and building
        # its __cuda_array_interface__ (which hasattr does) costs microseconds.
        _CUPY_TYPES.add(type(a))
        return "cupy"
    try:
        if hasattr(a, "__cuda_array_interface__"):
            return "cuda"
    except Exception:  # PyTorch raises RuntimeError for tensors that require grad: ask DLPack below
        pass
    dlpack_device = getattr(a, "__dlpack_device__", None)
    if dlpack_device is not None:
        try:
            device_type = int(dlpack_device()[0])
        except Exception:  # a broken __dlpack_device__ is not a CUDA array
            device_type = None
        if device_type in _DLPACK_CUDA_DEVICES:
            return "cuda"
    return "host"


_CUPY_TYPES: set = set()


def host_array(a: Any) -> np.ndarray:
    """An array-like as a NumPy array.

    Lists and Python scalars of ints or bools become float64 (as ``np.exp([1, 2])``
    does); explicit integer *arrays* are refused by :func:`check_dtype` instead.
    """
    if isinstance(a, np.ndarray):
        return a
    arr = np.asarray(a)
    if arr.dtype.kind in "biu" and not hasattr(a, "dtype"):
        arr = arr.astype(np.float64)
    return arr


# float16/32/64 as dtype objects: a set lookup, much cheaper than dtype.name.
_SUPPORTED_NUMPY = frozenset(np.dtype(name) for name in ("float16", "float32", "float64"))


def check_dtype(function: str, name: str, dtype: Any) -> None:
    if dtype in _SUPPORTED_NUMPY:
        return
    if getattr(dtype, "name", None) not in _SUPPORTED:
        raise TypeError(
            f"{function}: {name} has dtype {dtype}, which is not supported; "
            f"supported dtypes: {', '.join(SUPPORTED_DTYPES)} (bfloat16 from ml_dtypes on the host)"
        )


def check_pair(function: str, dy: Any, x: Any) -> None:
    """Backward takes dy and x of one shape and one dtype."""
    if dy.shape != x.shape:
        raise ValueError(f"{function}: dy and x must have the same shape, got dy {dy.shape} and x {x.shape}")
    if dy.dtype != x.dtype:
        raise TypeError(f"{function}: dy and x must have the same dtype, got dy {dy.dtype} and x {x.dtype}")


def check_out(function: str, out: Any, shape: tuple, dtype: Any, kind: str) -> None:
    """``out`` must be an array of the result's kind, shape and dtype, and writable."""
    out_kind = array_kind(out)
    expected = "numpy" if kind == "host" else kind
    if out_kind != expected and not (expected == "cuda" and out_kind == "cupy"):
        raise TypeError(
            f"{function}: out must be a {expected} array like the result, got {type(out).__module__}.{type(out).__name__}"
        )
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{function}: out has shape {tuple(out.shape)}, the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{function}: out has dtype {out.dtype}, the result has dtype {dtype}")
    flags = getattr(out, "flags", None)
    if flags is not None and getattr(flags, "writeable", True) is False:
        raise ValueError(f"{function}: out is read-only")


def _same_view(a: Any, b: Any, data_ptr) -> bool:
    return a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype and data_ptr(a) == data_ptr(b)


def check_no_partial_overlap(function: str, out: Any, inputs: dict, xp: Any, data_ptr) -> None:
    """``out`` may be an input itself (in-place) but may not overlap one in part.

    Exact test (``shares_memory``), so interleaved views such as ``a[::2]`` and
    ``a[1::2]`` are accepted; a problem too hard to decide counts as overlap.
    """
    if out.size == 0:
        return
    for name, a in inputs.items():
        if a is out or a.size == 0 or not xp.may_share_memory(out, a):
            continue
        if _same_view(out, a, data_ptr):
            continue
        try:
            shares = xp.shares_memory(out, a, max_work=1 << 20)
        except Exception:  # numpy.exceptions.TooHardError and friends
            shares = True
        if shares:
            raise ValueError(
                f"{function}: out overlaps {name} in part; pass {name} itself as out for in-place use, "
                f"or an array that does not overlap it"
            )
