"""A tiny run of the benchmark harness, so that `python -m fastact bench` cannot rot.

Runs the real code path in-process on tiny sizes with one or two timed calls
and checks the JSON's shape and that every number is positive and finite; it
says nothing about speed.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fastact import __main__ as fastact_main
from fastact import reference
from fastact.benchmark import byte_model, cli, report, workloads
from fastact.benchmark.runner import SCHEMA, BenchConfig, run
from fastact.benchmark.timing import Budget

TINY = Budget(seconds=0, min_reps=2, max_reps=2, warmup_seconds=0, reps=2)
STATS_KEYS = {"median", "p20", "p80", "reps"}
MACHINE_KEYS = {"cpu", "cores", "gpu", "numpy", "cupy", "torch", "fastact", "git_commit", "date"}


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_stats(stats: dict) -> None:
    assert set(stats) == STATS_KEYS
    assert all(positive(stats[key]) for key in STATS_KEYS)
    assert stats["p20"] <= stats["median"] <= stats["p80"]


def check_result(result: dict) -> None:
    assert result["schema"] == SCHEMA
    assert MACHINE_KEYS <= set(result["machine"])
    json.dumps(result, allow_nan=False)  # valid JSON: no NaN or inf anywhere
    for row in result["rows"]:
        assert not row["errors"], row["errors"]
        assert {"op", "direction", "dtype", "size", "bytes", "time_s", "gbps", "baselines"} <= set(row)
        check_stats(row["time_s"])
        assert positive(row["bytes"]) and positive(row["gbps"])
        if row.get("roofline"):
            check_stats(row["roofline"]["time_s"])
            assert positive(row["roofline_share"])
        for baseline in row["baselines"].values():
            check_stats(baseline["time_s"])
            assert positive(baseline["speedup"])


@pytest.fixture(scope="module")
def tiny_result() -> dict:
    config = BenchConfig(sizes=(4096,), dtypes=("float32", "float16"), budget=TINY)
    return run(config, progress=lambda line: None)


def test_every_op_and_direction_is_measured(tiny_result):
    check_result(tiny_result)
    ops = set(workloads.available_ops())
    assert {"relu", "prelu"} <= ops
    measured = {(row["op"], row["direction"], row["dtype"]) for row in tiny_result["rows"]}
    assert measured == {(op, d, t) for op in ops for d in ("forward", "backward") for t in ("float32", "float16")}


def test_naive_baselines_come_from_the_reference(tiny_result):
    for row in tiny_result["rows"]:
        if row["op"] in reference.NAIVE:
            assert "naive" in row["baselines"], row["op"]


def test_byte_model_counts_each_operand_once():
    x = 4096 * 4
    assert byte_model.bytes_moved("elementwise", "forward", {"x": x, "y": x}) == 2 * x
    assert byte_model.bytes_moved("elementwise", "backward", {"x": x, "y": x}) == 3 * x
    assert byte_model.bytes_moved("prelu", "backward", {"x": x, "y": x, "alpha": 256}) == 3 * x + 2 * 256
    assert byte_model.bytes_moved("add", "backward", {"x": x, "y": x}) == 3 * x


def test_roofline_moves_the_bytes_of_the_activation(tiny_result):
    for row in tiny_result["rows"]:
        if row["op"] in workloads.available_ops() and row["op"] not in ("prelu", "bias_act") and row.get("roofline"):
            assert row["roofline"]["bytes"] == row["bytes"]


def test_markdown_has_a_row_per_result(tiny_result):
    table = report.markdown(tiny_result)
    assert table.count("\n| relu |") == 4  # forward/backward x float32/float16
    assert "AMD" in table or tiny_result["machine"]["cpu"] in table


def test_command_line_writes_json_and_markdown(tmp_path, capsys):
    path = tmp_path / "result.json"
    code = fastact_main.main(["bench", "--ops", "relu,prelu", "--sizes", "2**12", "--reps", "1", "--direction", "backward", "--json", str(path), "--markdown", "-"])
    assert code == 0
    result = json.loads(path.read_text())
    check_result(result)
    assert [(r["op"], r["direction"]) for r in result["rows"]] == [("relu", "backward"), ("prelu", "backward")]
    out = capsys.readouterr()
    assert "| prelu | 2^12 |" in out.out
    assert "[  2/2] prelu backward" in out.err  # progress on stderr


def test_markdown_from_stored_json(tmp_path, tiny_result, capsys):
    path = tmp_path / "stored.json"
    report.write_json(tiny_result, path)
    assert cli.main(["--from-json", str(path)]) == 0
    assert "### backward, float16" in capsys.readouterr().out


@pytest.mark.parametrize("text,size", [("1048576", 1 << 20), ("2**20", 1 << 20), ("1M", 1 << 20), ("64k", 1 << 16)])
def test_sizes_parse(text, size):
    assert cli.parse_size(text) == size


def test_unknown_op_names_the_available_ones():
    with pytest.raises(SystemExit, match="available here: relu"):
        run(BenchConfig(ops=["nope"], sizes=(1024,), budget=TINY))


def test_cuda_backend_refused_cleanly_without_a_gpu():
    from fastact import backends

    if backends.unavailable_reason("cuda") is None:
        pytest.skip("a CUDA device is usable here")
    with pytest.raises(SystemExit, match="--backend cuda"):
        run(BenchConfig(backend="cuda", sizes=(1024,), budget=TINY))


def test_plot_writes_a_png(tmp_path, tiny_result):
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    report.plot(tiny_result, path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_info_is_dispatched_to_fastact_info(monkeypatch):
    calls = []
    monkeypatch.setattr("fastact._info.main", lambda argv: calls.append(argv) or 0)
    assert fastact_main.main(["info", "--verbose"]) == 0
    assert calls == [["--verbose"]]


def test_a_missing_command_module_is_reported_clearly(monkeypatch, capsys):
    monkeypatch.setitem(fastact_main.COMMANDS, "info", ("fastact._no_such_module", "help"))
    with pytest.raises(SystemExit):
        fastact_main.main(["info"])
    assert "not available in this version" in capsys.readouterr().err


def test_workload_inputs_are_not_modified():
    """The shared input pool relies on every implementation leaving its inputs alone."""
    from fastact.benchmark.devices import HostDevice

    pool = workloads.ArrayPool(HostDevice())
    for op, form in workloads.available_ops().items():
        workload = workloads.build(op, form, "backward", np.dtype("float32"), 4096, pool, None)
        args = workload.make_args(0)
        before = {name: a.copy() for name, a in args.items() if name != "out"}
        for call in workload.implementations.values():
            call(args)
        for name, a in before.items():
            np.testing.assert_array_equal(args[name], a, err_msg=f"{op}: {name} modified")
