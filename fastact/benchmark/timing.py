"""Repetition policy and statistics: warm up, pick a repetition count, report percentiles.

Medians with the 20th and 80th percentiles (as Liger-Kernel reports them):
the median resists the occasional slow call on a shared machine, and p20/p80
show how much the calls spread.
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Budget:
    """How long to measure one implementation at one size.

    ``reps`` fixes the repetition count (tests use 1 or 2); otherwise the count
    is chosen so that timing takes about ``seconds``, within [min_reps, max_reps].
    """

    seconds: float = 0.25
    min_reps: int = 10
    max_reps: int = 5000
    warmup_seconds: float = 0.05
    reps: int | None = None

    def as_dict(self) -> dict:
        return {
            "seconds_per_measurement": self.seconds,
            "min_reps": self.min_reps,
            "max_reps": self.max_reps,
            "warmup_seconds": self.warmup_seconds,
            "fixed_reps": self.reps,
        }


QUICK = Budget(seconds=0.01, min_reps=3, max_reps=500, warmup_seconds=0.005)
# At least this many warm-up calls: PyTorch and the thread pools set themselves up on the first few.
MIN_WARMUP_CALLS = 3
FULL = Budget()


@dataclass(frozen=True)
class Stats:
    """Seconds per call: median, 20th and 80th percentile, and how many calls were timed."""

    median: float
    p20: float
    p80: float
    reps: int

    @classmethod
    def of(cls, times: np.ndarray) -> "Stats":
        p20, median, p80 = np.percentile(times, [20, 50, 80])
        return cls(float(median), float(p20), float(p80), int(times.size))

    def as_dict(self) -> dict:
        return {"median": self.median, "p20": self.p20, "p80": self.p80, "reps": self.reps}


def _warm_up(device: Any, call: Callable, args: Any, budget: Budget) -> float:
    """Call for warmup_seconds and at least MIN_WARMUP_CALLS times (thread pools, kernel compilation).

    Returns the mean seconds per call seen, to size the timed run.
    """
    calls, start = 0, time.perf_counter()
    while calls < MIN_WARMUP_CALLS or (budget.reps is None and time.perf_counter() - start < budget.warmup_seconds):
        call(args)
        calls += 1
    device.synchronize()
    return (time.perf_counter() - start) / calls


def measure(
    device: Any,
    call: Callable[[Any], Any],
    arg_sets: list,
    budget: Budget,
    prepare: Callable[[Any], None] | None = None,
) -> Stats:
    """Time ``call(args)`` over the rotating ``arg_sets`` on ``device``; garbage collection paused.

    Warm-up runs on the first input set; the timed calls then rotate through
    no more sets than there are timed calls, and ``prepare`` (building, say,
    PyTorch's autograd graph) runs only on the sets used, before timing.
    Input sets are written when they are made, so their pages are mapped.
    """
    prepare = prepare or (lambda args: None)
    prepare(arg_sets[0])
    per_call = _warm_up(device, call, arg_sets[0], budget)
    reps = budget.reps or int(min(budget.max_reps, max(budget.min_reps, math.ceil(budget.seconds / per_call))))
    used = arg_sets[:reps]
    for args in used[1:]:
        prepare(args)
    collecting = gc.isenabled()
    gc.disable()  # as timeit does: a collection in the middle of a call is not the call's cost
    try:
        times = device.time_calls(call, used, reps)
    finally:
        if collecting:
            gc.enable()
    return Stats.of(times)
