"""Backend selection: which backend runs a call.

Order of precedence: ``use_backend(...)`` (per thread and per context, via a
ContextVar) > ``set_backend(...)`` (process-wide) > the ``FASTACT_BACKEND``
environment variable (read at import) > ``"auto"``.

``"auto"``: the array decides.  CuPy arrays and other CUDA arrays run on
``"cuda"``; host arrays on ``"cpu"`` where its compiled module was built,
else on ``"numpy"``.

Backends are imported lazily, so ``import fastact`` never imports CuPy.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from contextvars import ContextVar
from typing import Iterator

from .base import Backend, BackendUnavailableError

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "BACKEND_NAMES",
    "available_backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "load",
    "for_kind",
]

# name -> "module:Class"; "cuda-emulator" is test-only and never listed as available.
_BACKEND_CLASSES = {
    "cpu": "fastact.backends.cpu.backend:CpuBackend",
    "numpy": "fastact.backends.numpy.backend:NumpyBackend",
    "cuda": "fastact.backends.cuda.backend:CudaBackend",
    "cuda-emulator": "fastact.backends.emulator.backend:EmulatorBackend",
}
BACKEND_NAMES = ("auto", *_BACKEND_CLASSES)
# The backends a user can pick, in the order "info" lists them.
LISTED = ("cpu", "numpy", "cuda")

_loaded: dict[str, Backend] = {}
_errors: dict[str, BackendUnavailableError] = {}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKEND_NAMES)}")
    return name


_default = _check_name(os.environ.get("FASTACT_BACKEND", "auto").strip() or "auto")
_context: ContextVar[str | None] = ContextVar("fastact_backend", default=None)


def set_backend(name: str) -> None:
    """Set the process-wide backend: 'auto' (default), 'cpu', 'numpy', 'cuda' (or test-only 'cuda-emulator')."""
    global _default
    _default = _check_name(name)


def get_backend() -> str:
    """The backend set for this thread/context: a name from ``BACKEND_NAMES``."""
    return _context.get() or _default


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Use backend ``name`` inside a ``with`` block, for this thread/context only.

    >>> with fastact.use_backend("numpy"):
    ...     y = fastact.relu(x)
    """
    token = _context.set(_check_name(name))
    try:
        yield name
    finally:
        _context.reset(token)


def load(name: str) -> Backend:
    """The backend object for ``name``; BackendUnavailableError (with the reason) if unusable here."""
    backend = _loaded.get(name)
    if backend is not None:
        return backend
    if name in _errors:
        raise _errors[name]
    module_name, class_name = _BACKEND_CLASSES[_check_name(name)].split(":")
    try:
        module = importlib.import_module(module_name)
        backend = getattr(module, class_name)()
    except BackendUnavailableError as error:
        _errors[name] = error
        raise
    except ImportError as error:
        _errors[name] = BackendUnavailableError(f"backend {name!r} is not available: {error}")
        raise _errors[name] from error
    _loaded[name] = backend
    return backend


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot be used here, or None if it can."""
    try:
        load(name)
    except BackendUnavailableError as error:
        return str(error)
    return None


def available_backends() -> list[str]:
    """The backends that work on this machine (always includes 'numpy')."""
    return [name for name in LISTED if unavailable_reason(name) is None]


def for_kind(kind: str) -> Backend:
    """The backend for an input of array kind ``kind`` (see ``fastact._arrays.array_kind``)."""
    name = get_backend()
    if name == "auto":
        if kind in ("cupy", "cuda"):
            name = "cuda"
        else:
            return host_backend()
    return load(name)


def host_fast_path() -> Backend | None:
    """The backend a NumPy array runs on now, if it is already loaded (else None: the general path loads it)."""
    name = _context.get() or _default
    if name == "auto":
        return _auto_host
    return _loaded.get(name) if name in ("cpu", "numpy", "cuda-emulator") else None


def device_fast_path() -> Backend | None:
    """The backend a CuPy array runs on now, if it is already loaded (else None: the general path loads it)."""
    name = _context.get() or _default
    return _loaded.get("cuda") if name == "auto" or name == "cuda" else None


def host_backend() -> Backend:
    """What ``"auto"`` runs host arrays on: ``"cpu"`` where its compiled module was built, else ``"numpy"``."""
    global _auto_host
    if _auto_host is None:
        _auto_host = load("numpy") if unavailable_reason("cpu") else load("cpu")
    return _auto_host


_auto_host: Backend | None = None
