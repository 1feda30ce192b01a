"""The kernel backends' fast path (KernelBackend.fast_forward/fast_backward) on the CPU emulator.

The emulator takes the same fast path for NumPy arrays as the cuda backend
for CuPy arrays, so these run the real code with real results: a repeated
call plans nothing and still computes what the NumPy backend computes, and
anything the fast path does not take (another layout, a partial overlap, an
empty array) still gets the general path's result or error.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
from fastact import backends
from fastact.backends.kernels import plan

pytestmark = pytest.mark.skipif(backends.unavailable_reason("cuda-emulator") is not None,
                                reason=f"{backends.unavailable_reason('cuda-emulator')}")


def numpy_call(name, *args, **kwargs):
    with fastact.use_backend("numpy"):
        return getattr(fastact, name)(*args, **kwargs)


@pytest.fixture
def no_planning(monkeypatch):
    """Make any launch planning fail: what runs afterwards took the fast path."""
    def install():
        def fail(*args, **kwargs):
            raise AssertionError("planned a launch: not the fast path")

        for name in ("elementwise_launch", "activation_kernel", "pack_functor", "rowwise_plan", "rowwise_kernel"):
            monkeypatch.setattr(plan, name, fail)
    return install


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_repeated_calls_take_the_fast_path_and_compute_the_same(dtype, no_planning):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 129)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    calls = [("leaky_relu", (x,), {"alpha": 0.3}), ("gelu_backward", (dy, x), {"approximate": True}),
             ("softmax", (x,), {}), ("log_softmax_backward", (dy, x), {"axis": 1})]
    with fastact.use_backend("cuda-emulator"):
        first = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]
        second = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]  # plans the fast launches
        no_planning()
        third = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]
        out = np.empty_like(x)
        assert fastact.leaky_relu(x, alpha=0.3, out=out) is out
    for (name, args, kw), a, b, c in zip(calls, first, second, third):
        expected = numpy_call(name, *args, **kw)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        tolerance = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
        np.testing.assert_allclose(c.astype(np.float64), expected.astype(np.float64), rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(out, first[0])


def test_in_place_and_what_the_fast_path_declines(no_planning):
    x = np.random.default_rng(4).standard_normal((8, 64)).astype(np.float32)
    expected = numpy_call("relu", x)
    with fastact.use_backend("cuda-emulator"):
        fastact.relu(x.copy())
        fastact.relu(x.copy())
        no_planning()
        y = x.copy()
        assert fastact.relu(y, out=y) is y  # in place: the fast path
        np.testing.assert_array_equal(y, expected)
        base = np.zeros(600, np.float32)
        with pytest.raises(ValueError, match="overlaps x in part"):
            fastact.relu(base[:512], out=base[8:520])  # declined, then refused by the general path
        read_only = np.empty_like(x)
        read_only.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            fastact.relu(x, out=read_only)
        with pytest.raises(AssertionError, match="not the fast path"):
            fastact.relu(x.T)  # another layout: the general path, which plans


# --------------------------------------------------------------------------- #
# Recorded and replayed calls: prelu, prelu_backward, bias_act, bias_act_backward
# (fastact/backends/kernels/replay.py).
# --------------------------------------------------------------------------- #
@pytest.fixture
def nothing_planned(monkeypatch):
    """Make every plan function and every kernel lookup fail: a call that still runs replayed a recording."""
    def install():
        def fail(*args, **kwargs):
            raise AssertionError("planned a launch or looked a kernel up: not a replay")

        for name in dir(plan):
            value = getattr(plan, name)
            if callable(value) and getattr(value, "__module__", None) == plan.__name__ and not isinstance(value, type):
                monkeypatch.setattr(plan, name, fail)
        monkeypatch.setattr(backends.load("cuda-emulator"), "kernel_handle", fail)
    return install


def _per_channel_calls(x, dy, alpha, bias, axis):
    """(name, args, kwargs) of the four recorded ops for one layout."""
    return [("prelu", (x, alpha), {}), ("prelu_backward", (dy, x, alpha), {}),
            ("bias_act", (x, bias, "gelu"), {"axis": axis}),
            ("bias_act_backward", (dy, x, bias, "leaky_relu"), {"axis": axis})]


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


LAYOUTS = {
    # name: (x shape, alpha shape, bias axis)
    "nchw per-channel": ((3, 5, 4, 6), (5, 1, 1), 1),
    "channels-last": ((3, 4, 6, 5), (5,), -1),
    "scalar slope": ((7, 33), (1,), 0),
    "full slope": ((4, 9), (4, 9), 1),
    "one channel axis of a 2-d slope": ((2, 3, 4, 5), (3, 4, 1), 2),
    "odd sizes (scalar tails)": ((3, 7, 5), (7, 1), 1),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_replayed_per_channel_calls_equal_the_general_path(layout, dtype, nothing_planned):
    shape, alpha_shape, axis = LAYOUTS[layout]
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    alpha = rng.uniform(0.05, 0.5, alpha_shape).astype(dtype)
    bias = rng.standard_normal(shape[axis]).astype(dtype)
    calls = _per_channel_calls(x, dy, alpha, bias, axis)
    with fastact.use_backend("cuda-emulator"):
        general = [_as_tuple(getattr(fastact, name)(*args, **kw)) for name, args, kw in calls]  # recorded
        nothing_planned()
        replayed = [_as_tuple(getattr(fastact, name)(*args, **kw)) for name, args, kw in calls]
        again = [_as_tuple(getattr(fastact, name)(*args, **kw)) for name, args, kw in calls]
    for (name, args, kw), g, r, r2 in zip(calls, general, replayed, again):
        expected = _as_tuple(numpy_call(name, *args, **kw))
        for e, a, b, c in zip(expected, g, r, r2):
            assert type(b) is np.ndarray and b.dtype == a.dtype and b.shape == a.shape, name
            np.testing.assert_array_equal(b, a, err_msg=name)  # the replay computes what the general path did
            np.testing.assert_array_equal(c, a, err_msg=name)
            assert not np.shares_memory(b, c), f"{name}: a replay returned the previous call's memory"
            tolerance = {"float16": 3e-2, "float32": 1e-4, "float64": 1e-10}[dtype]
            np.testing.assert_allclose(b.astype(np.float64), e.astype(np.float64), rtol=tolerance, atol=tolerance,
                                       err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_replayed_calls_write_out_and_work_in_place(dtype, nothing_planned):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 6, 3, 4)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    alpha, bias = rng.uniform(0.1, 0.3, (6, 1, 1)).astype(dtype), rng.standard_normal(6).astype(dtype)
    with fastact.use_backend("cuda-emulator"):
        expected_prelu = fastact.prelu(x, alpha)
        expected_bias = fastact.bias_act(x, bias, "relu6")
        expected_dx, expected_dalpha = fastact.prelu_backward(dy, x, alpha)
        for _ in range(2):  # record (general path), then replay
            out = np.empty_like(x)
            assert fastact.prelu(x, alpha, out=out) is out
            y = x.copy()
            assert fastact.bias_act(y, bias, "relu6", out=y) is y
            dx = np.empty_like(x)
            got_dx, got_dalpha = fastact.prelu_backward(dy, x, alpha, out=dx)
            assert got_dx is dx
        nothing_planned()
        out, y, dx = np.empty_like(x), x.copy(), np.empty_like(x)
        assert fastact.prelu(x, alpha, out=out) is out
        assert fastact.bias_act(y, bias, "relu6", out=y) is y
        got_dx, got_dalpha = fastact.prelu_backward(dy, x, alpha, out=dx)
    np.testing.assert_array_equal(out, expected_prelu)
    np.testing.assert_array_equal(y, expected_bias)
    assert got_dx is dx
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(got_dalpha, expected_dalpha)


def test_what_replays_decline_gets_the_general_paths_result_or_error(nothing_planned):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    alpha, bias = np.full((4, 1, 1), 0.25, np.float32), rng.standard_normal(4).astype(np.float32)
    with fastact.use_backend("cuda-emulator"):
        for _ in range(2):
            fastact.prelu(x, alpha)
            fastact.bias_act(x, bias)
        expected = fastact.prelu(x, alpha)
        nothing_planned()
        base = np.zeros(2 * x.size, np.float32)
        with pytest.raises(ValueError, match="overlaps"):
            fastact.prelu(base[: x.size].reshape(x.shape), alpha, out=base[8 : 8 + x.size].reshape(x.shape))
        read_only = np.empty_like(x)
        read_only.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            fastact.prelu(x, alpha, out=read_only)
        with pytest.raises(ValueError, match="axis"):
            fastact.bias_act(x, bias, axis=4)
        with pytest.raises(ValueError, match="bias"):
            fastact.bias_act(x, bias[:3])
        with pytest.raises(AssertionError, match="not a replay"):
            fastact.prelu(x, [0.25, 0.25, 0.25, 0.25][0])  # a Python scalar alpha: the general path
        with pytest.raises(AssertionError, match="not a replay"):
            fastact.prelu(x[:, :, ::2], alpha)  # another layout: recorded afresh by the general path
        np.testing.assert_array_equal(fastact.prelu(x, alpha), expected)  # the recorded key still replays


def test_a_call_that_copies_its_operands_is_not_replayed_but_stays_right():
    """A transposed x (copied to C order) or a float16 alpha for float32 x (converted) cannot be replayed
    by pointers: the key keeps the general path, whose result each call is."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((5, 6, 7)).astype(np.float32).transpose(2, 1, 0)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    alpha = rng.uniform(0.1, 0.3, (6, 1)).astype(np.float16)
    expected = numpy_call("prelu_backward", dy, x, alpha)
    with fastact.use_backend("cuda-emulator"):
        results = [fastact.prelu_backward(dy, x, alpha) for _ in range(3)]
    for dx, dalpha in results:
        np.testing.assert_allclose(dx, expected[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dalpha.astype(np.float64), expected[1].astype(np.float64), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_dense_and_conv2d_with_checked_keys_compute_the_same(dtype, monkeypatch):
    """A dense/conv2d call whose key the general path has checked skips the checks (not the GEMMs);
    its epilogue is replayed.  Results are those of the first (general) call; a changed shape is checked again."""
    from fastact import _fused_dispatch

    rng = np.random.default_rng(15)
    x, w, b = (rng.standard_normal((6, 10)).astype(dtype), rng.standard_normal((10, 7)).astype(dtype),
               rng.standard_normal(7).astype(dtype))
    cx, cw, cb = (rng.standard_normal((2, 3, 6, 5)).astype(dtype), rng.standard_normal((4, 3, 3, 3)).astype(dtype),
                  rng.standard_normal(4).astype(dtype))
    with fastact.use_backend("cuda-emulator"):
        dense = fastact.dense_bias_act(x, w, b, "gelu")
        conv = fastact.conv2d_bias_act(cx, cw, cb, "silu", padding="same", stride=(1, 2))

        def fail(*args, **kwargs):
            raise AssertionError("checked again")

        monkeypatch.setattr(_fused_dispatch, "_Call", fail)
        np.testing.assert_array_equal(fastact.dense_bias_act(x, w, b, "gelu"), dense)
        np.testing.assert_array_equal(fastact.conv2d_bias_act(cx, cw, cb, "silu", padding="same", stride=(1, 2)), conv)
        with pytest.raises(AssertionError, match="checked again"):
            fastact.dense_bias_act(x, w[:, :6], b, "gelu")  # another shape: the general path's checks
        with pytest.raises(AssertionError, match="checked again"):
            fastact.conv2d_bias_act(cx, cw, cb, "silu", padding="valid", stride=(1, 2))  # other options
        monkeypatch.undo()
        with pytest.raises(ValueError, match="b must be 1-d"):
            fastact.dense_bias_act(x, w[:, :6], b, "gelu")
    np.testing.assert_allclose(dense.astype(np.float64), numpy_call("dense_bias_act", x, w, b, "gelu").astype(np.float64),
                               rtol=2e-2 if dtype == "float16" else 1e-4, atol=2e-2 if dtype == "float16" else 1e-4)



def _conv_case(index, data_format, dtype):
    """(x, w, b, activation name, options) of test_fused.CONV_CASES[index] in ``data_format``."""
    import test_fused

    x_shape, w_shape, options, name, _ = test_fused.CONV_CASES[index]
    x, w, b = test_fused.conv_inputs(x_shape, w_shape, np.dtype(dtype), data_format, True)
    return x, w, b, name, {**options, "data_format": data_format}


# Cases of test_fused.CONV_CASES: plain, "same", strided "same", dilated, grouped, depthwise, pointwise, strided 1x1.
REPLAYED_CONV = [0, 1, 2, 5, 7, 8, 10, 11]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_dense_and_conv2d_replay_the_whole_call_and_compute_the_same(dtype, data_format, nothing_planned, monkeypatch):
    """The third call of a dense/conv2d key replays the second's recording (im2col, the GEMM, the epilogue):
    nothing planned, no kernel looked up, nothing recorded; the same bits as the general path, in new memory.
    Grouped channels-last convolutions copy w's matrix (a transposed copy: not replayable by pointers) and keep the
    general path, still right."""
    from fastact.backends.kernels import replay

    rng = np.random.default_rng(16)
    calls = [("dense_bias_act", (rng.standard_normal((6, 10)).astype(dtype), rng.standard_normal((10, 7)).astype(dtype),
                                 rng.standard_normal(7).astype(dtype), "gelu"), {}),
             ("dense_bias_act", (rng.standard_normal((2, 3, 5)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype),
                                 None, "silu"), {})]  # leading axes; no bias
    for index in REPLAYED_CONV:
        x, w, b, name, options = _conv_case(index, data_format, dtype)
        calls.append(("conv2d_bias_act", (x, w, b, name), options))
    replayable = [not (data_format == "NHWC" and kw.get("groups", 1) > 1) for _, _, kw in calls]
    with fastact.use_backend("cuda-emulator"):
        general = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]  # checked
        recorded = [getattr(fastact, name)(*args, **kw) for name, args, kw in calls]  # recorded
        unreplayed = [getattr(fastact, name)(*args, **kw) for (name, args, kw), r in zip(calls, replayable) if not r]
        spared = {attribute: getattr(plan, attribute) for attribute in ("compute_dtype", "_dtype_facts")}
        nothing_planned()
        for attribute, value in spared.items():  # the emulator's GEMM (cuBLAS' stand-in) reads it
            monkeypatch.setattr(plan, attribute, value)
        monkeypatch.setattr(replay, "record", lambda *args: pytest.fail("recorded again"))
        replayed = [getattr(fastact, name)(*args, **kw) for (name, args, kw), r in zip(calls, replayable) if r]
        again = [getattr(fastact, name)(*args, **kw) for (name, args, kw), r in zip(calls, replayable) if r]
    general_replayable = [g for g, r in zip(general, replayable) if r]
    for (name, args, kw), g, r, r2 in zip([c for c, r in zip(calls, replayable) if r], general_replayable, replayed, again):
        assert type(r) is np.ndarray and r.dtype == g.dtype and r.shape == g.shape, name
        np.testing.assert_array_equal(r, g, err_msg=f"{name} {kw}")
        np.testing.assert_array_equal(r2, g, err_msg=f"{name} {kw}")
        assert not np.shares_memory(r, r2), f"{name}: a replay returned the previous call's memory"
    for g, r in zip(general, recorded):
        np.testing.assert_array_equal(r, g)
    for g, u in zip([g for g, r in zip(general, replayable) if not r], unreplayed):
        np.testing.assert_array_equal(u, g)
    for (name, args, kw), g in zip(calls, general):
        expected = numpy_call(name, *args, **kw)
        tolerance = {"float16": 3e-2, "float32": 1e-4, "float64": 1e-10}[dtype]
        np.testing.assert_allclose(g.astype(np.float64), expected.astype(np.float64), rtol=tolerance, atol=tolerance,
                                   err_msg=f"{name} {kw}")


def test_a_replayed_conv2d_key_tells_apart_geometry_dtype_alignment_and_activation(nothing_planned, monkeypatch):
    """Each of these differs from the recorded call in one thing the key holds: each is planned (not replayed)
    the first time, and right."""
    rng = np.random.default_rng(17)  # shapes no other test records
    x, w, b = (rng.standard_normal((3, 2, 7, 5)).astype(np.float32), rng.standard_normal((5, 2, 3, 3)).astype(np.float32),
               rng.standard_normal(5).astype(np.float32))
    name, options = "leaky_relu", {"padding": "same"}
    with fastact.use_backend("cuda-emulator"):
        for _ in range(2):
            fastact.conv2d_bias_act(x, w, b, name, **options)
        spared = {attribute: getattr(plan, attribute) for attribute in ("compute_dtype", "_dtype_facts")}
        nothing_planned()
        for attribute, value in spared.items():  # the emulator's GEMM reads it
            monkeypatch.setattr(plan, attribute, value)
        expected = fastact.conv2d_bias_act(x, w, b, name, **options)  # replayed
    shifted = np.empty(x.size + 1, np.float32)[1:].reshape(x.shape)  # 4 bytes past x's alignment
    shifted[...] = x
    variants = [
        ((x[:1], w, b, name), options),  # another batch
        ((x, w, b, name), {**options, "padding": "valid"}),  # another geometry
        ((x, w, b, name), {**options, "stride": 2}),
        ((x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), name), options),  # dtype
        ((shifted, w, b, name), options),  # alignment
        ((x, w, b, "relu6"), options),  # activation
        ((x, w, None, name), options),  # no bias
    ]
    for args, kw in variants:
        with fastact.use_backend("cuda-emulator"):
            with pytest.raises(AssertionError, match="not a replay"):
                fastact.conv2d_bias_act(*args, **kw)
    with fastact.use_backend("cuda-emulator"):
        np.testing.assert_array_equal(fastact.conv2d_bias_act(x, w, b, name, **options), expected)  # still replays
        monkeypatch.undo()
        for _ in range(3):  # checked, recorded, replayed: the same result at another alignment
            np.testing.assert_array_equal(fastact.conv2d_bias_act(shifted, w, b, name, **options), expected)
    np.testing.assert_allclose(expected, numpy_call("conv2d_bias_act", x, w, b, name, **options), rtol=1e-5, atol=1e-5)


def test_the_fast_path_survives_a_full_parameter_memo(monkeypatch, no_planning):
    """In a long run the registry's memo of parameter dicts fills up; a value first seen then must still
    get one dict, or the fast path (which knows its entry by the dict's identity) never takes it."""
    from fastact import _registry
    monkeypatch.setattr(_registry, "_KERNEL_PARAMS_CACHE_SIZE", 4)
    spec = _registry.REGISTRY["leaky_relu"]
    cache = spec._kernel_params_cache
    saved = dict(cache)
    cache.clear()
    try:
        for i in range(8):
            spec.kernel_params_of(0.5 + i / 64)
        assert spec.kernel_params_of(0.37) is spec.kernel_params_of(0.37)
        x = np.random.default_rng(7).standard_normal(999).astype(np.float32)
        with fastact.use_backend("cuda-emulator"):
            first = fastact.leaky_relu(x, alpha=0.37)
            fastact.leaky_relu(x, alpha=0.37)
            no_planning()
            np.testing.assert_array_equal(fastact.leaky_relu(x, alpha=0.37), first)
    finally:
        cache.clear()
        cache.update(saved)
