"""Per-element cost of the cpu backend's kernels on ONE core, against PyTorch's on one core.

What a kernel costs in compute, apart from memory bandwidth and thread hand-offs:
2**20 elements (4 MiB of float32, cache-resident on most CPUs), one thread on
each side (``engine.set_threads(1)``, ``torch.set_num_threads(1)``), CPU time of
the calling thread (``time.thread_time``, less disturbed by other jobs than wall
time), best of 7 repetitions of 10 calls.  Both sides write into a preallocated
output with the same parameters as ``bench_vs_torch.py``; torch's sigmoid and
tanh backward take the forward's output y, fastact's take x (its API).

    python bench/bench_cpu_costs.py [--dtypes float32 bfloat16 float16] [--ops relu gelu ...]

The README's per-element figures (16-bit conversions, the smooth kernels) come from here.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fastact.backends import load

N = 1 << 20

# op -> (fastact kernel, kernel params, torch forward(x, y), torch backward(dy, x, y_saved, dx))
def _torch_ops():
    import torch

    nn, aten = torch._C._nn, torch.ops.aten
    return {
        "leaky_relu": ("relu", dict(alpha=0.1, max_value=None, threshold=0.0),
                       lambda x, y: nn.leaky_relu(x, 0.1, out=y),
                       lambda dy, x, ys, dx: aten.leaky_relu_backward.grad_input(dy, x, 0.1, False, grad_input=dx)),
        "elu": ("elu", dict(alpha=1.0, scale=1.0), lambda x, y: nn.elu(x, out=y),
                lambda dy, x, ys, dx: aten.elu_backward.grad_input(dy, 1.0, 1.0, 1.0, False, x, grad_input=dx)),
        "gelu": ("gelu", dict(approximate=False), lambda x, y: nn.gelu(x, out=y),
                 lambda dy, x, ys, dx: aten.gelu_backward.grad_input(dy, x, grad_input=dx)),
        "silu": ("silu", {}, lambda x, y: nn.silu(x, out=y),
                 lambda dy, x, ys, dx: aten.silu_backward.grad_input(dy, x, grad_input=dx)),
        "sigmoid": ("sigmoid", {}, lambda x, y: torch.sigmoid(x, out=y),
                    lambda dy, x, ys, dx: aten.sigmoid_backward.grad_input(dy, ys, grad_input=dx)),
        "tanh": ("tanh", {}, lambda x, y: torch.tanh(x, out=y),
                 lambda dy, x, ys, dx: aten.tanh_backward.grad_input(dy, ys, grad_input=dx)),
        "softplus": ("softplus", {}, lambda x, y: nn.softplus(x, 1, 20, out=y),
                     lambda dy, x, ys, dx: aten.softplus_backward.grad_input(dy, x, 1, 20, grad_input=dx)),
        "mish": ("mish", {}, lambda x, y: nn.mish(x, out=y), lambda dy, x, ys, dx: aten.mish_backward(dy, x)),
    }


def _best(call) -> float:
    call()
    best = float("inf")
    for _ in range(7):
        start = time.thread_time()
        for _ in range(10):
            call()
        best = min(best, (time.thread_time() - start) / 10)
    return best


def main() -> None:
    import torch
    import ml_dtypes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "float16"])
    parser.add_argument("--ops", nargs="+", default=None)
    args = parser.parse_args()
    cpu = load("cpu")
    cpu.engine.set_threads(1)
    torch.set_num_threads(1)
    ops = _torch_ops()
    print(f"# one core, {N} elements, ns per element (fastact / torch); cpu module: {cpu.engine.isa}")
    print("| op | dtype | fastact fwd | torch fwd | fastact bwd | torch bwd |")
    print("|---|---|---|---|---|---|")
    for dtype_name in args.dtypes:
        dtype = np.dtype(ml_dtypes.bfloat16) if dtype_name == "bfloat16" else np.dtype(dtype_name)
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(N, dtype=np.float32) * 3).astype(dtype)
        dy = rng.standard_normal(N, dtype=np.float32).astype(dtype)
        y, dx = np.empty_like(x), np.empty_like(x)

        def tensor(a):
            if dtype_name == "bfloat16":
                return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
            return torch.from_numpy(a)

        tx, tdy, ty, tdx = tensor(x), tensor(dy), tensor(y), tensor(dx)
        for op in args.ops or ops:
            kernel, params, torch_forward, torch_backward = ops[op]
            number, packed = cpu.functor(kernel, params, dtype)
            xb, dyb, yb, dxb = (cpu.buffer(a) for a in (x, dy, y, dx))
            ys = torch.empty_like(tx)
            torch_forward(tx, ys)  # the saved output, for the backwards that take it
            costs = [
                _best(lambda: cpu.engine.elementwise(number, False, packed, yb, xb)),
                _best(lambda: torch_forward(tx, ty)),
                _best(lambda: cpu.engine.elementwise(number, True, packed, dxb, dyb, xb)),
                _best(lambda: torch_backward(tdy, tx, ys, tdx)),
            ]
            print(f"| {op} | {dtype_name} | " + " | ".join(f"{c / N * 1e9:.2f}" for c in costs) + " |")


if __name__ == "__main__":
    main()
