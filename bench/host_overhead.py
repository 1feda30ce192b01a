"""The host (Python) cost of a fastact call on a small CuPy array, measured on this CPU without a GPU.

    python bench/host_overhead.py [--calls 2000] [--json FILE]

Runs fastact's real ``cuda`` backend and dispatcher on the null device of
``bench/null_cuda.py``: real ``cupy.ndarray`` objects over host memory,
CuPy's kernel launch replaced by a no-op (as are its memory pool, conversion
kernels and GEMMs, each standing in for a driver call).  What is timed is
therefore what fastact does in Python between the user's call and CuPy's
launch: validation, dispatch, the launch plan, packing the parameters,
finding the kernel.  CuPy's own launch (argument packing and
``cuLaunchKernel``, a few microseconds) and its allocator come on top, on
the GPU machine's CPU; the last row times CuPy's ndarray constructor alone
(what ``cupy.empty`` costs before its memory pool) for scale.

Each row calls one op on one small array (4096 elements; NCHW (4, 16, 8, 8)
for the per-channel ops) as a user writes it (``y = fastact.relu(x)``; the
null device's allocator hands out one array per shape and dtype, so the
result's allocation is not counted, like the launch), once per timed
interval, after warm-up calls that compile (here: name) the kernels and
fill the caches.  ``per_call_us`` is the median
over ``--calls`` timed calls (default 2000, in 10 rounds with the rows
interleaved) less the median of timing an empty call the same way;
``p90_us`` the 90th percentile likewise.  The machine is shared and noisy:
compare rows of one run, not runs.

Output: a table on stdout and, with ``--json``, ``{"rows": [{"op", "per_call_us",
"p90_us", "dtype", "shape"}, ...], "machine": ..., "method": ...}``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's fastact
sys.path.insert(0, str(HERE))

import cupy  # noqa: E402
import numpy as np  # noqa: E402

import fastact  # noqa: E402
import null_cuda  # noqa: E402

SHAPE = (32, 128)
NCHW = (4, 16, 8, 8)
DENSE = ((32, 64), (64, 32))  # x, w
CONV = ((2, 8, 8, 8), (8, 8, 3, 3))  # x, w: "same" 3x3
REFERENCE = "(reference, not fastact) cupy.ndarray constructor"


def workloads() -> list[tuple[str, str, tuple, Callable[[], object]]]:
    """(op, dtype, shape, call) rows: each op family once, as a user calls it."""
    a = null_cuda.array
    x, dy = a(SHAPE, "float32"), a(SHAPE, "float32")
    h, dh = a(SHAPE, "float16"), a(SHAPE, "float16")
    c, dc = a(NCHW, "float32"), a(NCHW, "float32")
    slopes, bias = a((NCHW[1], 1, 1), "float32"), a((NCHW[1],), "float32")
    dense_x, dense_w, dense_b = a(DENSE[0], "float32"), a(DENSE[1], "float32"), a((DENSE[1][1],), "float32")
    conv_x, conv_w, conv_b = a(CONV[0], "float32"), a(CONV[1], "float32"), a((CONV[1][0],), "float32")
    y = a(SHAPE, "float32")
    return [
        ("relu", "float32", SHAPE, lambda: fastact.relu(x)),
        ("relu out=", "float32", SHAPE, lambda: fastact.relu(x, out=y)),
        ("relu_backward", "float32", SHAPE, lambda: fastact.relu_backward(dy, x)),
        ("leaky_relu alpha=0.1", "float32", SHAPE, lambda: fastact.leaky_relu(x, 0.1)),
        ("leaky_relu_backward alpha=0.1", "float32", SHAPE, lambda: fastact.leaky_relu_backward(dy, x, 0.1)),
        ("gelu approximate", "float16", SHAPE, lambda: fastact.gelu(h, approximate=True)),
        ("silu_backward", "float16", SHAPE, lambda: fastact.silu_backward(dh, h)),
        ("softmax", "float32", SHAPE, lambda: fastact.softmax(x)),
        ("softmax_backward", "float32", SHAPE, lambda: fastact.softmax_backward(dy, x)),
        ("prelu per-channel", "float32", NCHW, lambda: fastact.prelu(c, slopes)),
        ("prelu_backward per-channel", "float32", NCHW, lambda: fastact.prelu_backward(dc, c, slopes)),
        ("bias_act relu", "float32", NCHW, lambda: fastact.bias_act(c, bias, "relu")),
        ("bias_act_backward relu", "float32", NCHW, lambda: fastact.bias_act_backward(dc, c, bias, "relu")),
        ("dense_bias_act relu", "float32", DENSE[0], lambda: fastact.dense_bias_act(dense_x, dense_w, dense_b, "relu")),
        ("conv2d_bias_act relu", "float32", CONV[0],
         lambda: fastact.conv2d_bias_act(conv_x, conv_w, conv_b, "relu", padding="same")),
        # Not fastact: CuPy's ndarray constructor, which every allocating call
        # (cupy.empty) adds on a GPU, and which the null device's allocator skips.
        (REFERENCE, "float32", SHAPE, lambda: cupy.ndarray(SHAPE, x.dtype, memptr=x.data)),
    ]


def time_calls(call: Callable[[], object], calls: int) -> np.ndarray:
    """Nanoseconds of each of ``calls`` calls, one perf_counter_ns interval each."""
    clock = time.perf_counter_ns
    times = np.empty(calls, np.int64)
    for i in range(calls):
        start = clock()
        call()
        times[i] = clock() - start
    return times


def measure(calls: int, rounds: int = 10, warmup: int = 50) -> list[dict]:
    """Each row's calls in ``rounds`` rounds, the rows interleaved, so that load from other processes
    on the machine falls on every row alike."""
    rows = workloads()
    for _, _, _, call in rows:
        for _ in range(warmup):
            call()
    per_round = -(-calls // rounds)
    times: list[list] = [[] for _ in rows]
    empty: list = []
    for _ in range(rounds):
        gc.collect()
        empty.append(time_calls(lambda: None, per_round))
        for i, (_, _, _, call) in enumerate(rows):
            times[i].append(time_calls(call, per_round))
    empty_all = np.concatenate(empty)
    base, base_p90 = np.median(empty_all), np.percentile(empty_all, 90)
    result = []
    for (op, dtype, shape, _), row_times in zip(rows, times):
        t = np.concatenate(row_times)
        result.append({
            "op": op, "dtype": dtype, "shape": list(shape), "calls": int(t.size),
            "per_call_us": round(float(np.median(t) - base) / 1e3, 2),
            "p90_us": round(float(np.percentile(t, 90) - base_p90) / 1e3, 2),
        })
    return result


def compare(before: dict, after: dict) -> str:
    """Two results as one Markdown table: per-call microseconds and their ratio."""
    old = {row["op"]: row for row in before["rows"]}
    lines = [f"before: {before.get('label', '')} ({before['machine']['date']}, load {before['machine']['load_average'][0]:.1f}); "
             f"after: {after.get('label', '')} ({after['machine']['date']}, load {after['machine']['load_average'][0]:.1f})",
             "", "| op | dtype | before (us) | after (us) | before / after |", "|---|---|---|---|---|"]
    for row in after["rows"]:
        was = old.get(row["op"])
        ratio = f"{was['per_call_us'] / row['per_call_us']:.1f}x" if was and row["per_call_us"] > 0 else ""
        lines.append(f"| {row['op']} | {row['dtype']} | {was['per_call_us'] if was else ''} | {row['per_call_us']} | {ratio} |")
    return "\n".join(lines) + "\n"


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cupy

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "cupy": cupy.__version__, "fastact_commit": commit, "load_average": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per row (default 2000; at least 1000)")
    parser.add_argument("--json", metavar="FILE", help="write the rows (and the machine) as JSON")
    parser.add_argument("--label", default="", help="a remark stored with the result (e.g. which code it measured)")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="measure nothing: print a Markdown table of two stored results, row by row")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(*(json.loads(Path(f).read_text()) for f in args.compare)))
        return 0
    if args.calls < 1000 and args.json:
        parser.error("--json results need --calls of at least 1000")
    with null_cuda.installed():
        rows = measure(args.calls)
    width = max(len(r["op"]) for r in rows)
    print(f"{'op':<{width}}  dtype     per call (us)  p90 (us)")
    for r in rows:
        print(f"{r['op']:<{width}}  {r['dtype']:<8}  {r['per_call_us']:>13.2f}  {r['p90_us']:>8.2f}")
    if args.json:
        result = {"rows": rows, "machine": machine(), "calls": args.calls, "label": args.label,
                  "method": "bench/host_overhead.py: fastact's cuda backend on bench/null_cuda.py (CuPy arrays over "
                            "host memory, launches, allocation pool and driver calls replaced); median of "
                            "per-call perf_counter_ns intervals less an empty call's median"}
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
