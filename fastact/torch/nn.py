"""Drop-in torch.nn modules computed by fastact.

Each activation module subclasses its torch.nn twin (``fastact.torch.nn.LeakyReLU`` is a
``torch.nn.LeakyReLU``), so it takes the same arguments with the same defaults, holds the same
attributes and parameters (``PReLU.weight``) and loads the same state_dict; only ``forward``
changes, to one fastact op.  Where torch's module has an argument fastact's math lacks
(``Softplus(beta, threshold)``), torch's default is accepted and anything else refused.
``inplace=True`` is accepted and the result computed out of place: fastact's backward reads the
forward input, which an in-place forward would overwrite.

``Linear`` and ``Conv2d`` subclass torch's too and take one more argument, ``activation`` (a
fastact activation name or ``fastact.Activation``; default ``"linear"``, the identity, so that
they compute what torch's do): the layer, its bias and its activation in one fused call, with
fastact's backward.  ``Relu(alpha, max_value, threshold)`` is Keras' relu, which torch lacks.

    >>> import torch, fastact.torch
    >>> layer = fastact.torch.nn.Conv2d(1, 32, 3, activation=fastact.Activation("leaky_relu", alpha=0.05))
    >>> layer(torch.randn(8, 1, 28, 28)).shape
    torch.Size([8, 32, 26, 26])
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch

from ..functions import Activation
from . import _ops, ops

__all__ = [
    "ReLU", "LeakyReLU", "ReLU6", "PReLU", "ELU", "SELU", "GELU", "SiLU", "Softplus", "Mish", "Hardsigmoid",
    "Hardswish", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Relu", "Linear", "Conv2d",
]


class FastactModule:
    """What every fastact module adds to its torch twin: building one from an existing torch module."""

    def check(self) -> None:
        """Raise ValueError if the module's arguments ask for something fastact does not compute."""

    @classmethod
    def twin(cls) -> type:
        """The torch.nn class this module replaces."""
        return next(base for base in cls.__mro__[1:] if base.__module__.startswith("torch.nn"))

    @classmethod
    def from_torch(cls, module: torch.nn.Module, **attributes: Any) -> "FastactModule":
        """A fastact module computing what ``module`` (an instance of the twin) computes.

        It holds the same parameter and buffer objects (an optimizer built before still trains
        it), the same hooks and the same training flag, plus ``attributes`` (a fused layer's
        activation); ValueError where fastact cannot compute the module's arguments.
        """
        new = cls.__new__(cls)
        # The module's state, with its own copies of the containers (parameters, hooks, ...);
        # not a torch.compile'd forward of the old class (Module.compile() keeps one there).
        new.__dict__.update({k: v.copy() if isinstance(v, (dict, set)) else v for k, v in module.__dict__.items()
                             if k != "_compiled_call_impl"})
        new.__dict__.update(attributes)
        new.check()
        return new


class _Elementwise(FastactModule):
    """An elementwise activation module: its fastact activation, for fusing into Linear/Conv2d."""

    def fastact_activation(self) -> Activation:
        raise NotImplementedError


def _torch_default(twin: type, name: str) -> Any:
    return inspect.signature(twin.__init__).parameters[name].default


# --------------------------------------------------------------------------- #
# Activations with torch.nn's names and arguments
# --------------------------------------------------------------------------- #
class ReLU(_Elementwise, torch.nn.ReLU):
    """``torch.nn.ReLU`` computed by ``fastact.torch.relu``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.relu(input)

    def fastact_activation(self) -> Activation:
        return Activation("relu")


class LeakyReLU(_Elementwise, torch.nn.LeakyReLU):
    """``torch.nn.LeakyReLU(negative_slope=0.01)`` computed by ``fastact.torch.leaky_relu``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.leaky_relu(input, self.negative_slope)

    def fastact_activation(self) -> Activation:
        return Activation("leaky_relu", alpha=self.negative_slope)


class ReLU6(_Elementwise, torch.nn.ReLU6):
    """``torch.nn.ReLU6`` computed by ``fastact.torch.relu6``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.relu6(input)

    def fastact_activation(self) -> Activation:
        return Activation("relu6")


class ELU(_Elementwise, torch.nn.ELU):
    """``torch.nn.ELU(alpha=1.0)`` computed by ``fastact.torch.elu``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.elu(input, self.alpha)

    def fastact_activation(self) -> Activation:
        return Activation("elu", alpha=self.alpha)


class SELU(_Elementwise, torch.nn.SELU):
    """``torch.nn.SELU`` computed by ``fastact.torch.selu``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.selu(input)

    def fastact_activation(self) -> Activation:
        return Activation("selu")


_GELU_FORMS = {"none": False, "tanh": True}


class GELU(_Elementwise, torch.nn.GELU):
    """``torch.nn.GELU(approximate='none')`` computed by ``fastact.torch.gelu`` ('tanh': the tanh form)."""

    def check(self) -> None:
        if self.approximate not in _GELU_FORMS:
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {self.approximate!r}")

    def __init__(self, approximate: str = "none") -> None:
        super().__init__(approximate)
        self.check()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        approximate = _GELU_FORMS.get(self.approximate)
        if approximate is None:
            self.check()
        return ops.gelu(input, approximate)

    def fastact_activation(self) -> Activation:
        return Activation("gelu", approximate=_GELU_FORMS[self.approximate])


class SiLU(_Elementwise, torch.nn.SiLU):
    """``torch.nn.SiLU`` computed by ``fastact.torch.silu``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.silu(input)

    def fastact_activation(self) -> Activation:
        return Activation("silu")


_SOFTPLUS_DEFAULTS = {name: _torch_default(torch.nn.Softplus, name) for name in ("beta", "threshold")}


class Softplus(_Elementwise, torch.nn.Softplus):
    """``torch.nn.Softplus()`` computed by ``fastact.torch.softplus``: ``log(1 + exp(x))``.

    Only torch's defaults (beta=1, threshold=20) are accepted: fastact computes softplus exactly
    for every x (torch switches to the identity above ``threshold / beta``, where the two
    differ by less than ``exp(-20)``), and has no ``beta``.
    """

    def __init__(self, beta: float = _SOFTPLUS_DEFAULTS["beta"], threshold: float = _SOFTPLUS_DEFAULTS["threshold"]) -> None:
        super().__init__(beta, threshold)
        self.check()

    def check(self) -> None:
        for name, default in _SOFTPLUS_DEFAULTS.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"fastact.torch.nn.Softplus: {name}={getattr(self, name)!r} is not supported; fastact computes "
                    f"softplus with torch's defaults only ({name}={default!r}); use torch.nn.Softplus for other values"
                )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.check()
        return ops.softplus(input)

    def fastact_activation(self) -> Activation:
        return Activation("softplus")


class Mish(_Elementwise, torch.nn.Mish):
    """``torch.nn.Mish`` computed by ``fastact.torch.mish``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.mish(input)

    def fastact_activation(self) -> Activation:
        return Activation("mish")


class Hardsigmoid(_Elementwise, torch.nn.Hardsigmoid):
    """``torch.nn.Hardsigmoid`` computed by ``fastact.torch.hard_sigmoid``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.hard_sigmoid(input)

    def fastact_activation(self) -> Activation:
        return Activation("hard_sigmoid")


class Hardswish(_Elementwise, torch.nn.Hardswish):
    """``torch.nn.Hardswish`` computed by ``fastact.torch.hard_silu``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.hard_silu(input)

    def fastact_activation(self) -> Activation:
        return Activation("hard_silu")


class Sigmoid(_Elementwise, torch.nn.Sigmoid):
    """``torch.nn.Sigmoid`` computed by ``fastact.torch.sigmoid``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.sigmoid(input)

    def fastact_activation(self) -> Activation:
        return Activation("sigmoid")


class Tanh(_Elementwise, torch.nn.Tanh):
    """``torch.nn.Tanh`` computed by ``fastact.torch.tanh``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.tanh(input)

    def fastact_activation(self) -> Activation:
        return Activation("tanh")


def _softmax_dim(module: str, dim: int | None, ndim: int) -> int:
    """torch's legacy rule for ``dim=None`` (dim 0 for 0-, 1- and 3-d input, else 1), with torch's warning."""
    if dim is not None:
        return dim
    warnings.warn(
        f"Implicit dimension choice for {module} has been deprecated. Change the call to include dim=X as an argument.",
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(FastactModule, torch.nn.Softmax):
    """``torch.nn.Softmax(dim=None)`` computed by ``fastact.torch.softmax`` along ``dim``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.softmax(input, _softmax_dim("softmax", self.dim, input.dim()))


class LogSoftmax(FastactModule, torch.nn.LogSoftmax):
    """``torch.nn.LogSoftmax(dim=None)`` computed by ``fastact.torch.log_softmax`` along ``dim``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.log_softmax(input, _softmax_dim("log_softmax", self.dim, input.dim()))


class PReLU(FastactModule, torch.nn.PReLU):
    """``torch.nn.PReLU(num_parameters=1, init=0.25)`` computed by ``fastact.torch.prelu``.

    As torch: one slope for all, or ``num_parameters`` slopes along dim 1 (the channels) of the input.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if weight.numel() == 1:
            alpha = weight.reshape(())
        elif input.dim() >= 2:
            alpha = weight.reshape(weight.shape[0], *(1,) * (input.dim() - 2))
        else:
            raise ValueError(
                f"PReLU: {weight.numel()} slopes need an input with the channels in dim 1, got shape {tuple(input.shape)}"
            )
        return ops.prelu(input, alpha)


class Relu(_Elementwise, torch.nn.Module):
    """Keras' relu as a module: ``Relu(alpha=0.0, max_value=None, threshold=0.0)`` (``fastact.torch.relu``)."""

    def __init__(self, alpha: float = 0.0, max_value: float | None = None, threshold: float = 0.0) -> None:
        super().__init__()
        Activation("relu", alpha=alpha, max_value=max_value, threshold=threshold)  # validate now
        self.alpha, self.max_value, self.threshold = alpha, max_value, threshold

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return ops.relu(input, self.alpha, self.max_value, self.threshold)

    def fastact_activation(self) -> Activation:
        return Activation("relu", alpha=self.alpha, max_value=self.max_value, threshold=self.threshold)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, max_value={self.max_value}, threshold={self.threshold}"


# --------------------------------------------------------------------------- #
# Fused layers
# --------------------------------------------------------------------------- #
def _on_torchs_primitive(input: torch.Tensor, weight: torch.Tensor, bias: Any) -> bool:
    """Whether a fused Linear/Conv2d computes its product or convolution with torch's primitive (F.linear,
    F.conv2d) then fastact's activation: float32/float64 CPU input, weight and bias in its dtype (anything
    else takes the fused call, whose checks say what is wrong)."""
    return (_ops.torch_linear_part(input) and weight.dtype is input.dtype
            and (bias is None or bias.dtype is input.dtype))


class Linear(FastactModule, torch.nn.Linear):
    """``torch.nn.Linear`` with a fused activation: ``act(x @ weight.T + bias)`` in one fastact call.

    ``Linear(in_features, out_features, bias=True, device=None, dtype=None, activation="linear")``:
    torch's arguments, parameters and initialization, plus ``activation`` (a name or
    ``fastact.Activation``; any elementwise activation).  The call is ``fastact.torch.dense_bias_act``:
    on float32/float64 CPU tensors torch's ``F.linear`` with the bias (its backward for x, w and b)
    and fastact's activation, forward and backward; elsewhere fastact's whole fused call.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 activation: Any = "linear") -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.activation = activation
        self.check()

    def check(self) -> None:
        _ops.activation_key("Linear", self.activation)

    @classmethod
    def from_torch(cls, module: torch.nn.Linear, activation: Any = "linear") -> "Linear":
        return super().from_torch(module, activation=activation)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if _on_torchs_primitive(input, weight, bias):
            # What fastact.torch.dense_bias_act computes here, without its argument checks and the two
            # transposes of weight it takes in Keras' layout (two more autograd nodes); _ops.activation_after_primitive.
            z = torch.nn.functional.linear(input, weight, bias)
            return _ops.activation_after_primitive(z, _ops.fused_activation("Linear", self.activation))
        return ops.dense_bias_act(input, weight.t(), bias, self.activation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class Conv2d(FastactModule, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` with a fused activation: ``act(conv2d(x, weight) + bias)`` in one fastact call.

    torch's arguments (``in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
    groups=1, bias=True, padding_mode='zeros', device=None, dtype=None``), parameters and
    initialization, plus ``activation`` (default ``"linear"``).  ``padding_mode`` must be
    ``'zeros'`` (fastact pads with zeros).  Batched (N, C, H, W) and unbatched (C, H, W) input.
    The call is ``fastact.torch.conv2d_bias_act`` (on float32/float64 CPU tensors torch's convolution
    with the bias, then fastact's activation).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None,
                 dtype=None, activation: Any = "linear") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.activation = activation
        self.check()

    def check(self) -> None:
        if self.padding_mode != "zeros":
            raise ValueError(
                f"fastact.torch.nn.Conv2d: padding_mode={self.padding_mode!r} is not supported; fastact pads with "
                f"zeros (padding_mode='zeros')"
            )
        _ops.activation_key("Conv2d", self.activation)

    @classmethod
    def from_torch(cls, module: torch.nn.Conv2d, activation: Any = "linear") -> "Conv2d":
        return super().from_torch(module, activation=activation)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if _on_torchs_primitive(input, weight, bias):
            # torch's own Conv2d forward (padding_mode "zeros"), then fastact's activation: what
            # fastact.torch.conv2d_bias_act computes here, without its geometry checks (torch's module
            # checked its arguments; F.conv2d checks the input as torch's Conv2d does).
            z = torch.nn.functional.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
            return _ops.activation_after_primitive(z, _ops.fused_activation("Conv2d", self.activation))
        unbatched = input.dim() == 3
        x = input.unsqueeze(0) if unbatched else input
        y = ops.conv2d_bias_act(x, self.weight, self.bias, self.activation, stride=self.stride,
                                padding=self.padding, dilation=self.dilation, groups=self.groups)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


# torch.nn class -> the fastact module that replaces it (fastact.torch.patch).
REPLACEMENTS: dict[type, type] = {
    cls.twin(): cls
    for cls in (ReLU, LeakyReLU, ReLU6, ELU, SELU, GELU, SiLU, Softplus, Mish, Hardsigmoid, Hardswish, Sigmoid,
                Tanh, Softmax, LogSoftmax, PReLU, Linear, Conv2d)
}
