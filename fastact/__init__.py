"""fastact: fast activation functions on NumPy and CUDA arrays, forward and backward.

Every activation NAME is a pair of functions::

    y  = fastact.NAME(x, <params>, *, out=None)
    dx = fastact.NAME_backward(dy, x, <params>, *, out=None)     # x: the forward input

>>> import numpy as np, fastact
>>> fastact.leaky_relu(np.array([-1.0, 2.0]), alpha=0.1)
array([-0.1,  2. ])

The array decides where it runs (NumPy arrays on the CPU, CuPy and other CUDA
arrays on the GPU); ``set_backend``/``use_backend``/``FASTACT_BACKEND`` force a
backend.  See README.md for the conventions at kinks and for NaN.
"""
from __future__ import annotations

from . import _dispatch, _fused_dispatch, activations as _activations  # noqa: F401  (registers the activations)
from ._arrays import SUPPORTED_DTYPES
from ._fused_dispatch import (
    bias_act,
    bias_act_backward,
    conv2d_bias_act,
    conv2d_bias_act_backward,
    dense_bias_act,
    dense_bias_act_backward,
)
from ._registry import REGISTRY, Activation, make_functions
from .backends import (
    BACKEND_NAMES,
    BackendUnavailableError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "BackendUnavailableError",
    "SUPPORTED_DTYPES",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "activation_names",
    *_fused_dispatch.__all__,
]


def activation_names() -> list[str]:
    """Names of every registered activation (aliases not included)."""
    return list(REGISTRY)


def _export_elementwise() -> None:
    """Create fastact.NAME and fastact.NAME_backward for every elementwise and row-wise activation."""
    module = globals()
    for spec in REGISTRY.values():
        if spec.form not in ("elementwise", "rowwise"):
            continue
        forward, backward = make_functions(spec, _dispatch.forward, _dispatch.backward)
        for name in (spec.name, *spec.aliases):
            module[name] = forward
            module[f"{name}_backward"] = backward
            __all__.extend([name, f"{name}_backward"])


_export_elementwise()


def prelu(x, alpha, *, out=None):
    return _dispatch.prelu(x, alpha, out)


def prelu_backward(dy, x, alpha, *, out=None):
    return _dispatch.prelu_backward(dy, x, alpha, out)


prelu.__doc__ = REGISTRY["prelu"].docstring("forward")
prelu_backward.__doc__ = REGISTRY["prelu"].docstring("backward").replace(
    "Returns dx,", "Returns (dx, dalpha): dx of x's shape, dtype and kind; dalpha of alpha's shape and dtype;"
)
__all__ += ["prelu", "prelu_backward"]
