"""PReLU forward and backward (dx and the dalpha reduction) against the float64 oracle."""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support
from fastact import reference
from support import BACKENDS, DTYPE_NAMES, backend_param, dtype_of

backend_params = [backend_param(b) for b in BACKENDS]

# (x shape, alpha shape): scalar, per-channel NCHW, channels-last, per-element, odd broadcasts.
ALPHA_CASES = [
    ((4, 3, 5, 7), ()),
    ((4, 3, 5, 7), (1,)),
    ((4, 3, 5, 7), (3, 1, 1)),
    ((4, 5, 7, 3), (3,)),
    ((4, 3, 5, 7), (4, 3, 5, 7)),
    ((6, 9), (6, 1)),
    ((2, 3, 4), (2, 1, 4)),
    ((0, 3), (3,)),
    ((), ()),
    ((130, 257), (257,)),
]


def _values(shape, dtype, seed):
    return support.draw_values(shape, dtype, {}, seed=seed)


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("x_shape,alpha_shape", ALPHA_CASES, ids=[f"{a}-{b}" for a, b in ALPHA_CASES])
def test_prelu(backend, dtype_name, x_shape, alpha_shape):
    dtype = dtype_of(dtype_name)
    xp = support.xp_for(backend)
    x_host = _values(x_shape, dtype, 3)
    dy_host = support.draw_values(x_shape, dtype, {}, seed=4, finite=True)
    rng = np.random.default_rng(7)
    alpha_host = (rng.uniform(-0.5, 1.5, alpha_shape)).astype(dtype)
    x, dy, alpha = xp.asarray(x_host), xp.asarray(dy_host), xp.asarray(alpha_host)
    before = [support.snapshot(a) for a in (x, dy, alpha)]
    with fastact.use_backend(backend):
        y = fastact.prelu(x, alpha)
        dx, dalpha = fastact.prelu_backward(dy, x, alpha)
    for b, a, name in zip(before, (x, dy, alpha), ("x", "dy", "alpha")):
        support.assert_unchanged(b, a, name)
    assert isinstance(y, support.expected_kind(backend)) and isinstance(dx, support.expected_kind(backend))
    assert y.dtype == dtype and dx.dtype == dtype and dalpha.dtype == alpha_host.dtype
    assert dalpha.shape == alpha_host.shape
    support.assert_close(support.to_host(y), reference.prelu(x_host, alpha_host), dtype, 2, "prelu forward")
    ref_dx, ref_dalpha = reference.prelu_backward(dy_host, x_host, alpha_host)
    support.assert_close(support.to_host(dx), ref_dx, dtype, 2, "prelu dx")
    contributions = np.where(x_host.astype(float) > 0, 0, x_host.astype(float) * dy_host.astype(float))
    support.assert_sum_close(
        support.to_host(dalpha), ref_dalpha, reference.sum_to_shape(np.abs(contributions), alpha_host.shape), dtype,
        x_host.size // max(alpha_host.size, 1),
    )


@pytest.mark.parametrize("backend", backend_params)
def test_prelu_out_and_in_place(backend):
    xp = support.xp_for(backend)
    x_host = np.linspace(-3, 3, 60, dtype=np.float32).reshape(3, 4, 5)
    alpha = xp.asarray(np.array([0.1, 0.2, 0.3, 0.4], np.float32).reshape(4, 1))
    with fastact.use_backend(backend):
        expected = support.to_host(fastact.prelu(xp.asarray(x_host), alpha))
        x = xp.asarray(x_host)
        assert fastact.prelu(x, alpha, out=x) is x
        support.assert_same(support.to_host(x), expected)
        dy, x = xp.ones_like(xp.asarray(x_host)), xp.asarray(x_host)
        dx, _ = fastact.prelu_backward(dy, x, alpha, out=dy)
        assert dx is dy


@pytest.mark.parametrize("backend", backend_params)
def test_prelu_special_values(backend):
    """NaN x -> NaN; dy = inf where x > 0 contributes exactly 0 to dalpha; -inf with alpha 0 -> NaN (0 * -inf)."""
    xp = support.xp_for(backend)
    x = xp.asarray(np.array([np.nan, 2.0, -1.0, -np.inf, np.inf], np.float32))
    dy = xp.asarray(np.array([1.0, np.inf, 2.0, 0.0, 1.0], np.float32))
    with fastact.use_backend(backend):
        y = support.to_host(fastact.prelu(x, xp.asarray(np.float32(0.5))))
        dx, dalpha = fastact.prelu_backward(dy, x, xp.asarray(np.float32(0.5)))
        y0 = support.to_host(fastact.prelu(x, xp.asarray(np.float32(0.0))))
        # An infinite slope must not leak into x > 0.
        y_inf = support.to_host(fastact.prelu(x, xp.asarray(np.float32(np.inf))))
    assert np.isnan(y[0]) and y[1] == 2.0 and y[2] == -0.5 and y[3] == -np.inf and y[4] == np.inf
    dx = support.to_host(dx)
    assert np.isnan(dx[0]) and dx[1] == np.inf and dx[2] == 1.0 and dx[3] == 0.0 and dx[4] == 1.0
    assert np.isnan(support.to_host(dalpha))  # NaN x contributes x * dy = NaN
    assert np.isnan(y0[3])
    assert y_inf[1] == 2.0 and y_inf[4] == np.inf and y_inf[2] == -np.inf


def test_prelu_dalpha_ignores_dy_where_x_positive():
    x = np.array([1.0, 2.0, -1.0], np.float32)
    dy = np.array([np.inf, np.nan, 3.0], np.float32)
    _, dalpha = fastact.prelu_backward(dy, x, np.float32(0.1))
    assert dalpha == -3.0


def test_prelu_python_scalar_alpha_takes_x_dtype():
    x = np.array([-1.0, 1.0], np.float16)
    y = fastact.prelu(x, 0.25)
    dx, dalpha = fastact.prelu_backward(np.ones_like(x), x, 0.25)
    assert y.dtype == np.float16 and dalpha.dtype == np.float16 and dalpha.shape == ()


def test_prelu_dalpha_is_deterministic_and_threaded():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64, 32, 32)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    alpha = np.full((64, 1, 1), 0.25, np.float32)
    runs = [fastact.prelu_backward(dy, x, alpha)[1] for _ in range(3)]
    assert all(r.tobytes() == runs[0].tobytes() for r in runs)
    _, ref = reference.prelu_backward(dy, x, alpha)
    np.testing.assert_allclose(runs[0], ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("alpha_shape", [(5,), (3, 2, 1, 1), (1, 1, 1, 1, 1)])
def test_prelu_alpha_must_broadcast_to_x(alpha_shape):
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="does not broadcast"):
        fastact.prelu(x, np.ones(alpha_shape, np.float32))
