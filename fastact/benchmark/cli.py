"""``python -m fastact bench``: the command line of the benchmark."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import report
from .runner import DIRECTIONS, BenchConfig, run
from .timing import FULL, QUICK, Budget

QUICK_SIZES = (1 << 16, 1 << 20)
_SIZE = re.compile(r"^\s*(?:2\*\*(\d+)|(\d+)\s*([KMG]?))\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """An element count: 1048576, 2**20 or 1M (K, M, G are powers of 1024)."""
    match = _SIZE.match(text)
    if not match or (match.group(1) is None and match.group(2) is None):
        raise argparse.ArgumentTypeError(f"not an element count: {text!r} (use 1048576, 2**20 or 1M)")
    if match.group(1) is not None:
        return 1 << int(match.group(1))
    return int(match.group(2)) << (10 * " KMG".index(match.group(3).upper() or " "))


def _names(values: list[str] | None) -> list[str] | None:
    """Names given space- or comma-separated."""
    return None if values is None else [name for value in values for name in value.split(",") if name]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastact bench",
        description=(
            "Time fastact's activations forward and backward against the naive NumPy/CuPy expression "
            "(fastact.reference.NAIVE), PyTorch where installed (like for like: out= against out= where PyTorch's "
            "kernel has it, else both allocating; same thread count; results checked equal), and a copy/add roofline "
            "measured in the same run. Progress goes to stderr; the Markdown table to stdout unless "
            "--json/--markdown/--plot say otherwise."
        ),
    )
    parser.add_argument(
        "--backend", default="auto", metavar="NAME",
        help="the fastact backend to time, as fastact.use_backend takes it: numpy, cpu, cuda ... "
        "(default: auto, what fastact picks for NumPy arrays; cuda runs on the GPU with CuPy arrays)",
    )
    parser.add_argument("--ops", nargs="+", metavar="OP", help="ops to run (default: every elementwise activation, prelu and the fused calls fastact has)")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE", help="float16 bfloat16 float32 float64 (default: float32)")
    parser.add_argument(
        "--sizes", nargs="+", type=parse_size, metavar="N",
        help="sizes in elements of x: 1048576, 2**20 or 1M (default: 2**14 2**18 2**22 2**25; --quick: 2**16 2**20)",
    )
    parser.add_argument("--direction", choices=("forward", "backward", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="small sizes and short timing (under 30 s on 2 CPU cores)")
    parser.add_argument("--reps", type=int, help="fixed number of timed calls per measurement (default: about 0.25 s worth)")
    parser.add_argument("--json", metavar="PATH", help="write the result (with machine metadata) as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown table ('-' for stdout)")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of GB/s against size (needs matplotlib)")
    parser.add_argument("--from-json", metavar="PATH", help="do not run: read a stored result and write --markdown/--plot from it")
    parser.add_argument("--note", default="", help="a remark stored with the machine metadata (e.g. 'shared machine')")
    return parser


def config_from(args: argparse.Namespace) -> BenchConfig:
    budget = QUICK if args.quick else FULL
    if args.reps is not None:
        budget = Budget(seconds=0, min_reps=args.reps, max_reps=args.reps, warmup_seconds=0, reps=args.reps)
    return BenchConfig(
        backend=args.backend,
        ops=_names(args.ops),
        dtypes=tuple(_names(args.dtypes) or ("float32",)),
        sizes=tuple(args.sizes or (QUICK_SIZES if args.quick else BenchConfig.sizes)),
        directions=DIRECTIONS if args.direction == "both" else (args.direction,),
        budget=budget,
        note=args.note,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = report.read_json(args.from_json) if args.from_json else run(config_from(args))
    if args.json:
        report.write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        report.plot(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    table = report.markdown(result)
    if args.markdown and args.markdown != "-":
        Path(args.markdown).write_text(table)
        print(f"wrote {args.markdown}", file=sys.stderr)
    elif args.markdown == "-" or not (args.json or args.plot):
        sys.stdout.write(table)
    return 0
