"""Torch tensors as fastact arrays and fastact's results as torch tensors, without copies.

CPU tensors become NumPy views of the same memory (``Tensor.numpy()``), so
fastact's host backend reads and writes torch's buffers directly; bfloat16,
which NumPy lacks, becomes an ``ml_dtypes.bfloat16`` view of the same bits.
NumPy results come back through ``torch.from_numpy`` (the tensor then owns
the NumPy buffer, nothing is copied).

CUDA tensors become CuPy arrays through DLPack, and every fastact call on
them runs inside :func:`on_device`: on the tensor's device, on torch's
current stream (so fastact's kernels are ordered with torch's work, as a
torch op would be), with the CuPy memory fastact allocates (results,
im2col buffers) taken from torch's caching allocator, so the two libraries
do not keep two pools of GPU memory.  Results come back through DLPack.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import numpy as np
import torch

_BFLOAT16: Any = None  # ml_dtypes.bfloat16 as a NumPy dtype, once imported


def _bfloat16() -> np.dtype:
    global _BFLOAT16
    if _BFLOAT16 is None:
        try:
            import ml_dtypes
        except ImportError as error:
            raise TypeError(
                "fastact.torch: bfloat16 CPU tensors need the ml_dtypes package (NumPy has no bfloat16); "
                "install it with 'pip install ml_dtypes' or 'pip install fastact[torch]'"
            ) from error
        _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
    return _BFLOAT16


# ---------------------------------------------------------------------------
# Tensors -> arrays
# ---------------------------------------------------------------------------
def host_array(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor as a NumPy array over the same memory (any strides)."""
    if t.requires_grad:  # numpy() refuses tensors that autograd tracks; the memory is the same
        t = t.detach()
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bfloat16())
    return t.numpy()


def _cupy() -> Any:
    try:
        import cupy
    except ImportError as error:
        raise TypeError(
            "fastact.torch: CUDA tensors run on fastact's CUDA kernels, which need CuPy: "
            "pip install 'fastact[cuda12]' or 'fastact[cuda13]'"
        ) from error
    return cupy


def device_array(t: torch.Tensor) -> Any:
    """A CUDA tensor as a CuPy array over the same memory (call inside :func:`on_device`)."""
    return _cupy().from_dlpack(t.detach())


def as_array(t: torch.Tensor) -> Any:
    """The array fastact computes on: a NumPy view of a CPU tensor, a CuPy view of a CUDA tensor."""
    if t.is_cpu:
        return host_array(t)
    if t.is_cuda:
        return device_array(t)
    raise TypeError(
        f"fastact.torch: tensors on device {t.device} are not supported; accepted: CPU and CUDA tensors"
    )


def as_optional_array(t: torch.Tensor | None) -> Any:
    return None if t is None else as_array(t)


# ---------------------------------------------------------------------------
# Arrays -> tensors
# ---------------------------------------------------------------------------
def as_tensor(a: Any) -> torch.Tensor:
    """fastact's result (NumPy or CuPy) as a torch tensor owning the same memory."""
    if type(a) is np.ndarray:
        if a.dtype.kind == "f":
            return torch.from_numpy(a)
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)  # ml_dtypes' bfloat16 (kind "V")
    return torch.from_dlpack(a)


# ---------------------------------------------------------------------------
# CUDA: device, stream and memory
# ---------------------------------------------------------------------------
def _torch_memory(size: int) -> Any:
    """A CuPy allocation served by torch's caching allocator on the current device and stream."""
    import cupy

    device = cupy.cuda.runtime.getDevice()
    block = torch.empty(size, dtype=torch.uint8, device=torch.device("cuda", device))
    memory = cupy.cuda.UnownedMemory(block.data_ptr(), size, block, device)
    return cupy.cuda.MemoryPointer(memory, 0)


def _cupy_stream(stream: torch.cuda.Stream) -> Any:
    cupy = _cupy()
    if hasattr(cupy.cuda.Stream, "from_external") and hasattr(stream, "__cuda_stream__"):
        return cupy.cuda.Stream.from_external(stream)  # CuPy >= 14
    return cupy.cuda.ExternalStream(stream.cuda_stream, stream.device_index)


_ON_HOST = contextlib.nullcontext()


def on_device(t: torch.Tensor, gemm: bool = False) -> contextlib.AbstractContextManager:
    """Where the fastact calls on ``t`` run: for CUDA, :func:`_on_cuda_device`; on the CPU nothing to set
    up, or with ``gemm`` (dense, conv2d) torch's matrix product for fastact's GEMMs (:func:`host_gemm`)."""
    if t.is_cuda:
        return _on_cuda_device(t)
    return host_gemm() if gemm else _ON_HOST


def _operand(a: np.ndarray) -> torch.Tensor:
    """A GEMM operand as a tensor over the same memory; a read-only view (a 1x1 conv's windows of x) too.

    torch warns about read-only arrays since the tensor could be written; a product only reads it.
    """
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return torch.from_numpy(a)


def _torch_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """np.matmul's meaning, computed by torch on the same memory (no copies)."""
    product = torch.matmul(_operand(a), _operand(b), out=None if out is None else torch.from_numpy(out))
    return out if out is not None else product.numpy()


@contextlib.contextmanager
def host_gemm() -> Iterator[None]:
    """fastact's host GEMMs (dense, conv2d) by torch's matrix product, on torch's thread pool.

    NumPy's OpenBLAS keeps a second pool of threads that spin after each product while
    torch's own spin after theirs; inside a torch model the two stalled each other (a
    training step of bench/bench_torch_ops.py's CNN several times slower).  The
    im2col, col2im and the fused epilogue stay fastact's.
    """
    from ..backends.numpy.fused import MATMUL

    token = MATMUL.set(_torch_matmul)
    try:
        yield
    finally:
        MATMUL.reset(token)


@contextlib.contextmanager
def _on_cuda_device(t: torch.Tensor) -> Iterator[None]:
    """``t``'s device, torch's current stream on it, and torch's caching allocator for CuPy's allocations.

    Converting tensors to CuPy arrays and back inside this block hands DLPack
    torch's own stream, so neither side waits for the other.
    """
    cupy = _cupy()

    device = t.device.index if t.device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(device), _cupy_stream(torch.cuda.current_stream(device)), \
            cupy.cuda.using_allocator(_torch_memory):
        yield
