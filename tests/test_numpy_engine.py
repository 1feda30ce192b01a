"""The NumPy block engine: block cutting, tiny blocks on every layout, threads, reductions."""
from __future__ import annotations

import numpy as np
import pytest

import fastact
import support
from fastact.backends.numpy import engine as numpy_engine
from support import LAYOUTS


@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 0, 4), (4, 6), (2, 3, 5), (1, 1, 17), (3, 4, 5, 6)])
@pytest.mark.parametrize("max_elements", [1, 4, 7, 30, 1000])
def test_blocks_cover_every_element_once(shape, max_elements):
    seen = np.zeros(shape, np.int64)
    for index in numpy_engine.blocks(shape, max_elements):
        block = seen[index]
        assert block.size <= max_elements
        seen[index] += 1
    assert (seen == 1).all()


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of a few elements and threads on for any size: every path of the engine on small arrays."""
    monkeypatch.setattr(numpy_engine, "BLOCK_ELEMENTS", 5)
    monkeypatch.setattr(numpy_engine, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(numpy_engine, "NUM_THREADS", 2)


CASES = [("relu", {}), ("leaky_relu", {"alpha": 0.3}), ("relu6", {}), ("relu", {"alpha": -0.5, "max_value": 2.0, "threshold": -1.0})]


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name,params", CASES)
def test_tiny_blocks_on_every_layout(tiny_blocks, dtype_name, layout, name, params):
    dtype = support.dtype_of(dtype_name)
    x = support.draw_values(LAYOUTS[layout][0], dtype, params, seed=11)
    dy = support.draw_values(LAYOUTS[layout][0], dtype, {}, seed=12, finite=True)
    support.check_forward("numpy", name, params, support.maker("numpy", layout, x))
    support.check_backward("numpy", name, params, support.maker("numpy", layout, dy), support.maker("numpy", layout, x))


@pytest.mark.parametrize("x_shape,alpha_shape", [((4, 3, 5, 7), (3, 1, 1)), ((4, 5, 3), (3,)), ((6, 9), (6, 1)), ((6, 9), ()), ((2, 3, 4), (2, 3, 4))])
def test_tiny_blocks_prelu(tiny_blocks, x_shape, alpha_shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(np.float32)
    dy = rng.standard_normal(x_shape).astype(np.float32)
    alpha = rng.uniform(-1, 1, alpha_shape).astype(np.float32)
    from fastact import reference

    support.assert_close(fastact.prelu(x, alpha), reference.prelu(x, alpha), np.dtype(np.float32))
    if alpha.ndim == 0:  # a scalar slope also takes the non-contiguous path
        support.assert_close(fastact.prelu(x.T, alpha), reference.prelu(x.T, alpha), np.dtype(np.float32))
    dx, dalpha = fastact.prelu_backward(dy, x, alpha)
    ref_dx, ref_dalpha = reference.prelu_backward(dy, x, alpha)
    support.assert_close(dx, ref_dx, np.dtype(np.float32))
    terms = np.abs(np.where(x > 0, 0, x.astype(float) * dy))
    support.assert_sum_close(dalpha, ref_dalpha, reference.sum_to_shape(terms, alpha.shape), np.dtype(np.float32), x.size // max(alpha.size, 1))


def test_errors_in_worker_threads_propagate(tiny_blocks):
    def broken(scratch, out, x):
        raise RuntimeError("chunk failed")

    x = np.ones(100, np.float32)
    with pytest.raises(RuntimeError, match="chunk failed"):
        numpy_engine.run(broken, [np.empty_like(x)], [x])


def test_compute_dtype():
    assert numpy_engine.compute_dtype(np.float64) == np.float64
    for name in ("float16", "bfloat16", "float32"):
        assert numpy_engine.compute_dtype(support.dtype_of(name)) == np.float32
