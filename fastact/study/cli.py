"""``python -m fastact study``: train small networks with each activation and report what happened."""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import report
from .grid import BIAS_INITS, BIAS_LEVELS, DEFAULT_ACTIVATIONS, DEPTH_LEVELS, LEARNING_RATES, LR_LEVELS, NETWORKS, StudyConfig
from .layers import parse_nonlinearity
from .optim import OPTIMIZERS

# --quick: the shallow MLP with relu, two Leaky ReLU slopes and PReLU, the normal and the high
# learning rate, 2 seeds, 6 epochs: 16 runs, about 5 s of CPU time on the 2-core development VM
# (README, "When is Leaky ReLU better than ReLU?", has the wall time measured on the shared machine).
QUICK = {
    "networks": ("mlp",), "activations": ("relu", "leaky_relu:0.01", "leaky_relu:0.1", "prelu"),
    "bias": ("zero",), "depth": ("shallow",), "seeds": 2, "epochs": 6,
}


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """Names given space- or comma-separated."""
    return None if values is None else tuple(name for value in values for name in value.split(",") if name)


def _activations(values: list[str] | None) -> tuple[str, ...] | None:
    """Activations given space- or comma-separated; a comma also separates one's parameters
    (``leaky_relu:0.1,elu`` is two activations, ``relu:0,6`` one), so a piece that is not a name
    (a number, ``param=value``, true/false/none) continues the activation before it."""
    if values is None:
        return None
    activations: list[str] = []
    for piece in (piece.strip() for value in values for piece in value.split(",")):
        continues = "=" in piece.partition(":")[0] or not piece[:1].isalpha() or piece.lower() in ("true", "false", "none")
        if piece and continues and activations and ":" in activations[-1]:
            activations[-1] += "," + piece
        elif piece:
            activations.append(piece)
    return tuple(activations)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _finite_float(accept, what: str):
    """An argparse type: a finite float for which ``accept(value)`` holds (``what`` says which)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number {what}, got {text}")
        return value

    return parse


_positive_float = _finite_float(lambda value: value > 0, "> 0")
_negative_float = _finite_float(lambda value: value < 0, "< 0")


def build_parser() -> argparse.ArgumentParser:
    defaults = StudyConfig()
    parser = argparse.ArgumentParser(
        prog="python -m fastact study",
        description=(
            "When is Leaky ReLU better than ReLU? Train an MLP and a small CNN, built from fastact's fused calls "
            "forward and backward, with each activation, over seeds and regimes that provoke dying units (a high "
            "learning rate, negative bias init, depth), and report test accuracy (mean and 95%% interval over seeds) "
            "and the fraction of dead hidden units (pre-activation <= 0 on every training example) per layer and "
            "epoch. Progress goes to stderr; the Markdown tables to stdout unless --markdown/--json/--plot say otherwise."
        ),
    )
    parser.add_argument(
        "--activations", nargs="+", metavar="ACT",
        help="NAME or NAME:VALUE,... / NAME:param=VALUE (the registry's parameters; prelu:VALUE is its initial "
        f"slope), space- or comma-separated (default: {' '.join(DEFAULT_ACTIVATIONS)})",
    )
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, help=f"default: {' '.join(NETWORKS)}")
    parser.add_argument("--lr", nargs="+", choices=LR_LEVELS, help="learning-rate levels (default: both)")
    parser.add_argument("--bias", nargs="+", choices=BIAS_LEVELS, help="hidden bias init levels (default: both)")
    parser.add_argument("--depth", nargs="+", choices=DEPTH_LEVELS, help="depths (default: both)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer, help="sgd (momentum 0.9) or adam (default: sgd)")
    parser.add_argument("--normal-lr", type=_positive_float, metavar="LR",
                        help="the normal learning rate (default: " + ", ".join(f"{o} {v['normal']:g}" for o, v in LEARNING_RATES.items()) + ")")
    parser.add_argument("--high-lr", type=_positive_float, metavar="LR",
                        help="the high learning rate (default: " + ", ".join(f"{o} {v['high']:g}" for o, v in LEARNING_RATES.items()) + ")")
    parser.add_argument("--negative-bias", type=_negative_float, metavar="B", help=f"the negative bias init (default: {BIAS_INITS['negative']:g})")
    parser.add_argument("--epochs", type=_positive_int, help=f"default: {defaults.epochs}; --quick: {QUICK['epochs']}")
    parser.add_argument("--batch-size", type=_positive_int, help=f"default: {defaults.batch_size}")
    parser.add_argument("--seeds", type=_positive_int, help=f"seeds per cell (default: {defaults.seeds}; --quick: {QUICK['seeds']})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="the first seed; runs use SEED, SEED+1, ... (default: 0)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=defaults.dtype)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device,
                        help="cpu: NumPy arrays (fastact's host backend); cuda: CuPy arrays on the GPU (default: cpu)")
    parser.add_argument("--data", metavar="FILE.npz", help="an .npz with x_train, y_train, x_test, y_test (default: scikit-learn's digits)")
    parser.add_argument("--jobs", type=_positive_int, default=1, help="runs trained at once in worker processes (cpu only; default: 1)")
    parser.add_argument("--quick", action="store_true",
                        help="a small study: the shallow MLP, relu, leaky_relu 0.01 and 0.1, prelu, zero bias init, 2 seeds, 6 epochs "
                        "(under a minute on 2 cores); other flags still apply")
    parser.add_argument("--json", metavar="PATH", help="write the result (rows, per-run settings, machine) as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown tables ('-' for stdout)")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG: accuracy per activation and regime, dead units per epoch (needs matplotlib)")
    parser.add_argument("--from-json", metavar="PATH", help="do not train: read a stored result and write --markdown/--plot from it")
    return parser


def config_from(args: argparse.Namespace) -> StudyConfig:
    """The StudyConfig the flags ask for (--quick's settings first, then every flag given)."""
    config = StudyConfig(**QUICK) if args.quick else StudyConfig()
    rates = dict(LEARNING_RATES[args.optimizer])
    if args.normal_lr is not None:
        rates["normal"] = args.normal_lr
    if args.high_lr is not None:
        rates["high"] = args.high_lr
    given = {
        "activations": _activations(args.activations), "networks": _names(args.networks), "lr": _names(args.lr),
        "bias": _names(args.bias), "depth": _names(args.depth), "negative_bias": args.negative_bias,
        "epochs": args.epochs, "batch_size": args.batch_size, "seeds": args.seeds,
    }
    config = replace(
        config, optimizer=args.optimizer, learning_rates=rates, seed=args.seed, dtype=args.dtype, device=args.device,
        data=args.data, jobs=args.jobs, **{k: v for k, v in given.items() if v is not None},
    )
    for text in config.activations:
        parse_nonlinearity(text)  # a bad name or parameter fails here, before anything trains
    if len(set(config.activations)) != len(config.activations):
        raise ValueError(f"--activations: an activation is named twice: {list(config.activations)}")
    if config.jobs > 1 and config.device != "cpu":
        raise ValueError("--jobs > 1 runs worker processes, which only --device cpu supports (CUDA does not survive fork)")
    return config


class Progress:
    """A progress bar on stderr (one line per run where stderr is not a terminal, e.g. a log file)."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.started = time.perf_counter()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, done: int, total: int, task, record: dict) -> None:
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (total - done)
        bar = "#" * int(30 * done / total)
        what = (f"{task.network} {task.regime.name} {task.activation} seed {task.seed}: "
                f"acc {record['final_test_accuracy']:.3f}" + (" diverged" if record["diverged"] else ""))
        line = f"[{bar:<30}] {done}/{total} {elapsed:.0f}s, ~{eta:.0f}s left  {what}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150) + ("\n" if done == total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run(config: StudyConfig, progress=None) -> dict:
    """Load the data, train every run, summarize: the result dict (what --json writes)."""
    from ..benchmark.machine import git_commit, metadata
    from .data import load_digits, load_npz
    from .runner import DeviceData, run_tasks, tasks_of
    from .summary import summarize

    data = load_npz(config.data) if config.data else load_digits()
    if "cnn" in config.networks and not data.is_image:
        raise ValueError(f"--data {config.data}: the CNN needs images (N, H, W) or (N, H, W, C); this data is 2-d: use --networks mlp")
    machine = metadata({}, {"git_commit": git_commit()})  # the code that trains, taken before it does
    started = time.perf_counter()
    device_data = DeviceData.of(data, config.dtype, config.device)
    total = len(tasks_of(config))
    print(f"python -m fastact study: {total} training runs on {data.name}", file=sys.stderr, flush=True)
    records = run_tasks(config, device_data, progress or Progress())
    return {
        "config": config.describe(),
        "data": data.describe(),
        "machine": machine,
        "wall_seconds": time.perf_counter() - started,
        "rows": summarize(config, records),
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.from_json:
            result = report.read_json(args.from_json)
        else:
            result = run(config_from(args))
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        report.write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        report.plot(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    table = report.markdown(result)
    if args.markdown and args.markdown != "-":
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table)
        print(f"wrote {args.markdown}", file=sys.stderr)
    elif args.markdown == "-" or not (args.json or args.plot):
        sys.stdout.write(table)
    return 0
