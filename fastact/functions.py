"""The public activation functions and :class:`Activation`: thin calls into the dispatcher.

Every activation NAME declared in :mod:`fastact.activations` has
``NAME(x, <params>, *, out=None)`` and ``NAME_backward(dy, x, <params>, *, out=None)``
here, written out so that an IDE can jump to them and ``help()`` shows the
real signature.  Their parameters and defaults repeat the declaration's
(``tests/test_functions.py`` checks that the two agree), their docstrings are
the declaration's (``ActivationSpec.docstring``), and their validation is the
declaration's validators.  Each is one call: host overhead matters for small
GPU arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import _dispatch
from ._dispatch import backward as _backward, forward as _forward
from ._registry import REGISTRY, ActivationSpec, get_spec
from . import activations as _declared

# The declarations, bound by assignment rather than ``from .activations import``:
# CPython compiles ``NAME.validate(...)`` on an imported name as an attribute
# load plus a call (it takes the name for a module), one bound method per call.
RELU = _declared.RELU
LEAKY_RELU = _declared.LEAKY_RELU
RELU6 = _declared.RELU6
THRESHOLDED_RELU = _declared.THRESHOLDED_RELU
PRELU = _declared.PRELU
ELU = _declared.ELU
SELU = _declared.SELU
GELU = _declared.GELU
SILU = _declared.SILU
SOFTPLUS = _declared.SOFTPLUS
SIGMOID = _declared.SIGMOID
TANH = _declared.TANH
HARD_SIGMOID = _declared.HARD_SIGMOID
HARD_SILU = _declared.HARD_SILU
MISH = _declared.MISH
SOFTMAX = _declared.SOFTMAX
LOG_SOFTMAX = _declared.LOG_SOFTMAX
LINEAR = _declared.LINEAR

__all__ = [
    "Activation",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "relu6",
    "relu6_backward",
    "thresholded_relu",
    "thresholded_relu_backward",
    "elu",
    "elu_backward",
    "selu",
    "selu_backward",
    "gelu",
    "gelu_backward",
    "silu",
    "silu_backward",
    "swish",
    "swish_backward",
    "softplus",
    "softplus_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "hard_sigmoid",
    "hard_sigmoid_backward",
    "hard_silu",
    "hard_silu_backward",
    "hard_swish",
    "hard_swish_backward",
    "mish",
    "mish_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    "linear",
    "linear_backward",
    "prelu",
    "prelu_backward",
]


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
        return _forward(self.spec, self.kernel_params, x, out)

    def backward(self, dy: Any, x: Any, *, out: Any = None) -> Any:
        return _backward(self.spec, self.kernel_params, dy, x, out)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Activation({self.name!r}{args})"

    def __hash__(self) -> int:
        # Remembered: fused layers look their activation up in caches on every call (~1 us a hash).
        value = self.__dict__.get("_hash")
        if value is None:
            value = hash((self.name, tuple(sorted(self.params.items()))))
            object.__setattr__(self, "_hash", value)
        return value

    def __getstate__(self) -> dict:
        # Not the remembered hash: str hashes differ from process to process (PYTHONHASHSEED).
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}


def _document(spec: ActivationSpec, forward, backward) -> None:
    """The declaration's docstrings on its pair of functions."""
    forward.__doc__ = spec.docstring("forward")
    backward.__doc__ = spec.docstring("backward")


def relu(x, alpha=0.0, max_value=None, threshold=0.0, *, out=None):
    return _forward(RELU, RELU.kernel_params_of(alpha, max_value, threshold), x, out)


def relu_backward(dy, x, alpha=0.0, max_value=None, threshold=0.0, *, out=None):
    return _backward(RELU, RELU.kernel_params_of(alpha, max_value, threshold), dy, x, out)


_document(RELU, relu, relu_backward)


def leaky_relu(x, alpha=0.2, *, out=None):
    return _forward(LEAKY_RELU, LEAKY_RELU.kernel_params_of(alpha), x, out)


def leaky_relu_backward(dy, x, alpha=0.2, *, out=None):
    return _backward(LEAKY_RELU, LEAKY_RELU.kernel_params_of(alpha), dy, x, out)


_document(LEAKY_RELU, leaky_relu, leaky_relu_backward)


def relu6(x, *, out=None):
    return _forward(RELU6, RELU6.kernel_params_of(), x, out)


def relu6_backward(dy, x, *, out=None):
    return _backward(RELU6, RELU6.kernel_params_of(), dy, x, out)


_document(RELU6, relu6, relu6_backward)


def thresholded_relu(x, theta=1.0, *, out=None):
    return _forward(THRESHOLDED_RELU, THRESHOLDED_RELU.kernel_params_of(theta), x, out)


def thresholded_relu_backward(dy, x, theta=1.0, *, out=None):
    return _backward(THRESHOLDED_RELU, THRESHOLDED_RELU.kernel_params_of(theta), dy, x, out)


_document(THRESHOLDED_RELU, thresholded_relu, thresholded_relu_backward)


def elu(x, alpha=1.0, *, out=None):
    return _forward(ELU, ELU.kernel_params_of(alpha), x, out)


def elu_backward(dy, x, alpha=1.0, *, out=None):
    return _backward(ELU, ELU.kernel_params_of(alpha), dy, x, out)


_document(ELU, elu, elu_backward)


def selu(x, *, out=None):
    return _forward(SELU, SELU.kernel_params_of(), x, out)


def selu_backward(dy, x, *, out=None):
    return _backward(SELU, SELU.kernel_params_of(), dy, x, out)


_document(SELU, selu, selu_backward)


def gelu(x, approximate=False, *, out=None):
    return _forward(GELU, GELU.kernel_params_of(approximate), x, out)


def gelu_backward(dy, x, approximate=False, *, out=None):
    return _backward(GELU, GELU.kernel_params_of(approximate), dy, x, out)


_document(GELU, gelu, gelu_backward)


def silu(x, *, out=None):
    return _forward(SILU, SILU.kernel_params_of(), x, out)


def silu_backward(dy, x, *, out=None):
    return _backward(SILU, SILU.kernel_params_of(), dy, x, out)


_document(SILU, silu, silu_backward)
swish, swish_backward = silu, silu_backward


def softplus(x, *, out=None):
    return _forward(SOFTPLUS, SOFTPLUS.kernel_params_of(), x, out)


def softplus_backward(dy, x, *, out=None):
    return _backward(SOFTPLUS, SOFTPLUS.kernel_params_of(), dy, x, out)


_document(SOFTPLUS, softplus, softplus_backward)


def sigmoid(x, *, out=None):
    return _forward(SIGMOID, SIGMOID.kernel_params_of(), x, out)


def sigmoid_backward(dy, x, *, out=None):
    return _backward(SIGMOID, SIGMOID.kernel_params_of(), dy, x, out)


_document(SIGMOID, sigmoid, sigmoid_backward)


def tanh(x, *, out=None):
    return _forward(TANH, TANH.kernel_params_of(), x, out)


def tanh_backward(dy, x, *, out=None):
    return _backward(TANH, TANH.kernel_params_of(), dy, x, out)


_document(TANH, tanh, tanh_backward)


def hard_sigmoid(x, *, out=None):
    return _forward(HARD_SIGMOID, HARD_SIGMOID.kernel_params_of(), x, out)


def hard_sigmoid_backward(dy, x, *, out=None):
    return _backward(HARD_SIGMOID, HARD_SIGMOID.kernel_params_of(), dy, x, out)


_document(HARD_SIGMOID, hard_sigmoid, hard_sigmoid_backward)


def hard_silu(x, *, out=None):
    return _forward(HARD_SILU, HARD_SILU.kernel_params_of(), x, out)


def hard_silu_backward(dy, x, *, out=None):
    return _backward(HARD_SILU, HARD_SILU.kernel_params_of(), dy, x, out)


_document(HARD_SILU, hard_silu, hard_silu_backward)
hard_swish, hard_swish_backward = hard_silu, hard_silu_backward


def mish(x, *, out=None):
    return _forward(MISH, MISH.kernel_params_of(), x, out)


def mish_backward(dy, x, *, out=None):
    return _backward(MISH, MISH.kernel_params_of(), dy, x, out)


_document(MISH, mish, mish_backward)


def softmax(x, axis=-1, *, out=None):
    return _forward(SOFTMAX, SOFTMAX.kernel_params_of(axis), x, out)


def softmax_backward(dy, x, axis=-1, *, out=None):
    return _backward(SOFTMAX, SOFTMAX.kernel_params_of(axis), dy, x, out)


_document(SOFTMAX, softmax, softmax_backward)


def log_softmax(x, axis=-1, *, out=None):
    return _forward(LOG_SOFTMAX, LOG_SOFTMAX.kernel_params_of(axis), x, out)


def log_softmax_backward(dy, x, axis=-1, *, out=None):
    return _backward(LOG_SOFTMAX, LOG_SOFTMAX.kernel_params_of(axis), dy, x, out)


_document(LOG_SOFTMAX, log_softmax, log_softmax_backward)


def linear(x, *, out=None):
    return _forward(LINEAR, LINEAR.kernel_params_of(), x, out)


def linear_backward(dy, x, *, out=None):
    return _backward(LINEAR, LINEAR.kernel_params_of(), dy, x, out)


_document(LINEAR, linear, linear_backward)


def prelu(x, alpha, *, out=None):
    return _dispatch.prelu(x, alpha, out)


def prelu_backward(dy, x, alpha, *, out=None):
    return _dispatch.prelu_backward(dy, x, alpha, out)


prelu.__doc__ = PRELU.docstring("forward")
prelu_backward.__doc__ = PRELU.docstring("backward").replace(
    "Returns dx,", "Returns (dx, dalpha): dx of x's shape, dtype and kind; dalpha of alpha's shape and dtype;"
)
