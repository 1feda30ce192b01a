"""The wider family against PyTorch's CPU functions (forward, and backward through autograd).

Skipped when torch is not installed.  Finite inputs only: at +-inf fastact
returns the limits where some PyTorch formulas give NaN (silu, hardswish, mish).
Held to the same accuracy as the float64 oracle (tests/support.allowed_error),
with PyTorch's own float32 rounding on the other side.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support

torch = pytest.importorskip("torch")
F = torch.nn.functional

# name, params, the PyTorch function of a tensor
TORCH_CASES = [
    ("elu", {}, lambda t: F.elu(t)),
    ("elu", {"alpha": 0.5}, lambda t: F.elu(t, alpha=0.5)),
    ("selu", {}, F.selu),
    ("gelu", {}, lambda t: F.gelu(t)),
    ("gelu", {"approximate": True}, lambda t: F.gelu(t, approximate="tanh")),
    ("silu", {}, F.silu),
    ("softplus", {}, F.softplus),
    ("sigmoid", {}, torch.sigmoid),
    ("tanh", {}, torch.tanh),
    ("hard_sigmoid", {}, F.hardsigmoid),
    ("hard_silu", {}, F.hardswish),
    ("mish", {}, F.mish),
    ("linear", {}, lambda t: t * 1),
    ("softmax", {"axis": 0}, lambda t: F.softmax(t, dim=0)),
    ("softmax", {}, lambda t: F.softmax(t, dim=-1)),
    ("log_softmax", {"axis": 0}, lambda t: F.log_softmax(t, dim=0)),
    ("log_softmax", {}, lambda t: F.log_softmax(t, dim=-1)),
]
IDS = [f"{name}-{params}" for name, params, _ in TORCH_CASES]


def _inputs(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 48)) * 4
    # The kinks and the tails, where conventions and stable forms matter.
    x.reshape(-1)[:22] = [0.0, -0.0, 3.0, -3.0, 6.0, -6.0, 1e-3, -1e-3, 20.0, -20.0, 40.0, -40.0,
                          88.0, -88.0, 100.0, -100.0, 1e4, -1e4, 1.0, -1.0, 2.5, -2.5]
    dy = rng.standard_normal(x.shape) * 2
    return x.astype(dtype), dy.astype(dtype)


def _compared(name: str, params: dict, x: np.ndarray) -> np.ndarray:
    """Where PyTorch's own result is accurate enough to compare with.

    PyTorch's tanh-form GELU backward computes 0.5 (1 + tanh(u)) and 1 - tanh(u)^2
    in the input's dtype: both cancel for |x| > 2 (relative errors of 1e-2 in
    float32 near x = -3.5, and 0 instead of ~1e-6 below -5); there the float64
    oracle is the check.
    """
    if name == "gelu" and params.get("approximate"):
        return np.abs(x) <= 2
    return np.ones(x.shape, bool)


def _tolerance_dtype(name: str, dtype: np.dtype) -> np.dtype:
    """PyTorch's hardsigmoid_backward multiplies by 1.0f / 6.0f, a float32 constant, also in float64."""
    return np.dtype(np.float32) if name == "hard_sigmoid" else dtype


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("name,params,torch_function", TORCH_CASES, ids=IDS)
def test_matches_pytorch(dtype_name, name, params, torch_function):
    dtype = np.dtype(dtype_name)
    x, dy = _inputs(dtype)
    kernel = fastact._registry.get_spec(name).kernel
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch_function(xt)
    yt.backward(torch.from_numpy(dy.copy()))
    y, dx = getattr(fastact, name)(x, **params), getattr(fastact, f"{name}_backward")(dy, x, **params)
    scale = support.rowwise_dy_scale(dy, params.get("axis", -1)) if name in ("softmax", "log_softmax") else 1.0
    keep = _compared(name, params, x)
    support.assert_close(y, yt.detach().numpy(), dtype, kernel, f"{name} forward vs torch")
    support.assert_close(
        dx[keep], xt.grad.numpy()[keep], _tolerance_dtype(name, dtype), kernel, f"{name} backward vs torch",
        np.broadcast_to(scale, x.shape)[keep] if name in ("softmax", "log_softmax") else None,
    )


def test_kink_conventions_match_pytorch():
    """At the kinks PyTorch's choices are SPEC's: compare the values exactly."""
    x = np.array([-3.0, 3.0, 0.0, -3.5, 3.5], np.float32)
    for name, torch_function in (("hard_silu", F.hardswish), ("hard_sigmoid", F.hardsigmoid),
                                 ("selu", F.selu), ("elu", F.elu)):
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        torch_function(xt).backward(torch.ones(x.shape))
        got = getattr(fastact, f"{name}_backward")(np.ones_like(x), x)
        np.testing.assert_array_equal(got, xt.grad.numpy(), err_msg=name)
