"""``python -m fastact info``: versions, the backends usable here, and why the others are not."""
from __future__ import annotations

import importlib
import platform
import sys

from . import __version__, backends


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as error:  # ImportError, or a broken install
        return f"not available ({type(error).__name__}: {error})"


def collect() -> dict:
    """The facts ``info`` prints, as a dict (the benchmark stores them with its results)."""
    facts = {
        "fastact": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": _version("numpy"),
        "ml_dtypes": _version("ml_dtypes"),
        "cupy": _version("cupy"),
        "backend set": backends.get_backend(),
        "auto (host)": backends.host_backend().name,
        "backends": {},
    }
    for name in backends.LISTED:
        reason = backends.unavailable_reason(name)
        entry = {"available": reason is None}
        if reason is None:
            entry.update(backends.load(name).describe())
        else:
            entry["reason"] = reason
        facts["backends"][name] = entry
    return facts


def main(argv: list[str] | None = None) -> int:
    facts = collect()
    for key, value in facts.items():
        if key != "backends":
            print(f"{key:12s} {value}")
    print("backends:")
    for name, entry in facts["backends"].items():
        if entry["available"]:
            details = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("available", "name"))
            print(f"  {name:6s} available   {details}")
        else:
            print(f"  {name:6s} unavailable: {entry['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
