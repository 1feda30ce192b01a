"""The CUDA backend's fused calls against what a user would run without fastact (needs a GPU).

    python bench/gpu_fused.py [--repeats 50] [--json results.json]

Two comparisons, each timed with CUDA events around every call after
warm-up (compilation, cuBLAS/cuDNN heuristics, allocator pools), reported as
the median with p20/p80 in microseconds:

1. bias_act: ``fastact.bias_act`` (one kernel: one read, one write) against
   CuPy's unfused ``x + b`` followed by the activation (``NAIVE`` in
   fastact/reference.py; for relu one ``maximum`` kernel, so four passes over
   memory against two).  Goal: a speed-up of at least 1.8x on relu.
2. conv2d: ``fastact.conv2d_bias_act`` on N=32, C=O=128, 56x56, 3x3 "same",
   float16, NHWC (im2col + cuBLAS + the fused epilogue) against PyTorch's
   ``conv2d`` + bias + ``leaky_relu`` in channels-last memory format (cuDNN),
   when PyTorch with CUDA is installed.  Goal: at most 1.5x PyTorch's time.

Results go to stdout and, with ``--json``, to a file with the GPU's name and
the library versions.  Without a GPU it exits with status 1 and says why.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout
import fastact  # noqa: E402
from fastact import backends, reference  # noqa: E402

BIAS_SHAPES = {  # (shape, bias axis)
    "NCHW (32, 128, 56, 56)": ((32, 128, 56, 56), 1),
    "NHWC (32, 56, 56, 128)": ((32, 56, 56, 128), -1),
    "dense (8192, 4096)": ((8192, 4096), -1),
}
CONV = {"batch": 32, "channels": 128, "size": 56, "kernel": 3}


def require_gpu():
    """CuPy with a working device, or exit with the reason."""
    reason = backends.unavailable_reason("cuda")
    if reason is not None:
        sys.exit(f"bench/gpu_fused.py needs a CUDA GPU: {reason}")
    import cupy

    return cupy


def event_times_us(cupy, function: Callable[[], object], repeats: int, warmup: int = 5) -> dict:
    """Median, p20 and p80 of ``function``'s GPU time in microseconds, each call between two CUDA events."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        function()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) * 1e3)
    p20, median, p80 = np.percentile(times, [20, 50, 80])
    return {"median_us": float(median), "p20_us": float(p20), "p80_us": float(p80)}


def bias_act_rows(cupy, repeats: int) -> list[dict]:
    rows = []
    rng = cupy.random.default_rng(0)
    for dtype in ("float16", "float32"):
        for label, (shape, axis) in BIAS_SHAPES.items():
            x = rng.standard_normal(shape, dtype="float32").astype(dtype)
            bias = rng.standard_normal(shape[axis], dtype="float32").astype(dtype)
            broadcast = bias.reshape([-1 if i == axis % len(shape) else 1 for i in range(len(shape))])
            for name in ("relu", "leaky_relu"):
                naive = reference.NAIVE[name][0]
                fused = event_times_us(cupy, lambda: fastact.bias_act(x, bias, name, axis=axis), repeats)
                unfused = event_times_us(cupy, lambda: naive(x + broadcast, xp=cupy), repeats)
                rows.append({"what": f"bias_act {name} {label} {dtype}", "fused": fused, "unfused": unfused,
                             "speedup": unfused["median_us"] / fused["median_us"], "goal": ">= 1.8x (relu)"})
    return rows


def conv_inputs(cupy):
    n, c, size, k = CONV["batch"], CONV["channels"], CONV["size"], CONV["kernel"]
    rng = cupy.random.default_rng(1)
    x = rng.standard_normal((n, size, size, c), dtype="float32").astype("float16")
    w = (rng.standard_normal((k, k, c, c), dtype="float32") * 0.05).astype("float16")
    b = rng.standard_normal(c, dtype="float32").astype("float16")
    return x, w, b


def torch_conv(x, w, b) -> Callable[[], object] | None:
    """PyTorch's conv2d + bias + leaky_relu on the same memory (channels-last), or None without CUDA PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    F = torch.nn.functional
    tx = torch.from_dlpack(x).permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last
    tw = torch.from_dlpack(w).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    tb = torch.from_dlpack(b)
    torch.backends.cudnn.benchmark = True

    def run():
        with torch.no_grad():
            return F.leaky_relu(F.conv2d(tx, tw, tb, padding="same"), 0.2)

    return run


def conv_rows(cupy, repeats: int) -> list[dict]:
    x, w, b = conv_inputs(cupy)
    fused = event_times_us(
        cupy, lambda: fastact.conv2d_bias_act(x, w, b, "leaky_relu", padding="same", data_format="NHWC"), repeats)
    row = {"what": "conv2d_bias_act leaky_relu N32 C=O=128 56x56 3x3 float16 NHWC", "fused": fused}
    baseline = torch_conv(x, w, b)
    if baseline is None:
        row["pytorch"] = "not installed with CUDA: no comparison"
    else:
        row["pytorch"] = event_times_us(cupy, baseline, repeats)
        row["ratio_to_pytorch"] = fused["median_us"] / row["pytorch"]["median_us"]
        row["goal"] = "<= 1.5x PyTorch (cuDNN)"
    return [row]


def machine(cupy) -> dict:
    with fastact.use_backend("cuda"):
        device = backends.load("cuda").describe()
    return {"device": device, "cupy": cupy.__version__, "fastact": fastact.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", default=None, help="also write the results and the machine here")
    args = parser.parse_args(argv)
    cupy = require_gpu()
    with fastact.use_backend("cuda"):
        rows = bias_act_rows(cupy, args.repeats) + conv_rows(cupy, args.repeats)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(cupy), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
