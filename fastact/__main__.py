"""``python -m fastact COMMAND``: ``info`` (versions, backends, device) and ``bench`` (the benchmark).

Each command parses its own options (``python -m fastact bench --help``).
Commands are imported only when run, so ``info`` never pays for the benchmark
and neither needs a GPU.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help); each module has main(argv) -> int.
COMMANDS = {
    "info": ("fastact._info", "versions, the backends available here (and why one is not), the device"),
    "bench": ("fastact.benchmark.cli", "time every activation forward and backward against the baselines"),
    "gpu-model": ("fastact.gpu_model.cli", "static model of the CUDA kernels on H100/H200 (SASS per element, predicted share of copy)"),
    "study": ("fastact.study.cli", "when is Leaky ReLU better than ReLU? train small networks with each activation and compare"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastact", description="fastact's command-line tools; python -m fastact COMMAND --help for a command's options.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    module_name = COMMANDS[args.command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        parser.exit(2, f"python -m fastact {args.command}: not available in this version of fastact ({module_name} is missing)\n")
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
