"""The registry of activations: one declaration per activation, used everywhere.

Each activation is declared once (in :mod:`fastact.activations`) as an
:class:`ActivationSpec`: its public name, its parameters with defaults and
validation, its formula and derivative for the docs, and which backend math
("kernel") computes it with which kernel parameters.  From that one
declaration come the public functions' docstrings and validation
(``fastact/functions.py``, checked against the declarations by
``tests/test_functions.py``), :class:`fastact.Activation`, and the kernel
names every backend implements (:func:`kernel_names`, checked against each
backend's tables by ``tests/test_registry_coverage.py``).

This module imports nothing from fastact: the dispatcher and the backends
depend on it, never the other way round.

Several public activations share one kernel: ``leaky_relu``, ``relu6`` and
``thresholded_relu`` are all the ``relu`` kernel with other parameters, as
PyTorch's one ``threshold`` kernel serves several ops.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Param", "ActivationSpec", "REGISTRY", "register", "get_spec", "kernel_names"]

_NO_DEFAULT = object()
# How many distinct parameter values each activation remembers (ActivationSpec.kernel_params_of).
_KERNEL_PARAMS_CACHE_SIZE = 1024


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


def axis_or_axes(activation: str, name: str, value: Any) -> int | tuple[int, ...]:
    """An int, or a non-empty tuple (or list) of ints whose axes together form one row (softmax)."""
    several = isinstance(value, (tuple, list))
    items = tuple(value) if several else (value,)
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items):
        raise TypeError(f"{activation}: {name} must be an int or a tuple of ints, got {type(value).__name__} {value!r}")
    if not items:
        raise ValueError(f"{activation}: {name} must be an int or a non-empty tuple of ints, got {value!r}")
    axes = tuple(int(v) for v in items)
    return axes if several else axes[0]


def normalize_axis(activation: str, axis: int, ndim: int) -> int:
    """``axis`` as a non-negative axis of an array with ``ndim`` dims (a 0-d array counts as one element)."""
    size = max(ndim, 1)
    if not -size <= axis < size:
        raise ValueError(
            f"{activation}: axis {axis} is out of range for x with ndim {ndim}; accepted: {-size} to {size - 1}"
        )
    return axis % size


def normalize_axes(activation: str, axis: int | tuple[int, ...], ndim: int) -> int | tuple[int, ...]:
    """An axis as :func:`normalize_axis`; a tuple of axes as sorted non-negative axes, each named once.

    A tuple of one axis becomes that axis (an int), so the backends only ever
    see an int or a tuple of at least two axes.
    """
    if type(axis) is not tuple:
        return normalize_axis(activation, axis, ndim)
    axes = [normalize_axis(activation, a, ndim) for a in axis]
    if len(set(axes)) != len(axes):
        raise ValueError(
            f"{activation}: axis {axis} names the same axis of x (ndim {ndim}) more than once; "
            f"each axis may appear once"
        )
    return axes[0] if len(axes) == 1 else tuple(sorted(axes))


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
    ``fastact/backends/numpy/math.py`` and a CUDA functor in
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
    # "elementwise"; "rowwise": with an ``axis`` parameter along which whole rows are
    # reduced (softmax), the one place a kernel is declared row-wise; "prelu": an
    # array param and two results.
    form: str = "elementwise"
    notes: str = ""
    # For kernels whose derivative the output determines: kernel params -> True where
    # derivative(forward(x)) == derivative(x) for every x, bit for bit, NaN included (the
    # backward may then read y instead of x, so a forward may overwrite x: fastact.torch's
    # fused layers on CPU do).  None: never (the backward needs x).
    derivative_from_output: Callable[..., bool] | None = None
    # kernel_params_of's memory: (values, their types) -> kernel params.
    _kernel_params_cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def validate(self, *values: Any) -> dict:
        """Validate public parameter values (in declaration order) -> dict."""
        return {p.name: p.check(self.name, p.name, v) for p, v in zip(self.params, values)}

    def kernel_params_of(self, *values: Any) -> dict:
        """``kernel_params(**validate(*values))``, remembered for values seen before.

        The public functions call this on every call; validating three
        parameters and building two dicts cost about 4 us, a call on a small
        array about as much again.  The key holds each value's type too, since
        ``0.0 == False`` but False is refused.  The dict returned is shared:
        callers must not change it.
        """
        key = (values, tuple(map(type, values)))
        cache = self._kernel_params_cache
        try:
            return cache[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value (a list): the validator says what is wrong
            return self.kernel_params(**self.validate(*values))
        result = self.kernel_params(**self.validate(*values))
        # Tuples (softmax's axes) are not remembered: (True, 2) == (1, 2), and the key holds
        # only the tuple's own type, so a remembered (1, 2) would let the refused True through.
        # When full, the oldest value goes (not the newest stays out): the kernel backends' fast
        # path recognises the dict by identity, so a value that was never remembered would get a
        # new dict on every call and never take it.
        if tuple not in key[1]:
            if len(cache) >= _KERNEL_PARAMS_CACHE_SIZE:
                del cache[next(iter(cache))]
            cache[key] = result
        return result

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


def kernel_names(*forms: str) -> tuple[str, ...]:
    """The distinct kernel names of the registered activations of ``forms`` (every form when none), in declaration order."""
    return tuple(dict.fromkeys(spec.kernel for spec in REGISTRY.values() if not forms or spec.form in forms))
