"""The NumPy backend's elementwise engine: cache-sized blocks, in-place ufuncs, two cores.

An activation written as a handful of in-place ufuncs would, applied to whole
arrays, allocate full-size temporaries and stream every intermediate through
main memory.  The engine instead cuts the arrays into blocks of
``BLOCK_ELEMENTS`` elements (they stay in L2 cache), hands each block to the
activation's *chunk function* together with scratch buffers of the block's
shape, and lets worker threads take contiguous runs of blocks (NumPy releases
the GIL inside ufunc loops).  Main memory is then touched once per operand.

The engine also owns everything the math should not care about:

* layout: contiguous operands are flattened; other layouts keep their shape,
  reordered so the blocks follow memory order (any strides, negative too);
* dtype: float16 and bfloat16 blocks are widened into float32 scratch and the
  result rounded back (16-bit types compute in float32, float64 in float64);
* broadcasting of a small parameter array (PReLU's alpha) and the
  deterministic reduction of per-block partial sums over its broadcast axes;
* row-wise activations (softmax): :func:`run_rows` hands over blocks of whole,
  contiguous rows along any axis, with per-row scratch for the reductions.

Chunk functions receive operands already in the compute dtype, and must read
every input they need before their last write to an output: ``out`` may be an
input itself (in-place calls).
"""
from __future__ import annotations

import math
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from . import half

# 256 Ki elements (1 MiB of float32 per operand): measured by
# bench/bench_numpy_engine.py on the 2-core AMD EPYC dev machine (2**25 float32,
# 2 threads): 16 Ki blocks ran relu forward at 2.2x the copy time, 64 Ki at
# 1.4x, 256 Ki at 0.94x, 512 Ki no better.  Small blocks lose to the Python
# overhead per block (and to GIL hand-offs between the threads); 256 Ki keeps
# a block and its scratch buffers in L2 + L3.
BLOCK_ELEMENTS = int(os.environ.get("FASTACT_BLOCK_ELEMENTS", 1 << 18))
# Below this many elements threads cost more than they save.
PARALLEL_MIN_ELEMENTS = 1 << 18


def _default_threads() -> int:
    value = os.environ.get("FASTACT_NUM_THREADS")
    if value:
        return max(1, int(value))
    return max(1, min(os.cpu_count() or 1, 8))


NUM_THREADS = _default_threads()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(NUM_THREADS, thread_name_prefix="fastact")
    return _pool


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float64 computes in float64; float32, float16 and bfloat16 in float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


class Scratch:
    """Per-thread scratch buffers shaped like the current block.

    ``tmp(i)`` is float scratch slot i, ``mask(i)`` bool scratch slot i,
    ``full(v)`` a read-only block filled with v (NumPy's ufuncs take a
    different, much slower loop for a scalar operand than for two arrays:
    np.maximum(x, 0) runs at a quarter of np.maximum(x, zeros) in cache).

    One Scratch per (thread, dtype, block shape), its views cached: the
    engine's per-block Python overhead is what limits small blocks.
    """

    _local = threading.local()

    @classmethod
    def get(cls, dtype: np.dtype, shape: tuple) -> "Scratch":
        cache = getattr(cls._local, "scratch", None)
        if cache is None:
            cache = cls._local.scratch = {}
            cls._local.buffers = {}
        scratch = cache.get((dtype, shape))
        if scratch is None:
            if len(cache) > 64:  # odd shapes (tails, N-d blocks) must not pile up
                cache.clear()
            scratch = cache[(dtype, shape)] = cls(dtype, shape, cls._local.buffers)
        return scratch

    def __init__(self, dtype: np.dtype, shape: tuple, buffers: dict) -> None:
        self.dtype = dtype
        self.shape = shape
        self.size = int(np.prod(shape))
        self._buffers = buffers  # the thread's flat buffers, shared by all shapes
        self._views: dict = {}

    def _view(self, key: tuple, dtype: np.dtype, fill: Any = None, shape: tuple | None = None) -> np.ndarray:
        view = self._views.get(key)
        if view is None:
            shape, size = (self.shape, self.size) if shape is None else (shape, math.prod(shape))
            buf = self._buffers.get(key)
            if buf is None or buf.size < size:
                buf = np.empty(max(size, BLOCK_ELEMENTS), dtype)
                if fill is not None:
                    buf.fill(fill)
                self._buffers[key] = buf
            view = self._views[key] = buf[:size].reshape(shape)
        return view

    def tmp(self, slot: int = 0) -> np.ndarray:
        return self._view(("f", self.dtype.char, slot), self.dtype)

    def mask(self, slot: int = 0) -> np.ndarray:
        return self._view(("b", slot), np.dtype(bool))

    def full(self, value: float) -> np.ndarray:
        return self._view(("c", self.dtype.char, float(value)), self.dtype, fill=value)

    def uint(self, slot: int) -> np.ndarray:
        """uint32 scratch slot (float16 conversions by integer arithmetic, half.py)."""
        return self._view(("u", slot), np.dtype(np.uint32))

    def full_uint(self, value: int) -> np.ndarray:
        return self._view(("cu", value), np.dtype(np.uint32), fill=value)

    def cast(self, slot: int) -> np.ndarray:
        """Compute-dtype room for operand ``slot`` when it has another dtype."""
        return self._view(("cast", self.dtype.char, slot), self.dtype)

    def per_row(self, slot: int = 0, dtype: Any = None) -> np.ndarray:
        """Float scratch with one value per row (the block's shape, last axis 1): row-wise reductions."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        return self._view(("r", dtype.char, slot), dtype, shape=(*self.shape[:-1], 1))


_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)


def _widen(block: np.ndarray, buf: np.ndarray, scratch: Scratch) -> None:
    """Copy ``block`` into the compute-dtype ``buf``; float16 by integer arithmetic (see half.py)."""
    if block.dtype == _FLOAT16 and buf.dtype == _FLOAT32:
        half.widen(block, buf, scratch)
    else:
        np.copyto(buf, block, casting="unsafe")


def _narrow(buf: np.ndarray, block: np.ndarray, scratch: Scratch) -> None:
    """Round the compute-dtype ``buf`` into ``block``; float16 by integer arithmetic (see half.py)."""
    if block.dtype == _FLOAT16 and buf.dtype == _FLOAT32:
        half.narrow(buf, block, scratch)
    else:
        np.copyto(block, buf, casting="unsafe")


def _flatten_order(arrays: Sequence[np.ndarray]) -> str | None:
    """'C' or 'F' when every array is contiguous in that order (then each flattens to a view)."""
    if all(a.flags.c_contiguous for a in arrays):
        return "C"
    if all(a.flags.f_contiguous for a in arrays):
        return "F"
    return None


def _memory_axes(a: np.ndarray) -> list[int]:
    """Axes of ``a`` from the largest stride to the smallest (the order blocks should follow)."""
    return sorted(range(a.ndim), key=lambda axis: -abs(a.strides[axis]))


def blocks(shape: tuple, max_elements: int) -> list[tuple[slice, ...]]:
    """Cut ``shape`` into boxes of at most ``max_elements`` (at least one row of the last axis each).

    The trailing axes that fit are taken whole; the next axis is cut into
    runs; the leading axes are iterated one index at a time.
    """
    ndim = len(shape)
    if ndim == 0:
        return [()]
    inner, split = 1, ndim
    while split > 0 and inner * shape[split - 1] <= max_elements:
        inner *= shape[split - 1]
        split -= 1
    if split == 0:
        return [tuple(slice(None) for _ in shape)]
    axis = split - 1
    step = max(1, max_elements // inner)
    tail = tuple(slice(None) for _ in range(axis + 1, ndim))
    result = []
    for lead in np.ndindex(*shape[:axis]):
        head = tuple(slice(i, i + 1) for i in lead)
        for start in range(0, shape[axis], step):
            result.append((*head, slice(start, min(start + step, shape[axis])), *tail))
    return result


def _small_index(index: tuple[slice, ...], small_shape: tuple) -> tuple[slice, ...]:
    """The part of a broadcast parameter (1 on broadcast axes) that a block uses."""
    return tuple(s if n != 1 else slice(None) for s, n in zip(index, small_shape))


ChunkFn = Callable[..., Any]


def run(
    chunk_fn: ChunkFn,
    outs: Sequence[np.ndarray],
    ins: Sequence[np.ndarray],
    small: np.ndarray | None = None,
    reduce: bool = False,
) -> np.ndarray | None:
    """Apply ``chunk_fn(scratch, *out_blocks, *in_blocks[, small_block])`` over all blocks.

    ``outs`` and ``ins`` share one shape.  ``small`` (optional) is broadcastable
    to it with the same ndim; each call gets the slice of it that the block
    covers.  With ``reduce=True`` each call returns a partial sum shaped like
    that slice, and ``run`` returns the float64 total, shaped like ``small``:
    partial sums are added in a fixed order, so the result has the same bits
    run to run.
    """
    full = [*outs, *ins]
    order = _flatten_order(full) if small is None or small.size == 1 else None
    if order is not None:
        flat = [a.reshape(-1, order="F") if order == "F" else a.reshape(-1) for a in full]
        small_view = None if small is None else small.reshape(1)
        perm = None
    else:
        perm = _memory_axes(outs[0])
        flat = [a.transpose(perm) for a in full]
        small_view = None if small is None else small.transpose(perm)
    work = blocks(flat[0].shape, BLOCK_ELEMENTS)
    partials = _execute(chunk_fn, flat, len(outs), work, small_view, perm is not None, reduce)
    if not reduce:
        return None
    acc = partials[0]
    for p in partials[1:]:
        acc = acc + p
    if perm is not None:
        acc = acc.transpose(np.argsort(perm))
    return acc.reshape(small.shape)


def run_rows(chunk_fn: ChunkFn, outs: Sequence[np.ndarray], ins: Sequence[np.ndarray], axis: int) -> None:
    """Apply ``chunk_fn(scratch, *out_blocks, *in_blocks)`` over blocks of whole rows along ``axis``.

    For row-wise activations (softmax): in every block the row axis is the
    last axis, whole, and C-contiguous (a strided row is copied into scratch
    first), so the chunk function reduces with ``axis=-1`` and NumPy's
    pairwise summation applies.  A 0-d array is one row of one element
    (PyTorch's convention); ``axis`` must already be valid and non-negative.
    """
    full = [a.reshape(1) if a.ndim == 0 else a for a in (*outs, *ins)]
    rows = [np.moveaxis(a, axis, -1) for a in full]
    if rows[0].size == 0:
        return
    length = rows[0].shape[-1]
    work = [(*index, slice(None)) for index in blocks(rows[0].shape[:-1], max(1, BLOCK_ELEMENTS // length))]
    _execute(chunk_fn, rows, len(outs), work, contiguous=True)


def _execute(
    chunk_fn: ChunkFn,
    flat: Sequence[np.ndarray],
    n_out: int,
    work: Sequence[tuple[slice, ...]],
    small_view: np.ndarray | None = None,
    small_by_block: bool = False,
    reduce: bool = False,
    contiguous: bool = False,
) -> list:
    """Run the blocks in ``work`` (shared by the worker threads when large); returns ``[total]`` or ``[None]``.

    ``flat`` holds the outputs then the inputs, all of one shape.  A block that
    is not in the compute dtype (or, with ``contiguous``, not C-contiguous) is
    handed to the chunk function as a scratch copy, written back for outputs.

    Threads take the next block from a shared counter rather than a fixed
    half each: on a VM whose cores are slowed unevenly (other tenants, steal
    time) a static split waits for the slowest thread.  Partial sums are kept
    per block and added in block order, so a reduction has the same bits
    whatever the thread count and whichever thread ran which block.
    """
    cdtype = compute_dtype(flat[0].dtype)  # the first output has x's dtype
    next_block = itertools.count()  # next() on a count is atomic under the GIL

    def run_block(index: tuple[slice, ...]) -> tuple | None:
        views = [a[index] for a in flat]
        scratch = Scratch.get(cdtype, views[0].shape)
        args = []
        for slot, view in enumerate(views):
            if view.dtype == cdtype and (not contiguous or view.flags.c_contiguous):
                args.append(view)
            else:
                # Widen 16-bit blocks (and odd-dtype outputs) into float scratch.
                buf = scratch.cast(slot)
                if slot >= n_out:
                    _widen(view, buf, scratch)
                args.append(buf)
        small_index = None
        if small_view is not None:
            small_index = _small_index(index, small_view.shape) if small_by_block else (slice(None),)
            part_small = small_view[small_index]
            args.append(part_small if part_small.dtype == cdtype else part_small.astype(cdtype))
        partial = chunk_fn(scratch, *args)
        for view, arg in zip(views[:n_out], args[:n_out]):
            if arg is not view:
                _narrow(arg, view, scratch)
        return (small_index, partial) if reduce else None

    def worker() -> list:
        # IEEE results (inf * 0 = NaN, ...) are the specified behaviour, not a
        # warning; errstate is per thread, so it is set here, in the worker.
        done = []
        with np.errstate(all="ignore"):
            for number in next_block:
                if number >= len(work):
                    return done
                done.append((number, run_block(work[number])))
        return done

    total = flat[0].size
    if NUM_THREADS > 1 and total >= PARALLEL_MIN_ELEMENTS and len(work) > 1:
        helpers = [_executor().submit(worker) for _ in range(min(NUM_THREADS, len(work)) - 1)]
        results = worker()  # the calling thread works too
        for helper in helpers:
            results += helper.result()
    else:
        results = worker()
    if not reduce:
        return [None]
    acc = np.zeros(small_view.shape, np.float64)
    for _, (small_index, partial) in sorted(results, key=lambda item: item[0]):
        acc[small_index] += partial
    return [acc]
