"""``python -m fastact gpu-model [--arch 90] [--json FILE]``: a Markdown report, and JSON rows."""
from __future__ import annotations

import argparse
import json
import re
import sys

from .._arrays import SUPPORTED_DTYPES
from .targets import meets, target

GPUS = ("H100", "H200")


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def table(rows_json: list[dict]) -> str:
    head = ("| kernel | dtype | dir | vec B | regs | blocks/SM | instr/el | instr/el all sides | fp32+fp64 | f16x2 | mufu "
            "| conv | int | ctrl | mem | other | div. br/el | " + " | ".join(GPUS) + " | bound | target |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for j in rows_json:
        c = j["by_class_per_element"]
        goal = target(j["kernel"], j["dtype"])
        ok = meets(j)
        verdict = "" if goal is None else f"{'ok' if ok else 'UNDER'} ({_percent(goal[0])}{', 16 B' if goal[1] else ''})"
        lines.append(
            f"| {j['kernel']} | {j['dtype']} | {'fwd' if j['direction'] == 'forward' else 'bwd'} | {j['vector_bytes']} "
            f"| {j['registers']} | {j['resident_blocks_per_sm'][GPUS[0]]} | {j['instructions_per_element']:.1f} "
            f"| {j['instructions_per_element_divergent']:.1f} "
            f"| {c['fp32'] + c['fp64']:.1f} | {c['fp16x2']:.1f} | {c['mufu']:.1f} | {c['conversion']:.1f} | {c['integer']:.1f} "
            f"| {c['control']:.1f} | {c['memory']:.2f} | {c['other']:.1f} | {j['divergent_branches_per_element']:.2f} | "
            + " | ".join(_percent(j["predicted"][g]) for g in GPUS) + f" | {j['bound'][GPUS[-1]]} | {verdict} |")
    return "\n".join(lines)


def summary(rows_json: list[dict]) -> str:
    judged = [j for j in rows_json if meets(j) is not None]
    under = [j for j in judged if not meets(j)]
    lines = [f"**Targets (issue 11):** {len(judged) - len(under)} of {len(judged)} rows with a target meet it; "
             f"{len(under)} under:", ""]
    groups: dict[str, list[str]] = {}
    for j in under:
        direction = "fwd" if j["direction"] == "forward" else "bwd"
        cell = f"{j['dtype']} {direction} {'/'.join(_percent(j['predicted'][g]) for g in GPUS)}"
        groups.setdefault(j["kernel"], []).append(cell)
    lines += [f"- {kernel}: {', '.join(cells)}" for kernel, cells in groups.items()]
    return "\n".join(lines)


def header(document: dict) -> str:
    model = document["model"]
    gpus = "; ".join(f"{name} {g['sms']} SMs at {g['clock_ghz']} GHz, copy {g['copy_tbps']} TB/s "
                     f"({'measured' if g['copy_measured'] else 'assumed'})"
                     for name, g in model["gpus"].items())
    return "\n".join([
        f"# Static model of fastact's CUDA kernels, sm_{document['arch']} (predictions, not measurements)", "",
        f"`python -m fastact gpu-model` (fastact/gpu_model; the model is in its docstring). NVRTC "
        f"{document['toolchain']['nvrtc']}, nvdisasm {document['toolchain']['nvdisasm']}; no GPU involved. "
        f"{gpus}; issue efficiency {_percent(model['issue_efficiency'])}. Instructions per element: the path of one "
        "iteration of the steady-state loop (data-dependent branches: the fall-through side, but never the side of "
        "special operands (NaN, infinity) nor a slow-path call); "
        "'all sides': with the other sides of those branches. Shares: predicted share of copy bandwidth.", ""])


def _toolchain() -> dict:
    import subprocess

    from cupy.cuda import nvrtc

    from .build import nvdisasm_path

    text = subprocess.run([nvdisasm_path(), "--version"], capture_output=True, text=True).stdout
    release = re.search(r"V(\d+\.\d+\.\d+)", text)
    return {"nvrtc": ".".join(map(str, nvrtc.getVersion())), "nvdisasm": release.group(1) if release else "?"}


def main(argv=None) -> int:
    from . import __doc__ as doc
    from .build import ToolMissing, nvdisasm_path, require_nvrtc

    parser = argparse.ArgumentParser(prog="python -m fastact gpu-model", description=doc.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, choices=[90],
                        help="compute capability to compile for: 90 (H100/H200, the GPUs of the model)")
    parser.add_argument("--json", metavar="FILE", help='also write {"rows": [...]} to FILE')
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
    rows = [r.as_json() for r in analyze(cases, args.arch, args.jobs, not args.no_cache)]
    for row in rows:
        row["meets_target"] = meets(row)
    document = {"arch": args.arch, "toolchain": _toolchain(), "model": _model_json(), "rows": rows}
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(json.dumps(document, indent=1) + "\n")
    print("\n".join([header(document), summary(rows), "", table(rows)]))
    return 0


def _model_json() -> dict:
    from . import hardware

    return {"issue_efficiency": hardware.ISSUE_EFFICIENCY,
            "gpus": {g.name: {"sms": g.sms, "clock_ghz": g.clock_ghz, "copy_tbps": g.copy_tbps,
                              "copy_measured": g.copy_measured,
                              "issue_per_clock": g.issue_per_clock, "mufu_per_clock": g.mufu_per_clock,
                              "fp64_per_clock": g.fp64_per_clock,
                              "conversion64_per_clock": g.conversion64_per_clock} for g in hardware.GPUS}}
