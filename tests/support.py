"""Shared test machinery: backends, dtypes, layouts, edge values, and the one checker.

Tests are written once and parametrized over backend x dtype x layout.  The
checks every activation must pass (oracle agreement, NaN, inputs unchanged,
``out=`` and in-place, result kind) live in :func:`check_forward` and
:func:`check_backward`, so an activation gets them all by adding a case row.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import fastact
from fastact import backends, reference
from fastact._registry import get_spec

try:
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - the test extra installs it
    ml_dtypes = None
    BFLOAT16 = None

BACKENDS = ("cpu", "numpy", "cuda", "cuda-emulator")
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


def case_ids(cases: list[tuple[str, dict]]) -> list[str]:
    """Readable test ids for (activation, params) cases: ``relu-alpha=0.1``, ``relu6-defaults``."""
    return [f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items()) or 'defaults'}" for name, params in cases]


def backend_param(name: str):
    """A pytest param for a backend, skipped with the reason where it cannot run here."""
    reason = backends.unavailable_reason(name)
    marks = [pytest.mark.skip(reason=f"backend {name!r} unavailable: {reason}")] if reason else []
    return pytest.param(name, marks=marks, id=name)


def dtype_of(name: str) -> np.dtype:
    if name == "bfloat16":
        if BFLOAT16 is None:
            pytest.skip("bfloat16 needs ml_dtypes")
        return BFLOAT16
    return np.dtype(name)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def as_param(value: Any, dtype: np.dtype) -> Any:
    """A parameter as the compute type holds it (the kernels see float32 for 16/32-bit data)."""
    if value is None or isinstance(value, (bool, int, tuple, np.ndarray)):  # flags and axes stay as they are
        return value
    return float(compute_dtype(dtype).type(value))


# --------------------------------------------------------------------------- #
# Layouts: each builds, with array module xp (numpy or cupy), a view holding
# the given host values in one memory layout.
# --------------------------------------------------------------------------- #
def _contiguous(v, xp):
    return xp.array(v)


def _strided(v, xp):
    base = xp.zeros((v.size * 2,), v.dtype)
    base[::2] = xp.asarray(v.ravel())
    return base[::2].reshape(v.shape)


def _reversed(v, xp):
    return xp.array(v[::-1])[::-1]


def _transposed(v, xp):
    return xp.array(np.ascontiguousarray(v.T)).T


def _offset(v, xp):
    base = xp.zeros(v.size + 1, v.dtype)
    base[1:] = xp.asarray(v.ravel())
    return base[1:].reshape(v.shape)


def _slice2d(v, xp):
    rows, cols = v.shape
    base = xp.zeros((rows + 3, cols + 5), v.dtype)
    base[1 : rows + 1, 2 : cols + 2] = xp.asarray(v)
    return base[1 : rows + 1, 2 : cols + 2]


# name -> (shape to draw, builder)
LAYOUTS: dict[str, tuple[tuple, Callable]] = {
    "contiguous": ((4, 33), _contiguous),
    "0d": ((), _contiguous),
    "empty": ((0, 5), _contiguous),
    "odd": ((37,), _contiguous),
    "strided": ((6, 11), _strided),
    "reversed": ((45,), _reversed),
    "transposed": ((9, 14), _transposed),
    "offset": ((41,), _offset),
    "slice2d": ((7, 13), _slice2d),
}


def xp_for(backend: str):
    if backend == "cuda":
        import cupy

        return cupy
    return np


def maker(backend: str, layout: str, values: np.ndarray) -> Callable[[], Any]:
    """A function returning a fresh backend-side array of ``values`` in ``layout``."""
    build = LAYOUTS[layout][1]
    return lambda: build(values, xp_for(backend))


def edge_values(dtype: np.dtype, params: dict) -> np.ndarray:
    """Values where activations break: signed zeros, infinities, NaN, kinks, huge."""
    values = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1.0, -1.0, 3.0, -3.0, 6.0, 1e-3, -1e-3]
    for key in ("threshold", "theta", "max_value"):
        if params.get(key) is not None:
            values += [params[key], np.nextafter(params[key], np.inf), np.nextafter(params[key], -np.inf)]
    return np.array(values, np.float64)


# Where exp-based activations change regime: float32 exp overflow (88.7), the
# clamps of the stable forms (40, 800) and the 1e4 of SPEC's stability rule.
LARGE_EDGES = (20.0, -20.0, 40.0, -40.0, 89.0, -89.0, 800.0, -800.0, 1e4, -1e4)


def draw_values(
    shape: tuple, dtype: np.dtype, params: dict, seed: int = 0, finite: bool = False, extra_edges: tuple = ()
) -> np.ndarray:
    """Random normal*3 values of ``shape``, with the edge values (then ``extra_edges``) planted at the start.

    ``finite=True`` replaces the planted NaN/inf/huge values (for dy, so that a
    NaN in dx can only come from x).
    """
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = rng.standard_normal(n) * 3.0
    edges = np.concatenate([edge_values(dtype, params), extra_edges])
    k = min(n, edges.size)
    v[:k] = edges[:k]
    if finite:
        v = np.where(np.isfinite(v) & (np.abs(v) < 1e4), v, 0.5)
    with np.errstate(over="ignore"):
        return v.astype(dtype).reshape(shape)


# --------------------------------------------------------------------------- #
# Moving arrays to and from a backend's side.
# --------------------------------------------------------------------------- #
def to_backend(backend: str, a: np.ndarray) -> Any:
    if backend == "cuda":
        import cupy

        return cupy.asarray(a)
    return a


def to_host(a: Any) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    return a.get()


def expected_kind(backend: str) -> type:
    if backend == "cuda":
        import cupy

        return cupy.ndarray
    return np.ndarray


# --------------------------------------------------------------------------- #
# Comparison.
# --------------------------------------------------------------------------- #
def ulp(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The spacing of ``dtype`` at each (float64) value."""
    info = np.finfo(dtype) if dtype != BFLOAT16 else ml_dtypes.finfo(dtype)
    mag = np.abs(values)
    exponent = np.floor(np.log2(np.maximum(mag, float(info.smallest_normal))))
    return np.exp2(exponent - info.nmant)


# Activations whose result is one correctly rounded operation on x (or exact):
# held to 2 ulps at every dtype.  The others are held to ``allowed_error``.
EXACT_KERNELS = frozenset({"relu", "prelu", "linear"})


def allowed_error(kernel: str, expected: np.ndarray, dtype: np.dtype, scale: Any = None) -> np.ndarray:
    """The accuracy fastact promises, per element of the float64 ``expected``.

    * exact kernels (``EXACT_KERNELS``), and float16/bfloat16: within 2 ulps of
      the correctly rounded result;
    * float32: relative error 1e-5, or absolute 1e-6 near zero crossings;
    * float64: relative error 1e-13, or absolute 1e-15 near zero crossings
      (the float32 rule scaled to float64's epsilon, with the same margin).

    ``scale`` (row-wise backward only) is the size of the terms that the result
    is a difference of: softmax_backward's dx = y (dy - sum(dy y)) and
    log_softmax_backward's dx = dy - y sum(dy) cancel near zero, with an error
    of a few epsilons of the compute type times the row's |dy|.  There the
    absolute term (float32's for 16-bit types, which compute in float32) is
    multiplied by ``max(scale, 1)``.
    """
    if kernel in EXACT_KERNELS:
        return 2.0 * ulp(expected, dtype)
    rel, absolute = (1e-13, 1e-15) if dtype == np.float64 else (1e-5, 1e-6)
    if scale is not None:
        absolute = absolute * np.maximum(scale, 1.0)
    if dtype.itemsize == 2:
        return np.maximum(2.0 * ulp(expected, dtype), 0.0 if scale is None else absolute)
    return np.maximum(rel * np.abs(expected), absolute)


def rowwise_dy_scale(dy: np.ndarray, axis: int) -> np.ndarray:
    """The largest |dy| of each row along ``axis``, broadcast to dy's shape (see ``allowed_error``)."""
    magnitude = np.abs(np.asarray(dy).astype(np.float64))
    if magnitude.ndim == 0:
        return magnitude
    return np.broadcast_to(magnitude.max(axis=axis, keepdims=True, initial=0.0), magnitude.shape)


def assert_close(
    actual: np.ndarray, expected: np.ndarray, dtype: np.dtype, kernel: str = "relu", what: str = "", scale: Any = None
) -> None:
    """``actual`` (dtype) within ``allowed_error(kernel, ..., scale)`` of the float64 ``expected``.

    NaN must be exactly where expected, infinities exact; signed zeros compare equal.
    """
    actual64 = np.asarray(actual).astype(np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual64.shape == expected.shape, f"{what}: shape {actual64.shape} != {expected.shape}"
    nan_a, nan_e = np.isnan(actual64), np.isnan(expected)
    bad = nan_a != nan_e
    assert not bad.any(), f"{what}: NaN mismatch at {np.argwhere(bad)[:5].tolist()}: got {actual64[bad][:5]}, want {expected[bad][:5]}"
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = expected.astype(dtype).astype(np.float64)  # the correctly rounded result
        finite = np.isfinite(rounded) & ~nan_e
        inf = ~finite & ~nan_e
        assert np.array_equal(actual64[inf], rounded[inf]), f"{what}: infinities differ: {actual64[inf]} vs {rounded[inf]}"
        err = np.abs(actual64[finite] - expected[finite])
        if scale is not None:
            scale = np.broadcast_to(scale, expected.shape)[finite]
        tol = allowed_error(kernel, expected[finite], dtype, scale)
    worst = np.argmax(err - tol) if err.size else None
    assert err.size == 0 or (err <= tol).all(), (
        f"{what}: {int((err > tol).sum())} values off by more than allowed; worst: got "
        f"{actual64[finite][worst]!r}, want {expected[finite][worst]!r} (allowed error {tol[worst]:.3g})"
    )


def assert_sum_close(
    actual: np.ndarray,
    expected: np.ndarray,
    magnitude: np.ndarray,
    dtype: np.dtype,
    terms: int = 1,
    accumulated: bool = False,
    what: str = "sum",
) -> None:
    """A reduced sum of ``terms`` rounded products within the summation error bound, any order of adding.

    4 eps (sum |terms| + |sum|), plus one unit in the last place of the result
    for its final rounding, plus, per term, the smallest subnormal of the
    compute type (a product that lands in the subnormal range has an absolute,
    not a relative, rounding error).  NaN and infinities must match exactly.
    ``accumulated=True`` is for sums added up in the compute dtype itself (a
    GEMM), whose error grows with the number of terms: terms * eps(compute) *
    sum |terms| more (the classic bound for recursive summation, doubled).
    """
    actual = np.asarray(actual).astype(np.float64)
    expected, magnitude = np.asarray(expected, np.float64), np.asarray(magnitude, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    eps = float(ulp(np.array(1.0), dtype)[()])
    special = ~np.isfinite(expected)
    assert np.array_equal(actual[special], expected[special], equal_nan=True), f"{actual[special]} vs {expected[special]}"
    finite = ~special
    err = np.abs(actual[finite] - expected[finite])
    tiny = float(np.finfo(compute_dtype(dtype)).smallest_subnormal)
    bound = 4 * eps * (magnitude[finite] + np.abs(expected[finite])) + ulp(expected[finite], dtype) + terms * tiny
    if accumulated:
        bound += terms * float(np.finfo(compute_dtype(dtype)).eps) * magnitude[finite]
    assert np.all(err <= bound), (
        f"{what} off: max error {err.max() if err.size else 0} for magnitude {magnitude[finite].max() if err.size else 0}"
    )


def assert_same(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    """Bitwise-equal values (NaN == NaN; +0 == -0)."""
    a64, b64 = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    assert a64.shape == b64.shape, what
    assert np.array_equal(a64, b64, equal_nan=True), f"{what}: {a64[a64 != b64][:5]} vs {b64[a64 != b64][:5]}"


def snapshot(a: Any) -> np.ndarray:
    return to_host(a).copy()


def assert_unchanged(before: np.ndarray, after: Any, name: str) -> None:
    after = to_host(after)
    assert before.tobytes() == np.ascontiguousarray(after).tobytes(), f"{name} was modified"


# --------------------------------------------------------------------------- #
# The checks every elementwise activation gets.
# --------------------------------------------------------------------------- #
def oracle_for(name: str, params: dict, dtype: np.dtype) -> tuple[Callable, Callable]:
    """The float64 oracle pair for activation ``name`` with ``params``, parameters as the kernel sees them."""
    spec = get_spec(name)
    kernel_params = {k: as_param(v, dtype) for k, v in spec.kernel_params(**spec.bind((), params)).items()}
    forward, backward = reference.ORACLE[spec.kernel]
    return (lambda x: forward(x, **kernel_params)), (lambda dy, x: backward(dy, x, **kernel_params))


def check_forward(backend: str, name: str, params: dict, make_x: Callable[[], Any]) -> None:
    """Oracle agreement, result kind, inputs unchanged, out= and in-place, for one input layout."""
    function = getattr(fastact, name)
    x = make_x()
    x_host = to_host(x).copy()
    dtype = x_host.dtype
    oracle, _ = oracle_for(name, params, dtype)
    expected = oracle(x_host)
    before = snapshot(x)
    with fastact.use_backend(backend):
        y = function(x, **params)
        assert isinstance(y, expected_kind(backend)), f"result is {type(y)}"
        assert y.shape == x_host.shape and y.dtype == dtype
        assert_unchanged(before, x, "x")
        assert_close(to_host(y), expected, dtype, get_spec(name).kernel, f"{name}{params} forward")
        out = xp_for(backend).full(x_host.shape, 7, dtype)
        assert function(x, **params, out=out) is out
        assert_same(to_host(out), to_host(y), f"{name} out=")
        x_inplace = make_x()
        assert function(x_inplace, **params, out=x_inplace) is x_inplace
        assert_same(to_host(x_inplace), to_host(y), f"{name} in-place")


def check_backward(backend: str, name: str, params: dict, make_dy: Callable[[], Any], make_x: Callable[[], Any]) -> None:
    """As check_forward, for NAME_backward; in-place into dy and into x."""
    function = getattr(fastact, f"{name}_backward")
    dy, x = make_dy(), make_x()
    dy_host, x_host = to_host(dy).copy(), to_host(x).copy()
    dtype = x_host.dtype
    _, oracle = oracle_for(name, params, dtype)
    expected = oracle(dy_host, x_host)
    before_dy, before_x = snapshot(dy), snapshot(x)
    with fastact.use_backend(backend):
        dx = function(dy, x, **params)
        assert isinstance(dx, expected_kind(backend))
        assert dx.shape == x_host.shape and dx.dtype == dtype
        assert_unchanged(before_dy, dy, "dy")
        assert_unchanged(before_x, x, "x")
        spec = get_spec(name)
        scale = rowwise_dy_scale(dy_host, params.get("axis", -1)) if spec.form == "rowwise" else None
        assert_close(to_host(dx), expected, dtype, spec.kernel, f"{name}{params} backward", scale)
        for target in ("dy", "x"):  # in-place into either input
            dy2, x2 = make_dy(), make_x()
            out = dy2 if target == "dy" else x2
            assert function(dy2, x2, **params, out=out) is out
            assert_same(to_host(out), to_host(dx), f"{name} backward in-place into {target}")


def check_case(backend: str, dtype: np.dtype, layout: str, name: str, params: dict, extra_edges: tuple = ()) -> None:
    """check_forward and check_backward on drawn values (edge values planted) in one layout."""
    shape = LAYOUTS[layout][0]
    x = draw_values(shape, dtype, params, seed=1, extra_edges=extra_edges)
    dy = draw_values(shape, dtype, {}, seed=2, finite=True)
    check_forward(backend, name, params, maker(backend, layout, x))
    check_backward(backend, name, params, maker(backend, layout, dy), maker(backend, layout, x))


def check_large_blocks(cases: list) -> None:
    """Arrays cut into many blocks and shared by the threads give the bits of tiny one-row calls.

    Also a transposed, non-contiguous view, which goes through the N-d block path.
    """
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((700, 1500)) * 4).astype(np.float32)
    x[::97, ::89] = np.nan
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for name, params in cases:
        f, b = getattr(fastact, name), getattr(fastact, f"{name}_backward")
        y, dx = f(x, **params), b(dy, x, **params)
        for r in (0, 1, 350, 699):
            assert_same(y[r], f(x[r], **params), name)
            assert_same(dx[r], b(dy[r], x[r], **params), name)
        assert_same(f(x.T, **params), y.T, name)


def compile_recording(function: Callable) -> tuple[Callable, list]:
    """``torch.compile(function, fullgraph=True)`` with a backend that keeps each graph's code; (compiled, codes).

    (A graph break fails fullgraph; the codes show which ops the graph holds.)
    """
    import torch

    codes: list = []

    def recording_backend(graph_module, example_inputs):
        codes.append(graph_module.code)
        return graph_module.forward

    torch._dynamo.reset()
    return torch.compile(function, fullgraph=True, backend=recording_backend), codes
