"""A Keras training step of the article's CNN: stock Keras vs fastact.keras, on Keras' torch backend.

Three versions of the same model (the article's MNIST CNN, Leaky ReLU slope 0.05, the same
weights): ``keras`` (keras.layers.LeakyReLU after each Conv2D/Dense), ``fastact-layers`` (the
article's code with fastact.keras.layers.LeakyReLU, the only change an import), ``fastact-fused``
(fastact.keras.layers.Conv2D/Dense with activation=fastact.Activation("leaky_relu", alpha=0.05):
convolution, bias and activation in one call).  Each step is ``model.train_on_batch`` (forward,
backward, SGD update) on one batch; rounds interleave the versions and the median per version is
reported with its ratio to stock Keras.

    python bench/keras_fit.py [--batch 64] [--rounds 15]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout
os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import fastact  # noqa: E402
from fastact.keras import layers as fkl  # noqa: E402

SLOPE = 0.05


def article_cnn(version: str) -> keras.Sequential:
    """The article's CNN in one of the three versions (see the module docstring)."""
    L = keras.layers
    if version == "fastact-fused":
        act = fastact.Activation("leaky_relu", alpha=SLOPE)
        return keras.Sequential([
            keras.Input((28, 28, 1)),
            fkl.Conv2D(32, (3, 3), activation=act), L.MaxPooling2D((2, 2)),
            fkl.Conv2D(64, (3, 3), activation=act), L.MaxPooling2D((2, 2)),
            fkl.Conv2D(64, (3, 3), activation=act), L.Flatten(),
            fkl.Dense(64, activation=act), L.Dense(10, activation="softmax"),
        ])
    leaky = (lambda: fkl.LeakyReLU(alpha=SLOPE)) if version == "fastact-layers" else (
        lambda: L.LeakyReLU(negative_slope=SLOPE))
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, (3, 3)), leaky(), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3)), leaky(), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3)), leaky(), L.Flatten(),
        L.Dense(64), leaky(), L.Dense(10, activation="softmax"),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    versions = ["keras", "fastact-layers", "fastact-fused"]
    models = {v: article_cnn(v) for v in versions}
    weights = models["keras"].get_weights()
    for model in models.values():
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, y)  # warm-up: builds the train function
    times = {v: [] for v in versions}
    for _ in range(args.rounds):
        for version in versions:
            start = time.perf_counter()
            models[version].train_on_batch(x, y)
            times[version].append(time.perf_counter() - start)
    import torch

    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"keras {keras.__version__}, batch {args.batch}, median of {args.rounds} interleaved rounds")
    base = statistics.median(times["keras"])
    for version in versions:
        median = statistics.median(times[version])
        p20, p80 = np.percentile(times[version], [20, 80])
        print(f"  {version:15s} {median * 1e3:8.2f} ms  (p20 {p20 * 1e3:.2f}, p80 {p80 * 1e3:.2f})  "
              f"x{median / base:.2f} of keras")


if __name__ == "__main__":
    main()
