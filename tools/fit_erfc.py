"""Derive the Chebyshev coefficients of fastact's erfc (numpy_math.ERFC_CHEBYSHEV).

fastact computes, for z >= 0,

    erfc(z) = t * exp(-z*z + f(y)),   t = 2 / (2 + z),   y = 2t - 1 in (-1, 1],

with f(y) = log(erfcx(z) / t) a smooth function on [-1, 1] (the form of
Numerical Recipes, 3rd ed., section 6.2.2).  This script samples f at N
Chebyshev nodes in 40-digit arithmetic (mpmath) and prints its Chebyshev
coefficients; the series converges geometrically, so truncating it gives the
precision wanted (27 terms for float64, 12 for float32: the first dropped
coefficient bounds the relative error of erfc).

    python tools/fit_erfc.py      # needs mpmath (a development tool only)
"""
from __future__ import annotations

import mpmath as mp

mp.mp.dps = 40
NODES = 64
TERMS = 28


def f_of_y(y):
    t = (y + 1) / 2
    if t == 0:  # z -> inf: erfcx(z) ~ 1 / (z sqrt(pi)) and z t -> 2
        return mp.log(1 / (2 * mp.sqrt(mp.pi)))
    z = 2 / t - 2
    return mp.log(mp.erfc(z) * mp.exp(z * z) / t)


def chebyshev_coefficients(n: int = NODES) -> list:
    nodes = [mp.cos(mp.pi * (j + mp.mpf(1) / 2) / n) for j in range(n)]
    values = [f_of_y(y) for y in nodes]
    coefficients = [
        2 * mp.fsum(values[j] * mp.cos(mp.pi * m * (j + mp.mpf(1) / 2) / n) for j in range(n)) / n
        for m in range(n)
    ]
    coefficients[0] /= 2  # so that f(y) = sum c_k T_k(y)
    return coefficients


if __name__ == "__main__":
    for c in chebyshev_coefficients()[:TERMS]:
        print(f"    {mp.nstr(c, 17, min_fixed=0, max_fixed=0)},")
