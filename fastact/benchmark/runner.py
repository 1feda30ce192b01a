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
from .workloads import ArrayPool, Workload, available_ops, build, check_torch, roofline

SCHEMA = "fastact-bench/1"
DIRECTIONS = ("forward", "backward")
BASELINES = ("naive", "torch", "fastact_new")


@dataclass
class BenchConfig:
    """What to run; the command line fills it in (see :mod:`.cli`)."""

    backend: str = "auto"  # any name fastact.use_backend takes; "auto" is what fastact picks for NumPy arrays
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
            "elementwise activations, PReLU and bias_act's forward write into a preallocated out= (fastact_new: the same "
            "call allocating its result); bias_act's backward and the matmul-based fused calls allocate their results"
        ),
        "naive": "fastact.reference.NAIVE: the expression a user writes; it allocates its result and temporaries",
        "torch": None if torch is None else (
            "like for like (fastact.benchmark.torch_baselines): the ATen kernel PyTorch runs for the op, with fastact's "
            "parameters, writing into a preallocated out= where the kernel has an out= overload (row's torch.mode 'out', "
            "compared with fastact's out= call), else allocating (mode 'alloc', compared with fastact allocating: "
            "fastact_new); sigmoid, tanh, softmax and log_softmax backward read the forward output y where fastact reads x "
            "(same bytes); dense/conv2d: functional graph forward, autograd.grad on a graph built before timing backward; "
            f"torch.set_num_threads({torch.threads}), fastact's thread count; PyTorch's result checked equal to fastact's "
            "within the dtype's tolerance once per op, direction and dtype (row's torch.check), and not timed where it differs"
        ),
        "bytes": "fastact.benchmark.byte_model.bytes_moved: each operand read or written once; GB/s = bytes / median / 1e9",
        "roofline": (
            "forward: copy (np.copyto / cupy.copyto) of the same size; backward: add(dy, x, out=dx) on unsigned-integer "
            "views of the same item size (same bytes as an elementwise backward; integer so that it is memory-bound "
            "for float16/bfloat16 too, which NumPy computes in software); single call, so single-threaded on the host; "
            "roofline_share = fastact GB/s / roofline GB/s"
        ),
        "speedup": (
            "baseline median / fastact median (above 1: fastact is faster); for torch, over the fastact call with "
            "the same output handling (torch.mode)"
        ),
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


def make_row(
    workload: Workload, results: dict[str, Stats | str], roof: tuple[Stats, int] | None, input_sets: int, check: dict | None = None
) -> dict:
    """One result row (see the module docstring); speed-ups are baseline time / fastact time.

    The torch speed-up is over the fastact call handling its output as
    PyTorch's does (``workload.matching``); ``row["torch"]`` says which mode
    that was, what PyTorch ran and the result of the same-function check.
    """
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
    if workload.torch_mode is not None:
        row["torch"] = {"mode": workload.torch_mode, "kernel": workload.torch_kernel, "against": workload.matching, "check": check}
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
    matching = results.get(workload.matching)
    if "torch" in row["baselines"] and isinstance(matching, Stats):
        row["baselines"]["torch"]["speedup"] = results["torch"].median / matching.median
        row["baselines"]["torch"]["mode"] = workload.torch_mode
    return row


def progress_line(index: int, total: int, row: dict) -> str:
    head = f"[{index:>3}/{total}] {row['op']} {row['direction']} {row['dtype']} n={row['size']}"
    if "time_s" not in row:
        return f"{head}: fastact failed: {row['errors'].get('fastact')}"
    parts = [f"{row['time_s']['median'] * 1e3:.3f} ms", f"{row['gbps']:.1f} GB/s"]
    if row.get("roofline_share") is not None:
        parts.append(f"{row['roofline_share']:.0%} of {row['roofline']['name']}")
    parts += [
        f"x{b['speedup']:.2f} vs {name}" + (f" ({b['mode']})" if b.get("mode") else "")
        for name, b in row["baselines"].items()
        if name in BASELINES
    ]
    parts += [f"{name} failed" for name in row["errors"]]
    return f"{head}: " + ", ".join(parts)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Session:
    """The state of one run: device, baselines, the arrays of the current size, the rooflines measured."""

    def __init__(self, config: BenchConfig, progress: Callable[[str], None]) -> None:
        self.config = config
        self.progress = progress
        self.ops = select_ops(config.ops)
        self.device = get_device(config.backend)
        self.backend = machine.fastact_backend(config.backend)
        self.torch = TorchBaseline.load(self.device.name)
        self.torch_threads_before = None if self.torch is None else self.torch.threads
        if self.torch is not None:  # PyTorch gets fastact's thread count (run() restores it at the end)
            self.torch.torch.set_num_threads(self.backend["threads"])
        self.checks: dict[tuple, dict | None] = {}
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

    def check(self, op: str, form: Any, direction: str, dtype: Any) -> dict | None:
        """PyTorch's result against fastact's for (op, direction, dtype), once (see workloads.check_torch)."""
        key = (op, direction, dtype.name)
        if key not in self.checks:
            try:
                self.checks[key] = check_torch(op, form, direction, dtype, self.device, self.torch)
            except Exception as error:  # noqa: BLE001 - a baseline that fails must not end the run
                self.checks[key] = {"ok": False, "reason": f"{type(error).__name__}: {error}"}
        return self.checks[key]

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
                check = self.check(op, form, direction, dtype)
                if check is not None and not check["ok"]:  # different work: not a comparison to time
                    workload.implementations.pop("torch", None)
                roof = self.roofline(workload.roofline, dtype, size)
                results = _measure_all(workload, self.device, self.config.budget)
                if check is not None and not check["ok"]:
                    results["torch"] = f"result differs from fastact's: {check}"
                sets = _input_sets(workload, self.device, self.config.budget)
                self.rows.append(make_row(workload, results, roof, sets, check))
                self.progress(progress_line(len(self.rows), self.total, self.rows[-1]))


def run(config: BenchConfig, progress: Callable[[str], None] = _stderr) -> dict:
    """Run ``config`` and return the result dict; progress lines go to ``progress`` (stderr)."""
    # Taken before running, so that a commit made during a long run is not credited with its numbers.
    started = {"git_commit": machine.git_commit(), "load_average_start": machine.load_average()}
    session = _Session(config, progress)
    try:
        with fastact.use_backend(config.backend):
            for dtype_name in config.dtypes:
                for size in config.sizes:
                    session.run_size(resolve_dtype(dtype_name), size)
        torch_threads = None if session.torch is None else session.torch.threads
    finally:
        if session.torch is not None:
            session.torch.torch.set_num_threads(session.torch_threads_before)
    extra = {
        "fastact_backend": session.backend,
        "fastact_threads": session.backend["threads"],
        "torch_threads": torch_threads,
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
