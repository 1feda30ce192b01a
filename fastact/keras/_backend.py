"""Where a fastact.keras layer computes: fastact.torch, fastact's host functions, or keras.ops.

Keras 3 runs on one backend per process (``KERAS_BACKEND``).  Its tensors are
torch tensors on the torch backend and NumPy arrays on the numpy backend:
there fastact computes directly (``fastact.torch``'s ops with autograd, so
``fit`` trains with fastact's kernels; the NumPy functions, inference only, as
Keras' numpy backend itself).  On jax and tensorflow the layers fall back to
Keras' own formulas through ``keras.ops`` (the same function, not fastact's
kernels): :func:`mode` returns ``"ops"`` there and each caller takes its Keras
path.

``fastact.torch`` is imported on first use on the torch backend only, so
``import fastact.keras`` on another backend does not import torch.
"""
from __future__ import annotations

from typing import Any

import keras

import fastact

__all__ = ["mode", "activation", "prelu", "dense", "conv2d"]


def mode() -> str:
    """"torch" (fastact.torch ops), "numpy" (fastact's NumPy functions) or "ops" (Keras' formulas)."""
    backend = keras.backend.backend()
    return backend if backend in ("torch", "numpy") else "ops"


def _torch_ops():
    """fastact.torch, imported on the torch backend's first call."""
    try:
        import fastact.torch as torch_ops
    except ImportError as error:
        raise ImportError(
            f"fastact.keras on Keras' torch backend runs fastact.torch, which failed to import ({error}); "
            "install fastact with its torch extra: pip install 'fastact[torch,keras]'"
        ) from error
    return torch_ops


def _tensor(value: Any, like: Any) -> Any:
    """A Keras variable (or tensor) as a tensor of ``like``'s dtype (a mixed-precision policy's compute dtype)."""
    value = keras.ops.convert_to_tensor(value)
    return value if value.dtype == like.dtype else keras.ops.cast(value, like.dtype)


def activation(x: Any, act: "fastact.Activation") -> Any:
    """act(x) with fastact, on the torch or numpy backend (callers handle mode() == "ops")."""
    if mode() == "numpy":
        return act(x)
    return getattr(_torch_ops(), act.name)(x, **act.params)


def prelu(x: Any, alpha: Any) -> Any:
    """x if x > 0 else alpha * x, alpha broadcast against x, with fastact (torch or numpy backend)."""
    alpha = _tensor(alpha, x)
    if mode() == "numpy":
        return fastact.prelu(x, alpha)
    return _torch_ops().prelu(x, alpha)


def dense(x: Any, kernel: Any, bias: Any, act: "fastact.Activation") -> Any:
    """act(x @ kernel + bias) in one fused fastact call; kernel (in, units) as Keras Dense."""
    kernel = _tensor(kernel, x)
    bias = None if bias is None else _tensor(bias, x)
    if mode() == "numpy":
        return fastact.dense_bias_act(x, kernel, bias, act)
    return _torch_ops().dense_bias_act(x, kernel, bias, act)


def conv2d(x: Any, kernel: Any, bias: Any, act: "fastact.Activation", **geometry: Any) -> Any:
    """act(conv2d(x, kernel) + bias) in one fused fastact call.

    ``kernel`` is Keras' (kh, kw, C/groups, filters); ``geometry`` holds
    fastact's stride, padding, dilation, groups and data_format ("NHWC" or
    "NCHW").  fastact's NCHW convolution takes PyTorch's (filters, C/groups,
    kh, kw) kernel, so for channels_first the kernel is transposed first (a
    view on torch; autograd runs through it).
    """
    kernel = _tensor(kernel, x)
    if geometry["data_format"] == "NCHW":
        kernel = keras.ops.transpose(kernel, (3, 2, 0, 1))
    bias = None if bias is None else _tensor(bias, x)
    if mode() == "numpy":
        return fastact.conv2d_bias_act(x, kernel, bias, act, **geometry)
    return _torch_ops().conv2d_bias_act(x, kernel, bias, act, **geometry)
