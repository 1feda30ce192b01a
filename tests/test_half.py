"""float16 <-> float32 by integer arithmetic (fastact/backends/numpy/half.py) against NumPy's own casts, bit for bit."""
from __future__ import annotations

import numpy as np

from fastact.backends.numpy import half
from fastact.backends.numpy.engine import Scratch


def _scratch(shape):
    return Scratch.get(np.dtype(np.float32), shape)


def _same_bits_or_both_nan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    uint = np.uint32 if a.dtype == np.float32 else np.uint16
    return (a.view(uint) == b.view(uint)) | (np.isnan(a) & np.isnan(b))


def test_widen_every_float16():
    values = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    out = np.empty(values.shape, np.float32)
    half.widen(values, out, _scratch(values.shape))
    assert _same_bits_or_both_nan(out, values.astype(np.float32)).all()


def test_widen_strided_view():
    values = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    view = values[::3, ::-2]
    out = np.empty(view.shape, np.float32)
    half.widen(view, out, _scratch(view.shape))
    assert _same_bits_or_both_nan(out, view.astype(np.float32)).all()


def _rounding_cases() -> np.ndarray:
    """Every finite float16 as float32, its float32 neighbours, every midpoint (tie) and its neighbours,
    special values, and random bit patterns."""
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    finite = np.unique(halves[np.isfinite(halves)])
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    up, down = np.float32(np.inf), np.float32(-np.inf)
    random_bits = np.random.default_rng(0).integers(0, 1 << 32, 2_000_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array([np.inf, -np.inf, np.nan, -np.nan, 65504, 65519.996, 65520, 65536, 1e30, -1e30, 0.0, -0.0,
                         2.0**-24, 2.0**-25, 2.0**-26, 1.5 * 2.0**-24, 2.0**-14, np.nextafter(np.float32(2.0**-14), down)], np.float32)
    return np.concatenate([finite, np.nextafter(finite, up), np.nextafter(finite, down), mids,
                           np.nextafter(mids, up), np.nextafter(mids, down), random_bits.view(np.float32), specials])


def test_narrow_rounds_to_nearest_even_like_numpy():
    values = _rounding_cases()
    out = np.empty(values.shape, np.float16)
    half.narrow(values, out, _scratch(values.shape))
    with np.errstate(all="ignore"):
        expected = values.astype(np.float16)
    assert _same_bits_or_both_nan(out, expected).all()


def test_narrow_into_strided_view():
    values = np.linspace(-70000, 70000, 999, dtype=np.float32)
    target = np.zeros(2 * values.size, np.float16)
    half.narrow(values, target[::2], _scratch(values.shape))
    with np.errstate(over="ignore"):  # beyond 65504 rounds to inf, as intended
        expected = values.astype(np.float16)
    assert _same_bits_or_both_nan(target[::2], expected).all()
    assert (target[1::2] == 0).all()
