"""Backend selection (SPEC 3): auto, forcing by function, context and environment, fallback."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastact
from fastact import backends


@pytest.fixture(autouse=True)
def restore_backend():
    before = fastact.get_backend()
    yield
    fastact.set_backend(before)


def test_default_is_auto_and_numpy_is_always_available():
    assert fastact.get_backend() in backends.BACKEND_NAMES
    assert "numpy" in fastact.available_backends()
    assert "cuda-emulator" not in fastact.available_backends()


def test_set_backend_and_unknown_names():
    fastact.set_backend("numpy")
    assert fastact.get_backend() == "numpy"
    with pytest.raises(ValueError, match="unknown backend 'gpu'; accepted: auto, cpu, numpy, cuda, cuda-emulator"):
        fastact.set_backend("gpu")
    with pytest.raises(ValueError, match="unknown backend"):
        with fastact.use_backend("tpu"):
            pass


def test_use_backend_is_per_thread_and_nests():
    fastact.set_backend("auto")
    seen = {}

    def other_thread():
        seen["other"] = fastact.get_backend()

    with fastact.use_backend("numpy"):
        assert fastact.get_backend() == "numpy"
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        with fastact.use_backend("auto"):
            assert fastact.get_backend() == "auto"
        assert fastact.get_backend() == "numpy"
    assert seen["other"] == "auto"
    assert fastact.get_backend() == "auto"


def test_auto_runs_numpy_arrays_on_numpy():
    y = fastact.relu(np.array([-1.0, 1.0]))
    assert isinstance(y, np.ndarray)


@pytest.mark.skipif("cuda" in fastact.available_backends(), reason="this test is for machines without a usable GPU")
def test_explicit_cuda_without_gpu_raises_with_the_reason():
    reason = backends.unavailable_reason("cuda")
    assert reason  # e.g. CuPy missing, or the driver error text
    with fastact.use_backend("cuda"):
        with pytest.raises(fastact.BackendUnavailableError) as info:
            fastact.relu(np.array([1.0]))
    assert str(info.value) == reason
    # auto still works, quietly on NumPy.
    assert isinstance(fastact.relu(np.array([1.0])), np.ndarray)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def test_environment_variable_sets_the_default():
    done = _run("import fastact; print(fastact.get_backend())", FASTACT_BACKEND="numpy")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "numpy"
    bad = _run("import fastact", FASTACT_BACKEND="opencl")
    assert bad.returncode != 0 and "unknown backend 'opencl'" in bad.stderr


def test_import_does_not_import_cupy():
    done = _run("import sys, fastact, numpy; fastact.relu(numpy.ones(3)); print('cupy' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_info_command_runs():
    done = subprocess.run([sys.executable, "-m", "fastact", "info"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "numpy" in done.stdout and "cuda" in done.stdout


@pytest.mark.skipif(backends.unavailable_reason("cuda") is None, reason="a GPU is here: the benchmark would run")
def test_gpu_benchmark_without_a_gpu_says_why():
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "gpu_fused.py")
    done = subprocess.run([sys.executable, script, "--repeats", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "bench/gpu_fused.py needs a CUDA GPU: backend 'cuda' is not available" in done.stderr
