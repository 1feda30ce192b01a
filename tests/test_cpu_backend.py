"""The cpu backend's own promises, beyond the shared suites (which run on it like on every backend):
every functor is compiled in, every instruction-set build this CPU runs computes the same function,
reductions give the same bits on any thread count, and "auto" picks it for host arrays."""
from __future__ import annotations

import numpy as np
import pytest

import fastact
from fastact import backends
from fastact.backends.kernels import plan

pytestmark = pytest.mark.skipif(backends.unavailable_reason("cpu") is not None,
                                reason=f"backend 'cpu' unavailable: {backends.unavailable_reason('cpu')}")

RELU_FAMILY = {"relu": dict(alpha=0.1, max_value=6.0, threshold=-0.5), "linear": {}}
SMOOTH = {
    "elu": dict(alpha=1.3, scale=1.0), "gelu": dict(approximate=False), "silu": {}, "softplus": {}, "sigmoid": {},
    "tanh": {}, "hard_sigmoid": {}, "hard_silu": {}, "mish": {},
}


def _cpu():
    return backends.load("cpu")


def _values(dtype) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(3000) * 4, [0.0, -0.0, 6.0, -0.5, np.inf, -np.inf, np.nan, 1e-30, -50, 50]])
    return x.astype(dtype)


def test_every_functor_is_compiled_in():
    compiled = set(_cpu().engine.functors())
    assert {f.template for f in plan.FUNCTORS.values()} <= compiled


def test_auto_runs_host_arrays_on_cpu():
    assert backends.host_backend().name == "cpu"
    assert "cpu" in fastact.available_backends()


def _engines():
    """Every instruction-set build this CPU runs (the loaded one, and the baseline at least)."""
    from fastact.backends.cpu import build

    baseline = build.module_for("baseline")
    found = []
    for isa in build.ISAS:
        if baseline.cpu_supports(isa):
            try:
                found.append(build.module_for(isa))
            except ImportError:
                pass
    return found


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_isa_build_computes_the_same_function(dtype):
    cpu = _cpu()
    x = _values(dtype)
    dy = np.linspace(-2, 2, x.size).astype(dtype)
    reference = cpu.engine
    for engine in _engines():
        for kernel, params in {**RELU_FAMILY, **SMOOTH}.items():
            number, packed = cpu.functor(kernel, params, x.dtype)
            results = []
            for e in (reference, engine):
                y, dx = np.empty_like(x), np.empty_like(x)
                e.elementwise(number, False, packed, y, x)
                e.elementwise(number, True, packed, dx, dy, x)
                results.append((y, dx))
            (y0, dx0), (y1, dx1) = results
            if kernel in RELU_FAMILY:  # exact everywhere
                np.testing.assert_array_equal(y1, y0, err_msg=f"{engine.isa} {kernel}")
                np.testing.assert_array_equal(dx1, dx0, err_msg=f"{engine.isa} {kernel}")
            else:  # libmvec's variants differ per instruction set: within the README's accuracy bounds
                rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-13, 1e-15)
                np.testing.assert_allclose(y1, y0, rtol=rtol, atol=atol, err_msg=f"{engine.isa} {kernel}")
                np.testing.assert_allclose(dx1, dx0, rtol=rtol, atol=atol, err_msg=f"{engine.isa} {kernel}")


def _with_threads(count, run):
    engine = _cpu().engine
    before = engine.threads()
    engine.set_threads(count)
    try:
        return run()
    finally:
        engine.set_threads(before)


@pytest.mark.parametrize("case", ["prelu_nchw", "prelu_channels_last", "prelu_scalar", "bias_act", "softmax"])
def test_reductions_are_the_same_bits_on_any_thread_count(case):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 24, 40, 40)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)

    def run():
        with fastact.use_backend("cpu"):
            if case == "prelu_nchw":
                return fastact.prelu_backward(dy, x, np.full((24, 1, 1), 0.2, np.float32))
            if case == "prelu_scalar":  # one long plane, cut into pieces
                return fastact.prelu_backward(dy, x, np.float32(0.2))
            if case == "prelu_channels_last":
                return fastact.prelu_backward(dy, x, np.full((40,), 0.2, np.float32))
            if case == "bias_act":
                return fastact.bias_act_backward(dy, x, np.linspace(-1, 1, 24).astype(np.float32), "gelu")
            return (fastact.softmax_backward(dy, x, axis=1),)

    one, two = _with_threads(1, run), _with_threads(2, run)
    for a, b in zip(one, two):
        assert np.array_equal(a, b, equal_nan=True)


def test_a_failed_fast_call_leaves_out_unchanged_and_says_why():
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    out = np.full(64, 7, np.float32)
    out.flags.writeable = False
    with fastact.use_backend("cpu"):
        with pytest.raises(ValueError):
            fastact.relu(x, out=out)
        with pytest.raises(TypeError, match="dtype"):
            fastact.relu(np.arange(4))  # an integer array
        with pytest.raises(ValueError):
            fastact.relu(x, out=np.empty(63, np.float32))
        read_only = np.linspace(-1, 1, 8, dtype=np.float32)
        read_only.flags.writeable = False
        with pytest.raises(ValueError):  # in place on a read-only array
            fastact.relu(read_only, out=read_only)
    assert (out == 7).all()
