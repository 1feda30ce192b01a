"""SGD with momentum and Adam, updating the parameters in place (NumPy or CuPy arrays alike)."""
from __future__ import annotations

from typing import Any, Sequence

OPTIMIZERS = ("sgd", "adam")


class SGD:
    """SGD with (heavy-ball) momentum, as PyTorch's ``torch.optim.SGD``:

        v = momentum * v + g;   p -= lr * v

        >>> p = np.ones(2); SGD(0.1).step([{"p": p}], [{"p": np.ones(2)}]); p
        array([0.9, 0.9])
    """

    def __init__(self, learning_rate: float, momentum: float = 0.9) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocity: dict = {}

    def step(self, params: Sequence[dict], grads: Sequence[dict]) -> None:
        for number, (layer, layer_grads) in enumerate(zip(params, grads)):
            for name, g in layer_grads.items():
                v = self.velocity.get((number, name))
                if v is None:
                    v = self.velocity[(number, name)] = g.copy()
                else:
                    v *= self.momentum
                    v += g
                layer[name] -= self.learning_rate * v


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction, as ``torch.optim.Adam`` with its defaults:

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2;   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

        >>> p = np.ones(2); Adam(0.1).step([{"p": p}], [{"p": np.ones(2)}]); p
        array([0.9, 0.9])
    """

    def __init__(self, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.moments: dict = {}
        self.steps = 0

    def step(self, params: Sequence[dict], grads: Sequence[dict]) -> None:
        self.steps += 1
        first_correction = 1.0 - self.beta1 ** self.steps
        second_correction = 1.0 - self.beta2 ** self.steps
        for number, (layer, layer_grads) in enumerate(zip(params, grads)):
            for name, g in layer_grads.items():
                m, v = self.moments.setdefault((number, name), (g * 0, g * 0))
                m *= self.beta1
                m += (1.0 - self.beta1) * g
                v *= self.beta2
                v += (1.0 - self.beta2) * (g * g)
                layer[name] -= self.learning_rate * (m / first_correction) / ((v / second_correction) ** 0.5 + self.eps)


def make_optimizer(name: str, learning_rate: float) -> Any:
    """``"sgd"`` (momentum 0.9) or ``"adam"`` with ``learning_rate``."""
    if name == "sgd":
        return SGD(learning_rate)
    if name == "adam":
        return Adam(learning_rate)
    raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
