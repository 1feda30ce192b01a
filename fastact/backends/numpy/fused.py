"""The NumPy backend's fused calls: bias + activation, and dense / conv2d with that epilogue.

The fused epilogue ``y = act(z + bias along an axis)`` runs on the block
engine in one pass: each cache-sized block adds its slice of the bias and
applies the activation's own chunk function (``numpy_math.plan("forward", kernel, ...)``)
in cache, so ``z + bias`` never exists as a full array.  Its backward
recomputes ``z + bias`` per block, multiplies by the activation's derivative
(``numpy_math.plan("backward", ...)``) and returns ``dbias`` through the engine's
deterministic reduction.  Any elementwise activation in the registry works
here unchanged: only the generic kernel interface is used.

Dense and conv2d compute the pre-activation with ``np.matmul`` (BLAS) in the
compute dtype (float32 for 16-bit data) and hand it to the same epilogue
(a caller may supply another matrix product for its context: ``MATMUL``).
Conv2d is im2col + GEMM, batch chunk by batch chunk, on layout-free views:
every array is seen as (n, groups, channels per group, rows, columns), so one
code path serves NCHW and NHWC and only the orders of axes differ.
"""
from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..._conv_geometry import Conv2dGeometry
from . import engine
from . import math as numpy_math
from .engine import compute_dtype

# The im2col buffer of one batch chunk stays under this size (one sample's
# buffer is the floor): extra memory is bounded whatever the batch size.
IM2COL_BUDGET_BYTES = 256 << 20
# Largest bias written out over the trailing axes for the forward epilogue (see _forward_bias).
EXPANDED_BIAS_BYTES = 2 << 20

# The matrix product of dense and conv2d, ``matmul(a, b, out=None)`` with np.matmul's meaning:
# np.matmul (NumPy's BLAS) unless the caller set another for its context.  fastact.torch sets
# torch's for CPU tensors (fastact/torch/_bridge.py: host_gemm): NumPy's OpenBLAS and torch each
# keep a pool of threads that spin after their work, and on the 2-core dev VM the two pools
# stalled each other, a training step taking several times longer (bench/bench_torch_ops.py).
MATMUL: ContextVar[Callable] = ContextVar("fastact_matmul", default=np.matmul)


# --------------------------------------------------------------------------- #
# The fused epilogue: act(z + bias) and its backward, one engine pass each.
# --------------------------------------------------------------------------- #
def along_axis(bias: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A 1-d bias as an ndim-array that broadcasts along ``axis`` (the engine's small operand)."""
    shape = [1] * ndim
    shape[axis] = bias.size
    return bias.reshape(shape)


def _forward_bias(bias: np.ndarray, shape: tuple, axis: int, dtype: np.dtype) -> np.ndarray:
    """The forward's small operand: the bias written out over the trailing axes of ``shape``, when small.

    A broadcast bias is a stride-0 operand in NumPy's inner loops, which add
    at under half the speed of contiguous ones (3.3 us against 1.4 us per
    16 Ki float32), so the forward adds a contiguous slice of the written-out
    bias instead.  Measured on (32, 128, 56, 56) float32, 2 threads: NCHW
    6.1 -> 5.0 ms, NHWC 5.7 -> 5.0 ms.  It spans the fewest trailing axes
    (from axis 1 at most, never the batch) that stay under
    ``EXPANDED_BIAS_BYTES``, because every sample reads it again; a bias on
    axis 0, or one too large even from ``axis`` on, stays broadcast.
    """
    broadcast = along_axis(bias, len(shape), axis)
    for first in range(1, axis + 1):
        trailing = (1,) * first + tuple(shape[first:])
        if math.prod(trailing) * dtype.itemsize <= EXPANDED_BIAS_BYTES:
            return np.broadcast_to(broadcast, trailing).astype(dtype, order="C")
    return broadcast


def _bias_act_forward_chunk(activation: numpy_math.ChunkFn) -> numpy_math.ChunkFn:
    def bias_act(s, out, z, bias):
        np.add(z, bias, out=out)
        activation(s, out, out)  # in place: chunk functions read x before writing out
    return bias_act


def _bias_act_backward_chunk(activation_backward: numpy_math.ChunkFn) -> numpy_math.ChunkFn:
    def bias_act_backward(s, dz, dy, z, bias):
        # z + bias is recomputed in cache rather than stored by the forward.
        np.add(z, bias, out=dz)
        activation_backward(s, dz, dy, dz)
        return numpy_math.reduce_to(dz, bias.shape)
    return bias_act_backward


def epilogue(kernel: str, params: dict, z: np.ndarray, bias: np.ndarray | None, axis: int, out: np.ndarray) -> np.ndarray:
    """out = act(z + bias along ``axis``) in one pass (act(z) without a bias); ``out`` may be ``z``."""
    activation = numpy_math.plan("forward", kernel, params, compute_dtype(out.dtype))
    if bias is None:
        engine.run(activation, [out], [z])
        return out
    small = _forward_bias(bias, z.shape, axis % z.ndim, compute_dtype(out.dtype))
    engine.run(_bias_act_forward_chunk(activation), [out], [z], small=small)
    return out


def epilogue_backward(
    kernel: str, params: dict, dy: np.ndarray, z: np.ndarray, bias: np.ndarray | None, axis: int, dz: np.ndarray
) -> np.ndarray | None:
    """dz = dy * act'(z + bias) in one pass; returns dbias as float64 (bias's shape), or None without a bias.

    ``dz`` may be ``z`` itself (the dense and conv backward overwrite their
    recomputed pre-activation).
    """
    activation = numpy_math.plan("backward", kernel, params, compute_dtype(dz.dtype))
    if bias is None:
        engine.run(activation, [dz], [dy, z])
        return None
    small = along_axis(bias, z.ndim, axis)
    total = engine.run(_bias_act_backward_chunk(activation), [dz], [dy, z], small=small, reduce=True)
    return total.reshape(bias.shape)


class Epilogues:
    """The fused epilogue pair that dense and conv2d apply after their GEMM.

    These are the NumPy engine's; the cpu backend passes its own compiled pair
    (same signatures) and reuses the GEMM and im2col code below unchanged.
    """

    epilogue = staticmethod(epilogue)
    epilogue_backward = staticmethod(epilogue_backward)


NUMPY_EPILOGUES = Epilogues()


def in_dtype(total: np.ndarray | None, like: np.ndarray | None) -> np.ndarray | None:
    """A gradient rounded to its operand's dtype; None stays None (no bias, no dbias)."""
    return None if total is None else total.astype(like.dtype, copy=False)


# --------------------------------------------------------------------------- #
# Dense: x @ w on the flattened leading axes, then the epilogue on the last axis.
# --------------------------------------------------------------------------- #
def _dense_operands(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x as (rows, in) and w, both in the compute dtype (16-bit GEMMs run in float32)."""
    cdtype = compute_dtype(x.dtype)
    rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
    return rows.astype(cdtype, copy=False), w.astype(cdtype, copy=False)


def dense_bias_act(kernel: str, params: dict, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                   epilogues: Epilogues = NUMPY_EPILOGUES) -> np.ndarray:
    rows, wc = _dense_operands(x, w)
    z = MATMUL.get()(rows, wc)
    out = z if z.dtype == x.dtype else np.empty(z.shape, x.dtype)
    epilogues.epilogue(kernel, params, z, bias, -1, out)
    return out.reshape(*x.shape[:-1], w.shape[1])


def dense_bias_act_backward(kernel, params, dy, x, w, bias, epilogues: Epilogues = NUMPY_EPILOGUES):
    """(dx, dw, dbias): dz = dy * act'(x @ w + b); dx = dz @ w.T; dw = x.T @ dz; dbias = sum of dz."""
    rows, wc = _dense_operands(x, w)
    matmul = MATMUL.get()
    dz = matmul(rows, wc)  # the pre-activation, overwritten by dz
    dbias = epilogues.epilogue_backward(kernel, params, dy.reshape(dz.shape), dz, bias, -1, dz)
    dx = matmul(dz, wc.T).astype(x.dtype, copy=False).reshape(x.shape)
    dw = matmul(rows.T, dz).astype(w.dtype, copy=False)
    return dx, dw, in_dtype(dbias, bias)


# --------------------------------------------------------------------------- #
# Conv2d: im2col + GEMM per batch chunk.
#
# Arrays are handled through "grouped" views (n, G, Cg, H, W), and the image
# windows as (n, G, Cg, OH, OW, kh, kw).  Every GEMM of a chunk is one BLAS
# call per group over all of the chunk's pixels: the columns as (G, n*L, K),
# the weights as (G, K, Og) and the pre-activation z as (G, n*L, Og).  The
# memory orders of the column buffer and of z are chosen per data format so
# that each of these matrices is row- or column-major (never a gather), and
# `_gemm` turns a product whose result is column-major into its transpose,
# because np.matmul only calls BLAS for a row-major ``out`` (it falls back to
# its own loops otherwise: 6 s instead of 0.1 s for (256, 16, 32, 32) 3x3 NCHW):
#   NCHW: columns (G, Cg, kh, kw, n, OH, OW) = (G, K, n*L); z (C, n, OH, OW),
#         moved into the NCHW output by the epilogue;
#   NHWC: columns (n, OH, OW, G, kh, kw, Cg) = (n*L, G, K); z = the output itself.
# ConvKernels fills the column buffer (im2col) and gathers the column gradient
# onto the image (col2im); the cpu backend passes its compiled pair.
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Layout:
    grouped: tuple  # (n, H, W, ...) storage with channels split into (G, Cg) -> (n, G, Cg, H, W)
    cols_order: tuple  # window axes (n, G, Cg, OH, OW, kh, kw) in the column buffer's memory order
    k_axes: tuple  # the window axes that make up K, in the order of the weights
    out_channels_first: bool  # weights (O, Cg, kh, kw) rather than (kh, kw, Cg, O)
    z_order: tuple  # the axes of y (in the data format) in the memory order of the GEMM result z


_LAYOUTS = {
    "NCHW": _Layout((0, 1, 2, 3, 4), (1, 2, 5, 6, 0, 3, 4), (2, 5, 6), True, (1, 0, 2, 3)),
    "NHWC": _Layout((0, 3, 4, 1, 2), (0, 3, 4, 1, 5, 6, 2), (5, 6, 2), False, (0, 1, 2, 3)),
}


def _gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b (stacks of matrices) through BLAS: a column-major ``out`` is computed as out.T = b.T @ a.T."""
    if out.shape[-1] > 1 and out.strides[-1] != out.itemsize:
        MATMUL.get()(b.swapaxes(-1, -2), a.swapaxes(-1, -2), out=out.swapaxes(-1, -2))
    else:
        MATMUL.get()(a, b, out=out)
    return out


class ConvKernels:
    """im2col and col2im, the copies around conv2d's GEMMs: NumPy's.

    The cpu backend subclasses this with its compiled loops (cuda/host/conv.h)
    and a cache-sized chunk budget; the GEMM flow in _Conv and the two
    conv2d functions below is the same for both.
    """

    def cols_budget_bytes(self) -> int:
        """The column buffer of one batch chunk stays under this size (one sample's buffer is the floor)."""
        return IM2COL_BUDGET_BYTES

    def scratch(self, size: int, dtype: np.dtype) -> np.ndarray:
        """A flat array of ``size`` elements for one call's column buffer (NumPy's: a new one)."""
        return np.empty(size, dtype)

    def im2col(self, conv: "_Conv", x: np.ndarray, cols: np.ndarray) -> None:
        """Fill ``cols`` (the chunk's column buffer, in its memory order) from the chunk ``x``."""
        np.copyto(conv.buffer_windows(cols), conv.windows(conv.padded(x)))

    def col2im(self, conv: "_Conv", cols: np.ndarray, dx: np.ndarray) -> None:
        """dx = the column gradient ``cols`` (a column buffer) added back onto the image, for the chunk ``dx``.

        One strided add per kernel tap (kh*kw passes over the image) beats
        np.add.at, which handles every element separately: 19 ms against 56 ms
        for a (4, 64, 56, 56) 3x3 gradient, float32.
        """
        padded = conv.zero_padded(dx.shape[0])
        windows = conv.buffer_windows(cols)
        for i, j, rows, columns in conv.kernel_positions():
            padded[..., rows, columns] += windows[..., i, j]
        np.copyto(conv.grouped(dx), padded[conv.interior()], casting="unsafe")


NUMPY_CONV_KERNELS = ConvKernels()


class _Conv:
    """One convolution call's views and buffers; methods work on one batch chunk."""

    def __init__(self, geometry: Conv2dGeometry, w: np.ndarray, dtype: np.dtype, kernels: ConvKernels) -> None:
        g = self.geometry = geometry
        self.layout = _LAYOUTS[g.data_format]
        self.kernels = kernels
        self.cdtype = compute_dtype(dtype)
        self.weights = self._weight_matrix(w.astype(self.cdtype, copy=False))
        self.oh, self.ow = g.out_size
        self.k = (g.in_channels // g.groups) * g.kernel_size[0] * g.kernel_size[1]
        per_sample = g.groups * self.k * self.oh * self.ow * self.cdtype.itemsize
        self.chunk = max(1, kernels.cols_budget_bytes() // max(per_sample, 1))
        # The column buffer's memory, allocated once per call (a chunk's buffer is
        # its C-contiguous head): copying the windows into a fresh array took
        # twice as long as into a reused one (page faults).
        self._cols = None
        self._z = None  # likewise z's memory, where z is not the output itself
        self.z_axis = self.layout.z_order.index(g.channel_axis)  # the channel axis of z_ordered arrays

    # ---- views ------------------------------------------------------------
    def grouped(self, a: np.ndarray) -> np.ndarray:
        """(n, G, Cg, H, W) view of a 4-d array in the data format (splitting an axis never copies)."""
        axis, groups = self.geometry.channel_axis, self.geometry.groups
        shape = (*a.shape[:axis], groups, a.shape[axis] // groups, *a.shape[axis + 1 :])
        return a.reshape(shape).transpose(self.layout.grouped)

    def _weight_matrix(self, w: np.ndarray) -> np.ndarray:
        """The weights as (G, K, Og), a view of w when w is contiguous."""
        groups = self.geometry.groups
        if self.layout.out_channels_first:
            return w.reshape(groups, w.shape[0] // groups, -1).transpose(0, 2, 1)
        return w.reshape(-1, groups, w.shape[3] // groups).transpose(1, 0, 2)

    def weight_gradient(self, matrix: np.ndarray, shape: tuple) -> np.ndarray:
        """(G, K, Og) back to the weights' own shape."""
        if self.layout.out_channels_first:
            return matrix.transpose(0, 2, 1).reshape(shape)
        return matrix.transpose(1, 0, 2).reshape(shape)

    def _window_shape(self, n: int) -> tuple:
        g = self.geometry
        return (n, g.groups, g.in_channels // g.groups, self.oh, self.ow, *g.kernel_size)

    def buffer_windows(self, cols: np.ndarray) -> np.ndarray:
        """A column buffer (window axes in cols_order) as windows (n, G, Cg, OH, OW, kh, kw)."""
        return cols.transpose(np.argsort(self.layout.cols_order))

    def cols_matrix(self, cols: np.ndarray, written: bool = False) -> np.ndarray:
        """A column buffer as the GEMM operand (G, n*L, K), K in the weights' order; a view when ``written``.

        Only x itself (a pointwise conv's columns) can need a copy here.
        """
        n, groups = cols.shape[self.layout.cols_order.index(0)], self.geometry.groups
        windows = self.buffer_windows(cols)
        matrix = windows.transpose(1, 0, 3, 4, *self.layout.k_axes).reshape(groups, n * self.oh * self.ow, self.k)
        assert not written or matrix.size == 0 or np.may_share_memory(matrix, cols)  # a copy would lose the GEMM's result
        return matrix

    def z_matrix(self, z: np.ndarray) -> np.ndarray:
        """A y-shaped array as the GEMM result (G, n*L, Og): a view, so that the GEMM writes into z."""
        grouped = self.grouped(z)
        n, groups, per_group = grouped.shape[:3]
        matrix = grouped.transpose(1, 0, 3, 4, 2).reshape(groups, n * self.oh * self.ow, per_group)
        assert matrix.size == 0 or np.may_share_memory(matrix, z)
        return matrix

    def z_ordered(self, a: np.ndarray) -> np.ndarray:
        """A y-shaped array with its axes in z's memory order (z itself: C-contiguous; channels at z_axis)."""
        return a.transpose(self.layout.z_order)

    def new_z(self, n: int) -> np.ndarray:
        """A y-shaped compute-dtype array for n samples, stored in z's memory order."""
        shape = self.geometry.layout_shape(self.geometry.out_channels, self.geometry.out_size)
        shape = (n, *shape[1:])
        order = self.layout.z_order
        if self._z is None:
            self._z = np.empty(math.prod(shape) // max(n, 1) * min(self.chunk, self.geometry.batch), self.cdtype)
        ordered = [shape[a] for a in order]
        return self._z[: math.prod(ordered)].reshape(ordered).transpose(np.argsort(order))

    def z_into(self, out: np.ndarray) -> np.ndarray:
        """Where the forward's GEMM writes for the chunk ``out``: out itself when z's layout and dtype are its own."""
        if out.dtype == self.cdtype and self.layout.z_order == (0, 1, 2, 3):
            return out
        return self.new_z(out.shape[0])

    # ---- im2col / col2im helpers (ConvKernels) ------------------------------
    def padded(self, x: np.ndarray) -> np.ndarray:
        """Grouped view of the zero-padded chunk in the compute dtype (x itself when nothing changes)."""
        (top, bottom), (left, right) = self.geometry.padding
        if top == bottom == left == right == 0:
            return self.grouped(x).astype(self.cdtype, copy=False)
        padded = self.zero_padded(x.shape[0])
        padded[self.interior()] = self.grouped(x)
        return padded

    def zero_padded(self, n: int) -> np.ndarray:
        """Grouped view of n zero samples of the padded input's size."""
        (top, bottom), (left, right) = self.geometry.padding
        h, w = self.geometry.in_size
        shape = self.geometry.layout_shape(self.geometry.in_channels, (h + top + bottom, w + left + right))
        return self.grouped(np.zeros((n, *shape[1:]), self.cdtype))

    def interior(self) -> tuple:
        """The index of the unpadded image inside a grouped padded array."""
        (top, _), (left, _) = self.geometry.padding
        h, w = self.geometry.in_size
        return (..., slice(top, top + h), slice(left, left + w))

    def windows(self, padded: np.ndarray) -> np.ndarray:
        """(n, G, Cg, OH, OW, kh, kw) view of the padded input: stride and dilation as slices."""
        (kh, kw), (sh, sw), (dh, dw) = self.geometry.kernel_size, self.geometry.stride, self.geometry.dilation
        view = sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(3, 4))
        return view[:, :, :, ::sh, ::sw, ::dh, ::dw]

    def kernel_positions(self) -> Iterator[tuple[int, int, slice, slice]]:
        """(i, j, rows, columns): the padded-input pixels that kernel tap (i, j) meets, one per output pixel."""
        (kh, kw), (sh, sw), (dh, dw) = self.geometry.kernel_size, self.geometry.stride, self.geometry.dilation
        for i in range(kh):
            for j in range(kw):
                yield i, j, slice(i * dh, i * dh + (self.oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (self.ow - 1) * sw + 1, sw)

    # ---- per chunk -----------------------------------------------------------
    def new_cols(self, n: int) -> np.ndarray:
        """A C-contiguous column buffer for n samples (window axes in cols_order), on the call's memory."""
        shape = self._window_shape(n)
        shape = [shape[a] for a in self.layout.cols_order]
        if self._cols is None:
            self._cols = self.kernels.scratch(math.prod(self._window_shape(min(self.chunk, self.geometry.batch))), self.cdtype)
        return self._cols[: math.prod(shape)].reshape(shape)

    def im2col(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """(the chunk's column buffer, whether it is this call's own memory).

        A 1x1 stride-1 unpadded conv whose input already is that buffer (NHWC,
        or one NCHW sample, in the compute dtype) needs no copy.
        """
        if self.geometry.is_pointwise and x.dtype == self.cdtype and (self.layout.z_order == (0, 1, 2, 3) or len(x) == 1):
            return self.windows(self.grouped(x)).transpose(self.layout.cols_order), False
        cols = self.new_cols(x.shape[0])
        self.kernels.im2col(self, x, cols)
        return cols, True

    def batches(self) -> Iterator[slice]:
        for start in range(0, self.geometry.batch, self.chunk):
            yield slice(start, min(start + self.chunk, self.geometry.batch))


def conv2d_bias_act(kernel, params, x, w, bias, geometry: Conv2dGeometry,
                    epilogues: Epilogues = NUMPY_EPILOGUES, kernels: ConvKernels = NUMPY_CONV_KERNELS) -> np.ndarray:
    conv = _Conv(geometry, w, x.dtype, kernels)
    out = np.empty(geometry.out_shape, x.dtype)
    for batch in conv.batches():
        cols, _ = conv.im2col(x[batch])
        z = conv.z_into(out[batch])
        _gemm(conv.cols_matrix(cols), conv.weights, conv.z_matrix(z))
        # On z's memory order (contiguous), writing into out[batch] (for NCHW a transposed view).
        epilogues.epilogue(kernel, params, conv.z_ordered(z), bias, conv.z_axis, conv.z_ordered(out[batch]))
    return out


def conv2d_bias_act_backward(kernel, params, dy, x, w, bias, geometry: Conv2dGeometry,
                             epilogues: Epilogues = NUMPY_EPILOGUES, kernels: ConvKernels = NUMPY_CONV_KERNELS):
    """(dx, dw, dbias), chunk by chunk: z by GEMM, dz and dbias fused, dw = cols^T dz, dx = col2im(dz w^T)."""
    conv = _Conv(geometry, w, x.dtype, kernels)
    dx = np.empty(x.shape, x.dtype)
    dw = np.zeros(conv.weights.shape, conv.cdtype)
    dbias = None if bias is None else np.zeros(bias.shape, np.float64)
    for batch in conv.batches():
        cols, own_buffer = conv.im2col(x[batch])
        z = conv.new_z(len(dy[batch]))
        cols_matrix = conv.cols_matrix(cols)
        dz_matrix = _gemm(cols_matrix, conv.weights, conv.z_matrix(z))  # z, overwritten by dz
        dz = conv.z_ordered(z)
        part = epilogues.epilogue_backward(kernel, params, conv.z_ordered(dy[batch]), dz, bias, conv.z_axis, dz)
        if part is not None:
            dbias += part
        dw += MATMUL.get()(cols_matrix.swapaxes(-1, -2), dz_matrix)
        # dcols reuses the column buffer (cols is no longer needed), never x itself.
        dcols = cols if own_buffer else np.empty(cols.shape, conv.cdtype)
        _gemm(dz_matrix, conv.weights.swapaxes(-1, -2), conv.cols_matrix(dcols, written=True))
        kernels.col2im(conv, dcols, dx[batch])
    return dx, conv.weight_gradient(dw, w.shape).astype(w.dtype, copy=False), in_dtype(dbias, bias)
