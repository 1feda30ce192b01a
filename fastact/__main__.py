"""``python -m fastact info`` (and, with the benchmark, ``python -m fastact bench``)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m fastact info")
        return 0
    if argv[0] == "info":
        from ._info import main as info

        return info(argv[1:])
    print(f"unknown command {argv[0]!r}; try: info", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
