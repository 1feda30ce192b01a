"""The PyTorch baseline: what a PyTorch user calls for the same op, where PyTorch is installed.

Forward is PyTorch's own functional op (which allocates its result, as a
PyTorch user's call does).  Backward is what autograd runs for it: the graph
is built once per input set outside the timed region, and the timed call is
``torch.autograd.grad(y, inputs, dy, retain_graph=True)``, i.e. PyTorch's
backward kernels plus the autograd engine a PyTorch user pays for.

The tensors share memory with the benchmark's arrays (``torch.from_numpy`` on
the host, DLPack on the GPU), so PyTorch reads the very same inputs.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _activations(torch: Any) -> dict[str, Callable]:
    """Registry name -> f(x, params) with fastact's default params (PyTorch's own defaults differ)."""
    F = torch.nn.functional
    return {
        "relu": lambda x, p: F.relu(x),
        "leaky_relu": lambda x, p: F.leaky_relu(x, p["alpha"]),
        "relu6": lambda x, p: F.relu6(x),
        "thresholded_relu": lambda x, p: F.threshold(x, p["theta"], 0.0),
        "elu": lambda x, p: F.elu(x, p["alpha"]),
        "selu": lambda x, p: F.selu(x),
        "gelu": lambda x, p: F.gelu(x, approximate="tanh" if p["approximate"] else "none"),
        "silu": lambda x, p: F.silu(x),
        "softplus": lambda x, p: F.softplus(x),
        "sigmoid": lambda x, p: torch.sigmoid(x),
        "tanh": lambda x, p: torch.tanh(x),
        "hard_sigmoid": lambda x, p: F.hardsigmoid(x),
        "hard_silu": lambda x, p: F.hardswish(x),
        "mish": lambda x, p: F.mish(x),
        "softmax": lambda x, p: torch.softmax(x, p["axis"]),
        "log_softmax": lambda x, p: torch.log_softmax(x, p["axis"]),
    }


class TorchBaseline:
    """PyTorch on the benchmark's device; ``TorchBaseline.load(device)`` is None without PyTorch."""

    def __init__(self, torch: Any, device_name: str) -> None:
        self.torch = torch
        self.device_name = device_name
        self.activations = _activations(torch)

    @classmethod
    def load(cls, device_name: str) -> "TorchBaseline | None":
        try:
            import torch
        except ImportError:
            return None
        if device_name == "cuda" and not torch.cuda.is_available():
            return None
        return cls(torch, device_name)

    def activation(self, name: str, params: dict) -> Callable | None:
        """x -> PyTorch's activation ``name`` with ``params``, or None where PyTorch has none."""
        function = self.activations.get(name)
        return None if function is None else (lambda x: function(x, params))

    def tensor(self, a: Any) -> Any:
        """A tensor sharing ``a``'s memory."""
        if self.device_name == "cuda":
            return self.torch.from_dlpack(a)
        if a.dtype.name == "bfloat16":  # torch.from_numpy does not know ml_dtypes' bfloat16
            return self.torch.from_numpy(a.view(np.int16)).view(self.torch.bfloat16)
        return self.torch.from_numpy(a)

    def implementation(self, forward: Callable, direction: str, inputs: tuple[str, ...]) -> tuple[Callable, Callable]:
        """(prepare(args), call(args)) for ``forward(*tensors of inputs)`` in ``direction``.

        ``prepare`` adds the tensors (and, for backward, the autograd graph) to
        an input set once, outside the timed region.
        """
        torch = self.torch

        def prepare(args: dict) -> None:
            tensors = [self.tensor(args[name]) for name in inputs]
            if direction == "forward":
                args["torch"] = tensors
                return
            leaves = [t.detach().requires_grad_(True) for t in tensors]
            args["torch"] = (forward(*leaves), leaves, self.tensor(args["dy"]))

        if direction == "forward":
            return prepare, lambda args: forward(*args["torch"])
        return prepare, lambda args: torch.autograd.grad(args["torch"][0], args["torch"][1], args["torch"][2], retain_graph=True)
