"""The ReLU family against the float64 oracle, over backend x dtype x layout x parameters."""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support
from support import BACKENDS, DTYPE_NAMES, LAYOUTS, backend_param, dtype_of

# (activation, params): defaults, each option alone, and the corners of relu's parameter space.
CASES = [
    ("relu", {}),
    ("relu", {"alpha": 0.1}),
    ("relu", {"alpha": -0.5}),
    ("relu", {"alpha": 2.5}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"max_value": 0.0}),
    ("relu", {"threshold": -1.0}),
    ("relu", {"threshold": 0.5}),
    ("relu", {"alpha": 0.3, "max_value": 3.0, "threshold": -0.75}),
    ("relu", {"alpha": -1.5, "max_value": 4.0, "threshold": 0.25}),
    ("relu", {"max_value": 1.0, "threshold": 2.0}),
    ("relu", {"alpha": 0.1, "threshold": 0.1}),
    ("leaky_relu", {}),
    ("leaky_relu", {"alpha": 0.0}),
    ("leaky_relu", {"alpha": 1.0}),
    ("relu6", {}),
    ("thresholded_relu", {}),
    ("thresholded_relu", {"theta": -0.5}),
]
CASE_IDS = support.case_ids(CASES)

backend_params = [backend_param(b) for b in BACKENDS]


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_forward_and_backward(backend, dtype_name, layout, name, params):
    support.check_case(backend, dtype_of(dtype_name), layout, name, params)


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
def test_kinks_exactly(backend, dtype_name):
    """SPEC 2.1 values at every kink, written out (not through the oracle)."""
    dtype = dtype_of(dtype_name)
    xp = support.xp_for(backend)
    ones = lambda a: xp.ones(a.shape, dtype)  # noqa: E731
    arr = lambda *v: xp.asarray(np.array(v, np.float64).astype(dtype))  # noqa: E731
    h = support.to_host
    with fastact.use_backend(backend):
        x = arr(-np.inf, -1.0, 0.0, 1.0, np.inf, np.nan)
        assert h(fastact.relu(x)).astype(float).tolist()[:5] == [0.0, 0.0, 0.0, 1.0, np.inf]
        assert np.isnan(h(fastact.relu(x))[5].astype(float))
        # relu6: derivative 0 at 0 and at 6.
        x6 = arr(0.0, 6.0, 3.0, 7.0)
        assert h(fastact.relu6_backward(ones(x6), x6)).astype(float).tolist() == [0.0, 0.0, 1.0, 0.0]
        # leaky: derivative alpha at 0 (left derivative), 1 above.
        x0 = arr(0.0, 1e-3, -1e-3)
        slope = float(np.float64(dtype.type(0.25)))
        assert h(fastact.leaky_relu_backward(ones(x0), x0, 0.25)).astype(float).tolist() == [slope, 1.0, slope]
        # threshold: exactly the threshold gives 0 (x <= t); negative threshold passes (t, 0) through.
        xt = arr(1.0, 1.5, -0.25)
        assert h(fastact.thresholded_relu(xt)).astype(float).tolist() == [0.0, 1.5, 0.0]
        assert h(fastact.relu(xt, threshold=-0.5)).astype(float).tolist() == [1.0, 1.5, -0.25]
        # alpha == 0 gives exactly 0 at -inf, never NaN.
        assert h(fastact.relu(arr(-np.inf), threshold=2.0)).astype(float).tolist() == [0.0]
        # NaN in x: NaN in y and dx, whatever the parameters.
        xn = arr(np.nan)
        for params in ({}, {"alpha": 0.2}, {"max_value": 6.0}, {"threshold": 1.0}):
            assert np.isnan(h(fastact.relu(xn, **params)).astype(float)).all()
            assert np.isnan(h(fastact.relu_backward(ones(xn), xn, **params)).astype(float)).all()


@pytest.mark.parametrize("backend", backend_params)
def test_backends_agree_bitwise(backend):
    """The ReLU family has no rounding freedom: every backend gives the NumPy backend's bits."""
    rng = np.random.default_rng(5)
    x_host = (rng.standard_normal(10_001) * 4).astype(np.float32)
    dy_host = rng.standard_normal(10_001).astype(np.float32)
    for name, params in CASES:
        with fastact.use_backend("numpy"):
            y_ref = getattr(fastact, name)(x_host, **params)
            dx_ref = getattr(fastact, f"{name}_backward")(dy_host, x_host, **params)
        x, dy = support.to_backend(backend, x_host), support.to_backend(backend, dy_host)
        with fastact.use_backend(backend):
            support.assert_same(support.to_host(getattr(fastact, name)(x, **params)), y_ref, name)
            support.assert_same(support.to_host(getattr(fastact, f"{name}_backward")(dy, x, **params)), dx_ref, name)


def test_aliases_of_relu():
    """leaky_relu, relu6 and thresholded_relu are relu with other parameters (SPEC 2.1 table)."""
    x = np.linspace(-8, 8, 1001)
    np.testing.assert_array_equal(fastact.leaky_relu(x, 0.3), fastact.relu(x, alpha=0.3))
    np.testing.assert_array_equal(fastact.relu6(x), fastact.relu(x, max_value=6.0))
    np.testing.assert_array_equal(fastact.thresholded_relu(x, 0.7), fastact.relu(x, threshold=0.7))
    assert fastact.leaky_relu(np.array([-1.0]))[0] == -0.2  # default alpha 0.2 as Keras/TF


def test_large_blocks_and_threads_match_small():
    support.check_large_blocks(CASES)


# (params, expected derivative_from_output) for relu's kernel parameters; the False rows each have an x
# where the derivative at y differs from the derivative at x (checked below, so the exclusions are needed).
_FROM_OUTPUT_CASES = [
    (dict(alpha=0.0, max_value=None, threshold=0.0), True),
    (dict(alpha=0.05, max_value=None, threshold=0.0), True),
    (dict(alpha=3.0, max_value=None, threshold=0.0), True),
    (dict(alpha=0.0, max_value=None, threshold=1.0), True),
    (dict(alpha=0.5, max_value=None, threshold=0.75), True),
    (dict(alpha=-0.5, max_value=None, threshold=0.0), False),  # x < 0 gives y > 0
    (dict(alpha=0.5, max_value=None, threshold=-1.0), False),  # x = -1.5 gives y = -0.25 > t
    (dict(alpha=0.0, max_value=6.0, threshold=0.0), False),  # (a cap is refused, though here it would hold)
    (dict(alpha=0.5, max_value=1.0, threshold=2.0), False),  # x = 3 gives y = 1 <= t
]


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
def test_relu_derivative_from_output_where_declared(backend, dtype_name):
    """Where ActivationSpec.derivative_from_output says so, backward(dy, relu(x)) == backward(dy, x), bit for bit
    (fastact.torch's fused layers then write y over x and keep only y): kinks, signed zeros, subnormals,
    infinities and NaN included, every dy."""
    from fastact.activations import RELU

    dtype = dtype_of(dtype_name)
    xp = support.xp_for(backend)
    tiny = float(np.finfo(np.float32).tiny) / 4  # subnormal in float32, 0 or subnormal in 16 bits
    points = [-np.inf, -1e30, -3.0, -1.5, -1.0, -0.5, -tiny, -0.0, 0.0, tiny, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
              6.0, 7.0, 1e30, np.inf, np.nan]
    grads = [1.0, -2.5, 0.0, np.inf, np.nan]
    with np.errstate(over="ignore"):  # 1e30 is inf in 16 bits
        x_host = np.array([p for p in points for _ in grads], np.float64).astype(dtype)
    dy_host = np.array(grads * len(points), np.float64).astype(dtype)
    x, dy = xp.asarray(x_host), xp.asarray(dy_host)
    for params, declared in _FROM_OUTPUT_CASES:
        assert RELU.derivative_from_output(**params) is declared, params
        with fastact.use_backend(backend):
            y = fastact.relu(x, **params)
            from_x = support.to_host(fastact.relu_backward(dy, x, **params))
            from_y = support.to_host(fastact.relu_backward(dy, y, **params))
        if declared:
            support.assert_same(from_y, from_x, f"relu{params}")
        elif params["max_value"] is None or params["threshold"] > params["max_value"]:
            differs = ~((from_y == from_x) | (np.isnan(from_y.astype(float)) & np.isnan(from_x.astype(float))))
            assert differs.any(), params


def test_derivative_from_output_is_declared_by_relus_specs_and_linear():
    from fastact._registry import REGISTRY

    declared = {name for name, spec in REGISTRY.items() if spec.derivative_from_output is not None}
    assert declared == {"relu", "leaky_relu", "relu6", "thresholded_relu", "linear"}
    assert REGISTRY["leaky_relu"].derivative_from_output(**REGISTRY["leaky_relu"].kernel_params_of(0.05))
    assert not REGISTRY["leaky_relu"].derivative_from_output(**REGISTRY["leaky_relu"].kernel_params_of(-0.05))
    assert not REGISTRY["relu6"].derivative_from_output(**REGISTRY["relu6"].kernel_params_of())
    assert REGISTRY["linear"].derivative_from_output(**REGISTRY["linear"].kernel_params_of())
