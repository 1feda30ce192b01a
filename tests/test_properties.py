"""Hypothesis: random shapes, strides, values and parameters against the float64 oracle."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact
import support
from support import BACKENDS, backend_param

# The emulator runs the CUDA kernels on the CPU, slowly: fewer examples there.
EXAMPLES = {"cpu": 150, "numpy": 150, "cuda": 100, "cuda-emulator": 25}
backend_params = [backend_param(b) for b in BACKENDS]

params_strategy = st.one_of(
    st.just(("relu", {})),
    st.builds(
        lambda a, m, t: ("relu", {"alpha": a, "max_value": m, "threshold": t}),
        st.floats(-3, 3, allow_nan=False, width=32),
        st.one_of(st.none(), st.floats(0, 10, width=32)),
        st.floats(-4, 4, width=32),
    ),
    st.builds(lambda a: ("leaky_relu", {"alpha": a}), st.floats(-2, 2, width=32)),
    st.just(("relu6", {})),
    st.builds(lambda t: ("thresholded_relu", {"theta": t}), st.floats(-3, 3, width=32)),
)


@st.composite
def strided_arrays(draw, dtype):
    """An array of random shape, viewed with random steps (negative too) and maybe transposed."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9))
    steps = tuple(draw(st.sampled_from([1, 2, -1, -2, 3])) for _ in shape)
    base_shape = tuple(max(1, n * abs(k)) for n, k in zip(shape, steps))
    elements = st.floats(-1e4, 1e4, width=32) | st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 6.0, 1.0])
    base = draw(hnp.arrays(np.float64, base_shape, elements=elements)).astype(dtype)
    view = base[tuple(slice(None, None, k) for k in steps)][tuple(slice(0, n) for n in shape)]
    if view.ndim >= 2 and draw(st.booleans()):
        view = view.T
    return view


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32", "float64"])
def test_random_layouts_and_parameters(backend, dtype_name):
    dtype = support.dtype_of(dtype_name)

    @settings(max_examples=EXAMPLES[backend], deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=params_strategy, x=strided_arrays(dtype), seed=st.integers(0, 2**16))
    def run(case, x, seed):
        name, params = case
        dy_host = support.draw_values(x.shape, dtype, {}, seed=seed, finite=True)
        forward, backward = support.oracle_for(name, params, dtype)
        xb = support.xp_for(backend).asarray(x) if backend == "cuda" else x
        dyb = support.xp_for(backend).asarray(dy_host) if backend == "cuda" else dy_host
        with fastact.use_backend(backend):
            y = getattr(fastact, name)(xb, **params)
            dx = getattr(fastact, f"{name}_backward")(dyb, xb, **params)
        support.assert_close(support.to_host(y), forward(x), dtype, 2, f"{name}{params}")
        support.assert_close(support.to_host(dx), backward(dy_host, x), dtype, 2, f"{name}{params} backward")

    run()


@pytest.mark.parametrize("backend", backend_params)
def test_random_prelu(backend):
    @settings(max_examples=EXAMPLES[backend], deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6))
        alpha_shape = data.draw(hnp.broadcastable_shapes(shape, min_dims=0, max_dims=len(shape)))
        if np.broadcast_shapes(alpha_shape, shape) != shape:
            return
        x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-100, 100, width=32)))
        dy = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-100, 100, width=32)))
        alpha = data.draw(hnp.arrays(np.float32, alpha_shape, elements=st.floats(-2, 2, width=32)))
        xp = support.xp_for(backend)
        with fastact.use_backend(backend):
            y = fastact.prelu(xp.asarray(x), xp.asarray(alpha))
            dx, dalpha = fastact.prelu_backward(xp.asarray(dy), xp.asarray(x), xp.asarray(alpha))
        from fastact import reference

        support.assert_close(support.to_host(y), reference.prelu(x, alpha), np.dtype(np.float32), 2, "prelu")
        ref_dx, ref_dalpha = reference.prelu_backward(dy, x, alpha)
        support.assert_close(support.to_host(dx), ref_dx, np.dtype(np.float32), 2, "prelu dx")
        terms = np.abs(np.where(x > 0, 0, x.astype(float) * dy))
        support.assert_sum_close(
            support.to_host(dalpha), ref_dalpha, reference.sum_to_shape(terms, alpha.shape), np.dtype(np.float32), x.size // max(alpha.size, 1)
        )

    run()
