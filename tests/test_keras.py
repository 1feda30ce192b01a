"""fastact.keras: Keras 3 layers and activations against their keras.layers / keras.activations twins.

Runs on Keras' torch backend (set here before Keras is first imported; the
only backend installed here besides numpy, which gets its own subprocess
test).  The torch-backend computations run fastact.torch and are skipped,
saying so, where it is missing; defaults, configs, serialization and the
keras.ops path (what jax and tensorflow run) need no fastact.torch.
Skipped altogether without Keras 3.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", minversion="3.0")
try:
    import torch
except ImportError:  # another Keras backend without torch: the torch-backend tests skip
    torch = None

import fastact  # noqa: E402
import fastact.keras  # noqa: E402
from fastact.keras import _backend, activations as fka, layers as fkl  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
ON_TORCH = keras.backend.backend() == "torch"


def _fastact_torch_reason() -> str | None:
    """Why the layers cannot compute here: on the torch backend they run fastact.torch."""
    if not ON_TORCH:
        return None  # another backend: Keras' formulas (keras.ops), compared forward only
    try:
        import fastact.torch  # noqa: F401
    except ImportError as error:
        return f"fastact.torch is not available ({error}): the torch-backend path cannot run"
    return None


_NO_FASTACT_TORCH = _fastact_torch_reason()
needs_fastact_torch = pytest.mark.skipif(_NO_FASTACT_TORCH is not None, reason=str(_NO_FASTACT_TORCH))


def _numpy(t) -> np.ndarray:
    # Not keras.ops.convert_to_numpy: with torch 2.13 it calls np.array(tensor) and NumPy warns.
    if torch is not None and isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return keras.ops.convert_to_numpy(t)


def _values(shape: tuple, seed: int, away_from: tuple = (0.0,)) -> np.ndarray:
    """float32 normal values, none within 1e-2 of the kinks in ``away_from`` (gradients there are conventions)."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 2
    for kink in away_from:
        near = np.abs(x - kink) < 1e-2
        x[near] = kink + np.float32(0.05)
    return x


def _output_and_grads(layer, x: np.ndarray) -> list[np.ndarray]:
    """The layer's output on x and the gradients of sum(output * r) for x and every trainable weight.

    Gradients on the torch backend only (elsewhere the output alone).
    """
    if not ON_TORCH:
        return [_numpy(layer(x))]
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    weights = [v.value for v in layer.trainable_variables]
    r = torch.tensor(np.random.default_rng(99).standard_normal(tuple(y.shape)).astype(np.float32))
    grads = torch.autograd.grad((y * r).sum(), [xt, *weights])
    return [_numpy(y.detach()), *(_numpy(g) for g in grads)]


def _assert_twins(ours, theirs, x: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """Same weights, then the same output and gradients (float32 rounding apart)."""
    theirs(x)  # build both
    ours(x)
    ours.set_weights(theirs.get_weights())
    got, want = _output_and_grads(ours, x), _output_and_grads(theirs, x)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"result {i} (0: output, 1: dx, then weights)")


# --------------------------------------------------------------------------- #
# Keras' names, arguments and defaults.
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", fkl.__all__)
def test_layers_subclass_their_twin_with_its_defaults(name):
    import inspect

    ours, theirs = getattr(fkl, name), getattr(keras.layers, name)
    assert issubclass(ours, theirs)
    ours_params = inspect.signature(ours.__init__).parameters
    theirs_params = inspect.signature(theirs.__init__).parameters
    for param, p in ours_params.items():
        if param in theirs_params:
            assert p.default == theirs_params[param].default, f"{name}({param}=...) default differs from Keras'"
    assert keras.saving.get_registered_name(ours) == f"fastact>{name}"


@pytest.mark.parametrize("name", [n for n in fka.__all__ if n not in ("FastactActivation", "get", "fastact_activation")])
def test_activations_have_keras_signatures(name):
    import inspect

    ours, theirs = getattr(fka, name), getattr(keras.activations, name)
    assert inspect.signature(ours) == inspect.signature(theirs)


def test_activation_names():
    assert fka.get(None) is fka.linear
    assert fka.get("leaky_relu") is fka.leaky_relu
    for loose in ("LeakyReLU", "LeakyRelu", "leakyrelu"):  # the article's question
        assert fka.get(loose) is fka.leaky_relu
    assert fka.get("swish") is fka.silu and fka.get("hard_swish") is fka.hard_silu
    assert fka.get(keras.activations.relu) is fka.relu  # Keras' own function -> fastact's twin
    assert fka.get("exponential") is keras.activations.exponential  # only Keras has it
    custom = lambda x: x * 2  # noqa: E731
    assert fka.get(custom) is custom
    with pytest.raises(ValueError, match="unknown activation 'leaky'"):
        fka.get("leaky")
    with pytest.raises(TypeError, match="activation must be"):
        fka.get(3)
    assert fka.fastact_activation(fka.leaky_relu) == fastact.Activation("leaky_relu", alpha=0.2)
    assert fka.fastact_activation(keras.activations.gelu) == fastact.Activation("gelu", approximate=False)
    assert fka.fastact_activation(custom) is None


def test_leaky_relu_takes_keras2_alpha():
    assert fkl.LeakyReLU(alpha=0.05).negative_slope == 0.05
    assert fkl.LeakyReLU().negative_slope == keras.layers.LeakyReLU().negative_slope
    with pytest.raises(ValueError, match="both negative_slope=0.1 and alpha=0.05"):
        fkl.LeakyReLU(negative_slope=0.1, alpha=0.05)
    with pytest.raises(ValueError, match="negative_slope"):  # Keras' own check, inherited
        fkl.LeakyReLU(negative_slope=-1.0)


# --------------------------------------------------------------------------- #
# Serialization.
# --------------------------------------------------------------------------- #
LAYER_CASES = [
    ("LeakyReLU", lambda: fkl.LeakyReLU(alpha=0.05)),
    ("ReLU", lambda: fkl.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5)),
    ("ELU", lambda: fkl.ELU(alpha=0.5)),
    ("PReLU", lambda: fkl.PReLU(alpha_initializer="ones", shared_axes=[1, 2])),
    ("Softmax", lambda: fkl.Softmax(axis=(1, 2))),
    ("Activation", lambda: fkl.Activation("LeakyRelu")),
    ("Dense", lambda: fkl.Dense(7, activation="gelu", use_bias=False, kernel_initializer="ones")),
    ("Conv2D", lambda: fkl.Conv2D(4, 3, strides=2, padding="same", groups=2, activation="relu6")),
    ("Dense-parametrized", lambda: fkl.Dense(3, activation=fastact.Activation("relu", alpha=0.1, max_value=2.0))),
]


@pytest.mark.parametrize("name,make", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_config_round_trip(name, make):
    layer = make()
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_configs_keep_what_was_asked():
    assert fkl.ELU(alpha=0.5).get_config()["alpha"] == 0.5  # keras.layers.ELU's config drops it
    restored = fkl.Activation.from_config(fkl.Activation("LeakyRelu").get_config())
    assert restored.activation is fka.leaky_relu
    dense = fkl.Dense.from_config(fkl.Dense(3, activation="mish").get_config())
    assert dense.activation is fka.mish
    slope = fastact.Activation("leaky_relu", alpha=0.05)
    conv = fkl.Conv2D.from_config(fkl.Conv2D(3, 3, activation=slope).get_config())
    assert fka.fastact_activation(conv.activation) == slope  # the fused call keeps the slope
    with pytest.raises(ValueError, match="no Keras twin"):
        fka.get(fastact.Activation("thresholded_relu"))


# --------------------------------------------------------------------------- #
# Each layer and activation against its Keras twin, forward and backward (torch backend).
# --------------------------------------------------------------------------- #
ACTIVATION_CASES = [
    ("relu", {}),
    ("relu", {"negative_slope": 0.1, "max_value": 4.0, "threshold": 0.5}),
    ("leaky_relu", {}),
    ("leaky_relu", {"negative_slope": 0.05}),
    ("relu6", {}),
    ("elu", {"alpha": 0.5}),
    ("selu", {}),
    ("gelu", {}),
    ("gelu", {"approximate": True}),
    ("silu", {}),
    ("softplus", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("hard_sigmoid", {}),
    ("hard_silu", {}),
    ("mish", {}),
    ("softmax", {}),
    ("softmax", {"axis": (1, 2)}),
    ("log_softmax", {"axis": 1}),
    ("log_softmax", {"axis": (0, 2)}),
    ("linear", {}),
]
KINKS = (0.0, 0.5, 4.0, 6.0, 3.0, -3.0)


class _Apply(keras.layers.Layer):
    """A function of the input as a weightless layer (so the twins check alike)."""

    def __init__(self, function, **params):
        super().__init__()
        self.function, self.params = function, params

    def call(self, x):
        return self.function(x, **self.params)


@needs_fastact_torch
@pytest.mark.parametrize("name,params", ACTIVATION_CASES, ids=[f"{n}-{p}" for n, p in ACTIVATION_CASES])
def test_activation_matches_keras(name, params):
    x = _values((3, 5, 7), seed=1, away_from=KINKS)
    _assert_twins(_Apply(getattr(fka, name), **params), _Apply(getattr(keras.activations, name), **params), x)


def _slope(m, alpha: float):
    """A leaky_relu of slope alpha as activation=: a fastact.Activation for fastact's layers, a function for Keras'."""
    if m is fkl:
        return fastact.Activation("leaky_relu", alpha=alpha)
    return lambda x: keras.activations.leaky_relu(x, negative_slope=alpha)


TWIN_CASES = [
    ("LeakyReLU", lambda m: m.LeakyReLU(negative_slope=0.05), (4, 6, 5)),
    ("ReLU", lambda m: m.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5), (4, 6, 5)),
    ("ELU", lambda m: m.ELU(alpha=0.5), (4, 6, 5)),
    ("PReLU", lambda m: m.PReLU(alpha_initializer="random_uniform"), (4, 6, 5)),
    ("PReLU-shared", lambda m: m.PReLU(alpha_initializer="random_uniform", shared_axes=[1]), (4, 6, 5)),
    ("Softmax", lambda m: m.Softmax(), (4, 6, 5)),
    ("Softmax-axes", lambda m: m.Softmax(axis=(1, 2)), (4, 6, 5)),
    ("Activation", lambda m: m.Activation("leaky_relu"), (4, 6, 5)),
    ("Dense", lambda m: m.Dense(5), (4, 6)),
    ("Dense-relu", lambda m: m.Dense(5, activation="relu", bias_initializer="random_normal"), (4, 6)),
    ("Dense-3d-gelu", lambda m: m.Dense(5, activation="gelu"), (2, 4, 6)),
    ("Dense-nobias-mish", lambda m: m.Dense(5, activation="mish", use_bias=False), (4, 6)),
    ("Dense-softmax", lambda m: m.Dense(5, activation="softmax"), (4, 6)),
    ("Dense-exponential", lambda m: m.Dense(5, activation="exponential"), (4, 6)),
    ("Conv2D", lambda m: m.Conv2D(4, 3), (2, 9, 9, 3)),
    ("Conv2D-same-stride-relu", lambda m: m.Conv2D(4, (3, 2), strides=2, padding="same", activation="relu"),
     (2, 9, 8, 3)),
    ("Conv2D-dilated-groups", lambda m: m.Conv2D(4, 3, dilation_rate=2, groups=2, activation="elu"), (2, 9, 9, 4)),
    ("Conv2D-nobias-softmax", lambda m: m.Conv2D(4, 1, use_bias=False, activation="softmax"), (2, 5, 5, 3)),
    ("Dense-fastact-activation", lambda m: m.Dense(5, activation=_slope(m, 0.05)), (4, 6)),
    ("Conv2D-fastact-activation", lambda m: m.Conv2D(4, 3, activation=_slope(m, 0.05)), (2, 7, 7, 3)),
    ("Conv2D-channels-first", lambda m: m.Conv2D(4, 3, padding="same", data_format="channels_first",
                                                  activation="silu", bias_initializer="random_normal"), (2, 3, 7, 7)),
]


@needs_fastact_torch
@pytest.mark.parametrize("name,make,shape", TWIN_CASES, ids=[c[0] for c in TWIN_CASES])
def test_layer_matches_keras(name, make, shape):
    """The same output and gradients (input and every weight) as the keras.layers twin with the same weights."""
    x = _values(shape, seed=2, away_from=KINKS)
    _assert_twins(make(fkl), make(keras.layers), x, rtol=1e-4, atol=1e-5)


@needs_fastact_torch
@pytest.mark.skipif(not ON_TORCH, reason="fastact.torch's calls are counted: Keras' torch backend only")
def test_dense_and_conv2d_are_one_fused_call(monkeypatch):
    """An elementwise activation goes into the fused call; softmax runs after a fused linear one."""
    import fastact.torch as torch_ops

    calls = []

    def spy(name, original):
        def call(*args, **kwargs):
            calls.append((name, args[3:4]))  # a fused call's activation is its 4th argument
            return original(*args, **kwargs)
        return call

    for name in ("dense_bias_act", "conv2d_bias_act", "leaky_relu", "softmax"):
        monkeypatch.setattr(torch_ops, name, spy(name, getattr(torch_ops, name)))
    slope = fastact.Activation("leaky_relu", alpha=0.05)
    fkl.Dense(3, activation=slope)(np.ones((2, 4), np.float32))
    fkl.Conv2D(3, 1, activation="leaky_relu")(np.ones((1, 2, 2, 4), np.float32))
    fkl.Dense(3, activation="softmax")(np.ones((2, 4), np.float32))
    assert calls == [
        ("dense_bias_act", (slope,)),
        ("conv2d_bias_act", (fastact.Activation("leaky_relu", alpha=0.2),)),
        ("dense_bias_act", (fastact.Activation("linear"),)),
        ("softmax", ()),
    ]


def test_keras_ops_path(monkeypatch):
    """What jax and tensorflow run (Keras' formulas through keras.ops), here on torch tensors."""
    monkeypatch.setattr(_backend, "mode", lambda: "ops")
    x = _values((2, 6, 6, 3), seed=3)
    for make in (lambda m: m.LeakyReLU(negative_slope=0.05), lambda m: m.ReLU(max_value=1.0),
                 lambda m: m.PReLU(alpha_initializer="random_uniform"), lambda m: m.Softmax(axis=(1, 2)),
                 lambda m: m.Dense(4, activation="leaky_relu"), lambda m: m.Conv2D(2, 3, activation="gelu"),
                 lambda m: m.Dense(4, activation=_slope(m, 0.1))):
        ours, theirs = make(fkl), make(keras.layers)
        theirs(x)
        ours(x)
        ours.set_weights(theirs.get_weights())
        got, want = _numpy(ours(x)), _numpy(theirs(x))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    xt = keras.ops.convert_to_tensor(x)
    np.testing.assert_allclose(_numpy(fka.elu(xt, alpha=0.5)), _numpy(keras.activations.elu(xt, 0.5)))


# --------------------------------------------------------------------------- #
# The article's CNN and whole models (torch backend).
# --------------------------------------------------------------------------- #
def _article_cnn(leaky_relu) -> keras.Sequential:
    """The article's CNN, ``leaky_relu()`` after each convolution (the MNIST model its lines begin)."""
    from keras import layers, models

    model = models.Sequential()
    model.add(keras.Input((28, 28, 1)))
    model.add(layers.Conv2D(32, (3, 3)))
    model.add(leaky_relu())
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3)))
    model.add(leaky_relu())
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3)))
    model.add(leaky_relu())
    model.add(layers.Flatten())
    model.add(layers.Dense(64))
    model.add(leaky_relu())
    model.add(layers.Dense(10, activation="softmax"))
    return model


def _digits(n: int = 48):
    rng = np.random.default_rng(5)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def _fit_twins(ours: keras.Model, theirs: keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    """Same weights, same predictions; one epoch of SGD each gives the same losses and weights."""
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    histories = []
    for model in (ours, theirs):
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
        histories.append(model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history["loss"])
    assert np.isfinite(histories[0]).all()
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def _save_and_reload(model: keras.Model, x: np.ndarray, tmp_path) -> keras.Model:
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    return reloaded


@needs_fastact_torch
def test_article_cnn_with_keras2_alpha(tmp_path):
    """The article's model with fastact's LeakyReLU(alpha=0.05): Keras' numbers, fit, save, reload."""
    keras.utils.set_random_seed(0)
    ours = _article_cnn(lambda: fkl.LeakyReLU(alpha=0.05))
    theirs = _article_cnn(lambda: keras.layers.LeakyReLU(negative_slope=0.05))
    x, y = _digits()
    _fit_twins(ours, theirs, x, y)
    reloaded = _save_and_reload(ours, x, tmp_path)
    leaky = [layer for layer in reloaded.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert len(leaky) == 4 and all(type(layer) is fkl.LeakyReLU and layer.negative_slope == 0.05 for layer in leaky)


def _fused_cnn(m) -> keras.Sequential:
    """The article's CNN written with activation= (fused) and every fastact layer kind."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        m.Conv2D(16, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        m.Conv2D(16, (3, 3), padding="same", strides=2),
        m.PReLU(shared_axes=[1, 2]),
        m.Conv2D(16, (3, 3), activation="elu"),
        keras.layers.Flatten(),
        m.Dense(32),
        m.ELU(alpha=0.5),
        m.Dense(32, activation="hard_silu"),
        m.ReLU(max_value=6.0),
        m.Dense(10),
        m.Activation("softmax"),
    ])


@needs_fastact_torch
def test_fused_sequential_model(tmp_path):
    keras.utils.set_random_seed(1)
    ours, theirs = _fused_cnn(fkl), _fused_cnn(keras.layers)
    x, y = _digits(32)
    _fit_twins(ours, theirs, x, y)
    _save_and_reload(ours, x, tmp_path)
    lines = []
    ours.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert "Conv2D" in text and "PReLU" in text and "Total params" in text


@needs_fastact_torch
def test_functional_model(tmp_path):
    keras.utils.set_random_seed(2)

    def build(m):
        inputs = keras.Input((12, 12, 3))
        a = m.Conv2D(8, 3, padding="same", activation="leaky_relu")(inputs)
        b = m.Conv2D(8, 1)(inputs)
        merged = keras.layers.Add()([m.LeakyReLU(negative_slope=0.1)(b), a])
        flat = keras.layers.Flatten()(merged)
        return keras.Model(inputs, m.Dense(5, activation="softmax")(m.Dense(16, activation="gelu")(flat)))

    ours, theirs = build(fkl), build(keras.layers)
    x, y = np.random.default_rng(3).random((32, 12, 12, 3), dtype=np.float32), np.arange(32) % 5
    _fit_twins(ours, theirs, x, y)
    _save_and_reload(ours, x, tmp_path)


# --------------------------------------------------------------------------- #
# Imports and the numpy backend (subprocesses: Keras picks its backend once per process).
# --------------------------------------------------------------------------- #
def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=300)


def test_import_fastact_does_not_import_keras():
    done = _python("import sys, fastact; print('keras' in sys.modules, 'torch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


NUMPY_BACKEND = """
import sys
import numpy as np, keras, fastact.keras
from fastact.keras import layers as fkl
assert keras.backend.backend() == "numpy"
rng = np.random.default_rng(0)
x = rng.random((4, 12, 12, 3), dtype=np.float32) - 0.5

def build(m):
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        m.Conv2D(8, 3, padding="same", activation="leaky_relu"),
        m.LeakyReLU(negative_slope=0.05),
        m.PReLU(alpha_initializer="random_uniform", shared_axes=[1, 2]),
        m.Conv2D(8, 3, strides=2, data_format="channels_last"),
        m.ReLU(max_value=0.5, negative_slope=0.1),
        m.Softmax(axis=(1, 2)),
        keras.layers.Flatten(),
        m.Dense(6, activation="gelu"),
        m.ELU(alpha=0.5),
        m.Dense(5, activation="softmax"),
    ])

ours, theirs = build(fkl), build(keras.layers)
ours.set_weights(theirs.get_weights())
np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
assert type(ours(x)) is np.ndarray
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="Keras' numpy backend imports jax (keras/src/backend/numpy/math.py), not installed")
def test_numpy_backend():
    """On Keras' numpy backend the layers run fastact's NumPy functions (inference), never importing torch."""
    done = _python(NUMPY_BACKEND, KERAS_BACKEND="numpy")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch imported: False" in done.stdout
