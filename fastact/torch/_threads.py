"""fastact's cpu kernels on torch's own threads (see fastact/backends/cpu/threads.py for why).

At import, ``fastact.torch`` finds the OpenMP runtime torch's intra-op threads come
from and hands it to the cpu backend, so that fastact's jobs run on torch's team of
threads (``min(fastact's thread count, torch.get_num_threads())`` of them) instead of
a second pool competing with it.  Where this cannot be told (torch built with another
parallel backend, no ``/proc/self/maps`` outside Linux, several OpenMP runtimes loaded
and none of them torch's), fastact keeps its own pool.
"""
from __future__ import annotations

import os
import re

import torch

from ..backends.cpu import threads

# libgomp.so.1, torch's bundled libgomp-<hash>.so.1, Intel's libiomp5.so, LLVM's libomp.so
_OPENMP_FILE = re.compile(r"/lib(?:gomp|iomp5|omp)(?:-[0-9a-f]+)?\.so(?:\.\d+)*$")


def torch_openmp_runtime() -> str | None:
    """The file of the OpenMP runtime loaded in this process that torch's ops run on, or None."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    runtimes = sorted(f for f in loaded_files() if _OPENMP_FILE.search(f))
    torch_folder = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
    own = [f for f in runtimes if os.path.realpath(f).startswith(torch_folder)]
    if len(own) == 1:
        return own[0]
    return runtimes[0] if len(runtimes) == 1 else None


def loaded_files() -> set[str]:
    """The files mapped into this process (``/proc/self/maps``); empty where there is no such file."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return {fields[5].strip() for fields in (line.split(None, 5) for line in maps) if len(fields) == 6}
    except OSError:
        return set()


def share_torch_threads() -> None:
    """Run the cpu backend's jobs on torch's OpenMP threads, where torch's runtime can be found."""
    runtime = torch_openmp_runtime()
    if runtime is not None:
        threads.run_on_openmp(runtime)
