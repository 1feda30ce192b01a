"""Whose threads the cpu backend's jobs run on: the compiled module's own pool, or an OpenMP runtime's.

By default the module runs its jobs on a pool of its own (``cuda/host/thread_pool.h``).
Inside PyTorch that pool competes with torch's: torch's OpenMP workers keep spinning
for a while after each of its ops, waiting for the next one, so a fastact call right
after a torch op ran its tasks on cores those workers held (on the 2-core dev VM a
bias + Leaky ReLU epilogue after torch's convolution took 1.2-1.8x its time on
torch's threads, the Leaky ReLU the fused layers run now 1.7-2.9x;
``python bench/bench_torch_ops.py``, section "threads").
``fastact.torch`` therefore calls :func:`run_on_openmp` with the OpenMP runtime torch
was loaded with, and from then on the module's jobs run on torch's team of threads,
as torch's own ops do, on ``min(fastact's thread count, torch.get_num_threads())``
threads.  The tasks and their order of reduction do not change, so neither do the
results (bit for bit, ``tests/test_torch_threads.py``).  A child forked after that
(the study's ``--jobs`` workers) has none of torch's threads: its jobs go back to the
module's own pool (``cuda/host/thread_pool.h``, its ``pthread_atfork`` handler).
"""
from __future__ import annotations

import sys
from types import ModuleType

_runtime: str | None = None  # the OpenMP runtime's file, once given; None: the module's own pool


def run_on_openmp(path: str | None) -> None:
    """Run the compiled module's jobs on the threads of the OpenMP runtime loaded from ``path``.

    ``path`` must name a runtime this process has already loaded (it is never loaded
    anew); ``None`` goes back to the module's own pool.  Applies to the module now if
    it is loaded, else when the cpu backend loads it.  Where the runtime lacks
    libgomp's entry points, or the module predates them, jobs stay on the module's pool
    (:func:`describe` says which).
    """
    global _runtime
    _runtime = path
    for module in _loaded_modules():
        apply(module)


def runtime() -> str | None:
    """The OpenMP runtime :func:`run_on_openmp` was last given (None: the module's own pool)."""
    return _runtime


def apply(module: ModuleType) -> None:
    """Give ``module`` the runtime chosen by :func:`run_on_openmp` (:func:`describe` tells whether it took)."""
    use = getattr(module, "use_openmp", None)
    if use is not None:  # None: a module built before use_openmp
        use(_runtime)


def describe(module: ModuleType) -> str:
    """``"own pool"`` or ``"OpenMP runtime <file>"``: where ``module``'s jobs run."""
    on_openmp = getattr(module, "on_openmp", None)
    return f"OpenMP runtime {_runtime}" if on_openmp is not None and on_openmp() else "own pool"


def _loaded_modules() -> list[ModuleType]:
    prefix = f"{__package__}._engine_"
    return [m for name, m in list(sys.modules.items()) if name.startswith(prefix) and m is not None]
