"""The cuda backend's host path without a GPU: its caches are keyed right, and the CUBIN is whole.

Runs fastact's real CudaBackend on the null device of ``bench/null_cuda.py``
(CuPy arrays over host memory, launches recorded, nothing computed), which
needs CuPy but no GPU; ``bench/host_overhead.py`` times the same path.  What
is checked is which kernel and which packed parameters each call launches:

* the same op, parameters, dtype and device reuse one entry (packed functor,
  kernel handle, launch plan): a repeated call plans nothing and looks
  nothing up;
* different parameters, dtypes or devices get their own entries, functors and
  kernels.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import fastact
from fastact.backends.kernels import plan

cupy = pytest.importorskip("cupy", reason="the null CUDA device is made of CuPy arrays")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import null_cuda  # noqa: E402


@pytest.fixture
def backend():
    with null_cuda.installed() as b, null_cuda.recording():
        yield b


def launched(since: int = 0) -> list[tuple[str, bytes]]:
    """(kernel name, packed functor bytes) of each launch recorded since index ``since``."""
    return [(name, args[0].tobytes()) for name, _, _, args in null_cuda.LAUNCHES[since:]]


def test_a_repeated_call_reuses_its_entry_and_plans_nothing(backend, monkeypatch):
    x = null_cuda.array((16, 64), "float32")
    expected = plan.activation_kernel("forward", "relu", x.dtype, 4, "int")  # 16-byte vectors, 32-bit indices
    first = fastact.leaky_relu(x, 0.1)  # the general path: builds the entry
    assert type(first) is null_cuda.NullDeviceArray and first.shape == x.shape
    fastact.leaky_relu(x, 0.1)  # the first fast call: plans this launch once
    entries = dict(backend._elementwise_entries)

    def fail(*args, **kwargs):
        raise AssertionError("a repeated call planned or looked up a kernel again")

    # The fast path: no launch plan, no kernel name, no kernel lookup, no functor packing.
    monkeypatch.setattr(plan, "elementwise_launch", fail)
    monkeypatch.setattr(plan, "activation_kernel", fail)
    monkeypatch.setattr(plan, "pack_functor", fail)
    monkeypatch.setattr(backend, "kernel_handle", fail)
    for _ in range(3):
        fastact.leaky_relu(x, 0.1)
        fastact.leaky_relu(x, 0.1, out=first)
    assert backend._elementwise_entries == entries
    calls = launched()
    assert len(calls) == 8 and len(set(calls)) == 1 and calls[0][0] == expected


def test_different_parameters_get_different_functors(backend):
    x = null_cuda.array((8, 32), "float32")
    fastact.leaky_relu(x, 0.1)
    fastact.leaky_relu(x, 0.25)
    fastact.leaky_relu(x, 0.1)
    (name_a, functor_a), (name_b, functor_b), (name_c, functor_c) = launched()
    assert name_a == name_b == name_c  # one kernel (the Relu functor), three launches
    assert functor_a != functor_b and functor_a == functor_c
    assert np.frombuffer(functor_a[:4], np.float32)[0] == np.float32(0.1)
    assert np.frombuffer(functor_b[:4], np.float32)[0] == np.float32(0.25)
    # gelu's approximate flag: same kernel template, a different functor.
    fastact.gelu(x, approximate=True)
    fastact.gelu(x, approximate=False)
    (_, exact_tanh), (_, exact_erf) = launched(3)
    assert exact_tanh != exact_erf


def test_different_dtypes_and_directions_get_different_kernels(backend):
    names = set()
    for dtype in ("float16", "float32", "float64"):
        x = null_cuda.array((8, 32), dtype)
        fastact.silu(x)
        fastact.silu_backward(x, x)
    for name, _ in launched():
        names.add(name)
    assert len(names) == 6
    assert sum("__half" in n for n in names) == 2 and sum("double" in n for n in names) == 2
    assert sum("activation_backward" in n for n in names) == 3
    # float64 computes in double: its functor is the double instantiation.
    assert all(("<double>" in n) == ("double," in n) for n in names)


def test_the_launch_plan_follows_the_pointers_alignment(backend):
    base = null_cuda.array((4 * 64 + 1,), "float32")
    aligned, shifted = base[:256], base[1:257]
    fastact.relu(aligned)
    fastact.relu(shifted)
    fastact.relu(aligned)
    (aligned_name, _), (shifted_name, _), (again, _) = launched()
    assert aligned_name.endswith(", int, 4>") and again == aligned_name
    # A view one element in is not 16-byte aligned: the scalar path, not the cached vector one.
    assert shifted_name.endswith(", int, 1>")


def test_each_device_gets_its_own_entries_and_kernels(backend):
    x0 = null_cuda.array((8, 32), "float32", device=0)
    x1 = null_cuda.array((8, 32), "float32", device=1)
    fastact.relu(x0)
    with null_cuda.NullDevice(1):
        fastact.relu(x1)
        fastact.relu(x1)
    fastact.relu(x0)
    devices = {key[-1] for key in backend._elementwise_entries}
    assert devices == {0, 1}
    assert {key[0] for key in backend._functions} == {0, 1}  # a kernel handle loaded per device
    names = [name for name, _ in launched()]
    assert len(names) == 4 and len(set(names)) == 1


def test_an_array_on_another_device_takes_the_general_path_there(backend):
    x1 = null_cuda.array((8, 32), "float32", device=1)
    y = fastact.relu(x1)  # the current device is 0: the general path enters device 1
    assert y.data.device_id == 1
    assert {key[-1] for key in backend._elementwise_entries} == {1}


def test_out_that_overlaps_an_input_in_part_is_refused(backend):
    base = null_cuda.array((300,), "float32")
    x, out = base[:256], base[4:260]
    fastact.relu(x)  # builds the entry
    before = len(null_cuda.LAUNCHES)
    with pytest.raises(ValueError, match="overlaps x in part"):
        fastact.relu(x, out=out)
    assert len(null_cuda.LAUNCHES) == before
    fastact.relu(x, out=x)  # in place is fine
    assert len(null_cuda.LAUNCHES) == before + 1


def test_pack_functor_is_cached_per_values_and_compute_dtype():
    a = plan.pack_functor("relu", {"alpha": 0.1, "max_value": None, "threshold": 0.0}, np.float32)
    b = plan.pack_functor("relu", {"alpha": 0.1, "max_value": None, "threshold": 0.0}, np.float16)
    c = plan.pack_functor("relu", {"alpha": 0.1, "max_value": None, "threshold": 0.0}, np.float64)
    d = plan.pack_functor("relu", {"alpha": 0.2, "max_value": None, "threshold": 0.0}, np.float32)
    assert a is b  # float16 computes in float32: the same struct
    assert c is not a and c.dtype["alpha"] == np.float64 and a.dtype["alpha"] == np.float32
    assert d is not a and d["alpha"] == np.float32(0.2)
    assert plan.FUNCTORS["relu"].struct_dtype(np.float32) is plan.FUNCTORS["relu"].struct_dtype(np.float16)
    # A bool and a number that compare equal are kept apart (gelu's flag is an int32 field either way).
    assert plan.pack_functor("gelu", {"approximate": True}, np.float32)["approximate"] == 1


# --------------------------------------------------------------------------- #
# The CUBIN as NVRTC sizes it (CuPy's nvrtc.getCUBIN drops its last byte).
# --------------------------------------------------------------------------- #
def _tiny_program():
    from cupy.cuda import nvrtc

    program = nvrtc.createProgram('extern "C" __global__ void k(float* p) { p[threadIdx.x] = 1.0f; }',
                                  "k.cu", [], [])
    nvrtc.compileProgram(program, ["-arch=sm_90"])
    return program


def _nvrtc_or_skip():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as error:
        pytest.skip(f"NVRTC unavailable: {error}")


def test_the_cubin_is_a_whole_elf_file():
    from cupy.cuda import nvrtc

    from fastact.backends.cuda import compile as cuda_compile

    _nvrtc_or_skip()
    program = _tiny_program()
    try:
        binary = cuda_compile.cubin(program)
        cupys = bytes(nvrtc.getCUBIN(program))
    finally:
        nvrtc.destroyProgram(program)
    assert binary[:4] == b"\x7fELF"
    assert len(binary) == cuda_compile.elf_size(binary)  # every header and section inside the file
    assert binary.startswith(cupys) and len(binary) >= len(cupys)


def test_the_cubin_fallback_pads_cupys_bytes_to_the_elf_size(monkeypatch):
    from cupy.cuda import nvrtc

    from fastact.backends.cuda import compile as cuda_compile

    _nvrtc_or_skip()
    program = _tiny_program()
    try:
        whole = cuda_compile.cubin(program)
        monkeypatch.setattr(cuda_compile, "_nvrtc_library", lambda: None)
        fallback = cuda_compile.cubin(program)
    finally:
        nvrtc.destroyProgram(program)
    assert fallback == whole
    assert cuda_compile.elf_size(whole[:-1]) == len(whole)  # a cut file says how long it should be


# --------------------------------------------------------------------------- #
# The disk cache of compiled modules.
# --------------------------------------------------------------------------- #
def test_compiled_modules_are_kept_on_disk_and_keyed_by_what_they_are_made_of(tmp_path, monkeypatch):
    from fastact.backends.cuda import compile as cuda_compile

    _nvrtc_or_skip()
    compiled = []

    def fake_compile(kernels, options, kind):
        compiled.append((tuple(kernels), tuple(options)))
        return cuda_compile.CompiledModule(b"\x7fELF" + bytes(len(compiled)), kind,
                                           {k: f"_Z{len(k)}" for k in kernels}, "")

    monkeypatch.setattr(cuda_compile, "_compile", fake_compile)
    monkeypatch.setenv("FASTACT_CUDA_CACHE", str(tmp_path))
    first = cuda_compile.compile_kernels(["fastact::a<float>"], "-arch=sm_90", "cubin")
    again = cuda_compile.compile_kernels(["fastact::a<float>"], "-arch=sm_90", "cubin")
    assert len(compiled) == 1 and again == first  # read back, names and all
    cuda_compile.compile_kernels(["fastact::a<double>"], "-arch=sm_90", "cubin")  # other instantiations
    cuda_compile.compile_kernels(["fastact::a<float>"], "-arch=sm_80", "cubin")  # another architecture
    cuda_compile.compile_kernels(["fastact::a<float>"], "-arch=sm_90", "cubin", ["-lineinfo"])  # never cached
    cuda_compile.compile_kernels(["fastact::a<float>"], "-arch=sm_90", "cubin", ["-lineinfo"])
    assert len(compiled) == 5
    assert len(list(tmp_path.glob("*.cubin"))) == 3 and len(list(tmp_path.glob("*.json"))) == 3
    monkeypatch.setenv("FASTACT_CUDA_CACHE", "")  # set but empty: no disk cache
    cuda_compile.compile_kernels(["fastact::a<float>"], "-arch=sm_90", "cubin")
    assert len(compiled) == 6


def test_a_source_change_compiles_afresh(tmp_path, monkeypatch):
    import shutil

    from fastact import cuda_sources
    from fastact.backends.cuda import compile as cuda_compile

    _nvrtc_or_skip()
    sources = tmp_path / "cuda"
    shutil.copytree(cuda_sources.source_dir(), sources, ignore=shutil.ignore_patterns("emulator", "host"))
    monkeypatch.setattr(cuda_compile, "source_dir", lambda: sources)
    monkeypatch.setenv("FASTACT_CUDA_CACHE", str(tmp_path / "cache"))
    before = cuda_compile._cache_path(["k"], ["-arch=sm_90"], "cubin")
    header = next(sources.glob("*.cuh"))
    header.write_text(header.read_text() + "\n// changed\n")
    assert cuda_compile._cache_path(["k"], ["-arch=sm_90"], "cubin") != before


def test_softmax_along_the_last_axis_reuses_its_launch(backend, monkeypatch):
    x = null_cuda.array((16, 300), "float32")
    other = null_cuda.array((16, 5), "float32")
    fastact.softmax(x)
    fastact.log_softmax_backward(x, x)
    fastact.softmax(other)

    def fail(*args, **kwargs):
        raise AssertionError("a repeated row-wise call planned again")

    monkeypatch.setattr(plan, "rowwise_plan", fail)
    monkeypatch.setattr(plan, "rowwise_kernel", fail)
    fastact.softmax(x, axis=1)
    fastact.log_softmax_backward(x, x, axis=-1)
    fastact.softmax(other)
    calls = [(name, args[:3]) for name, _, _, args in null_cuda.LAUNCHES]
    assert calls[3:] == calls[:3]
    names = [name for name, _ in calls[:3]]
    assert "Softmax" in names[0] and "LogSoftmaxBackward" in names[1] and names[2] != names[0]  # a warp vs a thread per row
    # Another axis is the general path, which plans (and here fails loudly).
    with pytest.raises(AssertionError, match="planned again"):
        fastact.softmax(x, axis=0)


# --------------------------------------------------------------------------- #
# Recorded and replayed calls (fastact/backends/kernels/replay.py): prelu, bias_act and their backwards.
# --------------------------------------------------------------------------- #
def _replay_keys(backend) -> list:
    """The keys of recorded calls (not of dense/conv's epilogues, also recorded when a general bias_act
    call with a known key runs again, e.g. with an Activation object)."""
    return [k for k in backend._elementwise_entries if type(k[0]) is tuple and k[0][0] == "replay"
            and k[0][1] != "epilogue"]


def _launch_record(since: int = 0) -> list:
    """(kernel, grid, block, each argument: its data pointer for arrays, its bytes for values) since ``since``."""
    def arg(a):
        return ("array", a.data.ptr) if isinstance(a, cupy.ndarray) else ("value", a.tobytes())
    return [(name, grid, block, [arg(a) for a in args]) for name, grid, block, args in null_cuda.LAUNCHES[since:]]


def _fail_planning(monkeypatch, backend):
    from fastact.backends.kernels import replay

    def fail(*args, **kwargs):
        raise AssertionError("a replayed call planned, recorded or looked a kernel up")

    for name in dir(plan):
        value = getattr(plan, name)
        if callable(value) and getattr(value, "__module__", None) == plan.__name__ and not isinstance(value, type):
            monkeypatch.setattr(plan, name, fail)
    monkeypatch.setattr(backend, "kernel_handle", fail)
    monkeypatch.setattr(replay, "record", fail)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_replay_launches_what_the_general_path_launched(backend, monkeypatch, dtype):
    x, dy = null_cuda.array((4, 16, 8, 8), dtype), null_cuda.array((4, 16, 8, 8), dtype)
    alpha, bias = null_cuda.array((16, 1, 1), dtype), null_cuda.array((16,), dtype)
    calls = [lambda: fastact.prelu(x, alpha), lambda: fastact.prelu_backward(dy, x, alpha),
             lambda: fastact.bias_act(x, bias, "leaky_relu"), lambda: fastact.bias_act_backward(dy, x, bias, "silu")]
    general = []
    for call in calls:
        start = len(null_cuda.LAUNCHES)
        call()  # the general path, recorded
        general.append(_launch_record(start))
    assert len(_replay_keys(backend)) == 4
    _fail_planning(monkeypatch, backend)
    for call, expected in zip(calls, general):
        start = len(null_cuda.LAUNCHES)
        call()
        replayed = _launch_record(start)
        assert [r[:3] for r in replayed] == [e[:3] for e in expected]  # kernels, grids, blocks
        for r, e in zip(replayed, expected):
            for got, was in zip(r[3], e[3]):
                assert got[0] == was[0]
                if got[0] == "value":
                    assert got == was  # packed functors, index values
                elif was[1] in (x.data.ptr, dy.data.ptr, alpha.data.ptr, bias.data.ptr):
                    assert got == was  # an operand in the same place
    assert len(_replay_keys(backend)) == 4


def test_replay_keys_tell_apart_shapes_strides_dtypes_params_axes_alignment_and_aliasing(backend):
    x = null_cuda.array((4, 16, 8, 8), "float32")
    alpha, bias = null_cuda.array((16, 1, 1), "float32"), null_cuda.array((16,), "float32")
    wide = null_cuda.array((4, 16, 8, 16), "float32")
    half, half_alpha = null_cuda.array((4, 16, 8, 8), "float16"), null_cuda.array((16, 1, 1), "float16")
    offset = null_cuda.array((4 * 16 * 8 * 8 + 1,), "float32")[1:].reshape(x.shape)  # 4 bytes past 16
    out = null_cuda.array((4, 16, 8, 8), "float32")
    seen = []

    def new_keys(call, expected):
        call()
        call()  # the same key again: no new entry
        keys = _replay_keys(backend)
        assert len(keys) == len(seen) + expected, keys[len(seen):]
        seen[:] = keys

    new_keys(lambda: fastact.prelu(x, alpha), 1)
    new_keys(lambda: fastact.prelu(wide, alpha), 1)  # shape
    new_keys(lambda: fastact.prelu(wide[..., ::2], alpha), 1)  # strides (x's shape)
    new_keys(lambda: fastact.prelu(half, half_alpha), 1)  # dtype
    new_keys(lambda: fastact.prelu(offset, alpha), 1)  # alignment
    new_keys(lambda: fastact.prelu(x, alpha, out=out), 1)  # an out
    new_keys(lambda: fastact.prelu(x, alpha, out=x), 1)  # in place: out is x
    new_keys(lambda: fastact.prelu_backward(x, x, alpha), 1)  # another op; dy is x
    new_keys(lambda: fastact.prelu_backward(out, x, alpha), 1)  # dy is not x
    new_keys(lambda: fastact.bias_act(x, bias, "relu"), 1)
    new_keys(lambda: fastact.bias_act(x, bias, fastact.Activation("relu")), 0)  # the same params: the same key
    new_keys(lambda: fastact.bias_act(x, bias, fastact.Activation("leaky_relu", alpha=0.2)), 1)  # params
    new_keys(lambda: fastact.bias_act(x, bias, fastact.Activation("leaky_relu", alpha=0.3)), 1)
    new_keys(lambda: fastact.bias_act(x, x[0, 0, 0, :], axis=3), 1)  # axis
    new_keys(lambda: fastact.bias_act(x, x[0, 0, 0, :], axis=-1), 0)  # the same axis
    new_keys(lambda: fastact.bias_act_backward(x, x, bias, "relu"), 1)
    keys = _replay_keys(backend)
    assert len(set(keys)) == len(keys)
    params = {k[0][3] for k in keys if k[0][1] == "bias_act"}
    assert len(params) == 3  # relu, leaky_relu 0.2 and 0.3


def test_a_replay_allocates_its_workspace_per_call(backend, monkeypatch):
    """Partial sums and results are new arrays each call (CuPy's pool keeps them in stream order)."""
    x, dy, alpha = (null_cuda.array((4, 16, 8, 8), "float32"), null_cuda.array((4, 16, 8, 8), "float32"),
                    null_cuda.array((16, 1, 1), "float32"))
    fastact.prelu_backward(dy, x, alpha)
    allocated = []

    class Unpooled(dict):  # the null device's cupy.empty then hands out new memory each time
        def __setitem__(self, key, value):
            allocated.append(value)

    monkeypatch.setattr(null_cuda, "_results", Unpooled())
    start = len(null_cuda.LAUNCHES)
    first = fastact.prelu_backward(dy, x, alpha)
    middle = len(null_cuda.LAUNCHES)
    second = fastact.prelu_backward(dy, x, alpha)
    assert first[0].data.ptr != second[0].data.ptr and first[1].data.ptr != second[1].data.ptr
    # dx, the float64 partial sums and dalpha (float32: written by the second pass in alpha's dtype), twice
    assert len(allocated) == 6
    assert first[1].dtype == alpha.dtype and first[1].shape == alpha.shape

    def pointers(launches):
        return {a.data.ptr for _, _, _, args in launches for a in args if isinstance(a, cupy.ndarray)}

    operands = {x.data.ptr, dy.data.ptr, alpha.data.ptr}
    workspace = [pointers(null_cuda.LAUNCHES[start:middle]) - operands, pointers(null_cuda.LAUNCHES[middle:]) - operands]
    assert len(workspace[0]) == 3 and not workspace[0] & workspace[1]


def test_non_arrays_never_reach_a_replay(backend):
    """Lists and scalars take the general path (which makes host arrays of them) while "cuda" is loaded."""
    x = null_cuda.array((2, 3), "float32")
    fastact.bias_act(x, null_cuda.array((3,), "float32"))
    np.testing.assert_array_equal(fastact.bias_act([[1.0, -2.0, 0.5]], [0.5, 0.5, 0.5]), [[1.5, 0.0, 1.0]])
    np.testing.assert_array_equal(fastact.prelu([1.0, -2.0], 0.5), [1.0, -1.0])
    dx, dbias = fastact.bias_act_backward([[1.0, 1.0]], [[1.0, -2.0]], [0.0, 0.0])
    np.testing.assert_array_equal(dbias, [1.0, 0.0])


def test_threads_recording_at_once_leave_no_recorder_behind(backend):
    """Recording swaps backend.xp for a proxy: one recording at a time; other threads' calls run unrecorded
    meanwhile and get plain arrays.  (The null device: the CPU emulator's launcher is not thread-safe.)"""
    import threading

    real_xp = backend.xp
    failures = []

    def work(i):
        try:
            x = null_cuda.array((2, 3 + i, 4, 5), "float32")
            alpha, bias = null_cuda.array((3 + i, 1, 1), "float32"), null_cuda.array((3 + i,), "float32")
            for _ in range(20):
                for result in (fastact.prelu(x, alpha), *fastact.bias_act_backward(x, x, bias, "gelu")):
                    assert type(result) is null_cuda.NullDeviceArray, type(result)
        except Exception as error:  # noqa: BLE001 (reported below)
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert backend.xp is real_xp
    # A call made while another thread records runs unrecorded (by design), so on a loaded machine a
    # thread can finish all its calls unrecorded; one more call each, alone, records every key.
    for i in range(8):
        x = null_cuda.array((2, 3 + i, 4, 5), "float32")
        alpha, bias = null_cuda.array((3 + i, 1, 1), "float32"), null_cuda.array((3 + i,), "float32")
        fastact.prelu(x, alpha), fastact.bias_act_backward(x, x, bias, "gelu")
    assert len(_replay_keys(backend)) == 16  # every key recorded in the end


# --------------------------------------------------------------------------- #
# dense_bias_act and conv2d_bias_act: the whole call recorded and replayed (GEMMs included).
# --------------------------------------------------------------------------- #
def _fused_record(since: int) -> list:
    """Each launch as _launch_record has it; each GEMM ("matmul") as its operands' shapes, the strides of their
    last two axes, contiguity and data pointers."""
    def matrix(a):
        return (a.shape, a.strides[-2:], a.flags.c_contiguous, a.data.ptr)
    return [(name, None, None, [matrix(a) for a in args]) if name == "matmul"
            else (name, grid, block, [("array", a.data.ptr) if isinstance(a, cupy.ndarray) else ("value", a.tobytes())
                                      for a in args])
            for name, grid, block, args in null_cuda.LAUNCHES[since:]]


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_dense_and_conv2d_replays_launch_and_multiply_what_the_general_path_did(backend, monkeypatch, data_format):
    """Checked (first call), recorded (second), replayed (third and on): the replay launches im2col, multiplies and
    launches the epilogue as the recorded call did, with the operands in the same places and new memory for the
    rest, and plans, looks up or records nothing; no new key."""
    x, w, b = null_cuda.array((32, 64), "float32"), null_cuda.array((64, 24), "float32"), null_cuda.array((24,), "float32")
    cx = null_cuda.array((2, 8, 6, 7) if data_format == "NCHW" else (2, 6, 7, 8), "float32")
    cw = null_cuda.array((16, 8, 3, 3) if data_format == "NCHW" else (3, 3, 8, 16), "float32")
    cb = null_cuda.array((16,), "float32")
    calls = [lambda: fastact.dense_bias_act(x, w, b, "gelu"),
             lambda: fastact.dense_bias_act(x.reshape(4, 8, 64), w, None, "relu"),
             lambda: fastact.conv2d_bias_act(cx, cw, cb, "silu", padding="same", data_format=data_format),
             lambda: fastact.conv2d_bias_act(cx, cw, None, "relu", stride=2, data_format=data_format)]
    for call in calls:
        call()  # checked
    general = []
    for call in calls:
        start = len(null_cuda.LAUNCHES)
        call()  # recorded
        general.append(_fused_record(start))
    keys = set(backend._elementwise_entries)
    _fail_planning(monkeypatch, backend)

    class Unpooled(dict):  # the null device's cupy.empty then hands out new memory each time
        def __setitem__(self, key, value):
            pass

    monkeypatch.setattr(null_cuda, "_results", Unpooled())
    operands = {a.data.ptr for a in (x, w, b, cx, cw, cb)}
    for call, expected in zip(calls, general):
        for _ in range(2):
            start = len(null_cuda.LAUNCHES)
            result = call()
            replayed = _fused_record(start)
            assert type(result) is null_cuda.NullDeviceArray
            assert [r[:3] for r in replayed] == [e[:3] for e in expected]
            assert sum(r[0] == "matmul" for r in replayed) == 1 and any("im2col" in r[0] for r in replayed) == (
                call is calls[2] or call is calls[3])
            for r, e in zip(replayed, expected):
                for got, was in zip(r[3], e[3]):
                    if r[0] == "matmul":
                        assert got[:3] == was[:3]  # the same matrices
                        assert (got[3] == was[3]) == (was[3] in operands)  # the operands, or new memory
                    else:
                        assert got[0] == was[0]
                        if got[0] == "value" or was[1] in operands:
                            assert got == was
    assert set(backend._elementwise_entries) == keys
