"""From cases to rows: build each module once, find each kernel's steady-state loop, count, predict."""
from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import cfg, hardware, sass, values, walk
from .build import Built, build
from .cases import Case, numpy_dtype


@dataclass
class Resources:
    registers: int
    stack_bytes: int
    spill_bytes: int


def _resources(built: Built, arch: int) -> dict[str, Resources]:
    from ..cuda_check import parse_ptxas

    names = {symbol: name for name, symbol in built.lowered.items()}
    return {r.kernel: Resources(r.registers, r.stack_bytes, r.spill_store_bytes + r.spill_load_bytes)
            for r in parse_ptxas(built.ptxas_log, names, arch)}


def steady_loop(function: sass.Function, loops: list[cfg.Loop], params: bytes = b"") -> cfg.Loop:
    """The loop that streams the data: among loops with a global load, the widest accesses; then the most
    global stores of that width (an unrolled main loop before its remainder loop); then the smallest body
    (the innermost); then the first in code order (the vector loop comes before the scalar tail)."""
    def key(item):
        k, loop = item
        accesses = [i for i in cfg.loop_instructions(function, loop) if sass.is_global_access(i)]
        widest = max(sass.access_bytes(i) for i in accesses)
        stores = sum(1 for i in accesses if i.opcode.startswith("ST") and sass.access_bytes(i) == widest)
        return (-widest, -stores, len(loop.body), k)

    reached = values.entry_states(function, params)
    candidates = [(k, loop) for k, loop in enumerate(loops) if loop.header in reached
                  and any(sass.is_global_access(i) and i.opcode.startswith("LD") for i in cfg.loop_instructions(function, loop))]
    if not candidates:
        raise RuntimeError(f"{function.symbol}: no loop with a global load")
    return min(candidates, key=key)[1]


@dataclass
class Measured:
    instructions: float  # per element, on the path
    instructions_divergent: float  # per element, with the other sides of the data-dependent branches
    by_class: dict  # per element
    mufu: float
    fp64: float
    divergent: float  # data-dependent branches per element
    calls_skipped: float
    load_bytes: int  # widest global load on the path (bytes per thread): the data's loads
    store_bytes: int  # widest global store
    narrow_per_element: float  # global loads/stores narrower than those (per-channel gathers, scalar fallbacks)
    conversions64: float  # conversions to or from 64-bit types (their own 16/clock pipe)
    loop_address: int


def _per_element(counts: sass.Counts, elements: float, path: walk.Path, loop_address: int) -> Measured:
    by_class = {c: counts.by_class.get(c, 0) / elements for c in sass.CLASSES}
    fp64 = sum(1 for i in path.instructions if sass.classify(i) == "fp64") / elements
    conv64 = sum(1 for i in path.instructions if sass.is_conversion64(i)) / elements
    load, store = max(counts.global_loads, default=0), max(counts.global_stores, default=0)
    narrow = sum(1 for b in counts.global_loads if b < load) + sum(1 for b in counts.global_stores if b < store)
    return Measured(counts.total / elements, (counts.total + len(path.other_sides)) / elements, by_class, counts.mufu / elements, fp64, path.divergent_branches / elements,
                    path.calls_skipped / elements, load, store, narrow / elements, conv64, loop_address)


def measure_stream(function: sass.Function, case: Case) -> Measured:
    """Elementwise and per-channel kernels: one iteration of the steady loop over the elements it stores."""
    loops = cfg.natural_loops(function)
    loop = steady_loop(function, loops, case.params)
    path = walk.walk(function, loop, case.params)
    if not path.complete:
        raise RuntimeError(f"{case.name}: the walk left the loop at {path.instructions[-1]!r}")
    counts = sass.count(path)
    elements = sum(counts.global_stores) / numpy_dtype(case.dtype).itemsize
    if elements <= 0:
        raise RuntimeError(f"{case.name}: no global store in one iteration of the steady loop")
    return _per_element(counts, elements, path, function.instructions[loop.header].address)


def measure_rows(function: sass.Function, case: Case) -> Measured:
    """softmax/log_softmax: per row and thread, the row loop's path plus the extra trips of its chunk loops
    (the strided vector kernel: per tile, a thread's `columns` rows side by side)."""
    loops = cfg.natural_loops(function)
    outer = max(loops, key=lambda loop: len(loop.body))
    inner = [loop for loop in loops if loop is not outer and loop.body <= outer.body]
    lanes, length, items = case.rowwise["lanes"], case.rowwise["length"], case.rowwise["items"]
    columns = case.rowwise.get("columns", 1)
    trips = math.ceil(length / (lanes * items))
    path = walk.walk(function, outer, case.params)
    if not path.complete:
        raise RuntimeError(f"{case.name}: the walk left the row loop at {path.instructions[-1]!r}")
    instructions, others = list(path.instructions), list(path.other_sides)
    divergent, calls = path.divergent_branches, path.calls_skipped
    # A chunk loop whose test the walk could not decide ran once on the path: add its other trips.
    # (With the row length in the parameters the walk usually runs every trip itself.)
    visits = Counter(i.address for i in path.instructions)
    for loop in inner:
        header = function.instructions[loop.header].address
        has_load = any(sass.is_global_access(i) for i in cfg.loop_instructions(function, loop))
        if not visits[header] or not has_load or visits[header] >= trips:
            continue
        extra = walk.walk(function, loop, case.params)
        missing = trips - visits[header]
        instructions += extra.instructions * missing
        others += extra.other_sides * missing
        divergent += extra.divergent_branches * missing
        calls += extra.calls_skipped * missing
    total = walk.Path(instructions, divergent, calls, True, others)
    counts = sass.count(total)
    return _per_element(counts, length * columns / lanes, total, function.instructions[outer.header].address)


@dataclass
class Row:
    case: Case
    registers: int
    stack_bytes: int
    spill_bytes: int
    local_accesses: int  # LDL/STL anywhere in the kernel
    measured: Measured
    predictions: dict  # GPU name -> hardware.Prediction
    divergent_predictions: dict  # the same when every data-dependent branch diverges in every warp

    def as_json(self) -> dict:
        m = self.measured
        return {
            "kernel": self.case.label, "dtype": self.case.dtype, "direction": self.case.direction,
            "instantiation": self.case.name,
            "vector_bytes": min(m.load_bytes, m.store_bytes) if m.store_bytes else m.load_bytes,
            "load_bytes": m.load_bytes, "store_bytes": m.store_bytes,
            "narrow_accesses_per_element": round(m.narrow_per_element, 3),
            "registers": self.registers, "stack_bytes": self.stack_bytes, "spill_bytes": self.spill_bytes,
            "local_memory_instructions": self.local_accesses,
            "instructions_per_element": round(m.instructions, 3),
            "instructions_per_element_divergent": round(m.instructions_divergent, 3),
            "by_class_per_element": {k: round(v, 3) for k, v in m.by_class.items()},
            "mufu_per_element": round(m.mufu, 3),
            "fp64_per_element": round(m.fp64, 3),
            "conversions64_per_element": round(m.conversions64, 3),
            "divergent_branches_per_element": round(m.divergent, 3),
            "bytes_per_element": self.case.bytes_per_element,
            "resident_blocks_per_sm": {g: p.resident_blocks for g, p in self.predictions.items()},
            "wave_efficiency": {g: round(p.wave_efficiency, 4) for g, p in self.predictions.items()},
            "bound": {g: p.bound for g, p in self.predictions.items()},
            "predicted": {g: round(p.share, 4) for g, p in self.predictions.items()},
            "predicted_divergent": {g: round(p.share, 4) for g, p in self.divergent_predictions.items()},
            "elementwise_loop": self.case.elementwise,
        }


def analyze(cases: list[Case], arch: int = 90, jobs: int | None = None, use_cache: bool = True) -> list[Row]:
    """Build every module the cases need (in parallel, at most ``jobs`` compiles at once) and measure each case."""
    groups: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in cases:
        groups[(case.family, case.dtype)].append(case)
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))

    def run(key):
        names = sorted({c.name for c in groups[key]})
        return key, build(names, arch, use_cache)

    with ThreadPoolExecutor(jobs) as pool:
        built = dict(pool.map(run, list(groups)))
    rows = []
    for key, group in groups.items():
        module = built[key]
        functions = sass.parse(module.disassembly)
        resources = _resources(module, arch)
        for case in group:
            function = functions[module.lowered[case.name]]
            res = resources[case.name]
            measured = measure_rows(function, case) if case.rowwise else measure_stream(function, case)
            local = sum(1 for i in function.instructions if i.opcode in ("LDL", "STL"))
            predictions, divergent = ({
                gpu.name: hardware.predict(gpu, instructions=instructions, mufu=measured.mufu, fp64=measured.fp64,
                                           conversions64=measured.conversions64,
                                           bytes_per_element=case.bytes_per_element, registers=res.registers,
                                           threads=case.threads, grid_blocks=round(case.grid_blocks_per_sm * gpu.sms))
                for gpu in hardware.GPUS
            } for instructions in (measured.instructions, measured.instructions_divergent))
            rows.append(Row(case, res.registers, res.stack_bytes, res.spill_bytes, local, measured, predictions, divergent))
    order = {id(c): k for k, c in enumerate(cases)}
    rows.sort(key=lambda r: order[id(r.case)])
    return rows
