"""Time the wider family (SPEC 2.3) against the naive NumPy expressions, NumPy backend.

Prints, for each activation, forward and backward, the best of a few runs on
2**24 float32 values (normal * 3) and the speed-up over the naive baseline of
``fastact.reference.NAIVE``.  A quick check while working on the math; the
benchmark report proper is ``python -m fastact bench``.

    python bench/time_family.py [--size 16777216] [--repeat 3] [--dtype float32] [NAME ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastact
from fastact.reference import NAIVE

CASES = [
    ("elu", {}), ("selu", {}), ("gelu", {}), ("gelu", {"approximate": True}), ("silu", {}),
    ("softplus", {}), ("sigmoid", {}), ("tanh", {}), ("hard_sigmoid", {}), ("hard_silu", {}),
    ("mish", {}), ("softmax", {}), ("log_softmax", {}), ("linear", {}),
]


def best_time(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="activations to time (default: all)")
    parser.add_argument("--size", type=int, default=1 << 24)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # Softmax rows of 1024 (a typical vocabulary slice); the rest sees a flat array.
    x = (rng.standard_normal(args.size) * 3).astype(args.dtype).reshape(-1, 1024)
    dy = rng.standard_normal(x.shape).astype(args.dtype)
    out = np.empty_like(x)
    print(f"{args.size} {args.dtype} values, numpy {np.__version__}, best of {args.repeat} (ms)")
    print(f"{'activation':<24}{'fastact':>10}{'naive':>10}{'speed-up':>10}   {'backward':>10}{'naive':>10}{'speed-up':>10}")
    for name, params in CASES:
        if args.names and name not in args.names:
            continue
        naive_forward, naive_backward = NAIVE[name]
        forward, backward = getattr(fastact, name), getattr(fastact, f"{name}_backward")
        with np.errstate(all="ignore"):
            times = [
                best_time(lambda: forward(x, **params, out=out), args.repeat),
                best_time(lambda: naive_forward(x, **params), args.repeat),
                best_time(lambda: backward(dy, x, **params, out=out), args.repeat),
                best_time(lambda: naive_backward(dy, x, **params), args.repeat),
            ]
        ms = [1e3 * t for t in times]
        label = name + ("".join(f" {k}={v}" for k, v in params.items()))
        print(
            f"{label:<24}{ms[0]:>10.1f}{ms[1]:>10.1f}{ms[1] / ms[0]:>9.1f}x   "
            f"{ms[2]:>10.1f}{ms[3]:>10.1f}{ms[3] / ms[2]:>9.1f}x"
        )


if __name__ == "__main__":
    main()
