"""Layers made of fastact's fused calls, forward and backward: dense and conv2d with bias and activation.

A hidden layer computes ``y = act(layer(x) + b)`` with one fused call
(``fastact.dense_bias_act`` / ``fastact.conv2d_bias_act``) and its gradient with
the matching ``*_backward`` call, which recomputes the pre-activation instead of
storing it.  PReLU's slope is an array the network learns, which the fused calls
do not take: there the layer is fused with ``"linear"`` and followed by
``fastact.prelu`` (backward: ``fastact.prelu_backward``, which also gives the
slope's gradient).  Arrays stay whatever kind they are (NumPy or CuPy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import fastact
from fastact import Activation
from fastact._registry import REGISTRY, get_spec

LINEAR = Activation("linear")
# He et al. 2015 ("Delving deep into rectifiers") start PReLU's slopes at 0.25.
PRELU_INITIAL_SLOPE = 0.25


@dataclass(frozen=True)
class Nonlinearity:
    """A hidden layer's activation: an elementwise registry activation fused into the layer, or PReLU.

    ``label`` names it in reports; ``activation`` is what the fused call applies
    (``linear`` for PReLU, whose learned slopes ``prelu_initial_slope`` starts every unit at).
    """

    label: str
    activation: Activation
    prelu_initial_slope: float | None = None

    @property
    def learned(self) -> bool:
        return self.prelu_initial_slope is not None


def fusable_names() -> list[str]:
    """Registry names a hidden layer may use: every elementwise activation, and prelu."""
    return sorted(name for name, spec in REGISTRY.items() if spec.form in ("elementwise", "prelu"))


def parse_nonlinearity(text: str) -> Nonlinearity:
    """``NAME`` or ``NAME:VALUE,...`` / ``NAME:param=VALUE,...`` as a :class:`Nonlinearity`.

    Parameters are the registry's (bare values in its declared order); an omitted
    one takes the registry's default.  ``prelu:VALUE`` sets the slopes' initial value.

        >>> parse_nonlinearity("leaky_relu:0.1").activation
        Activation('leaky_relu', alpha=0.1)
        >>> parse_nonlinearity("prelu").prelu_initial_slope
        0.25
    """
    name, _, rest = text.strip().partition(":")
    try:
        spec = get_spec(name)
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"--activations: unknown activation {name!r}; accepted: {fusable_names()}") from error
    if spec.form not in ("elementwise", "prelu"):
        raise ValueError(f"--activations: {name!r} is not an elementwise activation; accepted: {fusable_names()}")
    given = _parse_params(text, rest, spec.param_names)
    if spec.form == "prelu":  # its only parameter, alpha, is the learned slopes' initial value
        slope = given.get("alpha", PRELU_INITIAL_SLOPE)
        if not isinstance(slope, float) or not math.isfinite(slope):
            raise ValueError(f"--activations {text!r}: prelu's initial slope must be a finite number, got {slope!r}")
        return Nonlinearity("prelu" if not given else f"prelu(init={slope:g})", LINEAR, slope)
    try:
        activation = Activation(spec.name, **given)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--activations {text!r}: {error}") from error
    label = spec.name + ("(" + ", ".join(f"{k}={_show(v)}" for k, v in given.items()) + ")" if given else "")
    return Nonlinearity(label, activation)


def _parse_params(text: str, rest: str, names: tuple[str, ...]) -> dict:
    """``0.1`` / ``alpha=0.1`` items, comma-separated, as {param: value}."""
    params: dict = {}
    for position, item in enumerate(part for part in rest.split(",") if part.strip()):
        key, equals, value = item.partition("=")
        if not equals:
            if position >= len(names):
                raise ValueError(f"--activations {text!r}: too many values; {names[0] if names else 'it'} takes {list(names)}")
            key, value = names[position], item
        key = key.strip()
        if key not in names:
            raise ValueError(f"--activations {text!r}: no parameter {key!r}; accepted: {list(names)}")
        params[key] = _value(text, value.strip())
    return params


def _value(text: str, value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--activations {text!r}: {value!r} is not a number, true/false or none") from None


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class _Layer:
    """Parameters ``w``, ``b`` (and ``alpha`` for PReLU) and the forward/backward around one fused call."""

    def __init__(self, w: Any, b: Any, nonlinearity: Nonlinearity, alpha: Any = None) -> None:
        self.nonlinearity = nonlinearity
        self.params = {"w": w, "b": b}
        if nonlinearity.learned:
            self.params["alpha"] = alpha

    # The fused call and its backward, per layer kind.
    def _fused(self, x: Any, activation: Activation) -> Any:
        raise NotImplementedError

    def _fused_backward(self, dy: Any, x: Any, activation: Activation) -> tuple[Any, Any, Any]:
        raise NotImplementedError

    def forward(self, x: Any) -> tuple[Any, tuple]:
        """y and what backward needs (x; and the pre-activation for PReLU)."""
        if not self.nonlinearity.learned:
            return self._fused(x, self.nonlinearity.activation), (x,)
        z = self._fused(x, LINEAR)
        return fastact.prelu(z, self.params["alpha"]), (x, z)

    def backward(self, dy: Any, cache: tuple) -> tuple[Any, dict]:
        """dx and the gradients of the parameters, by name."""
        x = cache[0]
        if not self.nonlinearity.learned:
            dx, dw, db = self._fused_backward(dy, x, self.nonlinearity.activation)
            return dx, {"w": dw, "b": db}
        dz, dalpha = fastact.prelu_backward(dy, cache[1], self.params["alpha"])
        dx, dw, db = self._fused_backward(dz, x, LINEAR)
        return dx, {"w": dw, "b": db, "alpha": dalpha}

    def preactivation(self, x: Any) -> tuple[Any, Any]:
        """(z, y): the pre-activation ``layer(x) + b`` and the output, for measuring dead units."""
        z = self._fused(x, LINEAR)
        if self.nonlinearity.learned:
            return z, fastact.prelu(z, self.params["alpha"])
        return z, self.nonlinearity.activation(z)


class Dense(_Layer):
    """``act(x @ w + b)``; x ``(N, in)``, w ``(in, out)``; PReLU slopes ``(out,)``, one per unit."""

    unit_axes = (0,)  # the axes a unit's pre-activation varies over: the examples

    def _fused(self, x: Any, activation: Activation) -> Any:
        return fastact.dense_bias_act(x, self.params["w"], self.params["b"], activation)

    def _fused_backward(self, dy: Any, x: Any, activation: Activation) -> tuple[Any, Any, Any]:
        return fastact.dense_bias_act_backward(dy, x, self.params["w"], self.params["b"], activation)


class Conv2d(_Layer):
    """``act(conv2d(x, w) + b)`` in NCHW, 3x3 "same" padding; PReLU slopes ``(C, 1, 1)``, one per channel.

    A unit is an output channel: dead when its pre-activation is <= 0 at every position of every example.
    """

    unit_axes = (0, 2, 3)

    def __init__(self, w: Any, b: Any, nonlinearity: Nonlinearity, alpha: Any = None, *, stride: int = 1) -> None:
        super().__init__(w, b, nonlinearity, alpha)
        self.options = {"stride": stride, "padding": "same"}

    def _fused(self, x: Any, activation: Activation) -> Any:
        return fastact.conv2d_bias_act(x, self.params["w"], self.params["b"], activation, **self.options)

    def _fused_backward(self, dy: Any, x: Any, activation: Activation) -> tuple[Any, Any, Any]:
        return fastact.conv2d_bias_act_backward(dy, x, self.params["w"], self.params["b"], activation, **self.options)
