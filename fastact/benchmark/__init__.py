"""fastact's benchmark: ``python -m fastact bench`` and the pytest-benchmark suite in bench/.

For each op (every elementwise activation in the registry, PReLU, and the
fused calls fastact has), direction, dtype and size it measures the median
time per call with p20/p80, GB/s from :func:`.byte_model.bytes_moved`, the
share of a copy (forward) or add (backward) roofline measured in the same run
at the same size, and the speed-up over the baselines a user would otherwise
write (``fastact.reference.NAIVE``, PyTorch where installed, compared like for
like: see :mod:`.torch_baselines`).  ``bench/bench_vs_torch.py`` uses the same
workloads for its interleaved fastact / PyTorch ratios.

Modules: :mod:`.workloads` (what is timed), :mod:`.byte_model` (bytes),
:mod:`.timing` (repetitions, statistics, the interleaved A/B timer),
:mod:`.torch_baselines` (PyTorch, like for like), :mod:`.devices` (host / CUDA
timers), :mod:`.runner` (the loop and the JSON rows), :mod:`.report`
(Markdown, plot), :mod:`.cli` (the command line).
"""
from __future__ import annotations

from .runner import SCHEMA, BenchConfig, run
from .timing import FULL, QUICK, Budget

__all__ = ["SCHEMA", "BenchConfig", "Budget", "FULL", "QUICK", "run"]
