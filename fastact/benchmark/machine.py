"""Machine metadata stored with every result, so runs on different machines can be compared."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

import fastact


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction-set extensions a vectorized host backend may use.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "avx512_fp16", "amx_bf16", "neon", "asimd", "sve")


def isa_flags() -> list[str]:
    """Which of :data:`ISA_FLAGS` /proc/cpuinfo lists for this CPU (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in ISA_FLAGS if flag in present]
    except OSError:
        pass
    return []


def fastact_backend(name: str) -> dict:
    """The backend fastact runs for host arrays under ``use_backend(name)`` ("auto" resolved), with its thread count.

    Through the public API only (``fastact.use_backend``, the backend's
    ``describe()``), so that any backend, present or future, reports itself.
    ``threads`` is the backend's own figure where ``describe()`` gives one,
    else FASTACT_NUM_THREADS, else the usable cores (at most 8, the NumPy
    engine's default).
    """
    import numpy as np

    info: dict = {"requested": name}
    try:
        with fastact.use_backend(name):
            backend = fastact.backends.for_kind("numpy") if hasattr(fastact.backends, "for_kind") else None
            if backend is None:  # no resolver: run a call and trust the requested name
                fastact.relu(np.zeros(4, np.float32))
            described = backend.describe() if backend is not None and hasattr(backend, "describe") else {}
    except (ValueError, ImportError, fastact.BackendUnavailableError) as error:
        raise SystemExit(f"--backend {name}: {error}") from error
    info.update(described)
    info["name"] = described.get("name") or getattr(backend, "name", None) or name
    threads = described.get("threads") or described.get("num_threads")
    if not threads:
        env = os.environ.get("FASTACT_NUM_THREADS")
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = int(env) if env else max(1, min(usable, 8))
    info["threads"] = int(threads)
    return info


def short_name(gpu: str | None = None) -> str:
    """A file-name-safe machine name: the GPU's, or the CPU model and core count (``amd-epyc-2c``)."""
    name = gpu or f"{cpu_model()} {os.cpu_count()}c"
    name = re.sub(r"\((r|tm)\)|\b(cpu|processor|nvidia|\d+-core)\b|@.*", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def distribution_version(module: str) -> str | None:
    """The installed version of the package providing ``module``, without importing it.

    (Importing CuPy on a machine without a GPU is what the CPU path must not do.)
    """
    for distribution in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def git_commit() -> str | None:
    """fastact's git commit (with ``-dirty`` for uncommitted changes), or None outside a checkout."""
    where = Path(fastact.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# Settings that change the numbers: thread counts and OpenMP's wait policy (PyTorch's
# OpenMP threads spin-wait by default, which on a small shared VM can cost milliseconds).
ENVIRONMENT = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "FASTACT_NUM_THREADS", "FASTACT_BLOCK_ELEMENTS", "FASTACT_BACKEND")


def metadata(device_info: dict, extra: dict) -> dict:
    """Everything about the machine and software that a number depends on; ``extra`` adds the run's own."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "isa": isa_flags(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpu": device_info.get("gpu"),
        "cache_bytes": device_info.get("cache_bytes"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": distribution_version("numpy"),
        "cupy": distribution_version("cupy"),
        "torch": distribution_version("torch"),
        "fastact": fastact.__version__,
        "environment": {name: os.environ[name] for name in ENVIRONMENT if name in os.environ},
        **extra,
    }
