"""The compute methods of the backends that run the kernels in ``cuda/``.

:class:`KernelBackend` turns a validated call into kernel launches: it picks
layouts (contiguous copies where needed), asks :mod:`~fastact.backends.kernels.plan` for the
instantiation and launch size, and launches.  Subclasses supply only the
device primitives: where a kernel comes from and how it is launched
(:class:`~fastact.backends.cuda.backend.CudaBackend` through CuPy, the test-only
:class:`~fastact.backends.emulator.backend.EmulatorBackend` through ctypes on
the CPU).  The emulator therefore runs this code and plan.py unchanged.

Layouts: elementwise kernels run on flat arrays, so operands that are all
C-contiguous or all F-contiguous run in place; any other layout (views with
steps, transposes, negative strides) is copied to a C-contiguous array first
and the result copied into ``out``.  A strided kernel would save that copy;
it is left for when a benchmark asks for it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

from ...activations import ROWWISE_KERNELS
from ..base import Backend
from . import plan
from .fused import FusedKernelMethods


class KernelBackend(FusedKernelMethods, Backend):
    """forward/backward/prelu_* on top of three device primitives (below); the fused calls
    (:mod:`~fastact.backends.kernels.fused`) add a fourth, ``gemm``."""

    # ---- device primitives (subclasses) -------------------------------------
    def device_of(self, a: Any) -> contextlib.AbstractContextManager:
        """Context in which ``a``'s device is current (allocations and launches go there)."""
        return contextlib.nullcontext()

    def sm_count(self) -> int:
        """Streaming multiprocessors of the current device (sizes the grids)."""
        raise NotImplementedError

    def launch(self, family: str, dtype: Any, kernel: str, grid: tuple, block: tuple, args: Sequence) -> None:
        """Launch instantiation ``kernel`` of module (family, dtype) on the current stream.

        ``args``: native arrays (passed as pointers to their first element) and
        NumPy scalars (passed by value, structured scalars as C structs).
        """
        raise NotImplementedError

    # ---- layouts ------------------------------------------------------------
    def _dense_order(self, arrays: Sequence[Any]) -> str | None:
        if all(a.flags.c_contiguous for a in arrays):
            return "C"
        if all(a.flags.f_contiguous for a in arrays):
            return "F"
        return None

    def _result(self, out: Any, like: Any) -> Any:
        if out is not None:
            return out
        order = "F" if like.flags.f_contiguous and not like.flags.c_contiguous else "C"
        return self.xp.empty(like.shape, like.dtype, order=order)

    def _run_flat(self, target: Any, inputs: Sequence[Any], run) -> Any:
        """Call ``run(flat_out, flat_inputs)`` on 1-d views, copying where the layout needs it."""
        xp = self.xp
        order = self._dense_order([target, *inputs])
        if order is None:
            inputs = [xp.ascontiguousarray(a) for a in inputs]
            work = target if target.flags.c_contiguous else xp.empty(target.shape, target.dtype)
            order = "C"
        else:
            work = target
        if work.size:
            run(work.reshape(-1, order=order), [a.reshape(-1, order=order) for a in inputs])
        if work is not target:
            target[...] = work
        return target

    # ---- elementwise activations --------------------------------------------
    def forward(self, kernel: str, params: dict, x: Any, out: Any) -> Any:
        return self._activation("forward", kernel, params, [x], out)

    def backward(self, kernel: str, params: dict, dy: Any, x: Any, out: Any) -> Any:
        return self._activation("backward", kernel, params, [dy, x], out)

    def _activation(self, direction: str, kernel: str, params: dict, inputs: list, out: Any) -> Any:
        if kernel in ROWWISE_KERNELS:
            return self._rowwise(direction, kernel, params["axis"], inputs, out)
        dtype = inputs[-1].dtype
        functor = plan.pack_functor(kernel, params, dtype)

        def run(flat_out, flat_inputs):
            n = flat_out.size
            pointers = [self.data_ptr(a) for a in (flat_out, *flat_inputs)]
            launch = plan.elementwise_launch(n, dtype, pointers, self.sm_count())
            name = plan.activation_kernel(direction, kernel, dtype, launch.vector, launch.index)
            args = (functor, plan.index_scalar(launch.index, n), flat_out, *flat_inputs)
            self.launch(kernel, dtype, name, (launch.grid,), (launch.block,), args)

        with self.device_of(inputs[-1]):
            return self._run_flat(self._result(out, inputs[-1]), inputs, run)

    # ---- softmax, log_softmax ------------------------------------------------
    def _rowwise(self, direction: str, kernel: str, axis: int, inputs: list, out: Any) -> Any:
        """Rows along ``axis`` in place (strided) or with the axis moved last (see plan.rowwise_plan)."""
        xp, x = self.xp, inputs[-1]
        with self.device_of(x):
            target = self._result(out, x)
            if x.size == 0:
                return target
            p = plan.rowwise_plan(x.shape, axis, self.sm_count())

            def arranged(a):
                a = a.reshape(1) if a.ndim == 0 else a
                return xp.moveaxis(a, axis, -1) if p.move_axis else a

            operands = [xp.ascontiguousarray(arranged(a)) for a in inputs]
            destination = arranged(target)
            work = destination if destination.flags.c_contiguous else xp.empty(destination.shape, destination.dtype)
            pointers = [self.data_ptr(a) for a in (work, *operands)]
            launch = plan.rowwise_launch(p, self.sm_count(), x.dtype, pointers)
            index = lambda v: plan.index_scalar(launch.index, v)  # noqa: E731
            x_flat, dy_flat = operands[-1].reshape(-1), operands[0].reshape(-1)  # forward: x in dy's place, never read
            args = (index(p.rows), index(p.length), index(p.inner), work.reshape(-1), x_flat, dy_flat)
            name = plan.rowwise_kernel(direction, kernel, x.dtype, launch)
            self.launch(kernel, x.dtype, name, (launch.grid,), (launch.block,), args)
            if work is not destination:
                destination[...] = work
            return target

    # ---- per-channel operands and reductions (PReLU, bias_act) -------------------
    def _channel_operands(self, p: plan.PreluPlan, target: Any, inputs: Sequence[Any], values: Any):
        """(C-contiguous inputs, where results go, work array, ``values`` as contiguous compute-type channel values).

        ``values`` (PReLU's alpha, a bias) broadcasts against ``target`` and varies along p's channels.
        """
        xp = self.xp

        def arranged(a):
            return a.transpose(p.axes) if p.axes is not None else a

        inputs = [xp.ascontiguousarray(arranged(a)) for a in inputs]
        destination = arranged(target)
        work = destination if destination.flags.c_contiguous else xp.empty(destination.shape, destination.dtype)
        padded = values.reshape((1,) * (target.ndim - values.ndim) + tuple(values.shape))
        per_channel = xp.ascontiguousarray(arranged(padded), dtype=plan.compute_dtype(target.dtype)).reshape(-1)
        return inputs, destination, work, per_channel

    def _reduce_channels(self, family: str, p: plan.PreluPlan, target: Any, inputs: Sequence[Any], values: Any,
                         kernel_name, leading: tuple = ()) -> Any:
        """Launch a per-channel backward kernel (reduce_over_channels in cuda/prelu.cuh) into ``target``.

        kernel(*leading, outer, channels, inner, dx, *inputs, values, partial) with
        ``kernel_name(launch)`` (a :class:`plan.PreluBackwardLaunch`); returns the per-channel sums in float64, added
        up deterministically.  ``target`` may be one of the inputs (in place).
        """
        inputs, destination, work, per_channel = self._channel_operands(p, target, inputs, values)
        pointers = [self.data_ptr(a) for a in (work, *inputs)]
        launch = plan.prelu_backward_launch(p, self.sm_count(), target.dtype, pointers)
        index = lambda v: plan.index_scalar(launch.index, v)  # noqa: E731
        partial = self.xp.empty(launch.chunks * p.channels, dtype="float64")
        args = (*leading, index(p.outer), index(p.channels), index(p.inner), work.reshape(-1),
                *[a.reshape(-1) for a in inputs], per_channel, partial)
        dtype = target.dtype
        self.launch(family, dtype, kernel_name(launch), launch.grid, launch.block, args)
        if work is not destination:
            destination[...] = work
        return partial if launch.chunks == 1 else self._sum_partials(family, dtype, partial, p.channels, launch)

    def _sum_partials(self, family: str, dtype: Any, partial: Any, channels: int, launch: plan.PreluBackwardLaunch) -> Any:
        """One small deterministic pass: sums[c] = the chunks' partial sums of channel c, in order."""
        sums = self.xp.empty(channels, dtype="float64")
        grid = plan.grid_size(channels, self.sm_count())
        index = plan.index_type(partial.size, grid * plan.THREADS)
        args = (plan.index_scalar(index, channels), plan.index_scalar(index, launch.chunks), partial, sums)
        self.launch(family, dtype, plan.prelu_sum_kernel(index), (grid,), (plan.THREADS,), args)
        return sums

    # ---- PReLU --------------------------------------------------------------
    def prelu_forward(self, x: Any, alpha: Any, out: Any) -> Any:
        with self.device_of(x):
            target = self._result(out, x)
            if x.size == 0:
                return target
            p = plan.prelu_plan(x.shape, alpha.shape)
            (xc,), destination, work, slopes = self._channel_operands(p, target, [x], alpha)
            n = xc.size
            launch = plan.elementwise_launch(n, x.dtype, [self.data_ptr(xc), self.data_ptr(work)], self.sm_count())
            layout, vector = plan.channel_layout(p, launch.vector, launch.index, self.data_ptr(slopes), one_channel=True)
            name = plan.prelu_forward_kernel(layout, x.dtype, vector, launch.index)
            args = (plan.channel_of(p, launch.index), plan.index_scalar(launch.index, n), work.reshape(-1),
                    xc.reshape(-1), slopes)
            self.launch("prelu", x.dtype, name, (launch.grid,), (launch.block,), args)
            if work is not destination:
                destination[...] = work
            return target

    def prelu_backward(self, dy: Any, x: Any, alpha: Any, out: Any) -> tuple[Any, Any]:
        xp = self.xp
        with self.device_of(x):
            target = self._result(out, x)
            if x.size == 0:
                return target, xp.zeros(alpha.shape, alpha.dtype)
            p = plan.prelu_plan(x.shape, alpha.shape)
            dalpha = self._reduce_channels("prelu", p, target, [dy, x], alpha,
                                           lambda launch: plan.prelu_backward_kernel(x.dtype, launch))
            return target, dalpha.reshape(alpha.shape).astype(alpha.dtype, copy=False)
