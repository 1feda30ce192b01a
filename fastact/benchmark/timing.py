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


class Interleaved:
    """Seconds per call of several implementations timed round by round (see :func:`interleaved`)."""

    def __init__(self, times: dict[str, np.ndarray]) -> None:
        self.times = times

    @property
    def rounds(self) -> int:
        return int(next(iter(self.times.values())).size)

    def stats(self, name: str) -> Stats:
        return Stats.of(self.times[name])

    def best(self, name: str) -> float:
        return float(self.times[name].min())

    def ratio(self, a: str, b: str) -> dict:
        """time(a) / time(b): per round (median, p20, p80, min, max) and of the best times (``best``).

        Each round's calls run back to back, so a per-round ratio cancels the
        bandwidth drift of a shared machine that a ratio of two separately
        taken medians would carry.
        """
        per_round = self.times[a] / self.times[b]
        p20, median, p80 = np.percentile(per_round, [20, 50, 80])
        return {
            "median": float(median),
            "p20": float(p20),
            "p80": float(p80),
            "min": float(per_round.min()),
            "max": float(per_round.max()),
            "best": self.best(a) / self.best(b),
        }


def interleaved(
    calls: dict[str, Callable[[int], Any]],
    budget: Budget,
    *,
    number: int = 1,
    settle_seconds: float = 0.0,
    synchronize: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> Interleaved:
    """Time ``calls`` in alternation: each round times every call once, in a rotated order.

    The one timer the benchmarks share for A/B comparisons (fastact against
    PyTorch, an op against its roofline).  ``calls[name](round)`` runs
    ``number`` times per sample (for calls too short for one clock reading);
    the round number lets a call pick its input set (see :func:`rotating`).
    Round r starts with call r mod len(calls), so no call always follows the
    same other call (which could leave it a warmer cache or a cooler core).
    Each call is warmed up as :func:`measure` does; the number of rounds is
    sized so that timing takes about ``budget.seconds`` (or is
    ``budget.reps``); GC is paused.

    ``settle_seconds``: before each timed sample, untimed calls of the same
    implementation for about that long (none where one call takes longer).
    A thread pool that spin-waits after its work (libgomp's OpenMP workers,
    which PyTorch uses, spin for a while before sleeping) would otherwise
    take a core from whichever call follows it; settling times each side in
    its own steady state, as in a run of calls of its own.  Settling calls
    get round ``r - 1``, so the timed call's inputs are not warmed by them.

    ``clock``: wall time by default; ``time.thread_time`` (the calling thread's CPU
    time) for calls that run on the calling thread alone, where a loaded machine's
    descheduling would otherwise swamp microseconds.
    """
    names = list(calls)
    per_round = 0.0
    settle: dict[str, int] = {}
    for name in names:
        call = calls[name]
        made, start = 0, time.perf_counter()
        while made < MIN_WARMUP_CALLS or (budget.reps is None and time.perf_counter() - start < budget.warmup_seconds):
            call(0)
            made += 1
        synchronize()
        per_call = (time.perf_counter() - start) / made
        settle[name] = 0 if per_call >= settle_seconds else math.ceil(settle_seconds / max(per_call, 1e-9))
        per_round += per_call * (number + settle[name])
    rounds = budget.reps or int(min(budget.max_reps, max(budget.min_reps, math.ceil(budget.seconds / max(per_round, 1e-9)))))
    times = {name: np.empty(rounds) for name in names}
    collecting = gc.isenabled()
    gc.disable()  # as timeit does: a collection in the middle of a call is not the call's cost
    try:
        for r in range(rounds):
            for k in range(len(names)):
                name = names[(r + k) % len(names)]
                call = calls[name]
                for _ in range(settle[name]):
                    call(r - 1)  # the previous round's inputs: this round's stay as cold as without settling
                synchronize()
                start = clock()
                for _ in range(number):
                    call(r)
                synchronize()
                times[name][r] = (clock() - start) / number
    finally:
        if collecting:
            gc.enable()
    return Interleaved(times)


def rotating(call: Callable[[Any], Any], arg_sets: list, offset: int = 0) -> Callable[[int], Any]:
    """``round -> call(arg_sets[(round + offset) % len(arg_sets)])``: a call for :func:`interleaved`.

    Give each implementation a different ``offset`` (half the sets apart for
    two) so that none reads inputs another has just brought into cache.
    """
    return lambda r: call(arg_sets[(r + offset) % len(arg_sets)])
