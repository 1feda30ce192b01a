"""Record and replay: the fast path of the per-channel and fused calls of the kernel backends.

A general-path call of ``prelu``, ``prelu_backward``, ``bias_act``,
``bias_act_backward``, ``dense_bias_act`` or ``conv2d_bias_act`` plans its
launches (layouts, vector widths, index types, grids, packed parameters,
kernel handles, im2col's window descriptor) in Python: tens of microseconds.
Everything it decides depends only on the call's *key*: the op and its
parameters, and per array operand its shape, strides, dtype, device and data
pointer modulo :data:`ALIGNMENT`, plus which operands share memory.  So the
first general call with a key is *recorded*: each launch made through
``KernelBackend.launch`` (kernel handle, grid, block, arguments), each array
the call allocates through ``backend.xp.empty``/``zeros`` (workspace: partial
sums, the result), each ``astype`` of such an array (a float64 sum rounded
to a 16-bit parameter's dtype), each ``xp.ascontiguousarray`` that copies a whole
operand (a 16-bit alpha or bias in the compute type) and each GEMM made through
``FusedKernelMethods.matmul`` (:func:`record_gemm`: dense's and conv2d's
``cupy.matmul``).  Each argument is then named by its data pointer: an operand
of the call, a workspace array, such a copy, or a value (NumPy scalars: packed
functors, index values); a GEMM's matrices are views of whole such arrays,
rebuilt by a reshape (and a transpose of the last two axes).  The recipe is
compiled into one Python function (:func:`_compile`).  A later call with the
same key *replays*: it allocates the workspace afresh, launches the recorded
kernels and GEMMs with the new operands' arrays in their places, and converts
what was converted.  Nothing is planned, named or looked up.

A recording is refused (the key keeps the general path) when the call does
anything else on the device that is not a launch, so that replaying it would
miss work: an argument that is neither an operand, workspace nor such a copy
(a transposed copy of x, a view at an offset: a conv2d's later batch chunks),
any other ``xp`` function than an allocation or a view, a GEMM on a view no
reshape of a whole array rebuilds, a result that no launch wrote (a result
copied into ``out`` after the launch), a launch argument of an unknown kind.
The general path itself is unchanged: it only runs under the recorder once per
key.

Workspace is allocated per call (``xp.empty``/``xp.zeros`` on the current
device), never kept: CuPy's memory pool hands memory back in stream order, so
a replay on another stream, or two replays in flight, never share partial sums.
Launches go to the current stream, as the general path's.  A recording only
sees its own thread's launches and allocations.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from . import plan

# Data pointers enter the key modulo this: plan's vector decisions read 16-byte alignment.
ALIGNMENT = plan.VECTOR_BYTES
_DECLINED = object()  # a key whose general call could not be recorded: it keeps the general path
_DERIVE = object()  # in a recipe's launches: a copy of an operand (see _RecordingXp._derive)
_GEMM = object()  # in a recording's and a recipe's launches: a GEMM (see record_gemm, _gemm_event)
# Keys start with these tags (bias_act's add the kernel, params_key(params) and the normalized axis).
PRELU, PRELU_BACKWARD = ("replay", "prelu"), ("replay", "prelu_backward")
BIAS_ACT, BIAS_ACT_BACKWARD = ("replay", "bias_act"), ("replay", "bias_act_backward")
EPILOGUE = ("replay", "epilogue")  # dense/conv2d's bias_act over their GEMM output


class Recipe:
    """A recorded call: (handle, grid, block, slot indices) per launch; slots = operands, workspace, values,
    derived copies, in that order.

    ``workspace``: (xp allocator, shape, dtype, order, pointer % ALIGNMENT) per
    array allocated; ``values``: the recorded scalar arguments; ``results``: how
    to build each result from the slots (see :func:`_result_of`); ``single``:
    the call returned one result, not a tuple; ``operands``: how many operands
    the call has.  ``run(operands, data_ptr)`` replays it (see :func:`_compile`).
    """

    __slots__ = ("launches", "workspace", "values", "results", "single", "operands", "run", "source")

    def __init__(self, launches, workspace, values, results, single, operands) -> None:
        self.launches, self.workspace, self.values, self.results, self.single = launches, workspace, values, results, single
        self.operands = operands
        self.run, self.source = _compile(self)


def _compile(recipe: Recipe) -> tuple[Callable[[tuple, Callable[[Any], int]], Any], str]:
    """The recipe as one Python function ``run(operands, data_ptr)``, its steps written out (it runs every call),
    and its source (``Recipe.source``, for debugging):

        def run(operands, data_ptr):
            s0, s1, s2 = operands
            s3 = c0(c1, c2, c3)                    # workspace: allocate(shape, dtype, order)
            if data_ptr(s3) % 16 != 0:             # aligned otherwise than recorded: the general path
                return None
            c4(c5, c6, (c7, c8, s3, s0, s1))       # a launch: handle(grid, block, args), values as constants
            return s3

    Every recorded object (handles, shapes, values, functions) is a constant of the function's namespace;
    the source holds only generated names and integers.  Same steps as the recording, in the same order.
    """
    names: dict = {}

    def const(value: Any) -> str:
        name = f"c{len(names)}"
        names[name] = value
        return name

    n = recipe.operands
    first_value = n + len(recipe.workspace)
    value_names = [const(v) for v in recipe.values]
    first_derived = first_value + len(value_names)

    def ref(i: int) -> str:
        return value_names[i - first_value] if first_value <= i < first_derived else f"s{i}"

    def view(i: int, shape: Any) -> str:
        return ref(i) if shape is None else f"{ref(i)}.reshape({const(shape)})"

    lines = ["def run(operands, data_ptr):", f"    {''.join(f's{i}, ' for i in range(n))}= operands"]
    for slot, (allocate, shape, dtype, order, alignment) in enumerate(recipe.workspace, n):
        lines += [f"    s{slot} = {const(allocate)}({const(shape)}, {const(dtype)}, {const(order)})",
                  f"    if data_ptr(s{slot}) % {int(ALIGNMENT)} != {int(alignment)}:", "        return None"]
    derived = first_derived
    for handle, grid, block, refs in recipe.launches:
        if handle is _DERIVE:  # grid: (slot of the operand, its shape as read, function, args, kwargs)
            slot, shape, function, args, kwargs = grid
            lines.append(f"    s{derived} = {const(function)}({view(slot, shape)}, *{const(args)}, **{const(kwargs)})")
            derived += 1
        elif handle is _GEMM:  # grid: per array, (the shape it is read in or None, transposed); block: gemm
            a, b, out = (view(r, shape) + (".swapaxes(-1, -2)" if transposed else "")
                         for r, (shape, transposed) in zip(refs, grid))
            function, keyword, _ = block
            lines.append(f"    {const(function)}({a}, {b}, {'out=' if keyword else ''}{out})")
        else:
            lines.append(f"    {const(handle)}({const(grid)}, {const(block)}, ({''.join(ref(r) + ', ' for r in refs)}))")
    results = [_result_expression(how, view, const) for how in recipe.results]
    lines.append(f"    return {results[0]}" if recipe.single else f"    return ({''.join(r + ', ' for r in results)})")
    source = "\n".join(lines)
    exec(compile(source, "<fastact replay>", "exec"), names)  # noqa: S102 (generated above)
    return names["run"], source


def _result_expression(how: tuple, view: Callable, const: Callable) -> str:
    """One result as ``how`` says (see _result_of), as an expression over the slots."""
    kind = how[0]
    if kind == "none":
        return "None"
    if kind == "slot":
        _, slot, shape = how
        return view(slot, shape)
    _, slot, shape, args, kwargs, result_shape = how
    if not kwargs and len(args) == 1:
        converted = f"{view(slot, shape)}.astype({const(args[0])})"
    elif list(kwargs) == ["copy"] and len(args) == 1:
        converted = f"{view(slot, shape)}.astype({const(args[0])}, copy={const(kwargs['copy'])})"
    else:
        converted = f"{view(slot, shape)}.astype(*{const(args)}, **{const(kwargs)})"
    return converted if result_shape is None else f"{converted}.reshape({const(result_shape)})"


class Recording:
    """What one general-path call did, on the recording thread."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.launches: list = []      # (handle, grid, block, args)
        self.allocated: list = []     # (allocator name, array)
        self.conversions: dict = {}   # result pointer -> (source view, args, kwargs, result)
        self.refused: str | None = None
        self.passthrough = 0  # > 0 inside a recorded GEMM: its own xp calls are not the call's (record_gemm)


class _RecordingXp:
    """``backend.xp`` while a call is recorded: allocations noted (and handed out as views whose ``astype``
    is noted too); any function that is neither an allocation nor a view refuses the recording."""

    _ALLOCATORS = frozenset({"empty", "zeros"})
    _PURE = frozenset({"ascontiguousarray", "moveaxis", "dtype", "ndarray", "cuda", "float16", "float32",
                       "float64", "bfloat16", "broadcast_shapes", "result_type", "asarray"})

    def __init__(self, xp: Any, recording: Recording) -> None:
        self._xp, self._recording = xp, recording

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._xp, name)
        mine = threading.get_ident() == self._recording.thread and not self._recording.passthrough
        if name in self._ALLOCATORS and mine:
            return lambda *args, **kwargs: self._allocate(name, value(*args, **kwargs))
        if name == "ascontiguousarray" and mine:
            return lambda a, *args, **kwargs: self._derive(value, a, args, kwargs)
        if mine and name not in self._PURE:
            self._recording.refused = f"xp.{name}"
        return value

    def _derive(self, function: Any, a: Any, args: tuple, kwargs: dict) -> Any:
        """A contiguous copy (a dtype conversion: 16-bit alpha or bias to the compute type) is replayed
        in its place among the launches; the same memory (no copy) needs nothing."""
        result = function(a, *args, **kwargs)
        if not isinstance(a, np.ndarray) and not hasattr(a, "data"):
            self._recording.refused = "ascontiguousarray of a non-array"
        elif _pointer(result) != _pointer(a):
            self._recording.launches.append((_DERIVE, a, function, args, kwargs, result))
        return result

    def _allocate(self, name: str, a: Any) -> Any:
        self._recording.allocated.append((name, a))
        return a.view(type=_tracked_type(type(a), self._recording))


_TRACKED: dict = {}


def _tracked_type(base: type, recording: Recording) -> type:
    """A subclass of the array type whose astype is noted in the current thread's recording."""
    tracked = _TRACKED.get(base)
    if tracked is None:
        def astype(self, *args, **kwargs):
            result = base.astype(self, *args, **kwargs)
            active = _active()
            if active is not None and not active.passthrough:
                active.conversions[_pointer(result)] = (self, args, kwargs, result)
            return result

        tracked = _TRACKED[base] = type(f"Recorded{base.__name__}", (base,), {"astype": astype})
    return tracked


_local = threading.local()


def _active() -> Recording | None:
    return getattr(_local, "recording", None)


def record_gemm(recording: Recording, gemm: Callable, a: Any, b: Any, out: Any, into: Callable | None = None) -> Any:
    """``gemm(a, b, out)`` (the backend's GEMM: ``cupy.matmul`` on the GPU) during a recording: noted as
    one event of the call, replayed as the same GEMM on views of the replay's arrays (see _gemm_event), by
    ``into(a, b, out=out)`` when given and ``out`` is C-contiguous (what ``gemm`` then does: the backend's
    ``gemm_into``).  What the GEMM does inside (CuPy's matmul, the emulator's NumPy) is not recorded: it is
    not the call's."""
    recording.launches.append((_GEMM, (gemm, into), a, b, out))
    recording.passthrough += 1
    try:
        return gemm(a, b, out)
    finally:
        recording.passthrough -= 1


def _pointer(a: Any) -> int:
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    return a.data.ptr


def _plain(result: Any, tracked: tuple) -> Any:
    """A result (or tuple of them) without the recording's array subclass: what the user gets."""
    if isinstance(result, tuple):
        return tuple(_plain(r, tracked) for r in result)
    if isinstance(result, tracked):
        return result.view(type=type(result).__mro__[1])
    return result


_RECORDING = threading.Lock()  # one recording at a time (it swaps backend.xp for its proxy)


def record(backend: Any, run: Callable[[], Any], operands: tuple) -> tuple[Any, Any]:
    """(run()'s result, its Recipe or _DECLINED): run the general path once under a recorder.
    (result, None) when another thread is recording: the call runs unrecorded, a later one records."""
    if not _RECORDING.acquire(blocking=False):
        return run(), None
    try:
        return _record(backend, run, operands)
    finally:
        _RECORDING.release()


def _record(backend: Any, run: Callable[[], Any], operands: tuple) -> tuple[Any, Any]:
    recording = Recording()
    saved = backend.__dict__.get("xp")
    backend.xp = _RecordingXp(backend.xp, recording)
    _local.recording = recording
    try:
        result = run()
    finally:
        _local.recording = None
        if saved is None:
            del backend.xp
        else:
            backend.xp = saved
    tracked = tuple(_TRACKED.values())
    recipe = _build(recording, operands, result, backend.array_type, backend.xp)
    return _plain(result, tracked), recipe


def _build(recording: Recording, operands: tuple, result: Any, array_type: type, xp: Any) -> Any:
    if recording.refused is not None or not recording.launches:
        return _DECLINED
    slots: dict[int, int] = {}  # data pointer -> slot
    for i, a in enumerate(operands):
        if a is not None:
            slots.setdefault(_pointer(a), i)
    used, values = set(), []
    first_workspace = len(operands)
    allocated = []
    for name, a in recording.allocated:
        pointer = _pointer(a)
        if pointer in slots:
            return _DECLINED  # memory handed out twice: not one array per slot
        order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
        allocated.append((name, a.shape, a.dtype, order, pointer % ALIGNMENT))
        slots[pointer] = first_workspace + len(allocated) - 1
    launches = []
    derived = []  # (slot of the operand, its shape as read, function, args, kwargs)
    copies = []  # the derived copies as recorded
    gemm_slots = set()  # workspace a GEMM reads or writes: its shape is the one recorded
    for event in recording.launches:
        if event[0] is _GEMM:
            launch = _gemm_event(event, slots, operands, [a for _, a in recording.allocated], copies,
                                 first_workspace)
            if launch is None:
                return _DECLINED
            used.add(launch[3][2])  # the GEMM's out
            gemm_slots.update(launch[3])
            launches.append(launch)
            continue
        if event[0] is _DERIVE:  # a copy of a whole operand, read as C-contiguous: replayed as a copy
            _, source, function, args, kwargs, copy = event
            slot = slots.get(_pointer(source))
            if (slot is None or slot >= first_workspace or not source.flags.c_contiguous
                    or source.size != operands[slot].size or _pointer(copy) in slots):
                return _DECLINED
            derived.append((slot, None if source.shape == operands[slot].shape else source.shape, function, args, kwargs))
            slots[_pointer(copy)] = ("derived", len(derived) - 1)
            copies.append(copy)
            launches.append((_DERIVE, derived[-1], None, None))
            continue
        handle, grid, block, args = event
        refs = []
        for a in args:
            if isinstance(a, array_type) or isinstance(a, np.ndarray):
                slot = slots.get(_pointer(a))
                if slot is None:
                    return _DECLINED  # a copy or a view at an offset: not replayable by pointers
                refs.append(slot)
                used.add(slot)
            elif isinstance(a, np.generic):
                refs.append(("value", len(values)))
                values.append(a)
            else:
                return _DECLINED
        launches.append((handle, grid, block, refs))
    single = not isinstance(result, tuple)
    results = []
    for r in ((result,) if single else result):
        how = _result_of(r, slots, used, recording, operands, allocated, first_workspace)
        if how is None:
            return _DECLINED
        results.append(how)
    # A workspace array only converted (and passed by pointer) is allocated in the shape its conversion
    # reads (C order, same size): the replay then converts it without a reshape.
    for i, how in enumerate(results):
        if how[0] == "convert" and how[2] is not None and how[1] >= first_workspace:
            w = how[1] - first_workspace
            if (allocated[w][3] == "C" and sum(1 for h in results if h[1:2] == (how[1],)) == 1
                    and how[1] not in gemm_slots):
                name, _, dtype, order, alignment = allocated[w]
                allocated[w] = (name, how[2], dtype, order, alignment)
                results[i] = how = (*how[:2], None, *how[3:])
    for i, how in enumerate(results):  # the result shape, None where the conversion gives it already
        if how[0] == "convert":
            converted_shape = how[2] if how[2] is not None else (
                operands[how[1]].shape if how[1] < first_workspace else allocated[how[1] - first_workspace][1])
            if converted_shape == how[5]:
                results[i] = (*how[:5], None)
    # A workspace array that GEMMs read in one shape and that is no result (else only passed to kernels, by
    # pointer) is allocated in that shape (C order, same size): the replay then reshapes it for nothing.
    uses: dict = {}
    for h, g, b, refs in launches:
        if h is _GEMM:
            for slot, (shape, _), fresh in zip(refs, g, b[2]):
                if type(slot) is int and slot >= first_workspace:
                    uses.setdefault(slot, set()).add(shape if fresh else None)  # None: keep it as recorded
    results_read = {how[1] for how in results if len(how) > 1}
    reshaped = set()
    for slot, shapes in uses.items():
        if len(shapes) == 1 and None not in shapes and slot not in results_read:
            name, _, dtype, order, alignment = allocated[slot - first_workspace]
            if order == "C":
                allocated[slot - first_workspace] = (name, next(iter(shapes)), dtype, order, alignment)
                reshaped.add(slot)
    if reshaped:
        launches = [(h, tuple((None, t) if r in reshaped else (shape, t) for r, (shape, t) in zip(refs, g)), b, refs)
                    if h is _GEMM else (h, g, b, refs) for h, g, b, refs in launches]
    # Workspace slots come after the operands, values after the workspace.
    first_value = first_workspace + len(allocated)
    first_derived = first_value + len(values)

    def slot_of(r):
        return r if not isinstance(r, tuple) else (first_value if r[0] == "value" else first_derived) + r[1]

    launches = [(h, g, b, refs if h is _DERIVE else tuple(slot_of(r) for r in refs)) for h, g, b, refs in launches]
    workspace = tuple((getattr(xp, name), shape, dtype, order, alignment)
                      for name, shape, dtype, order, alignment in allocated)
    return Recipe(tuple(launches), workspace, tuple(values), tuple(results), single, first_workspace)


def _gemm_event(event: tuple, slots: dict, operands: tuple, workspace: list, copies: list,
                first_workspace: int) -> tuple | None:
    """A recorded GEMM as a recipe launch (_GEMM, views, gemm, slots), or None (the call is not replayable).

    Each of a, b and out must be a view of all of a slot's memory (an operand, workspace or a derived copy,
    C-contiguous and of the same size) that the replay rebuilds by a reshape, then a transpose of the last two
    axes where the recorded view was one (the NCHW convolution's matrices): views[i] = (shape or None: as the
    slot's array is, transposed).  The rebuilt view is checked here to be the recorded one (:func:`_same_view`),
    so the GEMM sees the very operands it saw (only the memory is the replay's)."""
    _, (gemm, into), *arrays = event
    if into is not None and arrays[2].flags.c_contiguous:
        gemm = (into, True)  # called as into(a, b, out=out)
    else:
        gemm = (gemm, False)  # called as gemm(a, b, out)
    refs, views, fresh_views = [], [], []
    for a in arrays:
        slot = slots.get(_pointer(a))
        if slot is None:
            return None
        if isinstance(slot, tuple):  # ("derived", i)
            base = copies[slot[1]]
        else:
            base = operands[slot] if slot < first_workspace else workspace[slot - first_workspace]
        view = _view_of(base, a)
        if view is None:
            return None
        refs.append(slot)
        views.append(view)
        shape, transposed = view
        fresh = _c_strides(shape or base.shape, a.itemsize)  # an array allocated in that shape
        fresh_views.append(_same_strides(a.shape, fresh[:-2] + fresh[-1:-3:-1] if transposed else fresh, a.strides))
    # gemm: (function, out by keyword, per array: would an array allocated in its view's shape give that view)
    return (_GEMM, tuple(views), (*gemm, tuple(fresh_views)), refs)


def _view_of(base: Any, a: Any) -> tuple | None:
    """(shape or None, transposed): how the replay rebuilds view ``a`` from ``base``, a whole C-contiguous array
    of a's memory: ``base.reshape(shape)`` (no reshape for None), then ``.swapaxes(-1, -2)`` when transposed;
    None when neither gives ``a`` (:func:`_same_view`)."""
    if not base.flags.c_contiguous or base.size != a.size:
        return None
    for transposed in (False, True) if a.ndim >= 2 else (False,):
        shape = tuple(a.swapaxes(-1, -2).shape if transposed else a.shape)
        rebuilt = base if shape == tuple(base.shape) else base.reshape(shape)
        if _same_view(rebuilt.swapaxes(-1, -2) if transposed else rebuilt, a):
            return (None if shape == tuple(base.shape) else shape, transposed)
    return None


def _same_view(rebuilt: Any, recorded: Any) -> bool:
    """The two views are the same matrices: shape, contiguity flags, the strides of the last two axes (what
    a GEMM's leading dimensions come from) and of every other axis longer than 1.  A batch axis of length 1
    may differ in stride (its stride never moves a read: a reshape gives it another than a transpose did)."""
    if rebuilt.shape != recorded.shape or (rebuilt.flags.c_contiguous, rebuilt.flags.f_contiguous) != (
            recorded.flags.c_contiguous, recorded.flags.f_contiguous):
        return False
    return _same_strides(recorded.shape, rebuilt.strides, recorded.strides)


def _same_strides(shape: tuple, strides: tuple, recorded: tuple) -> bool:
    """Strides equal on the last two axes and on every other axis longer than 1 (see _same_view)."""
    last = len(shape) - 2
    return all(s == t for i, (n, s, t) in enumerate(zip(shape, strides, recorded)) if n != 1 or i >= last)


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    """The strides of a new C-contiguous array of ``shape`` (what xp.empty gives)."""
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _result_of(r, slots, used, recording, operands, allocated, first_workspace):
    """How to rebuild result ``r``: None; ("slot", i, shape) a launch-written array (reshaped);
    ("convert", i, shape, args, kwargs, result shape) an astype of one; None when it cannot be."""
    if r is None:
        return ("none",)
    pointer = _pointer(r)
    if isinstance(slots.get(pointer), tuple):
        return None  # a copy of an operand returned as is: not a result a launch wrote
    conversion = recording.conversions.get(pointer)
    if conversion is not None and not any(r is a for a in operands):
        source, args, kwargs, converted = conversion
        slot = slots.get(_pointer(source))
        if (slot is None or slot not in used or not source.flags.c_contiguous or not r.flags.c_contiguous
                or source.size != _slot_size(slot, operands, allocated, first_workspace) or r.size != converted.size):
            return None
        same = slot >= first_workspace and source.shape == allocated[slot - first_workspace][1]
        return ("convert", slot, None if same else source.shape, args, kwargs, r.shape)
    slot = slots.get(pointer)
    if slot is None or slot not in used:
        return None  # no launch wrote it (a copy, a conversion not seen): replaying would miss that
    if slot < first_workspace and r is operands[slot]:
        return ("slot", slot, None)
    if slot >= first_workspace and r.shape == allocated[slot - first_workspace][1] and (
            r.flags.c_contiguous or allocated[slot - first_workspace][3] == "F"):
        return ("slot", slot, None)  # the workspace array itself (or a view of all of it, as laid out)
    if not r.flags.c_contiguous or r.size != _slot_size(slot, operands, allocated, first_workspace):
        return None
    return ("slot", slot, r.shape)


def _slot_size(slot, operands, allocated, first_workspace) -> int:
    if slot < first_workspace:
        return operands[slot].size
    shape = allocated[slot - first_workspace][1]
    n = 1
    for s in shape:
        n *= s
    return n


def replay(recipe: Recipe, operands: tuple, data_ptr: Callable[[Any], int]) -> Any:
    """The recorded call again on ``operands``; None when fresh workspace is not aligned as recorded
    (the caller then takes the general path; nothing has been launched).  Workspace is allocated afresh
    per call (module docstring)."""
    return recipe.run(operands, data_ptr)


class ReplayedCalls:
    """The recorded general path and the replaying fast path of prelu, prelu_backward, bias_act,
    bias_act_backward, dense_bias_act and conv2d_bias_act, mixed in before
    :class:`~fastact.backends.kernels.backend.KernelBackend` (dense/conv2d through :meth:`recorded_call`).

    The general methods run KernelBackend's own (``super()``), recorded the first
    time a key is seen; :meth:`replayed` (tried by ``fastact/_dispatch.py``
    and ``fastact/_fused_dispatch.py`` before any check) replays a recipe when
    every array is a native array of this backend on the current device, the
    key has been recorded, and ``out`` (if any) is writable and either an
    input's very memory or disjoint from every input; otherwise it returns
    None and the general path runs (and raises what it raises).
    Recipes live in ``_elementwise_entries`` under keys starting with "replay" (dense/conv2d: with
    ``_fused_dispatch``'s tags, the op's name, the activation's and the convolution options).
    """

    replays = True

    # ---- the general path, recorded once per key -----------------------------
    def prelu_forward(self, x, alpha, out):
        return self._recorded(PRELU, (x, alpha, out),
                              lambda: super(ReplayedCalls, self).prelu_forward(x, alpha, out))

    def prelu_backward(self, dy, x, alpha, out):
        return self._recorded(PRELU_BACKWARD, (dy, x, alpha, out),
                              lambda: super(ReplayedCalls, self).prelu_backward(dy, x, alpha, out))

    def bias_act(self, kernel, params, x, bias, axis, out):
        return self._recorded((*BIAS_ACT, kernel, params_key(params), axis), (x, bias, out),
                              lambda: super(ReplayedCalls, self).bias_act(kernel, params, x, bias, axis, out))

    def bias_act_backward(self, kernel, params, dy, x, bias, axis):
        return self._recorded((*BIAS_ACT_BACKWARD, kernel, params_key(params), axis), (dy, x, bias),
                              lambda: super(ReplayedCalls, self).bias_act_backward(kernel, params, dy, x, bias, axis))

    def _epilogue(self, kernel, params, z, bias, axis, out):
        """The bias_act epilogue of dense and conv2d (over their GEMM's output, in place): replayed too,
        from the general path itself (the checks are behind it), so only the GEMMs and im2col plan."""
        tag = (*EPILOGUE, kernel, params_key(params), axis)
        if _active() is None and None not in tag:
            recipe = self._elementwise_entries.get(self._replay_key(tag, (z, bias, out), None))
            if recipe is not None and recipe is not _DECLINED:
                result = replay(recipe, (z, bias, out), self.data_ptr)
                if result is not None:
                    return result
        return self._recorded(tag, (z, bias, out),
                              lambda: super(ReplayedCalls, self)._epilogue(kernel, params, z, bias, axis, out))

    def recorded_call(self, tag: tuple, operands: tuple, run: Callable[[], Any]) -> Any:
        """``run()`` (a backend call whose checks are done: dense_bias_act and conv2d_bias_act from
        fastact/_fused_dispatch.py), recorded the first time its key is seen, so that :meth:`replayed`
        replays it after: the im2col launch, the GEMM (:func:`record_gemm`) and the epilogue."""
        return self._recorded(tag, operands, run)

    def _recorded(self, tag: tuple, operands: tuple, run: Callable[[], Any]) -> Any:
        if None in tag or _active() is not None:  # unhashable parameters; a call inside a recording
            return run()
        key = self._replay_key(tag, operands, None)
        entries = self._elementwise_entries
        if key is None or key in entries:  # declined, or recorded (this call fell back: workspace aligned otherwise)
            return run()
        result, recipe = record(self, run, operands)
        if recipe is not None:
            if len(entries) >= 4096:  # full: drop the oldest recipe, not the one a caller just made
                del entries[next(iter(entries))]
            entries[key] = recipe
        return result

    def _replay_key(self, tag: tuple, operands: tuple, device: int | None, array_type: type | None = None) -> tuple | None:
        """The key of a call (one tuple, hashed on every fast call): tag; per operand None, or its shape,
        dtype, True when C-contiguous or else its strides, its data pointer % ALIGNMENT and, when an
        earlier operand has the same pointer, ~(its index); then the device.  None (no key: the general path) when the operands are on different
        devices, or not on ``device`` when given, or not exactly of ``array_type`` when given."""
        key = [tag]
        append = key.append
        pointers = []
        data_ptr, array_device, c_contiguous = self.data_ptr, self.array_device, self.c_contiguous
        for a in operands:
            if a is None:
                append(None)
                continue
            if array_type is not None and type(a) is not array_type:
                return None
            where = array_device(a)
            if device is None:
                device = where
            elif where != device:
                return None
            p = data_ptr(a)
            append(a.shape)
            append(a.dtype)
            append(True if c_contiguous(a) else a.strides)  # C order: the strides follow from shape and dtype
            append(p % ALIGNMENT)
            if p in pointers:
                append(~pointers.index(p))
            pointers.append(p)
        append(device)
        return tuple(key)

    # ---- the fast path ------------------------------------------------------------
    def replayed(self, tag: tuple, operands: tuple, out: Any) -> Any:
        """The fast path of one call: its key (:meth:`_replay_key`, every operand exactly a native array on
        the current device), the checks on ``out``, the replay."""
        key = self._replay_key(tag, operands, self.current_device(), self.array_type)
        if key is None:
            return None
        recipe = self._elementwise_entries.get(key)
        if recipe is None or recipe is _DECLINED:
            return None
        data_ptr = self.data_ptr
        if out is not None:
            if not self.writable(out):
                return None
            pointer, nbytes = data_ptr(out), out.nbytes
            for a in operands:
                if a is not None and a is not out:
                    other = data_ptr(a)
                    if pointer != other and pointer < other + a.nbytes and other < pointer + nbytes:
                        return None  # a partial overlap: the general path says what is wrong
        return recipe.run(operands, data_ptr)


_PARAMS: dict = {}  # (parameter items, their types) -> a small int, never reused
_NEXT_PARAMS = iter(range(1 << 62))


def params_key(params: dict) -> int | None:
    """Kernel parameters (values and their types) as a small int, cheap to hash in every key;
    None when a value is unhashable.  The same items always give the same int while remembered."""
    try:
        items = (tuple(params.items()), tuple(map(type, params.values())))
        key = _PARAMS.get(items)
    except TypeError:
        return None
    if key is None:
        if len(_PARAMS) >= 4096:
            _PARAMS.clear()  # later ids are new: keys holding the old ones just stop matching
        key = _PARAMS[items] = next(_NEXT_PARAMS)
    return key
