"""From one record per training run to one row per (network, regime, activation): means over seeds with 95% intervals."""
from __future__ import annotations

from typing import Any

import numpy as np

from .grid import StudyConfig
from .layers import parse_nonlinearity
from .stats import mean_interval

REFERENCE = "relu"  # the activation every other one is compared with, seed by seed


def summarize(config: StudyConfig, records: dict) -> list[dict]:
    """One row per (network, regime, activation) in the config's order; ``records`` maps Task -> train_run's record.

    Accuracy counts every run (a diverged one as it ended); dead fractions, losses and
    PReLU slopes are means over the runs that did not diverge (None when all did).
    ``vs_relu``: the accuracy difference to relu with the same seed (same initial
    weights and batches), mean and 95% interval, where relu is in the study.
    """
    cells: dict = {}
    for task, record in records.items():
        cells.setdefault((task.network, task.regime, task.activation), {})[task.seed] = record
    labels = {text: parse_nonlinearity(text).label for text in config.activations}
    rows = []
    for network in config.networks:
        for regime in config.regimes():
            reference = cells.get((network, regime, REFERENCE))
            for activation in config.activations:
                runs = cells[(network, regime, activation)]
                rows.append(_row(network, regime, labels[activation], runs, reference if activation != REFERENCE else None))
    return rows


def _row(network: str, regime: Any, label: str, runs: dict, reference: dict | None) -> dict:
    seeds = sorted(runs)
    accuracy = [runs[s]["final_test_accuracy"] for s in seeds]
    kept = [runs[s] for s in seeds if not runs[s]["diverged"]]
    row = {
        "network": network,
        "regime": regime.describe(),
        "activation": label,
        "seeds": seeds,
        "test_accuracy": mean_interval(accuracy),
        "test_accuracy_per_seed": accuracy,
        "vs_relu": None,
        "diverged": len(seeds) - len(kept),
        "dead_fraction": _mean_lists([r["dead_fraction"][-1] for r in kept]),
        "dead_fraction_at_start": _mean_lists([runs[s]["dead_fraction"][0] for s in seeds]),
        "dead_fraction_per_epoch": [_mean_lists(epoch) for epoch in zip(*(r["dead_fraction"] for r in kept))],
        "max_dead_fraction": _mean_lists([np.max(r["dead_fraction"], axis=0).tolist() for r in kept]),
        "train_loss": [float(np.mean(epoch)) for epoch in zip(*(r["train_loss"] for r in kept))],
        "test_accuracy_per_epoch": [float(np.mean(epoch)) for epoch in zip(*(r["test_accuracy"] for r in kept))],
        "seconds": float(np.mean([runs[s]["seconds"] for s in seeds])),
    }
    if reference is not None:
        paired = [s for s in seeds if s in reference]
        row["vs_relu"] = mean_interval([runs[s]["final_test_accuracy"] - reference[s]["final_test_accuracy"] for s in paired])
    if any("prelu_slopes" in r for r in kept):
        row["prelu_slopes"] = [
            {key: float(np.mean([r["prelu_slopes"][layer][key] for r in kept])) for key in ("mean", "min", "max")}
            for layer in range(len(kept[0]["prelu_slopes"]))
        ]
    return row


def _mean_lists(lists: list) -> list[float] | None:
    """The elementwise mean of equal-length lists (per hidden layer); None for no lists."""
    return np.mean(np.asarray(lists, dtype=np.float64), axis=0).tolist() if len(lists) else None
