"""pytest-benchmark suite: every op, forward and backward, fastact against the same baselines.

Not part of the default test run (pyproject's testpaths is ["tests"]).  Run::

    python -m pytest bench --benchmark-only
    FASTACT_BENCH_SIZES=2**16,2**22 FASTACT_BENCH_DTYPES=float32,float16 python -m pytest bench --benchmark-only
    FASTACT_BENCH_BACKEND=cuda python -m pytest bench --benchmark-only      # on a GPU machine

The workloads, baselines (``fastact.reference.NAIVE``, PyTorch where
installed), byte model and input rotation are those of ``python -m fastact
bench`` (:mod:`fastact.benchmark.workloads`); one benchmark group per op,
direction, dtype and size compares the implementations.  pytest-benchmark
times with its own clock: on the GPU every call is followed by a
synchronize, so small sizes include the launch and synchronization overhead
(``python -m fastact bench`` times with CUDA events instead).
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import fastact
from fastact.benchmark.cli import parse_size
from fastact.benchmark.devices import get_device, input_sets_needed, resolve_dtype
from fastact.benchmark.torch_baselines import TorchBaseline
from fastact.benchmark.workloads import ArrayPool, available_ops, build

BACKEND = os.environ.get("FASTACT_BENCH_BACKEND", "numpy")
SIZES = [parse_size(s) for s in os.environ.get("FASTACT_BENCH_SIZES", "2**20").split(",")]
DTYPES = os.environ.get("FASTACT_BENCH_DTYPES", "float32").split(",")
OPS = available_ops()
IMPLEMENTATIONS = ("fastact", "fastact_new", "naive", "torch")


@pytest.fixture(scope="session")
def device():
    return get_device(BACKEND)


@pytest.fixture(scope="session")
def pool(device):
    return ArrayPool(device)


@pytest.fixture(scope="session")
def torch_baseline(device):
    return TorchBaseline.load(device.name)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"n={s}")
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.parametrize("op", list(OPS))
def test_activation(benchmark, device, pool, torch_baseline, op, direction, dtype_name, size, implementation):
    workload = build(op, OPS[op], direction, resolve_dtype(dtype_name), size, pool, torch_baseline)
    if workload is None:
        pytest.skip(f"size {size} does not fit {op}'s shapes")
    call = workload.implementations.get(implementation)
    if call is None:
        pytest.skip(f"no {implementation} implementation of {op} here")
    # Fewer sets than `python -m fastact bench` rotates through where PyTorch builds a graph per set.
    sets = input_sets_needed(workload.nbytes, device.cache_bytes)
    arg_sets = [workload.make_args(i) for i in range(sets if implementation != "torch" else min(sets, 64))]
    for args in arg_sets:
        workload.prepare.get(implementation, lambda args: None)(args)
    rotation = itertools.cycle(arg_sets)

    def one_call():
        call(next(rotation))
        device.synchronize()

    benchmark.group = f"{op} {direction} {dtype_name} n={size}"
    benchmark.extra_info.update(bytes=workload.nbytes, backend=BACKEND, input_sets=len(arg_sets))
    with fastact.use_backend(BACKEND):
        benchmark(one_call)
    benchmark.extra_info["gbps"] = workload.nbytes / benchmark.stats.stats.median / 1e9
