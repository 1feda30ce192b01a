"""The fused CUDA kernels' own paths on the CPU emulator, and the host decisions behind them.

``tests/test_fused.py`` already runs every fused call on the "cuda-emulator"
backend against float64 references.  These tests aim at what it cannot see:
the vector tail and misaligned views of bias_act in both layouts (bit for bit
against the NumPy backend, which computes the same expressions), the fast
division's magic numbers, the chunked batch path of conv2d, the 64-bit
instantiations, run-to-run determinism, and a planted col2im bug.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
from fastact._conv_geometry import conv2d_geometry
import support
import test_fused
from fastact import backends
from fastact.backends import unavailable_reason
from fastact.backends.emulator.backend import EmulatorBackend
from fastact.backends.kernels import fused as kernel_fused
from fastact.backends.kernels import plan as cuda_plan
from test_cuda_emulator import LaunchRecorder

pytestmark = pytest.mark.skipif(
    unavailable_reason("cuda-emulator") is not None, reason=f"emulator unavailable: {unavailable_reason('cuda-emulator')}"
)

LEAKY = fastact.Activation("leaky_relu", alpha=0.1)


@pytest.fixture(scope="module")
def emulator():
    """The instance fastact.use_backend("cuda-emulator") runs on, so that its launches can be recorded."""
    return backends.load("cuda-emulator")


def numpy_bias_act(x, bias, axis, dy=None):
    with fastact.use_backend("numpy"):
        if dy is None:
            return fastact.bias_act(x, bias, LEAKY, axis=axis)
        return fastact.bias_act_backward(dy, x, bias, LEAKY, axis=axis)


def widths(recorder, kernel):
    return {int(k.rsplit(",", 1)[1].rstrip("> ")) for k in recorder.kernels if k.startswith(f"fastact::{kernel}<")}


# --------------------------------------------------------------------------- #
# Fast division.
# --------------------------------------------------------------------------- #
def test_divider_magic_numbers_divide_exactly():
    rng = np.random.default_rng(0)
    divisors = [1, 2, 3, 7, 56, 3136, 2**30, 2**30 + 1, 2**31 - 1, *rng.integers(1, 2**31 - 1, 300)]
    for d in divisors:
        divisor, magic, shift = cuda_plan.divider(int(d))
        assert magic < 2**32
        n = np.concatenate([rng.integers(0, 2**31, 2000), [0, 1, d - 1, d, d + 1, 2**31 - 1]]).astype(np.uint64)
        quotient = (((n * np.uint64(magic)) >> np.uint64(32)) + n) >> np.uint64(shift)
        assert np.array_equal(quotient, n // np.uint64(divisor)), d


# --------------------------------------------------------------------------- #
# bias_act: vector tails, misaligned views, both layouts.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype_name", support.DTYPE_NAMES)
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("axis", [-1, 1], ids=["channels-last", "NCHW"])
def test_bias_act_every_tail_matches_numpy_bit_for_bit(emulator, monkeypatch, dtype_name, offset, axis):
    """Channel counts (channels-last) and inner sizes (NCHW) 1..17: vectors straddle channels and rows."""
    dtype = support.dtype_of(dtype_name)
    recorder = LaunchRecorder(emulator, monkeypatch)
    for size in range(1, 18):
        shape = (3, size) if axis == -1 else (2, 3, size)
        n = int(np.prod(shape))
        base = support.draw_values((n + offset,), dtype, {}, seed=size)
        dy_base = support.draw_values((n + offset,), dtype, {}, seed=100 + size, finite=True)
        x, dy = base[offset:].reshape(shape), dy_base[offset:].reshape(shape)
        bias = test_fused.draw((shape[axis],), dtype, size)
        support.assert_same(emulator.bias_act(LEAKY.kernel, LEAKY.kernel_params, x, bias, axis % x.ndim, None),
                            numpy_bias_act(x, bias, axis), f"forward size {size}")
        dx, dbias = emulator.bias_act_backward(LEAKY.kernel, LEAKY.kernel_params, dy, x, bias, axis % x.ndim)
        expected_dx, expected_dbias = numpy_bias_act(x, bias, axis, dy)
        support.assert_same(dx, expected_dx, f"backward size {size}")
        # Both add the same compute-type values in float64; only the order differs.
        np.testing.assert_allclose(dbias.astype(np.float64), expected_dbias.astype(np.float64), rtol=1e-6)
    # Aligned: 16-byte vectors wherever a vector's biases are found once per vector (inner >= the
    # width, or channels-last with channels a multiple of it), the scalar path for the rest.
    expected = {1} if offset else {1, 16 // dtype.itemsize}
    assert widths(recorder, "bias_act_forward") == expected


def test_bias_act_misaligned_output_takes_the_scalar_path(emulator, monkeypatch):
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = test_fused.draw((4, 8), np.float32, 1)
    bias = test_fused.draw((8,), np.float32, 2)
    out = np.zeros(33, np.float32)[1:].reshape(4, 8)
    emulator.bias_act(LEAKY.kernel, LEAKY.kernel_params, x, bias, 1, out)
    support.assert_same(out, numpy_bias_act(x, bias, 1))
    assert widths(recorder, "bias_act_forward") == {1}


def test_bias_act_backward_reduces_across_many_chunks(emulator, monkeypatch):
    """One channel of many elements: the per-block partial sums go through prelu_sum_partials."""
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = test_fused.draw((1, 1, 9000), np.float32, 3)
    dy = test_fused.draw((1, 1, 9000), np.float32, 4)
    bias = np.array([0.25], np.float32)
    dx, dbias = emulator.bias_act_backward(LEAKY.kernel, LEAKY.kernel_params, dy, x, bias, 1)
    expected_dx, expected_dbias = numpy_bias_act(x, bias, 1, dy)
    support.assert_same(dx, expected_dx)
    np.testing.assert_allclose(dbias, expected_dbias, rtol=1e-6)
    assert any("prelu_sum_partials" in k for k in recorder.kernels)


@pytest.mark.parametrize("shape", [(2, 6, 5, 4), (1, 3, 9000)], ids=["one chunk", "many chunks"])
@pytest.mark.parametrize("x_dtype", [np.float32, np.float16])
def test_float32_parameter_gradients_are_the_rounded_float64_sums(emulator, monkeypatch, shape, x_dtype):
    """dalpha/dbias of a float32 parameter come from the second pass in float32 (prelu_sum_partials<.., float>):
    exactly the float64 sums (what a float64 parameter gets) rounded once, as astype(float32) rounded them."""
    from fastact.backends.kernels import fused as kernels_fused

    recorder = LaunchRecorder(emulator, monkeypatch)
    x = test_fused.draw(shape, x_dtype, 5)
    dy = test_fused.draw(shape, x_dtype, 6, 100.0)
    channels = shape[1]
    p = kernels_fused.channel_plan(shape, 1)
    for values32 in (np.linspace(0.05, 0.3, channels).astype(np.float32).reshape(channels, *[1] * (len(shape) - 2)),
                     test_fused.draw((channels,), np.float32, 7)):
        values64 = values32.astype(np.float64)
        kernel = (lambda launch: cuda_plan.prelu_backward_kernel(np.dtype(x_dtype), launch)) if values32.ndim > 1 else (
            lambda launch: cuda_plan.bias_act_backward_kernel(LEAKY.kernel, np.dtype(x_dtype), launch))
        family, leading = ("prelu", ()) if values32.ndim > 1 else (
            LEAKY.kernel, (cuda_plan.pack_functor(LEAKY.kernel, LEAKY.kernel_params, np.dtype(x_dtype)),))
        sums = [emulator._reduce_channels(family, p, np.empty_like(x), [dy, x], values, kernel, leading, like=like)
                for values, like in ((values32, values32), (values64, None))]
        assert sums[0].dtype == np.float32 and sums[0].shape == values32.shape and sums[1].dtype == np.float64
        np.testing.assert_array_equal(sums[0], sums[1].reshape(values32.shape).astype(np.float32))
        assert np.abs(sums[1]).max() > 1  # not all zeros
    assert any("prelu_sum_partials" in k and ", float>" in k for k in recorder.kernels)


# --------------------------------------------------------------------------- #
# conv2d: chunks, 64-bit kernels, determinism, a planted bug.
# --------------------------------------------------------------------------- #
CHUNK_CASES = [test_fused.CONV_CASES[i] for i in (2, 7, 9, 10)]  # strided "same", groups, depthwise, pointwise


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CHUNK_CASES, ids=[c[3] + str(c[1]) for c in CHUNK_CASES])
def test_conv2d_in_batch_chunks_of_one_sample(emulator, monkeypatch, data_format, case):
    """With a column budget below one sample, every sample is its own chunk: same results, one im2col each."""
    monkeypatch.setattr(kernel_fused, "IM2COL_BUDGET_BYTES", 1)
    recorder = LaunchRecorder(emulator, monkeypatch)
    x_shape, w_shape, options, name, params = case
    bigger = ((3, *x_shape[1:]), w_shape, options, name, params)
    test_fused.check_conv("cuda-emulator", np.dtype(np.float64), bigger, data_format, True)
    pointwise = w_shape[2:] == (1, 1) and options.get("stride", 1) == 1 and options.get("groups", 1) == 1
    # Forward and backward: one im2col per sample each, none at all for a pointwise convolution.
    assert sum("im2col" in k for k in recorder.kernels) == (0 if pointwise else 6)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_64_bit_fused_kernels_compute_the_same(emulator, monkeypatch, data_format):
    case = test_fused.CONV_CASES[7]  # padding, two groups
    x, w, b = test_fused.conv_inputs(case[0], case[1], np.dtype(np.float32), data_format, True)
    options = {**case[2], "data_format": data_format}
    dy = test_fused.draw(fastact.conv2d_bias_act(x, w, b, **options).shape, np.float32, 5)

    def run():
        with fastact.use_backend("cuda-emulator"):
            return [fastact.conv2d_bias_act(x, w, b, "relu6", **options),
                    *fastact.conv2d_bias_act_backward(dy, x, w, b, "relu6", **options)]

    expected = run()
    recorder = LaunchRecorder(emulator, monkeypatch)
    monkeypatch.setattr(cuda_plan, "index_type", lambda n, threads: "long long")
    for what, a, e in zip(("y", "dx", "dw", "db"), run(), expected):
        support.assert_same(a, e, what)
    fused = [k for k in recorder.kernels if "im2col" in k or "col2im" in k or "bias_act" in k]
    assert fused and all("long long" in k for k in fused)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_conv2d_backward_is_the_same_bits_run_to_run(data_format):
    case = test_fused.CONV_CASES[9]
    x, w, b = test_fused.conv_inputs(case[0], case[1], np.dtype(np.float16), data_format, True)
    dy = test_fused.draw(fastact.conv2d_bias_act(x, w, b, **case[2], data_format=data_format).shape, np.float16, 6)
    with fastact.use_backend("cuda-emulator"):
        first, second = (fastact.conv2d_bias_act_backward(dy, x, w, b, LEAKY, **case[2], data_format=data_format)
                         for _ in range(2))
    for a, e in zip(first, second):
        assert a.tobytes() == e.tobytes()


def test_planted_col2im_bug_is_caught():
    """col2im that forgets the last kernel column: dx is wrong where it should collect that tap."""
    broken = EmulatorBackend(defines=("FASTACT_PLANT_COL2IM_LAST_TAP",))
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 2, 2), np.float32)
    dy = np.ones((1, 1, 3, 3), np.float32)
    identity = fastact.Activation("leaky_relu", alpha=1.0)
    geometry = conv2d_geometry(
        "t", x.shape, w.shape, stride=1, padding="valid", dilation=1, groups=1, data_format="NCHW")
    good, _, _ = EmulatorBackend().conv2d_bias_act_backward(identity.kernel, identity.kernel_params, dy, x, w, None, geometry)
    wrong, _, _ = broken.conv2d_bias_act_backward(identity.kernel, identity.kernel_params, dy, x, w, None, geometry)
    np.testing.assert_array_equal(good[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    assert not np.array_equal(wrong, good)
