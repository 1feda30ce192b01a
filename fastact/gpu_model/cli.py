"""``python -m fastact gpu-model [--arch 90] [--json FILE]``: the table, or JSON rows."""
from __future__ import annotations

import argparse
import json
import sys

from .._arrays import SUPPORTED_DTYPES


def markdown(rows, gpus=("H100", "H200")) -> str:
    head = ("| kernel | dtype | dir | vec B | regs | blocks/SM | instr/el | fp32 | f16x2 | mufu | conv | int | ctrl "
            "| mem | other | div br/el | " + " | ".join(f"{g}" for g in gpus) + " | bound |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        j = row.as_json()
        c = j["by_class_per_element"]
        lines.append(
            f"| {j['kernel']} | {j['dtype']} | {'fwd' if j['direction'] == 'forward' else 'bwd'} | {j['vector_bytes']} "
            f"| {j['registers']} | {j['resident_blocks_per_sm'][gpus[0]]} | {j['instructions_per_element']:.1f} "
            f"| {c['fp32'] + c['fp64']:.1f} | {c['fp16x2']:.1f} | {c['mufu']:.1f} | {c['conversion']:.1f} | {c['integer']:.1f} "
            f"| {c['control']:.1f} | {c['memory']:.2f} | {c['other']:.1f} | {j['divergent_branches_per_element']:.2f} | "
            + " | ".join(f"{100 * j['predicted'][g]:.0f}%" for g in gpus) + f" | {j['bound'][gpus[-1]]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from . import __doc__ as doc
    from .build import ToolMissing, nvdisasm_path, require_nvrtc

    parser = argparse.ArgumentParser(prog="python -m fastact gpu-model", description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability to compile for (default 90: H100/H200)")
    parser.add_argument("--json", metavar="FILE", help='write {"rows": [...]} to FILE ("-": standard output)')
    parser.add_argument("--dtype", nargs="+", choices=SUPPORTED_DTYPES, default=list(SUPPORTED_DTYPES))
    parser.add_argument("--kernel", nargs="+", metavar="NAME",
                        help="only rows whose kernel label starts with one of these (e.g. gelu prelu bias_act softmax)")
    parser.add_argument("--jobs", type=int, default=None, help="NVRTC compiles at once (default: min(4, CPUs))")
    parser.add_argument("--no-cache", action="store_true", help="recompile even when the cache has the sources' build")
    args = parser.parse_args(argv)
    try:
        require_nvrtc()
        nvdisasm_path()
    except ToolMissing as error:
        print(f"gpu-model: {error}", file=sys.stderr)
        return 2
    from .analyze import analyze
    from .cases import all_cases

    cases = [c for c in all_cases(tuple(args.dtype))
             if not args.kernel or any(c.label.startswith(k) for k in args.kernel)]
    if not cases:
        parser.error(f"no kernel matches {args.kernel}")
    rows = analyze(cases, args.arch, args.jobs, not args.no_cache)
    if args.json:
        text = json.dumps({"arch": args.arch, "model": _model_json(), "rows": [r.as_json() for r in rows]}, indent=1)
        if args.json == "-":
            print(text)
            return 0
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    print(markdown(rows))
    return 0


def _model_json() -> dict:
    from . import hardware

    return {"issue_efficiency": hardware.ISSUE_EFFICIENCY,
            "gpus": {g.name: {"sms": g.sms, "clock_ghz": g.clock_ghz, "copy_tbps": g.copy_tbps,
                              "issue_per_clock": g.issue_per_clock, "mufu_per_clock": g.mufu_per_clock,
                              "fp64_per_clock": g.fp64_per_clock,
                              "conversion64_per_clock": g.conversion64_per_clock} for g in hardware.GPUS}}
