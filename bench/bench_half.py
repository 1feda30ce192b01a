"""float16 <-> float32 conversion: fastact's integer-arithmetic version against NumPy's own cast.

    python bench/bench_half.py [--size 262144]

Times one engine block (256 Ki elements by default, as the engine uses) each way, best of 5
repeats of 50 calls, and prints microseconds per block.
"""
from __future__ import annotations

import argparse
import os
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from fastact.backends.numpy import half  # noqa: E402
from fastact.backends.numpy.engine import Scratch  # noqa: E402


def best_us(fn, number: int = 50) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1 << 18)
    args = parser.parse_args(argv)
    single = np.random.default_rng(0).standard_normal(args.size).astype(np.float32)
    halves = single.astype(np.float16)
    wide, narrow = np.empty_like(single), np.empty_like(halves)
    scratch = Scratch.get(np.dtype(np.float32), single.shape)
    rows = [
        ("widen  (float16 -> float32)", lambda: half.widen(halves, wide, scratch), lambda: np.copyto(wide, halves)),
        ("narrow (float32 -> float16)", lambda: half.narrow(single, narrow, scratch),
         lambda: np.copyto(narrow, single, casting="unsafe")),
    ]
    print(f"{args.size} elements; numpy {np.__version__}")
    for label, ours, numpys in rows:
        a, b = best_us(ours), best_us(numpys)
        print(f"{label}: fastact {a:7.1f} us   numpy {b:7.1f} us   {b / a:4.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
