"""The kernel backends' fast path (KernelBackend.fast_forward/fast_backward) on the CPU emulator.

The emulator takes the same fast path for NumPy arrays as the cuda backend
for CuPy arrays, so these run the real code with real results: a repeated
call plans nothing and still computes what the NumPy backend computes, and
anything the fast path does not take (another layout, a partial overlap, an
empty array) still gets the general path's result or error.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
from fastact import backends
from fastact.backends.kernels import plan

pytestmark = pytest.mark.skipif(backends.unavailable_reason("cuda-emulator") is not None,
                                reason=f"{backends.unavailable_reason('cuda-emulator')}")


def numpy_call(name, *args, **kwargs):
    with fastact.use_backend("numpy"):
        return getattr(fastact, name)(*args, **kwargs)


@pytest.fixture
def no_planning(monkeypatch):
    """Make any launch planning fail: what runs afterwards took the fast path."""
    def install():
        def fail(*args, **kwargs):
            raise AssertionError("planned a launch: not the fast path")

        for name in ("elementwise_launch", "activation_kernel", "pack_functor", "rowwise_plan", "rowwise_kernel"):
            monkeypatch.setattr(plan, name, fail)
    return install


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_repeated_calls_take_the_fast_path_and_compute_the_same(dtype, no_planning):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 129)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    calls = [("leaky_relu", (x,), {"alpha": 0.3}), ("gelu_backward", (dy, x), {"approximate": True}),
             ("softmax", (x,), {}), ("log_softmax_backward", (dy, x), {"axis": 1})]
    with fastact.use_backend("cuda-emulator"):
        first = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]
        second = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]  # plans the fast launches
        no_planning()
        third = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]
        out = np.empty_like(x)
        assert fastact.leaky_relu(x, alpha=0.3, out=out) is out
    for (name, args, kw), a, b, c in zip(calls, first, second, third):
        expected = numpy_call(name, *args, **kw)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        tolerance = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
        np.testing.assert_allclose(c.astype(np.float64), expected.astype(np.float64), rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(out, first[0])


def test_in_place_and_what_the_fast_path_declines(no_planning):
    x = np.random.default_rng(4).standard_normal((8, 64)).astype(np.float32)
    expected = numpy_call("relu", x)
    with fastact.use_backend("cuda-emulator"):
        fastact.relu(x.copy())
        fastact.relu(x.copy())
        no_planning()
        y = x.copy()
        assert fastact.relu(y, out=y) is y  # in place: the fast path
        np.testing.assert_array_equal(y, expected)
        base = np.zeros(600, np.float32)
        with pytest.raises(ValueError, match="overlaps x in part"):
            fastact.relu(base[:512], out=base[8:520])  # declined, then refused by the general path
        read_only = np.empty_like(x)
        read_only.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            fastact.relu(x, out=read_only)
        with pytest.raises(AssertionError, match="not the fast path"):
            fastact.relu(x.T)  # another layout: the general path, which plans
