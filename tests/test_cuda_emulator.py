"""The CUDA kernels' own paths, run on the CPU emulator, and the host decisions behind them.

The main suite already runs every activation through the emulator (the
"cuda-emulator" backend param).  These tests aim at what that suite cannot
see: the vector tail and the misaligned scalar path at every length, 64-bit
indexing, every PReLU reduction layout, and that the emulator really catches
kernel bugs (planted with test-only macros in the kernel sources).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support
from fastact import reference
from fastact.backends import unavailable_reason
from fastact.backends.emulator.backend import EmulatorBackend
from fastact.backends.kernels import plan as cuda_plan

pytestmark = pytest.mark.skipif(
    unavailable_reason("cuda-emulator") is not None, reason=f"emulator unavailable: {unavailable_reason('cuda-emulator')}"
)

RELU_PARAMS = {"alpha": 0.25, "max_value": 6.0, "threshold": -0.5}


class LaunchRecorder:
    """Wraps a backend's launch to record the kernel names it launches."""

    def __init__(self, backend, monkeypatch):
        self.kernels = []
        original = backend.launch

        def launch(family, dtype, kernel, grid, block, args):
            self.kernels.append(kernel)
            original(family, dtype, kernel, grid, block, args)

        monkeypatch.setattr(backend, "launch", launch)


@pytest.fixture(scope="module")
def emulator():
    return EmulatorBackend()


def numpy_relu(x, dy=None):
    with fastact.use_backend("numpy"):
        return fastact.relu(x, **RELU_PARAMS) if dy is None else fastact.relu_backward(dy, x, **RELU_PARAMS)


def emulated_relu(backend, x, dy=None, out=None):
    if dy is None:
        return backend.forward("relu", RELU_PARAMS, x, out)
    return backend.backward("relu", RELU_PARAMS, dy, x, out)


# --------------------------------------------------------------------------- #
# Vector tail and alignment.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype_name", support.DTYPE_NAMES)
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
def test_every_tail_length_matches_numpy_bit_for_bit(emulator, monkeypatch, dtype_name, offset):
    dtype = support.dtype_of(dtype_name)
    recorder = LaunchRecorder(emulator, monkeypatch)
    for n in range(1, 18):
        base = support.draw_values((n + offset,), dtype, RELU_PARAMS, seed=n)
        dy_base = support.draw_values((n + offset,), dtype, {}, seed=100 + n)
        x, dy = base[offset:], dy_base[offset:]
        support.assert_same(emulated_relu(emulator, x), numpy_relu(x), f"forward n={n}")
        support.assert_same(emulated_relu(emulator, x, dy), numpy_relu(x, dy), f"backward n={n}")
    widths = {int(k.rsplit(",", 1)[1].rstrip("> ")) for k in recorder.kernels}
    vector = 16 // dtype.itemsize
    # A view starting one element in is never 16-byte aligned: only the scalar path may run.
    assert widths == ({1} if offset else {vector})


def test_misaligned_output_alone_forces_the_scalar_path(emulator, monkeypatch):
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = support.draw_values((64,), np.dtype(np.float32), RELU_PARAMS)
    out = np.zeros(65, np.float32)[1:]
    emulated_relu(emulator, x, out=out)
    support.assert_same(out, numpy_relu(x))
    assert recorder.kernels == [cuda_plan.activation_kernel("forward", "relu", np.float32, 1, "int")]


def test_vector_width_decision():
    assert cuda_plan.vector_width(np.float32, [0, 16, 4096]) == 4
    assert cuda_plan.vector_width(np.float16, [32, 48]) == 8
    assert cuda_plan.vector_width(np.float64, [16, 24]) == 1
    assert cuda_plan.vector_width(np.float32, [16, 20]) == 1


def test_grid_stride_over_more_elements_than_threads(emulator):
    # The emulator reports one SM: 8 blocks of 256 threads, 4 elements each per pass.
    n = cuda_plan.BLOCKS_PER_SM * cuda_plan.THREADS * 4 * 3 + 5
    x = support.draw_values((n,), np.dtype(np.float32), RELU_PARAMS)
    launch = cuda_plan.elementwise_launch(n, np.float32, [0, 0], emulator.sm_count())
    assert launch.grid * launch.block * launch.vector < n  # the loop really strides
    support.assert_same(emulated_relu(emulator, x), numpy_relu(x))


# --------------------------------------------------------------------------- #
# 64-bit indexing.
# --------------------------------------------------------------------------- #
def test_index_type_switches_to_64_bit_past_2_to_31():
    threads = 132 * cuda_plan.BLOCKS_PER_SM * cuda_plan.THREADS  # an H100's full grid
    assert cuda_plan.index_type(2**31 - 1 - threads, threads) == "int"
    assert cuda_plan.index_type(2**31 - threads, threads) == "long long"
    assert cuda_plan.elementwise_launch(2**31 + 1, np.float16, [0, 0], 132).index == "long long"
    assert cuda_plan.elementwise_launch(2**30, np.float16, [0, 0], 132).index == "int"
    big = cuda_plan.prelu_plan((2**20, 3, 1024), (3, 1, 1))
    assert cuda_plan.prelu_backward_launch(big, 132).index == "long long"


@pytest.mark.parametrize("dtype_name", ["float16", "float64"])
def test_64_bit_instantiations_compute_the_same(emulator, monkeypatch, dtype_name):
    """Force the 64-bit index kernels on small arrays: the same results as the 32-bit ones."""
    dtype = support.dtype_of(dtype_name)
    recorder = LaunchRecorder(emulator, monkeypatch)
    monkeypatch.setattr(cuda_plan, "index_type", lambda n, threads: "long long")
    x = support.draw_values((4, 3, 37), dtype, RELU_PARAMS)
    dy = support.draw_values((4, 3, 37), dtype, {}, seed=2, finite=True)
    alpha = np.array([0.1, -0.5, 2.0], dtype).reshape(3, 1)
    support.assert_same(emulated_relu(emulator, x), numpy_relu(x))
    support.assert_same(emulated_relu(emulator, x, dy), numpy_relu(x, dy))
    with fastact.use_backend("numpy"):
        expected_y = fastact.prelu(x, alpha)
        expected_dx, expected_dalpha = fastact.prelu_backward(dy, x, alpha)
    support.assert_same(emulator.prelu_forward(x, alpha, None), expected_y)
    dx, dalpha = emulator.prelu_backward(dy, x, alpha, None)
    support.assert_same(dx, expected_dx)
    np.testing.assert_allclose(dalpha.astype(float), expected_dalpha.astype(float), rtol=1e-3)
    assert recorder.kernels and all("long long" in k for k in recorder.kernels)


# --------------------------------------------------------------------------- #
# PReLU plans and reduction layouts.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "x_shape,alpha_shape,expected",
    [
        ((2, 3, 4, 5), (3, 1, 1), cuda_plan.PreluPlan(2, 3, 20)),  # NCHW per channel
        ((2, 4, 5, 3), (3,), cuda_plan.PreluPlan(40, 3, 1)),  # channels-last
        ((2, 3, 4), (), cuda_plan.PreluPlan(1, 1, 24)),  # scalar
        ((2, 3, 4), (2, 3, 4), cuda_plan.PreluPlan(1, 24, 1)),  # per element
        ((2, 3, 1, 4), (3, 1, 4), cuda_plan.PreluPlan(2, 12, 1)),  # a size-1 axis inside the run
        ((2, 3, 4, 5), (1, 3, 1, 5), cuda_plan.PreluPlan(8, 15, 1, (0, 2, 1, 3))),  # not adjacent: permuted
    ],
)
def test_prelu_plan(x_shape, alpha_shape, expected):
    assert cuda_plan.prelu_plan(x_shape, alpha_shape) == expected


@pytest.mark.parametrize(
    "x_shape,alpha_shape,lanes",
    [
        ((3, 4, 500), (4, 1), 1),  # inner > 1: one channel per block
        ((500, 5), (5,), 8),  # channels-last, few channels
        ((300, 70), (70,), 32),  # channels-last, many channels
        ((1000,), (1000,), 256),  # per element
        ((9000,), (), 1),  # scalar: many chunks, summed by prelu_sum_partials
    ],
)
def test_prelu_backward_layouts(emulator, monkeypatch, x_shape, alpha_shape, lanes):
    recorder = LaunchRecorder(emulator, monkeypatch)
    dtype = np.dtype(np.float32)
    x = support.draw_values(x_shape, dtype, {}, seed=1)
    dy = support.draw_values(x_shape, dtype, {}, seed=2, finite=True)
    alpha = np.random.default_rng(3).uniform(-0.5, 1.5, alpha_shape).astype(dtype)
    launch = cuda_plan.prelu_backward_launch(cuda_plan.prelu_plan(x.shape, alpha.shape), emulator.sm_count())
    assert launch.block[0] == lanes
    dx, dalpha = emulator.prelu_backward(dy, x, alpha, None)
    with fastact.use_backend("numpy"):
        expected_dx, expected_dalpha = fastact.prelu_backward(dy, x, alpha)
    support.assert_same(dx, expected_dx)
    # Both add float32 products in float64; only the order differs.
    np.testing.assert_allclose(dalpha, expected_dalpha, rtol=1e-6, atol=1e-30)
    # A float32 alpha: the second pass runs once, also for one chunk (it adds the chunks' sums, if several, and
    # stores dalpha in alpha's dtype: tests/test_cuda_fused_emulator.py checks that rounding).
    summed = [k for k in recorder.kernels if "prelu_sum_partials" in k]
    assert len(summed) == 1 and summed[0].endswith(", float>") and dalpha.dtype == alpha.dtype


# --------------------------------------------------------------------------- #
# The emulator catches planted kernel bugs.
# --------------------------------------------------------------------------- #
def test_planted_tail_off_by_one_is_caught():
    broken = EmulatorBackend(defines=("FASTACT_PLANT_TAIL_OFF_BY_ONE",))
    x = support.draw_values((17,), np.dtype(np.float32), RELU_PARAMS)  # 4 vectors + a tail of 1
    out = np.full(17, 7.0, np.float32)
    emulated_relu(broken, x, out=out)
    assert out[16] == 7.0  # the tail element was never written
    assert not np.array_equal(out, numpy_relu(x), equal_nan=True)


def test_planted_missing_barrier_is_caught():
    broken = EmulatorBackend(defines=("FASTACT_PLANT_MISSING_BARRIER",))
    x = np.full(4096, -1.0, np.float32)  # scalar alpha: one channel, 256 rows reduced in shared memory
    dy = np.ones(4096, np.float32)
    alpha = np.array(0.5, np.float32)
    _, dalpha = EmulatorBackend().prelu_backward(dy, x, alpha, None)
    _, wrong = broken.prelu_backward(dy, x, alpha, None)
    assert dalpha == -4096.0
    assert wrong != dalpha


# --------------------------------------------------------------------------- #
# Row-wise kernels (softmax, log_softmax) and the warp shuffles under them.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "shape,axis,expected",
    [
        ((5, 3), 1, cuda_plan.RowwisePlan(5, 3, 1, 1, False)),  # a row fits one thread's chunk
        ((4, 100), 1, cuda_plan.RowwisePlan(4, 100, 1, 32, False)),  # a warp per row
        ((3, 3000), 1, cuda_plan.RowwisePlan(3, 3000, 1, 256, False)),  # a block per row
        ((20, 600), 0, cuda_plan.RowwisePlan(600, 20, 600, 1, False)),  # strided: coalesced, enough rows
        ((700, 40), 0, cuda_plan.RowwisePlan(40, 700, 1, 32, True)),  # too few rows for a thread each: moved
        ((5, 7, 9), 1, cuda_plan.RowwisePlan(45, 7, 1, 1, True)),  # inner 9: uncoalesced strided, moved
        ((), 0, cuda_plan.RowwisePlan(1, 1, 1, 1, False)),  # 0-d: one element
    ],
)
def test_rowwise_plan(shape, axis, expected):
    assert cuda_plan.rowwise_plan(shape, axis, EmulatorBackend.SM_COUNT) == expected


ROWWISE_PATHS = [  # (shape, axis, lanes): every kernel shape, one chunk (registers) or several (reloads)
    ((6, 5), 1, 1),
    ((6, 100), 1, 32),
    ((6, 300), 1, 32),
    ((2, 1500), 1, 256),
    ((2, 5000), 1, 256),
    ((20, 600), 0, 1),
    ((700, 40), 0, 32),
]


def _logits(shape, dtype, seed=5):
    """Normal logits of scale 5 with a -inf and a NaN planted (their rows follow PyTorch's rules)."""
    x = np.random.default_rng(seed).standard_normal(shape) * 5
    x.flat[1] = -np.inf
    x.flat[-1] = np.nan
    return x.astype(dtype)


def _emulated_rowwise(backend, kernel, axis, x, dy=None, out=None):
    if dy is None:
        return backend.forward(kernel, {"axis": axis}, x, out)
    return backend.backward(kernel, {"axis": axis}, dy, x, out)


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float32", "float64"])
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis,lanes", ROWWISE_PATHS, ids=[f"{s}-axis{a}-lanes{n}" for s, a, n in ROWWISE_PATHS])
def test_rowwise_paths_match_the_oracle(emulator, monkeypatch, dtype_name, kernel, shape, axis, lanes):
    dtype = support.dtype_of(dtype_name)
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = _logits(shape, dtype)
    dy = support.draw_values(shape, dtype, {}, seed=6, finite=True)
    _rowwise_against_the_oracle(emulator, kernel, axis, x, dy)
    assert {int(k.rsplit(",", 1)[1].rstrip("> ")) for k in recorder.kernels} == {lanes}


def _rowwise_against_the_oracle(emulator, kernel, axis, x, dy):
    """Forward and backward along ``axis`` on the emulator against the float64 oracle, and the forward in
    place on x giving the same bits; (y, dx)."""
    forward, backward = reference.ORACLE[kernel]
    y = _emulated_rowwise(emulator, kernel, axis, x)
    support.assert_close(y, forward(x, axis), x.dtype, kernel, f"{kernel} {x.shape}")
    dx = _emulated_rowwise(emulator, kernel, axis, x, dy)
    support.assert_close(dx, backward(dy, x, axis), x.dtype, kernel, f"{kernel}_backward {x.shape}",
                         support.rowwise_dy_scale(dy, axis))
    in_place = x.copy()
    support.assert_same(_emulated_rowwise(emulator, kernel, axis, in_place, out=in_place), y, "in place")
    return y, dx


@pytest.mark.parametrize("shape", [(64, 300), (4, 3000)], ids=["warp", "block"])
def test_rowwise_is_deterministic_and_independent_of_the_grid(emulator, shape):
    """The same bits run to run, and a row's result does not depend on the rows launched with it."""
    x = _logits(shape, np.dtype(np.float32))
    dy = support.draw_values(shape, np.dtype(np.float32), {}, seed=7, finite=True)
    for kernel in ("softmax", "log_softmax"):
        dx = _emulated_rowwise(emulator, kernel, 1, x, dy)
        support.assert_same(_emulated_rowwise(emulator, kernel, 1, x, dy), dx, "run to run")
        for r in (0, shape[0] - 1):
            alone = _emulated_rowwise(emulator, kernel, 1, x[r : r + 1], dy[r : r + 1])
            support.assert_same(alone[0], dx[r], f"row {r} alone")


def test_rowwise_64_bit_instantiations_compute_the_same(emulator, monkeypatch):
    recorder = LaunchRecorder(emulator, monkeypatch)
    cases = [((6, 5), 1), ((6, 300), 1), ((2, 3000), 1), ((20, 600), 0)]
    expected = [_emulated_rowwise(emulator, "softmax", a, _logits(s, np.dtype(np.float64))) for s, a in cases]
    monkeypatch.setattr(cuda_plan, "index_type", lambda n, threads: "long long")
    for (shape, axis), want in zip(cases, expected):
        support.assert_same(_emulated_rowwise(emulator, "softmax", axis, _logits(shape, np.dtype(np.float64))), want)
    assert sum("long long" in k for k in recorder.kernels) == len(cases)


def test_planted_shuffle_bug_is_caught():
    """A butterfly that skips its first level leaves each half-warp with half the row."""
    broken = EmulatorBackend(defines=("FASTACT_PLANT_SHUFFLE_SKIPS_LEVEL",))
    x = np.random.default_rng(8).standard_normal((4, 100)).astype(np.float32)
    expected = reference.ORACLE["softmax"][0](x, 1)
    support.assert_close(_emulated_rowwise(EmulatorBackend(), "softmax", 1, x), expected, x.dtype, "softmax")
    wrong = _emulated_rowwise(broken, "softmax", 1, x)
    assert np.abs(wrong.sum(axis=1) - 1).max() > 0.1


SHUFFLE_PROBE = """
__global__ void shuffle_probe(int* xor_out, int* down_out, double* warp_sums) {
  const int lane = threadIdx.x % 32;
  xor_out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, lane * 10, 3);
  down_out[threadIdx.x] = __shfl_down_sync(0xffffffffu, lane * 10, 5);
  double v = threadIdx.x;
  for (int delta = 16; delta > 0; delta /= 2) v += __shfl_down_sync(0xffffffffu, v, delta);
  if (lane == 0) warp_sums[threadIdx.x / 32] = v;
}
__global__ void lane_exits_before_shuffle(int* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}
"""


def test_emulated_shuffles_follow_cuda():
    from fastact.backends.emulator.build import EmulatedModule

    module = EmulatedModule(["shuffle_probe", "lane_exits_before_shuffle"], extra_code=SHUFFLE_PROBE)
    xor_out, down_out, sums = np.zeros(64, np.int32), np.zeros(64, np.int32), np.zeros(2)
    module.launch("shuffle_probe", (1,), (64,), (xor_out, down_out, sums))
    lane = np.arange(64) % 32
    np.testing.assert_array_equal(xor_out, (lane ^ 3) * 10)
    np.testing.assert_array_equal(down_out, np.where(lane + 5 < 32, lane + 5, lane) * 10)  # past the end: own value
    np.testing.assert_array_equal(sums, [sum(range(32)), sum(range(32, 64))])
    with pytest.raises(RuntimeError, match="shuffle"):
        module.launch("lane_exits_before_shuffle", (1,), (64,), (np.zeros(64, np.int32),))


@pytest.mark.parametrize("dtype_name", support.DTYPE_NAMES)
def test_rowwise_accuracy_on_hard_rows(emulator, dtype_name):
    """Rows that stress the online sums: sorted (every chunk raises each lane's max, so every
    chunk rescales) and one dominant logit (log_softmax's max element is -log(1 + tiny))."""
    dtype = support.dtype_of(dtype_name)
    sorted_rows = np.stack([np.linspace(-5, 5, 20_000), np.linspace(-0.01, 0.01, 20_000)])
    dominant = np.full((2, 300), -20.0)
    dominant[:, 7] = 0.0
    for rows in (sorted_rows, dominant):
        x = rows.astype(dtype)
        dy = support.draw_values(rows.shape, dtype, {}, seed=9, finite=True)
        for kernel in ("softmax", "log_softmax"):
            forward, backward = reference.ORACLE[kernel]
            support.assert_close(_emulated_rowwise(emulator, kernel, 1, x), forward(x, 1), dtype, kernel, kernel)
            dx = _emulated_rowwise(emulator, kernel, 1, x, dy)
            scale = support.rowwise_dy_scale(dy, 1)
            support.assert_close(dx, backward(dy, x, 1), dtype, kernel, f"{kernel}_backward", scale)


# --------------------------------------------------------------------------- #
# Per-channel layouts of PReLU (cuda/prelu.cuh: ChannelLayout, reduce_planes, reduce_rows).
# --------------------------------------------------------------------------- #
def _layouts(recorder, kernel):
    """(layout, vector) of each launch of ``kernel``, from the name expressions."""
    found = set()
    for k in recorder.kernels:
        if k.startswith(f"fastact::{kernel}<"):
            layout = k.split("<", 1)[1].split(",", 1)[0].strip()
            found.add((layout.replace("fastact::", ""), int(k.rsplit(",", 1)[1].rstrip("> "))))
    return found


PRELU_LAYOUT_CASES = [  # (x shape, alpha shape, forward (layout, width), backward (layout, width)) for float16
    ((3, 4, 16), (4, 1), ("kWholePlanes", 8), ("kPlanes", 8)),  # planes of whole vectors
    ((3, 5, 13), (5, 1), ("kPlanes", 8), ("kPlanes", 1)),  # vectors straddle planes and wrap to channel 0
    ((2, 7, 9), (7, 1), ("kPlanes", 8), ("kPlanes", 1)),  # odd channel count
    ((3, 2, 3), (2, 1), ("kAnyLayout", 1), ("kPlanes", 1)),  # planes shorter than a vector
    ((9, 16), (16,), ("kRows", 8), ("kRows", 8)),  # channels-last, whole vectors of channels
    ((300, 24), (24,), ("kRows", 8), ("kRows", 8)),  # channels-last, 3 vectors: lanes past the last one
    ((9, 12), (12,), ("kAnyLayout", 1), ("kRows", 1)),  # channels-last, 12 channels: not a multiple of 8
    ((9, 10), (10,), ("kAnyLayout", 1), ("kRows", 1)),  # channels-last, odd vectors
    ((5000,), (), ("kOneChannel", 8), ("kPlanes", 8)),  # scalar alpha
    ((2, 3, 40000), (3, 1), ("kWholePlanes", 8), ("kPlanes", 8)),  # many chunks per channel
]


@pytest.mark.parametrize("x_shape,alpha_shape,forward,backward", PRELU_LAYOUT_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in PRELU_LAYOUT_CASES])
def test_prelu_layouts_match_numpy(emulator, monkeypatch, x_shape, alpha_shape, forward, backward):
    """Every forward and backward layout, bit for bit against the NumPy backend (dalpha: the same
    float32 products, added in another order and partly in float32 trees)."""
    dtype = np.dtype(np.float16)
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = support.draw_values(x_shape, dtype, {}, seed=11)
    dy = support.draw_values(x_shape, dtype, {}, seed=12, finite=True)
    alpha = np.random.default_rng(13).uniform(-0.5, 1.5, alpha_shape).astype(np.float32)
    with fastact.use_backend("numpy"):
        expected_y = fastact.prelu(x, alpha)
        expected_dx, expected_dalpha = fastact.prelu_backward(dy, x, alpha)
    support.assert_same(emulator.prelu_forward(x, alpha, None), expected_y)
    dx, dalpha = emulator.prelu_backward(dy, x, alpha, None)
    support.assert_same(dx, expected_dx)
    magnitude = reference.sum_to_shape(np.abs(np.where(x > 0, 0, x.astype(float) * dy.astype(float))), alpha.shape)
    support.assert_sum_close(dalpha, expected_dalpha, magnitude, np.dtype(np.float32), x.size // max(alpha.size, 1))
    assert _layouts(recorder, "prelu_forward") == {forward}
    assert _layouts(recorder, "prelu_backward") == {backward}


def test_prelu_misaligned_views_take_the_scalar_paths(emulator, monkeypatch):
    recorder = LaunchRecorder(emulator, monkeypatch)
    dtype = np.dtype(np.float32)
    base = support.draw_values((3 * 4 * 16 + 1,), dtype, {}, seed=14)
    x = base[1:].reshape(3, 4, 16)  # 4 bytes past an aligned address
    dy = support.draw_values((3, 4, 16), dtype, {}, seed=15, finite=True)
    alpha = np.array([0.1, -0.5, 2.0, 0.25], dtype).reshape(4, 1)
    with fastact.use_backend("numpy"):
        expected_y = fastact.prelu(x, alpha)
        expected_dx, expected_dalpha = fastact.prelu_backward(dy, x, alpha)
    support.assert_same(emulator.prelu_forward(x, alpha, None), expected_y)
    dx, dalpha = emulator.prelu_backward(dy, x, alpha, None)
    support.assert_same(dx, expected_dx)
    np.testing.assert_allclose(dalpha, expected_dalpha, rtol=1e-6)
    assert {w for _, w in _layouts(recorder, "prelu_forward") | _layouts(recorder, "prelu_backward")} == {1}


def test_prelu_channels_last_backward_widths(emulator, monkeypatch):
    """kRows backward: 16-byte vectors of channels when aligned, the scalar path for a misaligned view;
    both bit for bit against the NumPy backend (dalpha: the same double sums in the same order)."""
    recorder = LaunchRecorder(emulator, monkeypatch)
    dtype = np.dtype(np.float16)
    base = support.draw_values((70 * 32 + 1,), dtype, {}, seed=22)
    aligned = base[1:].copy().reshape(70, 32)
    misaligned = base[1:].reshape(70, 32)  # 2 bytes past an aligned address
    dy = support.draw_values((70, 32), dtype, {}, seed=23, finite=True)
    alpha = np.random.default_rng(24).uniform(-0.5, 1.5, (32,)).astype(np.float32)
    widths = []
    for x in (aligned, misaligned):
        recorder.kernels.clear()
        with fastact.use_backend("numpy"):
            expected_dx, expected_dalpha = fastact.prelu_backward(dy, x, alpha)
        dx, dalpha = emulator.prelu_backward(dy, x, alpha, None)
        support.assert_same(dx, expected_dx)
        np.testing.assert_allclose(dalpha, expected_dalpha, rtol=1e-6)
        widths.append(_layouts(recorder, "prelu_backward"))
    assert widths == [{("kRows", 8)}, {("kRows", 1)}]


# --------------------------------------------------------------------------- #
# Row kernels' 16-byte vector paths (cuda/rowwise.cuh: VEC, row_slots).
# --------------------------------------------------------------------------- #
ROW_VECTOR_CASES = [  # (shape, lanes, vector) for float16: rows in registers or read twice, vectors or the scalar path
    ((5, 64), 32, 8),  # a warp, one chunk of one vector per lane (most lanes padding)
    ((3, 1024), 32, 8),  # a warp, one full chunk: the row read once
    ((2, 1032), 256, 8),  # a block, one chunk
    ((2, 8192), 256, 8),  # a block, two chunks: read twice
    ((3, 1028), 256, 1),  # length not a multiple of 8: the scalar path
]


@pytest.mark.parametrize("kernel", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,lanes,vector", ROW_VECTOR_CASES, ids=[str(c[0]) for c in ROW_VECTOR_CASES])
def test_rowwise_vector_paths_match_the_oracle(emulator, monkeypatch, kernel, shape, lanes, vector):
    dtype = np.dtype(np.float16)
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = _logits(shape, dtype)
    dy = support.draw_values(shape, dtype, {}, seed=16, finite=True)
    forward, backward = reference.ORACLE[kernel]
    support.assert_close(_emulated_rowwise(emulator, kernel, 1, x), forward(x, 1), dtype, kernel, kernel)
    dx = _emulated_rowwise(emulator, kernel, 1, x, dy)
    support.assert_close(dx, backward(dy, x, 1), dtype, kernel, f"{kernel}_backward", support.rowwise_dy_scale(dy, 1))
    launched = {tuple(int(v) for v in k.rsplit(">", 1)[0].rsplit(",", 2)[1:]) for k in recorder.kernels}
    assert launched == {(vector, lanes)}


def test_rowwise_misaligned_rows_take_the_scalar_path(emulator, monkeypatch):
    recorder = LaunchRecorder(emulator, monkeypatch)
    base = _logits((3 * 1024 + 1,), np.dtype(np.float32))
    x = base[1:].reshape(3, 1024)  # 4 bytes past an aligned address
    expected = reference.ORACLE["softmax"][0](x, 1)
    support.assert_close(_emulated_rowwise(emulator, "softmax", 1, x), expected, x.dtype, "softmax")
    assert {int(k.rsplit(",", 2)[1]) for k in recorder.kernels} == {1}


# --------------------------------------------------------------------------- #
# The strided kernel's 16-byte columns (cuda/rowwise.cuh: rowwise_columns).
# --------------------------------------------------------------------------- #
def _launched_widths(recorder):
    """(vector, lanes) of each row-wise launch, from the name expressions."""
    return {tuple(int(v) for v in k.rsplit(">", 1)[0].rsplit(",", 2)[1:]) for k in recorder.kernels}


COLUMN_CASES = [  # (shape, axis): strided rows (inner >= 32, rows >= 512 for the emulator's one SM)
    ((2, 256, 256), 1),  # one tile of float16 columns per 256 rows, padding in no chunk
    ((4, 37, 512), 1),  # length 37: every group's last chunk padded; several tiles per block (grid-stride)
    ((3, 5, 200), 1),  # length 5 < the 16 groups: groups with no element; 200 = 25 vectors: tiles cross slices
    ((520, 1000), 0),  # outer 1, a long axis (many chunks), dead lanes in the last tile
    ((1, 1, 512), 1),  # length 1
]


@pytest.mark.parametrize("dtype_name", support.DTYPE_NAMES)
@pytest.mark.parametrize("kernel", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", COLUMN_CASES, ids=[f"{s}-axis{a}" for s, a in COLUMN_CASES])
def test_rowwise_columns_match_the_oracle(emulator, monkeypatch, dtype_name, kernel, shape, axis):
    dtype = support.dtype_of(dtype_name)
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = _logits(shape, dtype)
    dy = support.draw_values(shape, dtype, {}, seed=17, finite=True)
    _, dx = _rowwise_against_the_oracle(emulator, kernel, axis, x, dy)
    in_place_dy = dy.copy()
    support.assert_same(_emulated_rowwise(emulator, kernel, axis, x, in_place_dy, out=in_place_dy), dx, "in place dy")
    assert _launched_widths(recorder) == {(1 if dtype == np.float64 else 16 // dtype.itemsize, 1)}


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float32"])
def test_rowwise_columns_follow_the_nan_and_inf_rules(emulator, dtype_name):
    """Rows (along axis 1) with NaN, +inf, only -inf, one -inf, and -inf with +inf, side by side in one tile."""
    dtype = support.dtype_of(dtype_name)
    x = np.random.default_rng(18).standard_normal((2, 40, 256)) * 5
    x[0, 3, 0] = np.nan
    x[0, 39, 1] = np.inf
    x[0, :, 2] = -np.inf
    x[0, 0, 3] = -np.inf
    x[1, 5, 7], x[1, 6, 7] = -np.inf, np.inf
    x[1, 39, 255] = np.nan  # the last row element of the last column
    x = x.astype(dtype)
    dy = support.draw_values(x.shape, dtype, {}, seed=19, finite=True)
    for kernel in ("softmax", "log_softmax"):
        forward, backward = reference.ORACLE[kernel]
        y = _emulated_rowwise(emulator, kernel, 1, x)
        support.assert_close(y, forward(x, 1), dtype, kernel, kernel)
        assert np.isnan(y.astype(np.float64)[0, :, :3]).all() and np.isnan(y.astype(np.float64)[1, :, [7, 255]]).all()
        assert not np.isnan(y.astype(np.float64)[0, :, 3]).any()
        dx = _emulated_rowwise(emulator, kernel, 1, x, dy)
        support.assert_close(dx, backward(dy, x, 1), dtype, kernel, f"{kernel}_backward", support.rowwise_dy_scale(dy, 1))


def test_rowwise_columns_are_deterministic_and_independent_of_the_layout(emulator, monkeypatch):
    """A row's result does not depend on its neighbours, the tile it falls in or the grid: the same bits
    alone, in a narrower array and in the scalar kernel's place (the sums' order is the row's own)."""
    recorder = LaunchRecorder(emulator, monkeypatch)
    dtype = np.dtype(np.float32)
    x = _logits((6, 300, 96), dtype)  # 576 rows, 3 tiles
    dy = support.draw_values(x.shape, dtype, {}, seed=20, finite=True)
    for kernel in ("softmax", "log_softmax"):
        for direction in ("forward", "backward"):
            gradient = dy if direction == "backward" else None
            dx = _emulated_rowwise(emulator, kernel, 1, x, gradient)
            support.assert_same(_emulated_rowwise(emulator, kernel, 1, x, gradient), dx, "run to run")
            # The rows of columns 32..63, three times over: 576 rows of inner 32, tiles across slices.
            narrow = np.concatenate([x[:, :, 32:64]] * 3)
            alone = _emulated_rowwise(emulator, kernel, 1, narrow,
                                      None if gradient is None else np.concatenate([dy[:, :, 32:64]] * 3))
            support.assert_same(alone[:6], dx[:, :, 32:64], f"{kernel} {direction}: narrower array, other tiles")
    assert _launched_widths(recorder) == {(4, 1)}


def test_rowwise_columns_fall_back_to_the_scalar_kernel(emulator, monkeypatch):
    """inner not a multiple of the vector, or a misaligned operand: the scalar strided kernel."""
    recorder = LaunchRecorder(emulator, monkeypatch)
    dtype = np.dtype(np.float16)
    odd = _logits((2, 7, 260), dtype)  # inner 260: not a multiple of 8
    base = _logits((2 * 7 * 256 + 1,), dtype)
    misaligned = base[1:].reshape(2, 7, 256)
    for x in (odd, misaligned):
        support.assert_close(_emulated_rowwise(emulator, "softmax", 1, x), reference.ORACLE["softmax"][0](x, 1), dtype,
                             "softmax", "softmax")
    assert _launched_widths(recorder) == {(1, 1)}


def test_rowwise_columns_64_bit_instantiations_compute_the_same(emulator, monkeypatch):
    recorder = LaunchRecorder(emulator, monkeypatch)
    x = _logits((4, 37, 512), np.dtype(np.float32))
    dy = support.draw_values(x.shape, x.dtype, {}, seed=21, finite=True)
    expected = [_emulated_rowwise(emulator, k, 1, x, g) for k in ("softmax", "log_softmax") for g in (None, dy)]
    monkeypatch.setattr(cuda_plan, "index_type", lambda n, threads: "long long")
    got = [_emulated_rowwise(emulator, k, 1, x, g) for k in ("softmax", "log_softmax") for g in (None, dy)]
    for a, b in zip(got, expected):
        support.assert_same(a, b)
    assert sum("long long" in k for k in recorder.kernels) == 4
    assert _launched_widths(recorder) == {(4, 1)}


def test_rowwise_columns_plan():
    p = cuda_plan.rowwise_plan((32, 100, 4096), 1, 132)
    launch = cuda_plan.rowwise_launch(p, 132, np.dtype(np.float16), [0, 0, 0])
    assert (launch.lanes, launch.vector, launch.index) == (1, 8, "int")
    assert launch.grid == min(32 * 4096 // 8 // cuda_plan.column_tile("forward"), 132 * cuda_plan.COLUMN_BLOCKS_PER_SM)
    # A backward's tiles are half as wide (x and dy re-read), and the grid keeps the tiles resident at
    # once within COLUMN_L2_BYTES: here rows of 100, well within it, so the same cap of blocks per SM.
    back = cuda_plan.rowwise_launch(p, 132, np.dtype(np.float16), [0, 0, 0], "backward")
    assert back.grid == min(32 * 4096 // 8 // cuda_plan.column_tile("backward"), 132 * cuda_plan.COLUMN_BLOCKS_PER_SM)
    # Rows of 100 000 (a plan only): one block's tile alone is 25.6 MB; one block per SM (the floor).
    long_rows = cuda_plan.rowwise_plan((1, 100_000, 131_072), 1, 132)
    assert (long_rows.inner, long_rows.move_axis) == (131_072, False)
    for direction in ("forward", "backward"):
        assert cuda_plan.rowwise_launch(long_rows, 132, np.dtype(np.float16), [0, 0, 0], direction).grid == 132
    assert cuda_plan.rowwise_launch(p, 132, np.dtype(np.float32), [0, 0, 0]).grid == 132 * cuda_plan.COLUMN_BLOCKS_PER_SM
    assert cuda_plan.rowwise_launch(p, 132, np.dtype(np.float16), [0, 8, 0]).vector == 1  # misaligned
    assert cuda_plan.rowwise_launch(p, 132, np.dtype(np.float64), [0, 0, 0]).vector == 1  # float64: scalar
    odd = cuda_plan.rowwise_plan((32, 100, 4102), 1, 132)  # inner not a multiple of 4
    assert cuda_plan.rowwise_launch(odd, 132, np.dtype(np.float32), [0, 0, 0]).vector == 1


def test_softmax_keeps_bfloat16_subnormal_outputs(emulator):
    """exp(x - max) below float32's normal range is a bfloat16 subnormal: softmax forward must not flush it."""
    import ml_dtypes

    dtype = np.dtype(ml_dtypes.bfloat16)
    x = np.zeros((2, 64), np.float32)
    x[:, 1:] = np.linspace(-87.0, -92.0, 63)  # exp from 1.6e-38 (float32 normal) down to 1.1e-40 (bfloat16 subnormal)
    x = x.astype(dtype)
    y = _emulated_rowwise(emulator, "softmax", 1, x)
    support.assert_close(y, reference.ORACLE["softmax"][0](x, 1), dtype, "softmax", "softmax")
    assert (y.astype(np.float32)[:, 1:] > 0).all()
