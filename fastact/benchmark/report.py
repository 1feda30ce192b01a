"""Turn a result (the dict :func:`fastact.benchmark.run` returns) into Markdown or a PNG plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASELINE_COLUMNS = (("naive", "x naive"), ("torch", "x torch"), ("fastact_new", "x fastact alloc"))


def format_size(size: int) -> str:
    """2**20 as '2^20'; other sizes as they are."""
    return f"2^{size.bit_length() - 1}" if size > 0 and size & (size - 1) == 0 else str(size)


def _milliseconds(time_s: dict) -> str:
    return f"{time_s['median'] * 1e3:.3g} ({time_s['p20'] * 1e3:.3g}–{time_s['p80'] * 1e3:.3g})"


def _throughput(row: dict) -> str:
    if row.get("gflops") is not None:
        return f"{row['gflops']:.1f} GFLOP/s"
    return f"{row['gbps']:.1f} GB/s"


def _speedup(row: dict, name: str) -> str:
    if name in row["baselines"]:
        baseline = row["baselines"][name]
        return f"{baseline['speedup']:.2f}" + (f" ({baseline['mode']})" if baseline.get("mode") else "")
    if name == "torch" and "differs" in row["errors"].get("torch", ""):
        return "differs"
    return "error" if name in row["errors"] else "—"


def _cells(row: dict) -> list[str]:
    head = [row["op"], format_size(row["size"])]
    if "time_s" not in row:
        return head + [f"failed: {row['errors'].get('fastact', '?')}"] + [""] * (2 + len(BASELINE_COLUMNS))
    share = row.get("roofline_share")
    share_cell = "—" if share is None else f"{share:.0%} of {row['roofline']['name']}"
    baselines = [_speedup(row, name) for name, _ in BASELINE_COLUMNS]
    return head + [_milliseconds(row["time_s"]), _throughput(row), share_cell] + baselines


def machine_line(result: dict) -> str:
    m = result["machine"]
    device = m.get("gpu") or f"{m['cpu']}, {m['cores']} cores"
    versions = ", ".join(f"{name} {m[name]}" for name in ("fastact", "numpy", "cupy", "torch") if m.get(name))
    commit = f", commit {m['git_commit']}" if m.get("git_commit") else ""
    note = f" {m['note']}" if m.get("note") else ""
    return f"{device} ({result['config']['backend']} backend); {versions}{commit}; {m['date']}.{note}"


def _threads(result: dict) -> str:
    m = result["machine"]
    return f"{m.get('torch_threads')} threads" if m.get("torch_threads") else "see method"


def markdown(result: dict) -> str:
    """The result as Markdown: one table per (direction, dtype), rows by op then size."""
    header = ["op", "size", "ms median (p20–p80)", "throughput", "roofline", *(title for _, title in BASELINE_COLUMNS)]
    lines = [
        f"Machine: {machine_line(result)}",
        "",
        "Speed-ups are baseline time / fastact time (above 1: fastact is faster). fastact writes into a "
        "preallocated `out=` (elementwise activations, PReLU, bias_act forward; the other fused calls allocate); the naive "
        "NumPy expression allocates its result; `x fastact alloc` compares with fastact allocating too. `x torch` is like "
        "for like: `(out)` PyTorch's kernel writing into a preallocated `out=` against fastact's `out=` call, `(alloc)` "
        "both allocating (PyTorch has no `out=` overload there, or fastact's call takes none); PyTorch runs with "
        f"fastact's thread count ({_threads(result)}) and its result was checked equal to fastact's. "
        "GB/s counts each operand read or written once.",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in result["rows"]:
        groups.setdefault((row["direction"], row["dtype"]), []).append(row)
    for (direction, dtype), rows in groups.items():
        lines += ["", f"### {direction}, {dtype}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in sorted(rows, key=lambda r: (list(result["config"]["ops"]).index(r["op"]), r["size"])):
            lines.append("| " + " | ".join(_cells(row)) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str | Path) -> None:
    """GB/s against size, fastact per op and the roofline, one panel per (dtype, direction)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit(f"--plot needs matplotlib, which is not installed here (pip install matplotlib): {error}") from error
    panels = list(dict.fromkeys((row["dtype"], row["direction"]) for row in result["rows"] if row.get("roofline")))
    if not panels:
        raise SystemExit("--plot: no memory-bound rows to plot")
    columns = min(2, len(panels))  # forward and backward side by side, one row per dtype
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
    for axis, (dtype, direction) in zip(axes.flat, panels):
        panel = [r for r in result["rows"] if (r["dtype"], r["direction"]) == (dtype, direction) and r.get("roofline")]
        # tab20 colours and two line styles: more than ten ops must stay distinguishable.
        for number, op in enumerate(dict.fromkeys(r["op"] for r in panel)):
            mine = [r for r in panel if r["op"] == op]
            style = {"color": plt.cm.tab20(number % 20), "linestyle": "-" if number < 10 else ":"}
            axis.plot([r["size"] for r in mine], [r["gbps"] for r in mine], marker="o", label=op, **style)
        roof = {r["size"]: r["roofline"]["gbps"] for r in panel}
        axis.plot(sorted(roof), [roof[s] for s in sorted(roof)], "k--", label=panel[0]["roofline"]["name"] + " (roofline)")
        axis.set_xscale("log", base=2)
        axis.set(xlabel="elements", ylabel="GB/s (useful bytes)", title=f"{direction}, {dtype}")
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: format_size(int(v))))
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    figure.suptitle(machine_line(result)[:120], fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
