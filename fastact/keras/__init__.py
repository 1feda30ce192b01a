"""fastact inside Keras 3 models: layers and activations with Keras' names, computed by fastact.

    import fastact.keras
    fastact.keras.layers.LeakyReLU(alpha=0.05)            # keras.layers.LeakyReLU(negative_slope=0.05)
    fastact.keras.layers.Dense(90, activation="leaky_relu")  # matmul, bias and activation in one call

On Keras' torch backend the layers run ``fastact.torch`` (training included),
on the numpy backend fastact's NumPy functions, on jax and tensorflow Keras'
own formulas through ``keras.ops``.  See README.md, "Keras".  Importing
``fastact`` alone never imports Keras; this package does.
"""
from __future__ import annotations

try:
    import keras as _keras
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("fastact.keras needs Keras 3: pip install 'fastact[keras]'") from error

if int(_keras.__version__.split(".")[0]) < 3:  # pragma: no cover
    raise ImportError(f"fastact.keras needs Keras 3, found Keras {_keras.__version__}")

from . import activations, layers  # noqa: E402

__all__ = ["activations", "layers"]
