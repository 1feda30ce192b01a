"""The registry of activations: one declaration per activation, used everywhere.

Each activation is declared once (in :mod:`fastact.activations`) as an
:class:`ActivationSpec`: its public name, its parameters with defaults and
validation, its formula and derivative for the docs, and which backend math
("kernel") computes it with which kernel parameters.  From that one
declaration this module builds

* the public functions ``fastact.NAME`` and ``fastact.NAME_backward``
  (real Python functions with real signatures, so ``help()`` and IDEs show
  the parameters, and binding stays as cheap as a plain call);
* :class:`Activation`, the public face of the registry used by the fused
  calls, the benchmark and the docs.

Several public activations share one kernel: ``leaky_relu``, ``relu6`` and
``thresholded_relu`` are all the ``relu`` kernel with other parameters, as
PyTorch's one ``threshold`` kernel serves several ops.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Param", "ActivationSpec", "Activation", "REGISTRY", "register", "get_spec"]

_NO_DEFAULT = object()


# --------------------------------------------------------------------------- #
# Parameter validators.  Each takes (activation name, param name, value) and
# returns the normalized value or raises TypeError/ValueError saying what was
# wrong and what is accepted.
# --------------------------------------------------------------------------- #
def real(activation: str, name: str, value: Any) -> float:
    """A finite real number: Python or NumPy int/float (bool and complex refused)."""
    if type(value) is float or type(value) is int:  # the common case, without the ABC check
        value = float(value)
        if math.isfinite(value):
            return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{activation}: {name} must be a real number (Python or NumPy int/float), "
            f"got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{activation}: {name} must be finite, got {value!r}")
    return value


def optional_nonnegative(activation: str, name: str, value: Any) -> float | None:
    """None, or a finite real number >= 0."""
    if value is None:
        return None
    value = real(activation, name, value)
    if value < 0:
        raise ValueError(f"{activation}: {name} must be >= 0 or None, got {value!r}")
    return value


def boolean(activation: str, name: str, value: Any) -> bool:
    """True or False (Python or NumPy bool)."""
    if not isinstance(value, (bool,)) and type(value).__name__ != "bool_":
        raise TypeError(f"{activation}: {name} must be True or False, got {value!r}")
    return bool(value)


def integer(activation: str, name: str, value: Any) -> int:
    """A Python or NumPy integer (an axis)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{activation}: {name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def normalize_axis(activation: str, axis: int, ndim: int) -> int:
    """``axis`` as a non-negative axis of an array with ``ndim`` dims (a 0-d array counts as one element)."""
    size = max(ndim, 1)
    if not -size <= axis < size:
        raise ValueError(
            f"{activation}: axis {axis} is out of range for x with ndim {ndim}; accepted: {-size} to {size - 1}"
        )
    return axis % size


def array(activation: str, name: str, value: Any) -> Any:
    """An array (or array-like) operand; checked by the dispatcher with the other arrays."""
    if value is None:
        raise TypeError(f"{activation}: {name} must be an array, got None")
    return value


@dataclass(frozen=True)
class Param:
    """One parameter of an activation: name, default, validator, one-line doc."""

    name: str
    default: Any
    check: Callable[[str, str, Any], Any]
    doc: str

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


def required(name: str, check: Callable, doc: str) -> Param:
    """A parameter without a default (PReLU's ``alpha``)."""
    return Param(name, _NO_DEFAULT, check, doc)


@dataclass(frozen=True)
class ActivationSpec:
    """Everything fastact knows about one activation, declared once.

    ``kernel`` names the backend math (a NumPy function pair in
    ``fastact/backends/numpy_math.py`` and a CUDA functor in
    ``cuda/activations.cuh``); ``kernel_params`` maps the validated public
    parameters to that kernel's parameters.
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    formula: str
    derivative: str
    kernel: str
    kernel_params: Callable[..., dict]
    example: str
    aliases: tuple[str, ...] = ()
    # "elementwise": generated functions; "rowwise": generated too, with an ``axis``
    # parameter along which whole rows are reduced (softmax); "prelu": hand-written
    # (array param, two results).
    form: str = "elementwise"
    notes: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def validate(self, *values: Any) -> dict:
        """Validate public parameter values (in declaration order) -> dict."""
        return {p.name: p.check(self.name, p.name, v) for p, v in zip(self.params, values)}

    def bind(self, args: tuple = (), kwargs: dict | None = None) -> dict:
        """Bind positional/keyword values like the public function does, with defaults."""
        kwargs = dict(kwargs or {})
        if len(args) > len(self.params):
            raise TypeError(
                f"{self.name} takes {len(self.params)} parameter(s) "
                f"({', '.join(self.param_names) or 'none'}), got {len(args)}"
            )
        values = list(args)
        for p in self.params[len(args):]:
            if p.name in kwargs:
                values.append(kwargs.pop(p.name))
            elif p.required:
                raise TypeError(f"{self.name}: missing required parameter {p.name!r}")
            else:
                values.append(p.default)
        if kwargs:
            raise TypeError(
                f"{self.name}: unknown parameter(s) {sorted(kwargs)}; "
                f"accepted: {list(self.param_names) or 'none'}"
            )
        return self.validate(*values)

    def docstring(self, direction: str) -> str:
        """The public function's docstring, built from this declaration."""
        sig = ", ".join(
            p.name if p.required else f"{p.name}={p.default!r}" for p in self.params
        )
        param_lines = "\n".join(f"    {p.name}: {p.doc}" for p in self.params) or "    (none)"
        if direction == "forward":
            head = f"{self.summary}\n\n    y = {self.formula}\n"
            call = f"{self.name}(x{', ' + sig if sig else ''}, *, out=None)"
            ret = "y, an array of x's shape, dtype and kind (NumPy in, NumPy out; CuPy in, CuPy out)."
        else:
            head = (
                f"Backward of {self.name}: dx = dy * {self.name}'(x), where x is the forward input.\n\n"
                f"    {self.name}'(x) = {self.derivative}\n"
            )
            call = f"{self.name}_backward(dy, x{', ' + sig if sig else ''}, *, out=None)"
            ret = "dx, an array of x's shape, dtype and kind."
        return (
            f"{head}\n{call}\n\nParameters:\n{param_lines}\n"
            f"    out: optional array to write the result into (same shape, dtype and kind as\n"
            f"         the result; may be an input itself for in-place use).\n\n"
            f"Returns {ret}\n"
            + (f"\n{self.notes}\n" if self.notes else "")
            + f"\nExample::\n\n{self.example}\n"
        )


REGISTRY: dict[str, ActivationSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: ActivationSpec) -> ActivationSpec:
    if spec.name in REGISTRY or spec.name in _ALIASES:
        raise RuntimeError(f"activation {spec.name!r} declared twice")
    REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def get_spec(name: str) -> ActivationSpec:
    """The declaration of activation ``name`` (aliases accepted); ValueError if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"an activation name must be a str, got {type(name).__name__}")
    spec = REGISTRY.get(_ALIASES.get(name, name))
    if spec is None:
        raise ValueError(f"unknown activation {name!r}; known: {sorted([*REGISTRY, *_ALIASES])}")
    return spec


@dataclass(frozen=True)
class Activation:
    """An activation with its parameters, validated: the registry's public face.

    ``Activation("leaky_relu", alpha=0.05)`` names Leaky ReLU with slope 0.05;
    ``Activation("relu")`` takes the defaults.  Fused calls accept either a
    name or an ``Activation``.  Calling it applies the activation::

        >>> act = fastact.Activation("leaky_relu", alpha=0.05)
        >>> act(np.array([-2.0, 3.0]))
        array([-0.1,  3. ])
        >>> act.backward(np.ones(2), np.array([-2.0, 3.0]))
        array([0.05, 1.  ])
    """

    name: str
    params: dict = field(default_factory=dict)

    def __init__(self, name: str, **params: Any) -> None:
        spec = get_spec(name)
        object.__setattr__(self, "name", spec.name)
        object.__setattr__(self, "params", spec.bind((), params))

    @classmethod
    def coerce(cls, activation: "str | Activation") -> "Activation":
        """Accept a name or an Activation (what the fused calls take)."""
        if isinstance(activation, Activation):
            return activation
        if isinstance(activation, str):
            return cls(activation)
        raise TypeError(
            f"activation must be a name (e.g. 'relu') or fastact.Activation, got {type(activation).__name__}"
        )

    @property
    def spec(self) -> ActivationSpec:
        return REGISTRY[self.name]

    @property
    def kernel(self) -> str:
        return self.spec.kernel

    @property
    def kernel_params(self) -> dict:
        return self.spec.kernel_params(**self.params)

    def __call__(self, x: Any, *, out: Any = None) -> Any:
        from . import _dispatch

        return _dispatch.forward(self.spec, self.kernel_params, x, out)

    def backward(self, dy: Any, x: Any, *, out: Any = None) -> Any:
        from . import _dispatch

        return _dispatch.backward(self.spec, self.kernel_params, dy, x, out)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Activation({self.name!r}{args})"

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))


# --------------------------------------------------------------------------- #
# Public function generation.
# --------------------------------------------------------------------------- #
_TEMPLATE = '''
def {name}({head}{params}*, out=None):
    return _call(_spec, _spec.kernel_params(**_spec.validate({values})), {arrays}, out)
'''


def make_functions(spec: ActivationSpec, forward: Callable, backward: Callable) -> tuple[Callable, Callable]:
    """Build ``NAME`` and ``NAME_backward`` for an elementwise spec.

    Generated with exec (as dataclasses and attrs do) so that each function has
    the true signature ``(x, <params>, *, out=None)`` and binding costs no more
    than a plain Python call: host overhead matters for small GPU tensors.
    """
    defaults = {f"_default_{p.name}": p.default for p in spec.params}
    params = "".join(f"{p.name}=_default_{p.name}, " for p in spec.params)
    values = ", ".join(p.name for p in spec.params)
    functions = []
    for direction, call, head, arrays, fname in (
        ("forward", forward, "x, ", "x", spec.name),
        ("backward", backward, "dy, x, ", "dy, x", f"{spec.name}_backward"),
    ):
        namespace = {"_spec": spec, "_call": call, **defaults}
        exec(_TEMPLATE.format(name=fname, head=head, params=params, values=values, arrays=arrays), namespace)
        function = namespace[fname]
        function.__doc__ = spec.docstring(direction)
        function.__module__ = "fastact"
        functions.append(function)
    return functions[0], functions[1]
