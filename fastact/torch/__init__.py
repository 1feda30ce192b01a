"""fastact inside PyTorch models: ops with autograd, drop-in modules, and a one-line patch.

* ``fastact.torch.NAME(x, <params>)``: every fastact activation on torch tensors, with autograd
  (``leaky_relu(x, 0.1)``, ``relu(x, alpha, max_value, threshold)``, ``softmax(x, axis)``,
  ``prelu(x, alpha)``), and the fused ``bias_act``, ``dense_bias_act``, ``conv2d_bias_act``.
  Each is a custom op ``torch.ops.fastact.NAME`` (``torch.compile(fullgraph=True)`` sees no
  graph break).  CPU tensors run on fastact's host backend and CUDA tensors on its CUDA kernels
  (on torch's current stream), zero-copy.  Once ``fastact.torch`` is imported, the host
  backend's kernels run on torch's own OpenMP threads (``torch.get_num_threads()`` of them at
  most), not on a second pool competing with torch's.
* ``fastact.torch.nn``: modules with torch.nn's names, arguments and defaults (``LeakyReLU``,
  ``PReLU``, ``GELU``, ...), the Keras-style ``Relu``, and fused ``Linear``/``Conv2d`` with
  ``activation=``.
* ``fastact.torch.patch(model)``: swaps a model's torch.nn activations (and Linear/Conv2d followed
  by an activation in a Sequential) for fastact's, in place.

    >>> import torch, fastact.torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LeakyReLU(0.1), torch.nn.Linear(8, 1))
    >>> replaced = fastact.torch.patch(model)

``import fastact`` never imports torch; ``import fastact.torch`` needs it (``pip install fastact[torch]``).
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as _error:  # pragma: no cover - the torch extra installs it
    raise ImportError(
        "fastact.torch needs PyTorch (>= 2.4): pip install 'fastact[torch]' or see https://pytorch.org"
    ) from _error

from . import nn
from ._threads import share_torch_threads as _share_torch_threads
from .ops import *  # noqa: F401,F403  (every activation and fused call)
from .ops import __all__ as _ops_all
from .patch import patch

__all__ = [*_ops_all, "nn", "patch"]

# fastact's cpu kernels run on torch's OpenMP threads from now on, not on a pool competing with them.
_share_torch_threads()
