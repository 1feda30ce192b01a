"""The NumPy backend against the memory system (issue 2's targets), in one run.

For 2**25 float32 elements (128 MiB per array) it measures, with preallocated
outputs and the median of repeated runs:

* ``np.copyto(y, x)``           — the copy roofline for a forward (read 1, write 1 array)
* ``np.add(a, b, out=c)``       — the same-bytes roofline for a backward (read 2, write 1)
* fastact forward/backward with ``out=``, for every ReLU-family case
* the naive expression a user would write (``fastact.reference.NAIVE``)

and prints the ratios the issue sets targets for: forward <= 1.3x copy,
backward <= 1.3x add, >= 3x faster than naive.  Each ratio is the median of
per-pair ratios, the op and its roofline timed in alternation (see
``paired_ratio``: this VM's bandwidth drifts between seconds; the timer is
``fastact.benchmark.timing.interleaved``, the one ``bench/bench_vs_torch.py``
uses).  ``--threads 1`` runs the engine single-threaded (to check that the
thread pool earns its keep) and ``--block`` sets its block size.

    python bench/bench_numpy_engine.py [--size 33554432] [--repeat 9] [--threads N] [--block N] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout


def _budget(repeat: int):
    from fastact.benchmark.timing import Budget

    return Budget(seconds=0, min_reps=repeat, max_reps=repeat, warmup_seconds=0, reps=repeat)


def paired_ratio(fn, roofline, repeat: int) -> tuple[float, float, float]:
    """Median over ``repeat`` rounds of time(fn) / time(roofline), the two timed back to back.

    This VM's memory bandwidth drifts by 20-30% between seconds (other tenants
    of the host), so a ratio of two medians taken at different moments is
    noisy; timing the roofline right beside the op each time cancels the drift.
    Returns (median ratio, median fn seconds, median roofline seconds).
    """
    from fastact.benchmark.timing import interleaved

    timed = interleaved({"op": lambda r: fn(), "roofline": lambda r: roofline()}, _budget(repeat))
    return timed.ratio("op", "roofline")["median"], timed.stats("op").median, timed.stats("roofline").median


def median_time(fn, repeat: int) -> tuple[float, float, float]:
    """(median, p20, p80) seconds of ``fn()`` after warm-up."""
    from fastact.benchmark.timing import interleaved

    stats = interleaved({"fn": lambda r: fn()}, _budget(repeat)).stats("fn")
    return stats.median, stats.p20, stats.p80


CASES = [
    ("relu", {}, {}),
    ("leaky_relu", {"alpha": 0.2}, {"alpha": 0.2}),
    ("relu6", {}, {}),
    ("thresholded_relu", {"theta": 1.0}, {"theta": 1.0}),
    ("relu", {"alpha": 0.1, "max_value": 6.0, "threshold": -0.5}, None),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1 << 25)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="engine threads (default: FASTACT_NUM_THREADS or all cores)")
    parser.add_argument("--block", type=int, default=None, help="engine block size in elements")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        os.environ["FASTACT_NUM_THREADS"] = str(args.threads)
    if args.block is not None:
        os.environ["FASTACT_BLOCK_ELEMENTS"] = str(args.block)

    import fastact
    from fastact import reference
    from fastact.benchmark import machine

    engine = machine.fastact_backend("numpy")  # the engine's threads and block size, through the public API

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(args.size) * 3).astype(np.float32)
    dy = rng.standard_normal(args.size).astype(np.float32)
    out = np.empty_like(x)
    copy = median_time(lambda: np.copyto(out, x), args.repeat)
    add = median_time(lambda: np.add(dy, x, out=out), args.repeat)
    mib = x.nbytes / 2**20
    print(f"machine: {machine.cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__}")
    print(f"engine: {engine['threads']} threads, blocks of {engine.get('block_elements')} elements")
    print(f"size: {args.size} float32 ({mib:.0f} MiB per array); median of {args.repeat}")
    print(f"np.copyto        {copy[0] * 1e3:8.2f} ms  {2 * x.nbytes / copy[0] / 1e9:6.1f} GB/s")
    print(f"np.add(out=)     {add[0] * 1e3:8.2f} ms  {3 * x.nbytes / add[0] / 1e9:6.1f} GB/s")
    rows = []
    with fastact.use_backend("numpy"):
        for name, params, naive_params in CASES:
            forward = getattr(fastact, name)
            backward = getattr(fastact, f"{name}_backward")
            fwd = paired_ratio(lambda: forward(x, **params, out=out), lambda: np.copyto(out, x), args.repeat)
            bwd = paired_ratio(lambda: backward(dy, x, **params, out=out), lambda: np.add(dy, x, out=out), args.repeat)
            row = {
                "op": name,
                "params": params,
                "forward_ms": fwd[1] * 1e3,
                "backward_ms": bwd[1] * 1e3,
                "forward_over_copy": fwd[0],
                "backward_over_add": bwd[0],
            }
            if naive_params is not None:
                naive_forward, naive_backward = reference.NAIVE[name]
                row["naive_forward_speedup"] = median_time(lambda: naive_forward(x, **naive_params), 3)[0] / fwd[1]
                row["naive_backward_speedup"] = median_time(lambda: naive_backward(dy, x, **naive_params), 3)[0] / bwd[1]
            rows.append(row)
            label = f"{name}{params if params else ''}"
            naive = (
                f"  naive/fastact fwd {row['naive_forward_speedup']:5.1f}x bwd {row['naive_backward_speedup']:5.1f}x"
                if "naive_forward_speedup" in row
                else ""
            )
            print(
                f"{label:58s} fwd {row['forward_ms']:7.2f} ms = {row['forward_over_copy']:4.2f}x copy   "
                f"bwd {row['backward_ms']:7.2f} ms = {row['backward_over_add']:4.2f}x add{naive}"
            )
    if args.json:
        meta = {
            "machine": machine.cpu_model(),
            "cores": os.cpu_count(),
            "numpy": np.__version__,
            "threads": engine["threads"],
            "block_elements": engine.get("block_elements"),
            "size": args.size,
            "copy_ms": copy[0] * 1e3,
            "add_ms": add[0] * 1e3,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
