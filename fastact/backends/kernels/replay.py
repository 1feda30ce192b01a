"""Record and replay: the fast path of the per-channel and fused calls of the kernel backends.

A general-path call of ``prelu``, ``prelu_backward``, ``bias_act`` or
``bias_act_backward`` plans its launches (layouts, vector widths, index types,
grids, packed parameters, kernel handles) in Python: tens of microseconds.
Everything it decides depends only on the call's *key*: the op and its
parameters, and per array operand its shape, strides, dtype, device and data
pointer modulo :data:`ALIGNMENT`, plus which operands share memory.  So the
first general call with a key is *recorded*: each launch made through
``KernelBackend.launch`` (kernel handle, grid, block, arguments), each array
the call allocates through ``backend.xp.empty``/``zeros`` (workspace: partial
sums, the result), each ``astype`` of such an array (a float64 sum rounded
to the parameter's dtype) and each ``xp.ascontiguousarray`` that copies a whole
operand (a 16-bit alpha or bias in the compute type).  Each argument is then
named by its data pointer: an operand of the call, a workspace array, such a
copy, or a value (NumPy scalars: packed functors, index values).  A later call with the same key *replays*: it
allocates the workspace afresh, launches the recorded kernels with the new
operands' arrays in their places, and converts what was converted.  Nothing is
planned, named or looked up.

A recording is refused (the key keeps the general path) when the call does
anything else on the device that is not a launch, so that replaying it would
miss work: an argument that is neither an operand, workspace nor such a copy
(a transposed copy of x, a view at an offset), any other
``xp`` function than an allocation or a view (``matmul``, ...), a result that
no launch wrote (a result copied into ``out`` after the launch), a launch
argument of an unknown kind.  The general path itself is unchanged: it only
runs under the recorder once per key.

Workspace is allocated per call (``xp.empty``/``xp.zeros`` on the current
device), never kept: CuPy's memory pool hands memory back in stream order, so
a replay on another stream, or two replays in flight, never share partial sums.
Launches go to the current stream, as the general path's.  A recording only
sees its own thread's launches and allocations.
"""
from __future__ import annotations

import operator
import threading
from typing import Any, Callable

import numpy as np

from . import plan

# Data pointers enter the key modulo this: plan's vector decisions read 16-byte alignment.
ALIGNMENT = plan.VECTOR_BYTES
_DECLINED = object()  # a key whose general call could not be recorded: it keeps the general path
_DERIVE = object()  # in a recipe's launches: a copy of an operand (see _RecordingXp._derive)
# Keys start with these tags (bias_act's add the kernel, params_key(params) and the normalized axis).
PRELU, PRELU_BACKWARD = ("replay", "prelu"), ("replay", "prelu_backward")
BIAS_ACT, BIAS_ACT_BACKWARD = ("replay", "bias_act"), ("replay", "bias_act_backward")
EPILOGUE = ("replay", "epilogue")  # dense/conv2d's bias_act over their GEMM output


class Recipe:
    """A recorded call: (handle, grid, block, slot indices) per launch; slots = operands, workspace, values.

    ``workspace``: (xp allocator, shape, dtype, order, pointer % ALIGNMENT) per
    array allocated; ``values``: the recorded scalar arguments; ``results``: how
    to build each result from the slots (see :func:`_result_of`); ``single``:
    the call returned one result, not a tuple.
    """

    __slots__ = ("launches", "workspace", "values", "results", "single", "finish")

    def __init__(self, launches, workspace, values, results, single) -> None:
        self.launches, self.workspace, self.values, self.results, self.single = launches, workspace, values, results, single
        makers = tuple(map(_result_maker, results))
        if single:
            self.finish = makers[0]
        elif len(makers) == 2:
            first, second = makers
            self.finish = lambda slots: (first(slots), second(slots))
        else:
            self.finish = lambda slots: tuple([make(slots) for make in makers])


def _result_maker(how: tuple) -> Callable[[list], Any]:
    """slots -> one result, as ``how`` says (see _result_of), written out per kind (it runs every call)."""
    kind = how[0]
    if kind == "none":
        return lambda slots: None
    if kind == "slot":
        _, slot, shape = how
        if shape is None:
            return lambda slots: slots[slot]
        return lambda slots: slots[slot].reshape(shape)
    _, slot, shape, args, kwargs, result_shape = how
    if shape is None and result_shape is None:
        if not kwargs and len(args) == 1:
            dtype = args[0]
            return lambda slots: slots[slot].astype(dtype)
        if list(kwargs) == ["copy"] and len(args) == 1:
            dtype, copy = args[0], kwargs["copy"]
            return lambda slots: slots[slot].astype(dtype, copy=copy)

    def make(slots):
        source = slots[slot] if shape is None else slots[slot].reshape(shape)
        converted = source.astype(*args, **kwargs)
        return converted if result_shape is None else converted.reshape(result_shape)
    return make


class Recording:
    """What one general-path call did, on the recording thread."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.launches: list = []      # (handle, grid, block, args)
        self.allocated: list = []     # (allocator name, array)
        self.conversions: dict = {}   # result pointer -> (source view, args, kwargs, result)
        self.refused: str | None = None


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
        mine = threading.get_ident() == self._recording.thread
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
            if active is not None:
                active.conversions[_pointer(result)] = (self, args, kwargs, result)
            return result

        tracked = _TRACKED[base] = type(f"Recorded{base.__name__}", (base,), {"astype": astype})
    return tracked


_local = threading.local()


def _active() -> Recording | None:
    return getattr(_local, "recording", None)


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
    for event in recording.launches:
        if event[0] is _DERIVE:  # a copy of a whole operand, read as C-contiguous: replayed as a copy
            _, source, function, args, kwargs, copy = event
            slot = slots.get(_pointer(source))
            if (slot is None or slot >= first_workspace or not source.flags.c_contiguous
                    or source.size != operands[slot].size or _pointer(copy) in slots):
                return _DECLINED
            derived.append((slot, None if source.shape == operands[slot].shape else source.shape, function, args, kwargs))
            slots[_pointer(copy)] = ("derived", len(derived) - 1)
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
            if allocated[w][3] == "C" and sum(1 for h in results if h[1:2] == (how[1],)) == 1:
                name, _, dtype, order, alignment = allocated[w]
                allocated[w] = (name, how[2], dtype, order, alignment)
                results[i] = how = (*how[:2], None, *how[3:])
    for i, how in enumerate(results):  # the result shape, None where the conversion gives it already
        if how[0] == "convert":
            converted_shape = how[2] if how[2] is not None else (
                operands[how[1]].shape if how[1] < first_workspace else allocated[how[1] - first_workspace][1])
            if converted_shape == how[5]:
                results[i] = (*how[:5], None)
    # Workspace slots come after the operands, values after the workspace.
    first_value = first_workspace + len(allocated)
    first_derived = first_value + len(values)

    def slot_of(r):
        return r if not isinstance(r, tuple) else (first_value if r[0] == "value" else first_derived) + r[1]

    launches = [(h, g, b, refs if h is _DERIVE else _gather([slot_of(r) for r in refs])) for h, g, b, refs in launches]
    workspace = tuple((getattr(xp, name), shape, dtype, order, alignment)
                      for name, shape, dtype, order, alignment in allocated)
    return Recipe(tuple(launches), workspace, tuple(values), tuple(results), single)


def _gather(refs: list) -> Callable[[list], tuple]:
    """slots -> the tuple of slots[i] for i in refs (operator.itemgetter; a 1-tuple for one argument)."""
    if len(refs) == 1:
        only = refs[0]
        return lambda slots: (slots[only],)
    return operator.itemgetter(*refs)


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
    (the caller then takes the general path; nothing has been launched)."""
    slots = [*operands]
    for allocate, shape, dtype, order, alignment in recipe.workspace:  # fresh per call (module docstring)
        a = allocate(shape, dtype, order)
        if data_ptr(a) % ALIGNMENT != alignment:
            return None
        slots.append(a)
    slots.extend(recipe.values)
    for handle, grid, block, gather in recipe.launches:
        if handle is _DERIVE:
            slot, shape, function, args, kwargs = grid
            slots.append(function(slots[slot] if shape is None else slots[slot].reshape(shape), *args, **kwargs))
        else:
            handle(grid, block, gather(slots))
    return recipe.finish(slots)


class ReplayedCalls:
    """The recorded general path and the replaying fast path of prelu, prelu_backward, bias_act and
    bias_act_backward, mixed in before :class:`~fastact.backends.kernels.backend.KernelBackend`.

    The general methods run KernelBackend's own (``super()``), recorded the first
    time a key is seen; :meth:`replayed` (tried by ``fastact/_dispatch.py``
    and ``fastact/_fused_dispatch.py`` before any check) replays a recipe when
    every array is a native array of this backend on the current device, the
    key has been recorded, and ``out`` (if any) is writable and either an
    input's very memory or disjoint from every input; otherwise it returns
    None and the general path runs (and raises what it raises).
    Recipes live in ``_elementwise_entries`` under keys starting with "replay".
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
        """The fast path of one call: its key (as :meth:`_replay_key`, written out: it is most of the cost),
        every operand exactly a native array on the current device, the checks on ``out``, the replay."""
        array_type, device = self.array_type, self.current_device()
        data_ptr, array_device, c_contiguous = self.data_ptr, self.array_device, self.c_contiguous
        key = [tag]
        append = key.append
        pointers = []
        for a in operands:
            if a is None:
                append(None)
                continue
            if type(a) is not array_type or array_device(a) != device:
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
        recipe = self._elementwise_entries.get(tuple(key))
        if recipe is None or recipe is _DECLINED:
            return None
        if out is not None:
            if not self.writable(out):
                return None
            pointer, nbytes = data_ptr(out), out.nbytes
            for a in operands:
                if a is not None and a is not out:
                    other = data_ptr(a)
                    if pointer != other and pointer < other + a.nbytes and other < pointer + nbytes:
                        return None  # a partial overlap: the general path says what is wrong
        return replay(recipe, operands, data_ptr)


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
