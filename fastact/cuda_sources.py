"""Where the CUDA kernel sources are: inside the installed wheel, or in the repository checkout.

The sources live in ``cuda/`` at the top of the repository and ship in the
wheel as ``fastact/cuda/`` (pyproject.toml maps the package ``fastact.cuda``
to that folder).  ``cuda/`` deliberately has no ``__init__.py``: a regular
package named ``cuda`` at a checkout's root would shadow NVIDIA's ``cuda``
namespace package (cuda-pathfinder), which CuPy imports, whenever the root is
on sys.path (pytest, ``python -c`` in the checkout): CuPy then fails to import.
"""
from __future__ import annotations

from pathlib import Path

# The one translation unit every kernel instantiation is compiled from.
MAIN_SOURCE = "kernels.cu"


def source_dir() -> Path:
    """The directory of the ``.cu``/``.cuh`` files (and ``emulator/``).

    Installed from a wheel they are ``fastact/cuda/``; when fastact is
    imported straight from a checkout (tests run from the repository root),
    they are the top-level ``cuda/`` folder beside ``fastact/``.
    """
    packaged = Path(__file__).resolve().parent / "cuda"
    if (packaged / MAIN_SOURCE).is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "cuda"


def main_source() -> str:
    """kernels.cu with a #line directive, so compiler messages name the real file and line."""
    path = source_dir() / MAIN_SOURCE
    return f'#line 1 "{path.as_posix()}"\n' + path.read_text()
