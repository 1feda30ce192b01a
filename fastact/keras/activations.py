"""Keras activations computed by fastact: ``keras.activations``' names, arguments and defaults.

Each function here is usable as a Keras ``activation=`` (``Dense(90,
activation=fastact.keras.activations.leaky_relu)``, or by name in fastact's
layers: ``fastact.keras.layers.Dense(90, activation="leaky_relu")``) and
called directly on tensors.  On Keras' torch backend it runs
``fastact.torch`` (with autograd), on the numpy backend fastact's NumPy
functions, on jax and tensorflow Keras' own ``keras.activations`` function
(whose outputs keep Keras' extras there, such as the logits that softmax and
sigmoid leave for TensorFlow's crossentropy).

Each function is fastact's activation of the same meaning with Keras'
parameter names mapped onto fastact's (``negative_slope`` is fastact's
``alpha``); :func:`fastact_activation` gives the ``fastact.Activation`` an
``activation=`` argument stands for, which fastact's fused Dense and Conv2D
put into their single call.

Example::

    import keras, fastact.keras
    model = keras.Sequential([
        keras.Input((784,)),
        fastact.keras.layers.Dense(90, activation="leaky_relu"),     # fused: one fastact call
        keras.layers.Dense(10, activation=fastact.keras.activations.softmax),
    ])
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import keras

import fastact

from . import _backend

__all__ = [
    "relu",
    "leaky_relu",
    "relu6",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "softplus",
    "sigmoid",
    "tanh",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "mish",
    "softmax",
    "log_softmax",
    "linear",
    "FastactActivation",
    "get",
    "fastact_activation",
]

# Keras parameter name -> fastact's, where they differ (for the functions here).
_RENAMED = {"negative_slope": "alpha"}


def _apply(function: Callable, x: Any, **keras_params: Any) -> Any:
    """``function`` (one of this module's) on x: fastact's twin, or Keras' own on jax/tensorflow."""
    if _backend.mode() == "ops":
        return getattr(keras.activations, function.__name__)(x, **keras_params)
    return _backend.activation(x, _as_fastact(function, keras_params))


def _as_fastact(function: Callable, keras_params: dict) -> fastact.Activation:
    params = {_RENAMED.get(name, name): value for name, value in keras_params.items()}
    return fastact.Activation(function.__name__, **params)


def _as_keras(function: Callable, fastact_params: dict) -> dict:
    """fastact parameters as ``function``'s Keras parameters (the reverse of :func:`_as_fastact`)."""
    keras_names = {_RENAMED.get(name, name): name for name in inspect.signature(function).parameters}
    return {keras_names[name]: value for name, value in fastact_params.items()}


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """ReLU with Keras' options: negative_slope * (x - threshold) if x <= threshold, else x capped at max_value.

    fastact's ``relu(x, alpha=negative_slope, max_value, threshold)``.
    """
    return _apply(relu, x, negative_slope=negative_slope, max_value=max_value, threshold=threshold)


def leaky_relu(x, negative_slope=0.2):
    """x if x > 0 else negative_slope * x (fastact's ``leaky_relu(x, alpha=negative_slope)``)."""
    return _apply(leaky_relu, x, negative_slope=negative_slope)


def relu6(x):
    """min(max(x, 0), 6)."""
    return _apply(relu6, x)


def elu(x, alpha=1.0):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return _apply(elu, x, alpha=alpha)


def selu(x):
    """scale * elu(x, alpha) with Keras' (and PyTorch's) constants."""
    return _apply(selu, x)


def gelu(x, approximate=False):
    """x * Phi(x) (exact, with erf), or the tanh approximation when ``approximate``."""
    return _apply(gelu, x, approximate=approximate)


def silu(x):
    """x * sigmoid(x) (also named swish)."""
    return _apply(silu, x)


swish = silu


def softplus(x):
    """log(1 + exp(x)), without overflow."""
    return _apply(softplus, x)


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _apply(sigmoid, x)


def tanh(x):
    """tanh(x)."""
    return _apply(tanh, x)


def hard_sigmoid(x):
    """relu6(x + 3) / 6 (Keras 3's hard sigmoid)."""
    return _apply(hard_sigmoid, x)


def hard_silu(x):
    """x * hard_sigmoid(x) (also named hard_swish)."""
    return _apply(hard_silu, x)


hard_swish = hard_silu


def mish(x):
    """x * tanh(softplus(x))."""
    return _apply(mish, x)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``: an int or a tuple of axes forming one row (axis=(1, 2))."""
    return _apply(softmax, x, axis=axis)


def log_softmax(x, axis=-1):
    """x - log(sum(exp(x))) along ``axis`` (an int or a tuple of axes)."""
    return _apply(log_softmax, x, axis=axis)


def linear(x):
    """The identity: a layer without activation (returns x itself, as Keras)."""
    return x


# --------------------------------------------------------------------------- #
# Names, Keras' own functions, and what the fused layers run.
# --------------------------------------------------------------------------- #
_FUNCTIONS = {
    f.__name__: f
    for f in (relu, leaky_relu, relu6, elu, selu, gelu, silu, softplus, sigmoid, tanh,
              hard_sigmoid, hard_silu, mish, softmax, log_softmax, linear)
}
_BY_NAME = {**_FUNCTIONS, "swish": silu, "hard_swish": hard_silu}
# "LeakyReLU", "LeakyRelu", "leakyrelu" -> leaky_relu: the spellings people try first.
_BY_LOOSE_NAME = {name.replace("_", "").lower(): f for name, f in _BY_NAME.items()}

for _function in _FUNCTIONS.values():
    keras.saving.register_keras_serializable(package="fastact")(_function)


def _keras_twins() -> dict:
    """Keras' own activation functions -> this module's of the same name (so keras.activations.relu fuses too)."""
    return {getattr(keras.activations, name): f for name, f in _BY_NAME.items() if hasattr(keras.activations, name)}


_KERAS_TWINS = _keras_twins()


def _twin_of(function: Callable) -> Callable:
    """This module's twin of one of Keras' activation functions; any other callable as it is."""
    try:
        return _KERAS_TWINS.get(function, function)
    except TypeError:  # an unhashable callable object
        return function


@keras.saving.register_keras_serializable(package="fastact")
class FastactActivation:
    """A ``fastact.Activation`` (an activation with its parameters) as a Keras activation.

    What :func:`get` makes of ``fastact.Activation("leaky_relu", alpha=0.05)``,
    so that ``Dense(90, activation=fastact.Activation("leaky_relu", alpha=0.05))``
    fuses that slope into the layer's one call and the layer's config keeps it.
    Callable on tensors like this module's functions (Keras' function of the
    same name on jax and tensorflow).  Parameters are fastact's (``alpha``).
    """

    def __init__(self, name: str, **params: Any) -> None:
        activation = fastact.Activation(name, **params)
        if activation.name not in _FUNCTIONS:
            raise ValueError(
                f"activation {activation.name!r} has no Keras twin to run on jax and tensorflow; "
                f"accepted: {sorted(_FUNCTIONS)}"
            )
        self.activation = activation
        self._function = _FUNCTIONS[activation.name]

    def __call__(self, x: Any) -> Any:
        return _apply(self._function, x, **_as_keras(self._function, self.activation.params))

    def get_config(self) -> dict:
        return {"name": self.activation.name, **self.activation.params}

    @classmethod
    def from_config(cls, config: dict) -> "FastactActivation":
        return cls(**config)

    def __repr__(self) -> str:
        return f"FastactActivation({self.activation!r})"


def get(identifier: Any) -> Callable:
    """An ``activation=`` argument as a function, fastact's where fastact has it.

    None -> :func:`linear`; a name (Keras' names, fastact's aliases, or loose
    spellings such as ``"LeakyReLU"``) -> this module's function, or Keras' own
    for names only Keras has ("exponential", "softsign", ...); one of
    ``keras.activations``' functions -> its twin here; a ``fastact.Activation``
    (parameters other than the defaults) -> a :class:`FastactActivation`; a
    serialized config -> what Keras deserializes, mapped the same way; any
    other callable as it is.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, fastact.Activation):
        return FastactActivation(identifier.name, **identifier.params)
    if isinstance(identifier, str):
        function = _BY_NAME.get(identifier) or _BY_LOOSE_NAME.get(identifier.replace("_", "").lower())
        if function is not None:
            return function
        try:
            return keras.activations.get(identifier)
        except ValueError:
            raise ValueError(
                f"unknown activation {identifier!r}; fastact runs {sorted(_BY_NAME)}, "
                "and Keras' other activations (keras.activations) are accepted by name too"
            ) from None
    if isinstance(identifier, dict):
        identifier = keras.activations.deserialize(identifier)
    if callable(identifier):
        return _twin_of(identifier)
    raise TypeError(f"activation must be None, a name or a callable, got {type(identifier).__name__} {identifier!r}")


def _default_params(function: Callable) -> dict:
    """A function's Keras parameters with their defaults (what ``activation=function`` runs with)."""
    return {
        name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty
    }


_DEFAULT_ACTIVATIONS = {f: _as_fastact(f, _default_params(f)) for f in _FUNCTIONS.values()}


def fastact_activation(function: Callable) -> fastact.Activation | None:
    """The ``fastact.Activation`` that ``activation=function`` computes (Keras' defaults), or None.

    None for functions fastact does not have (a user's own, Keras-only ones).
    """
    if isinstance(function, FastactActivation):
        return function.activation
    try:
        return _DEFAULT_ACTIVATIONS.get(_twin_of(function))
    except TypeError:
        return None
