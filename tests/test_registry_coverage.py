"""The registry is the one list of activations: every registered kernel exists in every backend's
tables and in the oracle, with the parameters the registry gives it, and no table has a stale row."""
from __future__ import annotations

import numpy as np
import pytest

from fastact import reference
from fastact._registry import REGISTRY, _ALIASES
from fastact.activations import ELEMENTWISE_KERNELS, ROWWISE_KERNELS
from fastact.backends.kernels import plan as cuda_plan
from fastact.backends.numpy import math as numpy_math

SPECS = [spec for spec in REGISTRY.values() if spec.form in ("elementwise", "rowwise")]


def _default_kernel_params(spec) -> dict:
    return spec.kernel_params(**spec.bind())


def test_tables_cover_exactly_the_registered_kernels():
    assert set(numpy_math.KERNELS) == {*ELEMENTWISE_KERNELS, *ROWWISE_KERNELS}
    assert numpy_math.ROWWISE == set(ROWWISE_KERNELS)
    assert set(cuda_plan.FUNCTORS) == set(ELEMENTWISE_KERNELS)
    assert set(cuda_plan.ROWWISE_OPS) == set(ROWWISE_KERNELS)
    assert set(reference.ORACLE) == {*ELEMENTWISE_KERNELS, *ROWWISE_KERNELS}
    assert set(reference.NAIVE) <= {*REGISTRY, *_ALIASES}


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_every_backend_takes_the_registered_kernel_params(spec):
    params = _default_kernel_params(spec)
    kernel_params = {k: v for k, v in params.items() if k != "axis"}  # the engines take the axis apart
    for direction in ("forward", "backward"):
        assert callable(numpy_math.plan(direction, spec.kernel, kernel_params, np.dtype(np.float32)))
    if spec.form == "rowwise":
        assert spec.kernel in cuda_plan.ROWWISE_OPS
    else:
        cuda_plan.pack_functor(spec.kernel, params, np.float32)
    x = np.linspace(-3.0, 3.0, 7)
    forward, backward = reference.ORACLE[spec.kernel]
    assert forward(x, **params).shape == x.shape
    assert backward(np.ones_like(x), x, **params).shape == x.shape
