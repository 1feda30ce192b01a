"""fastact.torch against PyTorch on CPU tensors: small-call cost, large-tensor speed, a training step.

Four measurements, each timed by the benchmark's interleaved timer
(``fastact.benchmark.timing.interleaved``: the implementations alternate round by
round, each round's ratio is taken, and the median ratio reported with p20/p80),
so the noise of a shared machine cancels in the ratios, not in the absolute times:

1. **small calls** (1 Ki float32 elements, timed in the calling thread's CPU time,
   since both sides run there; and 64 Ki, wall time, where the per-call cost is
   amortized): ``fastact.torch.OP(x)`` against torch's ``F.OP(x)``, both allocating
   their result, without autograd (``forward``) and as forward + backward of a tensor
   that requires grad (``autograd``).  Goal for 1 Ki: <= 2x.
2. **where the time goes** in a small ``fastact.torch.leaky_relu`` call: its pieces
   timed alone (the small-call branch a contiguous tensor without autograd takes: its
   checks, the result's allocation, the module call by address; the op's pointer path
   (a first call's); the general path a strided tensor takes: the tensor -> NumPy view,
   fastact's own call, the NumPy -> tensor wrap; the call with autograd (its
   autograd.Function, forward only); the custom op
   through torch's dispatcher).
3. **large tensors** (16 Mi float32 elements, 64 MiB): ``fastact.torch.OP(x)`` against
   ``fastact.OP(x.numpy())`` (the cpu backend on the same memory; a copy would show
   as a ratio above 1) and against ``F.OP(x)``; forward, and the backward op.
4. **a training step** of the bench CNN (the article's Keras CNN in PyTorch: two
   3x3 convolutions with Leaky ReLU after each, max pooling, a dense layer with
   Leaky ReLU; batch 64 of 28x28): forward, backward and an SGD step, stock
   against ``fastact.torch.patch``-ed (fused conv/dense + Leaky ReLU: on float32
   CPU tensors torch's convolution/product with the bias, then fastact's Leaky ReLU
   over its result, whose backward reads y), and, for comparison, against the patched
   model made to run fastact's whole fused call (fastact's im2col, col2im and
   epilogues, the GEMMs by torch.matmul: what 16-bit CPU tensors take, and float32
   took before).  The patched model also runs with fastact's kernels on its own thread
   pool instead of torch's OpenMP threads (what it did before fastact.torch shared
   torch's threads; see section 5).  Each comparison is a pair of its own.
5. **threads**: the bench CNN's first fused layer's activation (Leaky ReLU over the
   (64, 32, 26, 26) float32 result of torch's convolution), timed alone right after that
   convolution, as in the step: fastact's kernel on torch's OpenMP threads (what
   ``import fastact.torch`` sets up, fastact/backends/cpu/threads.py) against the same
   kernel on fastact's own pool, torch's in-place ``leaky_relu_`` (the like for like) and
   its ``F.leaky_relu`` into a new tensor (what stock runs) in the same place.
6. **where the bias goes** on that first layer: torch's convolution with and without the
   bias, forward and backward (dbias), against fastact's bias + activation epilogue and its
   backward (dz and dbias in one pass) and the activation alone: why the fused layers leave
   the bias to torch's primitive (fastact/torch/_ops.py).

Page faults: glibc returns freed memory to the kernel and the step's next large tensors come
back as fresh pages (1000-5000 minor faults a step on the dev VM, in both models, in amounts
that change from run to run).  ``GLIBC_TUNABLES=glibc.malloc.trim_threshold=4000000000:
glibc.malloc.mmap_threshold=4000000000`` keeps freed memory in the process; timing the step
with it (``--training-only``) shows the compute without that noise.

    python bench/bench_torch_ops.py [--quick] [--training-only] [--json FILE] [--markdown FILE]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import fastact
import fastact.torch as ft
from fastact.benchmark import machine
from fastact.backends.cpu import threads
from fastact.benchmark.timing import FULL, QUICK, Budget, Interleaved, interleaved
from fastact.torch import _bridge, _library, _ops, _threads

_SLOPE = torch.tensor([0.25])
# name -> (fastact.torch call, torch call, fastact call on NumPy, fastact backward on NumPy)
OPS = {
    "relu": (lambda x: ft.relu(x), F.relu, fastact.relu, fastact.relu_backward),
    "leaky_relu": (lambda x: ft.leaky_relu(x, 0.1), lambda x: F.leaky_relu(x, 0.1),
                   lambda x: fastact.leaky_relu(x, 0.1), lambda dy, x: fastact.leaky_relu_backward(dy, x, 0.1)),
    "elu": (lambda x: ft.elu(x), F.elu, fastact.elu, fastact.elu_backward),
    "gelu": (lambda x: ft.gelu(x), F.gelu, fastact.gelu, fastact.gelu_backward),
    "silu": (lambda x: ft.silu(x), F.silu, fastact.silu, fastact.silu_backward),
    "hard_silu": (lambda x: ft.hard_silu(x), F.hardswish, fastact.hard_silu, fastact.hard_silu_backward),
    "softmax": (lambda x: ft.softmax(x, -1), lambda x: F.softmax(x, -1), lambda x: fastact.softmax(x, -1),
                lambda dy, x: fastact.softmax_backward(dy, x, -1)),
    # One slope (torch's PReLU(num_parameters=1) weight), not requiring grad: x's gradient only.
    "prelu": (lambda x: ft.prelu(x, _SLOPE), lambda x: F.prelu(x, _SLOPE), lambda x: fastact.prelu(x, _SLOPE.numpy()),
              lambda dy, x: fastact.prelu_backward(dy, x, _SLOPE.numpy())[0]),
}
# A training step takes ~20 ms: 8 s per comparison gives ~150 rounds (the per-round ratios of a 2-core VM
# spread by +-15%; 1 s gave ~20 and a p20-p80 band of 0.25).
TRAINING = Budget(seconds=8.0, min_reps=60, max_reps=2000, warmup_seconds=1.0)
SMALL = 1 << 10
MEDIUM = 1 << 16  # where the per-call overhead is amortized
LARGE = 1 << 24


def _ratio_row(result, a: str, b: str) -> dict:
    return {"ratio": result.ratio(a, b), a: result.stats(a).as_dict(), b: result.stats(b).as_dict()}


def small_calls(budget: Budget, size: int, clock) -> dict:
    rows = {"clock": clock.__name__}
    x = torch.randn(size)
    xg = torch.randn(size, requires_grad=True)
    dy = torch.randn(size)
    number = max(1, 50 * SMALL // size)
    for name, (ours, theirs, _, _) in OPS.items():
        forward = interleaved({"fastact.torch": lambda r: ours(x), "torch": lambda r: theirs(x)}, budget,
                              number=number, clock=clock)
        autograd = interleaved(
            {"fastact.torch": lambda r: ours(xg).backward(dy), "torch": lambda r: theirs(xg).backward(dy)},
            budget, number=max(1, number // 2), clock=clock)
        rows[name] = {"forward": _ratio_row(forward, "fastact.torch", "torch"),
                      "autograd": _ratio_row(autograd, "fastact.torch", "torch")}
    return rows


def where_the_time_goes(budget: Budget) -> dict:
    """The pieces of a small eager fastact.torch.leaky_relu call, each timed alone (with F.leaky_relu for scale)."""
    x = torch.randn(SMALL)
    xg = torch.randn(SMALL, requires_grad=True)
    xn = x.numpy()
    yn = fastact.leaky_relu(xn, 0.1)
    op = _ops.ACTIVATIONS["leaky_relu"]
    spec = fastact._registry.get_spec("leaky_relu")
    params = spec.kernel_params_of(0.1)
    cpu = fastact.backends.load("cpu")
    cpu_call = cpu.pointer_call("leaky_relu", params, xn.dtype, False)
    y = torch.empty_like(x)
    pieces = {
        "torch F.leaky_relu(x)": lambda r: F.leaky_relu(x, 0.1),
        "fastact.torch.leaky_relu(x): the small-call branch (fastact/torch/ops.py)": lambda r: ft.leaky_relu(x, 0.1),
        "  its checks, as plain(x) makes them": lambda r: _library.plain(x),
        "  its result's allocation (torch.empty_like)": lambda r: torch.empty_like(x),
        "  the module call by address": lambda r: cpu_call[0](*cpu_call[1], SMALL, y.data_ptr(), x.data_ptr()),
        "the op's pointer path (_ops._direct: a first call, the op's backward)": lambda r: _ops._direct(spec, (0.1,), x, None),
        "parameters, validated (kernel_params_of; once per value on the paths above)": lambda r: spec.kernel_params_of(0.1),
        "strided x: the general path, tensor -> NumPy view (x.numpy())": lambda r: _bridge.as_array(x),
        "  fastact.leaky_relu on the view": lambda r: fastact.leaky_relu(xn, 0.1),
        "  NumPy -> tensor (torch.from_numpy)": lambda r: _bridge.as_tensor(yn),
        "with autograd: fastact.torch.leaky_relu(x) (_ops.ActivationByAddress)": lambda r: ft.leaky_relu(xg, 0.1),
        "with autograd: torch F.leaky_relu(x)": lambda r: F.leaky_relu(xg, 0.1),
        "custom op through torch's dispatcher, no grad": lambda r: op.overload(x, 0.1),
        "custom op through torch's dispatcher, with autograd": lambda r: op.overload(xg, 0.1),
    }
    result = interleaved(pieces, budget, number=50, clock=time.thread_time)
    return {name: result.stats(name).as_dict() for name in pieces}


def large_tensors(budget: Budget, size: int) -> dict:
    rows = {}
    x = torch.randn(size)
    dy = torch.randn(size)
    xn, dyn = x.numpy(), dy.numpy()
    for name in ("relu", "gelu", "silu", "softmax"):
        ours, theirs, on_numpy, backward_on_numpy = OPS[name]
        spec = fastact._registry.get_spec(name)
        values = tuple(p.default for p in spec.params)
        backward_op = _ops.BACKWARDS[name]
        forward = interleaved({"fastact.torch": lambda r: ours(x), "fastact on NumPy": lambda r: on_numpy(xn),
                               "torch": lambda r: theirs(x)}, budget)
        backward = interleaved({"fastact.torch": lambda r: backward_op(dy, x, *values),
                                "fastact on NumPy": lambda r: backward_on_numpy(dyn, xn)}, budget)
        rows[name] = {
            "forward": {"vs fastact on NumPy": forward.ratio("fastact.torch", "fastact on NumPy"),
                        "vs torch": forward.ratio("fastact.torch", "torch"),
                        **{k: forward.stats(k).as_dict() for k in forward.times}},
            "backward op": {"vs fastact on NumPy": backward.ratio("fastact.torch", "fastact on NumPy"),
                            **{k: backward.stats(k).as_dict() for k in backward.times}},
        }
    return rows


def bench_cnn() -> torch.nn.Sequential:
    """The article's Keras CNN in PyTorch: Leaky ReLU (0.05) as its own layer after each convolution."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.LeakyReLU(0.05), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.LeakyReLU(0.05), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 5 * 5, 90), torch.nn.LeakyReLU(0.05), torch.nn.Linear(90, 10),
    )


class _WholeFusedCall:
    """For comparison only: fastact.torch's fused dense/conv2d as fastact's whole fused call on float32 too.

    (fastact.torch decides per call with ``_ops.torch_linear_part``; False sends a call to fastact's own
    im2col + GEMM + col2im, as 16-bit CPU tensors go.)
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        torch_linear_part, _ops.torch_linear_part = _ops.torch_linear_part, lambda t: False
        try:
            return self.model(x)
        finally:
            _ops.torch_linear_part = torch_linear_part

    def parameters(self):
        return self.model.parameters()


def use_pool(runtime: str | None) -> None:
    """fastact's kernels on the OpenMP runtime ``runtime`` (torch's), or on fastact's own pool (None).

    Only where that changes: a switch costs ~0.1 ms (the runtime looked up again in each loaded
    module), which a training loop never pays, so it must not land inside a timed step.
    """
    if threads.runtime() != runtime:
        threads.run_on_openmp(runtime)


def on_threads(runtime: str | None, call):
    """``call`` with fastact's kernels on the OpenMP runtime ``runtime`` (torch's), or on fastact's own pool (None)."""
    def run(r):
        use_pool(runtime)
        return call(r)
    return run


def _first_layer():
    """The bench CNN's first convolution's input, weight and bias (batch 64), its fused activation, and that
    activation's pointer calls as the fused layer takes them (``_ops._after_primitive_calls``; None where the
    host backend has no compiled module)."""
    torch.manual_seed(0)
    act = fastact.Activation("leaky_relu", alpha=0.05)
    ft.leaky_relu(torch.ones(2), 0.05)  # loads the host backend
    return (torch.randn(64, 1, 28, 28), torch.randn(32, 1, 3, 3), torch.randn(32), act,
            _ops._after_primitive_calls(act, torch.float32))


def _timed_rounds(variants: dict, rounds: int, before) -> Interleaved:
    """Each variant ``(runtime, call)`` timed alone, ``rounds`` times in rotated order after three warm-up rounds;
    ``before()`` makes its input just before (untimed), with fastact's kernels on ``runtime``."""
    times: dict = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds + 3):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            use_pool(variants[name][0])
            argument = before()
            start = time.perf_counter()
            variants[name][1](argument)
            if r >= 3:
                times[name].append(time.perf_counter() - start)
    return Interleaved({name: np.array(t) for name, t in times.items()})


def activation_after_convolution(rounds: int) -> dict:
    """The bench CNN's first fused layer's activation, timed alone right after the torch convolution that made z."""
    runtime = _threads.torch_openmp_runtime()
    x, w, b, act, calls = _first_layer()
    if runtime is None:
        return {"runtime": None}
    if calls is None:  # the host backend is not the cpu backend (not built here, or forced to numpy)
        return {"runtime": runtime, "not measured": f"no compiled kernel on the {fastact.get_backend()} backend"}
    # What the fused layer's forward runs (fastact/torch/_ops.py: activation_after_primitive): the activation
    # over z, the result of torch's convolution with the bias.  torch's own in-place leaky_relu_ is the like for
    # like; its out-of-place F.leaky_relu (what stock runs, into a new tensor) is for scale.
    fastact_kernel = lambda z: calls[1](z.numel(), z.data_ptr(), z.data_ptr())  # noqa: E731
    variants = {"torch threads": (runtime, fastact_kernel), "own pool": (None, fastact_kernel),
                "torch leaky_relu_": (runtime, lambda z: F.leaky_relu_(z, 0.05)),
                "torch F.leaky_relu": (runtime, lambda z: F.leaky_relu(z, 0.05))}
    result = _timed_rounds(variants, rounds, lambda: F.conv2d(x, w, b))
    threads.run_on_openmp(runtime)
    return {"runtime": runtime, "shape": [64, 32, 26, 26],
            "own pool over torch threads": _ratio_row(result, "own pool", "torch threads"),
            "torch threads over torch leaky_relu_": _ratio_row(result, "torch threads", "torch leaky_relu_"),
            "torch threads over torch F.leaky_relu": _ratio_row(result, "torch threads", "torch F.leaky_relu")}


def where_the_bias_goes(rounds: int) -> dict:
    """The bench CNN's first layer: the bias in torch's convolution and its backward, or in fastact's epilogue.

    Forward: torch's convolution with and without the bias; fastact's bias + Leaky ReLU epilogue (the
    bias_act op's kernel) and the activation alone.  Backward: torch's convolution backward (dw) with and
    without dbias; fastact's epilogue backward (dz and dbias in one pass) and the activation's backward alone.
    All on torch's threads; the outputs of fastact's kernels go to buffers kept from call to call.
    """
    x, w, b, act, calls = _first_layer()
    epilogue = _ops._epilogue_call(_ops.activation_key("bench", act), torch.float32)
    if calls is None or epilogue is None:
        return {"not measured": f"no compiled kernels on the {fastact.get_backend()} backend"}
    z = F.conv2d(x, w)
    dy, out, dbias = torch.randn_like(z), torch.empty_like(z), torch.empty(32)
    n, sizes = z.numel(), (64, 32, 26 * 26)
    conv_backward = lambda mask: torch.ops.aten.convolution_backward(  # noqa: E731
        dy, x, w, [32], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)
    pieces = {
        "conv forward with bias": lambda _: F.conv2d(x, w, b),
        "conv forward without bias": lambda _: F.conv2d(x, w),
        "fastact bias + activation": lambda _: epilogue[0](epilogue[1], epilogue[2], epilogue[3], *sizes,
                                                           out.data_ptr(), z.data_ptr(), b.data_ptr()),
        "fastact activation alone": lambda _: calls[1](n, out.data_ptr(), z.data_ptr()),
        "conv backward with dbias": lambda _: conv_backward([False, True, True]),
        "conv backward without dbias": lambda _: conv_backward([False, True, False]),
        "fastact epilogue backward (dz, dbias)": lambda _: epilogue[0](
            epilogue[1], epilogue[2], epilogue[3], *sizes, out.data_ptr(), dy.data_ptr(), z.data_ptr(), b.data_ptr(),
            dbias.data_ptr()),
        "fastact activation backward alone": lambda _: calls[2](n, out.data_ptr(), dy.data_ptr(), z.data_ptr()),
    }
    runtime = _threads.torch_openmp_runtime()
    variants = {name: (runtime, call) for name, call in pieces.items()}
    result = _timed_rounds(variants, rounds, lambda: None)
    threads.run_on_openmp(runtime)
    return {"shape": [64, 32, 26, 26], "times": {name: result.stats(name).as_dict() for name in variants}}


def training_step(budget: Budget, batch: int) -> dict:
    torch.manual_seed(0)
    stock = bench_cnn()
    patched = copy.deepcopy(stock)
    ft.patch(patched)
    whole = _WholeFusedCall(copy.deepcopy(patched))
    x = torch.randn(batch, 1, 28, 28)
    target = torch.randint(0, 10, (batch,))

    def step_of(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

        def step(r):
            optimizer.zero_grad()
            F.cross_entropy(model(x), target).backward()
            optimizer.step()
        return step

    # Two pairs, each interleaved with stock alone: the whole fused call's large im2col buffers between the
    # other two's rounds change what the allocator hands them (fresh pages), which is not their own cost.
    # Each sample follows ~50 ms of untimed steps of the same model (settle_seconds), so each side is timed in
    # its own steady state, as in a training loop of its own (torch's OpenMP workers spin after an op).
    # The same patched model with fastact's kernels on fastact's own pool is a pair of its own too: in one
    # three-way interleaving the patched model measured 1.07-1.08x stock against 1.02-1.03x as a pair
    # (trimming off, AMD EPYC dev VM), the own pool's threads between the rounds costing its neighbours.
    settled = {"settle_seconds": 0.05}
    runtime = _threads.torch_openmp_runtime()
    stock_step = step_of(stock)
    result = interleaved({"patched": on_threads(runtime, step_of(patched)), "stock": stock_step}, budget, **settled)
    own = None
    if runtime is not None:
        own = interleaved({"own pool": on_threads(None, step_of(copy.deepcopy(patched))), "stock": stock_step},
                          budget, **settled)
    forward = interleaved({"patched": lambda r: patched(x), "stock": lambda r: stock(x)}, budget, **settled)
    whole_result = interleaved({"whole": step_of(whole), "stock": stock_step}, budget, **settled)
    whole_forward = interleaved({"whole": lambda r: whole(x), "stock": lambda r: stock(x)}, budget, **settled)
    threads.run_on_openmp(runtime)
    return {"step": _ratio_row(result, "patched", "stock"), "forward only": _ratio_row(forward, "patched", "stock"),
            "step on fastact's own pool": _ratio_row(own, "own pool", "stock") if own is not None else None,
            "whole step": _ratio_row(whole_result, "whole", "stock"),
            "whole forward only": _ratio_row(whole_forward, "whole", "stock"), "batch": batch}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# fastact.torch against PyTorch, CPU tensors ({m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
             f"{m['date']}, OPENBLAS_NUM_THREADS={m['OPENBLAS_NUM_THREADS'] or 'unset'}, "
             f"load average {m['load_average_start']} -> {m['load_average_end']})", "",
             "Ratios are fastact.torch's time over the other's, median of per-round ratios [p20, p80] "
             "(below 1: fastact.torch is faster). `python bench/bench_torch_ops.py"
             + (" --training-only" if "small" not in report else "") + "`.", "",
             f"GLIBC_TUNABLES={m.get('GLIBC_TUNABLES') or 'unset'} (set: freed memory stays in the process, "
             "no page faults in the step; unset: glibc's defaults, what a training script gets).", "",
    ]
    us = lambda s: f"{s['median'] * 1e6:.1f} us"  # noqa: E731
    ratio = lambda r: f"{r['median']:.2f} [{r['p20']:.2f}, {r['p80']:.2f}]"  # noqa: E731
    for size, rows in report.get("small", {}).items():
        clock = "CPU time of the calling thread" if rows["clock"] == "thread_time" else "wall time"
        lines += [f"## Calls on {size} float32 elements ({clock}; goal for small calls: <= 2x torch's F.*)", "",
                  "| op | forward: fastact.torch | torch | ratio | autograd fwd+bwd: fastact.torch | torch | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in rows.items():
            if name == "clock":
                continue
            f, a = row["forward"], row["autograd"]
            lines.append(f"| {name} | {us(f['fastact.torch'])} | {us(f['torch'])} | {ratio(f['ratio'])} | "
                         f"{us(a['fastact.torch'])} | {us(a['torch'])} | {ratio(a['ratio'])} |")
        lines.append("")
    if "pieces" in report:
        lines += ["## Where the time of a small fastact.torch.leaky_relu goes (each piece timed alone, "
                  "CPU time of the calling thread)", "",
                  "| piece | median |", "|---|---|"]
        lines += [f"| {name} | {us(stats)} |" for name, stats in report["pieces"].items()] + [""]
    if "large" in report:
        lines += [f"## Large tensors ({report['large_size']} float32 elements)", "",
                  "| op | forward vs fastact on NumPy | forward vs torch | backward op vs fastact on NumPy |",
                  "|---|---|---|---|"]
        for name, row in report["large"].items():
            lines.append(f"| {name} | {ratio(row['forward']['vs fastact on NumPy'])} | {ratio(row['forward']['vs torch'])} | "
                         f"{ratio(row['backward op']['vs fastact on NumPy'])} |")
        lines.append("")
    th = report.get("threads")
    if th and "not measured" in th:
        lines += [f"## Threads: not measured ({th['not measured']})", ""]
    elif th and th.get("runtime"):
        a, b, c = (th["own pool over torch threads"], th["torch threads over torch leaky_relu_"],
                   th["torch threads over torch F.leaky_relu"])
        lines += [f"## Threads: the first fused layer's Leaky ReLU ({tuple(th['shape'])} float32, over z) right "
                  "after torch's convolution", "",
                  "| the activation | median | vs |", "|---|---|---|",
                  f"| fastact's kernel on torch's OpenMP threads (the default with fastact.torch) | "
                  f"{us(a['torch threads'])} | |",
                  f"| fastact's kernel on its own pool | {us(a['own pool'])} | {ratio(a['ratio'])} over torch's threads |",
                  f"| torch's leaky_relu_ (in place, the like for like) | {us(b['torch leaky_relu_'])} | "
                  f"fastact on torch's threads: {ratio(b['ratio'])} of it |",
                  f"| (torch's F.leaky_relu, into a new tensor: what stock runs) | {us(c['torch F.leaky_relu'])} | "
                  f"fastact on torch's threads: {ratio(c['ratio'])} of it |", ""]
    elif th is not None:
        lines += ["## Threads: torch's OpenMP runtime not found here (fastact keeps its own pool)", ""]
    bias = report.get("bias")
    if bias and "not measured" in bias:
        lines += [f"## Where the bias goes: not measured ({bias['not measured']})", ""]
    elif bias:
        lines += [f"## Where the bias goes: the first layer ({tuple(bias['shape'])} float32), each piece alone on "
                  "torch's threads", "",
                  "| piece | median |", "|---|---|"]
        lines += [f"| {name} | {us(stats)} |" for name, stats in bias["times"].items()] + [""]
    t, own = report["training"], report["training"].get("step on fastact's own pool")
    lines += [f"## Training step of the bench CNN (batch {t['batch']}), patched over stock", "",
              "| | patched | stock | ratio |", "|---|---|---|---|",
              f"| forward + backward + SGD step | {us(t['step']['patched'])} | {us(t['step']['stock'])} | {ratio(t['step']['ratio'])} |",
              f"| forward only | {us(t['forward only']['patched'])} | {us(t['forward only']['stock'])} | {ratio(t['forward only']['ratio'])} |",
              *([f"| step, fastact's kernels on its own pool (not torch's threads) | {us(own['own pool'])} | "
                 f"{us(own['stock'])} | {ratio(own['ratio'])} |"] if own else []),
              "", "For comparison: the patched model run as fastact's whole fused call (its own im2col + GEMM + "
              "col2im, the GEMMs by torch.matmul; what 16-bit CPU tensors take, and float32 did before), over stock:", "",
              "| | whole fused call | stock | ratio |", "|---|---|---|---|",
              f"| forward + backward + SGD step | {us(t['whole step']['whole'])} | {us(t['whole step']['stock'])} | {ratio(t['whole step']['ratio'])} |",
              f"| forward only | {us(t['whole forward only']['whole'])} | {us(t['whole forward only']['stock'])} | {ratio(t['whole forward only']['ratio'])} |",
              ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings and a 1 Mi large size (a smoke run)")
    parser.add_argument("--json", type=Path, help="write the full result here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown tables here")
    parser.add_argument("--training-only", action="store_true", help="only the threads section and the training step")
    args = parser.parse_args()
    budget = QUICK if args.quick else Budget(seconds=1.0, min_reps=15, max_reps=2000, warmup_seconds=0.2)
    large_size = 1 << 20 if args.quick else LARGE
    report = {
        "machine": machine.metadata({}, {"torch_threads": torch.get_num_threads(), "fastact_commit": machine.git_commit(),
                                          # NumPy's BLAS runs fastact's dense/conv GEMMs (see the docstring)
                                          "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                                          "load_average_start": machine.load_average(),
                                          "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES"),
                                          "fastact_backend": machine.fastact_backend("auto")}),
    }
    if not args.training_only:
        report.update({
            # 1 Ki calls run on the calling thread on both sides (below torch's and fastact's
            # parallel grain): timed in that thread's CPU time, which the machine's other jobs
            # disturb far less than wall time.  64 Ki calls may use both libraries' threads: wall time.
            "small": {str(SMALL): small_calls(budget, SMALL, time.thread_time),
                      str(MEDIUM): small_calls(budget, MEDIUM, time.perf_counter)},
            "pieces": where_the_time_goes(budget),
            "large_size": large_size,
            "large": large_tensors(budget, large_size),
        })
    report["threads"] = activation_after_convolution(rounds=20 if args.quick else 400)
    report["bias"] = where_the_bias_goes(rounds=10 if args.quick else 100)
    report["training"] = training_step(TRAINING if not args.quick else QUICK, batch=64)
    report["machine"]["load_average_end"] = machine.load_average()
    text = markdown(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
