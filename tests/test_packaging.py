"""A wheel built from the repository, installed in a fresh virtual environment outside the checkout,
runs fastact.relu and finds the CUDA sources (issue 2's acceptance)."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_in_fresh_venv(tmp_path):
    wheel_dir = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(wheel_dir.glob("fastact-*.whl"))
    env_dir = tmp_path / "venv"
    # System site packages give numpy without a download; the venv's own
    # site-packages comes first, so the wheel's fastact is the one imported.
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    expected = sorted(p.name for p in (REPO / "cuda").iterdir() if p.suffix in (".cu", ".cuh", ".h"))
    check = f"""
import fastact, numpy as np
from fastact.cuda_sources import source_dir
assert "{env_dir}" in fastact.__file__, fastact.__file__
assert "{env_dir}" in str(source_dir()), source_dir()
assert fastact.relu(np.array([-1.0, 2.0])).tolist() == [0.0, 2.0]
print(sorted(p.name for p in source_dir().iterdir() if p.suffix in (".cu", ".cuh", ".h")))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(python), "-c", check], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(expected)
