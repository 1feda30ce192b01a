"""Run the benchmark: every (dtype, size, direction, op), each implementation, the rooflines.

:func:`run` returns the result as a plain dict (the JSON that is stored):
``machine`` (see :mod:`.machine`), ``config``, ``method`` (how it was
measured, in words) and ``rows``, one per (op, direction, dtype, size).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import fastact

from . import machine
from .devices import MAX_INPUT_SETS, get_device, input_sets_needed, resolve_dtype
from .timing import FULL, Budget, Stats, measure
from .torch_baselines import TorchBaseline
from .workloads import ArrayPool, Workload, available_ops, build, roofline

SCHEMA = "fastact-bench/1"
DIRECTIONS = ("forward", "backward")
BASELINES = ("naive", "torch", "fastact_new")


@dataclass
class BenchConfig:
    """What to run; the command line fills it in (see :mod:`.cli`)."""

    backend: str = "numpy"
    ops: list[str] | None = None  # None: every op available_ops() offers
    dtypes: tuple[str, ...] = ("float32",)
    sizes: tuple[int, ...] = (1 << 14, 1 << 18, 1 << 22, 1 << 25)
    directions: tuple[str, ...] = DIRECTIONS
    budget: Budget = field(default_factory=lambda: FULL)
    note: str = ""

    def as_dict(self, ops: list[str]) -> dict:
        return {
            "backend": self.backend,
            "ops": ops,
            "dtypes": list(self.dtypes),
            "sizes": list(self.sizes),
            "directions": list(self.directions),
            "budget": self.budget.as_dict(),
        }


def select_ops(names: list[str] | None) -> dict:
    """The requested ops (all by default); SystemExit naming the known ones for an unknown name."""
    ops = available_ops()
    if names is None:
        return ops
    unknown = [name for name in names if name not in ops]
    if unknown:
        raise SystemExit(f"unknown op(s) {', '.join(unknown)}; available here: {', '.join(ops)}")
    return {name: ops[name] for name in names}


def method(device: Any, torch: TorchBaseline | None) -> dict:
    """How the numbers were measured, stored with them."""
    return {
        "timer": device.timer,
        "statistic": "median seconds per call with the 20th and 80th percentiles; GC paused while timing",
        "warm_up": "at least 3 calls and warmup_seconds on the first input set before timing (thread pools, kernel compilation); inputs are written when made, so their pages are mapped",
        "input_sets": (
            "calls rotate through enough input sets that one pass covers twice the largest cache "
            f"({device.cache_bytes} bytes here), at most 1024 sets and no more than the calls timed, "
            "so operands come from memory, not cache"
        ),
        "fastact": (
            "elementwise activations and PReLU write into a preallocated out= (fastact_new: the same call allocating "
            "its result); the fused calls allocate their results, forward and backward alike"
        ),
        "naive": "fastact.reference.NAIVE: the expression a user writes; it allocates its result and temporaries",
        "torch": None if torch is None else "PyTorch's functional op (allocates); backward = autograd.grad on a graph built before timing",
        "bytes": "fastact.benchmark.byte_model.bytes_moved: each operand read or written once; GB/s = bytes / median / 1e9",
        "roofline": (
            "forward: copy (np.copyto / cupy.copyto) of the same size; backward: add(dy, x, out=dx) on unsigned-integer "
            "views of the same item size (same bytes as an elementwise backward; integer so that it is memory-bound "
            "for float16/bfloat16 too, which NumPy computes in software); single call, so single-threaded on the host; "
            "roofline_share = fastact GB/s / roofline GB/s"
        ),
        "speedup": "baseline median / fastact median (above 1: fastact is faster)",
    }


def _input_sets(workload: Workload, device: Any, budget: Budget) -> int:
    """Input sets to rotate through; no more than a fixed repetition count would use."""
    return min(input_sets_needed(workload.nbytes, device.cache_bytes), budget.reps or MAX_INPUT_SETS)


def _measure_all(workload: Workload, device: Any, budget: Budget) -> dict[str, Stats | str]:
    """Each implementation's Stats, or the error it raised (a baseline that fails must not end the run)."""
    arg_sets = [workload.make_args(i) for i in range(_input_sets(workload, device, budget))]
    results: dict[str, Stats | str] = {}
    for name, call in workload.implementations.items():
        try:
            # Naive expressions overflow in exp for float16 inputs: IEEE results, not news worth a warning per call.
            with np.errstate(all="ignore"):
                results[name] = measure(device, call, arg_sets, budget, workload.prepare.get(name))
        except Exception as error:  # noqa: BLE001 - recorded in the row, reported on stderr
            results[name] = f"{type(error).__name__}: {error}"
    return results


def _rate(amount: int | None, stats: Stats) -> float | None:
    return None if amount is None else amount / stats.median / 1e9


def make_row(workload: Workload, results: dict[str, Stats | str], roof: tuple[Stats, int] | None, input_sets: int) -> dict:
    """One result row (see the module docstring); speed-ups are baseline time / fastact time."""
    row = {
        "op": workload.op,
        "direction": workload.direction,
        "dtype": workload.dtype.name,
        "size": workload.size,
        "shapes": {name: list(shape) for name, shape in workload.shapes.items()},
        "bytes": workload.nbytes,
        "flops": workload.flops,
        "input_sets": input_sets,
        "errors": {name: r for name, r in results.items() if isinstance(r, str)},
        "baselines": {},
    }
    own = results.get("fastact")
    if not isinstance(own, Stats):
        return row
    row.update(time_s=own.as_dict(), gbps=_rate(workload.nbytes, own), gflops=_rate(workload.flops, own))
    if roof is not None:
        stats, nbytes = roof
        row["roofline"] = {"name": workload.roofline, "bytes": nbytes, "time_s": stats.as_dict(), "gbps": _rate(nbytes, stats)}
        row["roofline_share"] = row["gbps"] / row["roofline"]["gbps"]
        results = {**results, workload.roofline: stats}
    for name in (*BASELINES, workload.roofline):
        stats = results.get(name)
        if isinstance(stats, Stats):
            row["baselines"][name] = {"time_s": stats.as_dict(), "speedup": stats.median / own.median}
    return row


def progress_line(index: int, total: int, row: dict) -> str:
    head = f"[{index:>3}/{total}] {row['op']} {row['direction']} {row['dtype']} n={row['size']}"
    if "time_s" not in row:
        return f"{head}: fastact failed: {row['errors'].get('fastact')}"
    parts = [f"{row['time_s']['median'] * 1e3:.3f} ms", f"{row['gbps']:.1f} GB/s"]
    if row.get("roofline_share") is not None:
        parts.append(f"{row['roofline_share']:.0%} of {row['roofline']['name']}")
    parts += [f"x{b['speedup']:.2f} vs {name}" for name, b in row["baselines"].items() if name in BASELINES]
    parts += [f"{name} failed" for name in row["errors"]]
    return f"{head}: " + ", ".join(parts)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Session:
    """The state of one run: device, baselines, the arrays of the current size, the rooflines measured."""

    def __init__(self, config: BenchConfig, progress: Callable[[str], None]) -> None:
        self.config = config
        self.progress = progress
        self.device = get_device(config.backend)
        self.torch = TorchBaseline.load(self.device.name)
        self.ops = select_ops(config.ops)
        self.pool = ArrayPool(self.device)
        self.rooflines: dict[str, tuple[Stats, int] | None] = {}
        self.rows: list[dict] = []
        self.total = len(self.ops) * len(config.dtypes) * len(config.sizes) * len(config.directions)

    def roofline(self, kind: str | None, dtype: Any, size: int) -> tuple[Stats, int] | None:
        """The roofline's (Stats, bytes) at this size, measured once per (dtype, size)."""
        if kind is None:
            return None
        if kind not in self.rooflines:
            workload = roofline(kind, dtype, size, self.pool)
            stats = _measure_all(workload, self.device, self.config.budget)[kind]
            self.rooflines[kind] = (stats, workload.nbytes) if isinstance(stats, Stats) else None
        return self.rooflines[kind]

    def run_size(self, dtype: Any, size: int) -> None:
        self.pool.clear()  # one (dtype, size) in memory at a time
        self.rooflines.clear()
        for direction in self.config.directions:
            for op, form in self.ops.items():
                workload = build(op, form, direction, dtype, size, self.pool, self.torch)
                if workload is None:
                    self.total -= 1
                    self.progress(f"skip {op} {direction} n={size}: the size does not fit its shapes")
                    continue
                roof = self.roofline(workload.roofline, dtype, size)
                results = _measure_all(workload, self.device, self.config.budget)
                sets = _input_sets(workload, self.device, self.config.budget)
                self.rows.append(make_row(workload, results, roof, sets))
                self.progress(progress_line(len(self.rows), self.total, self.rows[-1]))


def run(config: BenchConfig, progress: Callable[[str], None] = _stderr) -> dict:
    """Run ``config`` and return the result dict; progress lines go to ``progress`` (stderr)."""
    # Taken before running, so that a commit made during a long run is not credited with its numbers.
    started = {"git_commit": machine.git_commit(), "load_average_start": machine.load_average()}
    session = _Session(config, progress)
    with fastact.use_backend(config.backend):
        for dtype_name in config.dtypes:
            for size in config.sizes:
                session.run_size(resolve_dtype(dtype_name), size)
    extra = {
        "fastact_backend": fastact.backends.load(config.backend).describe(),
        "torch_threads": session.torch.torch.get_num_threads() if session.torch else None,
        "note": config.note,
        **started,
        "load_average_end": machine.load_average(),
    }
    return {
        "schema": SCHEMA,
        "machine": machine.metadata(session.device.describe(), extra),
        "config": config.as_dict(list(session.ops)),
        "method": method(session.device, session.torch),
        "rows": session.rows,
    }
