"""``bash bench/gpu_proof.sh OUTDIR --dry-run`` runs every step that can run without a GPU and writes its files.

So that the proof's first run on a GPU machine is not its first run: the
steps, their logs, the summary, the test selection (collected), the probe
(on the emulator), the benchmark command (on the emulator, tiny) and the
summary's parsing of their outputs all run here.  About 30-60 s.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["info", "precompile", "tests", "torch-tests", "memcheck", "racecheck", "bench"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="the proof script needs bash and coreutils' timeout")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("proof") / "out"
    env = {**os.environ, "PYTHON": sys.executable, "FASTACT_CUDA_CACHE": str(out.parent / "cache")}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_proof.sh"), str(out), "--dry-run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    return out, done


def test_every_step_runs_and_passes(dry_run):
    out, done = dry_run
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "steps.json").read_text())
    assert result["mode"] == "dry-run"
    assert [s["step"] for s in result["steps"]] == STEPS
    failed = {s["step"]: (out / s["log"]).read_text()[-2000:] for s in result["steps"] if s["status"] != "ok"}
    assert not failed, failed
    assert result["all_ok"] and result["total_seconds"] <= result["budget_seconds"]
    for step in STEPS:
        assert (out / "logs" / f"{step}.log").stat().st_size > 0


def test_the_summary_has_a_row_per_step(dry_run):
    out, _ = dry_run
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# GPU proof (dry-run)") and "all steps passed" in summary
    for step in STEPS:
        assert f"| {step} | ok |" in summary


def test_info_and_the_gpu_test_selection(dry_run):
    out, _ = dry_run
    assert "backends:" in (out / "info.txt").read_text()
    tests_log = (out / "logs" / "tests.log").read_text()
    collected = next(line for line in tests_log.splitlines() if "tests collected" in line)
    assert int(collected.split("/")[0]) > 1000  # the cuda-parametrized cases, collected
    result = json.loads((out / "steps.json").read_text())
    assert result["tests"]["tests"] > 0 and result["tests"]["failures"] == 0 and result["tests"]["errors"] == 0


def test_the_sanitizer_steps_say_what_they_would_run_and_the_probe_passes(dry_run):
    out, _ = dry_run
    for tool in ("memcheck", "racecheck"):
        log = (out / "logs" / f"{tool}.log").read_text()
        assert f"--tool {tool} --error-exitcode 1" in log and "bench/cuda_probe.py --no-pool" in log
        assert "0 of " in log and "calls differ from the NumPy backend" in log and "FAIL" not in log


def test_the_benchmark_wrote_json_and_markdown(dry_run):
    out, _ = dry_run
    bench = json.loads((out / "bench.json").read_text())
    ops = {row["op"] for row in bench["rows"]}
    assert ops == {"relu", "softmax"} and all(not row["errors"] for row in bench["rows"])
    assert {row["dtype"] for row in bench["rows"]} == {"float16", "float32"}
    assert (out / "bench.md").read_text().strip()


def test_a_bad_command_line_is_refused():
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_proof.sh")], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: bash bench/gpu_proof.sh OUTDIR [--dry-run]" in done.stderr
