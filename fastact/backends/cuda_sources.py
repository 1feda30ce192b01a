"""Where the kernel sources are, and the source text handed to a compiler."""
from __future__ import annotations

from pathlib import Path

# The one translation unit every kernel instantiation is compiled from.
MAIN_SOURCE = "kernels.cu"


def source_dir() -> Path:
    """``fastact.cuda`` when installed; ``<checkout>/cuda`` when running from the repository."""
    try:
        from fastact.cuda import source_dir as installed
    except ImportError:
        return Path(__file__).resolve().parents[2] / "cuda"
    return installed()


def main_source() -> str:
    """kernels.cu with a #line directive, so compiler messages name the real file and line."""
    path = source_dir() / MAIN_SOURCE
    return f'#line 1 "{path.as_posix()}"\n' + path.read_text()
