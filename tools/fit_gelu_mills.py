"""Derive the float32 polynomials of exact gelu on the GPU (cuda/activations.cuh: GaussianTailFloat).

The CUDA kernels compute exact gelu for float32 results from Mills' ratio and
the Gaussian density,

    M(a) = Phi(-a) / phi(a) = t R(u),   t = 1 / (1 + a/2),   u = 2t - 1,
    phi(a) 2^64 = 2^n E(f),   n an integer, f = 64 - a^2 log2(e) / 2 - n in [-1/2, 1/2],

with R and E polynomials (Horner's rule, float FMAs), E(f) = 2^f / sqrt(2 pi).
a = 2 (1 - u) / (1 + u) maps u in (-1, 1] onto a in [0, inf); R is fitted on
u in [U_LOW, 1], a in [0, 15.02], beyond which every result that uses M
underflows (a phi(a) < 2^-150 from a = 14.6 on).  Each fit minimises the
largest relative error: weighted least squares on Chebyshev nodes with
Lawson's reweighting, then the coefficients are rounded to float one at a
time, highest first, each time refitting the rest, so that the lower ones
absorb the rounding.  The script prints the coefficients and the largest
relative error over a dense grid, in exact arithmetic and with float Horner
(FMA, each step rounded).

    python tools/fit_gelu_mills.py      # needs mpmath (a development tool only)
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 30
NODES = 3000
LAWSON_STEPS = 40
MILLS = ("R", 11, -0.765, 1.0)  # name, degree, interval
EXP2 = ("E", 6, -0.50003, 0.50003)  # f's rounding and low part reach 2^-15 beyond +-1/2


def target(name: str, v: float) -> float:
    v = mp.mpf(v)
    if name == "R":  # M(a) / t
        a = 2 * (1 - v) / (1 + v)
        z = a / mp.sqrt(2)
        return float(mp.sqrt(mp.pi / 2) * mp.erfc(z) * mp.exp(z * z) * 2 / (v + 1))
    return float(mp.power(2, v) / mp.sqrt(2 * mp.pi))


def fit(name: str, degree: int, low: float, high: float) -> np.ndarray:
    x = np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES)
    v = ((x * (high - low) + (high + low)) / 2).astype(np.float32).astype(np.float64)  # float arguments
    f = np.array([target(name, w) for w in v])
    fixed: dict[int, float] = {}
    for j in range(degree, -1, -1):
        free = [i for i in range(degree + 1) if i not in fixed]
        basis = v[:, None] ** np.array(free)[None, :]
        rest = f - sum(c * v**i for i, c in fixed.items())
        weights = np.full(v.size, 1.0 / v.size)
        for _ in range(LAWSON_STEPS):
            scale = np.sqrt(weights) / f
            coefficients, *_ = np.linalg.lstsq(basis * scale[:, None], rest * scale, rcond=None)
            error = (basis @ coefficients - rest) / f
            weights *= np.abs(error) + 1e-300
            weights /= weights.sum()
        fixed[j] = float(np.float32(coefficients[free.index(j)]))
    return np.array([fixed[i] for i in range(degree + 1)])


def float_horner(coefficients: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Horner's rule with float FMAs (the product is exact in float64, then one rounding)."""
    c = coefficients.astype(np.float32)
    p = np.full(v.shape, c[-1], np.float32)
    for k in c[-2::-1]:
        p = (p.astype(np.float64) * v + np.float64(k)).astype(np.float32)
    return p.astype(np.float64)


if __name__ == "__main__":
    for name, degree, low, high in (MILLS, EXP2):
        coefficients = fit(name, degree, low, high)
        grid = np.linspace(low, high, 20001).astype(np.float32).astype(np.float64)
        exact = np.array([target(name, w) for w in grid])
        polynomial = np.polynomial.polynomial.polyval(grid, coefficients)
        print(f"{name}, degree {degree} on [{low}, {high}]: relative error "
              f"2^{np.log2(np.abs(polynomial / exact - 1).max()):.2f}, "
              f"with float Horner 2^{np.log2(np.abs(float_horner(coefficients, grid) / exact - 1).max()):.2f}")
        for c in coefficients[::-1]:
            print(f"      {np.float32(c)}f,")
