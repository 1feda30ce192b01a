"""The cpu backend's compiled module: the best instruction-set build this CPU runs.

``setup.py`` compiles ``cuda/host/module.cpp`` into ``_engine_avx512``,
``_engine_avx2`` and ``_engine_baseline`` on x86-64 (only
``_engine_baseline`` elsewhere).  The baseline module answers which of the
others this CPU can run (``cpu_supports``), and the best one is imported.
``FASTACT_CPU_ISA=avx2`` (or ``baseline``, ...) picks one by hand, e.g. to
test the baseline build on a newer CPU.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

from ..base import BackendUnavailableError

ISAS = ("avx512", "avx2", "baseline")  # best first


def module_for(isa: str) -> ModuleType:
    return importlib.import_module(f"{__package__}._engine_{isa}")


def load() -> ModuleType:
    """The compiled module to use here; BackendUnavailableError saying why there is none."""
    try:
        baseline = module_for("baseline")
    except ImportError as error:
        raise BackendUnavailableError(
            "backend 'cpu' is not available: its compiled module was not built when fastact was installed "
            f"({error}); reinstall with a C++17 compiler (g++ or clang++) on PATH to build it"
        ) from error
    forced = os.environ.get("FASTACT_CPU_ISA", "").strip()
    if forced and forced not in ISAS:
        raise BackendUnavailableError(f"backend 'cpu': FASTACT_CPU_ISA={forced!r} is not one of {', '.join(ISAS)}")
    reasons = []
    for isa in (forced,) if forced else ISAS:
        if not baseline.cpu_supports(isa):
            reasons.append(f"{isa}: not supported by this CPU")
            continue
        try:
            return module_for(isa)
        except ImportError as error:
            reasons.append(f"{isa}: {error}")
    raise BackendUnavailableError(f"backend 'cpu' is not available: no usable build ({'; '.join(reasons)})")
