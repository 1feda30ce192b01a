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
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from ..base import BackendUnavailableError

ISAS = ("avx512", "avx2", "baseline")  # best first


def module_for(isa: str) -> ModuleType:
    name = f"{__package__}._engine_{isa}"
    try:
        return importlib.import_module(name)
    except ImportError:
        installed = _installed_module(name)
        if installed is None:
            raise
        return installed


def _installed_module(name: str) -> ModuleType | None:
    """The compiled module of an installed fastact, when this fastact is a source checkout.

    ``pip install .`` builds the module into site-packages; Python started in
    the checkout (``python -m pytest``, ``python -m fastact`` in the README's
    quick start) imports the checkout's own fastact/, which has no compiled
    module next to it.  The installed copy's, built from this source, is then
    loaded from the first other ``sys.path`` entry that has one.
    """
    here = Path(__file__).resolve().parent
    relative = Path(*name.split(".")[:-1])
    for entry in sys.path:
        folder = (Path(entry or ".") / relative).resolve()
        if folder == here or not folder.is_dir():
            continue
        for candidate in sorted(folder.glob(name.rsplit(".", 1)[1] + ".*")):
            if candidate.suffix not in (".so", ".pyd"):
                continue
            loader = importlib.machinery.ExtensionFileLoader(name, str(candidate))
            spec = importlib.util.spec_from_file_location(name, str(candidate), loader=loader)
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            sys.modules[name] = module
            return module
    return None


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
