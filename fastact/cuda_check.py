"""Compile check of every CUDA kernel instantiation, without a GPU.

    python -m fastact.cuda_check [--arch 80 90]

For each architecture, each module (activation kernel or PReLU) and each
dtype, compiles kernels.cu to SASS with NVRTC through the same function and
options the CUDA backend uses (:func:`fastact.backends.cuda.compile.compile_kernels`),
adding ``--ptxas-options=-v`` so NVRTC's own assembler reports registers,
stack and spills per kernel (a separately installed ptxas may be older than
NVRTC and refuse its PTX).  Fails (exit status 1) on any NVRTC error, any
warning from the compiler or the assembler, or any local-memory spill.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

from ._arrays import SUPPORTED_DTYPES
from .backends.cuda.compile import compile_kernels
from .backends.kernels import plan as cuda_plan

DEFAULT_ARCHS = (80, 90)


@dataclass(frozen=True)
class KernelResources:
    arch: int
    kernel: str  # the name expression, e.g. fastact::activation_forward<...>
    registers: int
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


@dataclass
class CheckResult:
    resources: list
    problems: list  # human-readable failures; empty means the check passed


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for 'sm_(\d+)'")
_USED = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(output: str, names_by_symbol: dict, arch: int) -> list[KernelResources]:
    """One KernelResources per entry function in ``ptxas -v`` output."""
    found, symbol, frame = [], None, (0, 0, 0)
    for line in output.splitlines():
        if match := _ENTRY.search(line):
            symbol, frame = match.group(1), (0, 0, 0)
        elif match := _FRAME.search(line):
            frame = tuple(int(g) for g in match.groups())
        elif (match := _USED.search(line)) and symbol is not None:
            found.append(KernelResources(arch, names_by_symbol.get(symbol, symbol), int(match.group(1)), *frame))
            symbol = None
    return found


def _is_resource_report(line: str) -> bool:
    return line.startswith(("ptxas info", "ptxas         ."))


def check_module(family: str, dtype: str, arch: int) -> CheckResult:
    kernels = cuda_plan.module_kernels(family, _numpy_dtype(dtype))
    compiled = compile_kernels(kernels, f"-arch=sm_{arch}", "cubin", ["--ptxas-options=-v"])
    messages = [line for line in compiled.log.splitlines() if line.strip() and not _is_resource_report(line)]
    problems = [f"sm_{arch} {family}/{dtype}: compiler says:\n" + "\n".join(messages)] if messages else []
    names = {symbol: name for name, symbol in compiled.lowered_names.items()}
    resources = parse_ptxas(compiled.log, names, arch)
    problems += [f"sm_{arch} {r.kernel}: spills to local memory ({r.spill_store_bytes} B stored, "
                 f"{r.spill_load_bytes} B loaded)" for r in resources if r.spills]
    if len(resources) != len(kernels):
        problems.append(f"sm_{arch} {family}/{dtype}: the assembler reported {len(resources)} kernels, expected {len(kernels)}")
    return CheckResult(resources, problems)


def _numpy_dtype(name: str):
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def check(archs=DEFAULT_ARCHS) -> CheckResult:
    """Compile every instantiation for every arch; collect resources and problems."""
    total = CheckResult([], [])
    for arch in archs:
        for family in cuda_plan.MODULE_FAMILIES:
            for dtype in SUPPORTED_DTYPES:
                result = check_module(family, dtype, arch)
                total.resources += result.resources
                total.problems += result.problems
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastact.cuda_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(DEFAULT_ARCHS), help="compute capabilities, e.g. 80 90")
    args = parser.parse_args(argv)
    result = check(args.arch)
    print(f"{'arch':<6}{'regs':>5}{'stack':>7}{'spill':>7}  kernel")
    for r in result.resources:
        print(f"sm_{r.arch:<3}{r.registers:>5}{r.stack_bytes:>7}{r.spill_store_bytes + r.spill_load_bytes:>7}  {r.kernel}")
    for problem in result.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print(f"{len(result.resources)} kernels, {len(result.problems)} problems")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
