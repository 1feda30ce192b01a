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

import functools
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
from ._library import eager_apply, _dispatch_modes, _function_modes, _functorch_wrapped, plain
from ._ops import _PRELU_CALLS

_compiler = torch.compiler
_backend_context = _backends._context  # fastact.use_backend's; else the process-wide _backends._default
_Tensor = torch.Tensor
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_empty_like = torch.empty_like
_by_address = _ops.activation_by_address
_grad_enabled = torch.is_grad_enabled

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
    """Run activation ``spec`` on ``x``: eagerly without the dispatcher where possible (fastact validates the values)."""
    op = _ops.ACTIVATIONS[spec.name]
    if plain(x):
        if x.requires_grad and torch.is_grad_enabled():
            return eager_apply(op, x, *values)  # (plain(x): the values are numbers)
        return op.eager_compute(x, *values)
    _check_tensor(spec.name, "x", x)
    return op.overload(x, *_ops.schema_values(spec, values))


# The public function of each activation, written from its declaration (exec, as dataclasses writes
# __init__): fastact's signature, then the small call (a plain contiguous CPU tensor) straight to the
# cpu module by the pointer call _ops.pointer_call remembered, with _library.plain's checks and the
# values' types spelled out: without autograd into a new tensor, with it through
# _ops.ActivationByAddress (once the backward's pointer call is remembered too: the first backward
# of these values remembers it); anything else through _activation.  Spelled out because on 1 Ki
# elements every 0.1 us is 10% of torch's own call (bench/bench_torch_ops.py): a generic *values
# function cost about 0.3 us more per call, and the autograd call through _activation's
# autograd.Function (its op's generic forward and backward) 2.2-2.5x torch's F.leaky_relu against
# 1.2x for ActivationByAddress (forward + backward of 1 Ki float32, thread time, AMD EPYC dev VM).
# torch.compiler.is_compiling() reads _is_compiling_flag after a call to torch.jit.is_scripting();
# dynamo, tracing these, reads the flag True (compilation holds it so).
_SMALL_CALL = """
def {name}(x{signature}):
    if (not _compiler._is_compiling_flag and type(x) is _Tensor and x.is_cpu
            and not _dispatch_modes() and not _function_modes() and not _functorch_wrapped(x)
            and x.is_contiguous()):
        key = (({values}), x.dtype)
        try:
            call = _calls_{name}.get(key)
        except TypeError:  # an unhashable value: _activation says what is wrong
            call = None
        if call is not None and call[2] is not None:
            n = x.numel()
            if (call[0] == ({types}) and call[1] == (_backend_context.get() or _backends._default)
                    and n <= call[3]):
{run}
    return _activation(_spec_{name}, x{arguments})
"""
# Both branches: length is 0 for an elementwise activation, the row length for a row-wise one.
_RUN = """                if not (x.requires_grad and _grad_enabled()):
                    y = _empty_like(x)
                    if length:
                        call[2](n // length, length, y.data_ptr(), x.data_ptr())
                    else:
                        call[2](n, y.data_ptr(), x.data_ptr())
                    return y
                back = _backward_calls_{name}.get(key)  # (hashable: the forward's lookup took it)
                if back is not None and back[2] is not None and back[0] == call[0] and back[1] == call[1]:
                    return _by_address(x, call[2], back[2], length, _op_{name}.backward, ({values}))"""
_ELEMENTWISE_LENGTH = """                length = 0
"""
# (_ops.row_length spelled out: the entry's types made {axis} an int; the call cost 0.25 us of ~3.3.)
_ROWS_LENGTH = """                length = x.shape[-1] if x.ndim and ({axis} == -1 or {axis} == x.ndim - 1) else 0  # last axis only
                if length:
"""


def _public(spec: _registry.ActivationSpec) -> Any:
    """``fastact.torch.NAME`` for activation ``spec`` (see _SMALL_CALL), documented by _document.

    Written into this module's own namespace, with its constants as module names (``_spec_NAME``,
    ``_calls_NAME``, ``_backward_calls_NAME``, ``_op_NAME``, ``_default_NAME_PARAM``): torch.compile
    looks a function's globals up in its module.
    """
    names = [p.name for p in spec.params]
    constants = {f"_spec_{spec.name}": spec, f"_calls_{spec.name}": _ops.FORWARD_CALLS[spec.name],
                 f"_backward_calls_{spec.name}": _ops.BACKWARD_CALLS[spec.name],
                 f"_op_{spec.name}": _ops.ACTIVATIONS[spec.name],
                 **{f"_default_{spec.name}_{p.name}": p.default for p in spec.params if not p.required}}
    globals().update(constants)
    signature = "".join(f", {p.name}" if p.required else f", {p.name}=_default_{spec.name}_{p.name}"
                        for p in spec.params)
    tuple_of = (lambda items: "".join(f"{item}, " for item in items))
    values = tuple_of(names)
    run = _RUN.format(name=spec.name, values=values)
    if spec.form == "rowwise":  # one level deeper, under "if length:"
        run = _ROWS_LENGTH.format(axis=names[0]) + "\n".join("    " + line for line in run.splitlines())
    else:
        run = _ELEMENTWISE_LENGTH + run
    source = _SMALL_CALL.format(name=spec.name, signature=signature, values=values,
                                types=tuple_of(f"type({n})" for n in names), run=run,
                                arguments="".join(f", {n}" for n in names))
    namespace: dict = {}
    exec(compile(source, f"<fastact.torch.{spec.name}>", "exec"), globals(), namespace)  # noqa: S102 (our template)
    function = namespace[spec.name]
    _document(spec, function)
    return function


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


relu = _public(RELU)
leaky_relu = _public(LEAKY_RELU)
relu6 = _public(RELU6)
thresholded_relu = _public(THRESHOLDED_RELU)
elu = _public(ELU)
selu = _public(SELU)
gelu = _public(GELU)
silu = _public(SILU)
softplus = _public(SOFTPLUS)
sigmoid = _public(SIGMOID)
tanh = _public(TANH)
hard_sigmoid = _public(HARD_SIGMOID)
hard_silu = _public(HARD_SILU)
mish = _public(MISH)
softmax = _public(SOFTMAX)
log_softmax = _public(LOG_SOFTMAX)
linear = _public(LINEAR)
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
    # The small call, as the activations' (_SMALL_CALL): plain tensors, no autograd, contiguous x,
    # alpha in x's dtype, and a pointer call _ops.prelu_direct remembered for these shapes.
    # With autograd: the autograd.Function of eager calls straight away (what the op's eager path does).
    if (not _compiler._is_compiling_flag and type(x) is _Tensor and type(alpha) in _PLAIN and x.is_cpu
            and alpha.is_cpu and not _dispatch_modes() and not _function_modes() and not _functorch_wrapped(x)
            and not _functorch_wrapped(alpha)):
        if (x.requires_grad or alpha.requires_grad) and _grad_enabled():
            return eager_apply(_ops.PRELU, x, alpha)  # (x and alpha checked as plain() checks)
        dtype = x.dtype
        call = None if not x.is_contiguous() or alpha.dtype is not dtype else _PRELU_CALLS.get(
            (x.shape, alpha.shape, dtype, _backend_context.get() or _backends._default))
        if call is not None:
            run, _, compute = call
            slopes = alpha if compute is dtype and alpha.is_contiguous() else alpha.detach().to(compute).contiguous()
            y = _empty_like(x)
            run(y.data_ptr(), x.data_ptr(), slopes.data_ptr())
            return y
    elif not plain(x):
        _tensors("prelu", x=x, alpha=alpha)
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


def _same_dtype_bias(x, w, b, features: int) -> bool:
    """w and b in x's dtype and b (if any) 1-d of ``features``: what torch's primitive + the activation assume
    (anything else goes to the fused op, whose checks say what is wrong)."""
    return w.dtype == x.dtype and (b is None or (b.dtype == x.dtype and b.dim() == 1 and b.shape[0] == features))


def dense_bias_act(x, w, b=None, activation="relu"):
    """``act(x @ w + b)`` with ``w`` of shape ``(in, out)`` (Keras Dense; torch's Linear stores ``w.T``).

    Gradients for x, w and b; b may be None.  16-bit inputs multiply in float32.  On float32/float64
    CPU tensors the product and bias are torch's (``F.linear``) and the activation fastact's kernel
    (``_ops.activation_after_primitive``); elsewhere the whole call is fastact's (the ``dense_bias_act`` op).

        >>> fastact.torch.dense_bias_act(torch.ones(2, 3), torch.ones(3, 4), torch.arange(4.0) - 4)
        tensor([[0., 0., 1., 2.],
                [0., 0., 1., 2.]])
    """
    function = "dense_bias_act"
    _tensors(function, x=x, w=w, b=b)
    act = _ops.fused_activation(function, activation)
    if (_ops.torch_linear_part(x) and x.dim() >= 1 and w.dim() == 2 and x.shape[-1] == w.shape[0]
            and _same_dtype_bias(x, w, b, w.shape[1])):
        # F.linear on w.T: for a Linear's weight.t() that is the weight itself, whose gradient autograd
        # then computes in its own layout (x @ w would give it transposed, and AccumulateGrad a copy).
        return _ops.activation_after_primitive(torch.nn.functional.linear(x, w.t(), b), act)
    return _ops.DENSE(x, w, b, _ops.activation_key(function, act))


def conv2d_bias_act(x, w, b=None, activation="relu", *, stride=1, padding="valid", dilation=1, groups=1,
                    data_format="NCHW"):
    """``act(conv2d(x, w) + b)``, with fastact's conv2d conventions; gradients for x, w and b.

    On float32/float64 CPU tensors the convolution and bias are torch's (``F.conv2d``: oneDNN on x86)
    and the activation fastact's kernel (``_ops.activation_after_primitive``); elsewhere the whole call
    is fastact's (the ``conv2d_bias_act`` op: im2col, GEMM, epilogue).

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
    act = _ops.fused_activation(function, activation)
    geometry = _geometry(function, tuple(x.shape), tuple(w.shape), stride, padding, dilation, groups, data_format)
    if _ops.torch_linear_part(x) and _same_dtype_bias(x, w, b, geometry.out_channels):
        return _conv2d_by_torch(x, w, b, act, geometry)
    (top, bottom), (left, right) = geometry.padding
    return _ops.CONV2D(x, w, b, _ops.activation_key(function, act), list(geometry.stride),
                       [top, bottom, left, right], list(geometry.dilation), geometry.groups, geometry.data_format)


@functools.lru_cache(maxsize=256)
def _cached_geometry(*args: Any):
    return conv2d_geometry(*args[:3], stride=args[3], padding=args[4], dilation=args[5], groups=args[6],
                           data_format=args[7])


def _geometry(*args: Any):
    """conv2d_geometry, remembered per shapes and arguments (a Conv2d module asks the same each step: its
    checks cost ~19 us a call, 0.3 us remembered, by timeit on the AMD EPYC dev VM); computed afresh
    under torch.compile (symbolic shapes) or for an unhashable argument (a list: the same checks, uncached)."""
    if torch.compiler.is_compiling():
        return _cached_geometry.__wrapped__(*args)
    try:
        return _cached_geometry(*args)
    except TypeError:
        return _cached_geometry.__wrapped__(*args)


def _conv2d_by_torch(x, w, b, act, geometry):
    """torch's convolution with the bias, of the checked geometry, then fastact's activation.

    NHWC x and Keras' (kh, kw, C/groups, O) w are views of channels-last NCHW tensors (torch's
    result is channels-last too, and the activation runs on it before it is seen as NHWC again);
    uneven padding (TensorFlow's "same" with an even kernel or stride) pads x first, torch's padding
    being symmetric.
    """
    nhwc = geometry.data_format == "NHWC"
    xt, wt = (x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1)) if nhwc else (x, w)
    (top, bottom), (left, right) = geometry.padding
    if top == bottom and left == right:
        padding = (top, left)
    else:
        xt, padding = torch.nn.functional.pad(xt, (left, right, top, bottom)), (0, 0)
    z = torch.nn.functional.conv2d(xt, wt, b, geometry.stride, padding, geometry.dilation, geometry.groups)
    y = _ops.activation_after_primitive(z, act)
    return y.permute(0, 2, 3, 1) if nhwc else y
