"""What is benchmarked: one *workload* per (op, direction, dtype, size), with its implementations.

An op's *form* says how to build its operands and call it:

* ``elementwise``: every elementwise activation in the registry, and the
  row-wise softmax and log_softmax (along the last axis), on a contiguous
  ``(size // 1024, 1024)`` array, default parameters;
* ``prelu``: x of shape ``(N, 64, S)`` (NCHW with the spatial axes flattened),
  one slope per channel, alpha of shape ``(64, 1)``;
* ``bias_act``: the same x with a bias of shape ``(64,)`` along axis 1, ReLU;
* ``dense_bias_act``: x ``(size // 256, 256)`` times w ``(256, 256)`` plus b, ReLU;
* ``conv2d_bias_act``: NCHW x ``(N, 16, H, H)``, w ``(16, 16, 3, 3)``, "same", ReLU.

The fused ops are offered only when fastact has them; :data:`VARIANTS` adds
``gelu_tanh`` and ``prelu_scalar`` (one slope) for ``bench/bench_vs_torch.py``.
Implementations: ``fastact`` (writing into a preallocated ``out=`` where the
call takes one), ``fastact_new`` (the same call allocating its result),
``naive`` (``fastact.reference.NAIVE``: the NumPy or CuPy expression a user
would write, which allocates its result and temporaries) and ``torch`` (see
:mod:`.torch_baselines`: into a preallocated ``out=`` where PyTorch's kernel
has that overload, else allocating).  ``Workload.matching`` names the fastact
implementation that handles its output as PyTorch's call does: the one the
``torch`` speed-up is computed against, and the one :func:`check_torch`
compares PyTorch's result with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import fastact
from fastact import reference
from fastact._registry import REGISTRY

from .byte_model import bytes_moved

ROW = 1024  # elementwise arrays are (size // ROW, ROW): 2-D, like a batch of features
CHANNELS = 64  # PReLU and bias_act: channels of an NCHW-like (N, C, S) array
DENSE_FEATURES = 256
CONV_CHANNELS, CONV_KERNEL, CONV_PADDING = 16, 3, "same"
FUSED_ACTIVATION = "relu"
FUSED_OPS = ("bias_act", "dense_bias_act", "conv2d_bias_act")


@dataclass
class Workload:
    """One (op, direction, dtype, size): how to make an input set and the calls to time on it."""

    op: str
    direction: str
    form: str  # a key of byte_model.OPERANDS
    dtype: np.dtype
    size: int
    shapes: dict[str, tuple]
    make_args: Callable[[int], dict]  # input set number -> the arrays of one call
    implementations: dict[str, Callable[[dict], Any]]
    prepare: dict[str, Callable[[dict], None]] = field(default_factory=dict)
    flops: int | None = None
    roofline: str | None = None  # "copy" / "add" for memory-bound forms, None for compute-bound
    torch_mode: str | None = None  # "out" or "alloc": how PyTorch's call (if any) handles its output
    torch_kernel: str | None = None  # what PyTorch runs, in words
    matching: str = "fastact"  # the fastact implementation with PyTorch's output handling

    @property
    def nbytes(self) -> int:
        itemsize = self.dtype.itemsize
        sizes = {name: math.prod(shape) * itemsize for name, shape in self.shapes.items()}
        return bytes_moved(self.form, self.direction, sizes)


# --------------------------------------------------------------------------- #
# Shapes.
# --------------------------------------------------------------------------- #
def _rows(size: int) -> tuple:
    return (size // ROW, ROW) if size >= ROW and size % ROW == 0 else (size,)


def _nchw(size: int) -> tuple | None:
    spatial = min(256, size // CHANNELS)
    if spatial == 0 or size % (CHANNELS * spatial):
        return None
    return (size // (CHANNELS * spatial), CHANNELS, spatial)


def _dense(size: int) -> tuple | None:
    return (size // DENSE_FEATURES, DENSE_FEATURES) if size >= DENSE_FEATURES and size % DENSE_FEATURES == 0 else None


def _conv(size: int) -> tuple | None:
    side = min(32, math.isqrt(size // CONV_CHANNELS))
    per_image = CONV_CHANNELS * side * side
    if side == 0 or size % per_image:
        return None
    return (size // per_image, CONV_CHANNELS, side, side)


# --------------------------------------------------------------------------- #
# Forms: operands, fastact call, naive baseline, PyTorch forward.
# Each ``naive`` takes the inputs in ``inputs`` order (dy first backward).
# --------------------------------------------------------------------------- #
def _defaults(name: str) -> dict:
    return {p.name: p.default for p in REGISTRY[name].params if not p.required}


def _bind(function: Callable, params: dict) -> Callable:
    """``function`` with ``params`` as keywords (``out=`` passed through where given)."""
    return (lambda *arrays, **out: function(*arrays, **params, **out)) if params else function


def _naive_activation(name: str, direction: str, xp: Any) -> Callable | None:
    pair = reference.NAIVE.get(name)
    if pair is None:
        return None
    function = pair[0] if direction == "forward" else pair[1]
    return lambda *arrays, **params: function(*arrays, xp=xp, **params)


@dataclass(frozen=True)
class Form:
    """How one kind of op is benchmarked; see the module docstring."""

    form: str
    inputs: tuple[str, ...]
    input_shapes: Callable[[int], dict | None]
    output_shape: Callable[[dict], tuple]
    fastact: Callable[[str], Callable]  # direction -> f(*inputs[, dy first], out=None)
    takes_out: tuple[str, ...]  # the directions in which fastact's call takes out=
    naive: Callable[[str, Any], Callable | None]  # (direction, xp) -> f(*inputs[, dy first])
    torch: Callable[[Any, str], Any]  # (TorchBaseline, direction) -> torch_baselines.TorchImpl or None
    flops: Callable[[dict], int] | None = None
    # TorchBaseline -> f(*tensors of inputs): the torch.nn.functional forward a PyTorch user writes (allocating).
    functional: Callable[[Any], Callable | None] = lambda torch: None


def _public(name: str, params: dict | None = None) -> Callable[[str], Callable]:
    return lambda direction: _bind(getattr(fastact, name if direction == "forward" else f"{name}_backward"), params or {})


def elementwise_form(name: str, params: dict | None = None) -> Form:
    """Activation ``name`` with ``params`` (fastact's defaults for the others)."""
    params = dict(params or {})
    everything = {**_defaults(name), **params}

    def naive(direction: str, xp: Any) -> Callable | None:
        function = _naive_activation(name, direction, xp)
        return None if function is None else _bind(function, params)

    return Form(
        form="elementwise",
        inputs=("x",),
        input_shapes=lambda size: {"x": _rows(size)},
        output_shape=lambda shapes: shapes["x"],
        fastact=_public(name, params),
        takes_out=("forward", "backward"),
        naive=naive,
        torch=lambda torch, direction: torch.activation(name, everything, direction),
        functional=lambda torch: None if name not in torch.functional else (lambda x: torch.functional[name](x, everything)),
    )


def _naive_prelu(direction: str, xp: Any) -> Callable:
    forward, backward = reference.NAIVE["prelu"]
    if direction == "forward":
        return lambda x, alpha: forward(x, alpha, xp=xp)

    def prelu_backward(dy, x, alpha):
        # NAIVE gives dalpha per element; the user then sums it to alpha's shape.
        dx, contribution = backward(dy, x, alpha, xp=xp)
        return dx, reference.sum_to_shape(contribution, alpha.shape)

    return prelu_backward


def prelu_form(per_channel: bool = True) -> Form:
    """PReLU with a slope per channel (alpha (64, 1) against x (N, 64, S)) or one slope (alpha of shape ())."""
    alpha_shape = (CHANNELS, 1) if per_channel else ()
    return Form(
        form="prelu",
        inputs=("x", "alpha"),
        input_shapes=lambda size: None if _nchw(size) is None else {"x": _nchw(size), "alpha": alpha_shape},
        output_shape=lambda shapes: shapes["x"],
        fastact=_public("prelu"),
        takes_out=("forward", "backward"),
        naive=_naive_prelu,
        torch=lambda torch, direction: torch.prelu(direction),
        functional=lambda torch: lambda x, alpha: torch.torch.nn.functional.prelu(x, alpha.reshape(-1)),
    )


PRELU = prelu_form(per_channel=True)


def _fused_naive(op: str, direction: str, xp: Any, composite: Callable | None, **options: Any) -> Callable | None:
    """NAIVE[op] where fastact.reference has it, else ``composite`` built on NAIVE[activation]."""
    pair = reference.NAIVE.get(op)
    if pair is not None:
        function = pair[0] if direction == "forward" else pair[1]
        return lambda *arrays: function(*arrays, FUSED_ACTIVATION, xp=xp, **options)
    activation = _naive_activation(FUSED_ACTIVATION, direction, xp)
    return None if activation is None or composite is None else composite(activation)


def _naive_bias_act(direction: str, xp: Any) -> Callable | None:
    def composite(activation):
        if direction == "forward":
            return lambda x, bias: activation(x + bias[:, None])

        def backward(dy, x, bias):
            gradient = activation(dy, x + bias[:, None])
            return gradient, gradient.sum(axis=(0, 2))

        return backward

    return _fused_naive("bias_act", direction, xp, composite)


def _naive_dense(direction: str, xp: Any) -> Callable | None:
    def composite(activation):
        if direction == "forward":
            return lambda x, w, b: activation(x @ w + b)

        def backward(dy, x, w, b):
            gradient = activation(dy, x @ w + b)  # the backward takes the pre-activation as "x"
            return gradient @ w.T, x.T @ gradient, gradient.sum(axis=0)

        return backward

    return _fused_naive("dense_bias_act", direction, xp, composite)


def _fused_public(name: str, **options: Any) -> Callable[[str], Callable]:
    def call(direction: str) -> Callable:
        function = getattr(fastact, name if direction == "forward" else f"{name}_backward")
        return lambda *arrays, **out: function(*arrays, FUSED_ACTIVATION, **options, **out)

    return call


def _torch_fused(combine: Callable, kernel: str) -> Callable:
    """PyTorch's pre-activation ``combine(torch, x, w, b)`` then its functional ReLU, as a graph (both allocate)."""

    def build(torch, direction):
        activation, params = torch.functional[FUSED_ACTIVATION], _defaults(FUSED_ACTIVATION)
        forward = lambda *tensors: activation(combine(torch.torch, *tensors), params)  # noqa: E731
        return torch.graph(forward, direction, ("x", "w", "b"), kernel)

    return build


BIAS_ACT = Form(
    form="bias_act",
    inputs=("x", "bias"),
    input_shapes=lambda size: None if _nchw(size) is None else {"x": _nchw(size), "bias": (CHANNELS,)},
    output_shape=lambda shapes: shapes["x"],
    fastact=_fused_public("bias_act"),
    takes_out=("forward",),
    naive=_naive_bias_act,
    torch=lambda torch, direction: torch.bias_act(FUSED_ACTIVATION, direction),
    functional=lambda torch: lambda x, bias: torch.functional[FUSED_ACTIVATION](x + bias.reshape(-1, 1), {}),
)

DENSE = Form(
    form="matmul",
    inputs=("x", "w", "b"),
    input_shapes=lambda size: None
    if _dense(size) is None
    else {"x": _dense(size), "w": (DENSE_FEATURES, DENSE_FEATURES), "b": (DENSE_FEATURES,)},
    output_shape=lambda shapes: (shapes["x"][0], shapes["w"][1]),
    fastact=_fused_public("dense_bias_act"),
    takes_out=(),
    naive=_naive_dense,
    torch=_torch_fused(lambda torch, x, w, b: torch.addmm(b, x, w), "torch.addmm(b, x, w) + F.relu"),
    flops=lambda shapes: 2 * shapes["x"][0] * shapes["x"][1] * shapes["w"][1],
)

CONV = Form(
    form="matmul",
    inputs=("x", "w", "b"),
    input_shapes=lambda size: None
    if _conv(size) is None
    else {
        "x": _conv(size),
        "w": (CONV_CHANNELS, CONV_CHANNELS, CONV_KERNEL, CONV_KERNEL),
        "b": (CONV_CHANNELS,),
    },
    output_shape=lambda shapes: (shapes["x"][0], shapes["w"][0], *shapes["x"][2:]),
    fastact=_fused_public("conv2d_bias_act", padding=CONV_PADDING),
    takes_out=(),
    # A NumPy conv2d is not one expression a user writes: only NAIVE's, if the reference has one.
    naive=lambda direction, xp: _fused_naive("conv2d_bias_act", direction, xp, None, padding=CONV_PADDING),
    torch=_torch_fused(
        lambda torch, x, w, b: torch.nn.functional.conv2d(x, w, b, padding=CONV_PADDING), "F.conv2d(x, w, b) + F.relu"
    ),
    flops=lambda shapes: 2 * math.prod(shapes["x"]) * shapes["w"][0] * CONV_KERNEL * CONV_KERNEL,
)

_FUSED_FORMS = {"bias_act": BIAS_ACT, "dense_bias_act": DENSE, "conv2d_bias_act": CONV}


# --------------------------------------------------------------------------- #
# The catalogue.
# --------------------------------------------------------------------------- #
def available_ops() -> dict[str, Form]:
    """Every op this fastact offers: registry activations, then the fused calls it has."""
    ops = {}
    for spec in REGISTRY.values():
        if spec.form in ("elementwise", "rowwise"):  # rowwise: softmax, log_softmax along the last axis (rows of 1024)
            ops[spec.name] = elementwise_form(spec.name)
        elif spec.name == "prelu":
            ops["prelu"] = PRELU
    for name, form in _FUSED_FORMS.items():
        if hasattr(fastact, name) and hasattr(fastact, f"{name}_backward"):
            ops[name] = form
    return ops


# Parameter variants beyond the defaults (bench/bench_vs_torch.py): op key -> (the op it varies, form).
VARIANTS: dict[str, tuple[str, Callable[[], Form]]] = {
    "gelu_tanh": ("gelu", lambda: elementwise_form("gelu", {"approximate": True})),
    "prelu_scalar": ("prelu", lambda: prelu_form(per_channel=False)),
}


def ops_with_variants() -> dict[str, Form]:
    """:func:`available_ops` with each of :data:`VARIANTS` right after the op it varies."""
    ops: dict[str, Form] = {}
    for name, form in available_ops().items():
        ops[name] = form
        for variant, (base, make) in VARIANTS.items():
            if base == name:
                ops[variant] = make()
    return ops


class ArrayPool:
    """The arrays of one (dtype, size), shared by every workload at it.

    Inputs are read and never written by any implementation (fastact and the
    baselines leave their inputs alone), so each op reuses them instead of
    drawing fresh random numbers; ``out`` buffers are overwritten by every
    op, which is all they are for.  Input set ``index`` holds its own arrays.
    """

    def __init__(self, device: Any) -> None:
        self.device = device
        self.arrays: dict[tuple, Any] = {}

    def get(self, name: str, shape: tuple, dtype: np.dtype, index: int) -> Any:
        """Array ``name`` of input set ``index``, as a contiguous array of ``shape``."""
        size = math.prod(shape)
        # Keyed by element count, not shape: ops that view the same data in other shapes share it.
        key = (name, size, dtype.name, index)
        if key not in self.arrays:
            self.arrays[key] = self.device.empty((size,), dtype) if name == "out" else self._random(name, size, dtype, index)
        return self.arrays[key].reshape(shape)

    def _random(self, name: str, size: int, dtype: np.dtype, index: int) -> Any:
        # Normal * 3: both sides of every kink (0, 6, +-3) are hit, so no branch is predictable.
        rng = np.random.default_rng([index, *name.encode()])
        return self.device.asarray((rng.standard_normal(size, dtype=np.float32) * 3.0).astype(dtype))

    def clear(self) -> None:
        self.arrays.clear()


def build(op: str, form: Form, direction: str, dtype: np.dtype, size: int, pool: ArrayPool, torch: Any) -> Workload | None:
    """The workload for ``op``, or None where ``size`` does not fit the op's shapes."""
    shapes = form.input_shapes(size)
    if shapes is None:
        return None
    shapes = {**shapes, "y": form.output_shape(shapes)}
    inputs = form.inputs if direction == "forward" else ("dy", *form.inputs)
    fastact_call = form.fastact(direction)
    takes_out = direction in form.takes_out
    torch_impl = None if torch is None else form.torch(torch, direction)
    if torch_impl is not None and torch_impl.mode == "out" and not takes_out:
        raise ValueError(f"{op} {direction}: PyTorch writes into out= but fastact's call takes none")

    def make_args(index: int) -> dict:
        args = {name: pool.get(name, shapes["y" if name == "dy" else name], dtype, index) for name in inputs}
        if takes_out:
            args["out"] = pool.get("out", shapes["x"], dtype, index)
        return args

    def operands(args: dict) -> list:
        return [args[name] for name in inputs]

    if takes_out:
        implementations = {
            "fastact": lambda args: fastact_call(*operands(args), out=args["out"]),
            "fastact_new": lambda args: fastact_call(*operands(args)),
        }
    else:
        implementations = {"fastact": lambda args: fastact_call(*operands(args))}
    naive = form.naive(direction, pool.device.xp)
    if naive is not None:
        implementations["naive"] = lambda args: naive(*operands(args))
    prepare = {}
    if torch_impl is not None:
        prepare["torch"], implementations["torch"] = torch_impl.prepare, torch_impl.call
    flops = None if form.flops is None else form.flops(shapes) * (1 if direction == "forward" else 2)
    return Workload(
        op=op,
        direction=direction,
        form=form.form,
        dtype=dtype,
        size=size,
        shapes=shapes,
        make_args=make_args,
        implementations=implementations,
        prepare=prepare,
        flops=flops,
        roofline=None if form.flops else ("copy" if direction == "forward" else "add"),
        torch_mode=None if torch_impl is None else torch_impl.mode,
        torch_kernel=None if torch_impl is None else torch_impl.kernel,
        # PyTorch allocating: compare with fastact allocating too.
        matching="fastact_new" if takes_out and torch_impl is not None and torch_impl.mode == "alloc" else "fastact",
    )


# The same-function check runs on inputs of this many elements (every form's shapes fit it).
CHECK_SIZE = 1 << 14


def check_torch(op: str, form: Form, direction: str, dtype: np.dtype, device: Any, torch: Any) -> dict | None:
    """Whether PyTorch's call computes fastact's function, with fastact's parameters, for this op.

    Runs the ``matching`` fastact call and PyTorch's call on one input set of
    :data:`CHECK_SIZE` elements (drawn as the benchmark draws them) and
    compares the results (:func:`.torch_baselines.compare`); None where there
    is no PyTorch baseline.  Call it with the backend under test selected.
    """
    from .torch_baselines import compare

    if torch is None:
        return None
    workload = build(op, form, direction, dtype, CHECK_SIZE, ArrayPool(device), torch)
    if workload is None or "torch" not in workload.implementations:
        return None
    args = workload.make_args(0)
    workload.prepare["torch"](args)
    with np.errstate(all="ignore"):
        ours = workload.implementations[workload.matching](args)
        # In mode "out" both write args["out"]: copy fastact's result before PyTorch overwrites it.
        ours = [torch.to_host(a) for a in (ours if isinstance(ours, tuple) else (ours,))]
        theirs = workload.implementations["torch"](args)
    return {**compare(torch, ours if len(ours) > 1 else ours[0], theirs, dtype.name), "size": CHECK_SIZE}


def roofline(kind: str, dtype: np.dtype, size: int, pool: ArrayPool) -> Workload:
    """The copy (forward) or add (backward) roofline on ``size`` elements: same bytes as the activation."""
    shape = _rows(size)
    direction = "forward" if kind == "copy" else "backward"
    inputs = ("x",) if kind == "copy" else ("dy", "x")

    def make_args(index: int) -> dict:
        return {name: pool.get(name, shape, dtype, index) for name in (*inputs, "out")}

    device = pool.device
    if kind == "copy":
        call = lambda args: device.copy(args["out"], args["x"])  # noqa: E731
    else:
        call = lambda args: device.add(args["out"], args["dy"], args["x"])  # noqa: E731
    return Workload(kind, direction, kind, dtype, size, {"x": shape, "y": shape}, make_args, {kind: call})
