"""The CUDA kernel sources of fastact, shipped as package data.

In the repository these files live in ``cuda/``; in a wheel they are the
package ``fastact.cuda`` (see pyproject.toml).  Python code finds them with
:func:`source_dir` (through ``fastact.backends.cuda_sources``), so the same
lookup works from an install and from a checkout.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["source_dir"]


def source_dir() -> Path:
    """The directory holding kernels.cu, the .cuh headers and emulator/."""
    return Path(__file__).resolve().parent
