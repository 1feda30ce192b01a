"""fastact.torch runs the cpu backend's kernels on torch's OpenMP threads: same results, torch's thread count.

(fastact/backends/cpu/threads.py says why.)  Each test that switches between the module's
own pool and torch's runtime puts back what it found.  Skipped without torch or the cpu backend.
"""
from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest

import fastact
from fastact import backends
from fastact.backends.cpu import threads

torch = pytest.importorskip("torch")
from fastact.torch import _threads  # noqa: E402  (importing fastact.torch shares torch's threads)

pytestmark = pytest.mark.skipif(bool(backends.unavailable_reason("cpu")), reason="the cpu backend is not built here")
RUNTIME = _threads.torch_openmp_runtime()
needs_runtime = pytest.mark.skipif(RUNTIME is None, reason="torch's OpenMP runtime cannot be found here "
                                   "(not Linux, or torch built without OpenMP): fastact keeps its own pool")


@pytest.fixture
def engine():
    module = backends.load("cpu").engine
    before = threads._runtime
    yield module
    threads.run_on_openmp(before)


@needs_runtime
def test_torch_runtime_is_a_loaded_openmp_library_and_fastact_runs_on_it(engine):
    assert RUNTIME in _threads.loaded_files()
    assert "omp" in RUNTIME.rsplit("/", 1)[1]
    assert engine.on_openmp()
    assert backends.load("cpu").describe()["thread pool"] == f"OpenMP runtime {RUNTIME}"


@needs_runtime
def test_thread_count_follows_torch_set_num_threads(engine):
    own_pool = engine.threads()
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert engine.threads() == 1
        x = np.linspace(-3, 3, 1 << 20, dtype=np.float32)
        np.testing.assert_array_equal(fastact.leaky_relu(x, 0.1), np.where(x > 0, x, np.float32(0.1) * x))
    finally:
        torch.set_num_threads(previous)
    assert engine.threads() == min(own_pool, previous) or not engine.on_openmp()


def test_a_runtime_that_is_not_loaded_is_refused(engine):
    was = engine.on_openmp()
    assert engine.use_openmp("/no/such/folder/libgomp.so.1") is False
    assert engine.on_openmp() == was  # nothing changed


def _results() -> list[np.ndarray]:
    """Calls whose tasks reduce across threads (dbias, dalpha, softmax rows) and plain elementwise ones,
    large enough to be split over threads."""
    rng = np.random.default_rng(7)
    z = rng.standard_normal((16, 32, 40, 40)).astype(np.float32)
    dy = rng.standard_normal(z.shape).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    alpha = rng.uniform(0.0, 0.3, (32, 1, 1)).astype(np.float32)
    rows = rng.standard_normal((512, 1000))
    with fastact.use_backend("cpu"):
        return [
            fastact.gelu(z), fastact.bias_act(z, bias, "leaky_relu"),
            *fastact.bias_act_backward(dy, z, bias, "elu"), *fastact.prelu_backward(dy, z, alpha),
            fastact.softmax(rows, -1), fastact.log_softmax_backward(rows, rows, -1),
            *fastact.conv2d_bias_act_backward(dy[:, :8, :12, :12], z[:, :4, :14, :14],
                                              rng.standard_normal((8, 4, 3, 3)).astype(np.float32), bias[:8], "relu"),
        ]


@needs_runtime
def test_same_bits_on_torch_threads_as_on_the_own_pool(engine):
    threads.run_on_openmp(None)
    assert not engine.on_openmp()
    own = _results()
    threads.run_on_openmp(RUNTIME)
    assert engine.on_openmp()
    for got, expected in zip(_results(), own):
        np.testing.assert_array_equal(got, expected)


def _fastact_in_a_forked_child(queue) -> None:
    engine = backends.load("cpu").engine
    x = np.linspace(-3, 3, 1 << 20, dtype=np.float32)
    queue.put((engine.on_openmp(), float(fastact.gelu(x).sum()), float(fastact.gelu(x[::-1]).sum())))


@needs_runtime
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork")
def test_a_forked_child_runs_fastact_on_its_own_pool(engine):
    # libgomp's threads do not survive fork, but its state says they do: a team in the child would wait for
    # them for ever.  The child goes back to fastact's own pool (as the study's --jobs workers need).
    x = torch.randn(1 << 20)
    torch.nn.functional.gelu(x)
    fastact.gelu(x.numpy())  # the parent's OpenMP team exists and has run fastact's tasks
    assert engine.on_openmp()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fastact_in_a_forked_child, args=(queue,))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        pytest.fail("fastact hung in a forked child")
    on_openmp, total, reversed_total = queue.get(timeout=10)
    assert not on_openmp
    assert child.exitcode == 0 and total == pytest.approx(reversed_total)


@needs_runtime
def test_bench_torch_ops_measures_both_pools(tmp_path):
    # bench/bench_torch_ops.py's threads section and training step switch fastact between the two pools.
    import json
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_torch_ops.py"
    out = tmp_path / "report.json"
    subprocess.run([sys.executable, str(script), "--quick", "--training-only", "--json", str(out)], check=True,
                   capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    threads_section = report["threads"]
    assert threads_section["runtime"] == RUNTIME
    for key in ("own pool over torch threads", "torch threads over torch leaky_relu_",
                "torch threads over torch F.leaky_relu"):
        assert threads_section[key]["ratio"]["median"] > 0
    assert all(piece["median"] > 0 for piece in report["bias"]["times"].values()) and len(report["bias"]["times"]) == 8
    training = report["training"]
    assert training["step"]["ratio"]["median"] > 0 and training["step on fastact's own pool"]["ratio"]["median"] > 0
