"""Compile every CUDA kernel module in parallel into fastact's disk cache, before tests or benchmarks use them.

    python bench/precompile_cuda.py [--arch 90] [--jobs N] [--list]

The cuda backend compiles a module (one activation, or prelu, or conv, in one
dtype) the first time a call needs it, which takes seconds each; a test run
needs about eighty of them.  This compiles them all at once, one process per
core, with the very function and options the backend uses
(:func:`fastact.backends.cuda.compile.compile_kernels`), so that they land in
its disk cache (``$FASTACT_CUDA_CACHE``, default ``~/.cache/fastact/cuda``)
and every later process loads them from there.  ``bench/gpu_proof.sh`` runs it
first.

``--arch``: the compute capability as digits (90 for sm_90); by default the
current GPU's.  ``--list`` prints the modules and compiles nothing.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fastact

from fastact._arrays import SUPPORTED_DTYPES  # noqa: E402
from fastact.backends.kernels import plan  # noqa: E402


def _dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return name


def modules() -> list[tuple[str, str]]:
    """(family, dtype name) of every module the backend can compile (bfloat16 only with ml_dtypes)."""
    try:
        import ml_dtypes  # noqa: F401
        dtypes = SUPPORTED_DTYPES
    except ImportError:
        print("ml_dtypes is not installed: no bfloat16 modules", file=sys.stderr)
        dtypes = tuple(d for d in SUPPORTED_DTYPES if d != "bfloat16")
    return [(family, dtype) for family in plan.MODULE_FAMILIES for dtype in dtypes]


def _compile(family: str, dtype: str, compute_capability: int) -> tuple[str, str, float]:
    from fastact.backends.cuda.compile import arch_option, compile_kernels

    start = time.perf_counter()
    arch, kind = arch_option(compute_capability)
    compile_kernels(plan.module_kernels(family, _dtype(dtype)), arch, kind)
    return family, dtype, time.perf_counter() - start


def current_arch() -> int:
    import cupy

    return int(cupy.cuda.Device().compute_capability)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, help="compute capability as digits, e.g. 90 (default: the current GPU's)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    parser.add_argument("--list", action="store_true", help="print the modules; compile nothing")
    parser.add_argument("--families", nargs="+", metavar="FAMILY", help="only these kernel families (default: all)")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE", help="only these dtypes (default: all)")
    args = parser.parse_args(argv)
    todo = [(family, dtype) for family, dtype in modules()
            if (args.families is None or family in args.families) and (args.dtypes is None or dtype in args.dtypes)]
    if args.list:
        for family, dtype in todo:
            print(f"{family} {dtype}: {len(plan.module_kernels(family, _dtype(dtype)))} instantiations")
        print(f"{len(todo)} modules")
        return 0
    from fastact.backends.cuda.compile import cache_dir

    arch = args.arch if args.arch is not None else current_arch()
    print(f"compiling {len(todo)} modules for compute capability {arch} with {args.jobs} processes "
          f"into {cache_dir()}", flush=True)
    start, failures = time.perf_counter(), 0
    # Fresh processes (spawn): the parent has touched the CUDA runtime (current_arch), which does not survive fork.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_compile, family, dtype, arch): (family, dtype) for family, dtype in todo}
        for future in as_completed(futures):
            family, dtype = futures[future]
            try:
                _, _, seconds = future.result()
                print(f"  {family} {dtype}: {seconds:.1f} s", flush=True)
            except Exception as error:  # report every module, then fail
                failures += 1
                print(f"  {family} {dtype}: FAILED: {type(error).__name__}: {error}", flush=True)
    print(f"done in {time.perf_counter() - start:.1f} s, {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
