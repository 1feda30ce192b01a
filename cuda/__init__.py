"""The CUDA kernel sources of fastact, shipped inside the wheel as package data.

In the repository they live in ``cuda/``; installed, the same files are the
package ``fastact.cuda``.  Use :func:`source_dir` to find them either way.
"""
from __future__ import annotations

from pathlib import Path


def source_dir() -> Path:
    """The directory holding the ``.cu``/``.cuh`` sources."""
    return Path(__file__).resolve().parent
