"""fastact's PyTorch ops: how one is declared, registered and called.

Every op is a ``torch.library.custom_op`` in the namespace ``fastact``
(``torch.ops.fastact.leaky_relu``, ...), with a fake implementation (shapes
only, for ``torch.compile`` and ``torch.export``) and, for the forward ops,
an autograd rule whose backward calls fastact's backward op, itself a custom
op: a compiled graph sees both as opaque nodes, never a graph break.

An eager call on plain tensors skips torch's dispatcher: the dispatcher's
Python round trip for a custom op costs tens of microseconds, several times
the whole activation on a small tensor (bench/bench_torch_ops.py).  Such a
call runs the op's ``compute`` directly, through :class:`_Eager` (an
``autograd.Function`` built on the same two autograd functions the custom
op registers) when autograd needs it.  Anything else (``torch.compile``,
``torch.export``, fake or functionalized tensors, an active dispatch or
torch-function mode, functorch transforms) goes through the custom op.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

_NAMESPACE = "fastact"

_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled
_is_compiling = torch.compiler.is_compiling
_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


def plain(x: Any) -> bool:
    """True when ``x`` is an ordinary CPU or CUDA tensor in plain eager mode, where the dispatcher can be skipped.

    (A meta tensor takes the dispatcher, which answers with the op's fake.)
    """
    # is_compiling first: torch.compile folds it to True, and cannot trace the C calls after it.
    return (
        not _is_compiling()
        and type(x) in _PLAIN_TYPES
        and (x.is_cpu or x.is_cuda)
        and not _dispatch_modes()
        and not _function_modes()
        and not _functorch_wrapped(x)
    )


def needs_grad(args: tuple) -> bool:
    """True when autograd records this call (grad mode on and a tensor argument requires grad)."""
    if not torch.is_grad_enabled():
        return False
    return any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)


class Op:
    """One fastact op: its schema, its computation on real tensors, its fake, its autograd rule.

    ``compute(*args)`` runs fastact on the tensors (through the bridge, zero
    copy) and returns torch tensors; ``fake(*args)`` returns empty tensors of
    the results' shapes, dtypes and strides.  ``setup_context(ctx, inputs,
    output)`` and ``backward(ctx, *grads)`` are torch's ``register_autograd``
    pair; ops without them (the backward ops) are not differentiable.
    ``eager(*args)``, where given, replaces ``compute`` on the eager path: the
    same values, with the result's memory allocated wherever is cheapest
    (``compute`` must lay results out exactly as ``fake`` does; eager calls
    have no fake to agree with).
    """

    def __init__(self, name: str, schema: str, compute: Callable, fake: Callable,
                 setup_context: Callable | None = None, backward: Callable | None = None,
                 eager: Callable | None = None) -> None:
        self.name = name
        self.schema = schema
        self.compute = compute
        self.eager_compute = eager or compute
        self.setup_context = setup_context
        self.backward = backward
        self.custom = torch.library.custom_op(f"{_NAMESPACE}::{name}", compute, mutates_args=(), schema=schema)
        self.custom.register_fake(fake)
        if backward is not None:
            self.custom.register_autograd(backward, setup_context=setup_context)
        self.overload = getattr(getattr(torch.ops, _NAMESPACE), name).default

    def __call__(self, *args: Any) -> Any:
        """Run the op; ``args`` follow its schema (normalized values where it goes through the dispatcher)."""
        if plain(args[0]):
            return self.eager(*args)
        return self.overload(*args)

    def eager(self, *args: Any) -> Any:
        """The call without the dispatcher (the caller checked :func:`plain`)."""
        if self.backward is not None and needs_grad(args):
            return _Eager.apply(self, *args)
        return self.eager_compute(*args)

    def __repr__(self) -> str:
        return f"<fastact op {self.name}{self.schema}>"


class _Eager(torch.autograd.Function):
    """Autograd for eager calls: the same setup_context/backward pair the custom op registers.

    Written in the form whose ``forward`` takes ``ctx`` and calls setup_context itself: with a
    separate ``setup_context`` staticmethod, ``Function.apply`` binds the arguments through
    ``inspect.signature`` on every call (about 100 us on the 2-core dev VM, bench/bench_torch_ops.py).
    """

    @staticmethod
    def forward(ctx: Any, op: Op, *args: Any) -> Any:
        output = op.eager_compute(*args)
        ctx.fastact_op = op
        op.setup_context(ctx, args, output)
        return output

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple:
        return (None, *ctx.fastact_op.backward(ctx, *grads))


# _Eager.apply without Function.apply's Python part (its unwrapping of dead functorch wrappers over
# every argument: ~3 us of a ~20 us small autograd call), for callers that checked every tensor
# argument with plain(): none is a functorch wrapper, dead or alive.
eager_apply = torch._C._FunctionBase.__dict__["apply"].__get__(None, _Eager)
