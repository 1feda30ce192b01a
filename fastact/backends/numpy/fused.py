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
compute dtype (float32 for 16-bit data) and hand it to the same epilogue.
Conv2d is im2col + GEMM, batch chunk by batch chunk, on layout-free views:
every array is seen as (n, groups, channels per group, rows, columns), so one
code path serves NCHW and NHWC and only the orders of axes differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

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
    z = np.matmul(rows, wc)
    out = z if z.dtype == x.dtype else np.empty(z.shape, x.dtype)
    epilogues.epilogue(kernel, params, z, bias, -1, out)
    return out.reshape(*x.shape[:-1], w.shape[1])


def dense_bias_act_backward(kernel, params, dy, x, w, bias, epilogues: Epilogues = NUMPY_EPILOGUES):
    """(dx, dw, dbias): dz = dy * act'(x @ w + b); dx = dz @ w.T; dw = x.T @ dz; dbias = sum of dz."""
    rows, wc = _dense_operands(x, w)
    dz = np.matmul(rows, wc)  # the pre-activation, overwritten by dz
    dbias = epilogues.epilogue_backward(kernel, params, dy.reshape(dz.shape), dz, bias, -1, dz)
    dx = np.matmul(dz, wc.T).astype(x.dtype, copy=False).reshape(x.shape)
    dw = np.matmul(rows.T, dz).astype(w.dtype, copy=False)
    return dx, dw, in_dtype(dbias, bias)


# --------------------------------------------------------------------------- #
# Conv2d: im2col + GEMM per batch chunk.
#
# Arrays are handled through "grouped" views (n, G, Cg, H, W), and the image
# windows as (n, G, Cg, OH, OW, kh, kw).  The im2col buffer is stored in the
# order that makes the GEMM output land in the data format directly: for NCHW
# (n, G, [Cg kh kw], [OH OW]) so w @ cols gives (n, G, Og, OH*OW); for NHWC
# (n, [OH OW], G, [kh kw Cg]) so cols @ w gives (n, OH*OW, G, Og).  The GEMM
# sees both as (n, G, L, K) @ (G, K, Og); BLAS takes the transposed views.
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Layout:
    grouped: tuple  # (n, H, W, ...) storage with channels split into (G, Cg) -> (n, G, Cg, H, W)
    cols_order: tuple  # window axes (n, G, Cg, OH, OW, kh, kw) in the im2col buffer's memory order
    k_axes: tuple  # the window axes that make up K, in the order of the weights
    out_channels_first: bool  # weights (O, Cg, kh, kw) rather than (kh, kw, Cg, O)


_LAYOUTS = {
    "NCHW": _Layout((0, 1, 2, 3, 4), (0, 1, 2, 5, 6, 3, 4), (2, 5, 6), True),
    "NHWC": _Layout((0, 3, 4, 1, 2), (0, 3, 4, 1, 5, 6, 2), (5, 6, 2), False),
}


class _Conv:
    """One convolution call's views and buffers; methods work on one batch chunk."""

    def __init__(self, geometry: Conv2dGeometry, w: np.ndarray, dtype: np.dtype) -> None:
        g = self.geometry = geometry
        self.layout = _LAYOUTS[g.data_format]
        self.cdtype = compute_dtype(dtype)
        self.weights = self._weight_matrix(w.astype(self.cdtype, copy=False))
        self.oh, self.ow = g.out_size
        self.k = (g.in_channels // g.groups) * g.kernel_size[0] * g.kernel_size[1]
        per_sample = g.groups * self.k * self.oh * self.ow * self.cdtype.itemsize
        self.chunk = max(1, IM2COL_BUDGET_BYTES // max(per_sample, 1))
        # The im2col buffer, allocated once per call: copying the windows into a
        # fresh array took twice as long as into a reused one (page faults).
        self._cols = None

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

    def _matrix_order(self) -> tuple:
        return (0, 1, 3, 4, *self.layout.k_axes)

    def cols_matrix(self, windows: np.ndarray) -> np.ndarray:
        """Windows (n, G, Cg, OH, OW, kh, kw) as the GEMM operand (n, G, L, K), K in the weights' order."""
        n, groups = windows.shape[:2]
        return windows.transpose(self._matrix_order()).reshape(n, groups, self.oh * self.ow, self.k)

    def matrix_windows(self, matrix: np.ndarray) -> np.ndarray:
        """The inverse of cols_matrix: (n, G, L, K) as windows (n, G, Cg, OH, OW, kh, kw)."""
        sizes = self._window_shape(matrix.shape[0])
        order = self._matrix_order()
        return matrix.reshape([sizes[a] for a in order]).transpose(np.argsort(order))

    def z_matrix(self, z: np.ndarray) -> np.ndarray:
        """A y-shaped array as the GEMM result (n, G, L, Og): a view, so that the GEMM writes into z."""
        grouped = self.grouped(z)
        n, groups, per_group = grouped.shape[:3]
        matrix = grouped.transpose(0, 1, 3, 4, 2).reshape(n, groups, self.oh * self.ow, per_group)
        # (OH, OW) are adjacent in both layouts, so this reshape is a view; a copy would lose the GEMM.
        assert matrix.size == 0 or np.may_share_memory(matrix, z)
        return matrix

    def _window_shape(self, n: int) -> tuple:
        g = self.geometry
        return (n, g.groups, g.in_channels // g.groups, self.oh, self.ow, *g.kernel_size)

    # ---- im2col / col2im --------------------------------------------------
    def padded(self, x: np.ndarray) -> np.ndarray:
        """Grouped view of the zero-padded chunk in the compute dtype (x itself when nothing changes)."""
        (top, bottom), (left, right) = self.geometry.padding
        if top == bottom == left == right == 0:
            return self.grouped(x).astype(self.cdtype, copy=False)
        padded = self._zero_padded(x.shape[0])
        padded[self._interior()] = self.grouped(x)
        return padded

    def _zero_padded(self, n: int) -> np.ndarray:
        """Grouped view of n zero samples of the padded input's size."""
        (top, bottom), (left, right) = self.geometry.padding
        h, w = self.geometry.in_size
        return self.grouped(self.new(n, self.geometry.in_channels, (h + top + bottom, w + left + right), zero=True))

    def _interior(self) -> tuple:
        """The index of the unpadded image inside a grouped padded array."""
        (top, _), (left, _) = self.geometry.padding
        h, w = self.geometry.in_size
        return (..., slice(top, top + h), slice(left, left + w))

    def new(self, n: int, channels: int, size: tuple, zero: bool = False) -> np.ndarray:
        """A compute-dtype array in the data format, for n samples."""
        shape = self.geometry.layout_shape(channels, size)
        return (np.zeros if zero else np.empty)((n, *shape[1:]), self.cdtype)

    def windows(self, padded: np.ndarray) -> np.ndarray:
        """(n, G, Cg, OH, OW, kh, kw) view of the padded input: stride and dilation as slices."""
        (kh, kw), (sh, sw), (dh, dw) = self.geometry.kernel_size, self.geometry.stride, self.geometry.dilation
        view = sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(3, 4))
        return view[:, :, :, ::sh, ::sw, ::dh, ::dw]

    def im2col(self, padded: np.ndarray) -> tuple[np.ndarray, bool]:
        """(cols as (n, G, L, K), whether it is this call's own buffer); a 1x1 stride-1 conv needs no copy."""
        windows = self.windows(padded)
        if self.geometry.is_pointwise:
            return self.cols_matrix(windows), False
        n = padded.shape[0]
        if self._cols is None:
            shape = self._window_shape(min(self.chunk, self.geometry.batch))
            self._cols = np.empty([shape[a] for a in self.layout.cols_order], self.cdtype)
        buffer = self._cols[:n].transpose(np.argsort(self.layout.cols_order))
        np.copyto(buffer, windows)
        return self.cols_matrix(buffer), True

    def kernel_positions(self) -> Iterator[tuple[int, int, slice, slice]]:
        """(i, j, rows, columns): the padded-input pixels that kernel tap (i, j) meets, one per output pixel."""
        (kh, kw), (sh, sw), (dh, dw) = self.geometry.kernel_size, self.geometry.stride, self.geometry.dilation
        for i in range(kh):
            for j in range(kw):
                yield i, j, slice(i * dh, i * dh + (self.oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (self.ow - 1) * sw + 1, sw)

    def col2im(self, dcols: np.ndarray, dx: np.ndarray) -> None:
        """Scatter-add the (n, G, L, K) column gradient back onto the image, into the chunk ``dx``.

        One strided add per kernel tap (kh*kw passes over the image) beats
        np.add.at, which handles every element separately: 19 ms against 56 ms
        for a (4, 64, 56, 56) 3x3 gradient, float32.
        """
        padded = self._zero_padded(dx.shape[0])
        windows = self.matrix_windows(dcols)
        for i, j, rows, columns in self.kernel_positions():
            padded[..., rows, columns] += windows[..., i, j]
        np.copyto(self.grouped(dx), padded[self._interior()], casting="unsafe")

    def batches(self) -> Iterator[slice]:
        for start in range(0, self.geometry.batch, self.chunk):
            yield slice(start, min(start + self.chunk, self.geometry.batch))


def conv2d_bias_act(kernel, params, x, w, bias, geometry: Conv2dGeometry,
                    epilogues: Epilogues = NUMPY_EPILOGUES) -> np.ndarray:
    conv = _Conv(geometry, w, x.dtype)
    out = np.empty(geometry.out_shape, x.dtype)
    for batch in conv.batches():
        cols, _ = conv.im2col(conv.padded(x[batch]))
        # GEMM straight into out when out has the compute dtype; the epilogue then runs in place.
        z = out[batch] if out.dtype == conv.cdtype else conv.new(cols.shape[0], geometry.out_channels, geometry.out_size)
        np.matmul(cols, conv.weights, out=conv.z_matrix(z))
        epilogues.epilogue(kernel, params, z, bias, geometry.channel_axis, out[batch])
    return out


def conv2d_bias_act_backward(kernel, params, dy, x, w, bias, geometry: Conv2dGeometry,
                             epilogues: Epilogues = NUMPY_EPILOGUES):
    """(dx, dw, dbias), chunk by chunk: z by GEMM, dz and dbias fused, dw = cols^T dz, dx = col2im(dz w^T)."""
    conv = _Conv(geometry, w, x.dtype)
    dx = np.empty(x.shape, x.dtype)
    dw = np.zeros(conv.weights.shape, conv.cdtype)
    dbias = None if bias is None else np.zeros(bias.shape, np.float64)
    for batch in conv.batches():
        cols, own_buffer = conv.im2col(conv.padded(x[batch]))
        dz = conv.new(cols.shape[0], geometry.out_channels, geometry.out_size)
        dz_matrix = np.matmul(cols, conv.weights, out=conv.z_matrix(dz))  # z, overwritten by dz
        part = epilogues.epilogue_backward(kernel, params, dy[batch], dz, bias, geometry.channel_axis, dz)
        if part is not None:
            dbias += part
        dw += np.matmul(cols.swapaxes(-1, -2), dz_matrix).sum(axis=0)
        # dcols reuses the im2col buffer (cols is no longer needed), never x itself.
        dcols = np.matmul(dz_matrix, conv.weights.swapaxes(-1, -2), out=cols if own_buffer else None)
        conv.col2im(dcols, dx[batch])
    return dx, conv.weight_gradient(dw, w.shape).astype(w.dtype, copy=False), in_dtype(dbias, bias)
