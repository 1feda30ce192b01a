"""The study's networks, an MLP and a small CNN, built from :mod:`fastact.study.layers`, and their loss.

Both end in a dense layer with no activation (the logits) and train on the
softmax cross-entropy.  Weights start He-normal (std ``sqrt(2 / fan_in)``) for
every activation alike, so that with one seed every activation starts from the
same weights and sees the same batches (the comparison is paired); the logits'
layer starts with std ``sqrt(1 / fan_in)``.
"""
from __future__ import annotations

import sys
from typing import Any, Iterator, Sequence

import numpy as np

import fastact

from .layers import Conv2d, Dense, LINEAR, Nonlinearity, _Layer

OUTPUT = Nonlinearity("linear", LINEAR)
# The training set is measured in chunks of this many examples (bounded memory on big data).
MEASURE_CHUNK = 1024


def array_module(a: Any) -> Any:
    """numpy or cupy, whichever ``a`` belongs to (CuPy is never imported here)."""
    cupy = sys.modules.get("cupy")
    return cupy if cupy is not None and isinstance(a, cupy.ndarray) else np


class Network:
    """Hidden layers, then the logits' dense layer; a CNN's last feature map is flattened into it."""

    def __init__(self, hidden: Sequence[_Layer], output: Dense, *, flatten_input: bool) -> None:
        self.hidden = list(hidden)
        self.output = output
        self.flatten_input = flatten_input  # the MLP takes (N, C, H, W) images as (N, C*H*W)

    @property
    def layers(self) -> list[_Layer]:
        return [*self.hidden, self.output]

    def _features(self, x: Any) -> Any:
        return x.reshape(len(x), -1) if self.flatten_input else x

    def forward(self, x: Any) -> tuple[Any, list]:
        """The logits and what :meth:`backward` needs."""
        caches = []
        h = self._features(x)
        for layer in self.hidden:
            h, cache = layer.forward(h)
            caches.append(cache)
        feature_shape = h.shape
        logits, cache = self.output.forward(h.reshape(len(h), -1))
        return logits, [*caches, cache, feature_shape]

    def backward(self, dlogits: Any, caches: list) -> list[dict]:
        """Every layer's parameter gradients (in :attr:`layers` order), from the logits' gradient."""
        *caches, feature_shape = caches
        dh, output_grads = self.output.backward(dlogits, caches[-1])
        dh = dh.reshape(feature_shape)
        grads = [output_grads]
        for layer, cache in zip(reversed(self.hidden), reversed(caches[:-1])):
            dh, layer_grads = layer.backward(dh, cache)
            grads.append(layer_grads)
        return grads[::-1]

    def loss_and_gradients(self, x: Any, onehot: Any) -> tuple[float, list[dict]]:
        """The mean softmax cross-entropy of a batch and the gradients of every parameter."""
        logits, caches = self.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, onehot)
        return loss, self.backward(dlogits, caches)

    def logits(self, x: Any) -> Any:
        return self.forward(x)[0]

    def hidden_preactivations(self, x: Any) -> Iterator[Any]:
        """Each hidden layer's pre-activation ``layer(h) + b`` on ``x``, in order."""
        h = self._features(x)
        for layer in self.hidden:
            z, h = layer.preactivation(h)
            yield z

    def accuracy(self, x: Any, labels: Any) -> float:
        """The fraction of ``x`` classified as ``labels`` say."""
        xp = array_module(x)
        correct = 0
        for start in range(0, len(x), MEASURE_CHUNK):
            predicted = xp.argmax(self.logits(x[start:start + MEASURE_CHUNK]), axis=1)
            correct += int((predicted == labels[start:start + MEASURE_CHUNK]).sum())
        return correct / len(x)

    def dead_fractions(self, x_train: Any) -> list[float]:
        """Per hidden layer: the fraction of its units whose pre-activation is <= 0 on every example of ``x_train``."""
        ever_active = [None] * len(self.hidden)
        for start in range(0, len(x_train), MEASURE_CHUNK):
            chunk = x_train[start:start + MEASURE_CHUNK]
            for number, (layer, z) in enumerate(zip(self.hidden, self.hidden_preactivations(chunk))):
                active = units_active(z, layer.unit_axes)
                ever_active[number] = active if ever_active[number] is None else ever_active[number] | active
        return [dead_fraction(active) for active in ever_active]


def units_active(z: Any, unit_axes: tuple[int, ...]) -> Any:
    """Per unit: is its pre-activation > 0 somewhere in ``z`` (over ``unit_axes``: examples, and positions for a conv)?

    NaN is not > 0, so a unit of a network that diverged to NaN counts as never active.

        >>> units_active(np.array([[-1.0, 0.0, 2.0], [-3.0, 0.0, -1.0]]), (0,))
        array([False, False,  True])
    """
    return (z > 0).any(axis=unit_axes)


def dead_fraction(ever_active: Any) -> float:
    """The fraction of units never active: pre-activation <= 0 on every training example."""
    return 1.0 - float(ever_active.sum()) / ever_active.size


def softmax_cross_entropy(logits: Any, onehot: Any) -> tuple[float, Any]:
    """The mean cross-entropy of ``softmax(logits)`` against one-hot labels, and its gradient.

        loss = -mean_n sum_k onehot[n, k] * log_softmax(logits)[n, k]
        dlogits = (softmax(logits) - onehot) / N      (log_softmax_backward of -onehot / N)

        >>> loss, dlogits = softmax_cross_entropy(np.zeros((1, 4)), np.eye(4)[:1])
        >>> round(loss, 4), dlogits
        (1.3863, array([[-0.75,  0.25,  0.25,  0.25]]))
    """
    n = len(logits)
    loss = -float((fastact.log_softmax(logits) * onehot).sum()) / n
    return loss, fastact.log_softmax_backward(onehot * (-1.0 / n), logits)


# --------------------------------------------------------------------------- #
# Builders
# --------------------------------------------------------------------------- #
def _he_normal(rng: np.random.Generator, shape: tuple, fan_in: int, gain: float, like: Any) -> Any:
    """Normal weights with std ``sqrt(gain / fan_in)``, drawn in float64 on the host, as ``like``'s dtype and kind."""
    w = rng.standard_normal(shape) * np.sqrt(gain / fan_in)
    return array_module(like).asarray(w.astype(like.dtype))


def _bias(length: int, value: float, like: Any) -> Any:
    return array_module(like).full(length, value, dtype=like.dtype)


def _slopes(nonlinearity: Nonlinearity, shape: tuple, like: Any) -> Any:
    if not nonlinearity.learned:
        return None
    return array_module(like).full(shape, nonlinearity.prelu_initial_slope, dtype=like.dtype)


def build_mlp(
    x: Any, n_classes: int, widths: Sequence[int], nonlinearity: Nonlinearity, bias_init: float, rng: np.random.Generator
) -> Network:
    """Dense hidden layers of ``widths`` on flattened ``x`` (a batch of the input: its shape, dtype and kind)."""
    fan_in = int(np.prod(x.shape[1:]))
    hidden = []
    for width in widths:
        w = _he_normal(rng, (fan_in, width), fan_in, 2.0, x)
        hidden.append(Dense(w, _bias(width, bias_init, x), nonlinearity, _slopes(nonlinearity, (width,), x)))
        fan_in = width
    output = Dense(_he_normal(rng, (fan_in, n_classes), fan_in, 1.0, x), _bias(n_classes, 0.0, x), OUTPUT)
    return Network(hidden, output, flatten_input=True)


def build_cnn(
    x: Any, n_classes: int, layers: Sequence[tuple[int, int]], nonlinearity: Nonlinearity, bias_init: float,
    rng: np.random.Generator,
) -> Network:
    """3x3 "same" convolutions of ``layers`` = ((channels, stride), ...) on NCHW ``x``, then the logits' dense layer."""
    channels, height, width = x.shape[1:]
    hidden = []
    for out_channels, stride in layers:
        fan_in = channels * 9
        w = _he_normal(rng, (out_channels, channels, 3, 3), fan_in, 2.0, x)
        slopes = _slopes(nonlinearity, (out_channels, 1, 1), x)
        hidden.append(Conv2d(w, _bias(out_channels, bias_init, x), nonlinearity, slopes, stride=stride))
        channels, height, width = out_channels, -(-height // stride), -(-width // stride)
    fan_in = channels * height * width
    output = Dense(_he_normal(rng, (fan_in, n_classes), fan_in, 1.0, x), _bias(n_classes, 0.0, x), OUTPUT)
    return Network(hidden, output, flatten_input=False)
