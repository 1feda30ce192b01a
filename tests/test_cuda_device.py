"""On a real GPU: non-default streams, CUDA graph capture, and PyTorch tensors through DLPack.

Skipped (with the reason) where the "cuda" backend is unavailable; the
proof script (bench/gpu_proof.sh) runs them on a GPU machine.

* Streams: every launch goes to CuPy's current stream.  Checked two ways: the
  results of calls made inside ``with stream:`` on a non-blocking stream, and
  a CUDA graph captured on a stream, which fails to capture if any launch
  goes elsewhere (the legacy default stream is forbidden while capturing)
  and replays the same kernels on new data.
* PyTorch: CUDA tensors of every dtype in, tensors of the same dtype and
  device out (DLPack, zero-copy), ``out=`` tensors written in place.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support
from fastact import reference
from fastact.backends import unavailable_reason

REASON = unavailable_reason("cuda")
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"needs a GPU: {REASON}")


def _numpy(name: str, *host, **params):
    with fastact.use_backend("numpy"):
        return getattr(fastact, name)(*host, **params)


def _close(got, expected, dtype) -> None:
    tolerance = 1e-6 if np.dtype(dtype) == np.float32 else 1e-2
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(expected, np.float64),
                               rtol=tolerance, atol=tolerance)


def test_calls_inside_a_non_blocking_stream_compute_on_it():
    import cupy

    rng = np.random.default_rng(1)
    x = rng.standard_normal((257, 1031)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    alpha = rng.standard_normal((1031,)).astype(np.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, fastact.use_backend("cuda"):
        xd, dyd = cupy.asarray(x), cupy.asarray(dy)
        results = {
            "gelu": fastact.gelu(xd),
            "silu_backward": fastact.silu_backward(dyd, xd),
            "softmax": fastact.softmax(xd),
            "prelu": fastact.prelu(xd, cupy.asarray(alpha)),
            "bias_act": fastact.bias_act(xd, cupy.asarray(alpha), "relu", axis=-1),
        }
        host = {name: cupy.asnumpy(value, stream=stream) for name, value in results.items()}
    stream.synchronize()
    _close(host["gelu"], _numpy("gelu", x), np.float32)
    _close(host["silu_backward"], _numpy("silu_backward", dy, x), np.float32)
    _close(host["softmax"], _numpy("softmax", x), np.float32)
    _close(host["prelu"], _numpy("prelu", x, alpha), np.float32)
    _close(host["bias_act"], _numpy("bias_act", x, alpha, "relu", axis=-1), np.float32)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_captured_graph_replays_the_kernels_on_new_data(dtype):
    import cupy

    rng = np.random.default_rng(2)
    shape = (64, 520)
    x, dy = cupy.empty(shape, dtype), cupy.empty(shape, dtype)
    y, dx, p = cupy.empty(shape, dtype), cupy.empty(shape, dtype), cupy.empty(shape, dtype)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, fastact.use_backend("cuda"):
        # Compile, load and size everything before capturing (no module loads while capturing).
        fastact.leaky_relu(x, 0.1, out=y)
        fastact.mish_backward(dy, x, out=dx)
        fastact.softmax(x, out=p)
        stream.synchronize()
        stream.begin_capture()
        fastact.leaky_relu(x, 0.1, out=y)
        fastact.mish_backward(dy, x, out=dx)
        fastact.softmax(x, out=p)
        graph = stream.end_capture()
        for seed in range(2):
            hx = rng.standard_normal(shape).astype(dtype)
            hdy = rng.standard_normal(shape).astype(dtype)
            x.set(hx, stream=stream)
            dy.set(hdy, stream=stream)
            graph.launch(stream=stream)
            stream.synchronize()
            _close(y.get(), _numpy("leaky_relu", hx, alpha=0.1), dtype)
            _close(dx.get(), _numpy("mish_backward", hdy, hx), dtype)
            _close(p.get(), _numpy("softmax", hx), dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_strided_rows_in_16_byte_columns_on_the_device(name, dtype):
    # Softmax along axis 1 of a tensor with a large inner size takes rowwise_columns (three passes over
    # 16-byte columns of rows); its emulator tests run on the CPU, this is its check on silicon.
    import cupy

    from fastact.backends.kernels import plan

    backend = fastact.backends.load("cuda")
    shape = (2, 40, 1 << 16)
    p = plan.rowwise_plan(shape, 1, backend.sm_count())
    for direction in ("forward", "backward"):
        launch = plan.rowwise_launch(p, backend.sm_count(), np.dtype(dtype), [0, 0, 0], direction)
        assert (p.inner, launch.lanes, launch.vector) == (1 << 16, 1, 16 // np.dtype(dtype).itemsize), direction
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    x[0, :, 5] = -np.inf  # a row of only -inf: NaN
    x[1, 7, 9] = np.nan  # a row with NaN: NaN
    x[1, 3, 11] = -np.inf  # one -inf in a row: 0 (log: -inf)
    with fastact.use_backend("cuda"):
        y = cupy.asnumpy(getattr(fastact, name)(cupy.asarray(x), axis=1))
        dx = cupy.asnumpy(getattr(fastact, f"{name}_backward")(cupy.asarray(dy), cupy.asarray(x), axis=1))
    forward, backward = reference.ORACLE[name]  # the float64 oracle and the README's bounds
    support.assert_close(y, forward(x, 1), np.dtype(dtype), name, f"{name} on the device")
    support.assert_close(dx, backward(dy, x, 1), np.dtype(dtype), name, f"{name}_backward on the device",
                         support.rowwise_dy_scale(dy, 1))


TORCH_DTYPES = ["float16", "bfloat16", "float32", "float64"]


def _torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    return torch


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_tensors_round_trip(dtype):
    torch = _torch()
    t_dtype = getattr(torch, dtype)
    x = torch.randn(33, 129, device="cuda", dtype=t_dtype)
    dy = torch.randn(33, 129, device="cuda", dtype=t_dtype)
    y = fastact.silu(x)
    assert isinstance(y, torch.Tensor) and y.dtype == t_dtype and y.device == x.device and y.shape == x.shape
    torch.testing.assert_close(y.float(), torch.nn.functional.silu(x.float()).to(t_dtype).float(),
                               rtol=2e-2, atol=2e-2)
    dx = fastact.relu_backward(dy, x)
    assert isinstance(dx, torch.Tensor) and dx.dtype == t_dtype
    torch.testing.assert_close(dx, torch.where(x > 0, dy, torch.zeros_like(dy)))
    s = fastact.softmax(x, axis=-1)
    torch.testing.assert_close(s.float(), torch.softmax(x.float(), dim=-1), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_torch_out_is_written_in_place(dtype):
    torch = _torch()
    t_dtype = getattr(torch, dtype)
    x = torch.randn(8, 1000, device="cuda", dtype=t_dtype)
    out = torch.full_like(x, float("nan"))
    pointer = out.data_ptr()
    result = fastact.leaky_relu(x, 0.25, out=out)
    assert result is out and out.data_ptr() == pointer
    torch.testing.assert_close(out, torch.nn.functional.leaky_relu(x, 0.25))
    fastact.relu(x, out=x)  # in place on the input
    assert bool((x >= 0).all())


def test_torch_prelu_and_bias_act_backward_give_tensors():
    torch = _torch()
    x = torch.randn(4, 16, 9, 9, device="cuda")
    dy = torch.randn_like(x)
    alpha = torch.rand(16, 1, 1, device="cuda")
    dx, dalpha = fastact.prelu_backward(dy, x, alpha)
    assert isinstance(dx, torch.Tensor) and isinstance(dalpha, torch.Tensor) and dalpha.shape == alpha.shape
    x_ = x.clone().requires_grad_()
    a_ = alpha.clone().requires_grad_()
    torch.nn.functional.prelu(x_, a_.reshape(16)).backward(dy)
    torch.testing.assert_close(dx, x_.grad)
    torch.testing.assert_close(dalpha, a_.grad.reshape(alpha.shape), rtol=1e-4, atol=1e-4)
    bias = torch.randn(16, device="cuda")
    dx, dbias = fastact.bias_act_backward(dy, x, bias, "relu")
    assert isinstance(dbias, torch.Tensor) and dbias.shape == bias.shape
    z = (x + bias.reshape(16, 1, 1))
    torch.testing.assert_close(dx, torch.where(z > 0, dy, torch.zeros_like(dy)))


def test_dlpack_capsules_from_cupy_and_torch_share_memory():
    torch = _torch()
    import cupy

    x = torch.randn(1000, device="cuda")
    through_cupy = cupy.from_dlpack(x)
    y = fastact.relu(through_cupy)
    assert isinstance(y, cupy.ndarray)
    back = torch.from_dlpack(y)
    torch.testing.assert_close(back, torch.relu(x))
    fastact.relu(through_cupy, out=through_cupy)  # writes x's own memory
    assert bool((x >= 0).all())
