"""Keras 3 layers computed by fastact, drop-in for ``keras.layers``: the same names, arguments and defaults.

Each layer subclasses its ``keras.layers`` twin and replaces only ``call``:
weights (names, shapes, initializers), validation, ``get_config``, output
shapes and masking are Keras' own, so weights move between the twins with
``get_weights``/``set_weights`` and a model swaps one for the other.  On
Keras' torch backend ``call`` runs ``fastact.torch`` (``fit`` trains with
fastact's kernels), on the numpy backend fastact's NumPy functions, on jax and
tensorflow the twin's own ``call`` (``keras.ops``).

``Dense`` and ``Conv2D`` run the product (or convolution), the bias and an
elementwise activation as one fused fastact call; an activation fastact cannot
fuse (softmax, one only Keras has, a user's own) runs after a fused
bias-only call.  Every layer is registered as ``fastact>NAME``, so
``model.save("m.keras")`` and ``keras.models.load_model`` work once
``fastact.keras`` is imported.

The article's CNN, unchanged but for the import::

    from fastact.keras.layers import LeakyReLU
    model.add(layers.Conv2D(32, (3, 3), input_shape=(28, 28, 1)))
    model.add(LeakyReLU(alpha=0.05))
"""
from __future__ import annotations

import keras

import fastact

from . import _backend, activations

__all__ = ["LeakyReLU", "ReLU", "PReLU", "ELU", "Softmax", "Activation", "Dense", "Conv2D"]

_register = keras.saving.register_keras_serializable(package="fastact")
_LINEAR = fastact.Activation("linear")
# Keras 3's default slope of LeakyReLU; tests/test_keras.py checks every default here against Keras'.
_LEAKY_RELU_SLOPE = 0.3


@_register
class LeakyReLU(keras.layers.LeakyReLU):
    """x if x > 0 else negative_slope * x (``keras.layers.LeakyReLU``, computed by fastact).

    Keras 2's ``alpha=`` is accepted for ``negative_slope`` (Keras 3 renamed
    it), so ``LeakyReLU(alpha=0.05)`` from older code works unchanged.  Giving
    both is refused where it can be seen: alpha with a negative_slope other
    than the default (0.3 passed explicitly cannot be told from the default).
    """

    def __init__(self, negative_slope=_LEAKY_RELU_SLOPE, **kwargs):
        if "alpha" in kwargs:
            alpha = kwargs.pop("alpha")
            if negative_slope != _LEAKY_RELU_SLOPE:
                raise ValueError(
                    f"LeakyReLU: got both negative_slope={negative_slope!r} and alpha={alpha!r}; "
                    "alpha is Keras 2's name for negative_slope: pass one of them"
                )
            negative_slope = alpha
        super().__init__(negative_slope=negative_slope, **kwargs)

    def call(self, inputs):
        return activations.leaky_relu(inputs, negative_slope=self.negative_slope)


@_register
class ReLU(keras.layers.ReLU):
    """negative_slope * (x - threshold) if x <= threshold, else x capped at max_value (``keras.layers.ReLU``)."""

    def call(self, inputs):
        return activations.relu(
            inputs, negative_slope=self.negative_slope, max_value=self.max_value, threshold=self.threshold
        )


@_register
class ELU(keras.layers.ELU):
    """x if x > 0 else alpha * (exp(x) - 1) (``keras.layers.ELU``); its config keeps ``alpha``."""

    def call(self, inputs):
        return activations.elu(inputs, alpha=self.alpha)

    def get_config(self):
        # keras.layers.ELU (3.15) leaves alpha out of its config, so a reloaded ELU(0.5) would be ELU(1.0).
        return {**super().get_config(), "alpha": self.alpha}


@_register
class PReLU(keras.layers.PReLU):
    """x if x > 0 else alpha * x with a learned alpha (``keras.layers.PReLU``); gradients for x and alpha.

    alpha has Keras' shape: the input's shape without the batch axis, 1 along
    ``shared_axes``; it broadcasts against the input.
    """

    def call(self, inputs):
        if _backend.mode() == "ops":
            return super().call(inputs)
        return _backend.prelu(inputs, self.alpha)


@_register
class Softmax(keras.layers.Softmax):
    """exp(x) / sum(exp(x)) along ``axis``, an int or a tuple of axes (``keras.layers.Softmax``).

    With a ``mask``, Keras' own computation (masked positions set to zero).
    """

    def call(self, inputs, mask=None):
        if mask is not None or _backend.mode() == "ops":
            return super().call(inputs, mask=mask)
        return activations.softmax(inputs, axis=self.axis)


@_register
class Activation(keras.layers.Activation):
    """Applies an activation by name or function (``keras.layers.Activation``), fastact's where it has it.

    Names resolve with :func:`fastact.keras.activations.get`: Keras' names,
    fastact's aliases and loose spellings (``"LeakyReLU"``); names only Keras
    has run Keras' function.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(activations.get(activation), **kwargs)


def _fused_activation(activation) -> tuple[fastact.Activation, bool]:
    """(what the fused call applies, whether that is the whole activation): elementwise ones fuse, others run after."""
    act = activations.fastact_activation(activation)
    if act is not None and act.spec.form == "elementwise":
        return act, True
    return _LINEAR, False


@_register
class Dense(keras.layers.Dense):
    """activation(inputs @ kernel + bias) in one fused fastact call (``keras.layers.Dense``).

    ``kernel`` is (input_dim, units) and ``bias`` (units,), as Keras' Dense, so
    weights transfer both ways.  ``activation`` by name (``"leaky_relu"``,
    ``"LeakyRelu"``), as a fastact or Keras activation function, or any callable.
    A quantized Dense runs Keras' own quantized path.
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            units,
            activation=activations.get(activation),
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )

    def call(self, inputs, training=None):
        if _backend.mode() == "ops":
            return super().call(inputs, training=training)
        fused, whole = _fused_activation(self.activation)
        outputs = _backend.dense(inputs, self.kernel, self.bias, fused)
        return outputs if whole else self.activation(outputs)


@_register
class Conv2D(keras.layers.Conv2D):
    """activation(conv2d(inputs, kernel) + bias) in one fused fastact call (``keras.layers.Conv2D``).

    ``kernel`` is Keras' (kh, kw, in_channels / groups, filters) for either
    ``data_format``, so weights transfer both ways; ``padding`` "valid" or
    "same" (Keras' and TensorFlow's: output ceil(size / stride)).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            groups=groups,
            activation=activations.get(activation),
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )

    def call(self, inputs):
        if _backend.mode() == "ops":
            return super().call(inputs)
        fused, whole = _fused_activation(self.activation)
        outputs = _backend.conv2d(
            inputs, self.kernel, self.bias, fused,
            stride=self.strides, padding=self.padding, dilation=self.dilation_rate, groups=self.groups,
            data_format="NHWC" if self.data_format == "channels_last" else "NCHW",
        )
        return outputs if whole else self.activation(outputs)
