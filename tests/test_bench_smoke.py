"""A tiny run of the benchmark harness, so that `python -m fastact bench` cannot rot.

Runs the real code path in-process on tiny sizes with one or two timed calls
and checks the JSON's shape and that every number is positive and finite; it
says nothing about speed.  The harness is tested on the NumPy backend (any
other would do: it reaches backends only through ``fastact.use_backend``);
the backends' correctness is their own tests' business.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import fastact
from fastact import __main__ as fastact_main
from fastact import reference
from fastact.benchmark import byte_model, cli, report, workloads
from fastact.benchmark.runner import SCHEMA, BenchConfig, run
from fastact.benchmark.timing import Budget

TINY = Budget(seconds=0, min_reps=2, max_reps=2, warmup_seconds=0, reps=2)
BACKEND = "numpy"
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
    config = BenchConfig(backend=BACKEND, sizes=(4096,), dtypes=("float32", "float16"), budget=TINY)
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
    code = fastact_main.main(["bench", "--backend", BACKEND, "--ops", "relu,prelu", "--sizes", "2**12", "--reps", "1", "--direction", "backward", "--json", str(path), "--markdown", "-"])
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
        run(BenchConfig(backend=BACKEND, ops=["nope"], sizes=(1024,), budget=TINY))


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


# --------------------------------------------------------------------------- #
# Like-for-like PyTorch comparisons and bench/bench_vs_torch.py.
# --------------------------------------------------------------------------- #
EXPECTED_TORCH_MODES = {  # (op, direction) -> mode; everything else elementwise is "out"
    ("mish", "backward"): "alloc",
    ("prelu", "forward"): "alloc",
    ("prelu", "backward"): "alloc",
    ("bias_act", "forward"): "out",
    ("bias_act", "backward"): "alloc",
    ("dense_bias_act", "forward"): "alloc",
    ("dense_bias_act", "backward"): "alloc",
    ("conv2d_bias_act", "forward"): "alloc",
    ("conv2d_bias_act", "backward"): "alloc",
}


def _torch_baseline():
    pytest.importorskip("torch")
    from fastact.benchmark.torch_baselines import TorchBaseline

    return TorchBaseline.load("numpy")


def test_torch_rows_are_like_for_like(tiny_result):
    pytest.importorskip("torch")
    machine = tiny_result["machine"]
    assert machine["torch_threads"] == machine["fastact_threads"] == machine["fastact_backend"]["threads"]
    for row in tiny_result["rows"]:
        if row["op"] == "linear":  # PyTorch has no such activation
            assert "torch" not in row
            continue
        torch_info = row["torch"]
        assert torch_info["mode"] == EXPECTED_TORCH_MODES.get((row["op"], row["direction"]), "out"), row["op"]
        assert torch_info["check"]["ok"], (row["op"], row["direction"], row["dtype"], torch_info["check"])
        baseline = row["baselines"]["torch"]
        assert baseline["mode"] == torch_info["mode"]
        # The speed-up is over the fastact call that handles its output as PyTorch does.
        against = row["baselines"].get("fastact_new") if torch_info["against"] == "fastact_new" else None
        own = against["time_s"]["median"] if against else row["time_s"]["median"]
        assert baseline["speedup"] == pytest.approx(baseline["time_s"]["median"] / own)


def test_torch_threads_are_restored_after_a_run():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before != 1 else 2)
    try:
        changed = torch.get_num_threads()
        config = BenchConfig(backend=BACKEND, ops=["relu"], sizes=(1024,), directions=("forward",), budget=TINY)
        result = run(config, progress=lambda line: None)
        assert result["machine"]["torch_threads"] == result["machine"]["fastact_threads"]
        assert torch.get_num_threads() == changed
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_computes_the_same_function_for_every_op(dtype):
    """Every op, variants included (gelu_tanh, prelu_scalar), both directions, every benchmarked dtype."""
    torch = _torch_baseline()
    from fastact.benchmark.devices import HostDevice, resolve_dtype

    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    device = HostDevice()
    for op, form in workloads.ops_with_variants().items():
        for direction in ("forward", "backward"):
            with fastact.use_backend(BACKEND):
                check = workloads.check_torch(op, form, direction, resolve_dtype(dtype), device, torch)
            if op == "linear":
                assert check is None
                continue
            assert check is not None and check["ok"], (op, direction, check)


@pytest.mark.parametrize(
    "name,ours,theirs",
    [
        ("leaky_relu", {"alpha": 0.1}, {"alpha": 0.2}),  # another slope
        ("gelu", {}, {"approximate": True}),  # exact against the tanh form: 5e-4 apart at most
        ("elu", {"alpha": 1.0}, {"alpha": 0.5}),
        ("thresholded_relu", {"theta": 1.0}, {"theta": 0.5}),
    ],
)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_the_same_function_check_catches_other_parameters(name, ours, theirs, direction):
    import dataclasses

    torch = _torch_baseline()
    from fastact.benchmark.devices import HostDevice

    form = workloads.elementwise_form(name, ours)
    defaults = workloads._defaults(name)
    other = dataclasses.replace(form, torch=lambda tb, d: tb.activation(name, {**defaults, **theirs}, d))
    device = HostDevice()
    with fastact.use_backend(BACKEND):
        assert workloads.check_torch(name, form, direction, np.dtype("float32"), device, torch)["ok"]
        check = workloads.check_torch(name, other, direction, np.dtype("float32"), device, torch)
    assert not check["ok"] and check["max_error"] > check["tolerance"]


def test_compare_counts_results_and_matches_nan():
    torch = _torch_baseline()
    from fastact.benchmark.torch_baselines import compare

    a = np.array([1.0, np.nan, np.inf, -2.0], np.float32)
    assert compare(torch, a, torch.torch.from_numpy(a.copy()), "float32")["ok"]
    assert not compare(torch, (a, a), torch.torch.from_numpy(a), "float32")["ok"]
    b = a.copy()
    b[0] = 1.5
    assert not compare(torch, a, torch.torch.from_numpy(b), "float32")["ok"]


def test_a_differing_torch_result_is_not_timed(monkeypatch):
    pytest.importorskip("torch")
    from fastact.benchmark import runner

    monkeypatch.setattr(runner, "check_torch", lambda *args: {"ok": False, "max_error": 1.0, "tolerance": 1e-5})
    result = run(BenchConfig(backend=BACKEND, ops=["relu"], sizes=(1024,), directions=("forward",), budget=TINY), progress=lambda line: None)
    (row,) = result["rows"]
    assert "torch" not in row["baselines"] and "differs" in row["errors"]["torch"]
    assert "| relu | 2^10 |" in report.markdown(result) and "differs" in report.markdown(result)


def test_interleaved_alternates_and_rotates():
    from fastact.benchmark.timing import MIN_WARMUP_CALLS, interleaved, rotating

    order = []
    timed = interleaved(
        {"a": lambda r: order.append(("a", r)), "b": rotating(lambda args: order.append(("b", args)), [0, 1, 2, 3], 2)},
        Budget(seconds=0, reps=4),
    )
    assert timed.rounds == 4 and set(timed.times) == {"a", "b"}
    timed_calls = order[2 * MIN_WARMUP_CALLS:]
    assert [name for name, _ in timed_calls] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert [value for name, value in timed_calls if name == "b"] == [2, 3, 0, 1]  # half a rotation from a's sets
    ratio = timed.ratio("a", "b")
    assert {"median", "p20", "p80", "min", "max", "best"} <= set(ratio) and all(positive(v) for v in ratio.values())


def test_backend_flag_takes_fastact_names():
    from fastact.benchmark import machine

    assert cli.build_parser().parse_args([]).backend == "auto"
    info = machine.fastact_backend("auto")
    assert info["requested"] == "auto" and info["name"] and info["threads"] >= 1
    assert machine.fastact_backend("numpy")["name"] == "numpy"
    with pytest.raises(SystemExit, match="no-such-backend"):
        run(BenchConfig(backend="no-such-backend", sizes=(1024,), budget=TINY))


def _bench_vs_torch():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "bench_vs_torch.py"
    spec = importlib.util.spec_from_file_location("bench_vs_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_VS_TORCH = ["--backend", BACKEND, "--quick", "--reps", "2", "--sizes", "4096", "--roofline-size", "2**14", "--conv-size", "2**14"]


def test_bench_vs_torch_quick_paths(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("ml_dtypes")
    bench = _bench_vs_torch()
    json_path, md_path = tmp_path / "vs.json", tmp_path / "vs.md"
    argv = [*TINY_VS_TORCH, "--ops", "relu,prelu_scalar,mish", "--dtypes", "float32,bfloat16",
            "--json", str(json_path), "--markdown", str(md_path)]
    assert bench.main(argv, progress=lambda line: None) == 0
    result = json.loads(json_path.read_text())
    json.dumps(result, allow_nan=False)
    assert result["schema"] == bench.SCHEMA
    m = result["machine"]
    assert {"cpu", "isa", "cores", "numpy", "torch", "date", "fastact_backend", "fastact_threads", "torch_threads"} <= set(m)
    assert m["torch_threads"] == m["fastact_threads"]
    rows = {(r["op"], r["direction"], r["dtype"]): r for r in result["ratios"]}
    assert set(rows) == {(op, d, t) for op in ("relu", "prelu_scalar", "mish") for d in ("forward", "backward") for t in ("float32", "bfloat16")}
    assert rows[("relu", "forward", "float32")]["mode"] == "out"
    assert rows[("mish", "backward", "bfloat16")]["mode"] == rows[("prelu_scalar", "forward", "float32")]["mode"] == "alloc"
    for row in rows.values():
        assert row["check"]["ok"] and row["rounds"] == 2
        assert all(positive(row["ratio"][k]) for k in ("median", "min", "best"))
    assert [r["op"] for r in result["roofline"]] == ["relu", "prelu_scalar"]  # the memory-bound ones
    for row in result["roofline"]:
        assert positive(row["forward"]["fastact_over_roofline"]["median"]) and positive(row["backward"]["fastact_over_roofline"]["median"])
    assert [r["op"] for r in result["overhead"]] == ["relu", "prelu_scalar", "mish"]
    assert all(r["check"]["ok"] and positive(r["ratio"]["median"]) for r in result["overhead"])
    assert "conv" not in result  # not among --ops
    table = md_path.read_text()
    assert "| relu | float32 | out |" in table and "| mish | bfloat16 | alloc |" in table and "ISA" in table


def test_bench_vs_torch_conv_and_a_differing_result(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    bench = _bench_vs_torch()
    assert bench.main([*TINY_VS_TORCH, "--ops", "conv2d_bias_act", "--markdown", "-"], progress=lambda line: None) == 0
    out = capsys.readouterr().out
    assert "## conv2d_bias_act, float32, x (1, 16, 32, 32)" in out and "| backward |" in out
    # A PyTorch call computing something else is reported, not timed, and fails the run.
    monkeypatch.setattr(bench, "check_torch", lambda *args: {"ok": False, "max_error": 0.5, "tolerance": 1e-5})
    argv = [*TINY_VS_TORCH, "--ops", "relu", "--dtypes", "float32", "--sections", "ratio", "--markdown", "-"]
    assert bench.main(argv, progress=lambda line: None) == 1
    out = capsys.readouterr().out
    assert "| relu | float32 | out | differs |" in out and "differ from PyTorch's" in out


def test_interleaved_settles_on_other_inputs():
    from fastact.benchmark.timing import MIN_WARMUP_CALLS, interleaved

    seen = []
    timed = interleaved({"a": seen.append}, Budget(seconds=0, reps=3), settle_seconds=0.001)
    assert timed.rounds == 3
    # Settling calls (many: one call is far shorter than a millisecond) get the previous round's inputs;
    # the timed call of round r is the only one with r.
    after_warm_up = seen[MIN_WARMUP_CALLS:]
    assert set(after_warm_up) == {-1, 0, 1, 2} and after_warm_up.count(2) == 1 and after_warm_up.count(-1) > 1
