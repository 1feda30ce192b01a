"""The wider family (SPEC 2.3) against the float64 oracle, over backend x dtype x layout,
plus the conventions, the stability rules and the row-wise axis handling."""
from __future__ import annotations

import doctest
import warnings
from decimal import Decimal

import numpy as np
import pytest

import fastact
import support
from fastact import reference
from fastact._registry import REGISTRY, get_spec
from support import BACKENDS, DTYPE_NAMES, LAYOUTS, backend_param, dtype_of

CASES = [
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("elu", {"alpha": -0.3}),
    ("selu", {}),
    ("gelu", {}),
    ("gelu", {"approximate": True}),
    ("silu", {}),
    ("swish", {}),
    ("softplus", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("hard_sigmoid", {}),
    ("hard_silu", {}),
    ("hard_swish", {}),
    ("mish", {}),
    ("linear", {}),
    ("softmax", {}),
    ("softmax", {"axis": 0}),
    ("log_softmax", {}),
    ("log_softmax", {"axis": 0}),
]
CASE_IDS = support.case_ids(CASES)
ELEMENTWISE = [(name, params) for name, params in CASES if get_spec(name).form == "elementwise"]
ROWWISE = [name for name, spec in REGISTRY.items() if spec.form == "rowwise"]

backend_params = [backend_param(b) for b in BACKENDS]


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_forward_and_backward(backend, dtype_name, layout, name, params):
    support.check_case(backend, dtype_of(dtype_name), layout, name, params, support.LARGE_EDGES)


def _logit_rows(shape: tuple, dtype: np.dtype, seed: int) -> np.ndarray:
    """Logits with rows of every scale (up to 1e4), some -inf, and one NaN."""
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 30.0, 1e4])[rng.integers(0, 3, shape[:-1])][..., None]
    v = rng.standard_normal(shape) * scale
    v.reshape(-1)[3] = -np.inf
    v.reshape(-1)[-2] = np.nan
    with np.errstate(over="ignore"):
        return v.astype(dtype)


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
# Tuples of axes (Keras' axis=(1, 2)) form one row: adjacent ones (merged in place) and apart
# ones (moved last), in any order.
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, (1, 2), (0, 1), (0, 2), (2, -3), (0, 1, 2), (-1,)], ids=str)
@pytest.mark.parametrize("name", ROWWISE)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "reversed"])
def test_rowwise_along_every_axis(backend, dtype_name, axis, name, layout):
    """softmax/log_softmax along each axis (or tuple of axes) of a 3-d array, contiguous or not, rows of large logits."""
    dtype = dtype_of(dtype_name)
    build = {
        "contiguous": lambda v, xp: xp.array(v),
        "transposed": lambda v, xp: xp.array(np.ascontiguousarray(v.transpose(2, 0, 1))).transpose(1, 2, 0),
        "reversed": lambda v, xp: xp.array(v[::-1, :, ::-1])[::-1, :, ::-1],
    }[layout]
    x = _logit_rows((5, 7, 9), dtype, seed=3)
    dy = support.draw_values((5, 7, 9), dtype, {}, seed=4, finite=True)
    xp = support.xp_for(backend)
    support.check_forward(backend, name, {"axis": axis}, lambda: build(x, xp))
    support.check_backward(backend, name, {"axis": axis}, lambda: build(dy, xp), lambda: build(x, xp))


@pytest.mark.parametrize("name", ROWWISE)
def test_several_axes_match_one_merged_axis(name):
    """Over axes (1, 2) of (N, H, W, C) is the single-axis call on (N, H*W, C), bit for bit."""
    x = _logit_rows((3, 4, 5, 6), np.dtype(np.float32), seed=10)
    dy = support.draw_values((3, 4, 5, 6), np.dtype(np.float32), {}, seed=11, finite=True)
    forward, backward = getattr(fastact, name), getattr(fastact, f"{name}_backward")
    merged = lambda a: a.reshape(3, 20, 6)  # noqa: E731
    support.assert_same(forward(x, (1, 2)), forward(merged(x), 1).reshape(x.shape))
    support.assert_same(backward(dy, x, (2, 1)), backward(merged(dy), merged(x), 1).reshape(x.shape))
    support.assert_same(fastact.Activation(name, axis=[1, 2])(x), forward(x, axis=(1, 2)))


@pytest.mark.parametrize("name", ROWWISE)
def test_axes_are_checked(name):
    """A bad tuple of axes is refused, saying why, before anything is written."""
    x = np.zeros((2, 3, 4), np.float32)
    before = x.copy()
    forward, backward = getattr(fastact, name), getattr(fastact, f"{name}_backward")
    for axes in ((1, 1), (0, -3), (2, -1, 0)):
        with pytest.raises(ValueError, match="more than once"):
            forward(x, axes, out=x)
        with pytest.raises(ValueError, match="more than once"):
            backward(x, x, axis=axes, out=x)
    for axes in ((1, 3), (-4, 0)):
        with pytest.raises(ValueError, match="out of range for x with ndim 3"):
            forward(x, axes, out=x)
        with pytest.raises(ValueError, match="out of range for x with ndim 3"):
            backward(x, x, axis=axes)
    with pytest.raises(ValueError, match="non-empty tuple"):
        forward(x, ())
    for axes in ((1, 2.0), (True, 2), (1, None), {1, 2}):
        with pytest.raises(TypeError, match="int or a tuple of ints"):
            forward(x, axes)
    np.testing.assert_array_equal(x, before)
    forward(x, (1, 2))  # (1, 2) remembered by the parameter cache must not let (True, 2) through
    with pytest.raises(TypeError, match="int or a tuple of ints"):
        forward(x, (True, 2))


def test_rowwise_long_rows_and_many_blocks():
    """Rows longer than a block, and many rows shared by threads, give the oracle's result."""
    rng = np.random.default_rng(6)
    for shape, axis in (((3, 40_000), -1), ((40_000, 3), 0), ((600, 700), 0), ((600, 700), 1)):
        x = (rng.standard_normal(shape) * 5).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        for name in ROWWISE:
            forward, backward = reference.ORACLE[name]
            support.assert_close(getattr(fastact, name)(x, axis), forward(x, axis), x.dtype, name, f"{name} {shape}")
            dx = getattr(fastact, f"{name}_backward")(dy, x, axis)
            scale = support.rowwise_dy_scale(dy, axis)
            support.assert_close(dx, backward(dy, x, axis), x.dtype, name, f"{name}_backward {shape}", scale)


@pytest.mark.parametrize("name", ROWWISE)
def test_axis_is_checked(name):
    x = np.zeros((2, 3), np.float32)
    before = x.copy()
    forward, backward = getattr(fastact, name), getattr(fastact, f"{name}_backward")
    for axis in (2, -3):
        with pytest.raises(ValueError, match="ndim 2"):
            forward(x, axis, out=x)
        with pytest.raises(ValueError, match="ndim 2"):
            backward(x, x, axis=axis)
    for axis in (1.0, True, None):
        with pytest.raises(TypeError, match="axis"):
            forward(x, axis)
    np.testing.assert_array_equal(x, before)
    one_element = 1.0 if name == "softmax" else 0.0  # a 0-d x is one element
    assert forward(np.float32(2.0)) == one_element and forward(np.float32(2.0), axis=0) == one_element
    with pytest.raises(ValueError, match="ndim 0"):
        forward(np.float32(2.0), axis=1)


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
def test_conventions_exactly(dtype_name):
    """SPEC 2.3's kink conventions and the limits at +-inf, written out (not through the oracle)."""
    dtype = dtype_of(dtype_name)

    def values(function, *args, **params):
        arrays = [np.array(a, np.float64).astype(dtype) for a in args]
        return getattr(fastact, function)(*arrays, **params).astype(np.float64).tolist()

    ones = [1.0] * 4
    cast = lambda v: float(np.float64(v).astype(np.float32 if dtype.itemsize < 8 else dtype).astype(dtype))  # noqa: E731
    selu_slope = np.float32(reference_selu_scale()) * np.float32(reference_selu_alpha()) if dtype.itemsize < 8 else (
        reference_selu_scale() * reference_selu_alpha()
    )
    assert values("selu_backward", [1.0], [0.0]) == [cast(selu_slope)]
    assert values("elu_backward", [1.0, 1.0], [0.0, 1e-3], alpha=0.5) == [0.5, 1.0]
    assert values("hard_sigmoid_backward", ones, [-3.0, 3.0, -2.5, 2.5]) == [0.0, 0.0, cast(1 / 6), cast(1 / 6)]
    assert values("hard_silu_backward", ones, [-3.5, -3.0, 3.0, 3.5]) == [0.0, 0.0, 1.0, 1.0]
    assert values("hard_silu_backward", [1.0, 1.0], [-2.25, 2.25]) == [-0.25, 1.25]
    assert values("gelu_backward", [1.0], [0.0]) == [0.5]
    assert values("hard_silu", [-np.inf, np.inf]) == [0.0, np.inf]
    for name in ("silu", "mish", "gelu"):
        assert values(name, [-np.inf, np.inf]) == [0.0, np.inf], name
        assert values(f"{name}_backward", [1.0, 1.0], [-np.inf, np.inf]) == [0.0, 1.0], name
    assert values("gelu", [-np.inf, np.inf], approximate=True) == [0.0, np.inf]
    assert values("softplus", [-np.inf, np.inf]) == [0.0, np.inf]
    assert values("sigmoid", [-np.inf, np.inf]) == [0.0, 1.0]
    assert values("tanh_backward", [1.0, 1.0], [-np.inf, np.inf]) == [0.0, 0.0]
    assert values("elu", [-np.inf], alpha=2.0) == [-2.0]


def reference_selu_scale() -> float:
    return get_spec("selu").kernel_params()["scale"]


def reference_selu_alpha() -> float:
    return get_spec("selu").kernel_params()["alpha"]


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("name,params", ELEMENTWISE, ids=[f"{n}-{p}" for n, p in ELEMENTWISE])
def test_nan_in_nan_out(dtype_name, name, params):
    dtype = dtype_of(dtype_name)
    x = np.array([np.nan, 1.0, np.nan, -1.0], np.float64).astype(dtype)
    y = getattr(fastact, name)(x, **params).astype(np.float64)
    dx = getattr(fastact, f"{name}_backward")(np.ones_like(x), x, **params).astype(np.float64)
    assert np.isnan(y[[0, 2]]).all() and np.isnan(dx[[0, 2]]).all()
    assert np.isfinite(y[[1, 3]]).all() and np.isfinite(dx[[1, 3]]).all()


STABILITY_MAGNITUDES = [1e4, 1e3, 800.0, 200.0, 100.0, 89.0, 88.0, 50.0, 40.0, 20.0]


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("name,params", ELEMENTWISE, ids=[f"{n}-{p}" for n, p in ELEMENTWISE])
def test_stable_for_large_inputs(dtype_name, name, params):
    """|x| up to 1e4: no warning, no NaN, no overflow, and the oracle's value."""
    dtype = dtype_of(dtype_name)
    x = np.array([s * m for m in STABILITY_MAGNITUDES for s in (1, -1)], np.float64).astype(dtype)
    dy = np.ones_like(x)
    oracle_forward, oracle_backward = support.oracle_for(name, params, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = getattr(fastact, name)(x, **params)
        dx = getattr(fastact, f"{name}_backward")(dy, x, **params)
    kernel = get_spec(name).kernel
    assert not np.isnan(y.astype(np.float64)).any() and not np.isnan(dx.astype(np.float64)).any()
    assert np.isfinite(dx.astype(np.float64)).all()
    support.assert_close(y, oracle_forward(x), dtype, kernel, f"{name} forward")
    support.assert_close(dx, oracle_backward(dy, x), dtype, kernel, f"{name} backward")


# --------------------------------------------------------------------------- #
# Accuracy spots, where a comparison with PyTorch, TensorFlow and mpmath once
# found fastact the furthest off: errors in ulps of the correctly rounded
# result (the float64 oracle), on every n-th float32 of a range; the figures
# in the comments are the maxima over every float32 of it.
# --------------------------------------------------------------------------- #
def _float32_magnitudes(low: float, high: float, step: int) -> np.ndarray:
    """Every step-th float32 in [low, high], 0 <= low < high."""
    first, last = np.array([low, high], np.float32).view(np.int32)
    return np.arange(first, last + 1, step, dtype=np.int32).view(np.float32)


def _ulps(got: np.ndarray, expected: np.ndarray, dtype=np.float32) -> np.ndarray:
    """|got - expected| in ulps of dtype at expected (the subnormal spacing below the normal range)."""
    info = np.finfo(dtype)
    expected = np.asarray(expected, np.float64)
    exponent = np.floor(np.log2(np.maximum(np.abs(expected), float(info.tiny))))
    return np.abs(np.asarray(got, np.float64) - expected) / 2.0 ** (exponent - info.nmant)


def _on(backend: str, function, *arrays) -> np.ndarray:
    with fastact.use_backend(backend):
        return support.to_host(function(*(support.to_backend(backend, a) for a in arrays)))


# gelu (exact), float32 left tail, largest errors over every float32 (before: 93
# ulps at x = -11.4, where TensorFlow has 8.5, and 190 at x = -13: the rounding of
# a / sqrt2 and a*a/2, which erfc's relative slope 2z multiplies):
#                   forward           forward              backward
#                   x in [-13, -1]    x in [-14.6, -13)*   x in [-14.6, -2]
#   numpy           6.95              9.44                 6.06
#   cuda-emulator   3.48              3.03                 3.33
#   cpu             3.10              2.51                 2.95   AVX2, AVX-512 builds: the GPU's form
#   cpu baseline    3.62              7.43                 6.13   (3.99, 8.21, 6.40 before those did)
# * where erfc(a/sqrt2) is subnormal but the result is not (erfc's rounding, times a/2).
# The NumPy backend's float32 erfc (a series and NumPy's exp, within 2.5 ulps) is
# within 6 ulps; glibc's erfcf within 2.5 and expf within 0.5; the cpu backend's
# vector expf (libmvec) within 2.6.  cuda-emulator, cuda and the cpu backend's builds
# with FMA: the GPU's own form, no erfc (test_gelu_float32_gpu_form below; before it,
# with glibc's erfcf and expf, the emulator had 4.85, 8.30 and 4.58); cuda keeps the
# NumPy bounds (not measured here); cpu keeps its baseline build's (the one it loads
# on a CPU without AVX2).
GELU_TAIL_ULPS = {
    "numpy": (7.5, 10.0, 6.5),
    "cuda-emulator": (4.0, 3.5, 4.0),
    "cpu": (5.5, 9.0, 7.0),
    "cuda": (7.5, 10.0, 7.0),
}


@pytest.mark.parametrize("backend", backend_params)
def test_gelu_float32_left_tail_ulps(backend):
    x = -_float32_magnitudes(1.0, 14.6, 61)
    y = _on(backend, fastact.gelu, x)
    dx = _on(backend, fastact.gelu_backward, np.ones_like(x), x)
    forward_error = _ulps(y, reference.gelu(x))
    backward_error = _ulps(dx, reference.gelu_derivative(x.astype(np.float64)))
    normal, window, backward = GELU_TAIL_ULPS[backend]
    assert forward_error[x >= -13].max() <= normal, x[x >= -13][np.argmax(forward_error[x >= -13])]
    assert forward_error[x < -13].max() <= window, x[x < -13][np.argmax(forward_error[x < -13])]
    assert backward_error[x <= -2].max() <= backward, x[x <= -2][np.argmax(backward_error[x <= -2])]


# gelu (exact), float32 in the GPU's own form (cuda/activations.cuh: GaussianTailFloat, Mills'
# ratio and the density as polynomials in FMAs), which the emulator runs with the GPU's arithmetic
# (its approximate reciprocal is corrected to nearly correct rounding; on a GPU, w can differ from
# the emulator's in its last bit where the quotient lies within 2^-44 of a rounding boundary: one
# more ulp allowed).  Largest errors over every float32 x in [-15, 15], cuda-emulator:
#   forward   3.77 ulps (x = -0.14; 3.47 for x in (0, 0.5), 3.48 in [-13, -1], 3.03 in
#             [-14.6, -13), 1.64 above 0.5, 1.0 for |x| below 2^-20)
#   backward  4.40 ulps outside [-1, -0.5] (x = -0.36, where M / (M - |x|) = 1.6 scales M's
#             error); within it the derivative crosses zero (x = -0.7518): absolute 4.1e-8 there,
#             1.3e-7 anywhere (x = 0.0023)
# Sampled here on every 127th float32 of |x| in [2^-30, 15].  The cpu backend's AVX2 and
# AVX-512 builds run the same form with FMAs and an exact division for the reciprocal (its
# baseline build, without FMA, keeps libmvec's erfc: test_gelu_float32_left_tail_ulps):
# 3.36 ulps forward (x = -0.327), 3.86 backward (x = -0.416), absolute 1.25e-7 here.
GELU_GPU_FORM_BOUNDS = {"cuda-emulator": (4.25, 4.75, 1.5e-7), "cuda": (5.25, 5.75, 2e-7),
                        "cpu": (4.25, 4.75, 1.5e-7)}


@pytest.mark.parametrize("backend", [backend_param("cuda-emulator"), backend_param("cuda"), backend_param("cpu")])
def test_gelu_float32_gpu_form(backend):
    if backend == "cpu" and fastact.backends.load("cpu").engine.isa == "baseline":
        pytest.skip("the cpu backend's baseline build (no FMA) computes exact gelu with libmvec's erfc")
    magnitudes = _float32_magnitudes(2.0**-30, 15.0, 127)
    x = np.concatenate([-magnitudes, magnitudes])
    y = _on(backend, fastact.gelu, x)
    dx = _on(backend, fastact.gelu_backward, np.ones_like(x), x)
    x64 = x.astype(np.float64)
    expected_dx = reference.gelu_derivative(x64)
    forward_error = _ulps(y, reference.gelu(x))
    backward_error = _ulps(dx, expected_dx)
    backward_absolute = np.abs(dx.astype(np.float64) - expected_dx)
    forward_bound, backward_bound, absolute_bound = GELU_GPU_FORM_BOUNDS[backend]
    crossing = (x64 >= -1) & (x64 <= -0.5)
    assert forward_error.max() <= forward_bound, x[np.argmax(forward_error)]
    assert backward_error[~crossing].max() <= backward_bound, x[~crossing][np.argmax(backward_error[~crossing])]
    assert backward_absolute.max() <= absolute_bound, x[np.argmax(backward_absolute)]
    # The ends: 0 and the limits, no NaN, subnormal x (gelu(x) = x/2 rounded, within a subnormal ulp).
    ends = np.array([0.0, -0.0, np.inf, -np.inf, 1e30, -1e30, 16.0, -16.0, 14.6, -14.6, 1e-40, -1e-40,
                     2.0**-149, -(2.0**-149)], np.float32)
    y_ends = _on(backend, fastact.gelu, ends)
    dx_ends = _on(backend, fastact.gelu_backward, np.ones_like(ends), ends)
    np.testing.assert_array_equal(y_ends[:8], np.array([0, 0, np.inf, 0, 1e30, 0, 16, 0], np.float32))
    np.testing.assert_array_equal(dx_ends[:8], np.array([0.5, 0.5, 1, 0, 1, 0, 1, 0], np.float32))
    assert np.abs(y_ends[8:].astype(np.float64) - reference.gelu(ends[8:])).max() <= 2.0**-149
    assert np.abs(dx_ends[8:].astype(np.float64) - reference.gelu_derivative(ends[8:].astype(np.float64))).max() <= 1e-7


# tanh_backward, float32: sech^2 as 4 e / (1 + e)^2, e = exp(-2|x|) (before, (1 / cosh)^2
# doubled cosh's error: up to 5.0 ulps on numpy and cuda-emulator, 6.5 on cpu (libmvec's
# coshf); 5.3 was reported at x = 1.3373732566833496, 0.93 here).  Largest errors over
# every float32 in [2**-10, 12]: numpy 0.50 (evaluated in float64), cuda-emulator 1.93
# (glibc's expf, correctly rounded), cpu 3.34 (libmvec's expf, within 2.6 ulps).
# cuda: CUDA's expf is within 2 ulps (not measured here).
TANH_BACKWARD_ULPS = {"numpy": 0.75, "cuda-emulator": 2.25, "cpu": 3.75, "cuda": 4.0}


@pytest.mark.parametrize("backend", backend_params)
def test_tanh_backward_float32_ulps_and_tails(backend):
    reported = np.float32([1.3373732566833496, -1.3373732566833496])
    x = np.concatenate([reported, _float32_magnitudes(2.0**-10, 12.0, 127)])
    dx = _on(backend, fastact.tanh_backward, np.ones_like(x), x)
    error = _ulps(dx, reference.tanh_derivative(x.astype(np.float64)))
    point_bound = TANH_BACKWARD_ULPS[backend] if backend == "cuda" else min(2.0, TANH_BACKWARD_ULPS[backend])
    assert error[:2].max() <= point_bound, error[:2]
    assert error.max() <= TANH_BACKWARD_ULPS[backend], x[np.argmax(error)]
    # The tails: 4 e^(-2|x|), a positive subnormal down to x = 52.67, never 0 before, never overflowing.
    far = np.float32([20, 40, 43.5, 44, 45, 50, 51, 51.9, 52, 52.5, 52.6, 52.7, 60, 1e4, 3e38, np.inf])
    far = np.concatenate([far, -far])
    dx = _on(backend, fastact.tanh_backward, np.ones_like(far), far)
    expected = (4 * np.exp(-2 * np.abs(far.astype(np.float64)))).astype(np.float32)
    assert ((dx > 0) == (expected > 0)).all(), far[(dx > 0) != (expected > 0)]
    assert _ulps(dx, expected).max() <= 2, far[np.argmax(_ulps(dx, expected))]


# mish_backward far left (x < -64): (1 + x) e^x to within a relative e^x, negative, and not
# lost where e^x is subnormal or 0 while the result is not (before: the NumPy backend
# gave +5e-324 at x = -745 in float64, and both backends 0 below x = -745.1, or a value
# 75% off: e^x rounded to the subnormal grid before the product with 1 + x).
MISH_FAR_LEFT = {
    "float64": [-751.0, -748.0, -746.0, -745.5, -745.0, -744.0, -740.0, -730.0, -720.0, -715.0, -710.0, -709.0,
                -700.0, -500.0, -100.0, -64.5],
    "float32": [-108.5, -106.0, -104.5, -104.0, -103.0, -100.0, -95.0, -92.0, -90.0, -88.0, -87.0, -80.0, -64.5],
}


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_mish_backward_far_left_tail(backend, dtype_name):
    dtype = np.dtype(dtype_name)
    x = np.array(MISH_FAR_LEFT[dtype_name], dtype)
    dx = _on(backend, fastact.mish_backward, np.ones_like(x), x)
    expected = np.array([float((1 + Decimal(float(v))) * Decimal(float(v)).exp()) for v in x]).astype(dtype)
    assert (expected < 0).all()
    assert (dx < 0).all(), x[dx >= 0]
    assert _ulps(dx, expected, dtype).max() <= 4, x[np.argmax(_ulps(dx, expected, dtype))]


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("name", ROWWISE)
def test_rowwise_stable_for_large_logits(dtype_name, name):
    dtype = dtype_of(dtype_name)
    x = np.array([[1e4, -1e4, 0.0, 9999.0], [-1e4, -1e4, -9999.5, -1e4], [1e4, 1e4, 1e4, 1e4]]).astype(dtype)
    dy = np.array([[1.0, -2.0, 0.5, 3.0]] * 3).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = getattr(fastact, name)(x)
        dx = getattr(fastact, f"{name}_backward")(dy, x)
    forward, backward = reference.ORACLE[name]
    assert np.isfinite(y.astype(np.float64)).all() and np.isfinite(dx.astype(np.float64)).all()
    support.assert_close(y, forward(x), dtype, name, f"{name} forward")
    support.assert_close(dx, backward(dy, x), dtype, name, f"{name} backward", support.rowwise_dy_scale(dy, -1))


def test_aliases():
    assert fastact.swish is fastact.silu and fastact.swish_backward is fastact.silu_backward
    assert fastact.hard_swish is fastact.hard_silu and fastact.hard_swish_backward is fastact.hard_silu_backward
    assert fastact.Activation("swish").name == "silu"
    x = np.linspace(-5, 5, 11)
    np.testing.assert_array_equal(fastact.selu(x), fastact.Activation("selu")(x))
    np.testing.assert_array_equal(fastact.Activation("softmax", axis=1)(x.reshape(11, 1)), np.ones((11, 1)))


def test_large_blocks_and_threads_match_small():
    support.check_large_blocks(ELEMENTWISE)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_docstring_example_runs(name):
    """Every declaration's example (shown in help()) gives the output it shows."""
    spec = REGISTRY[name]
    assert spec.formula in getattr(fastact, name).__doc__
    test = doctest.DocTestParser().get_doctest(spec.example, {"np": np, "fastact": fastact}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{name}: the docstring example does not give what it shows"
