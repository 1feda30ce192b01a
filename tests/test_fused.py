"""The fused calls (SPEC section 4) against float64 references, over backend x dtype x geometry.

bias_act is checked to 2 ulp (one rounding per step); sums are checked with
the bound of ``support.assert_sum_close`` (biases: float64 totals; GEMMs: float32 or
float64 accumulation, a bound that grows with the number of terms).  Where PyTorch is installed, the references are
checked against its conv2d/linear and autograd too.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support
from fastact import backends, reference
from fastact.backends import Backend
from support import BACKENDS, backend_param, dtype_of, to_backend, to_host



def fused_backend_param(name: str):
    """backend_param, skipped where the backend has no fused calls (every backend here has them)."""
    param = backend_param(name)
    if param.marks or type(backends.load(name)).bias_act is not Backend.bias_act:
        return param
    return pytest.param(name, marks=[pytest.mark.skip(reason=f"backend {name!r} has no fused kernels yet")], id=name)


backend_params = [fused_backend_param(b) for b in BACKENDS]
FLOAT_DTYPES = ("float32", "float64")
HALF_DTYPES = ("float16", "bfloat16")


def draw(shape, dtype, seed, scale=1.0):
    """Normal random values of ``shape`` in ``dtype`` (finite: these tests are about sums, not edge values)."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def activation_pair(name: str, params: dict, dtype: np.dtype):
    """(act(z), dy * act'(z)) in float64, parameters as the kernel sees them."""
    return support.oracle_for(name, params, dtype)


def gemm_close(actual, expected, magnitude, dtype, terms, what):
    """A GEMM result: its products are added in the compute dtype, so the bound grows with ``terms``."""
    support.assert_sum_close(actual, expected, magnitude, dtype, terms, accumulated=True, what=what)


def as_activation(name: str, params: dict):
    """The activation as a fused call takes it: a plain name for the defaults, else an Activation."""
    return fastact.Activation(name, **params) if params else name


# --------------------------------------------------------------------------- #
# bias_act
# --------------------------------------------------------------------------- #
BIAS_CASES = [  # (x shape, axis, activation, params)
    ((2, 3, 5, 4), 1, "relu", {}),
    ((2, 5, 4, 3), -1, "leaky_relu", {"alpha": 0.1}),
    ((3, 4, 6), 0, "relu6", {}),
    ((2, 3, 4, 5), 2, "thresholded_relu", {"theta": 0.5}),
    ((7,), 0, "relu", {"max_value": 2.0}),
    ((2, 1, 3), 1, "leaky_relu", {}),
    ((0, 3, 2), 1, "relu", {}),
    ((2, 6, 150, 150), 1, "relu", {"alpha": 0.3, "threshold": 0.25}),  # many blocks, two threads
]
BIAS_IDS = [f"{shape}-axis{axis}-{name}" for shape, axis, name, _ in BIAS_CASES]


def _strided(a: np.ndarray, xp) -> np.ndarray:
    """``a`` as a view with a gap after every element (a non-contiguous input)."""
    base = xp.zeros((*a.shape, 2), a.dtype)
    base[..., 0] = xp.asarray(a)
    return base[..., 0]


def _bias_inputs(backend, shape, axis, dtype, layout):
    x = draw(shape, dtype, 1, 2.0)
    bias = draw((shape[axis],), dtype, 2)
    dy = draw(shape, dtype, 3)
    make = (lambda a: to_backend(backend, a)) if layout == "contiguous" else (lambda a: _strided(a, support.xp_for(backend)))
    return x, bias, dy, make


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", [*FLOAT_DTYPES, *HALF_DTYPES])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("shape,axis,name,params", BIAS_CASES, ids=BIAS_IDS)
def test_bias_act(backend, dtype_name, layout, shape, axis, name, params):
    dtype = dtype_of(dtype_name)
    x, bias, dy, make = _bias_inputs(backend, shape, axis, dtype, layout)
    others = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    # x + b rounded once in the compute dtype: the activation then sees what the fused call sees.
    compute = support.compute_dtype(dtype)
    z = (x.astype(compute) + np.expand_dims(bias.astype(compute), others)).astype(np.float64)
    forward, backward = activation_pair(name, params, dtype)
    activation = as_activation(name, params)
    xb, bb, dyb = make(x), to_backend(backend, bias), make(dy)
    with fastact.use_backend(backend):
        y = fastact.bias_act(xb, bb, activation, axis=axis)
        dx, dbias = fastact.bias_act_backward(dyb, xb, bb, activation, axis=axis)
        out = support.xp_for(backend).full(shape, 7, dtype)
        assert fastact.bias_act(xb, bb, activation, axis=axis, out=out) is out
        x_inplace = make(x)
        assert fastact.bias_act(x_inplace, bb, activation, axis=axis, out=x_inplace) is x_inplace
    assert isinstance(y, support.expected_kind(backend)) and y.dtype == dtype and dbias.dtype == dtype
    support.assert_unchanged(x, xb, "x")
    support.assert_unchanged(bias, bb, "bias")
    support.assert_close(to_host(y), forward(z), dtype, 2.0, "bias_act")
    support.assert_same(to_host(out), to_host(y), "bias_act out=")
    support.assert_same(to_host(x_inplace), to_host(y), "bias_act in place")
    expected_dx = backward(dy, z)
    support.assert_close(to_host(dx), expected_dx, dtype, 2.0, "bias_act_backward dx")
    terms = int(np.prod([shape[i] for i in others]))
    support.assert_sum_close(to_host(dbias), expected_dx.sum(axis=others), np.abs(expected_dx).sum(axis=others), dtype, terms, what="dbias")


@pytest.mark.parametrize("backend", backend_params)
def test_bias_act_bias_dtype_and_lists(backend):
    """A bias keeps its own dtype (dbias too); a list takes x's dtype."""
    x = to_backend(backend, draw((2, 3, 4), np.float16, 4))
    bias32 = to_backend(backend, draw((3,), np.float32, 5))
    with fastact.use_backend(backend):
        y = fastact.bias_act(x, bias32, "relu")
        _, dbias = fastact.bias_act_backward(x, x, bias32, "relu")
        y_list = fastact.bias_act(x, [0.5, -0.5, 1.0], "relu")
        _, dbias_list = fastact.bias_act_backward(x, x, [0.5, -0.5, 1.0], "relu")
    assert y.dtype == np.float16 and dbias.dtype == np.float32
    assert y_list.dtype == np.float16 and dbias_list.dtype == np.float16
    expected = np.maximum(to_host(x).astype(np.float64) + np.array([0.5, -0.5, 1.0])[:, None], 0)
    support.assert_close(to_host(y_list), expected, np.dtype(np.float16), 2.0, "list bias")


@pytest.mark.parametrize("budget", [0, 200, 1 << 12])  # none; from axis 2 (30 floats); from axis 1
def test_bias_act_written_out_bias_is_exact(monkeypatch, budget):
    """However much of the bias the NumPy forward writes out (none, some trailing axes), y is the same bits."""
    from fastact.backends.numpy import fused as numpy_fused

    x, bias = draw((3, 4, 5, 6), np.float32, 6), draw((6,), np.float32, 7)
    with fastact.use_backend("numpy"):
        expected = [fastact.bias_act(x, bias[: x.shape[axis]], "leaky_relu", axis=axis) for axis in (1, 2, 3)]
        monkeypatch.setattr(numpy_fused, "EXPANDED_BIAS_BYTES", budget)
        for axis, y in zip((1, 2, 3), expected):
            support.assert_same(fastact.bias_act(x, bias[: x.shape[axis]], "leaky_relu", axis=axis), y, f"axis {axis}")


# --------------------------------------------------------------------------- #
# dense_bias_act
# --------------------------------------------------------------------------- #
DENSE_CASES = [  # (x shape, out features, activation, params)
    ((6,), 5, "relu", {}),
    ((4, 7), 3, "leaky_relu", {"alpha": 0.05}),
    ((2, 3, 8), 6, "relu6", {}),
    ((0, 4), 2, "thresholded_relu", {"theta": 0.2}),
]


def check_dense(backend, dtype, x_shape, features, name, params, with_bias):
    x = draw(x_shape, dtype, 10)
    w = draw((x_shape[-1], features), dtype, 11, 0.5)
    b = draw((features,), dtype, 12) if with_bias else None
    dy = draw((*x_shape[:-1], features), dtype, 13)
    forward, backward = activation_pair(name, params, dtype)
    z = reference.dense(x, w, b)
    expected_dz = backward(dy, z)
    activation = as_activation(name, params)
    xb, wb, bb, dyb = (None if a is None else to_backend(backend, a) for a in (x, w, b, dy))
    with fastact.use_backend(backend):
        y = fastact.dense_bias_act(xb, wb, bb, activation)
        dx, dw, db = fastact.dense_bias_act_backward(dyb, xb, wb, bb, activation)
    assert isinstance(y, support.expected_kind(backend)) and y.dtype == dtype and dx.dtype == dtype and dw.dtype == dtype
    k = x_shape[-1]
    gemm_close(to_host(y), forward(z), reference.dense(np.abs(x), np.abs(w), None if b is None else np.abs(b)), dtype, k, "y")
    expected_dx, expected_dw = reference.dense_backward(expected_dz, x, w)
    scale_dx, scale_dw = reference.dense_backward(np.abs(expected_dz), np.abs(x), np.abs(w))
    rows = int(np.prod(x_shape[:-1]))
    gemm_close(to_host(dx), expected_dx, scale_dx, dtype, features, "dx")
    gemm_close(to_host(dw), expected_dw, scale_dw, dtype, rows, "dw")
    if b is None:
        assert db is None
    else:
        flat = expected_dz.reshape(-1, features)
        support.assert_sum_close(to_host(db), flat.sum(0), np.abs(flat).sum(0), dtype, rows, what="db")
    return y, dx, dw, db


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", [*FLOAT_DTYPES, *HALF_DTYPES])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("x_shape,features,name,params", DENSE_CASES, ids=[str(c[0]) for c in DENSE_CASES])
def test_dense_bias_act(backend, dtype_name, with_bias, x_shape, features, name, params):
    check_dense(backend, dtype_of(dtype_name), x_shape, features, name, params, with_bias)


# --------------------------------------------------------------------------- #
# conv2d_bias_act
# --------------------------------------------------------------------------- #
# (x shape NCHW, w shape (O, C/groups, kh, kw), options, activation, params)
CONV_CASES = [
    ((2, 3, 6, 5), (4, 3, 3, 3), {}, "relu", {}),
    ((2, 3, 6, 5), (4, 3, 3, 3), {"padding": "same"}, "leaky_relu", {"alpha": 0.1}),
    ((2, 3, 7, 6), (4, 3, 3, 2), {"padding": "same", "stride": 2}, "relu6", {}),
    ((1, 3, 5, 6), (2, 3, 2, 2), {"padding": "same"}, "thresholded_relu", {"theta": 0.5}),
    ((2, 2, 6, 7), (3, 2, 3, 3), {"padding": 1, "stride": (2, 1)}, "relu", {}),
    ((1, 2, 8, 7), (3, 2, 3, 2), {"padding": (1, 2), "dilation": 2}, "leaky_relu", {}),
    ((2, 2, 9, 8), (3, 2, 2, 3), {"padding": ((0, 2), (1, 0)), "stride": 2, "dilation": (2, 1)}, "relu", {"max_value": 2.0}),
    ((2, 4, 5, 5), (6, 2, 3, 3), {"padding": 1, "groups": 2}, "relu", {}),
    ((2, 4, 6, 6), (4, 1, 3, 3), {"padding": "same", "groups": 4}, "relu6", {}),
    ((1, 4, 7, 7), (8, 1, 3, 3), {"padding": "same", "stride": 2, "groups": 4}, "leaky_relu", {"alpha": 0.3}),
    ((2, 5, 4, 3), (3, 5, 1, 1), {}, "relu", {}),
    ((2, 5, 5, 4), (3, 5, 1, 1), {"stride": 2}, "leaky_relu", {}),
    ((1, 2, 2, 2), (3, 2, 3, 3), {"padding": "same"}, "relu", {"threshold": -0.5}),
    ((0, 3, 5, 5), (2, 3, 3, 3), {"padding": 1}, "relu", {}),
    ((1, 2, 7, 9), (2, 2, 1, 3), {"padding": "same", "stride": 3}, "thresholded_relu", {}),
]
CONV_IDS = [f"{i}-{name}-{'-'.join(f'{k}{v}' for k, v in opts.items()) or 'plain'}" for i, (_, _, opts, name, _) in enumerate(CONV_CASES)]


def explicit_padding(padding, in_size, kernel, stride, dilation):
    """SPEC 4's padding forms as ((top, bottom), (left, right)), written independently of fastact."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        pads = []
        for n, k, s, d in zip(in_size, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], int):
        return (padding[0], padding[0]), (padding[1], padding[1])
    return tuple(padding)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def reference_options(x_shape, w_shape, options):
    """The reference's explicit arguments for the options of a case (NCHW shapes)."""
    stride, dilation = pair(options.get("stride", 1)), pair(options.get("dilation", 1))
    padding = explicit_padding(options.get("padding", "valid"), x_shape[2:], w_shape[2:], stride, dilation)
    return {"stride": stride, "dilation": dilation, "padding": padding, "groups": options.get("groups", 1)}


def to_format(x, w, data_format):
    """NCHW x and PyTorch w as the data format takes them."""
    if data_format == "NHWC":
        return x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0)
    return x, w


def conv_inputs(x_shape, w_shape, dtype, data_format, with_bias):
    x, w = to_format(draw(x_shape, dtype, 20), draw(w_shape, dtype, 21, 0.5), data_format)
    b = draw((w_shape[0],), dtype, 22) if with_bias else None
    return np.ascontiguousarray(x), np.ascontiguousarray(w), b


def check_conv(backend, dtype, case, data_format, with_bias, make=None):
    x_shape, w_shape, options, name, params = case
    x, w, b = conv_inputs(x_shape, w_shape, dtype, data_format, with_bias)
    ref = {**reference_options(x_shape, w_shape, options), "data_format": data_format}
    z = reference.conv2d(x, w, b, **ref)
    dy = draw(z.shape, dtype, 23)
    forward, backward = activation_pair(name, params, dtype)
    expected_dz = backward(dy, z)
    make = make or (lambda a: to_backend(backend, a))
    xb, wb, dyb = make(x), to_backend(backend, w), to_backend(backend, dy)
    bb = None if b is None else to_backend(backend, b)
    activation = as_activation(name, params)
    with fastact.use_backend(backend):
        y = fastact.conv2d_bias_act(xb, wb, bb, activation, **options, data_format=data_format)
        dx, dw, db = fastact.conv2d_bias_act_backward(dyb, xb, wb, bb, activation, **options, data_format=data_format)
    assert isinstance(y, support.expected_kind(backend)) and y.dtype == dtype and y.shape == z.shape
    assert dx.dtype == dtype and dw.dtype == dtype and dx.shape == x.shape and dw.shape == w.shape
    support.assert_unchanged(x, xb, "x")
    support.assert_unchanged(w, wb, "w")
    taps = int(np.prod(w_shape[1:]))
    scale = reference.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **ref)
    gemm_close(to_host(y), forward(z), scale, dtype, taps, "y")
    conv_options = {k: v for k, v in ref.items()}
    expected_dx, expected_dw = reference.conv2d_backward(expected_dz, x, w, **conv_options)
    scale_dx, scale_dw = reference.conv2d_backward(np.abs(expected_dz), np.abs(x), np.abs(w), **conv_options)
    pixels = int(np.prod(z.shape)) // w_shape[0]
    gemm_close(to_host(dx), expected_dx, scale_dx, dtype, w_shape[0] * w_shape[2] * w_shape[3], "dx")
    gemm_close(to_host(dw), expected_dw, scale_dw, dtype, pixels, "dw")
    channel_axis = 1 if data_format == "NCHW" else 3
    others = tuple(i for i in range(4) if i != channel_axis)
    if b is None:
        assert db is None
    else:
        support.assert_sum_close(to_host(db), expected_dz.sum(others), np.abs(expected_dz).sum(others), dtype, pixels, what="db")


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", FLOAT_DTYPES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_bias_act(backend, dtype_name, with_bias, data_format, case):
    check_conv(backend, dtype_of(dtype_name), case, data_format, with_bias)


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("dtype_name", HALF_DTYPES)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CONV_CASES[1:11:3], ids=CONV_IDS[1:11:3])
def test_conv2d_bias_act_16bit(backend, dtype_name, data_format, case):
    check_conv(backend, dtype_of(dtype_name), case, data_format, True)


@pytest.mark.parametrize("backend", backend_params)
def test_conv2d_strided_input(backend):
    """A non-contiguous x (every other element of a larger array)."""
    make = lambda a: _strided(a, support.xp_for(backend))  # noqa: E731
    for data_format in ("NCHW", "NHWC"):
        check_conv(backend, np.dtype(np.float32), CONV_CASES[7], data_format, True, make)


def test_conv2d_batch_chunks(monkeypatch):
    """With an im2col budget below one sample, every sample is its own chunk (NumPy backend)."""
    from fastact.backends.numpy import fused as numpy_fused

    monkeypatch.setattr(numpy_fused, "IM2COL_BUDGET_BYTES", 1)
    case = ((3, 3, 6, 5), (4, 3, 3, 3), {"padding": "same", "stride": 2}, "leaky_relu", {})
    for data_format in ("NCHW", "NHWC"):
        check_conv("numpy", np.dtype(np.float64), case, data_format, True)


# The cpu backend's compiled im2col/col2im (cuda/host/conv.h): geometries where
# windows skip pixels or read only padding, small chunks, and col2im's
# determinism (a gather: the NumPy backend's bits, on any number of threads).
CPU_CONV_EDGE_CASES = [
    ((2, 3, 5, 6), (4, 3, 2, 2), {"stride": 3}, "relu", {}),  # pixels no window reads: dx 0 there
    ((2, 2, 4, 5), (3, 2, 3, 3), {"padding": ((4, 3), (0, 5)), "dilation": 2, "stride": (1, 2)}, "leaky_relu", {}),
    ((1, 6, 6, 6), (4, 3, 3, 3), {"padding": ((2, 0), (0, 1)), "stride": (2, 3), "dilation": (1, 2), "groups": 2}, "relu", {}),
    ((3, 4, 9, 7), (4, 4, 3, 3), {"padding": "same", "stride": 2, "dilation": 2}, "relu", {}),
    ((3, 4, 6, 5), (4, 4, 1, 1), {}, "relu", {}),  # pointwise: NHWC reads x as the columns, NCHW copies
]
CPU_CONV_CASES = CPU_CONV_EDGE_CASES + CONV_CASES


def _cpu_or_skip():
    param = backend_param("cpu")
    if param.marks:
        pytest.skip("backend 'cpu' unavailable")
    return backends.load("cpu")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype_name", ["float64", "float16"])
@pytest.mark.parametrize("case", CPU_CONV_EDGE_CASES, ids=range(len(CPU_CONV_EDGE_CASES)))
def test_conv2d_cpu_edge_geometries(dtype_name, data_format, case):
    _cpu_or_skip()
    check_conv("cpu", dtype_of(dtype_name), case, data_format, True)


def test_conv2d_cpu_batch_chunks(monkeypatch):
    """A column budget below one sample: every sample its own chunk, the last chunk's buffer a shorter head."""
    _cpu_or_skip()
    from fastact.backends.cpu import backend as cpu_backend

    monkeypatch.setattr(cpu_backend, "COLS_BUDGET_BYTES", 1)
    for case in (CPU_CONV_EDGE_CASES[2], CPU_CONV_EDGE_CASES[3], CONV_CASES[2], CONV_CASES[13]):
        for data_format in ("NCHW", "NHWC"):
            check_conv("cpu", np.dtype(np.float64), case, data_format, True)
            check_conv("cpu", dtype_of("bfloat16"), case, data_format, True)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_conv2d_cpu_col2im_bits(data_format):
    """dx and dw on the cpu backend: the NumPy backend's bits (same GEMMs, same summation order), on 1 or 2 threads."""
    cpu = _cpu_or_skip()
    threads = cpu.engine.threads()
    results = {}
    try:
        for case in CPU_CONV_CASES[:9]:
            x_shape, w_shape, options, name, params = case
            x, w, b = conv_inputs(x_shape, w_shape, np.dtype(np.float32), data_format, True)
            with fastact.use_backend("numpy"):
                dy = draw(fastact.conv2d_bias_act(x, w, b, "linear", **options, data_format=data_format).shape, np.float32, 5)
                expected = fastact.conv2d_bias_act_backward(dy, x, w, b, "linear", **options, data_format=data_format)
            for count in (1, 2):
                cpu.engine.set_threads(count)
                with fastact.use_backend("cpu"):
                    results[count] = fastact.conv2d_bias_act_backward(dy, x, w, b, "linear", **options, data_format=data_format)
            for count, got in results.items():
                np.testing.assert_array_equal(got[0], expected[0], err_msg=f"dx, {count} thread(s), {case}")
                np.testing.assert_array_equal(got[1], expected[1], err_msg=f"dw, {count} thread(s), {case}")
    finally:
        cpu.engine.set_threads(threads)


# --------------------------------------------------------------------------- #
# The references against PyTorch (and with them the fused calls' definitions).
# --------------------------------------------------------------------------- #
def torch_relu(torch, z, p):
    """Keras' relu(z, alpha, max_value, threshold) in PyTorch ops (F.relu has no options)."""
    threshold, max_value = p.get("threshold", 0.0), p.get("max_value")
    above = z if max_value is None else z.clamp(0.0, max_value)
    return torch.where(z > threshold, above, p.get("alpha", 0.0) * (z - threshold))


TORCH_ACTIVATIONS = {  # (torch, z, params) -> act(z) with PyTorch's own functions where it has them
    "relu": lambda torch, z, p: torch_relu(torch, z, p) if p else torch.nn.functional.relu(z),
    "leaky_relu": lambda torch, z, p: torch.nn.functional.leaky_relu(z, p.get("alpha", 0.2)),
    "relu6": lambda torch, z, p: torch.nn.functional.relu6(z),
    "thresholded_relu": lambda torch, z, p: torch.nn.functional.threshold(z, p.get("theta", 1.0), 0.0),
}


def torch_conv_case(torch, case, data_format):
    """fastact's y, dx, dw, db and PyTorch's (autograd, float64) for one case."""
    F = torch.nn.functional
    x_shape, w_shape, options, name, params = case
    x, w = draw(x_shape, np.float64, 30), draw(w_shape, np.float64, 31, 0.5)
    b = draw((w_shape[0],), np.float64, 32)
    ref = reference_options(x_shape, w_shape, options)
    (top, bottom), (left, right) = ref["padding"]
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    z = F.conv2d(F.pad(tx, (left, right, top, bottom)), tw, tb, stride=ref["stride"], dilation=ref["dilation"], groups=ref["groups"])
    y = TORCH_ACTIVATIONS[name](torch, z, params)
    dy = draw(tuple(y.shape), np.float64, 33)
    y.backward(torch.tensor(dy))
    torch_results = [y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()]
    xf, wf = to_format(x, w, data_format)
    dyf = dy.transpose(0, 2, 3, 1) if data_format == "NHWC" else dy
    activation = as_activation(name, params)
    ours = [fastact.conv2d_bias_act(xf, wf, b, activation, **options, data_format=data_format),
            *fastact.conv2d_bias_act_backward(dyf, xf, wf, b, activation, **options, data_format=data_format)]
    if data_format == "NHWC":
        ours[0], ours[1] = ours[0].transpose(0, 3, 1, 2), ours[1].transpose(0, 3, 1, 2)
        ours[2] = ours[2].transpose(3, 2, 0, 1)
    return ours, torch_results


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[0][0] > 0], ids=[i for c, i in zip(CONV_CASES, CONV_IDS) if c[0][0] > 0])
def test_conv2d_matches_torch(case, data_format):
    torch = pytest.importorskip("torch")
    ours, theirs = torch_conv_case(torch, case, data_format)
    for what, a, b in zip(("y", "dx", "dw", "db"), ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=what)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_same_padding_matches_torch(padding):
    """For stride 1, TensorFlow's "same" (extra pixel bottom/right) is PyTorch's padding="same"."""
    torch = pytest.importorskip("torch")
    x, w = draw((1, 2, 6, 7), np.float64, 40), draw((3, 2, 4, 3), np.float64, 41)
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=padding, dilation=(1, 2)).numpy()
    identity = fastact.Activation("leaky_relu", alpha=1.0)
    y = fastact.conv2d_bias_act(x, w, None, identity, padding=padding, dilation=(1, 2))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_dense_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = draw((2, 3, 5), np.float64, 50), draw((5, 4), np.float64, 51), draw((4,), np.float64, 52)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w.T.copy(), b))
    y = F.leaky_relu(F.linear(tx, tw, tb), 0.1)
    dy = draw(tuple(y.shape), np.float64, 53)
    y.backward(torch.tensor(dy))
    activation = fastact.Activation("leaky_relu", alpha=0.1)
    ours = [fastact.dense_bias_act(x, w, b, activation), *fastact.dense_bias_act_backward(dy, x, w, b, activation)]
    theirs = [y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy().T, tb.grad.numpy()]
    for what, a, e in zip(("y", "dx", "dw", "db"), ours, theirs):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12, err_msg=what)


# --------------------------------------------------------------------------- #
# Errors: detected before anything is written, with the shapes or accepted values.
# --------------------------------------------------------------------------- #
X4 = np.zeros((2, 4, 6, 6), np.float32)
W4 = np.zeros((6, 4, 3, 3), np.float32)
CONV_ERRORS = [  # (kwargs changes, exception, message fragment)
    ({"w": np.zeros((6, 3, 3, 3), np.float32)}, ValueError, "input channel"),
    ({"groups": 3}, ValueError, "divide"),
    ({"groups": 0}, ValueError, "groups=0"),
    ({"groups": 2.0}, TypeError, "groups must be an int"),
    ({"b": np.zeros(5, np.float32)}, ValueError, "b must be 1-d with 6 values"),
    ({"b": np.zeros((6, 1), np.float32)}, ValueError, r"got shape \(6, 1\)"),
    ({"padding": "full"}, ValueError, "'valid', 'same'"),
    ({"padding": -1}, ValueError, "padding must be >= 0"),
    ({"padding": (1, 2, 3)}, TypeError, "padding"),
    ({"padding": 1.5}, TypeError, "padding"),
    ({"stride": 0}, ValueError, "stride must be >= 1"),
    ({"stride": (1, 2, 3)}, TypeError, "stride must be an int or a pair"),
    ({"dilation": 0}, ValueError, "dilation must be >= 1"),
    ({"data_format": "NCWH"}, ValueError, "NCHW"),
    ({"x": np.zeros((4, 6, 6), np.float32)}, ValueError, "4-d"),
    ({"x": np.zeros((2, 4, 2, 2), np.float32)}, ValueError, "smaller than the dilated kernel"),
    ({"w": np.zeros((6, 4, 3, 3), np.float64)}, TypeError, "same dtype"),
    ({"x": np.zeros((2, 4, 6, 6), np.int32)}, TypeError, "supported dtypes"),
    ({"activation": "no_such"}, ValueError, "unknown activation"),
    ({"activation": "prelu"}, ValueError, "not elementwise"),
    ({"activation": 3}, TypeError, "activation"),
]


@pytest.mark.parametrize("backend", backend_params)
@pytest.mark.parametrize("changes,error,message", CONV_ERRORS, ids=[m for _, _, m in CONV_ERRORS])
def test_conv2d_errors(backend, changes, error, message):
    kwargs = {"x": X4, "w": W4, "b": np.zeros(6, np.float32), **changes}
    kwargs = {k: to_backend(backend, v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with fastact.use_backend(backend):
        with pytest.raises(error, match=message):
            fastact.conv2d_bias_act(**kwargs)
        dy = to_backend(backend, np.zeros((2, 6, 4, 4), np.float32))
        with pytest.raises(error, match=message):
            fastact.conv2d_bias_act_backward(dy, **kwargs)


@pytest.mark.parametrize("backend", backend_params)
def test_gradient_shape_errors(backend):
    arrays = {k: to_backend(backend, v) for k, v in {"x": X4, "w": W4, "dy": np.zeros((2, 6, 4, 5), np.float32)}.items()}
    x2, w2 = to_backend(backend, np.zeros((3, 5), np.float32)), to_backend(backend, np.zeros((5, 2), np.float32))
    with fastact.use_backend(backend):
        with pytest.raises(ValueError, match=r"dy has shape \(2, 6, 4, 5\), the forward output has shape \(2, 6, 4, 4\)"):
            fastact.conv2d_bias_act_backward(arrays["dy"], arrays["x"], arrays["w"])
        with pytest.raises(TypeError, match="dy and x must have the same dtype"):
            fastact.dense_bias_act_backward(to_backend(backend, np.zeros((3, 2))), x2, w2)
        with pytest.raises(ValueError, match=r"w \(in, out\)"):
            fastact.dense_bias_act(x2, to_backend(backend, np.zeros((4, 2), np.float32)))
        with pytest.raises(ValueError, match="b must be 1-d with 2 values"):
            fastact.dense_bias_act(x2, w2, to_backend(backend, np.zeros(3, np.float32)))


@pytest.mark.parametrize("backend", backend_params)
def test_bias_act_errors_leave_out_untouched(backend):
    x = to_backend(backend, np.ones((2, 3, 4), np.float32))
    out = to_backend(backend, np.full((2, 3, 4), 5, np.float32))
    with fastact.use_backend(backend):
        with pytest.raises(ValueError, match=r"bias must be 1-d with 3 values \(x.shape\[1\]"):
            fastact.bias_act(x, to_backend(backend, np.zeros(4, np.float32)), out=out)
        with pytest.raises(ValueError, match="axis 3 is out of range"):
            fastact.bias_act(x, to_backend(backend, np.zeros(3, np.float32)), axis=3, out=out)
        with pytest.raises(TypeError, match="axis must be an int"):
            fastact.bias_act(x, to_backend(backend, np.zeros(3, np.float32)), axis=1.0, out=out)
        with pytest.raises(ValueError, match="not elementwise"):
            fastact.bias_act(x, to_backend(backend, np.zeros(3, np.float32)), "prelu", out=out)
        with pytest.raises(ValueError, match="dy and x must have the same shape"):
            fastact.bias_act_backward(to_backend(backend, np.ones((2, 3, 5), np.float32)), x, to_backend(backend, np.zeros(3, np.float32)))
    assert (to_host(out) == 5).all()
