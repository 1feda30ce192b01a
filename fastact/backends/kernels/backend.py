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
import math
from typing import Any, Sequence

from ...activations import ROWWISE_KERNELS
from ..base import Backend
from . import plan, replay
from .fused import FusedKernelMethods

VECTOR_BYTES = plan.VECTOR_BYTES
# Elementwise launch entries kept per backend before the cache is emptied
# (entries keyed by a params dict's identity keep that dict alive).
_MAX_ENTRIES = 4096


def _remember(cache: dict, key: Any, value: Any) -> None:
    """cache[key] = value, dropping the oldest entry when full (not the whole cache: clearing it
    could drop the entry a caller made a moment ago, and a long run would keep refilling it)."""
    if key not in cache and len(cache) >= _MAX_ENTRIES:
        del cache[next(iter(cache))]
    cache[key] = value


class _Elementwise:
    """What one elementwise activation launch needs, per (direction, kernel, params, dtype, device).

    Built once (see :meth:`KernelBackend._elementwise_entry`): the functor is
    packed once.  For the fast path, ``launches`` maps (n, each pointer's
    offset from a 16-byte boundary) to (kernel handle, grid, block, index
    scalar), the plan of :func:`plan.elementwise_launch` for those operands, so
    that a fast call neither plans, formats a kernel name nor looks a kernel up.
    """

    __slots__ = ("direction", "kernel", "params", "dtype", "functor", "launches")

    def __init__(self, direction: str, kernel: str, params: dict, dtype: Any) -> None:
        self.direction, self.kernel, self.params, self.dtype = direction, kernel, params, dtype
        self.functor = plan.pack_functor(kernel, params, dtype)
        self.launches: dict = {}


class KernelBackend(FusedKernelMethods, Backend):
    """forward/backward/prelu_* on top of a few device primitives (below); the fused calls
    (:mod:`~fastact.backends.kernels.fused`) add ``gemm``.

    Elementwise activations also have a fast path (``fast_forward``,
    ``fast_backward``, tried by the dispatcher before its general checks):
    C-contiguous native arrays on the current device whose launch entry the
    general path has already built, and softmax/log_softmax along the last
    axis of C-contiguous arrays; anything else declines (returns None) and
    takes the general path.
    """

    has_fast_path = True
    # The native array type the fast path takes (exactly this type).
    array_type: type = type(None)
    # Launch entries of elementwise activations (see _elementwise_entry) and the row-wise
    # fast path's launches (keys starting "rows"); subclasses' __init__ make each instance its own.
    _elementwise_entries: dict

    # ---- device primitives (subclasses) -------------------------------------
    def device_of(self, a: Any) -> contextlib.AbstractContextManager:
        """Context in which ``a``'s device is current (allocations and launches go there)."""
        return contextlib.nullcontext()

    def current_device(self) -> int:
        """The id of the current device (kernel handles and launch entries are per device)."""
        return 0

    def array_device(self, a: Any) -> int:
        """The id of the device holding native array ``a``."""
        return 0

    def c_contiguous(self, a: Any) -> bool:
        return a.flags.c_contiguous

    def writable(self, a: Any) -> bool:
        return True

    def sm_count(self) -> int:
        """Streaming multiprocessors of the current device (sizes the grids)."""
        raise NotImplementedError

    def kernel_handle(self, family: str, dtype: Any, kernel: str):
        """Instantiation ``kernel`` of module (family, dtype) on the current device, as a callable
        ``handle(grid, block, args)`` that launches it on the current stream (see :meth:`launch`)."""
        raise NotImplementedError

    def launch(self, family: str, dtype: Any, kernel: str, grid: tuple, block: tuple, args: Sequence) -> None:
        """Launch instantiation ``kernel`` of module (family, dtype) on the current stream.

        ``args``: native arrays (passed as pointers to their first element) and
        NumPy scalars (passed by value, structured scalars as C structs).
        """
        handle, args = self.kernel_handle(family, dtype, kernel), tuple(args)
        recording = replay._active()
        if recording is not None:  # the general path is being recorded (replay.py)
            recording.launches.append((handle, grid, block, args))
        handle(grid, block, args)

    # ---- elementwise launch entries (shared by the general and the fast path) ----
    def _elementwise_entry(self, direction: str, kernel: str, params: dict, dtype: Any) -> _Elementwise:
        """The launch entry of (direction, kernel, params, dtype) on the current device.

        Found by the params dict's identity first (the public functions pass the
        registry's remembered dicts: ActivationSpec.kernel_params_of), then by
        its items; the entry keeps the dict, so an id is not reused while it lives.
        """
        entries = self._elementwise_entries
        device = self.current_device()
        entry = entries.get((direction, kernel, id(params), dtype, device))
        if entry is not None and entry.params is params:
            return entry
        try:
            key = (direction, kernel, tuple(params.items()), tuple(map(type, params.values())), dtype, device)
            entry = entries.get(key)
        except TypeError:  # an unhashable parameter: not remembered
            return _Elementwise(direction, kernel, params, dtype)
        if entry is None or entry.params is not params:
            # Equal values in another dict (the registry's memo made a new one, e.g. after it was
            # full): an entry that keeps *this* dict, or the fast path (which checks identity)
            # would never take these calls again. Launches depend only on kernel, dtype and sizes.
            found, entry = entry, _Elementwise(direction, kernel, params, dtype)
            if found is not None:
                entry.launches = found.launches
            _remember(entries, key, entry)
        _remember(entries, (direction, kernel, id(params), dtype, device), entry)
        return entry

    def _launch_elementwise(self, entry: _Elementwise, out: Any, inputs: Sequence[Any]) -> None:
        """The general path's launch of ``entry`` over C-contiguous ``out`` and ``inputs`` (out.size > 0 each).

        Planned afresh each time (plan.elementwise_launch) and launched through
        :meth:`launch`; only the fast path remembers launches.
        """
        n = out.size
        name, grid, block, index = self._plan_elementwise(entry, n, [self.data_ptr(a) for a in (out, *inputs)])
        self.launch(entry.kernel, entry.dtype, name, grid, block, (entry.functor, index, out, *inputs))

    def _plan_elementwise(self, entry: _Elementwise, n: int, pointers: Sequence[int]) -> tuple:
        """(kernel name, grid, block, index scalar) of ``entry`` over n elements at ``pointers`` (out first)."""
        launch = plan.elementwise_launch(n, entry.dtype, pointers, self.sm_count())
        name = plan.activation_kernel(entry.direction, entry.kernel, entry.dtype, launch.vector, launch.index)
        return name, (launch.grid,), (launch.block,), plan.index_scalar(launch.index, n)

    def _new_launch(self, entry: _Elementwise, n: int, pointers: Sequence[int]) -> tuple:
        """(kernel handle, grid, block, index scalar) for the fast path, remembered in entry.launches
        by n and each pointer's offset from a 16-byte boundary (what plan.elementwise_launch reads)."""
        name, grid, block, index = self._plan_elementwise(entry, n, pointers)
        launch = (self.kernel_handle(entry.kernel, entry.dtype, name), grid, block, index)
        _remember(entry.launches, (n, *[p % VECTOR_BYTES for p in pointers]), launch)
        return launch

    # ---- the fast path (fastact/_dispatch.py) ---------------------------------
    # Written out for speed (it is the whole cost of a small call): the same
    # launches as the general path, through the same entries.
    def fast_forward(self, kernel: str, params: dict, x: Any, out: Any) -> Any:
        """forward() for a non-empty C-contiguous native x on the current device whose entry the general
        path has built, and no ``out`` or a simple one (see :meth:`_fast_out`); None: take the general path."""
        device = self.current_device()
        entry = self._elementwise_entries.get(("forward", kernel, id(params), x.dtype, device))
        if entry is None and kernel in ROWWISE_KERNELS:
            return self._fast_rowwise("forward", kernel, params, x, None, out, device)
        if (entry is None or entry.params is not params or not self.c_contiguous(x)
                or self.array_device(x) != device):
            return None
        n = x.size
        if n == 0:
            return None
        source = self.data_ptr(x)
        if out is None:
            out = self.xp.empty(x.shape, x.dtype)
            pointer = self.data_ptr(out)
        else:
            pointer = self._fast_out(out, x, device, (source,))
            if pointer is None:
                return None
        launch = entry.launches.get((n, pointer % VECTOR_BYTES, source % VECTOR_BYTES))
        if launch is None:
            launch = self._new_launch(entry, n, (pointer, source))
        handle, grid, block, index = launch
        handle(grid, block, (entry.functor, index, out, x))
        return out

    def fast_backward(self, kernel: str, params: dict, dy: Any, x: Any, out: Any) -> Any:
        """backward() likewise, dy a native array exactly like x (shape, dtype, C order, device)."""
        device = self.current_device()
        entry = self._elementwise_entries.get(("backward", kernel, id(params), x.dtype, device))
        if entry is None and kernel in ROWWISE_KERNELS:
            return self._fast_rowwise("backward", kernel, params, x, dy, out, device)
        if (entry is None or entry.params is not params or not self.c_contiguous(x)
                or self.array_device(x) != device or not self._fast_like(dy, x, device)):
            return None
        n = x.size
        if n == 0:
            return None
        gradient, source = self.data_ptr(dy), self.data_ptr(x)
        if out is None:
            out = self.xp.empty(x.shape, x.dtype)
            pointer = self.data_ptr(out)
        else:
            pointer = self._fast_out(out, x, device, (gradient, source))
            if pointer is None:
                return None
        launch = entry.launches.get((n, pointer % VECTOR_BYTES, gradient % VECTOR_BYTES, source % VECTOR_BYTES))
        if launch is None:
            launch = self._new_launch(entry, n, (pointer, gradient, source))
        handle, grid, block, index = launch
        handle(grid, block, (entry.functor, index, out, dy, x))
        return out

    def _fast_rowwise(self, direction: str, kernel: str, params: dict, x: Any, dy: Any, out: Any, device: int) -> Any:
        """softmax/log_softmax along the last axis of C-contiguous arrays: the launch :meth:`_rowwise`
        makes for them (contiguous rows, nothing moved or copied), remembered per (direction, kernel,
        shape, dtype, device, inputs 16-byte aligned); None (the general path) for any other axis, layout or ``out``."""
        axis = params["axis"]
        ndim = len(x.shape)
        if (type(axis) is not int or ndim == 0 or (axis != -1 and axis != ndim - 1)
                or not self.c_contiguous(x) or self.array_device(x) != device
                or (dy is not None and not self._fast_like(dy, x, device))):
            return None
        recipes = self._elementwise_entries
        inputs = (self.data_ptr(x),) if dy is None else (self.data_ptr(dy), self.data_ptr(x))
        aligned = all(p % VECTOR_BYTES == 0 for p in inputs)  # the vector kernels need 16-byte rows (plan.rowwise_launch)
        key = ("rows", direction, kernel, x.shape, x.dtype, device, aligned)
        recipe = recipes.get(key)
        if recipe is None:
            recipe = self._rowwise_recipe(direction, kernel, x.shape, x.dtype, aligned)
            if recipe is None:
                return None
            _remember(recipes, key, recipe)
        if out is None:
            out = self.xp.empty(x.shape, x.dtype)
        else:
            pointer = self._fast_out(out, x, device, inputs)
            if pointer is None or (aligned and pointer % VECTOR_BYTES):
                return None
        handle, grid, block, leading = recipe
        handle(grid, block, (*leading, out, x, x if dy is None else dy))  # forward: x in dy's place, never read
        return out

    def _rowwise_recipe(self, direction: str, kernel: str, shape: tuple, dtype: Any, aligned: bool) -> tuple | None:
        """(kernel handle, grid, block, (rows, length, inner) index scalars) of :meth:`_rowwise` for rows
        along the last axis of a C-contiguous array; None where that is not one plain launch."""
        if plan.STORAGE_TYPES.get(plan.dtype_name(dtype)) is None or math.prod(shape) == 0:
            return None  # an unsupported dtype or an empty array: the general path says or does it
        p = plan.rowwise_plan(shape, len(shape) - 1, self.sm_count())
        if p.move_axis or p.inner != 1:
            return None
        launch = plan.rowwise_launch(p, self.sm_count(), dtype, [0 if aligned else 1])
        name = plan.rowwise_kernel(direction, kernel, dtype, launch)
        leading = tuple(plan.index_scalar(launch.index, v) for v in (p.rows, p.length, p.inner))
        return self.kernel_handle(kernel, dtype, name), (launch.grid,), (launch.block,), leading

    def _fast_like(self, a: Any, x: Any, device: int) -> bool:
        """``a`` is a C-contiguous native array of x's shape and dtype on ``device``."""
        return (type(a) is self.array_type and a.shape == x.shape and a.dtype == x.dtype
                and self.c_contiguous(a) and self.array_device(a) == device)

    def _fast_out(self, out: Any, x: Any, device: int, inputs: tuple) -> int | None:
        """``out``'s data pointer when a fast call may write there: a writable array like x that is either
        exactly an input's memory or disjoint from each (``inputs``: their pointers); else None."""
        if not self._fast_like(out, x, device) or not self.writable(out):
            return None
        pointer, nbytes = self.data_ptr(out), x.nbytes
        for other in inputs:
            if pointer != other and pointer < other + nbytes and other < pointer + nbytes:
                return None  # a partial overlap: the general path says what is wrong
        return pointer

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
        with self.device_of(inputs[-1]):
            entry = self._elementwise_entry(direction, kernel, params, inputs[-1].dtype)
            return self._run_flat(self._result(out, inputs[-1]), inputs,
                                  lambda flat_out, flat_inputs: self._launch_elementwise(entry, flat_out, flat_inputs))

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
            launch = plan.rowwise_launch(p, self.sm_count(), x.dtype, pointers, direction)
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

    def _reduce_channels(self, family: str, p: plan.PreluPlan, target: Any, inputs: Sequence[Any],
                         values: Any, kernel_name, leading: tuple = (), like: Any = None) -> Any:
        """Launch a per-channel backward kernel (reduce_over_channels in cuda/prelu.cuh) into ``target``.

        kernel(*leading, outer, channels, inner, dx, *inputs, values, partial) with
        ``kernel_name(launch)`` (a :class:`plan.PreluBackwardLaunch`); returns the per-channel sums in float64, added
        up deterministically.  ``target`` may be one of the inputs (in place).  With ``like`` (the parameter whose
        gradient the sums are) of dtype float32, returns them in ``like``'s shape and dtype instead, rounded by
        the second pass (run for one chunk too): the same values as a float64 -> float32 ``astype``, without its
        launch and its float64 array.
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
        if like is not None and like.dtype == "float32":
            return self._sum_partials(family, dtype, partial, p.channels, launch, like.shape, "float32")
        return partial if launch.chunks == 1 else self._sum_partials(family, dtype, partial, p.channels, launch)

    def _sum_partials(self, family: str, dtype: Any, partial: Any, channels: int, launch: plan.PreluBackwardLaunch,
                      shape: tuple | None = None, out: str = "float64") -> Any:
        """One small deterministic pass: sums[c] = the chunks' partial sums of channel c, in order, stored as
        ``out`` (see plan.SUM_TYPES) in ``shape`` (``channels`` values; default: 1-d)."""
        sums = self.xp.empty(channels if shape is None else shape, dtype=out)
        grid = plan.grid_size(channels, self.sm_count())
        index = plan.index_type(partial.size, grid * plan.THREADS)
        args = (plan.index_scalar(index, channels), plan.index_scalar(index, launch.chunks), partial, sums)
        self.launch(family, dtype, plan.prelu_sum_kernel(index, out), (grid,), (plan.THREADS,), args)
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
                                           lambda launch: plan.prelu_backward_kernel(x.dtype, launch), like=alpha)
            if dalpha.dtype == alpha.dtype and dalpha.shape == alpha.shape:  # float32: already alpha's
                return target, dalpha
            return target, dalpha.reshape(alpha.shape).astype(alpha.dtype, copy=False)
