"""More than 2**31 elements on a real GPU: the 64-bit index instantiations end to end.

Needs about 17 GB of GPU memory; skipped (with the reason) where the "cuda"
backend is unavailable.  The 64-bit decision itself is unit-tested without a
GPU in test_cuda_emulator.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastact
from fastact.backends import unavailable_reason

REASON = unavailable_reason("cuda")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=f"needs a GPU: {REASON}")]

N = 2**31 + 19  # past the 32-bit range, and not a multiple of the vector width


def _probe_positions():
    return np.array([0, 1, 2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1, N - 3, N - 2, N - 1], np.int64)


def test_relu_forward_and_backward_past_2_to_31_elements():
    import cupy

    positions = _probe_positions()
    x = cupy.full(N, -2.0, cupy.float16)
    x[cupy.asarray(positions[1::2])] = 3.0
    with fastact.use_backend("cuda"):
        y = fastact.leaky_relu(x, 0.5)
        expected = np.where(np.isin(np.arange(positions.size), np.arange(1, positions.size, 2)), 3.0, -1.0)
        assert y[cupy.asarray(positions)].get().tolist() == expected.tolist()
        del y
        dx = fastact.leaky_relu_backward(x, x, 0.5)  # dy = x: 3 where x = 3, -2 * 0.5 elsewhere
        assert dx[cupy.asarray(positions)].get().tolist() == np.where(expected == 3.0, 3.0, -1.0).tolist()


def test_prelu_backward_scalar_alpha_past_2_to_31_elements():
    import cupy

    x = cupy.full(N, -1.0, cupy.float16)
    dy = cupy.ones(N, cupy.float16)
    with fastact.use_backend("cuda"):
        dx, dalpha = fastact.prelu_backward(dy, x, cupy.asarray(np.float32(0.25)))
    # Exact in float64 (integers below 2**53), then rounded once to alpha's float32.
    assert dalpha.dtype == cupy.float32 and float(dalpha) == float(np.float32(-N))
    assert dx[cupy.asarray(_probe_positions())].get().tolist() == [0.25] * _probe_positions().size
