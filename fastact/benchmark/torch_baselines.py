"""The PyTorch baseline, like for like with fastact: same work, same output handling, same threads.

*Same output handling.*  Where PyTorch has an ``out=`` overload of the op's
kernel (``torch.ops.aten.<op>.out`` forward; ``<op>_backward.grad_input`` /
``.out`` backward), PyTorch writes into a preallocated output and is compared
with fastact writing into ``out=``: mode ``"out"``.  Where PyTorch has none
(``prelu`` forward and backward, ``mish_backward``) or fastact takes no
``out=`` (``bias_act_backward``, the matmul-based fused calls) both sides
allocate their results: mode ``"alloc"``.  :data:`NO_OUT_OVERLOAD` lists the
PyTorch kernels without an ``out=`` overload.

*Same work.*  The timed PyTorch call is the ATen kernel that
``torch.nn.functional`` (forward) or autograd (backward) runs, without the
autograd engine, with fastact's parameters (PyTorch's own defaults differ:
leaky_relu's slope is 0.01 there, 0.2 in fastact).  Four backward kernels
take the forward's *output* y where fastact's backward takes the input x and
recomputes: ``sigmoid_backward``, ``tanh_backward``,
``_softmax_backward_data`` and ``_log_softmax_backward_data`` (y is computed
once per input set, outside the timed region).  Both sides still read two
arrays and write one: the same bytes.  :func:`compare` checks, once per op,
direction and dtype, that PyTorch's result equals fastact's within the
dtype's tolerance, so a row can only compare the same function with the same
parameters.

The matmul-based fused calls (``dense_bias_act``, ``conv2d_bias_act``) are
compared with PyTorch's functional graph (``addmm`` / ``conv2d`` with the
bias, then ``F.relu``) forward, and with ``torch.autograd.grad`` on that graph
(built before timing, ``retain_graph=True``) backward: both sides allocate.

*Same threads.*  :meth:`TorchBaseline.load` sets ``torch.set_num_threads`` to
fastact's thread count.

The tensors share memory with the benchmark's arrays (``torch.from_numpy`` on
the host, DLPack on the GPU), so PyTorch reads the very same inputs and, in
mode "out", writes the very same output buffer fastact writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SOFTPLUS_THRESHOLD = 20.0  # PyTorch's default: linear above 20, where log1p(exp(x)) == x in float32 anyway

# PyTorch kernels without an out= overload (torch 2.x): their rows time both sides allocating.
NO_OUT_OVERLOAD = {
    ("mish", "backward"): "aten.mish_backward",
    ("prelu", "forward"): "aten._prelu_kernel (F.prelu)",
    ("prelu", "backward"): "aten._prelu_kernel_backward",
}

# Largest |torch - fastact| allowed, as a fraction of max |fastact| over the array.  Wide enough
# for two float32 evaluations of the same function rounded to the dtype; narrow enough, in
# float32, to tell leaky_relu(0.2) from leaky_relu(0.1) or exact gelu from its tanh form (4e-5).
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 4e-3, "bfloat16": 3e-2}


@dataclass(frozen=True)
class Kernels:
    """An activation's ATen kernels: f(x, p, out) forward, f(dy, x, y, p, out) backward.

    A kernel of mode "alloc" ignores ``out`` and returns a new tensor.
    """

    forward: Callable
    backward: Callable
    names: tuple[str, str]
    backward_mode: str = "out"
    backward_reads_output: bool = False  # the backward kernel takes y, not x


def _kernels(torch: Any) -> dict[str, Kernels]:
    """Registry name -> the ATen kernels PyTorch runs for it, with fastact's parameters."""
    aten = torch.ops.aten

    def gelu_mode(p: dict) -> str:
        return "tanh" if p.get("approximate") else "none"

    return {
        "relu": Kernels(
            lambda x, p, out: aten.relu.out(x, out=out),
            lambda dy, x, y, p, out: aten.threshold_backward.grad_input(dy, x, 0.0, grad_input=out),
            ("aten.relu.out", "aten.threshold_backward.grad_input"),
        ),
        "leaky_relu": Kernels(
            lambda x, p, out: aten.leaky_relu.out(x, p["alpha"], out=out),
            lambda dy, x, y, p, out: aten.leaky_relu_backward.grad_input(dy, x, p["alpha"], False, grad_input=out),
            ("aten.leaky_relu.out", "aten.leaky_relu_backward.grad_input"),
        ),
        "relu6": Kernels(  # F.relu6 is hardtanh(x, 0, 6)
            lambda x, p, out: aten.hardtanh.out(x, 0.0, 6.0, out=out),
            lambda dy, x, y, p, out: aten.hardtanh_backward.grad_input(dy, x, 0.0, 6.0, grad_input=out),
            ("aten.hardtanh.out", "aten.hardtanh_backward.grad_input"),
        ),
        "thresholded_relu": Kernels(  # F.threshold(x, theta, 0)
            lambda x, p, out: aten.threshold.out(x, p["theta"], 0.0, out=out),
            lambda dy, x, y, p, out: aten.threshold_backward.grad_input(dy, x, p["theta"], grad_input=out),
            ("aten.threshold.out", "aten.threshold_backward.grad_input"),
        ),
        "elu": Kernels(
            lambda x, p, out: aten.elu.out(x, p["alpha"], 1.0, 1.0, out=out),
            lambda dy, x, y, p, out: aten.elu_backward.grad_input(dy, p["alpha"], 1.0, 1.0, False, x, grad_input=out),
            ("aten.elu.out", "aten.elu_backward.grad_input"),
        ),
        # torch.selu runs elu with SELU's constants; aten.selu has no out= overload, elu.out is the same kernel.
        "selu": Kernels(
            lambda x, p, out: aten.elu.out(x, SELU_ALPHA, SELU_SCALE, 1.0, out=out),
            lambda dy, x, y, p, out: aten.elu_backward.grad_input(dy, SELU_ALPHA, SELU_SCALE, 1.0, False, x, grad_input=out),
            ("aten.elu.out (SELU constants)", "aten.elu_backward.grad_input (SELU constants)"),
        ),
        "gelu": Kernels(
            lambda x, p, out: aten.gelu.out(x, approximate=gelu_mode(p), out=out),
            lambda dy, x, y, p, out: aten.gelu_backward.grad_input(dy, x, approximate=gelu_mode(p), grad_input=out),
            ("aten.gelu.out", "aten.gelu_backward.grad_input"),
        ),
        "silu": Kernels(
            lambda x, p, out: aten.silu.out(x, out=out),
            lambda dy, x, y, p, out: aten.silu_backward.grad_input(dy, x, grad_input=out),
            ("aten.silu.out", "aten.silu_backward.grad_input"),
        ),
        "softplus": Kernels(
            lambda x, p, out: aten.softplus.out(x, 1.0, SOFTPLUS_THRESHOLD, out=out),
            lambda dy, x, y, p, out: aten.softplus_backward.grad_input(dy, x, 1.0, SOFTPLUS_THRESHOLD, grad_input=out),
            ("aten.softplus.out", "aten.softplus_backward.grad_input"),
        ),
        "sigmoid": Kernels(
            lambda x, p, out: aten.sigmoid.out(x, out=out),
            lambda dy, x, y, p, out: aten.sigmoid_backward.grad_input(dy, y, grad_input=out),
            ("aten.sigmoid.out", "aten.sigmoid_backward.grad_input (reads y)"),
            backward_reads_output=True,
        ),
        "tanh": Kernels(
            lambda x, p, out: aten.tanh.out(x, out=out),
            lambda dy, x, y, p, out: aten.tanh_backward.grad_input(dy, y, grad_input=out),
            ("aten.tanh.out", "aten.tanh_backward.grad_input (reads y)"),
            backward_reads_output=True,
        ),
        "hard_sigmoid": Kernels(
            lambda x, p, out: aten.hardsigmoid.out(x, out=out),
            lambda dy, x, y, p, out: aten.hardsigmoid_backward.grad_input(dy, x, grad_input=out),
            ("aten.hardsigmoid.out", "aten.hardsigmoid_backward.grad_input"),
        ),
        "hard_silu": Kernels(
            lambda x, p, out: aten.hardswish.out(x, out=out),
            lambda dy, x, y, p, out: aten.hardswish_backward.out(dy, x, out=out),
            ("aten.hardswish.out", "aten.hardswish_backward.out"),
        ),
        "mish": Kernels(
            lambda x, p, out: aten.mish.out(x, out=out),
            lambda dy, x, y, p, out: aten.mish_backward.default(dy, x),
            ("aten.mish.out", "aten.mish_backward (no out= overload)"),
            backward_mode="alloc",
        ),
        "softmax": Kernels(
            lambda x, p, out: aten._softmax.out(x, p["axis"], False, out=out),
            lambda dy, x, y, p, out: aten._softmax_backward_data.out(dy, y, p["axis"], x.dtype, grad_input=out),
            ("aten._softmax.out", "aten._softmax_backward_data.out (reads y)"),
            backward_reads_output=True,
        ),
        "log_softmax": Kernels(
            lambda x, p, out: aten._log_softmax.out(x, p["axis"], False, out=out),
            lambda dy, x, y, p, out: aten._log_softmax_backward_data.out(dy, y, p["axis"], x.dtype, out=out),
            ("aten._log_softmax.out", "aten._log_softmax_backward_data.out (reads y)"),
            backward_reads_output=True,
        ),
    }


def functional(torch: Any) -> dict[str, Callable]:
    """Registry name -> the ``torch.nn.functional`` call f(x, params), with fastact's params: what a PyTorch user writes."""
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
        "softmax": lambda x, p: F.softmax(x, p["axis"]),
        "log_softmax": lambda x, p: F.log_softmax(x, p["axis"]),
    }


@dataclass(frozen=True)
class TorchImpl:
    """PyTorch's side of one workload: ``prepare(args)`` once per input set, then ``call(args)``, timed.

    ``mode`` is "out" (writes into the tensor over ``args["out"]``) or
    "alloc" (returns new tensors); ``kernel`` says what runs.
    """

    mode: str
    prepare: Callable[[dict], None]
    call: Callable[[dict], Any]
    kernel: str


class TorchBaseline:
    """PyTorch on the benchmark's device; ``TorchBaseline.load(device, threads)`` is None without PyTorch."""

    def __init__(self, torch: Any, device_name: str) -> None:
        self.torch = torch
        self.device_name = device_name
        self.kernels = _kernels(torch)
        self.functional = functional(torch)

    @classmethod
    def load(cls, device_name: str, threads: int | None = None) -> "TorchBaseline | None":
        """PyTorch, after ``torch.set_num_threads(threads)`` where given (fastact's thread count)."""
        try:
            import torch
        except ImportError:
            return None
        if device_name == "cuda" and not torch.cuda.is_available():
            return None
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return cls(torch, device_name)

    @property
    def threads(self) -> int:
        return int(self.torch.get_num_threads())

    def tensor(self, a: Any) -> Any:
        """A tensor sharing ``a``'s memory."""
        if self.device_name == "cuda":
            return self.torch.from_dlpack(a)
        if a.dtype.name == "bfloat16":  # torch.from_numpy does not know ml_dtypes' bfloat16
            return self.torch.from_numpy(a.view(np.uint16)).view(self.torch.bfloat16)
        return self.torch.from_numpy(a)

    def _tensors(self, args: dict, names: tuple[str, ...]) -> dict:
        return {name: self.tensor(args[name]) for name in names if name in args}

    # ------------------------------------------------------------------ #
    # PyTorch's side of each form.
    # ------------------------------------------------------------------ #
    def activation(self, name: str, params: dict, direction: str) -> TorchImpl | None:
        """PyTorch's kernel for activation ``name`` with ``params`` in ``direction``; None where it has none."""
        kernels = self.kernels.get(name)
        if kernels is None:
            return None
        if direction == "forward":

            def prepare(args: dict) -> None:
                args["torch"] = self._tensors(args, ("x", "out"))

            return TorchImpl(
                "out", prepare, lambda args: kernels.forward(args["torch"]["x"], params, args["torch"]["out"]), kernels.names[0]
            )

        def prepare_backward(args: dict) -> None:
            tensors = self._tensors(args, ("dy", "x", "out"))
            if kernels.backward_reads_output:
                x = tensors["x"]
                tensors["y"] = kernels.forward(x, params, self.torch.empty_like(x))
            args["torch"] = tensors

        def backward(args: dict) -> Any:
            t = args["torch"]
            return kernels.backward(t["dy"], t["x"], t.get("y"), params, t.get("out"))

        return TorchImpl(kernels.backward_mode, prepare_backward, backward, kernels.names[1])

    def prelu(self, direction: str) -> TorchImpl:
        """F.prelu forward; backward what autograd runs (``_prelu_kernel_backward``, then dalpha summed to alpha's shape)."""
        torch = self.torch

        def prepare(args: dict) -> None:
            tensors = self._tensors(args, ("dy", "x", "alpha"))
            x, alpha = tensors["x"], tensors["alpha"]
            # fastact's alpha broadcasts against x: () or (C, 1) for (N, C, S); PyTorch's kernel takes it so too.
            tensors["weight"] = alpha.reshape((1,) * (x.dim() - alpha.dim()) + tuple(alpha.shape))
            args["torch"] = tensors

        if direction == "forward":
            return TorchImpl(
                "alloc", prepare,
                lambda args: torch.nn.functional.prelu(args["torch"]["x"], args["torch"]["alpha"].reshape(-1)),
                "F.prelu (aten._prelu_kernel: no out= overload)",
            )

        def backward(args: dict) -> Any:
            t = args["torch"]
            dx, dweight = torch.ops.aten._prelu_kernel_backward(t["dy"], t["x"], t["weight"])
            return dx, dweight.sum_to_size(t["weight"].shape)

        return TorchImpl("alloc", prepare, backward, "aten._prelu_kernel_backward + sum_to_size (no out= overload)")

    def bias_act(self, activation: str, direction: str) -> TorchImpl | None:
        """``x + bias`` then the activation, as a PyTorch user computes it (PyTorch has no fused op); relu only.

        Forward: ``add(x, bias, out=y)`` then ``relu_`` on y: mode "out", two
        passes.  Backward (fastact's takes no out=): ``threshold_backward`` on
        relu's output y (what autograd saves and runs), then the bias gradient
        summed over the batch and spatial axes: mode "alloc".
        """
        if activation != "relu":
            return None
        torch, aten = self.torch, self.torch.ops.aten

        def prepare(args: dict) -> None:
            tensors = self._tensors(args, ("dy", "x", "bias", "out"))
            tensors["bias"] = tensors["bias"].reshape(-1, 1)  # along axis 1 of (N, C, S)
            if direction == "backward":
                tensors["y"] = torch.relu(tensors["x"] + tensors["bias"])
            args["torch"] = tensors

        if direction == "forward":

            def forward(args: dict) -> Any:
                t = args["torch"]
                aten.add.out(t["x"], t["bias"], out=t["out"])
                return aten.relu_(t["out"])

            return TorchImpl("out", prepare, forward, "aten.add.out + aten.relu_ (two passes)")

        def backward(args: dict) -> Any:
            t = args["torch"]
            dz = aten.threshold_backward.default(t["dy"], t["y"], 0.0)
            return dz, dz.sum(dim=(0, 2))

        return TorchImpl("alloc", prepare, backward, "aten.threshold_backward + sum (fastact's backward takes no out=)")

    def graph(self, forward: Callable, direction: str, inputs: tuple[str, ...], kernel: str) -> TorchImpl:
        """``forward(*tensors of inputs)`` (a functional graph), or autograd.grad on it backward: both allocate.

        For backward the graph is built once per input set in ``prepare``,
        outside the timed region; the timed call is
        ``torch.autograd.grad(y, inputs, dy, retain_graph=True)``: PyTorch's
        backward kernels plus the autograd engine a PyTorch user pays for.
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
            return TorchImpl("alloc", prepare, lambda args: forward(*args["torch"]), kernel)
        return TorchImpl(
            "alloc", prepare,
            lambda args: torch.autograd.grad(args["torch"][0], args["torch"][1], args["torch"][2], retain_graph=True),
            f"torch.autograd.grad of {kernel}",
        )

    def to_host(self, a: Any) -> np.ndarray:
        """A fastact result (NumPy or CuPy array) or a PyTorch tensor as a float64 NumPy array."""
        if isinstance(a, self.torch.Tensor):
            a = a.detach().cpu()
            if a.dtype == self.torch.bfloat16:
                a = a.float()
            return a.numpy().astype(np.float64)
        if hasattr(a, "get"):  # CuPy
            a = a.get()
        return np.asarray(a).astype(np.float64)


def _results(value: Any) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def compare(torch: TorchBaseline, ours: Any, theirs: Any, dtype: str) -> dict:
    """Whether PyTorch's result(s) equal fastact's within ``TOLERANCE[dtype]`` of each array's scale.

    ``ours`` and ``theirs``: an array or a tuple of arrays (dx, dalpha, ...),
    matched in order and compared flattened (fastact's dalpha (C, 1) against
    PyTorch's (C,)).  Equal values (infinities included) and NaN against NaN
    match.  Returns ``{"ok", "max_error", "tolerance"}`` (``reason`` where the
    results do not even have the same count or sizes).
    """
    tolerance = TOLERANCE.get(dtype, TOLERANCE["float32"])
    ours_list, theirs_list = _results(ours), _results(theirs)
    if len(ours_list) != len(theirs_list):
        return {"ok": False, "reason": f"{len(ours_list)} results against PyTorch's {len(theirs_list)}", "tolerance": tolerance}
    worst = 0.0
    for a, b in zip(ours_list, theirs_list):
        a, b = torch.to_host(a).ravel(), torch.to_host(b).ravel()
        if a.size != b.size:
            return {"ok": False, "reason": f"sizes {a.size} and {b.size}", "tolerance": tolerance}
        with np.errstate(invalid="ignore"):
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            scale = float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)) or 1.0
            error = np.where(same, 0.0, np.abs(a - b)) / scale
        worst = max(worst, float(np.nan_to_num(error, nan=np.inf, posinf=np.inf).max(initial=0.0)))
    return {"ok": bool(worst <= tolerance), "max_error": worst, "tolerance": tolerance}
