"""What the study runs: networks, activations, regimes (learning rate x bias init x depth), seeds.

The regimes are the ones that provoke dying ReLUs: a learning rate ten times the
normal one, hidden biases started negative (so that many units start below zero
on most inputs), and a deeper stack.  The values are the study's choice for
digits-sized data and are stored with every result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import product

from .layers import Nonlinearity, parse_nonlinearity

NETWORKS = ("mlp", "cnn")
# Leaky ReLU's slopes from the question "what are the best settings for its alpha?":
# 0.01 (Maas et al. 2013, PyTorch's default) to 0.3 (Keras' LeakyReLU layer's default).
DEFAULT_ACTIVATIONS = (
    "relu", "leaky_relu:0.01", "leaky_relu:0.05", "leaky_relu:0.1", "leaky_relu:0.2", "leaky_relu:0.3",
    "prelu", "elu", "gelu",
)
# Learning rates per optimizer (batches of 64): "normal" trains digits to ~97% with relu; "high"
# is four times that, where relu units die but the shallow networks still train (SGD with
# momentum 0.9: at ten times nearly every run died or diverged, tried while choosing).
LEARNING_RATES = {"sgd": {"normal": 0.05, "high": 0.2}, "adam": {"normal": 0.002, "high": 0.008}}
# -0.3 starts ~11% of the first layers' relu units dead and every unit of a 6-layer MLP's last
# two layers; -0.5 and -1 left nothing trainable in the deep MLP for any activation.
BIAS_INITS = {"zero": 0.0, "negative": -0.3}
# Hidden layers per depth: MLP widths; CNN (channels, stride) of 3x3 "same" convolutions.
ARCHITECTURES = {
    "mlp": {"shallow": (64, 64), "deep": (64,) * 6},
    "cnn": {"shallow": ((8, 1), (16, 2)), "deep": ((8, 1), (8, 1), (16, 2), (16, 1))},
}
LR_LEVELS, BIAS_LEVELS, DEPTH_LEVELS = ("normal", "high"), ("zero", "negative"), ("shallow", "deep")


@dataclass(frozen=True)
class Regime:
    """One cell of the regime grid, with the numbers it stands for."""

    lr: str
    bias: str
    depth: str
    learning_rate: float
    bias_init: float

    @property
    def name(self) -> str:
        return f"lr={self.lr},bias={self.bias},depth={self.depth}"

    def describe(self) -> dict:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study run depends on (stored with its result)."""

    networks: tuple[str, ...] = NETWORKS
    activations: tuple[str, ...] = DEFAULT_ACTIVATIONS
    lr: tuple[str, ...] = LR_LEVELS
    bias: tuple[str, ...] = BIAS_LEVELS
    depth: tuple[str, ...] = DEPTH_LEVELS
    optimizer: str = "sgd"
    learning_rates: dict = field(default_factory=lambda: dict(LEARNING_RATES["sgd"]))
    negative_bias: float = BIAS_INITS["negative"]
    epochs: int = 10
    batch_size: int = 64
    seeds: int = 5
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    data: str | None = None  # an .npz path; None: digits
    jobs: int = 1  # runs trained at once, in worker processes (the results do not depend on it)

    def nonlinearities(self) -> list[Nonlinearity]:
        return [parse_nonlinearity(text) for text in self.activations]

    def regimes(self) -> list[Regime]:
        bias_inits = {"zero": 0.0, "negative": self.negative_bias}
        return [
            Regime(lr, bias, depth, self.learning_rates[lr], bias_inits[bias])
            for lr, bias, depth in product(self.lr, self.bias, self.depth)
        ]

    def describe(self) -> dict:
        return {**asdict(self), "architectures": {n: ARCHITECTURES[n] for n in self.networks}}
