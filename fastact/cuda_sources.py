"""Where the CUDA kernel sources are: inside the installed wheel, or in the repository checkout."""
from __future__ import annotations

from pathlib import Path


def source_dir() -> Path:
    """The directory of the ``.cu``/``.cuh`` files.

    Installed from a wheel they are the package ``fastact.cuda``; when fastact
    is imported straight from a checkout (tests run from the repository root),
    they are the top-level ``cuda/`` folder beside ``fastact/``.
    """
    try:
        from .cuda import source_dir as packaged
    except ImportError:
        return Path(__file__).resolve().parent.parent / "cuda"
    return packaged()
