"""A few small calls of every kind of kernel, checked against the NumPy backend: what compute-sanitizer runs.

    python bench/cuda_probe.py [--backend cuda|cuda-emulator]

``bench/gpu_proof.sh`` runs this under ``compute-sanitizer --tool memcheck``
and ``--tool racecheck``: each kernel family once or twice on tiny arrays
(the sanitizers slow kernels down a hundredfold and more), with the vector and
scalar paths (an aligned and a misaligned view), the three row-wise widths
(a thread, a warp and a block per row), the strided row-wise kernel, the
per-channel reductions of PReLU and bias_act (shared memory and barriers),
dense and conv2d.  Each result is compared with the NumPy backend's; the exit
status is 1 if any differs.  ``--backend cuda-emulator`` runs the same calls
on the CPU (NumPy arrays), which is how the proof's dry run exercises it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fastact

import fastact  # noqa: E402


def calls(rng: np.random.Generator) -> list[tuple[str, callable, list]]:
    """(name, fastact call, host inputs) rows."""
    def draw(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    f16 = np.float16
    x16 = draw(1 + 4 * 1024 + 3, dtype=f16)
    nchw, slopes, bias = draw(2, 8, 5, 7), draw(8, 1, 1), draw(8)
    return [
        ("relu forward float16 aligned", lambda x: fastact.relu(x), [x16[:-1]]),
        ("relu forward float16 misaligned", lambda x: fastact.relu(x), [x16[1:]]),
        ("leaky_relu backward float16", lambda dy, x: fastact.leaky_relu_backward(dy, x, 0.1),
         [draw(999, dtype=f16), draw(999, dtype=f16)]),
        ("gelu forward float32", lambda x: fastact.gelu(x), [draw(33, 65)]),
        ("silu backward float32", lambda dy, x: fastact.silu_backward(dy, x), [draw(33, 65), draw(33, 65)]),
        ("softmax rows of 5 (a thread each)", lambda x: fastact.softmax(x), [draw(64, 5)]),
        ("softmax rows of 300 (a warp each)", lambda x: fastact.softmax(x), [draw(16, 300)]),
        ("softmax rows of 3000 (a block each)", lambda x: fastact.softmax(x), [draw(4, 3000)]),
        ("log_softmax backward rows of 3000", lambda dy, x: fastact.log_softmax_backward(dy, x),
         [draw(4, 3000), draw(4, 3000)]),
        ("softmax along axis 0 (strided on any GPU)", lambda x: fastact.softmax(x, axis=0), [draw(3, 70000)]),
        ("prelu forward per channel", lambda x, a: fastact.prelu(x, a), [nchw, slopes]),
        ("prelu backward per channel", lambda dy, x, a: fastact.prelu_backward(dy, x, a), [nchw, nchw, slopes]),
        ("bias_act forward", lambda x, b: fastact.bias_act(x, b, "gelu"), [nchw, bias]),
        ("bias_act backward", lambda dy, x, b: fastact.bias_act_backward(dy, x, b, "silu"), [nchw, nchw, bias]),
        ("dense_bias_act forward", lambda x, w, b: fastact.dense_bias_act(x, w, b, "relu"),
         [draw(6, 16), draw(16, 8), draw(8)]),
        ("conv2d_bias_act forward", lambda x, w, b: fastact.conv2d_bias_act(x, w, b, "relu", padding="same"),
         [draw(2, 4, 6, 6), draw(8, 4, 3, 3), draw(8)]),
        ("conv2d_bias_act backward", lambda dy, x, w, b: fastact.conv2d_bias_act_backward(
            dy, x, w, b, "relu", padding="same"), [draw(2, 8, 6, 6), draw(2, 4, 6, 6), draw(8, 4, 3, 3), draw(8)]),
    ]


def _host(result, to_host):
    return [to_host(r) for r in result] if isinstance(result, tuple) else [to_host(result)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="cuda", choices=("cuda", "cuda-emulator"))
    parser.add_argument("--no-pool", action="store_true",
                        help="cuda: no CuPy memory pool (a cudaMalloc per array, so memcheck sees each array's bounds)")
    args = parser.parse_args(argv)
    if args.backend == "cuda":
        import cupy

        if args.no_pool:
            cupy.cuda.set_allocator(None)

        to_device, to_host, synchronize = cupy.asarray, cupy.asnumpy, cupy.cuda.Device().synchronize
    else:
        to_device, to_host, synchronize = np.asarray, np.asarray, lambda: None
    failures = 0
    for name, call, inputs in calls(np.random.default_rng(11)):
        with fastact.use_backend("numpy"):
            expected = _host(call(*inputs), np.asarray)
        with fastact.use_backend(args.backend):
            got = _host(call(*[to_device(a) for a in inputs]), to_host)
        synchronize()
        ok = len(got) == len(expected) and all(
            g.shape == e.shape and np.allclose(g.astype(np.float64), e.astype(np.float64), rtol=2e-2, atol=2e-2)
            for g, e in zip(got, expected))
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}", flush=True)
    print(f"{failures} of {len(calls(np.random.default_rng(0)))} calls differ from the NumPy backend")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
