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

from . import _fused_dispatch, functions as _functions
from ._arrays import SUPPORTED_DTYPES
from ._fused_dispatch import (
    bias_act,
    bias_act_backward,
    conv2d_bias_act,
    conv2d_bias_act_backward,
    dense_bias_act,
    dense_bias_act_backward,
)
from ._registry import REGISTRY
from .backends import (
    BACKEND_NAMES,
    BackendUnavailableError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)
from .functions import *  # noqa: F403  (Activation, NAME and NAME_backward for every activation)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "SUPPORTED_DTYPES",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "activation_names",
    *_fused_dispatch.__all__,
    *_functions.__all__,
]


def activation_names() -> list[str]:
    """Names of every registered activation (aliases not included)."""
    return list(REGISTRY)
