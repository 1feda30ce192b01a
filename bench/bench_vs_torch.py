"""fastact against PyTorch CPU, like for like: the benchmark that judges a host backend's targets.

    python bench/bench_vs_torch.py [--backend NAME] [--quick] [--ops OP ...] [--json FILE] [--markdown FILE]

Four sections, every number a ratio **fastact time / PyTorch time: at most 1.00 means fastact
is at least as fast** (for the roofline section, op time / copy or add time):

1. *Ratios.*  Every elementwise activation in the registry PyTorch has (relu, leaky_relu, relu6,
   thresholded_relu, elu, selu, gelu exact and ``gelu_tanh``, silu, softplus, sigmoid, tanh,
   hard_sigmoid, hard_silu, mish, softmax and log_softmax along rows of 1024), PReLU with one slope
   per channel and ``prelu_scalar``, and bias_act (relu), forward and backward, in float32,
   bfloat16 and float16, at 2**16, 2**20 and 2**24 elements.
2. *Against the memory system.*  The memory-bound ops (ReLU family, PReLU, bias_act) at 2**25
   float32: forward / ``np.copyto(dst, src)`` and backward / ``np.add(a, b, out=c)`` (on integer
   views: the same bytes), each op timed in alternation with its roofline.  PyTorch's own ratios
   are shown beside them.
3. *Small calls.*  1 Ki float32 elements, forward, both sides allocating as a user calls them:
   ``fastact.relu(x)`` against ``torch.nn.functional.relu(t)`` and so on: per-call overhead.
4. *conv2d_bias_act* on ``python -m fastact bench``'s shape ((N, 16, 32, 32) NCHW, 16 -> 16
   channels, 3x3, "same", relu; N = 2048 at 2**25 elements): against ``F.conv2d`` + ``F.relu``
   forward and ``torch.autograd.grad`` of that graph (dx, dw, db; graph built before timing)
   backward, both allocating.

Method:

* *Like for like* (``fastact/benchmark/torch_baselines.py``): PyTorch runs the ATen kernel
  ``torch.nn.functional`` or autograd runs for the op, with fastact's parameters.  Where that
  kernel has an ``out=`` overload both sides write into a preallocated output (mode ``out``);
  where it has none (prelu forward and backward, mish backward), or fastact's call takes no
  ``out=`` (bias_act backward, conv2d), both sides allocate (mode ``alloc``).  sigmoid, tanh,
  softmax and log_softmax backward kernels read the forward output y where fastact reads x (y is
  computed before timing): both read two arrays and write one.
* *Same function*: before timing, each (op, direction, dtype) runs once on 2**14 elements on
  both sides and the results must agree within the dtype's tolerance (relative to the array's
  largest value: 1e-5 float32, 4e-3 float16, 3e-2 bfloat16; in float32 that tells leaky_relu(0.2)
  from leaky_relu(0.1) and exact gelu from its tanh form).  A row that differs is reported as
  ``differs``, not timed, and the script exits with status 1.
* *Same threads*: ``torch.set_num_threads`` is set to fastact's thread count (the backend's
  ``describe()["threads"]``, else FASTACT_NUM_THREADS, else the usable cores, at most 8).
* *Interleaved*: ``fastact.benchmark.timing.interleaved`` times fastact and PyTorch in alternating
  rounds (each round times both, the order alternating), after warm-up, with GC paused; a ratio is
  the median over rounds of the per-round ratio, which cancels the drift of a shared machine's
  memory bandwidth; in brackets, the ratio of the two best times.  Before each timed call, untimed
  calls of the same side run for 2 ms (none where one call takes longer): PyTorch's OpenMP
  workers spin-wait after a call, and a thread pool spinning beside the other side's timed call
  would take a core from it; so each side is timed in its own steady state.  Inputs rotate through enough
  sets that a pass covers twice the last-level cache, the two sides half a rotation apart, so
  operands come from memory at every size, as in ``python -m fastact bench``.
* ``--quick``: 2**16 only, the roofline at 2**22 and conv at 2**18, a few rounds: a smoke run,
  not figures to quote.

The output records the machine: CPU model and ISA flags from /proc/cpuinfo, cores, NumPy and
PyTorch versions, the fastact backend (``--backend``; default ``auto``: what fastact picks for
NumPy arrays) and its thread count, the git commit and the date.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

import fastact  # noqa: E402
from fastact.benchmark import machine  # noqa: E402
from fastact.benchmark.cli import parse_size  # noqa: E402
from fastact.benchmark.devices import MAX_INPUT_SETS, HostDevice, input_sets_needed, resolve_dtype  # noqa: E402
from fastact.benchmark.report import format_size  # noqa: E402
from fastact.benchmark.timing import Budget, interleaved, rotating  # noqa: E402
from fastact.benchmark.torch_baselines import NO_OUT_OVERLOAD, TorchBaseline, compare  # noqa: E402
from fastact.benchmark.workloads import CONV, ArrayPool, Form, build, check_torch, ops_with_variants  # noqa: E402

SCHEMA = "fastact-vs-torch/1"
SECTIONS = ("ratio", "roofline", "overhead", "conv")
DTYPES = ("float32", "bfloat16", "float16")
SIZES = (1 << 16, 1 << 20, 1 << 24)
QUICK_SIZES = (1 << 16,)
ROOFLINE_SIZE, QUICK_ROOFLINE_SIZE = 1 << 25, 1 << 22
CONV_SIZE, QUICK_CONV_SIZE = 1 << 25, 1 << 18
OVERHEAD_SIZE = 1024
OVERHEAD_CALLS = 20  # calls per timed sample in the small-call section (one call is a few microseconds)
# Untimed calls of the same side for this long before each timed sample (see timing.interleaved):
# PyTorch's OpenMP workers spin-wait after each call and would take a core from a fastact call
# timed right after it (and a spinning fastact pool from PyTorch's).
SETTLE_SECONDS = 0.002
MEMORY_BOUND = ("relu", "leaky_relu", "relu6", "thresholded_relu", "prelu", "prelu_scalar", "bias_act")
CONV_OP = "conv2d_bias_act"
FULL_BUDGET = Budget(seconds=1.0, min_reps=9, max_reps=2000, warmup_seconds=0.1)
QUICK_BUDGET = Budget(seconds=0.02, min_reps=3, max_reps=30, warmup_seconds=0.0)
DIRECTIONS = ("forward", "backward")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ratio_ops() -> dict[str, Form]:
    """Section 1's ops: the elementwise and row-wise activations, PReLU (both kinds of alpha) and bias_act."""
    return {name: form for name, form in ops_with_variants().items() if form.form in ("elementwise", "prelu", "bias_act")}


class Bench:
    """One run: the device, PyTorch at fastact's thread count, the budget, the rows of each section."""

    def __init__(self, args: argparse.Namespace, progress: Callable[[str], None] = _stderr) -> None:
        self.args = args
        self.progress = progress
        self.device = HostDevice()
        self.backend = machine.fastact_backend(args.backend)
        self.torch = TorchBaseline.load("numpy")
        if self.torch is None:
            raise SystemExit("bench_vs_torch needs PyTorch (pip install torch)")
        self.torch_threads_before = self.torch.threads
        self.torch.torch.set_num_threads(self.backend["threads"])
        self.budget = QUICK_BUDGET if args.quick else FULL_BUDGET
        if args.reps is not None:
            self.budget = Budget(seconds=0, min_reps=args.reps, max_reps=args.reps, warmup_seconds=0, reps=args.reps)
        known = {**ratio_ops(), CONV_OP: CONV}
        unknown = [name for name in args.ops or () if name not in known]
        if unknown:
            raise SystemExit(f"unknown op(s) {', '.join(unknown)}; known: {', '.join(known)}")
        self.ops = {name: form for name, form in ratio_ops().items() if args.ops is None or name in args.ops}
        self.conv = args.ops is None or CONV_OP in args.ops
        self.checks: dict[tuple, dict | None] = {}
        self.failures: list[dict] = []
        self.skipped: list[str] = []

    # ------------------------------------------------------------------ #
    def check(self, op: str, form: Form, direction: str, dtype: np.dtype) -> dict | None:
        key = (op, direction, dtype.name)
        if key not in self.checks:
            try:
                self.checks[key] = check_torch(op, form, direction, dtype, self.device, self.torch)
            except Exception as error:  # noqa: BLE001 - reported as a failure, the run goes on
                self.checks[key] = {"ok": False, "reason": f"{type(error).__name__}: {error}"}
            result = self.checks[key]
            if result is not None and not result["ok"]:
                self.failures.append({"op": op, "direction": direction, "dtype": dtype.name, **result})
                self.progress(f"DIFFERS: {op} {direction} {dtype.name}: {result}")
        return self.checks[key]

    def _sets(self, workload: Any) -> list[dict]:
        sets = min(input_sets_needed(workload.nbytes, self.device.cache_bytes), self.budget.reps or MAX_INPUT_SETS)
        arg_sets = [workload.make_args(i) for i in range(max(1, sets))]
        for args in arg_sets:
            for prepare in workload.prepare.values():
                prepare(args)
        return arg_sets

    def time_pair(self, workload: Any, ours: str, extra: dict[str, Callable] | None = None) -> tuple[Any, int]:
        """Interleaved fastact (implementation ``ours``) / PyTorch, plus ``extra`` round -> call entries."""
        arg_sets = self._sets(workload)
        half = len(arg_sets) // 2
        calls = {
            "fastact": rotating(workload.implementations[ours], arg_sets, 0),
            "torch": rotating(workload.implementations["torch"], arg_sets, half),
            **(extra or {}),
        }
        with np.errstate(all="ignore"):
            return interleaved(calls, self.budget, settle_seconds=SETTLE_SECONDS), len(arg_sets)

    # ------------------------------------------------------------------ #
    def ratio_rows(self) -> list[dict]:
        rows = []
        sizes = self.args.sizes or (QUICK_SIZES if self.args.quick else SIZES)
        pool = ArrayPool(self.device)
        for dtype_name in self.args.dtypes or DTYPES:
            dtype = resolve_dtype(dtype_name)
            for size in sizes:
                pool.clear()
                for direction in DIRECTIONS:
                    for op, form in self.ops.items():
                        row = self.ratio_row(op, form, direction, dtype, size, pool)
                        if row is not None:
                            rows.append(row)
        return rows

    def ratio_row(self, op: str, form: Form, direction: str, dtype: np.dtype, size: int, pool: ArrayPool) -> dict | None:
        workload = build(op, form, direction, dtype, size, pool, self.torch)
        if workload is None or "torch" not in workload.implementations:
            note = f"{op} {direction}: " + ("no PyTorch counterpart" if workload is not None else f"size {size} does not fit")
            if note not in self.skipped:
                self.skipped.append(note)
            return None
        row = {"op": op, "direction": direction, "dtype": dtype.name, "size": size, "mode": workload.torch_mode,
               "fastact_call": workload.matching, "torch_kernel": workload.torch_kernel}
        row["check"] = self.check(op, form, direction, dtype)
        if row["check"] is not None and not row["check"]["ok"]:
            row["error"] = "differs"
            return row
        timed, sets = self.time_pair(workload, workload.matching)
        row.update(
            rounds=timed.rounds, input_sets=sets,
            fastact_s=timed.stats("fastact").as_dict() | {"min": timed.best("fastact")},
            torch_s=timed.stats("torch").as_dict() | {"min": timed.best("torch")},
            ratio=timed.ratio("fastact", "torch"),
        )
        self.progress(
            f"{op} {direction} {dtype.name} n={format_size(size)} ({row['mode']}): fastact {row['fastact_s']['median'] * 1e3:.3f} ms, "
            f"torch {row['torch_s']['median'] * 1e3:.3f} ms, ratio {row['ratio']['median']:.2f} (best {row['ratio']['best']:.2f})"
        )
        return row

    # ------------------------------------------------------------------ #
    def roofline_rows(self) -> list[dict]:
        size = self.args.roofline_size or (QUICK_ROOFLINE_SIZE if self.args.quick else ROOFLINE_SIZE)
        dtype = np.dtype(np.float32)
        pool = ArrayPool(self.device)
        rows = []
        for op in (name for name in MEMORY_BOUND if name in self.ops):
            row: dict = {"op": op, "size": size, "dtype": dtype.name}
            for direction in DIRECTIONS:
                form = self.ops[op]
                workload = build(op, form, direction, dtype, size, pool, self.torch)
                if workload is None:
                    continue
                check = self.check(op, form, direction, dtype)
                ok = check is None or check["ok"]
                args = workload.make_args(0)
                for prepare in workload.prepare.values():
                    prepare(args)
                # fastact's out= call where it has one; the roofline handles its output the same way.
                ours = "fastact"
                allocating = "fastact_new" not in workload.implementations  # the call takes no out=
                x, dy = args["x"], args.get("dy")
                dst = np.empty_like(x)
                dst.fill(0)
                if direction == "forward":
                    name = "copy"
                    roof = (lambda r: np.copy(x)) if allocating else (lambda r: self.device.copy(dst, x))
                else:
                    name = "add"
                    bits = lambda a: a.view(f"u{a.dtype.itemsize}")  # noqa: E731 - devices.as_bits
                    roof = (lambda r: np.add(bits(dy), bits(x))) if allocating else (lambda r: self.device.add(dst, dy, x))
                calls = {"fastact": lambda r: workload.implementations[ours](args), name: roof}
                if ok:
                    calls["torch"] = lambda r: workload.implementations["torch"](args)
                with np.errstate(all="ignore"):
                    timed = interleaved(calls, self.budget, settle_seconds=SETTLE_SECONDS)
                row[direction] = {
                    "roofline": name + (" (allocating, as fastact's call)" if allocating else ""),
                    "fastact_mode": "alloc" if allocating else "out",
                    "torch_mode": workload.torch_mode,
                    "rounds": timed.rounds,
                    "fastact_over_roofline": timed.ratio("fastact", name),
                    "torch_over_roofline": timed.ratio("torch", name) if ok else None,
                    "roofline_s": timed.stats(name).as_dict(),
                    "fastact_s": timed.stats("fastact").as_dict(),
                }
                self.progress(
                    f"{op} {direction} n={format_size(size)}: fastact {row[direction]['fastact_over_roofline']['median']:.2f}x {name}"
                    + (f", torch {row[direction]['torch_over_roofline']['median']:.2f}x" if ok else "")
                )
            rows.append(row)
            pool.clear()
        return rows

    # ------------------------------------------------------------------ #
    def overhead_rows(self) -> list[dict]:
        dtype = np.dtype(np.float32)
        pool = ArrayPool(self.device)
        number = 5 if self.args.quick else OVERHEAD_CALLS
        rows = []
        for op, form in self.ops.items():
            user_call = form.functional(self.torch)
            workload = build(op, form, "forward", dtype, OVERHEAD_SIZE, pool, None)
            if user_call is None or workload is None:
                continue
            args = workload.make_args(0)
            tensors = [self.torch.tensor(args[name]) for name in form.inputs]
            ours = workload.implementations["fastact_new" if "fastact_new" in workload.implementations else "fastact"]
            check = compare(self.torch, ours(args), user_call(*tensors), dtype.name)
            row: dict = {"op": op, "size": OVERHEAD_SIZE, "check": check}
            if not check["ok"]:
                row["error"] = "differs"
                self.failures.append({"op": op, "direction": "forward (small call)", "dtype": dtype.name, **check})
                rows.append(row)
                continue
            calls = {"fastact": lambda r: ours(args), "torch": lambda r: user_call(*tensors)}
            timed = interleaved(calls, self.budget, number=number, settle_seconds=SETTLE_SECONDS)
            row.update(
                calls_per_sample=number, rounds=timed.rounds,
                fastact_us=timed.stats("fastact").median * 1e6, torch_us=timed.stats("torch").median * 1e6,
                ratio=timed.ratio("fastact", "torch"),
            )
            self.progress(f"{op} 1 Ki call: fastact {row['fastact_us']:.1f} us, torch {row['torch_us']:.1f} us, ratio {row['ratio']['median']:.2f}")
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ #
    def conv_rows(self) -> list[dict]:
        size = self.args.conv_size or (QUICK_CONV_SIZE if self.args.quick else CONV_SIZE)
        dtype = np.dtype(np.float32)
        pool = ArrayPool(self.device)
        rows = []
        for direction in DIRECTIONS:
            workload = build(CONV_OP, CONV, direction, dtype, size, pool, self.torch)
            if workload is None:
                raise SystemExit(f"--conv-size {size} does not fit the conv shape (a multiple of 16 * 32 * 32)")
            row = {"op": CONV_OP, "direction": direction, "dtype": dtype.name, "size": size, "mode": workload.torch_mode,
                   "shapes": {k: list(v) for k, v in workload.shapes.items()}, "torch_kernel": workload.torch_kernel}
            row["check"] = self.check(CONV_OP, CONV, direction, dtype)
            if row["check"] is not None and not row["check"]["ok"]:
                row["error"] = "differs"
                rows.append(row)
                continue
            timed, sets = self.time_pair(workload, workload.matching)
            row.update(rounds=timed.rounds, input_sets=sets, fastact_s=timed.stats("fastact").as_dict(),
                       torch_s=timed.stats("torch").as_dict(), ratio=timed.ratio("fastact", "torch"))
            self.progress(
                f"{CONV_OP} {direction} {tuple(workload.shapes['x'])}: fastact {row['fastact_s']['median'] * 1e3:.1f} ms, "
                f"torch {row['torch_s']['median'] * 1e3:.1f} ms, ratio {row['ratio']['median']:.2f}"
            )
            rows.append(row)
            pool.clear()
        return rows

    # ------------------------------------------------------------------ #
    def run(self) -> dict:
        started = {"git_commit": machine.git_commit(), "load_average_start": machine.load_average()}
        sections = self.args.sections or SECTIONS
        result: dict = {"schema": SCHEMA}
        try:
            with fastact.use_backend(self.args.backend):
                if "ratio" in sections:
                    result["ratios"] = self.ratio_rows()
                if "roofline" in sections:
                    result["roofline"] = self.roofline_rows()
                if "overhead" in sections:
                    result["overhead"] = self.overhead_rows()
                if "conv" in sections and self.conv:
                    result["conv"] = self.conv_rows()
            torch_threads = self.torch.threads
        finally:
            self.torch.torch.set_num_threads(self.torch_threads_before)
        extra = {
            "fastact_backend": self.backend,
            "fastact_threads": self.backend["threads"],
            "torch_threads": torch_threads,
            **started,
            "load_average_end": machine.load_average(),
        }
        result["machine"] = machine.metadata(self.device.describe(), extra)
        result["config"] = {
            "backend": self.args.backend,
            "quick": self.args.quick,
            "ops": list(self.ops) + ([CONV_OP] if self.conv else []),
            "sections": list(sections),
            "budget": self.budget.as_dict(),
        }
        result["method"] = __doc__.split("Method:", 1)[1].split("The output records", 1)[0].strip()
        result["no_out_overload"] = {f"{op} {direction}": kernel for (op, direction), kernel in NO_OUT_OVERLOAD.items()}
        result["skipped"] = self.skipped
        result["check_failures"] = self.failures
        return result


# --------------------------------------------------------------------------- #
# Markdown.
# --------------------------------------------------------------------------- #
def _ratio_cell(ratio: dict | None) -> str:
    return "—" if ratio is None else f"{ratio['median']:.2f} ({ratio['best']:.2f})"


def machine_lines(result: dict) -> list[str]:
    m = result["machine"]
    backend = m["fastact_backend"]
    cores = m.get("cores_usable") or m.get("cores") or 1
    loads = [load[0] for load in (m.get("load_average_start"), m.get("load_average_end")) if load]
    busy = bool(loads) and max(loads) > cores / 2
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, ISA {' '.join(m.get('isa') or []) or 'unknown'}; "
        f"numpy {m['numpy']}, torch {m['torch']}, fastact {m['fastact']}"
        + (f", commit {m['git_commit']}" if m.get("git_commit") else "") + f"; {m['date']}.",
        f"fastact backend `{backend['name']}` (`--backend {backend['requested']}`), {m['fastact_threads']} threads; "
        f"PyTorch {m['torch_threads']} threads. Load average {m.get('load_average_start')} -> {m.get('load_average_end')}.",
    ] + ([f"**The machine was busy (1-minute load average above half its {cores} cores): thread pools were "
          "descheduled, and these ratios are not figures to quote.**"] if busy else [])


def markdown(result: dict) -> str:
    lines = ["# fastact vs PyTorch CPU", "", *machine_lines(result), "",
             "Ratios: fastact time / PyTorch time, **at most 1.00: fastact at least as fast**; median of per-round "
             "ratios of interleaved runs (ratio of the best times in brackets). Mode `out`: both write into a "
             "preallocated output; `alloc`: both allocate. Every row's results were checked equal before timing "
             "(`differs` where they were not: not timed)."]
    ratios = result.get("ratios") or []
    if ratios:
        sizes = sorted({row["size"] for row in ratios})
        for direction in DIRECTIONS:
            lines += ["", f"## {direction}", "",
                      "| op | dtype | mode | " + " | ".join(format_size(s) for s in sizes) + " |",
                      "|---|---|---|" + "---|" * len(sizes)]
            keys = list(dict.fromkeys((r["op"], r["dtype"]) for r in ratios if r["direction"] == direction))
            for op, dtype in keys:
                mine = {r["size"]: r for r in ratios if (r["op"], r["dtype"], r["direction"]) == (op, dtype, direction)}
                mode = next(iter(mine.values()))["mode"]
                cells = [("differs" if "error" in mine[s] else _ratio_cell(mine[s]["ratio"])) if s in mine else "" for s in sizes]
                lines.append(f"| {op} | {dtype} | {mode} | " + " | ".join(cells) + " |")
    roof = result.get("roofline") or []
    if roof:
        size = format_size(roof[0]["size"])
        lines += ["", f"## Against the memory system ({size} float32)", "",
                  "Op time / roofline time, interleaved: forward / `np.copyto(dst, src)`, backward / "
                  "`np.add(a, b, out=c)` (on integer views: the same bytes); PyTorch's ratios beside fastact's.", "",
                  "| op | forward / copy | backward / add | torch forward / copy | torch backward / add |",
                  "|---|---|---|---|---|"]
        for row in roof:
            cells = []
            for key in ("fastact_over_roofline", "torch_over_roofline"):
                for direction in DIRECTIONS:
                    entry = row.get(direction)
                    cell = "—" if entry is None else _ratio_cell(entry[key])
                    if entry is not None and key == "fastact_over_roofline" and entry["fastact_mode"] == "alloc":
                        cell += " (both allocating)"
                    if entry is not None and key == "torch_over_roofline" and entry["torch_mode"] == "alloc":
                        cell += " (torch allocating)"
                    cells.append(cell)
            lines.append(f"| {row['op']} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    overhead = result.get("overhead") or []
    if overhead:
        lines += ["", f"## Small calls ({OVERHEAD_SIZE} float32 elements, forward, both allocating)", "",
                  "`fastact.OP(x)` against `torch.nn.functional.OP(t)` (prelu: `F.prelu`; bias_act: `F.relu(t + b)`).", "",
                  "| op | fastact us | torch us | ratio |", "|---|---|---|---|"]
        for row in overhead:
            if "error" in row:
                lines.append(f"| {row['op']} | | | differs |")
            else:
                lines.append(f"| {row['op']} | {row['fastact_us']:.1f} | {row['torch_us']:.1f} | {_ratio_cell(row['ratio'])} |")
    conv = result.get("conv") or []
    if conv:
        shapes = conv[0]["shapes"]
        lines += ["", f"## conv2d_bias_act, float32, x {tuple(shapes['x'])}, w {tuple(shapes['w'])}, 'same', relu", "",
                  "Forward against `F.conv2d(x, w, b)` + `F.relu`; backward against `torch.autograd.grad` of that graph "
                  "(dx, dw, db). Both allocate.", "",
                  "| direction | fastact ms | torch ms | ratio |", "|---|---|---|---|"]
        for row in conv:
            if "error" in row:
                lines.append(f"| {row['direction']} | | | differs |")
            else:
                lines.append(f"| {row['direction']} | {row['fastact_s']['median'] * 1e3:.1f} | {row['torch_s']['median'] * 1e3:.1f} | "
                             f"{_ratio_cell(row['ratio'])} |")
    lines += ["", "PyTorch kernels without an `out=` overload (their rows time both sides allocating): "
              + ", ".join(f"{key}: `{kernel}`" for key, kernel in result["no_out_overload"].items()) + "."]
    if result.get("skipped"):
        lines.append("Not compared: " + "; ".join(result["skipped"]) + ".")
    if result.get("check_failures"):
        lines.append("**Results that differ from PyTorch's:** " + "; ".join(
            f"{f['op']} {f['direction']} {f['dtype']} ({f.get('max_error', f.get('reason'))})" for f in result["check_failures"]))
    return "\n".join(lines) + "\n"


def _names(values: list[str] | None) -> list[str] | None:
    return None if values is None else [name for value in values for name in value.split(",") if name]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/bench_vs_torch.py",
        description="fastact against PyTorch CPU, like for like (ratios fastact / torch: at most 1 = at least as fast). "
        "See the module docstring for the method. Progress on stderr; Markdown on stdout unless --markdown/--json.",
    )
    parser.add_argument("--backend", default="auto", metavar="NAME",
                        help="fastact backend, as fastact.use_backend takes it: numpy, cpu ... (default: auto)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2**16 only, small roofline and conv, a few rounds")
    parser.add_argument("--ops", nargs="+", metavar="OP", help="ops (space- or comma-separated; default: all, conv2d_bias_act included)")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE", help="default: float32 bfloat16 float16")
    parser.add_argument("--sizes", nargs="+", type=parse_size, metavar="N", help="section 1's sizes (default: 2**16 2**20 2**24)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, help="default: all four")
    parser.add_argument("--roofline-size", type=parse_size, metavar="N", help="default: 2**25 (--quick: 2**22)")
    parser.add_argument("--conv-size", type=parse_size, metavar="N", help="elements of conv's x (default: 2**25; --quick: 2**18)")
    parser.add_argument("--reps", type=int, help="fixed number of interleaved rounds (default: about 1 s worth, at least 9)")
    parser.add_argument("--json", metavar="FILE", help="write the result, with the machine, as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the Markdown tables ('-': stdout)")
    return parser


def main(argv: list[str] | None = None, progress: Callable[[str], None] = _stderr) -> int:
    args = build_parser().parse_args(argv)
    args.ops, args.dtypes = _names(args.ops), _names(args.dtypes)
    result = Bench(args, progress).run()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        progress(f"wrote {args.json}")
    table = markdown(result)
    if args.markdown and args.markdown != "-":
        Path(args.markdown).write_text(table)
        progress(f"wrote {args.markdown}")
    elif args.markdown == "-" or not args.json:
        sys.stdout.write(table)
    return 1 if result["check_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
