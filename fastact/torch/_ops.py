"""The custom ops, declared from fastact's registry and fused calls (one source of truth).

For every registered activation NAME there are two ops,
``fastact::NAME(Tensor x, <params>) -> Tensor`` and
``fastact::NAME_backward(Tensor dy, Tensor x, <params>) -> Tensor``; their
schemas come from the declaration's parameters (``_SCHEMA_TYPES``), their
computation is fastact's own public function on zero-copy views, written
into a tensor torch allocates.  PReLU and the fused calls are declared by
hand below, since their arguments are arrays and layouts, not parameters.

A fused call's activation (a name or ``fastact.Activation``) travels as a
string, ``"leaky_relu(alpha=0.05)"`` (:func:`activation_key`), because an
op's schema holds only tensors, numbers and strings; the ops turn it back
into an ``Activation`` (:func:`activation_of`).
"""
from __future__ import annotations

import ast
import functools
import math
from typing import Any, Callable

import numpy as np
import torch

import fastact
from .. import _registry, backends
from .._conv_geometry import Conv2dGeometry, _split_shapes
from ..backends.kernels import plan
from .._fused_dispatch import _activation
from ..functions import Activation
from ._bridge import as_array, as_optional_array, as_tensor, host_array, on_device
from ._library import Op, plain

# A parameter's schema type, by its validator (fastact/_registry.py).
_SCHEMA_TYPES = {
    _registry.real: "float",
    _registry.optional_nonnegative: "float?",
    _registry.boolean: "bool",
}


def _schema_params(spec: _registry.ActivationSpec) -> list[str]:
    """The schema's parameters of an activation: its declared ones; a row-wise axis as ``int[]`` (one or more axes)."""
    if spec.form == "rowwise":
        return [f"int[] {p.name}" for p in spec.params]
    missing = [p.name for p in spec.params if p.check not in _SCHEMA_TYPES]
    if missing:
        raise RuntimeError(
            f"fastact.torch: activation {spec.name!r} has parameter(s) {missing} of a kind without a torch "
            f"schema type; add its validator to fastact/torch/_ops.py: _SCHEMA_TYPES"
        )
    return [f"{_SCHEMA_TYPES[p.check]} {p.name}" for p in spec.params]


def _axis_value(axis: Any) -> Any:
    """A row-wise axis as fastact takes it: the schema's list of axes back to an int (one) or a tuple."""
    if isinstance(axis, (list, tuple)):
        return axis[0] if len(axis) == 1 else tuple(axis)
    return axis


def schema_values(spec: _registry.ActivationSpec, values: tuple) -> tuple:
    """The user's parameter values, validated, as the op's schema takes them (the dispatcher path)."""
    validated = tuple(spec.validate(*values).values())
    if spec.form == "rowwise":  # an axis, or a tuple of axes where fastact takes one: a list
        return tuple([a] if isinstance(a, int) else list(a) for a in validated)
    return validated


# --------------------------------------------------------------------------- #
# Elementwise and row-wise activations
# --------------------------------------------------------------------------- #
# The NumPy dtype fastact's host backends compute a CPU tensor's dtype in (bfloat16 only with ml_dtypes).
_HOST_DTYPES: dict = {torch.float16: np.dtype("float16"), torch.float32: np.dtype("float32"),
                      torch.float64: np.dtype("float64")}
try:
    import ml_dtypes

    _HOST_DTYPES[torch.bfloat16] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # bfloat16 tensors take the general path, which says what to install
    pass


_COPY_GRADIENT_ELEMENTS = 1 << 16  # a non-contiguous dy up to this size is copied for the pointer path
# Results of at least this many bytes take the general path, whose result NumPy allocates: with
# torch.empty_like, a 64 MiB relu took 3.7x fastact's time on the tensor's NumPy view
# (bench/bench_torch_ops.py, large tensors), the first touch of the fresh pages costing more than
# the activation; NumPy asks the kernel for huge pages for large buffers (madvise), torch's CPU
# allocator does not, the likely difference.  Small results come from torch's allocator, cheaper.
_POINTER_PATH_BYTES = 1 << 22


# activation name -> {(values, torch dtype): (the values' types, backend name, run, most elements,
# row-wise)}: run is the cpu backend's pointer call (fastact/backends/cpu/backend.py: pointer_call)
# with its leading arguments bound (a partial: 50 ns less than a star call), None where there is none.  An entry holds for calls whose values have
# the same types (1 == 1.0 == True, and True is refused where a number is due) under the same
# backend name (``fastact.use_backend``); a call that differs replaces it.  BACKWARD_CALLS: the
# same for the backward.  Keyed by value and dtype only, and checked after, because hashing the
# types with them cost a quarter of a small call (bench/bench_torch_ops.py).
FORWARD_CALLS: dict = {}
BACKWARD_CALLS: dict = {}
_MAX_POINTER_CALLS = 256  # per activation and direction


def pointer_call(spec: _registry.ActivationSpec, values: tuple, dtype: torch.dtype, backward: bool) -> tuple | None:
    """The remembered pointer-call entry (see FORWARD_CALLS) for these values and dtype, or None where there is none.

    The values are validated as fastact's own function validates them (so a bad value
    raises the same error here).
    """
    calls = (BACKWARD_CALLS if backward else FORWARD_CALLS)[spec.name]
    try:
        entry = calls.get((values, dtype))
    except TypeError:  # an unhashable value (a list of axes): the general path
        return None
    types, backend = tuple(map(type, values)), backends.get_backend()
    if entry is not None and entry[0] == types and entry[1] == backend:
        return None if entry[2] is None else entry
    host = backends.host_fast_path()
    numpy_dtype = _HOST_DTYPES.get(dtype)
    make = getattr(host, "pointer_call", None)
    made = None if make is None or numpy_dtype is None else make(
        spec.kernel, spec.kernel_params_of(*values), numpy_dtype, backward)
    if made is None:
        entry = (types, backend, None, 0, False)
    else:
        function, leading = made
        entry = (types, backend, functools.partial(function, *leading),
                 (_POINTER_PATH_BYTES - 1) // numpy_dtype.itemsize, spec.form == "rowwise")
    if host is not None:  # not yet loaded: ask again once the general path has loaded it
        if len(calls) >= _MAX_POINTER_CALLS:
            del calls[next(iter(calls))]
        calls[(values, dtype)] = entry
    return None if entry[2] is None else entry


def row_length(x: torch.Tensor, axis: Any) -> int:
    """The row length of softmax along ``axis`` when it is x's last axis (rows of a contiguous x); 0 otherwise."""
    if type(axis) is not int or x.ndim == 0 or (axis != -1 and axis != x.ndim - 1):
        return 0
    return x.shape[-1]


def _direct(spec: _registry.ActivationSpec, values: tuple, x: torch.Tensor, dy: torch.Tensor | None) -> Any:
    """An activation on contiguous CPU tensors straight to the cpu backend's module; None otherwise.

    The memory is handed over by address (``data_ptr``), skipping the NumPy views, fastact's
    dispatch and ``torch.from_numpy`` (most of a small call's cost, bench/bench_torch_ops.py).
    Taken only when the host backend now in use is the ``cpu`` one (``fastact.use_backend``
    is obeyed), x (and dy, of x's shape and dtype) is contiguous in a dtype it computes, a
    row-wise activation runs along the last axis, and the result is a new tensor like x
    (contiguous, so the same flat layout).  Anything else returns None and takes the general
    path, which checks and raises as usual.
    """
    if not x.is_contiguous():
        return None
    call = pointer_call(spec, values, x.dtype, dy is not None)
    if call is None or x.numel() > call[3]:
        return None
    length = 0
    if spec.form == "rowwise":
        length = row_length(x, values[0])
        if not length:
            return None
    if dy is not None:
        if dy.dtype is not x.dtype or dy.shape != x.shape or not dy.is_cpu:
            return None
        if not dy.is_contiguous():
            # autograd often hands a broadcast gradient (``y.sum().backward()``: a stride-0 one).  A
            # small one is copied, which costs far less than the general path's strided views; a
            # large one takes the general path, whose strided kernel reads it without a copy.
            if dy.numel() > _COPY_GRADIENT_ELEMENTS:
                return None
            dy = dy.contiguous()
    run = call[2]
    y = torch.empty_like(x)
    if length:
        operands = (y.data_ptr(), x.data_ptr()) if dy is None else (y.data_ptr(), x.data_ptr(), dy.data_ptr())
        run(x.numel() // length, length, *operands)
    elif dy is None:
        run(x.numel(), y.data_ptr(), x.data_ptr())
    else:
        run(x.numel(), y.data_ptr(), dy.data_ptr(), x.data_ptr())
    return y


class ActivationByAddress(torch.autograd.Function):
    """A small eager activation with autograd: y = act(x) by the cpu module's pointer calls (fastact.torch.NAME).

    ``forward_call``/``backward_call``: the FORWARD_CALLS / BACKWARD_CALLS entries' calls for the
    values; ``length``: 0 for an elementwise activation, the row length of a row-wise one (along
    x's last axis); ``fallback``: the activation op's backward (``Op.backward``, with ``values``),
    which takes any gradient this one's pointer call does not (a strided or broadcast dy, a
    create_graph backward). x is saved, as the op's autograd rule saves it.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, forward_call: Callable, backward_call: Callable, length: int,
                fallback: Callable, values: tuple) -> torch.Tensor:
        y = torch.empty_like(x)
        if length:
            forward_call(x.numel() // length, length, y.data_ptr(), x.data_ptr())
        else:
            forward_call(x.numel(), y.data_ptr(), x.data_ptr())
        ctx.save_for_backward(x)
        ctx.calls = (backward_call, length, fallback, values)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple:
        x, = ctx.saved_tensors
        backward_call, length, fallback, values = ctx.calls
        if type(dy) is torch.Tensor and dy.dtype is x.dtype and dy.is_contiguous() and not torch.is_grad_enabled():
            dx = torch.empty_like(x)
            if length:
                backward_call(x.numel() // length, length, dx.data_ptr(), x.data_ptr(), dy.data_ptr())
            else:
                backward_call(x.numel(), dx.data_ptr(), dy.data_ptr(), x.data_ptr())
        else:
            ctx.values = values
            dx = fallback(ctx, dy)[0]
        return dx, None, None, None, None, None


# Function.apply's own checks (functorch transforms, setup_context) are the caller's: its C part directly.
activation_by_address = torch._C._FunctionBase.__dict__["apply"].__get__(None, ActivationByAddress)


def _activation_ops(spec: _registry.ActivationSpec) -> tuple[Op, Op]:
    forward_function = getattr(fastact, spec.name)
    backward_function = getattr(fastact, f"{spec.name}_backward")
    rowwise = spec.form == "rowwise"
    count = len(spec.params)

    # The custom ops write into torch.empty_like(x), exactly as their fakes allocate.  Eager calls
    # on contiguous CPU tensors go to the cpu module by address (_direct); other eager calls let
    # fastact allocate (its NumPy fast path, which skips the checks an out= needs: about 2 us of a
    # small call) and wrap the result.
    def compute(x: torch.Tensor, *values: Any) -> torch.Tensor:
        values = tuple(map(_axis_value, values)) if rowwise else values
        y = torch.empty_like(x)
        with on_device(x):
            forward_function(as_array(x), *values, out=as_array(y))
        return y

    def eager(x: torch.Tensor, *values: Any) -> torch.Tensor:
        values = tuple(map(_axis_value, values)) if rowwise else values
        if x.is_cpu:  # the common small call, without the device context
            y = _direct(spec, values, x, None)
            return as_tensor(forward_function(host_array(x), *values)) if y is None else y
        with on_device(x):
            return as_tensor(forward_function(as_array(x), *values))

    def compute_backward(dy: torch.Tensor, x: torch.Tensor, *values: Any) -> torch.Tensor:
        values = tuple(map(_axis_value, values)) if rowwise else values
        dx = torch.empty_like(x)
        with on_device(x):
            backward_function(as_array(dy), as_array(x), *values, out=as_array(dx))
        return dx

    def eager_backward(dy: torch.Tensor, x: torch.Tensor, *values: Any) -> torch.Tensor:
        values = tuple(map(_axis_value, values)) if rowwise else values
        if x.is_cpu:
            dx = _direct(spec, values, x, dy)
            return as_tensor(backward_function(host_array(dy), host_array(x), *values)) if dx is None else dx
        with on_device(x):
            return as_tensor(backward_function(as_array(dy), as_array(x), *values))

    backward_op = Op(
        f"{spec.name}_backward",
        f"({', '.join(['Tensor dy', 'Tensor x', *_schema_params(spec)])}) -> Tensor",
        compute_backward,
        lambda dy, x, *values: torch.empty_like(x),
        eager=eager_backward,
    )

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.values = inputs[1:]

    nones = (None,) * count

    def backward(ctx: Any, dy: torch.Tensor) -> tuple:
        (x,) = ctx.saved_tensors
        if x.is_cpu and plain(dy):  # an eager call's backward: the pointer path without the op's layers
            dx = _direct(spec, ctx.values, x, dy)
            if dx is not None:
                return (dx, *nones)
        return (backward_op(dy, x, *ctx.values), *nones)

    forward_op = Op(
        spec.name,
        f"({', '.join(['Tensor x', *_schema_params(spec)])}) -> Tensor",
        compute,
        lambda x, *values: torch.empty_like(x),
        setup_context,
        backward,
        eager=eager,
    )
    return forward_op, backward_op


ACTIVATIONS: dict[str, Op] = {}
BACKWARDS: dict[str, Op] = {}
for _spec in _registry.REGISTRY.values():
    FORWARD_CALLS[_spec.name], BACKWARD_CALLS[_spec.name] = {}, {}
    if _spec.form != "prelu":
        ACTIVATIONS[_spec.name], BACKWARDS[_spec.name] = _activation_ops(_spec)


# --------------------------------------------------------------------------- #
# PReLU: the slope is a tensor with its own gradient
# --------------------------------------------------------------------------- #
# (x's shape, alpha's shape, dtype, backend name) -> (run, channels, slopes' dtype), or None where
# prelu cannot go by address (see prelu_direct); run is the module's prelu_pointers with the dtype
# code and the layout (outer, channels, inner) bound.
_PRELU_CALLS: dict = {}


def _prelu_call(x_shape: torch.Size, alpha_shape: torch.Size, dtype: torch.dtype) -> tuple | None:
    key = (x_shape, alpha_shape, dtype, backends.get_backend())
    try:
        return _PRELU_CALLS[key]
    except KeyError:
        pass
    host = backends.host_fast_path()
    function = getattr(host, "prelu_pointers", None)
    numpy_dtype = _HOST_DTYPES.get(dtype)
    call = None
    if function is not None and numpy_dtype is not None and host.dtype_code(numpy_dtype) is not None:
        try:
            fits = np.broadcast_shapes(tuple(alpha_shape), tuple(x_shape)) == tuple(x_shape)
        except ValueError:  # an alpha that does not broadcast: the general path says so
            fits = False
        layout = plan.prelu_plan(tuple(x_shape), tuple(alpha_shape)) if fits else None
        if layout is not None and layout.axes is None:  # slopes in x's order (no transposed copy)
            run = functools.partial(function, host.dtype_code(numpy_dtype), layout.outer, layout.channels, layout.inner)
            call = (run, layout.channels, torch.float64 if dtype is torch.float64 else torch.float32)
    if host is not None:  # not yet loaded: ask again once the general path has loaded it
        if len(_PRELU_CALLS) >= _MAX_POINTER_CALLS:
            del _PRELU_CALLS[next(iter(_PRELU_CALLS))]
        _PRELU_CALLS[key] = call
    return call


def prelu_direct(x: torch.Tensor, alpha: torch.Tensor, dy: torch.Tensor | None, dalpha: bool = True) -> Any:
    """prelu (dy None) or prelu_backward on contiguous CPU tensors by address (the cpu backend's module); None otherwise.

    Taken where the host backend in use is the ``cpu`` one, x (and dy) is contiguous, alpha
    has x's dtype and lays its slopes out in x's order (a scalar, (C, 1, 1) for NCHW, (C,)
    for channels-last, ...), as fastact.prelu computes them: slopes in the compute dtype,
    dalpha summed in float64 and rounded to alpha's dtype (None without ``dalpha``: its sums
    are made all the same, the module computes both, but not shaped and rounded).
    """
    if not x.is_cpu or not alpha.is_cpu or alpha.dtype is not x.dtype or not x.is_contiguous() or x.numel() == 0:
        return None
    call = _prelu_call(x.shape, alpha.shape, x.dtype)
    if call is None:
        return None
    run, channels, compute = call
    slopes = alpha if alpha.dtype is compute and alpha.is_contiguous() else alpha.detach().to(compute).contiguous()
    y = torch.empty_like(x)
    if dy is None:
        run(y.data_ptr(), x.data_ptr(), slopes.data_ptr())
        return y
    if dy.dtype is not x.dtype or dy.shape != x.shape or not dy.is_cpu:
        return None
    dy = dy.contiguous()
    sums = torch.empty(channels, dtype=torch.float64)
    run(y.data_ptr(), dy.data_ptr(), x.data_ptr(), slopes.data_ptr(), sums.data_ptr())
    return y, sums.reshape(alpha.shape).to(alpha.dtype) if dalpha else None


def _prelu(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    with on_device(x):
        fastact.prelu(as_array(x), as_array(alpha), out=as_array(y))
    return y


def _prelu_eager(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    y = prelu_direct(x, alpha, None)
    return _prelu(x, alpha) if y is None else y


def _prelu_backward(dy: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dx = torch.empty_like(x)
    with on_device(x):
        _, dalpha = fastact.prelu_backward(as_array(dy), as_array(x), as_array(alpha), out=as_array(dx))
        return dx, as_tensor(dalpha).contiguous()


def _prelu_backward_eager(dy: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    grads = prelu_direct(x, alpha, dy)
    return _prelu_backward(dy, x, alpha) if grads is None else grads


PRELU_BACKWARD = Op(
    "prelu_backward",
    "(Tensor dy, Tensor x, Tensor alpha) -> (Tensor, Tensor)",
    _prelu_backward,
    lambda dy, x, alpha: (torch.empty_like(x), alpha.new_empty(alpha.shape)),
    eager=_prelu_backward_eager,
)


def _saving(tensors: int) -> Callable:
    """A setup_context saving the first ``tensors`` inputs (None for a missing bias) and keeping the rest."""

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        ctx.save_for_backward(*inputs[:tensors])
        ctx.arguments = inputs[tensors:]

    return setup_context


def _prelu_grad(ctx: Any, dy: torch.Tensor) -> tuple:
    x, alpha = ctx.saved_tensors
    if x.is_cpu and plain(dy):  # an eager call's backward: by address without the op's layers
        # alpha is the last input both of the op and of the eager calls' autograd.Function (op, x, alpha).
        grads = prelu_direct(x, alpha, dy, ctx.needs_input_grad[-1])
        if grads is not None:
            return grads
    return PRELU_BACKWARD(dy, x, alpha)


PRELU = Op(
    "prelu", "(Tensor x, Tensor alpha) -> Tensor", _prelu, lambda x, alpha: torch.empty_like(x),
    _saving(2), _prelu_grad, eager=_prelu_eager,
)


# --------------------------------------------------------------------------- #
# The fused calls' activation, as a string in the schema
# --------------------------------------------------------------------------- #
def activation_key(function: str, activation: Any) -> str:
    """A fused call's activation (name or ``fastact.Activation``), checked, as ``"name(p=v, ...)"``."""
    return _checked_activation(function, activation)[1]


def fused_activation(function: str, activation: Any) -> Activation:
    """A fused call's activation (name or ``fastact.Activation``), checked, as an Activation."""
    return _checked_activation(function, activation)[0]


def _checked_activation(function: str, activation: Any) -> tuple[Activation, str]:
    """(Activation, key) of a fused call's activation, remembered; anything but a name or Activation
    gets _activation's TypeError saying what is accepted."""
    if torch.compiler.is_compiling() or not isinstance(activation, (str, Activation)):
        return _activation_and_key.__wrapped__(function, activation)  # dynamo traces it (and warns on lru_cache)
    return _activation_and_key(function, activation)


@functools.lru_cache(maxsize=1024)
def _activation_and_key(function: str, activation: str | Activation) -> tuple[Activation, str]:
    act = _activation(function, activation)
    return act, f"{act.name}({', '.join(f'{k}={v!r}' for k, v in act.params.items())})"


@functools.lru_cache(maxsize=1024)
def activation_of(key: str) -> Activation:
    """The ``Activation`` an :func:`activation_key` string names."""
    name, _, rest = key.partition("(")
    params = {}
    for item in filter(None, rest.rstrip(")").split(", ")):
        param, _, value = item.partition("=")
        params[param] = ast.literal_eval(value)  # a float, None or a bool, written by repr
    return Activation(name, **params)


def _result(a: Any) -> torch.Tensor:
    """A result fastact allocated, as a tensor; contiguous, as the fakes promise (a copy only if it is not)."""
    return as_tensor(a).contiguous()


def _gradients(*arrays: Any, like: torch.Tensor) -> tuple:
    """fastact's gradients as tensors; a missing one (no bias) as an empty tensor (schemas return tensors)."""
    return tuple(like.new_empty((0,)) if a is None else _result(a) for a in arrays)


def _differentiable(backward_op: Op, tensors: int) -> tuple[Callable, Callable]:
    """setup_context/backward for a fused op whose first ``tensors`` inputs may need gradients."""

    def backward(ctx: Any, dy: torch.Tensor) -> tuple:
        saved = ctx.saved_tensors
        grads = backward_op(dy, *saved, *ctx.arguments)
        bias = saved[-1]
        grads = (*grads[:-1], None if bias is None else grads[-1])
        return (*grads, *(None,) * len(ctx.arguments))

    return _saving(tensors), backward


# --------------------------------------------------------------------------- #
# The fused dense/conv2d of ops.py on CPU tensors
#
# On float32/float64 CPU tensors, fastact.torch's dense_bias_act and
# conv2d_bias_act (ops.py) compute the product or convolution and the bias with
# torch's own primitive (F.linear; F.conv2d, oneDNN on x86: its backward, dbias
# included, is torch's autograd node) and the activation with fastact's kernel
# (activation_after_primitive below), over the primitive's result where the
# backward can read the output.  Why not fastact's own im2col + GEMM + col2im:
# torch's oneDNN convolution took a third of its time on the AVX-512 dev VMs,
# and fastact's backward recomputes the pre-activation (bench/bench_torch_ops.py
# keeps it as a comparison row).  Why the bias is torch's and not fastact's
# bias + activation epilogue (what these layers ran before): the bias costs
# about the same in either place (bench/bench_torch_ops.py, "Where the bias
# goes": on the bench CNN's first layer oneDNN's bias took ~80 us forward and
# ~140 us backward, fastact's epilogue ~55 and ~110 more than the activation
# alone), and without it the activation is the plain elementwise kernel, which
# for ReLU and Leaky ReLU runs over z: the forward allocates nothing (same
# bench, "Threads": 0.47x torch's F.leaky_relu into a new tensor; the step).
# The custom ops dense_bias_act / conv2d_bias_act stay fastact's whole fused
# call (what CUDA tensors, 16-bit CPU tensors and direct torch.ops calls run).
# --------------------------------------------------------------------------- #
_TORCH_LINEAR_DTYPES = (torch.float32, torch.float64)


def torch_linear_part(x: torch.Tensor) -> bool:
    """True where fastact.torch's dense/conv2d compute the product or convolution with torch's primitive.

    CPU tensors of float32/float64; not 16-bit ones, whose fastact GEMM result is float32,
    rounded once after the epilogue (torch's would round z first), nor CUDA tensors.
    """
    return x.is_cpu and x.dtype in _TORCH_LINEAR_DTYPES  # (x.device builds a torch.device: ~1 us more)


def _flat_layout(t: torch.Tensor) -> bool:
    """t's elements fill its memory in a layout torch.empty_like copies (C order, or channels-last for 4-d)."""
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


class _ActivationAfterPrimitive(torch.autograd.Function):
    """y = act(z) on the fresh result z of torch's product or convolution (bias included), with autograd.

    ``forward_call``/``backward_call``: the cpu module's elementwise pointer calls (of FORWARD_CALLS /
    BACKWARD_CALLS entries).  ``in_place``: y is written over z (nobody else holds z: torch's
    primitive just made it, and its autograd node does not keep its output) and the backward reads
    y, exact where the activation's derivative_from_output says so (Leaky ReLU, ReLU); otherwise y
    is a new tensor and z is kept for the backward.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, forward_call: Callable, backward_call: Callable, in_place: bool):
        y = z if in_place else torch.empty_like(z)
        forward_call(z.numel(), y.data_ptr(), z.data_ptr())
        if in_place:
            ctx.mark_dirty(z)
        ctx.save_for_backward(y if in_place else z)
        ctx.backward_call = backward_call
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple:
        if torch.is_grad_enabled():  # create_graph=True: a second derivative must raise, never give zeros
            return _backward_once_differentiable(ctx, dy)
        return _backward_after_primitive(ctx, dy)  # (once_differentiable's wrapper: ~3 us a layer less)


def _backward_after_primitive(ctx: Any, dy: torch.Tensor) -> tuple:
    x, = ctx.saved_tensors  # y or z, as forward saved it
    if dy.stride() != x.stride() or dy.dtype is not x.dtype:
        dy = torch.empty_like(x).copy_(dy)  # x's layout: the kernel walks both memories in step
    dz = torch.empty_like(x)
    ctx.backward_call(x.numel(), dz.data_ptr(), dy.data_ptr(), x.data_ptr())
    return dz, None, None, None


_backward_once_differentiable = torch.autograd.function.once_differentiable(_backward_after_primitive)


_apply_after_primitive = torch._C._FunctionBase.__dict__["apply"].__get__(None, _ActivationAfterPrimitive)


# (Activation, torch dtype) -> (backend name, forward call, backward call, backward reads y): the
# pointer_call entries of the fused layers' activation, looked up once (two lookups cost ~4 us a layer).
_AFTER_PRIMITIVE_CALLS: dict = {}


def _after_primitive_calls(act: Activation, dtype: torch.dtype) -> tuple | None:
    backend = backends.get_backend()
    entry = _AFTER_PRIMITIVE_CALLS.get((act, dtype))
    if entry is not None and entry[0] == backend:
        return entry
    spec, values = act.spec, tuple(act.params.values())
    forward_call = pointer_call(spec, values, dtype, False)
    backward_call = pointer_call(spec, values, dtype, True)
    if forward_call is None or backward_call is None:
        return None  # the general path (which loads the host backend on a first call)
    check = spec.derivative_from_output
    entry = (backend, forward_call[2], backward_call[2], check is not None and check(**act.kernel_params))
    if len(_AFTER_PRIMITIVE_CALLS) >= _MAX_POINTER_CALLS:
        _AFTER_PRIMITIVE_CALLS.clear()
    _AFTER_PRIMITIVE_CALLS[(act, dtype)] = entry
    return entry


def activation_after_primitive(z: torch.Tensor, act: Activation) -> torch.Tensor:
    """act(z) for fastact.torch's dense/conv2d on CPU tensors: z is torch's primitive's fresh result, bias added.

    Eager CPU calls run fastact's elementwise kernel by address, over z itself where the backward
    can read the output instead (or where autograd does not record the call), through
    :class:`_ActivationAfterPrimitive` where it does.  Anything else (torch.compile, tensor
    subclasses, another host backend, a strided z) takes the activation's custom op.  (Why the
    bias is torch's: this section's heading.)
    """
    calls = _after_primitive_calls(act, z.dtype) if plain(z) and z.is_cpu and _flat_layout(z) else None
    if calls is None:
        return ACTIVATIONS[act.name](z, *schema_values(act.spec, tuple(act.params.values())))
    if not (z.requires_grad and torch.is_grad_enabled()):
        calls[1](z.numel(), z.data_ptr(), z.data_ptr())  # nobody else holds z
        return z
    # Function.apply's own checks (functorch transforms, setup_context) are plain(z)'s: its C part directly
    # (~5 us of a ~20 us layer overhead, by timeit on the AMD EPYC dev VM).
    return _apply_after_primitive(z, calls[1], calls[2], calls[3])


# --------------------------------------------------------------------------- #
# The bias + activation epilogue on CPU tensors (the bias_act op)
# --------------------------------------------------------------------------- #
# (activation key, torch dtype) -> (the cpu module's bias_act_pointers, functor number, packed parameters,
# dtype code, the backend they came from): computed once, as FORWARD_CALLS does for activations.
_EPILOGUE_CALLS: dict = {}


def _epilogue_call(key: str, dtype: torch.dtype) -> tuple | None:
    """The pointer call for the epilogue of ``key`` on ``dtype`` memory, or None where the host backend has none."""
    host = backends.host_fast_path()
    entry = _EPILOGUE_CALLS.get((key, dtype))
    if entry is not None and entry[4] is host:
        return entry
    function = getattr(getattr(host, "engine", None), "bias_act_pointers", None)
    if function is None or dtype not in _TORCH_LINEAR_DTYPES:
        return None  # not loaded yet (the general path loads it), another backend, or an older module
    act, numpy_dtype = activation_of(key), _HOST_DTYPES[dtype]
    number, packed = host.functor(act.kernel, act.kernel_params, numpy_dtype)
    if len(_EPILOGUE_CALLS) >= _MAX_POINTER_CALLS:
        _EPILOGUE_CALLS.clear()
    entry = _EPILOGUE_CALLS[(key, dtype)] = (function, number, packed, host.dtype_code(numpy_dtype), host)
    return entry


def _by_address(z: torch.Tensor, b: torch.Tensor, axis: int, dy: torch.Tensor | None = None) -> tuple | None:
    """(outer, channels, inner) where the epilogue can run on raw addresses (contiguous z, dy and b of z's
    dtype, b of z.shape[axis] values, axis in range); None sends the call to fastact.bias_act, whose
    checks say what is wrong."""
    ndim = z.dim()
    if not -ndim <= axis < ndim or b.dim() != 1 or b.dtype != z.dtype or b.shape[0] != z.shape[axis] or not z.numel():
        return None
    if not (z.is_contiguous() and b.is_contiguous()):
        return None
    if dy is not None and (dy.dtype != z.dtype or dy.shape != z.shape or not dy.is_contiguous()):
        return None
    axis %= ndim
    return math.prod(z.shape[:axis]), z.shape[axis], math.prod(z.shape[axis + 1:])


def _host_epilogue(z: torch.Tensor, b: torch.Tensor, key: str, axis: int) -> torch.Tensor:
    """y = act(z + b along ``axis``) on the cpu backend, into a new tensor of z's layout.

    Contiguous float32/float64 memory goes to the compiled module by address (no NumPy views,
    no argument checks: by hand, ~40 us a call less on the bench CNN's first layer);
    anything else to fastact.bias_act on NumPy views.
    """
    sizes = _by_address(z, b, axis)
    call = None if sizes is None else _epilogue_call(key, z.dtype)
    y = torch.empty_like(z)
    if call is not None:
        call[0](call[1], call[2], call[3], *sizes, y.data_ptr(), z.data_ptr(), b.data_ptr())
    else:
        fastact.bias_act(host_array(z), host_array(b), activation_of(key), axis=axis, out=host_array(y))
    return y


def _host_epilogue_backward(dy: torch.Tensor, z: torch.Tensor, b: torch.Tensor, key: str, axis: int) -> tuple:
    """(dz, dbias): fastact's epilogue backward on the cpu backend, dz = dy act'(z + b) and dbias (summed in
    double, in b's dtype) in one pass; dz C-contiguous, as the bias_act_backward op's fake promises."""
    sizes = _by_address(z, b, axis, dy)
    call = None if sizes is None else _epilogue_call(key, z.dtype)
    if call is None:
        dz, dbias = fastact.bias_act_backward(host_array(dy), host_array(z), host_array(b), activation_of(key),
                                              axis=axis)
        return as_tensor(dz).contiguous(), as_tensor(dbias)
    # dz from torch's allocator, as every other buffer of the step (a NumPy allocation of a few MiB came back
    # from the kernel as fresh pages each step: the bench CNN's step took ~1500 more page faults).
    dz, dbias = torch.empty(z.shape, dtype=z.dtype), torch.empty(b.shape, dtype=b.dtype)
    call[0](call[1], call[2], call[3], *sizes, dz.data_ptr(), dy.data_ptr(), z.data_ptr(), b.data_ptr(),
            dbias.data_ptr())
    return dz, dbias


# --------------------------------------------------------------------------- #
# bias_act
# --------------------------------------------------------------------------- #
def _bias_act(x: torch.Tensor, bias: torch.Tensor, activation: str, axis: int) -> torch.Tensor:
    if x.is_cpu:
        return _host_epilogue(x, bias, activation, axis)
    y = torch.empty_like(x)
    with on_device(x):
        fastact.bias_act(as_array(x), as_array(bias), activation_of(activation), axis=axis, out=as_array(y))
    return y


def _bias_act_backward(dy, x, bias, activation: str, axis: int) -> tuple:
    if x.is_cpu:
        return _host_epilogue_backward(dy, x, bias, activation, axis)
    with on_device(x):
        dx, dbias = fastact.bias_act_backward(as_array(dy), as_array(x), as_array(bias), activation_of(activation), axis=axis)
        return _gradients(dx, dbias, like=x)


BIAS_ACT_BACKWARD = Op(
    "bias_act_backward",
    "(Tensor dy, Tensor x, Tensor bias, str activation, int axis) -> (Tensor, Tensor)",
    _bias_act_backward,
    lambda dy, x, bias, activation, axis: (x.new_empty(x.shape), bias.new_empty(bias.shape)),
)
def _bias_act_grad(ctx: Any, dy: torch.Tensor) -> tuple:
    x, bias = ctx.saved_tensors
    activation, axis = ctx.arguments
    if x.is_cpu and plain(dy):  # an eager call's backward: fastact's epilogue without the op's layers
        grads = _host_epilogue_backward(dy, x, bias, activation, axis)
    else:
        grads = BIAS_ACT_BACKWARD(dy, x, bias, activation, axis)
    return (*grads, None, None)


BIAS_ACT = Op(
    "bias_act",
    "(Tensor x, Tensor bias, str activation, int axis) -> Tensor",
    _bias_act,
    lambda x, bias, activation, axis: torch.empty_like(x),
    _saving(2), _bias_act_grad,
)


# --------------------------------------------------------------------------- #
# dense_bias_act: w is (in, out), as Keras Dense and fastact.dense_bias_act
# --------------------------------------------------------------------------- #
def _dense(x, w, b, activation: str) -> torch.Tensor:
    with on_device(x, gemm=True):
        return _result(fastact.dense_bias_act(as_array(x), as_array(w), as_optional_array(b), activation_of(activation)))


def _dense_backward(dy, x, w, b, activation: str) -> tuple:
    with on_device(x, gemm=True):
        grads = fastact.dense_bias_act_backward(
            as_array(dy), as_array(x), as_array(w), as_optional_array(b), activation_of(activation))
        return _gradients(*grads, like=x)


def _dense_fake(x, w, b, activation):
    return x.new_empty((*x.shape[:-1], w.shape[1]))


def _backward_fakes(x, w, b):
    return x.new_empty(x.shape), w.new_empty(w.shape), x.new_empty((0,)) if b is None else b.new_empty(b.shape)


DENSE_BACKWARD = Op(
    "dense_bias_act_backward",
    "(Tensor dy, Tensor x, Tensor w, Tensor? b, str activation) -> (Tensor, Tensor, Tensor)",
    _dense_backward,
    lambda dy, x, w, b, activation: _backward_fakes(x, w, b),
)
DENSE = Op(
    "dense_bias_act",
    "(Tensor x, Tensor w, Tensor? b, str activation) -> Tensor",
    _dense,
    _dense_fake,
    *_differentiable(DENSE_BACKWARD, 3),
)


# --------------------------------------------------------------------------- #
# conv2d_bias_act: the geometry checked by the caller, padding explicit
# (top, bottom, left, right) so the schema holds only ints
# --------------------------------------------------------------------------- #
_CONV_ARGS = "str activation, int[] stride, int[] padding, int[] dilation, int groups, str data_format"


def _conv_options(stride, padding, dilation, groups, data_format) -> dict:
    top, bottom, left, right = padding
    return {"stride": tuple(stride), "padding": ((top, bottom), (left, right)), "dilation": tuple(dilation),
            "groups": groups, "data_format": data_format}


def _conv(x, w, b, activation: str, *options) -> torch.Tensor:
    with on_device(x, gemm=True):
        y = fastact.conv2d_bias_act(as_array(x), as_array(w), as_optional_array(b), activation_of(activation),
                                    **_conv_options(*options))
        return _result(y)


def _conv_backward(dy, x, w, b, activation: str, *options) -> tuple:
    with on_device(x, gemm=True):
        grads = fastact.conv2d_bias_act_backward(
            as_array(dy), as_array(x), as_array(w), as_optional_array(b), activation_of(activation),
            **_conv_options(*options))
        return _gradients(*grads, like=x)


def _conv_fake(x, w, b, activation, stride, padding, dilation, groups, data_format):
    (batch, channels, size), (out_channels, _, kernel_size) = _split_shapes(
        "conv2d_bias_act", data_format, tuple(x.shape), tuple(w.shape))
    top, bottom, left, right = padding
    geometry = Conv2dGeometry(data_format, batch, channels, size, out_channels, kernel_size, tuple(stride),
                              tuple(dilation), ((top, bottom), (left, right)), groups)
    return x.new_empty(geometry.out_shape)


CONV2D_BACKWARD = Op(
    "conv2d_bias_act_backward",
    f"(Tensor dy, Tensor x, Tensor w, Tensor? b, {_CONV_ARGS}) -> (Tensor, Tensor, Tensor)",
    _conv_backward,
    lambda dy, x, w, b, *rest: _backward_fakes(x, w, b),
)
CONV2D = Op(
    "conv2d_bias_act",
    f"(Tensor x, Tensor w, Tensor? b, {_CONV_ARGS}) -> Tensor",
    _conv,
    _conv_fake,
    *_differentiable(CONV2D_BACKWARD, 3),
)

ALL_OPS: tuple[Op, ...] = (
    *ACTIVATIONS.values(), *BACKWARDS.values(), PRELU, PRELU_BACKWARD,
    BIAS_ACT, BIAS_ACT_BACKWARD, DENSE, DENSE_BACKWARD, CONV2D, CONV2D_BACKWARD,
)
