"""fastact.torch's ops: the same values as fastact on the same memory, autograd, custom-op checks.

Skipped without torch.  The math itself is tested on arrays elsewhere (test_relu_family,
test_family, test_family_torch); here: every activation and fused call reaches fastact
through zero-copy views in every dtype and layout, its gradients are right (gradcheck in
float64, away from kinks; the kink and NaN conventions separately), and every custom op
passes ``torch.library.opcheck`` (schema, fake tensor, autograd registration, AOT dispatch).
CUDA tests run only where torch sees a GPU.
"""
from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

import fastact
import support
from fastact._registry import REGISTRY, get_spec

torch = pytest.importorskip("torch")
import fastact.torch as ft  # noqa: E402
from fastact.torch import _bridge, _ops  # noqa: E402

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - the test extra installs it
    ml_dtypes = None

# Every activation with its defaults, and non-default parameters where it has some.
CASES = [(name, {}) for name, spec in REGISTRY.items() if spec.form != "prelu"] + [
    ("relu", {"alpha": 0.1, "max_value": 6.0, "threshold": 0.5}),
    ("relu", {"threshold": -0.5}),
    ("leaky_relu", {"alpha": 0.05}),
    ("thresholded_relu", {"theta": 0.5}),
    ("elu", {"alpha": 0.5}),
    ("gelu", {"approximate": True}),
    ("softmax", {"axis": 0}),
    ("log_softmax", {"axis": 0}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items()) or 'defaults'}" for name, params in CASES]
TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


def _values(shape, dtype=torch.float64, seed=0, kinks=()):
    """Random values in [-5, 5], at least 0.05 away from every kink (where gradcheck's differences break)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator, dtype=torch.float64) * 10 - 5
    for kink in kinks:
        x = torch.where((x - kink).abs() < 0.05, x + 0.1, x)
    return x.to(dtype)


def _kinks(params: dict) -> tuple:
    return (-3.0, 0.0, 3.0, 6.0, *(params[k] for k in ("threshold", "theta", "max_value") if params.get(k) is not None))


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A copy of a tensor's values as NumPy (bfloat16 through ml_dtypes)."""
    t = t.detach()
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
    return t.numpy().copy()


def _layouts(x: torch.Tensor) -> dict:
    """The same values in several memory layouts (x is 4-d)."""
    return {
        "contiguous": x,
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "transposed": x.transpose(1, 3),
        "strided": x[:, :, ::2, 1:],
        "expanded": x[:1].expand(3, -1, -1, -1),
    }


# --------------------------------------------------------------------------- #
# The public functions mirror fastact's
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", [*REGISTRY, "swish", "hard_swish"])
def test_every_activation_has_fastacts_signature(name):
    expected = [p for p in inspect.signature(getattr(fastact, name)).parameters.values() if p.name != "out"]
    got = list(inspect.signature(getattr(ft, name)).parameters.values())
    assert [(p.name, p.default) for p in got] == [(p.name, p.default) for p in expected]
    assert name in ft.__all__


def test_every_op_is_registered_under_fastact():
    names = {op.name for op in _ops.ALL_OPS}
    for name, spec in REGISTRY.items():
        assert {name, f"{name}_backward"} <= names
        assert hasattr(torch.ops.fastact, name) and hasattr(torch.ops.fastact, f"{name}_backward")
    for fused in ("bias_act", "dense_bias_act", "conv2d_bias_act"):
        assert {fused, f"{fused}_backward"} <= names


def test_import_fastact_does_not_import_torch():
    code = "import sys, fastact; fastact.relu([1.0]); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- #
# Values: fastact's own, on the tensor's memory, every dtype and layout
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype_name", list(TORCH_DTYPES))
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_forward_and_backward_are_fastacts(name, params, dtype_name):
    if dtype_name == "bfloat16" and ml_dtypes is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    dtype = TORCH_DTYPES[dtype_name]
    base = _values((3, 4, 6, 5), dtype, seed=1)
    for layout, x in _layouts(base).items():
        x = x.detach().requires_grad_(True)
        y = getattr(ft, name)(x, **params)
        assert y.dtype == dtype and y.shape == x.shape, layout
        dy = _values(y.shape, dtype, seed=2)
        (dx,) = torch.autograd.grad(y, x, dy)
        expected_y = getattr(fastact, name)(_to_numpy(x), **params)
        expected_dx = getattr(fastact, f"{name}_backward")(_to_numpy(dy), _to_numpy(x), **params)
        np.testing.assert_array_equal(_to_numpy(y), expected_y, err_msg=f"{name} forward, {layout}")
        np.testing.assert_array_equal(_to_numpy(dx), expected_dx, err_msg=f"{name} backward, {layout}")


@pytest.mark.parametrize("shape", [(), (0,), (0, 3)])
def test_zero_dim_and_empty(shape):
    x = _values(shape, torch.float32).requires_grad_(True)
    y = ft.elu(x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.shape == x.shape
    np.testing.assert_array_equal(y.detach().numpy(), fastact.elu(x.detach().numpy()))


@pytest.mark.parametrize("dtype_name", list(TORCH_DTYPES))
def test_cpu_tensors_are_viewed_not_copied(dtype_name):
    if dtype_name == "bfloat16" and ml_dtypes is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    t = torch.zeros(4, 6, dtype=TORCH_DTYPES[dtype_name]).t()
    a = _bridge.as_array(t)
    assert a.__array_interface__["data"][0] == t.data_ptr() and a.strides == tuple(s * t.element_size() for s in t.stride())
    back = _bridge.as_tensor(a)
    assert back.data_ptr() == t.data_ptr() and back.dtype == t.dtype


def test_dispatcher_and_eager_paths_agree():
    """The custom op (what torch.compile calls) and the eager shortcut compute the same thing."""
    x = _values((5, 7), torch.float32, seed=3).requires_grad_(True)
    for name, params in CASES:
        spec = get_spec(name)
        values = _ops.schema_values(spec, tuple(spec.bind((), params).values()))
        y_op = getattr(torch.ops.fastact, name)(x, *values)
        y_eager = getattr(ft, name)(x, **params)
        assert y_op.grad_fn is not None and y_eager.grad_fn is not None
        torch.testing.assert_close(y_op, y_eager, rtol=0, atol=0)
        dy = torch.randn_like(x)
        torch.testing.assert_close(torch.autograd.grad(y_op, x, dy)[0], torch.autograd.grad(y_eager, x, dy)[0], rtol=0, atol=0)


def test_no_grad_and_inference_mode():
    x = _values((4, 4), torch.float32).requires_grad_(True)
    with torch.no_grad():
        y = ft.mish(x)
    assert y.grad_fn is None and not y.requires_grad
    with torch.inference_mode():
        y = ft.leaky_relu(x.detach(), 0.1)
    np.testing.assert_array_equal(y.numpy(), fastact.leaky_relu(x.detach().numpy(), 0.1))


# --------------------------------------------------------------------------- #
# Gradients
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("path", ["eager", "dispatcher"])
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_gradcheck(name, params, path):
    x = _values((4, 5), seed=4, kinks=_kinks(params)).requires_grad_(True)
    if path == "eager":
        function = lambda t: getattr(ft, name)(t, **params)  # noqa: E731
    else:
        spec = get_spec(name)
        values = _ops.schema_values(spec, tuple(spec.bind((), params).values()))
        function = lambda t: getattr(torch.ops.fastact, name)(t, *values)  # noqa: E731
    assert torch.autograd.gradcheck(function, (x,))


# (activation, params, x at a kink, the derivative there: the left one, as PyTorch)
KINKS = [
    ("relu", {}, 0.0, 0.0),
    ("leaky_relu", {"alpha": 0.1}, 0.0, 0.1),
    ("relu6", {}, 0.0, 0.0),
    ("relu6", {}, 6.0, 0.0),
    ("thresholded_relu", {"theta": 1.0}, 1.0, 0.0),
    ("relu", {"alpha": 0.3, "threshold": 2.0}, 2.0, 0.3),
    ("elu", {"alpha": 0.5}, 0.0, 0.5),
    ("selu", {}, 0.0, fastact.activations.SELU_SCALE * fastact.activations.SELU_ALPHA),
    ("hard_sigmoid", {}, -3.0, 0.0),
    ("hard_sigmoid", {}, 3.0, 0.0),
    ("hard_silu", {}, -3.0, 0.0),
    ("hard_silu", {}, 3.0, 1.0),
]


@pytest.mark.parametrize("name,params,at,derivative", KINKS)
def test_kink_conventions(name, params, at, derivative):
    x = torch.tensor([at], dtype=torch.float64, requires_grad=True)
    getattr(ft, name)(x, **params).backward(torch.ones(1, dtype=torch.float64))
    assert x.grad.item() == pytest.approx(derivative, rel=1e-15)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_nan_in_nan_out(name, params):
    x = torch.tensor([[1.0, float("nan"), -2.0]], requires_grad=True)
    y = getattr(ft, name)(x, **params)
    y.backward(torch.ones_like(y))
    rowwise = get_spec(name).form == "rowwise"
    nan = torch.isnan(x.detach()) if not rowwise else torch.ones_like(x, dtype=torch.bool)
    if rowwise and params.get("axis") == 0:  # rows run down the columns: only the NaN's column
        nan = torch.isnan(x.detach())
    assert torch.isnan(y.detach()[nan]).all() and torch.isnan(x.grad[nan]).all()


# --------------------------------------------------------------------------- #
# PReLU and the fused calls
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("alpha_shape", [(), (1,), (3, 1, 1), (5,), (2, 3, 4, 5)])
def test_prelu_gradcheck(alpha_shape):
    x = _values((2, 3, 4, 5), seed=5, kinks=(0.0,)).requires_grad_(True)
    alpha = _values(alpha_shape, seed=6).requires_grad_(True)
    assert torch.autograd.gradcheck(ft.prelu, (x, alpha))
    y = ft.prelu(x, alpha)
    expected = fastact.prelu(x.detach().numpy(), alpha.detach().numpy())
    np.testing.assert_array_equal(y.detach().numpy(), expected)


ACT = fastact.Activation("leaky_relu", alpha=0.05)


@pytest.mark.parametrize("activation", ["relu", ACT, "gelu", fastact.Activation("relu", max_value=2.0)])
def test_bias_act_gradcheck(activation):
    bias = _values((3,), seed=8).requires_grad_(True)
    z = _values((2, 3, 4), seed=7, kinks=(0.0, 2.0))  # x + bias, away from the kinks
    x = (z - bias.detach()[:, None]).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ft.bias_act(a, b, activation, axis=1), (x, bias))
    y = ft.bias_act(x, bias, activation, axis=1)
    expected = fastact.bias_act(x.detach().numpy(), bias.detach().numpy(), activation, axis=1)
    np.testing.assert_array_equal(y.detach().numpy(), expected)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("activation", ["linear", "tanh", ACT])
def test_dense_bias_act_gradcheck(activation, with_bias):
    x = _values((2, 3, 4), seed=9).requires_grad_(True)
    w = _values((4, 5), seed=10).requires_grad_(True)
    b = _values((5,), seed=11).requires_grad_(True) if with_bias else None
    inputs = (x, w, b) if with_bias else (x, w)
    function = lambda x, w, b=None: ft.dense_bias_act(x, w, b, activation)  # noqa: E731
    assert torch.autograd.gradcheck(function, inputs)
    y = function(*inputs)
    expected = fastact.dense_bias_act(x.detach().numpy(), w.detach().numpy(), None if b is None else b.detach().numpy(), activation)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-15, atol=1e-15)


CONV_CASES = [
    dict(),
    dict(stride=2, padding="same"),
    dict(padding=((1, 0), (2, 1)), dilation=(2, 1)),
    dict(groups=2, padding=1),
    dict(data_format="NHWC", padding="same", stride=(1, 2)),
]


@pytest.mark.parametrize("options", CONV_CASES, ids=[str(o) for o in CONV_CASES])
def test_conv2d_bias_act_gradcheck(options):
    nhwc = options.get("data_format") == "NHWC"
    groups = options.get("groups", 1)
    x = _values((2, 6, 6, 4) if nhwc else (2, 4, 6, 6), seed=12).requires_grad_(True)
    w = _values((3, 3, 4 // groups, 2) if nhwc else (2, 4 // groups, 3, 3), seed=13).requires_grad_(True)
    b = _values((2,), seed=14).requires_grad_(True)
    function = lambda x, w, b: ft.conv2d_bias_act(x, w, b, "tanh", **options)  # noqa: E731
    assert torch.autograd.gradcheck(function, (x, w, b))
    expected = fastact.conv2d_bias_act(x.detach().numpy(), w.detach().numpy(), b.detach().numpy(), "tanh", **options)
    np.testing.assert_allclose(function(x, w, b).detach().numpy(), expected, rtol=1e-14, atol=1e-14)


def test_conv2d_matches_torch():
    x = _values((2, 3, 9, 9), torch.float32, seed=15).requires_grad_(True)
    w = _values((4, 3, 3, 3), torch.float32, seed=16).requires_grad_(True)
    b = _values((4,), torch.float32, seed=17).requires_grad_(True)
    y = ft.conv2d_bias_act(x, w, b, ACT, stride=2, padding=1)
    expected = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(x, w, b, stride=2, padding=1), 0.05)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-4)
    dy = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, (x, w, b), dy), torch.autograd.grad(expected, (x, w, b), dy)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_16_bit_fused_calls():
    for dtype in (torch.float16, torch.bfloat16):
        if dtype is torch.bfloat16 and ml_dtypes is None:
            continue
        x = _values((2, 3, 5, 5), dtype, seed=18).requires_grad_(True)
        w = _values((4, 3, 3, 3), dtype, seed=19).requires_grad_(True)
        y = ft.conv2d_bias_act(x, w, None, "relu")
        y.sum().backward()
        assert y.dtype == dtype and x.grad.dtype == dtype and w.grad.dtype == dtype
        np.testing.assert_array_equal(_to_numpy(y), fastact.conv2d_bias_act(_to_numpy(x), _to_numpy(w), None, "relu"))


# --------------------------------------------------------------------------- #
# Clear errors
# --------------------------------------------------------------------------- #
def test_errors_are_clear():
    x = torch.randn(3)
    with pytest.raises(TypeError, match="torch.Tensor.*fastact.relu"):
        ft.relu(np.ones(3))
    with pytest.raises(ValueError, match="alpha must be finite"):
        ft.leaky_relu(x, float("inf"))
    with pytest.raises(TypeError, match="supported dtypes"):
        ft.relu(torch.arange(3))
    with pytest.raises(ValueError, match="not elementwise"):
        ft.bias_act(x[None], x, "softmax")
    with pytest.raises(TypeError, match="activation must be a name"):
        ft.dense_bias_act(x[None], torch.ones(3, 2), None, 3)
    with pytest.raises(TypeError, match="bias must be a tensor"):
        ft.bias_act(x[None], None)
    with pytest.raises(ValueError, match="groups"):
        ft.conv2d_bias_act(torch.ones(1, 3, 4, 4), torch.ones(2, 3, 3, 3), groups=2)
    with pytest.raises(TypeError, match="not supported.*CPU and CUDA"):
        _bridge.as_array(torch.ones(3, device="meta"))


def test_meta_tensors_get_the_shapes():
    """Meta tensors (shape inference, e.g. building a model on device="meta") go to the ops' fakes."""
    x, w = torch.ones(2, 3, 8, 8, device="meta"), torch.ones(4, 3, 3, 3, device="meta")
    assert ft.conv2d_bias_act(x, w, None, "relu", stride=2, padding="same").shape == (2, 4, 4, 4)
    assert ft.gelu(x).device.type == "meta"


# --------------------------------------------------------------------------- #
# torch.library.opcheck on every op
# --------------------------------------------------------------------------- #
def _opcheck_cases():
    x = _values((3, 4), seed=20, kinks=(0.0, 0.5, 6.0, 3.0, -3.0))
    dy = _values((3, 4), seed=21)
    for name, params in CASES:
        spec = get_spec(name)
        values = _ops.schema_values(spec, tuple(spec.bind((), params).values()))
        yield f"{name}-{params}", getattr(torch.ops.fastact, name), (x, *values)
        yield f"{name}_backward-{params}", getattr(torch.ops.fastact, f"{name}_backward"), (dy, x, *values)
    x4 = _values((2, 3, 5, 5), seed=22)
    alpha = _values((3, 1, 1), seed=23)
    yield "prelu", torch.ops.fastact.prelu, (x4, alpha)
    yield "prelu_backward", torch.ops.fastact.prelu_backward, (x4, x4, alpha)
    key = _ops.activation_key("test", ACT)
    bias = _values((3,), seed=24)
    yield "bias_act", torch.ops.fastact.bias_act, (x4, bias, key, 1)
    yield "bias_act_backward", torch.ops.fastact.bias_act_backward, (x4, x4, bias, key, 1)
    w, b = _values((5, 2), seed=25), _values((2,), seed=26)
    yield "dense_bias_act", torch.ops.fastact.dense_bias_act, (x4, w, b, key)
    yield "dense_bias_act-no-bias", torch.ops.fastact.dense_bias_act, (x4, w, None, key)
    yield "dense_bias_act_backward", torch.ops.fastact.dense_bias_act_backward, (_values((2, 3, 5, 2)), x4, w, b, key)
    wc, bc = _values((4, 3, 3, 3), seed=27), _values((4,), seed=28)
    conv = [key, [2, 1], [1, 1, 0, 1], [1, 1], 1, "NCHW"]
    yield "conv2d_bias_act", torch.ops.fastact.conv2d_bias_act, (x4, wc, bc, *conv)
    yield "conv2d_bias_act-no-bias", torch.ops.fastact.conv2d_bias_act, (x4, wc, None, *conv)
    dyc = _values((2, 4, 3, 4), seed=29)
    yield "conv2d_bias_act_backward", torch.ops.fastact.conv2d_bias_act_backward, (dyc, x4, wc, bc, *conv)


OPCHECK = list(_opcheck_cases())


def test_opcheck_covers_every_op():
    checked = {op._qualified_op_name.split("::")[1] for _, op, _ in OPCHECK}
    assert checked == {op.name for op in _ops.ALL_OPS}


@pytest.mark.parametrize("label,op,args", OPCHECK, ids=[case[0] for case in OPCHECK])
def test_opcheck(label, op, args):
    differentiable = not label.split("-")[0].endswith("_backward")
    args = tuple(a.detach().requires_grad_(differentiable) if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


# --------------------------------------------------------------------------- #
# CUDA (runs only where torch sees a GPU)
# --------------------------------------------------------------------------- #
@CUDA
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_cuda_matches_cpu(name, params):
    x = _values((64, 33), torch.float32, seed=30).requires_grad_(True)
    xc = x.detach().cuda().requires_grad_(True)
    y, yc = getattr(ft, name)(x, **params), getattr(ft, name)(xc, **params)
    assert yc.is_cuda and yc.dtype == x.dtype
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    (dxc,) = torch.autograd.grad(yc, xc, dy.cuda())
    torch.testing.assert_close(yc.cpu(), y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dxc.cpu(), dx, rtol=1e-5, atol=1e-6)


@CUDA
def test_cuda_runs_on_torchs_current_stream():
    import cupy

    x = torch.randn(4096, 4096, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        with _bridge.on_device(x):
            assert cupy.cuda.get_current_stream().ptr == stream.cuda_stream
            assert cupy.cuda.Device().id == x.device.index
        product = x @ x  # long torch work on the side stream, not waited for on the host
        y = ft.leaky_relu(product, 0.1)  # must run after it, on the same stream
        z = y * 2  # and torch's next op after fastact's kernel
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(z, torch.nn.functional.leaky_relu(x @ x, 0.1) * 2)


@CUDA
def test_cuda_fused_calls_and_prelu():
    x = _values((2, 3, 8, 8), torch.float32, seed=31).cuda().requires_grad_(True)
    w = _values((4, 3, 3, 3), torch.float32, seed=32).cuda().requires_grad_(True)
    b = _values((4,), torch.float32, seed=33).cuda().requires_grad_(True)
    y = ft.conv2d_bias_act(x, w, b, ACT, padding="same")
    expected = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(x, w, b, padding="same"), 0.05)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)
    dy = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, (x, w, b), dy), torch.autograd.grad(expected, (x, w, b), dy)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
    alpha = torch.full((3, 1, 1), 0.25, device="cuda", requires_grad=True)
    y = ft.prelu(x, alpha)
    torch.testing.assert_close(y, torch.nn.functional.prelu(x, alpha.reshape(3)))
    xd, wd = x.reshape(6, -1)[:, :16], _values((16, 5), torch.float32).cuda()
    torch.testing.assert_close(ft.dense_bias_act(xd, wd, None, "relu"), torch.relu(xd @ wd), rtol=1e-4, atol=1e-4)


def test_docstring_examples_run():
    import doctest

    globs = {"torch": torch, "fastact": fastact}
    finder, failed, attempted = doctest.DocTestFinder(), 0, 0
    for name in ("fastact.torch", "fastact.torch.ops", "fastact.torch.nn", "fastact.torch.patch"):
        for test in finder.find(sys.modules[name], name, globs=dict(globs)):
            result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE).run(test)
            failed, attempted = failed + result.failed, attempted + result.attempted
    assert failed == 0 and attempted >= 10


# --------------------------------------------------------------------------- #
# The pointer path: contiguous CPU tensors straight to the cpu backend's module
# --------------------------------------------------------------------------- #
def _counting_pointer_path(monkeypatch):
    """Patches the cpu backend's pointer calls to count the calls made by address; the list of calls made.

    The calls fastact.torch remembered (made before the patch) are set aside for the test.
    """
    reason = fastact.backends.unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(reason)
    backend = fastact.backends.load("cpu")
    calls = []
    original = backend.pointer_call

    def counted(*args):
        made = original(*args)
        if made is None:
            return None
        function, leading = made

        def run(*arguments):
            calls.append(True)
            return function(*arguments)
        return run, leading

    monkeypatch.setattr(backend, "pointer_call", counted)
    for table in (_ops.FORWARD_CALLS, _ops.BACKWARD_CALLS):
        for name in table:
            monkeypatch.setitem(table, name, {})
    return calls


@pytest.mark.parametrize("dtype_name", list(TORCH_DTYPES))
def test_pointer_path_gives_the_general_paths_bits(dtype_name, monkeypatch):
    if dtype_name == "bfloat16" and ml_dtypes is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    dtype = TORCH_DTYPES[dtype_name]
    with fastact.use_backend("cpu"):
        calls = _counting_pointer_path(monkeypatch)
        for name, params in CASES:
            if get_spec(name).form == "rowwise":
                continue
            x = _values((3, 5, 7), dtype, seed=4).requires_grad_(True)
            dy = _values(x.shape, dtype, seed=5)
            before = len(calls)
            y = getattr(ft, name)(x, **params)
            (dx,) = torch.autograd.grad(y, x, dy)
            assert calls[before:] == [True, True], name  # forward and backward both took it
            expected_y = getattr(fastact, name)(_to_numpy(x), **params)  # the NumPy path, fastact's general one
            expected_dx = getattr(fastact, f"{name}_backward")(_to_numpy(dy), _to_numpy(x), **params)
            np.testing.assert_array_equal(_to_numpy(y), expected_y, err_msg=f"{name} forward")
            np.testing.assert_array_equal(_to_numpy(dx), expected_dx, err_msg=f"{name} backward")
            assert y.is_contiguous() and y.dtype == dtype and y.shape == x.shape


def test_pointer_path_only_for_plain_contiguous_cpu_tensors(monkeypatch):
    with fastact.use_backend("cpu"):
        calls = _counting_pointer_path(monkeypatch)
        base = _values((6, 8), torch.float32, seed=6)
        large = torch.zeros(_ops._POINTER_PATH_BYTES // 4, dtype=torch.float32)  # NumPy allocates large results
        for x in (base.t(), base[:, ::2], base.expand(2, 6, 8), large):  # not contiguous, or large
            y = ft.elu(x)
            assert calls == []
            np.testing.assert_array_equal(y.numpy(), fastact.elu(x.numpy()))
        # A non-contiguous gradient: a small one is copied for the pointer path, a large one takes
        # the general path (its strided kernel, no copy); the same bits either way.
        limit = _ops._COPY_GRADIENT_ELEMENTS
        for shape, taken in [((8, 6), [True, True]), ((limit // 64 + 1, 64), [True])]:
            calls.clear()
            x = _values(shape, torch.float32, seed=8).requires_grad_(True)
            dy = _values(shape[::-1], torch.float32, seed=7).t()
            (dx,) = torch.autograd.grad(ft.elu(x), x, dy)
            assert calls == taken, shape
            np.testing.assert_array_equal(dx.numpy(), fastact.elu_backward(dy.numpy(), x.detach().numpy()))
        calls.clear()
        with pytest.raises(TypeError):
            ft.elu(torch.ones(3, dtype=torch.int32))  # unsupported dtype: the general path's error
        meta = ft.elu(torch.empty(2, 3, device="meta"))  # other devices: the dispatcher
        assert meta.device.type == "meta" and calls == []
    with fastact.use_backend("numpy"):  # another host backend in use: not the cpu module
        y = ft.elu(base)
        assert calls == []
        np.testing.assert_array_equal(y.numpy(), fastact.elu(base.numpy()))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_pointer_path_for_rows_along_the_last_axis(name, monkeypatch):
    with fastact.use_backend("cpu"):
        calls = _counting_pointer_path(monkeypatch)
        for axis in (-1, 2):
            x = _values((3, 4, 9), torch.float32, seed=9).requires_grad_(True)
            dy = _values(x.shape, torch.float32, seed=10)
            y = getattr(ft, name)(x, axis)
            (dx,) = torch.autograd.grad(y, x, dy)
            assert calls == [True, True], axis
            calls.clear()
            np.testing.assert_array_equal(y.detach().numpy(), getattr(fastact, name)(x.detach().numpy(), axis))
            np.testing.assert_array_equal(
                dx.numpy(), getattr(fastact, f"{name}_backward")(dy.numpy(), x.detach().numpy(), axis))
        x = _values((3, 4, 9), torch.float32, seed=11)
        for axis in (0, 1, (1, 2)):  # other axes: the general path
            y = getattr(ft, name)(x, axis)
            assert calls == [], axis
            np.testing.assert_array_equal(y.numpy(), getattr(fastact, name)(x.numpy(), axis))


def _skip_without_the_cpu_backend_for(dtype_name: str) -> None:
    """Skip a test of the cpu backend's pointer calls where it is not built, or bfloat16 without ml_dtypes."""
    if dtype_name == "bfloat16" and ml_dtypes is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    reason = fastact.backends.unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(reason)


def _warmed_by_address(function, x):
    """Calls ``function(x)`` with autograd until it takes ActivationByAddress (the forward's and the
    backward's pointer calls remembered: a first call and its backward remember them); that call's y."""
    for _ in range(3):
        y = function(x)
        if type(y.grad_fn).__name__ == "ActivationByAddressBackward":
            return y
        y.backward(torch.ones_like(y))
    raise AssertionError(f"{function} never took ActivationByAddress")


@pytest.mark.parametrize("dtype_name", list(TORCH_DTYPES))
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_small_autograd_calls_by_address_give_fastacts_bits(name, params, dtype_name):
    _skip_without_the_cpu_backend_for(dtype_name)
    if get_spec(name).form == "rowwise" and params.get("axis", -1) != -1:
        params = {"axis": -1}  # by address along the last axis only (test_pointer_path_for_rows_... for others)
    dtype = TORCH_DTYPES[dtype_name]
    function = lambda t: getattr(ft, name)(t, **params)  # noqa: E731
    with fastact.use_backend("cpu"):
        x = _values((3, 5, 7), dtype, seed=4).requires_grad_(True)
        y = _warmed_by_address(function, x)
        expected_y = getattr(fastact, name)(_to_numpy(x), **params)
        np.testing.assert_array_equal(_to_numpy(y), expected_y)
        assert y.is_contiguous() and y.dtype == dtype and y.shape == x.shape
        # dy contiguous (the pointer call), transposed and broadcast (the op's backward): the same bits.
        for dy in (_values(x.shape, dtype, seed=5), _values((7, 5, 3), dtype, seed=6).permute(2, 1, 0),
                   _values((1, 5, 7), dtype, seed=7).expand(3, 5, 7)):
            y = function(x)
            assert type(y.grad_fn).__name__ == "ActivationByAddressBackward"
            (dx,) = torch.autograd.grad(y, x, dy)
            expected_dx = getattr(fastact, f"{name}_backward")(_to_numpy(dy), _to_numpy(x), **params)
            np.testing.assert_array_equal(_to_numpy(dx), expected_dx, err_msg=str(dy.stride()))
        with torch.no_grad():  # no autograd recorded: a plain result
            assert function(x).grad_fn is None


@pytest.mark.parametrize("name,params", [("elu", {"alpha": 0.5}), ("silu", {}), ("softmax", {"axis": -1})])
def test_small_autograd_calls_by_address_gradcheck_and_no_second_derivative(name, params):
    function = lambda t: getattr(ft, name)(t, **params)  # noqa: E731
    x = _values((4, 5), seed=4).requires_grad_(True)
    _warmed_by_address(function, x)
    assert torch.autograd.gradcheck(function, (x,))
    g = torch.autograd.grad(function(x).sum(), x, create_graph=True)[0]
    with pytest.raises(RuntimeError):  # no second derivative (as the activation ops have none): an error, never zeros
        torch.autograd.grad(g.sum(), x)


def test_remembered_small_calls_still_refuse_values_of_the_wrong_type():
    # 1 == 1.0 == True: a remembered call for one must not let the refused others through.
    x = torch.linspace(-2, 2, 16)
    for _ in range(3):
        ft.leaky_relu(x, 1.0)
        ft.gelu(x, True)
        ft.relu(x, 0.0, None, 0.0)
    with pytest.raises(TypeError, match="alpha"):
        ft.leaky_relu(x, True)
    with pytest.raises(TypeError, match="approximate"):
        ft.gelu(x, 1)
    with pytest.raises(TypeError, match="alpha"):
        ft.relu(x, False, None, 0.0)
    np.testing.assert_array_equal(ft.leaky_relu(x, 1).numpy(), x.numpy())  # an int slope is a number
    for _ in range(2):
        with pytest.raises(TypeError):
            ft.leaky_relu(x, [0.1])  # unhashable: the general path says what is wrong


def _count_calls(monkeypatch, owner, name: str) -> list:
    """Record each call of ``owner.name`` (its arguments) while the test runs."""
    calls = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_calls_on_float_cpu_tensors_use_torchs_linear_part(monkeypatch, dtype):
    # float32/float64 CPU tensors: the product or convolution and the bias are torch's own primitive (its
    # autograd node for dx, dw and db), the activation fastact's kernel, forward and backward; no fastact GEMM.
    from fastact.torch import _bridge

    fastact.relu(np.ones(2))  # the host backend loaded
    products = _count_calls(monkeypatch, _bridge, "_torch_matmul")
    x = _values((2, 3, 6, 6), dtype, seed=12).requires_grad_(True)
    w = _values((4, 3, 3, 3), dtype, seed=13).requires_grad_(True)
    b = _values((4,), dtype, seed=14).requires_grad_(True)
    y = ft.conv2d_bias_act(x, w, b, ACT, padding="same")
    assert type(y.grad_fn).__name__ == "_ActivationAfterPrimitiveBackward"
    assert type(y.grad_fn.next_functions[0][0]).__name__ == "ConvolutionBackward0"
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), dy)
    assert products == []
    stock = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(x, w, b, padding=1), 0.05)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype is torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, stock, **tolerance)
    for mine, theirs in zip(got, torch.autograd.grad(stock, (x, w, b), dy)):
        torch.testing.assert_close(mine, theirs, **tolerance)
    # the custom op, fastact's whole fused call (its GEMMs on torch.matmul), computes the same
    key = _ops.activation_key("test", ACT)
    torch.testing.assert_close(torch.ops.fastact.conv2d_bias_act(x, w, b, key, [1, 1], [1, 1, 1, 1], [1, 1], 1, "NCHW"),
                               y, **tolerance)
    assert len(products) == 1
    products.clear()
    xd = _values((5, 7), dtype, seed=15)
    wd = _values((7, 3), dtype, seed=16)
    np.testing.assert_allclose(ft.dense_bias_act(xd, wd, None, "linear").numpy(), xd.numpy() @ wd.numpy(),
                               rtol=tolerance["rtol"])
    bd = _values((3,), dtype, seed=17).requires_grad_(True)
    yd = ft.dense_bias_act(xd, wd, bd, ACT)
    assert type(yd.grad_fn).__name__ == "_ActivationAfterPrimitiveBackward"
    assert type(yd.grad_fn.next_functions[0][0]).__name__ == "AddmmBackward0"
    np.testing.assert_array_equal(yd.detach().numpy(),
                                  torch.nn.functional.leaky_relu(torch.nn.functional.linear(xd, wd.t(), bd), 0.05).detach().numpy())
    assert products == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("activation", [ACT, fastact.Activation("elu", alpha=0.5)], ids=["leaky_relu", "elu"])
def test_fused_conv_in_training_is_torchs_convolution_then_fastacts_activation(dtype, data_format, activation):
    # Eager CPU training: torch's convolution with the bias, then fastact's activation kernel by address,
    # written over the convolution's result where the backward can read y instead of z (Leaky ReLU: y is
    # saved) and into a new tensor otherwise (ELU: z is saved).  Values: the activation op's on torch's
    # result; gradients: torch's convolution backward of fastact's activation backward; bit for bit, also
    # for a gradient that is not contiguous.  The inputs are left as they were.
    fastact.relu(np.ones(2))  # the host backend loaded (before, the first call takes the general path)
    nhwc = data_format == "NHWC"
    x = _values((2, 7, 7, 3) if nhwc else (2, 3, 7, 7), dtype, seed=21).requires_grad_(True)
    w = _values((3, 3, 3, 4) if nhwc else (4, 3, 3, 3), dtype, seed=22).requires_grad_(True)
    b = _values((4,), dtype, seed=23).requires_grad_(True)
    inputs = [t.detach().clone() for t in (x, w, b)]
    y = ft.conv2d_bias_act(x, w, b, activation, data_format=data_format)
    node = y.grad_fn.next_functions[0][0] if nhwc else y.grad_fn  # NHWC: y is a permuted view
    assert type(node).__name__ == "_ActivationAfterPrimitiveBackward"
    saved = node.saved_tensors[0]
    assert (saved.data_ptr() == y.data_ptr()) == (activation is ACT)  # y kept (over z) for Leaky ReLU only
    for before, after in zip(inputs, (x, w, b)):
        assert torch.equal(before, after.detach())

    def conv(xx, ww, bb):  # what the fused call hands the activation: torch's convolution, in NCHW
        return torch.nn.functional.conv2d(xx.permute(0, 3, 1, 2) if nhwc else xx, ww.permute(3, 2, 0, 1) if nhwc else ww, bb)

    z = conv(x, w, b).detach().requires_grad_(True)
    expected = getattr(ft, activation.name)(z, *activation.params.values())
    assert type(expected.grad_fn).__name__ != "_ActivationAfterPrimitiveBackward"
    to_nchw = (lambda t: t.permute(0, 3, 1, 2)) if nhwc else (lambda t: t)
    np.testing.assert_array_equal(to_nchw(y).detach().numpy(), expected.detach().numpy())
    dy = _values(tuple(y.shape[:-1]) + (2 * y.shape[-1],), dtype, seed=24)[..., ::2]  # every other element
    assert not dy.is_contiguous()
    got = torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)
    want_dz = torch.autograd.grad(expected, (z,), to_nchw(dy))[0]
    want = torch.autograd.grad(conv(x, w, b), (x, w, b), want_dz)
    for mine, theirs in zip(got, want):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    with pytest.raises(RuntimeError):  # no second derivative (as the activation ops have none): an error, never zeros
        g = torch.autograd.grad(y, (b,), dy, create_graph=True)[0]
        torch.autograd.grad(g.sum(), (x,))
    with torch.no_grad():  # no autograd: the kernel over torch's result, the same values
        np.testing.assert_array_equal(ft.conv2d_bias_act(x, w, b, activation, data_format=data_format).numpy(),
                                      y.detach().numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,axis", [((3, 5, 4, 4), 1), ((3, 4, 4, 5), -1), ((6, 5), 1), ((6, 5), -1)])
def test_bias_act_by_address_gives_fastacts_bits(dtype, shape, axis):
    # The epilogue's pointer path (contiguous float32/float64 CPU tensors) against fastact on NumPy views.
    x = _values(shape, dtype, seed=50).requires_grad_(True)
    bias = _values((shape[axis],), dtype, seed=51).requires_grad_(True)
    y = ft.bias_act(x, bias, ACT, axis=axis)
    dy = _values(shape, dtype, seed=52)
    dx, dbias = torch.autograd.grad(y, (x, bias), dy)
    xn, bn = x.detach().numpy(), bias.detach().numpy()
    np.testing.assert_array_equal(y.detach().numpy(), fastact.bias_act(xn, bn, ACT, axis=axis))
    want_dx, want_dbias = fastact.bias_act_backward(dy.numpy(), xn, bn, ACT, axis=axis)
    np.testing.assert_array_equal(dx.numpy(), want_dx)
    np.testing.assert_array_equal(dbias.numpy(), want_dbias)


def test_bias_act_checks_what_the_pointer_path_would_not():
    x = torch.ones(2, 3, 4)
    with pytest.raises(ValueError):
        ft.bias_act(x, torch.ones(4), "relu", axis=1)  # 4 values for an axis of 3
    with pytest.raises(ValueError):
        ft.bias_act(x, torch.ones(3), "relu", axis=3)  # no such axis
    with pytest.raises(ValueError):
        ft.bias_act(x, torch.ones(3, 1), "relu", axis=1)  # not 1-d


def test_fused_calls_on_16_bit_cpu_tensors_multiply_with_torch(monkeypatch):
    # 16-bit CPU tensors take fastact's whole fused call (its float32 GEMM result is rounded once, after the
    # epilogue); its GEMMs run on torch's matrix product (one thread pool), and only inside fastact.torch.
    from fastact.backends.numpy import fused
    from fastact.torch import _bridge

    products = _count_calls(monkeypatch, _bridge, "_torch_matmul")
    x = _values((2, 3, 6, 6), torch.float16, seed=12).requires_grad_(True)
    w = _values((4, 3, 3, 3), torch.float16, seed=13).requires_grad_(True)
    b = _values((4,), torch.float16, seed=14).requires_grad_(True)
    y = ft.conv2d_bias_act(x, w, b, "leaky_relu", padding="same")
    y.sum().backward()
    assert len(products) >= 4  # forward; backward: z again, dw, dcols
    products.clear()
    xh = _values((5, 7), torch.float16, seed=15)
    wh = _values((7, 3), torch.float16, seed=16)
    ft.dense_bias_act(xh, wh, None, "linear")
    assert len(products) == 1
    assert fused.MATMUL.get() is np.matmul  # outside fastact.torch: NumPy's
    fastact.dense_bias_act(xh.numpy(), wh.numpy(), None, "linear")
    assert len(products) == 1


def test_fused_calls_with_mixed_dtypes_or_bad_bias_take_the_fused_op():
    # What torch's primitive + bias_act would not check goes to the fused op, whose checks say what is wrong.
    x, w = torch.ones(2, 3, 5, 5), torch.ones(4, 3, 3, 3)
    with pytest.raises(ValueError, match="b"):
        ft.conv2d_bias_act(x, w, torch.ones(5), "relu")
    with pytest.raises(ValueError, match="b"):
        ft.dense_bias_act(torch.ones(2, 3), torch.ones(3, 4), torch.ones(3), "relu")
    with pytest.raises(TypeError, match="same dtype"):  # fastact's dtype rule, as on NumPy arrays
        ft.conv2d_bias_act(x, w.double(), None, "relu")


@pytest.mark.parametrize("dtype_name", list(TORCH_DTYPES))
@pytest.mark.parametrize("shapes", [((2, 3, 4, 5), (3, 1, 1)), ((2, 4, 5, 3), (3,)), ((6, 7), ()), ((6, 7), (1,)),
                                    ((3, 4), (3, 4)), ((2, 3, 4, 5), (1, 3, 1, 1))])
def test_prelu_by_address_gives_the_general_paths_bits(dtype_name, shapes, monkeypatch):
    _skip_without_the_cpu_backend_for(dtype_name)
    dtype = TORCH_DTYPES[dtype_name]
    x_shape, alpha_shape = shapes
    with fastact.use_backend("cpu"):
        taken = []
        original = _ops.prelu_direct
        monkeypatch.setattr(_ops, "prelu_direct", lambda *a: taken.append(original(*a) is not None) or original(*a))
        x = _values(x_shape, dtype, seed=17).requires_grad_(True)
        alpha = (_values(alpha_shape, dtype, seed=18) * 0.3).requires_grad_(True)
        dy = _values(x_shape, dtype, seed=19)
        y = ft.prelu(x, alpha)
        dx, dalpha = torch.autograd.grad(y, (x, alpha), dy)
        assert taken == [True, True]
        expected_dx, expected_dalpha = fastact.prelu_backward(_to_numpy(dy), _to_numpy(x), _to_numpy(alpha))
        np.testing.assert_array_equal(_to_numpy(y), fastact.prelu(_to_numpy(x), _to_numpy(alpha)))
        np.testing.assert_array_equal(_to_numpy(dx), expected_dx)
        np.testing.assert_array_equal(_to_numpy(dalpha), expected_dalpha)
        assert dalpha.shape == alpha.shape and dalpha.dtype == dtype
        taken.clear()
        with torch.no_grad():  # the no-autograd branch of fastact.torch.prelu: the pointer call remembered above
            np.testing.assert_array_equal(_to_numpy(ft.prelu(x, alpha)), _to_numpy(y))
        assert _ops._PRELU_CALLS[(x.shape, alpha.shape, dtype, "cpu")] is not None


def test_prelu_by_address_only_where_it_applies():
    x = _values((2, 3, 4, 5), torch.float32, seed=20)
    for alpha in (torch.full((3, 1, 1), 0.25, dtype=torch.float64),  # another dtype than x's
                  torch.full((3, 1, 5), 0.25)):  # slopes along C and W: reordered (transposed) by the general path
        assert _ops.prelu_direct(x, alpha, None) is None
        np.testing.assert_array_equal(ft.prelu(x, alpha).numpy(), fastact.prelu(x.numpy(), alpha.numpy()))
    assert _ops.prelu_direct(x.transpose(1, 2), torch.full((4, 1, 1), 0.25), None) is None  # not contiguous
    with pytest.raises(ValueError, match="broadcast"):
        ft.prelu(x, torch.full((4,), 0.25))


def test_prelu_gradient_of_only_what_requires_it():
    x = _values((2, 3, 4), torch.float32, seed=21)
    alpha = torch.full((3, 1), 0.25)
    dy = _values(x.shape, torch.float32, seed=22)
    expected_dx, expected_dalpha = fastact.prelu_backward(dy.numpy(), x.numpy(), alpha.numpy())
    xg = x.clone().requires_grad_(True)
    ft.prelu(xg, alpha).backward(dy)
    np.testing.assert_array_equal(xg.grad.numpy(), expected_dx)
    assert alpha.grad is None
    ag = alpha.clone().requires_grad_(True)
    ft.prelu(x, ag).backward(dy)
    np.testing.assert_array_equal(ag.grad.numpy(), expected_dalpha)


def test_small_calls_leave_compile_and_modes_to_the_custom_ops():
    # The public functions' small-call branch must not run where torch traces or intercepts:
    # under torch.compile the graph holds the custom ops (no graph break), and a dispatch mode sees them.
    x = _values((4, 8), torch.float32, seed=23)
    alpha = torch.full((8,), 0.25)

    def calls(t):
        return (ft.relu(t), ft.leaky_relu(t, 0.1), ft.gelu(t, True), ft.softmax(t, -1), ft.prelu(t, alpha))

    eager = calls(x)
    compiled, graphs = support.compile_recording(calls)
    for got, expected in zip(compiled(x), eager):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert len(graphs) == 1
    for name in ("relu", "leaky_relu", "gelu", "softmax", "prelu"):
        assert f"fastact.{name}" in graphs[0], name

    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with Seen() as seen:
        for got, expected in zip(calls(x), eager):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for name in ("relu", "leaky_relu", "gelu", "softmax", "prelu"):
        assert f"fastact.{name}.default" in seen.ops, name
