"""Where the kernel sources are, and the source text handed to a compiler.

The sources live in ``cuda/`` at the top of the repository and ship in the
wheel as ``fastact/cuda/`` (pyproject.toml maps the package ``fastact.cuda``
to that folder).  ``cuda/`` deliberately has no ``__init__.py``: a regular
package named ``cuda`` in a checkout's root would shadow NVIDIA's ``cuda``
namespace package (cuda-pathfinder), which CuPy imports, whenever the root is
on sys.path (pytest, ``python -c`` from the checkout).
"""
from __future__ import annotations

from pathlib import Path

# The one translation unit every kernel instantiation is compiled from.
MAIN_SOURCE = "kernels.cu"


def source_dir() -> Path:
    """``fastact/cuda`` in an installed wheel; ``<checkout>/cuda`` when running from the repository."""
    installed = Path(__file__).resolve().parents[1] / "cuda"
    if (installed / MAIN_SOURCE).is_file():
        return installed
    return Path(__file__).resolve().parents[2] / "cuda"


def main_source() -> str:
    """kernels.cu with a #line directive, so compiler messages name the real file and line."""
    path = source_dir() / MAIN_SOURCE
    return f'#line 1 "{path.as_posix()}"\n' + path.read_text()
