"""The study's result as Markdown tables, JSON and a PNG plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REGIME_LEGEND = "columns: learning rate · hidden bias init · depth"


def _percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _interval(stat: dict | None, signed: bool = False) -> str:
    """'97.2 ±0.8' (percent, mean ± the 95% interval's half width); one seed: the mean alone."""
    if stat is None or stat["mean"] is None:
        return "—"
    mean = f"{100 * stat['mean']:+.1f}" if signed else f"{100 * stat['mean']:.1f}"
    if stat["low"] is None:
        return mean
    return f"{mean} ±{100 * (stat['high'] - stat['mean']):.1f}"


def _layers(values: list[float] | None) -> str:
    return "—" if values is None else " / ".join(f"{100 * v:.0f}" for v in values)


def regime_label(regime: dict) -> str:
    return f"{regime['lr']} · {regime['bias']} · {regime['depth']}"


def _architecture(network: str, layers: list) -> str:
    if network == "mlp":
        return f"{len(layers)} dense x {layers[0]}"
    return "conv3x3 " + ", ".join(f"{c}" + (f"/s{s}" if s > 1 else "") for c, s in layers)


def settings_lines(result: dict) -> list[str]:
    config, data = result["config"], result["data"]
    machine = result["machine"]
    regimes = {}
    for row in result["rows"]:
        regimes.setdefault(row["regime"]["lr"], row["regime"]["learning_rate"])
    biases = {row["regime"]["bias"]: row["regime"]["bias_init"] for row in result["rows"]}
    depths = sorted({(row["network"], row["regime"]["depth"]) for row in result["rows"]})
    return [
        f"Data: {data['name']} ({data['train']} training / {data['test']} test examples of shape "
        f"{'x'.join(map(str, data['shape']))}, {data['classes']} classes). "
        f"{config['optimizer'].upper()}{' (momentum 0.9)' if config['optimizer'] == 'sgd' else ''}, batches of "
        f"{config['batch_size']}, {config['epochs']} epochs, seeds {config['seed']}..{config['seed'] + config['seeds'] - 1} "
        f"(the same initial weights and batch order for every activation of a seed), {config['dtype']} on {config['device']}.",
        "Regimes: learning rate " + ", ".join(f"{k} = {v:g}" for k, v in regimes.items())
        + "; hidden bias init " + ", ".join(f"{k} = {v:g}" for k, v in biases.items())
        + "; depth " + "; ".join(f"{n} {d} = {_architecture(n, config['architectures'][n][d])}" for n, d in depths) + ".",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; fastact {machine['fastact']}"
        + (f" (commit {machine['git_commit']})" if machine.get("git_commit") else "")
        + f", numpy {machine['numpy']}; {machine['date']}; {result['wall_seconds'] / 60:.1f} minutes.",
    ]


def _pivot(rows: list[dict], network: str, cell: Any, title: str) -> list[str]:
    mine = [r for r in rows if r["network"] == network]
    regimes = list(dict.fromkeys(regime_label(r["regime"]) for r in mine))
    activations = list(dict.fromkeys(r["activation"] for r in mine))
    by_key = {(r["activation"], regime_label(r["regime"])): r for r in mine}
    lines = [f"**{network.upper()}: {title}** ({REGIME_LEGEND})", "", "| activation | " + " | ".join(regimes) + " |",
             "|---|" + "---:|" * len(regimes)]
    for activation in activations:
        lines.append(f"| {activation} | " + " | ".join(cell(by_key[(activation, g)]) for g in regimes) + " |")
    return lines + [""]


def _accuracy_cell(row: dict) -> str:
    text = _interval(row["test_accuracy"])
    return text + (f" ({row['diverged']} div.)" if row["diverged"] else "")


def _dead_cell(row: dict) -> str:
    """Mean over hidden layers, at the start -> at the end."""
    start, end = row["dead_fraction_at_start"], row["dead_fraction"]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return f"{_percent(mean(start), 0)} → {'—' if end is None else _percent(mean(end), 0)}"


def summary_markdown(result: dict) -> str:
    """The pivot tables: accuracy, difference to relu, dead units; one set per network."""
    rows = result["rows"]
    lines = []
    for network in dict.fromkeys(r["network"] for r in rows):
        lines += _pivot(rows, network, _accuracy_cell, "test accuracy, % (mean ±95% interval over seeds)")
        if any(r["vs_relu"] for r in rows if r["network"] == network):
            lines += _pivot(rows, network, lambda r: "(reference)" if r["vs_relu"] is None else _interval(r["vs_relu"], signed=True),
                            "accuracy minus relu's with the same seed, percentage points (mean ±95% interval)")
        lines += _pivot(rows, network, _dead_cell, "dead hidden units, % (mean over layers; at initialization → after training)")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """Settings, the pivot tables, then every row with per-layer detail."""
    header = ["network", "regime", "activation", "test acc. %", "vs relu, pp", "dead % per layer: start", "end",
              "max", "final train loss", "diverged", "PReLU slopes per layer (mean [min, max])"]
    lines = ["# fastact study: when is Leaky ReLU better than ReLU?", "", *settings_lines(result), "",
             "A unit is dead when its pre-activation is <= 0 on every training example (a conv unit: a channel, "
             "at every position); measured the same way for every activation.", "", summary_markdown(result),
             "**Every row** (dead units per hidden layer, first to last; means over the runs that did not diverge)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        slopes = row.get("prelu_slopes")
        slope_text = "—" if not slopes else "; ".join(f"{s['mean']:.2f} [{s['min']:.2f}, {s['max']:.2f}]" for s in slopes)
        loss = f"{row['train_loss'][-1]:.3g}" if row["train_loss"] else "—"
        cells = [row["network"], regime_label(row["regime"]), row["activation"], _interval(row["test_accuracy"]),
                 "—" if row["vs_relu"] is None else _interval(row["vs_relu"], signed=True),
                 _layers(row["dead_fraction_at_start"]), _layers(row["dead_fraction"]), _layers(row["max_dead_fraction"]),
                 loss, f"{row['diverged']}/{len(row['seeds'])}", slope_text]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1) + "\n")


def read_json(path: str | Path) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"--from-json {path}: cannot read a study result: {error}") from error
    if not isinstance(result, dict) or "rows" not in result or "config" not in result:
        raise ValueError(f"--from-json {path}: not a study result (no 'rows' and 'config')")
    return result


def plot(result: dict, path: str | Path) -> None:
    """Per network: test accuracy per regime and activation (95% intervals); dead units per epoch in each regime."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit(f"--plot needs matplotlib, which is not installed here (pip install matplotlib): {error}") from error
    rows = result["rows"]
    networks = list(dict.fromkeys(r["network"] for r in rows))
    regimes = list(dict.fromkeys(regime_label(r["regime"]) for r in rows))
    activations = list(dict.fromkeys(r["activation"] for r in rows))
    colors = {a: ("black" if a == "relu" else plt.cm.tab10((i - ("relu" in activations)) % 10)) for i, a in enumerate(activations)}
    figure = plt.figure(figsize=(max(10, 2.2 * len(regimes)), 7 * len(networks)))
    grid = figure.add_gridspec(2 * len(networks), len(regimes), height_ratios=[3, 2] * len(networks), hspace=0.55)
    width = 0.8 / len(activations)
    for n, network in enumerate(networks):
        axis = figure.add_subplot(grid[2 * n, :])
        for a, activation in enumerate(activations):
            mine = {regime_label(r["regime"]): r for r in rows if r["network"] == network and r["activation"] == activation}
            xs, means, errors = [], [], [[], []]
            for g, regime in enumerate(regimes):
                stat = mine[regime]["test_accuracy"]
                xs.append(g - 0.4 + (a + 0.5) * width)
                means.append(stat["mean"])
                errors[0].append(0 if stat["low"] is None else stat["mean"] - stat["low"])
                errors[1].append(0 if stat["high"] is None else stat["high"] - stat["mean"])
            axis.errorbar(xs, means, yerr=errors, fmt="o", ms=4, capsize=2, color=colors[activation], label=activation)
        axis.set_xticks(range(len(regimes)), regimes, fontsize=8)
        axis.set(ylabel="test accuracy", title=f"{network.upper()}: test accuracy (mean, 95% interval over seeds); {REGIME_LEGEND}")
        axis.set_ylim(0, 1.02)
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: failed runs sit low
        for g, regime in enumerate(regimes):
            small = figure.add_subplot(grid[2 * n + 1, g])
            for activation in activations:
                row = next(r for r in rows if r["network"] == network and r["activation"] == activation and regime_label(r["regime"]) == regime)
                curve = [sum(layers) / len(layers) for layers in row["dead_fraction_per_epoch"]]
                small.plot(range(len(curve)), curve, color=colors[activation], lw=1.2)
            small.set_ylim(-0.03, 1.03)
            small.set_title(regime, fontsize=7)
            small.tick_params(labelsize=6)
            small.set_xlabel("epoch", fontsize=6)
            if g == 0:
                small.set_ylabel("dead units\n(mean over layers)", fontsize=7)
    config = result["config"]
    figure.suptitle(
        f"{result['data']['name']}, {config['optimizer']}, {config['epochs']} epochs, {config['seeds']} seeds; "
        "lower panels: dead hidden units per epoch (mean over layers and the runs that did not diverge)",
        fontsize=9, y=0.91,
    )
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
