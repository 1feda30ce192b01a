"""The fused calls of the kernel backends (``cuda`` and its CPU emulator): bias_act, dense and conv2d.

:class:`FusedKernelMethods` is mixed into :class:`~fastact.backends.kernels.backend.KernelBackend`
and uses its primitives (``launch``, ``sm_count``, layouts) plus one more,
``gemm`` (cuBLAS through ``cupy.matmul`` on the GPU, a float32/float64
``numpy.matmul`` rounded to the array dtype on the emulator, which is what
cuBLAS computes for 16-bit data).

* bias_act: one kernel, one read and one write per element
  (``cuda/bias_act.cuh``), for any activation functor; its backward is one
  kernel giving dx and per-block partial sums of dbias, then PReLU's
  deterministic second pass (``prelu_sum_partials``).
* dense: ``x @ w`` by one GEMM in the array dtype, then the bias_act kernel in
  place over its output (the bias along the last axis); backward: z by GEMM,
  dz and dbias by the fused backward kernel (in place over z), dx and dw by GEMMs.
* conv2d: im2col (``cuda/conv.cuh``) + GEMM + the same epilogue, batch chunk
  by batch chunk; see :class:`_Conv` for the layouts and the memory bound.

bias_act, its backward, dense_bias_act and conv2d_bias_act are recorded and
replayed per key (``kernels/replay.py``): GEMMs go through :meth:`FusedKernelMethods.matmul`
so that a recording sees them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..._conv_geometry import Conv2dGeometry
from . import plan, replay

# The column buffer of one batch chunk stays under this size (one sample's
# buffer is the floor), whatever the batch size (as the NumPy backend's
# numpy/fused.py: IM2COL_BUDGET_BYTES; tests shrink it to exercise the chunks).
IM2COL_BUDGET_BYTES = 256 << 20


def in_dtype(total: Any, like: Any) -> Any:
    """A float64 gradient rounded to its operand's dtype; None stays None (no bias, no dbias)."""
    if total is None or total.dtype == like.dtype:  # None, or already in like's dtype (see _reduce_channels)
        return total
    return total.astype(like.dtype)


def channel_plan(shape: tuple, axis: int) -> plan.PreluPlan:
    """x seen as (outer, channels, inner) around the bias axis (PReLU's form)."""
    return plan.PreluPlan(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))


class FusedKernelMethods:
    """The six fused methods of :class:`~fastact.backends.base.Backend` as kernel launches and GEMMs."""

    # ---- device primitive (subclasses) --------------------------------------
    # What gemm does when ``out`` is C-contiguous, as one callable ``gemm_into(a, b, out=out)`` (the cuda
    # backend: cupy.matmul), or None; replayed GEMMs (kernels/replay.py) call it directly.
    gemm_into: Any = None

    def gemm(self, a: Any, b: Any, out: Any) -> Any:
        """out[...] = a @ b (matmul semantics: batched, broadcast), in the dtype of a and b; returns out.

        Products accumulate in float32 for 16-bit data (as cuBLAS does) and the
        result is rounded once to the array dtype.  ``out`` may be any view.
        """
        raise NotImplementedError

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        """a @ b into ``out`` (a new C-contiguous array when None).

        When ``out`` is a transposed view of a C-contiguous array (the NCHW
        convolution's matrices), computes out.T = b.T @ a.T instead, so that
        the GEMM writes straight into its memory.
        """
        if out is None:
            shape = (*self._batch_shape(a, b), a.shape[-2], b.shape[-1])
            out = self.xp.empty(shape, a.dtype)
        if not out.flags.c_contiguous and out.swapaxes(-1, -2).flags.c_contiguous:
            self._gemm(b.swapaxes(-1, -2), a.swapaxes(-1, -2), out.swapaxes(-1, -2))
        else:
            self._gemm(a, b, out)
        return out

    def _gemm(self, a: Any, b: Any, out: Any) -> None:
        """gemm(a, b, out), noted as one event when the call is being recorded (kernels/replay.py)."""
        recording = replay._active()
        if recording is None:
            self.gemm(a, b, out)
        else:
            replay.record_gemm(recording, self.gemm, a, b, out, self.gemm_into)

    @staticmethod
    def _batch_shape(a: Any, b: Any) -> tuple:
        return np.broadcast_shapes(a.shape[:-2], b.shape[:-2])

    # ---- bias_act -------------------------------------------------------------
    def bias_act(self, kernel, params, x, bias, axis, out):
        with self.device_of(x):
            return self._epilogue(kernel, params, x, bias, axis, self._result(out, x))

    def bias_act_backward(self, kernel, params, dy, x, bias, axis):
        with self.device_of(x):
            dx = self.xp.empty(x.shape, x.dtype)
            return dx, in_dtype(self._epilogue_backward(kernel, params, dy, x, bias, axis, dx, like=bias), bias)

    def _epilogue(self, kernel: str, params: dict, z: Any, bias: Any, axis: int, out: Any) -> Any:
        """out = act(z + bias along ``axis``) in one kernel (act(z) without a bias); ``out`` may be ``z``."""
        if bias is None:
            return self.forward(kernel, params, z, out)
        if z.size == 0:
            return out
        p = channel_plan(z.shape, axis)
        (zc,), destination, work, values = self._channel_operands(p, out, [z], self._along(bias, z.ndim, axis))
        n = zc.size
        launch = plan.elementwise_launch(n, z.dtype, [self.data_ptr(zc), self.data_ptr(work)], self.sm_count())
        layout, vector = plan.channel_layout(p, launch.vector, launch.index, self.data_ptr(values), one_channel=False)
        name = plan.bias_act_forward_kernel(kernel, z.dtype, layout, vector, launch.index)
        args = (plan.pack_functor(kernel, params, z.dtype), plan.channel_of(p, launch.index),
                plan.index_scalar(launch.index, n), work.reshape(-1), zc.reshape(-1), values)
        self.launch(kernel, z.dtype, name, (launch.grid,), (launch.block,), args)
        if work is not destination:
            destination[...] = work
        return out

    def _epilogue_backward(self, kernel: str, params: dict, dy: Any, z: Any, bias: Any, axis: int, dz: Any,
                           like: Any = None) -> Any:
        """dz = dy * act'(z + bias) in one kernel; returns dbias in float64 (in ``like``'s dtype when that is
        float32: see _reduce_channels), or None without a bias.

        ``dz`` may be ``z`` itself (dense and conv2d overwrite their recomputed pre-activation).
        """
        if bias is None:
            self.backward(kernel, params, dy, z, dz)
            return None
        if z.size == 0:
            return self.xp.zeros(bias.shape, "float64")
        functor = plan.pack_functor(kernel, params, z.dtype)
        return self._reduce_channels(
            kernel, channel_plan(z.shape, axis), dz, [dy, z], self._along(bias, z.ndim, axis),
            lambda launch: plan.bias_act_backward_kernel(kernel, z.dtype, launch), leading=(functor,), like=like,
        )

    @staticmethod
    def _along(bias: Any, ndim: int, axis: int) -> Any:
        """A 1-d bias as an ndim-array that broadcasts along ``axis``."""
        shape = [1] * ndim
        shape[axis] = bias.size
        return bias.reshape(shape)

    # ---- dense ------------------------------------------------------------------
    def dense_bias_act(self, kernel, params, x, w, bias):
        plan.pack_functor(kernel, params, x.dtype)  # an activation without a CUDA functor fails before any GEMM
        with self.device_of(x):
            rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # also when in == 0
            y = self.matmul(rows, w)
            self._epilogue(kernel, params, y, bias, 1, y)
            return y.reshape(*x.shape[:-1], w.shape[1])

    def dense_bias_act_backward(self, kernel, params, dy, x, w, bias):
        """(dx, dw, dbias): dz = dy * act'(x @ w + b); dx = dz @ w.T; dw = x.T @ dz; dbias = sum of dz."""
        plan.pack_functor(kernel, params, x.dtype)
        with self.device_of(x):
            rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])  # also when in == 0
            dz = self.matmul(rows, w)  # the pre-activation, overwritten by dz
            dbias = self._epilogue_backward(kernel, params, dy.reshape(dz.shape), dz, bias, 1, dz)
            dx = self.matmul(dz, w.T).reshape(x.shape)
            return dx, self.matmul(rows.T, dz), in_dtype(dbias, bias)

    # ---- conv2d -----------------------------------------------------------------
    def conv2d_bias_act(self, kernel, params, x, w, bias, geometry: Conv2dGeometry):
        """im2col + GEMM + the bias_act epilogue per batch chunk; memory bound: see :class:`_Conv`."""
        plan.pack_functor(kernel, params, x.dtype)
        with self.device_of(x):
            conv = _Conv(self, geometry, w, x.dtype)
            out = self.xp.empty(geometry.out_shape, x.dtype)
            for batch in conv.batches():
                z = out[batch]
                self.matmul(conv.im2col(x[batch]), conv.weights, out=conv.output_matrix(z))
                self._epilogue(kernel, params, z, bias, geometry.channel_axis, z)
            return out

    def conv2d_bias_act_backward(self, kernel, params, dy, x, w, bias, geometry: Conv2dGeometry):
        """(dx, dw, dbias) per batch chunk: z by GEMM, dz and dbias fused, dw = cols^T dz, dx = col2im(dz w^T).

        dw and dbias accumulate over the chunks, in chunk order, in the compute
        type (float32 for 16-bit data) and in float64.
        """
        xp = self.xp
        plan.pack_functor(kernel, params, x.dtype)
        with self.device_of(x):
            conv = _Conv(self, geometry, w, x.dtype)
            dx = xp.empty(x.shape, x.dtype)
            dw = xp.zeros(conv.weights.shape, plan.compute_dtype(x.dtype))
            dbias = None if bias is None else xp.zeros(bias.shape, "float64")
            for batch in conv.batches():
                cols = conv.im2col(x[batch])
                dz = xp.empty(dy[batch].shape, x.dtype)
                dz_matrix = self.matmul(cols, conv.weights, out=conv.output_matrix(dz))  # z, overwritten by dz
                part = self._epilogue_backward(kernel, params, dy[batch], dz, bias, geometry.channel_axis, dz)
                if part is not None:
                    dbias += part
                dw += conv.batch_sum(self.matmul(cols.swapaxes(-1, -2), dz_matrix))
                # dcols goes into the column buffer (cols is used up), or straight into dx without im2col.
                self.matmul(dz_matrix, conv.weights.swapaxes(-1, -2), out=conv.column_gradient(cols, dx[batch]))
                conv.col2im(dx[batch])
            return dx, conv.weight_gradient(dw, w.shape).astype(w.dtype, copy=False), in_dtype(dbias, bias)


class _Conv:
    """One convolution call: the GEMM operands of each batch chunk, and its im2col/col2im launches.

    Every GEMM is ``Z = cols @ W`` on matrices (batch..., pixels, K) @ (G, K, Og),
    K = C/groups * kh * kw, taken as views of buffers in the memory orders of
    ``cuda/conv.cuh``, so that the GEMM writes y in its data format:

    * NCHW: cols (n, G, K, L) and y (n, G, Og, L), both seen transposed; w (G, Og, K) transposed.
    * NHWC: cols (G, n*L, K); y (n*L, G, Og) seen as (G, n*L, Og) (through a copy when G > 1); W (G, K, Og).

    A 1x1, stride-1, unpadded convolution with one group needs no im2col: x is
    the column matrix, and the column gradient is dx.

    Memory: the column buffer of a chunk holds at most ``IM2COL_BUDGET_BYTES``
    (256 MiB; one sample's columns when that is larger), allocated once per
    call.  The backward adds one y-sized chunk (dz), dw in the compute type,
    and GEMM temporaries of at most a chunk's size (NCHW: dw's per-sample
    products; NHWC with G > 1: transposed copies of y's chunk).
    """

    def __init__(self, backend: FusedKernelMethods, geometry: Conv2dGeometry, w: Any, dtype: Any) -> None:
        g = self.geometry = geometry
        self.backend, self.xp, self.dtype = backend, backend.xp, dtype
        self.channels_last = g.data_format == "NHWC"
        self.pixels = math.prod(g.out_size)
        self.group_channels = g.in_channels // g.groups
        self.k = self.group_channels * math.prod(g.kernel_size)
        self.direct = g.is_pointwise and g.groups == 1
        self.weights = self._weight_matrix(w)
        self.per_sample = g.in_channels * math.prod(g.kernel_size) * self.pixels  # column entries
        self.chunk = max(1, min(g.batch, IM2COL_BUDGET_BYTES // max(self.per_sample * plan.itemsize(dtype), 1)))
        self._buffer = None

    def batches(self):
        for start in range(0, self.geometry.batch, self.chunk):
            yield slice(start, min(start + self.chunk, self.geometry.batch))

    # ---- matrices -----------------------------------------------------------
    def _weight_matrix(self, w: Any) -> Any:
        """w as (G, K, Og): a view for NCHW, a small copy for NHWC."""
        groups = self.geometry.groups
        if self.channels_last:
            return self.xp.ascontiguousarray(w.reshape(-1, groups, w.shape[3] // groups).transpose(1, 0, 2))
        return w.reshape(groups, w.shape[0] // groups, -1).swapaxes(-1, -2)

    def weight_gradient(self, matrix: Any, shape: tuple) -> Any:
        """(G, K, Og) back to w's own shape."""
        if self.channels_last:
            return matrix.transpose(1, 0, 2).reshape(shape)
        return matrix.swapaxes(-1, -2).reshape(shape)

    def output_matrix(self, z: Any) -> Any:
        """A y-shaped chunk as the GEMM output (batch..., pixels, Og): a view (not a C-contiguous one
        for grouped NHWC, which the GEMM then fills through a copy)."""
        groups = self.geometry.groups
        if self.channels_last:
            return z.reshape(-1, groups, z.shape[3] // groups).transpose(1, 0, 2)
        return z.reshape(z.shape[0], groups, z.shape[1] // groups, self.pixels).swapaxes(-1, -2)

    def _as_columns(self, image: Any) -> Any:
        """A C-contiguous x-shaped chunk as the column matrix of a direct (pointwise, one group) convolution."""
        if self.channels_last:
            return image.reshape(1, -1, image.shape[3])
        return image.reshape(image.shape[0], 1, image.shape[1], self.pixels).swapaxes(-1, -2)

    @staticmethod
    def batch_sum(products: Any) -> Any:
        """Weight-gradient products (..., G, K, Og), per sample for NCHW, summed in the compute type."""
        return products.reshape(-1, *products.shape[-3:]).sum(axis=0, dtype=plan.compute_dtype(products.dtype))

    # ---- im2col / col2im ----------------------------------------------------------
    def im2col(self, x: Any) -> Any:
        """The chunk's column matrix (batch..., pixels, K)."""
        x = self.xp.ascontiguousarray(x)
        if self.direct:
            return self._as_columns(x)
        columns = self._columns(x.shape[0])
        self._launch("im2col", columns, x, x.shape[0])
        return columns if self.channels_last else columns.swapaxes(-1, -2)

    def column_gradient(self, cols: Any, dx: Any) -> Any:
        """Where the GEMM writes the column gradient: over cols in the column buffer, or into dx when direct."""
        return self._as_columns(dx) if self.direct else cols

    def col2im(self, dx: Any) -> None:
        """dx (a C-contiguous chunk of the result) from the column gradient in the column buffer."""
        if not self.direct:
            self._launch("col2im", dx, self._columns(dx.shape[0]), dx.shape[0])

    def _columns(self, n: int) -> Any:
        """The column buffer of n samples, C-contiguous in its memory order; allocated once, for the largest chunk."""
        if self._buffer is None:
            self._buffer = self.xp.empty(self.chunk * self.per_sample, self.dtype)
        g = self.geometry
        shape = (g.groups, n * self.pixels, self.k) if self.channels_last else (n, g.groups, self.k, self.pixels)
        return self._buffer[: n * self.per_sample].reshape(shape)

    def _launch(self, direction: str, out: Any, source: Any, n: int) -> None:
        backend = self.backend
        grid = plan.grid_size(out.size, backend.sm_count())
        index = plan.index_type(max(out.size, source.size), grid * plan.THREADS)
        name = plan.conv_kernel(direction, self.dtype, index, self.channels_last)
        args = (self._windows(index, n), plan.index_scalar(index, out.size), out, source)
        backend.launch("conv", self.dtype, name, (grid,), (plan.THREADS,), args)

    def _windows(self, index: str, n: int):
        """ConvWindows for a chunk of n samples, with the column buffer's strides (see cuda/conv.cuh)."""
        g = self.geometry
        (kh, kw), taps, pixels, k = g.kernel_size, math.prod(g.kernel_size), self.pixels, self.k
        if self.channels_last:  # (G, n*L, K), K = (kh, kw, Cg)
            strides = {"col_sample": pixels * k, "col_group": n * pixels * k, "col_channel": 1,
                       "col_tap": self.group_channels, "col_pixel": k}
        else:  # (n, G, K, L), K = (Cg, kh, kw)
            strides = {"col_sample": g.groups * k * pixels, "col_group": k * pixels, "col_channel": taps * pixels,
                       "col_tap": pixels, "col_pixel": 1}
        (top, _), (left, _) = g.padding
        return plan.conv_windows(
            index, batch=n, channels=g.in_channels, height=g.in_size[0], width=g.in_size[1],
            out_height=g.out_size[0], out_width=g.out_size[1], kernel_height=kh, kernel_width=kw,
            group_channels=self.group_channels, stride_h=g.stride[0], stride_w=g.stride[1],
            dilation_h=g.dilation[0], dilation_w=g.dilation[1], pad_top=top, pad_left=left, **strides,
        )
