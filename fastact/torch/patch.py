"""``fastact.torch.patch(model)``: a model's torch.nn activations swapped for fastact's, in place."""
from __future__ import annotations

import torch

from . import nn as fastact_nn

_FUSABLE = (torch.nn.Linear, torch.nn.Conv2d)


def _replacement(module: torch.nn.Module) -> torch.nn.Module | None:
    """The fastact module computing what ``module`` computes, or None (not a torch.nn twin, or arguments fastact lacks)."""
    cls = fastact_nn.REPLACEMENTS.get(type(module))
    if cls is None or cls in (fastact_nn.Linear, fastact_nn.Conv2d):
        return None
    try:
        return cls.from_torch(module)
    except ValueError:  # e.g. Softplus(beta=2): torch's module stays
        return None


def _fused(layer: torch.nn.Module, activation: torch.nn.Module) -> torch.nn.Module | None:
    """A fused fastact Linear/Conv2d for ``layer`` followed by ``activation``, or None where they do not fuse."""
    if type(layer) not in _FUSABLE:
        return None
    act = activation if isinstance(activation, fastact_nn._Elementwise) else _replacement(activation)
    if not isinstance(act, fastact_nn._Elementwise):
        return None
    try:
        return fastact_nn.REPLACEMENTS[type(layer)].from_torch(layer, activation=act.fastact_activation())
    except ValueError:  # e.g. Conv2d(padding_mode="reflect")
        return None


def _patch_sequential(prefix: str, sequential: torch.nn.Sequential, replaced: dict) -> None:
    """Fuse each Linear/Conv2d with the activation right after it; the activation's slot becomes Identity.

    Identity keeps the Sequential's indices, so the state_dict keys of every later layer stay the same.
    """
    names = list(sequential._modules)
    for first, second in zip(names, names[1:]):
        layer, activation = sequential._modules[first], sequential._modules[second]
        fused = _fused(layer, activation)
        if fused is None:
            continue
        sequential._modules[first] = fused
        sequential._modules[second] = torch.nn.Identity()
        replaced[prefix + first] = layer
        replaced[prefix + second] = activation


def patch(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Replace, in place, the torch.nn activation modules of ``model`` by fastact's; return what was replaced.

    * Every module of a torch.nn activation class fastact has (``ReLU``, ``LeakyReLU``,
      ``ReLU6``, ``PReLU``, ``ELU``, ``SELU``, ``GELU``, ``SiLU``, ``Softplus``, ``Mish``,
      ``Hardsigmoid``, ``Hardswish``, ``Sigmoid``, ``Tanh``, ``Softmax``, ``LogSoftmax``; exactly
      that class, not a subclass) becomes its ``fastact.torch.nn`` twin, with the same arguments
      and parameter objects (an optimizer made before still trains them).
    * Inside a ``torch.nn.Sequential``, a ``Linear`` or ``Conv2d`` followed directly by an
      elementwise activation becomes one fused ``fastact.torch.nn.Linear``/``Conv2d`` (same
      parameters, state_dict compatible), and the activation's slot becomes ``torch.nn.Identity``.
    * Modules with arguments fastact does not compute (``Softplus(beta=2)``,
      ``Conv2d(padding_mode="reflect")``) are left as they are.  Forward hooks registered on a
      fused-away activation module no longer run.

    Returns ``{qualified name: the torch module that was replaced}``; the patched model computes
    what it computed before, within float rounding.

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.LeakyReLU(0.05), torch.nn.Flatten())
        >>> sorted(fastact.torch.patch(model))
        ['0', '1']
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"fastact.torch.patch: model must be a torch.nn.Module, got {type(model).__name__}")
    replaced: dict[str, torch.nn.Module] = {}
    for name, module in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        if isinstance(module, torch.nn.Sequential):
            _patch_sequential(prefix, module, replaced)
        for child_name, child in list(module._modules.items()):
            new = None if child is None or prefix + child_name in replaced else _replacement(child)
            if new is not None:
                module._modules[child_name] = new
                replaced[prefix + child_name] = child
    return replaced
