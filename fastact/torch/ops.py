"""fastact's activations and fused calls on torch tensors, differentiable.

Every activation NAME of fastact is ``fastact.torch.NAME(x, <params>)``
with fastact's parameters and defaults (``tests/test_torch_ops.py`` checks
the signatures against ``fastact.NAME``'s), and the fused calls keep
fastact's argument conventions (dense weights ``(in, out)``; conv2d weights
``(O, I/groups, kh, kw)`` for NCHW, ``(kh, kw, I/groups, O)`` for NHWC).
Each call is the custom op ``torch.ops.fastact.NAME`` (see
``fastact/torch/_library.py`` for how eager calls skip the dispatcher).

    >>> import torch, fastact.torch
    >>> x = torch.tensor([-2.0, 3.0], requires_grad=True)
    >>> y = fastact.torch.leaky_relu(x, 0.1)
    >>> y.sum().backward(); x.grad
    tensor([0.1000, 1.0000])
"""
from __future__ import annotations

from typing import Any

import torch

from .. import _registry
from .._conv_geometry import conv2d_geometry
from ..activations import (
    ELU, GELU, HARD_SIGMOID, HARD_SILU, LEAKY_RELU, LINEAR, LOG_SOFTMAX, MISH, RELU, RELU6, SELU, SIGMOID, SILU,
    SOFTMAX, SOFTPLUS, TANH, THRESHOLDED_RELU,
)
from .. import backends as _backends
from . import _ops
from ._library import _Eager, _dispatch_modes, _function_modes, _functorch_wrapped, plain
from ._ops import FORWARD_CALLS as _FORWARD_CALLS

_compiler = torch.compiler
_backend_context = _backends._context  # fastact.use_backend's; else the process-wide _backends._default
_Tensor = torch.Tensor
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_empty_like = torch.empty_like

__all__ = [
    "relu", "leaky_relu", "relu6", "thresholded_relu", "prelu", "elu", "selu", "gelu", "silu", "swish",
    "softplus", "sigmoid", "tanh", "hard_sigmoid", "hard_silu", "hard_swish", "mish", "softmax",
    "log_softmax", "linear", "bias_act", "dense_bias_act", "conv2d_bias_act",
]


def _check_tensor(function: str, name: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"fastact.torch.{function}: {name} must be a torch.Tensor, got {type(value).__name__}; "
            f"for NumPy or CuPy arrays call fastact.{function}"
        )


def _activation(spec: _registry.ActivationSpec, x: Any, *values: Any) -> torch.Tensor:
    """Run activation ``spec`` on ``x``: eagerly without the dispatcher where possible (fastact validates the values).

    The first branch is the small call (a plain contiguous CPU tensor that autograd does not
    track, an elementwise activation): :func:`fastact.torch._library.plain`'s checks written out
    and the remembered pointer call, since on 1 Ki elements every 0.1 us is 10% of torch's own
    call (bench/bench_torch_ops.py).  It computes what ``_ops._direct`` computes.
    """
    # torch.compiler.is_compiling() reads this flag after a call to torch.jit.is_scripting(); two Python
    # calls cost more than the whole check.  Dynamo, tracing this, reads it True (compilation holds it so).
    if (not _compiler._is_compiling_flag and type(x) is _Tensor and not x.requires_grad and x.is_cpu
            and not _dispatch_modes() and not _function_modes() and not _functorch_wrapped(x)
            and x.is_contiguous()):
        try:
            call = _FORWARD_CALLS[spec.name].get((values, x.dtype))
        except TypeError:  # an unhashable value: the general path says what is wrong
            call = None
        if call is not None and call[2] is not None:
            count = len(values)  # the values' types, as _ops.pointer_call finds them (spelled out: a third of map's time)
            types = (() if count == 0 else (type(values[0]),) if count == 1
                     else (type(values[0]), type(values[1]), type(values[2])) if count == 3
                     else tuple(map(type, values)))
            n = x.numel()
            if call[0] == types and call[1] == (_backend_context.get() or _backends._default) and n <= call[4]:
                if not call[5]:
                    y = _empty_like(x)
                    call[2](*call[3], n, y.data_ptr(), x.data_ptr())
                    return y
                length = _ops.row_length(x, values[0])  # softmax, log_softmax: along the last axis only
                if length:
                    y = _empty_like(x)
                    call[2](*call[3], n // length, length, y.data_ptr(), x.data_ptr())
                    return y
    op = _ops.ACTIVATIONS[spec.name]
    if plain(x):
        if x.requires_grad and torch.is_grad_enabled():
            return _Eager.apply(op, x, *values)
        return op.eager_compute(x, *values)
    _check_tensor(spec.name, "x", x)
    return op.overload(x, *_ops.schema_values(spec, values))


def _document(spec: _registry.ActivationSpec, function: Any) -> None:
    """The docstring of ``fastact.torch.NAME``, from the activation's declaration."""
    signature = ", ".join(p.name if p.required else f"{p.name}={p.default!r}" for p in spec.params)
    params = "\n".join(f"    {p.name}: {p.doc}" for p in spec.params) or "    (none)"
    function.__doc__ = (
        f"{spec.summary}\n\n    y = {spec.formula}\n\n"
        f"fastact.torch.{spec.name}(x{', ' + signature if signature else ''}) -> Tensor\n\n"
        f"x: a CPU or CUDA tensor (float16, bfloat16, float32, float64); y has its shape, dtype and device.\n"
        f"Differentiable: the gradient is fastact.{spec.name}_backward's,\n\n"
        f"    {spec.name}'(x) = {spec.derivative}\n\n"
        f"Parameters:\n{params}\n\n"
        f"The op is torch.ops.fastact.{spec.name} (a custom op: no graph break under torch.compile).\n"
        + (f"\n{spec.notes}\n" if spec.notes else "")
    )


def relu(x, alpha=0.0, max_value=None, threshold=0.0):
    return _activation(RELU, x, alpha, max_value, threshold)


def leaky_relu(x, alpha=0.2):
    return _activation(LEAKY_RELU, x, alpha)


def relu6(x):
    return _activation(RELU6, x)


def thresholded_relu(x, theta=1.0):
    return _activation(THRESHOLDED_RELU, x, theta)


def elu(x, alpha=1.0):
    return _activation(ELU, x, alpha)


def selu(x):
    return _activation(SELU, x)


def gelu(x, approximate=False):
    return _activation(GELU, x, approximate)


def silu(x):
    return _activation(SILU, x)


def softplus(x):
    return _activation(SOFTPLUS, x)


def sigmoid(x):
    return _activation(SIGMOID, x)


def tanh(x):
    return _activation(TANH, x)


def hard_sigmoid(x):
    return _activation(HARD_SIGMOID, x)


def hard_silu(x):
    return _activation(HARD_SILU, x)


def mish(x):
    return _activation(MISH, x)


def softmax(x, axis=-1):
    return _activation(SOFTMAX, x, axis)


def log_softmax(x, axis=-1):
    return _activation(LOG_SOFTMAX, x, axis)


def linear(x):
    return _activation(LINEAR, x)


for _spec, _function in [
    (RELU, relu), (LEAKY_RELU, leaky_relu), (RELU6, relu6), (THRESHOLDED_RELU, thresholded_relu), (ELU, elu),
    (SELU, selu), (GELU, gelu), (SILU, silu), (SOFTPLUS, softplus), (SIGMOID, sigmoid), (TANH, tanh),
    (HARD_SIGMOID, hard_sigmoid), (HARD_SILU, hard_silu), (MISH, mish), (SOFTMAX, softmax),
    (LOG_SOFTMAX, log_softmax), (LINEAR, linear),
]:
    _document(_spec, _function)
swish = silu
hard_swish = hard_silu


# --------------------------------------------------------------------------- #
# PReLU and the fused calls
# --------------------------------------------------------------------------- #
def _tensors(function: str, **tensors: Any) -> None:
    for name, value in tensors.items():
        if value is not None:
            _check_tensor(function, name, value)


def prelu(x, alpha):
    """Parametric ReLU: ``x if x > 0 else alpha * x``, differentiable in x and alpha.

    ``alpha`` is a tensor broadcast against x by NumPy rules, as ``fastact.prelu`` takes it:
    a single slope, ``(C, 1, 1)`` for NCHW x, ``(C,)`` for channels-last x, or x's shape.
    Its gradient is summed over the broadcast dimensions (it has alpha's shape).
    (``fastact.torch.nn.PReLU`` lays torch's ``(C,)`` weight out along dim 1 itself.)

        >>> x = torch.randn(2, 3, 4, 4); alpha = torch.full((3, 1, 1), 0.25, requires_grad=True)
        >>> fastact.torch.prelu(x, alpha).sum().backward(); alpha.grad.shape
        torch.Size([3, 1, 1])
    """
    if not plain(x):
        _tensors("prelu", x=x, alpha=alpha)
    elif type(alpha) in _PLAIN and not ((x.requires_grad or alpha.requires_grad) and torch.is_grad_enabled()):
        y = _ops.prelu_direct(x, alpha, None)  # no autograd: by address where it can
        if y is not None:
            return y
    return _ops.PRELU(x, alpha)


def bias_act(x, bias, activation="relu", *, axis=1):
    """``act(x + bias)``, the bias along ``axis`` (1: NCHW, -1: channels-last), in one pass; differentiable.

    ``activation``: a name (``"relu"``, ``"leaky_relu"``, ...) or ``fastact.Activation(name, **params)``;
    any elementwise activation.  Gradients for x and bias (summed over every axis but ``axis``).

        >>> fastact.torch.bias_act(torch.zeros(2, 3), torch.tensor([-1.0, 0.5, 7.0]), "relu6", axis=1)
        tensor([[0.0000, 0.5000, 6.0000],
                [0.0000, 0.5000, 6.0000]])
    """
    _tensors("bias_act", x=x, bias=bias)
    if bias is None:
        raise TypeError("fastact.torch.bias_act: bias must be a tensor, got None (for no bias, call the activation)")
    return _ops.BIAS_ACT(x, bias, _ops.activation_key("bias_act", activation), _registry.integer("bias_act", "axis", axis))


def dense_bias_act(x, w, b=None, activation="relu"):
    """``act(x @ w + b)`` with ``w`` of shape ``(in, out)`` (Keras Dense; torch's Linear stores ``w.T``).

    Gradients for x, w and b; b may be None.  16-bit inputs multiply in float32.

        >>> fastact.torch.dense_bias_act(torch.ones(2, 3), torch.ones(3, 4), torch.arange(4.0) - 4)
        tensor([[0., 0., 1., 2.],
                [0., 0., 1., 2.]])
    """
    _tensors("dense_bias_act", x=x, w=w, b=b)
    return _ops.DENSE(x, w, b, _ops.activation_key("dense_bias_act", activation))


def conv2d_bias_act(x, w, b=None, activation="relu", *, stride=1, padding="valid", dilation=1, groups=1,
                    data_format="NCHW"):
    """``act(conv2d(x, w) + b)``, with fastact's conv2d conventions; gradients for x, w and b.

    ``data_format="NCHW"``: x ``(N, C, H, W)``, w ``(O, C/groups, kh, kw)`` (torch's Conv2d weight);
    ``"NHWC"``: x ``(N, H, W, C)``, w ``(kh, kw, C/groups, O)`` (Keras).  ``padding``: ``"valid"``,
    ``"same"`` (TensorFlow's; for stride 1 also torch's), an int, a pair, or
    ``((top, bottom), (left, right))``.  ``stride``, ``dilation``: an int or a pair.

        >>> x = torch.randn(1, 2, 8, 8); w = torch.randn(4, 2, 3, 3)
        >>> fastact.torch.conv2d_bias_act(x, w, torch.zeros(4), "leaky_relu", padding="same").shape
        torch.Size([1, 4, 8, 8])
    """
    function = "conv2d_bias_act"
    _tensors(function, x=x, w=w, b=b)
    key = _ops.activation_key(function, activation)
    geometry = conv2d_geometry(function, tuple(x.shape), tuple(w.shape), stride=stride, padding=padding,
                               dilation=dilation, groups=groups, data_format=data_format)
    (top, bottom), (left, right) = geometry.padding
    return _ops.CONV2D(x, w, b, key, list(geometry.stride), [top, bottom, left, right], list(geometry.dilation),
                       geometry.groups, geometry.data_format)
