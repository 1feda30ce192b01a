"""Fused calls against the unfused NumPy a user would write (prints only).

    python bench/fused_timing.py [--quick]

bias_act: one engine pass against ``np.maximum(x + b, 0)`` (two full passes
and a temporary); backward against ``np.where`` + ``sum``.  conv2d_bias_act:
against sliding_window_view + tensordot + bias + activation, the NumPy
version without fastact.  Times are the best of a few runs, in milliseconds:
on a shared machine the noise only ever adds time.  OpenBLAS threads that
spin between GEMMs compete with other work on a small, busy machine; set
OPENBLAS_NUM_THREADS=1 there for stable figures.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import fastact


def best_ms(function, repeats: int) -> float:
    function()  # warm up: page faults, thread pool, BLAS
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def report(what: str, fused_ms: float, unfused_ms: float) -> None:
    print(f"{what:<58} fused {fused_ms:9.2f} ms   unfused {unfused_ms:9.2f} ms   speed-up {unfused_ms / fused_ms:5.2f}x")


def bias_act_rows(shape: tuple, repeats: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, np.float32)
    dy = rng.standard_normal(shape, np.float32)
    bias = rng.standard_normal(shape[1], np.float32)
    b = bias[:, None, None]
    report(f"bias_act relu {shape} float32",
           best_ms(lambda: fastact.bias_act(x, bias, "relu"), repeats),
           best_ms(lambda: np.maximum(x + b, 0), repeats))
    leaky = fastact.Activation("leaky_relu", alpha=0.1)
    report(f"bias_act leaky_relu(0.1) {shape} float32",
           best_ms(lambda: fastact.bias_act(x, bias, leaky), repeats),
           best_ms(lambda: np.where(x + b > 0, x + b, 0.1 * (x + b)), repeats))

    def unfused_backward():
        dz = np.where(x + b > 0, dy, 0)
        return dz, dz.sum(axis=(0, 2, 3))

    report(f"bias_act_backward relu {shape} float32",
           best_ms(lambda: fastact.bias_act_backward(dy, x, bias, "relu"), repeats),
           best_ms(unfused_backward, repeats))
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    report(f"bias_act relu channels-last {x_last.shape} float32",
           best_ms(lambda: fastact.bias_act(x_last, bias, "relu", axis=-1), repeats),
           best_ms(lambda: np.maximum(x_last + bias, 0), repeats))


def unfused_conv2d_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """NCHW "same" 3x3 conv + bias + relu the NumPy way: pad, windows, tensordot, add, maximum."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, w.shape[2:], axis=(2, 3))  # (N, C, H, W, kh, kw)
    z = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, H, W, O)
    return np.maximum(z.transpose(0, 3, 1, 2) + b[:, None, None], 0)


def conv_rows(shape: tuple, out_channels: int, repeats: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape, np.float32)
    w = rng.standard_normal((out_channels, shape[1], 3, 3), np.float32) * 0.1
    b = rng.standard_normal(out_channels, np.float32)
    report(f"conv2d_bias_act relu 3x3 same {shape}->{out_channels} NCHW",
           best_ms(lambda: fastact.conv2d_bias_act(x, w, b, "relu", padding="same"), repeats),
           best_ms(lambda: unfused_conv2d_relu(x, w, b), repeats))
    x_last, w_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    nhwc = best_ms(lambda: fastact.conv2d_bias_act(x_last, w_last, b, "relu", padding="same", data_format="NHWC"), repeats)
    print(f"{'conv2d_bias_act relu 3x3 same NHWC (same problem)':<58} fused {nhwc:9.2f} ms")
    dy = rng.standard_normal((shape[0], out_channels, *shape[2:]), np.float32)
    backward = best_ms(lambda: fastact.conv2d_bias_act_backward(dy, x, w, b, "relu", padding="same"), repeats)
    print(f"{'conv2d_bias_act_backward relu 3x3 same NCHW':<58} fused {backward:9.2f} ms")
    w1 = np.ascontiguousarray(rng.standard_normal((1, 1, shape[1], out_channels), np.float32))
    pointwise = best_ms(lambda: fastact.conv2d_bias_act(x_last, w1, b, "relu", data_format="NHWC"), repeats)
    dense = best_ms(lambda: np.maximum(x_last.reshape(-1, shape[1]) @ w1[0, 0] + b, 0), repeats)
    report("conv2d_bias_act 1x1 NHWC vs matmul + b + maximum", pointwise, dense)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller arrays, fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(f"fastact {fastact.__version__}, numpy {np.__version__}")
    bias_act_rows((8, 128, 56, 56) if args.quick else (32, 128, 56, 56), repeats)
    conv_rows((4, 64, 56, 56) if args.quick else (16, 64, 56, 56), 64, repeats)


if __name__ == "__main__":
    main()
