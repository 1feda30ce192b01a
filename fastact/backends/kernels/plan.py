"""Host-side decisions for the CUDA kernels, shared by the GPU and the emulator.

Everything the host decides before a launch lives here, as plain functions of
shapes, dtypes, pointers and the device's SM count: which template
instantiation (dtype, vector width, index type), the launch size, the
activation functor's packed parameters, and the PReLU reduction plan.  Both
:class:`~fastact.backends.cuda.backend.CudaBackend` and the CPU emulator run
this code unchanged, so the emulator tests exercise it.  No CuPy import here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...activations import ELEMENTWISE_KERNELS, ROWWISE_KERNELS

# Threads per block of every launch (kElementwiseThreads in cuda/elementwise.cuh).
THREADS = 256
# Resident 256-thread blocks per SM at full occupancy (2048 threads per SM on
# sm_80/sm_90); a grid-stride loop over more blocks than fit at once only adds
# scheduling work.
BLOCKS_PER_SM = 8
VECTOR_BYTES = 16
INT32_MAX = 2**31 - 1

# dtype name -> C++ storage type.
STORAGE_TYPES = {"float16": "__half", "bfloat16": "__nv_bfloat16", "float32": "float", "float64": "double"}
INDEX_TYPES = ("int", "long long")


# Per-dtype facts, remembered: dtype.name alone costs microseconds (a Python
# property), and these run on every launch (bench/host_overhead.py).
_DTYPE_FACTS: dict = {}


def _dtype_facts(dtype) -> tuple[np.dtype, str, int]:
    """(compute dtype, name, itemsize) of an array dtype (or anything np.dtype takes)."""
    try:
        return _DTYPE_FACTS[dtype]
    except (KeyError, TypeError):  # new, or unhashable
        pass
    d = np.dtype(dtype)
    facts = (np.dtype(np.float64) if d == np.float64 else np.dtype(np.float32), d.name, d.itemsize)
    try:
        _DTYPE_FACTS[dtype] = facts
    except TypeError:
        pass
    return facts


def compute_dtype(dtype) -> np.dtype:
    """float64 computes in float64; float32, float16 and bfloat16 in float32 (README.md, Conventions: dtypes)."""
    return _dtype_facts(dtype)[0]


def compute_type(dtype) -> str:
    return "double" if compute_dtype(dtype) == np.float64 else "float"


def dtype_name(dtype) -> str:
    return _dtype_facts(dtype)[1]


# --------------------------------------------------------------------------- #
# Activation functors: the C++ struct of each elementwise kernel name
# (cuda/activations.cuh) and how its fields are packed from the registry's
# kernel_params.  tests/test_registry_coverage.py checks that every
# elementwise kernel of the registry has its row.
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Functor:
    template: str  # C++ class template taking the compute type
    fields: tuple[tuple[str, str], ...]  # (name, "compute" or a NumPy dtype), struct order
    values: Callable[..., dict]  # kernel_params -> field values

    def struct_dtype(self, dtype) -> np.dtype:
        compute = compute_dtype(dtype)
        cached = _STRUCT_DTYPES.get((self.template, compute))
        if cached is not None:
            return cached
        fields = [(name, compute if kind == "compute" else np.dtype(kind)) for name, kind in self.fields]
        # An empty C++ struct still has size 1: a parameterless functor is passed as one byte.
        struct = np.dtype(fields or [("empty", np.uint8)], align=True)  # the C layout of the struct
        _STRUCT_DTYPES[(self.template, compute)] = struct
        return struct


# (functor template, compute dtype) -> its struct dtype: built once, not per call.
_STRUCT_DTYPES: dict = {}


def _relu_fields(alpha: float, max_value: float | None, threshold: float) -> dict:
    return {
        "alpha": alpha,
        "max_value": 0.0 if max_value is None else max_value,
        "threshold": threshold,
        "has_max": 0 if max_value is None else 1,
    }


def _parameterless(template: str) -> Functor:
    return Functor(template, (), lambda: {})


FUNCTORS = {
    "relu": Functor(
        "fastact::Relu",
        (("alpha", "compute"), ("max_value", "compute"), ("threshold", "compute"), ("has_max", "int32")),
        _relu_fields,
    ),
    "elu": Functor("fastact::Elu", (("alpha", "compute"), ("scale", "compute")), lambda alpha, scale: {"alpha": alpha, "scale": scale}),
    "gelu": Functor("fastact::Gelu", (("approximate", "int32"),), lambda approximate: {"approximate": int(approximate)}),
    "silu": _parameterless("fastact::Silu"),
    "softplus": _parameterless("fastact::Softplus"),
    "sigmoid": _parameterless("fastact::Sigmoid"),
    "tanh": _parameterless("fastact::Tanh"),
    "hard_sigmoid": _parameterless("fastact::HardSigmoid"),
    "hard_silu": _parameterless("fastact::HardSilu"),
    "mish": _parameterless("fastact::Mish"),
    "linear": _parameterless("fastact::Linear"),
}


def pack_functor(kernel: str, params: dict, dtype) -> np.void:
    """The functor's fields as a NumPy structured scalar, passed to the kernel by value.

    Values are rounded to the compute type here, once, as the NumPy backend
    rounds its parameters: both backends then compute on the same values.
    Packed once per (kernel, parameter values with their types, compute
    dtype); the scalar returned is shared: callers must not change it.
    """
    try:
        key = (kernel, tuple(params.items()), tuple(map(type, params.values())), compute_dtype(dtype))
        packed = _PACKED.get(key)
    except TypeError:  # an unhashable parameter value: packed, not remembered
        key, packed = None, None
    if packed is not None:
        return packed
    functor = FUNCTORS.get(kernel)
    if functor is None:
        raise NotImplementedError(f"the CUDA kernels do not implement {kernel!r} yet; use the 'numpy' backend")
    values = functor.values(**params)
    struct = np.zeros((), functor.struct_dtype(dtype))
    for name, _ in functor.fields:
        struct[name] = values[name]
    packed = struct[()]
    if key is not None:
        if len(_PACKED) >= _MAX_PACKED:
            _PACKED.clear()
        _PACKED[key] = packed
    return packed


# (kernel, params, their types, compute dtype) -> packed functor; cleared when full.
_PACKED: dict = {}
_MAX_PACKED = 4096


# --------------------------------------------------------------------------- #
# Instantiation choices.
# --------------------------------------------------------------------------- #
def vector_width(dtype, pointers) -> int:
    """Elements per 16-byte access, or 1 (the scalar path) unless every pointer is 16-byte aligned."""
    if all(p % VECTOR_BYTES == 0 for p in pointers):
        return VECTOR_BYTES // itemsize(dtype)
    return 1


def vector_widths(dtype) -> tuple[int, int]:
    """The two widths a dtype is instantiated with: scalar and 16-byte."""
    return (1, VECTOR_BYTES // itemsize(dtype))


def itemsize(dtype) -> int:
    return _dtype_facts(dtype)[2]


def index_type(n: int, threads_in_grid: int) -> str:
    """'int' when every index a thread forms (at most n plus one grid stride) fits in 31 bits."""
    return "int" if n + threads_in_grid <= INT32_MAX else "long long"


def index_scalar(index: str, value: int):
    return np.int32(value) if index == "int" else np.int64(value)


def grid_size(work_items: int, sm_count: int) -> int:
    """Blocks for a grid-stride loop over ``work_items``: enough to fill the device once, no more."""
    return max(1, min(math.ceil(work_items / THREADS), sm_count * BLOCKS_PER_SM))


@dataclass(frozen=True)
class ElementwiseLaunch:
    vector: int
    index: str
    grid: int

    @property
    def block(self) -> int:
        return THREADS


def elementwise_launch(n: int, dtype, pointers, sm_count: int) -> ElementwiseLaunch:
    """Vector width, index type and grid for an elementwise kernel over n elements."""
    vector = vector_width(dtype, pointers)
    grid = grid_size(math.ceil(n / vector), sm_count)
    return ElementwiseLaunch(vector, index_type(n, grid * THREADS), grid)


def activation_kernel(direction: str, kernel: str, dtype, vector: int, index: str) -> str:
    """Name expression of activation_forward/activation_backward for one instantiation."""
    functor = f"{FUNCTORS[kernel].template}<{compute_type(dtype)}>"
    return f"fastact::activation_{direction}<{functor}, {STORAGE_TYPES[dtype_name(dtype)]}, {index}, {vector}>"


# Channel layouts of the per-channel kernels (ChannelLayout in cuda/prelu.cuh).
ONE_CHANNEL, PLANES, ROWS, ANY_LAYOUT = "fastact::kOneChannel", "fastact::kPlanes", "fastact::kRows", "fastact::kAnyLayout"
WHOLE_PLANES = "fastact::kWholePlanes"


def channel_layout(p: "PreluPlan", vector: int, index: str, table_pointer: int, one_channel: bool) -> tuple[str, int]:
    """(layout, vector width) of a forward per-channel kernel (prelu_forward, bias_act_forward).

    ``vector``: the engine's width for x and y (1 when either is misaligned);
    ``table_pointer``: the address of the per-channel values.  The channel
    values of a vector are found once per vector: one value (``one_channel``
    kernels only, or inner a multiple of the width: a vector in one plane),
    two planes (inner >= vector), or a vector of consecutive
    channels (inner == 1, channels a multiple of the width, the values
    16-byte aligned).  Anything else, and 64-bit indices (a 64-bit division
    is a called routine), takes the scalar path with a channel per element.
    """
    if one_channel and p.channels == 1:
        return ONE_CHANNEL, vector
    if vector > 1 and index == "int":
        if p.inner % vector == 0:
            return WHOLE_PLANES, vector
        if p.inner >= vector and vector > 2:  # float64 (2 per vector): kPlanes spilled with hard_silu on sm_90
            return PLANES, vector
        if p.inner == 1 and p.channels % vector == 0 and table_pointer % VECTOR_BYTES == 0:
            return ROWS, vector
    return ANY_LAYOUT, 1


def forward_layouts(dtype, index: str, one_channel: bool) -> list[tuple[str, int]]:
    """Every (layout, vector) that channel_layout may pick for a dtype and index type."""
    vector = VECTOR_BYTES // itemsize(dtype)
    variants = [(ANY_LAYOUT, 1)]
    if one_channel:
        variants += [(ONE_CHANNEL, 1), (ONE_CHANNEL, vector)]
    if index == "int":
        variants += [(WHOLE_PLANES, vector), *([(PLANES, vector)] if vector > 2 else []), (ROWS, vector)]
    return variants


def prelu_forward_kernel(layout: str, dtype, vector: int, index: str) -> str:
    return f"fastact::prelu_forward<{layout}, {STORAGE_TYPES[dtype_name(dtype)]}, {index}, {vector}>"


def prelu_backward_kernel(dtype, launch: "PreluBackwardLaunch") -> str:
    return (f"fastact::prelu_backward<{launch.layout}, {STORAGE_TYPES[dtype_name(dtype)]}, {launch.index}, "
            f"{launch.vector}>")


def backward_layouts(dtype) -> list[tuple[str, int]]:
    """Every (layout, vector) of the per-channel backward kernels (prelu_backward_launch)."""
    full = VECTOR_BYTES // itemsize(dtype)
    return [(PLANES, 1), (PLANES, full), (ROWS, 1), (ROWS, full)]


# The per-channel sums' dtypes the second pass stores (prelu_sum_partials' Out), by NumPy name.
SUM_TYPES = {"float64": "double", "float32": "float"}


def prelu_sum_kernel(index: str, out: str = "float64") -> str:
    """The second pass of the per-channel reductions, storing its float64 sums as ``out`` (a SUM_TYPES key)."""
    return f"fastact::prelu_sum_partials<{index}, {SUM_TYPES[out]}>"


def module_kernels(family: str, dtype) -> list[str]:
    """Every instantiation of one compiled module: an activation kernel name or 'prelu', one dtype."""
    if family in ROWWISE_KERNELS:
        return [rowwise_kernel(d, family, dtype, RowwiseLaunch(1, index, lanes, vector))
                for index in INDEX_TYPES for lanes in ROW_LANES for vector in row_vectors(dtype, lanes)
                for d in ("forward", "backward")]
    names = []
    for index in INDEX_TYPES:
        if family == "prelu":
            names += [prelu_forward_kernel(layout, dtype, vector, index)
                      for layout, vector in forward_layouts(dtype, index, one_channel=True)]
            names += [prelu_backward_kernel(dtype, PreluBackwardLaunch((1, 1), (1, 1), index, layout, vector))
                      for layout, vector in backward_layouts(dtype)]
            names += [prelu_sum_kernel(index, out) for out in SUM_TYPES]
        elif family in ELEMENTWISE_KERNELS:
            names += [activation_kernel(d, family, dtype, vector, index)
                      for vector in vector_widths(dtype) for d in ("forward", "backward")]
    return names + fused_kernels(family, dtype)


# --------------------------------------------------------------------------- #
# Row-wise kernels: softmax and log_softmax along an axis (cuda/rowwise.cuh).
# --------------------------------------------------------------------------- #
# Row-wise kernel name (the registry's ROWWISE_KERNELS) -> (forward op, backward op),
# C++ class templates on the compute type.
ROWWISE_OPS = {
    "softmax": ("fastact::SoftmaxForward", "fastact::SoftmaxBackward"),
    "log_softmax": ("fastact::LogSoftmaxForward", "fastact::LogSoftmaxBackward"),
}
# Threads sharing a row: one (strided rows, and rows of one chunk), a warp, a block.
ROW_LANES = (1, 32, THREADS)
# Elements each thread holds in registers per chunk on the scalar path
# (row_slots in cuda/rowwise.cuh; row_items gives every path's).
ROW_ITEMS = 8
# The longest row a warp takes; longer rows take a block.
WARP_ROW_MAX = 1024
# The strided kernel (a thread per row, rows inner elements apart) reads
# coalesced when a warp's 32 threads read consecutive addresses: inner >= 32.
STRIDED_MIN_INNER = 32


@dataclass(frozen=True)
class RowwisePlan:
    """x as ``rows`` rows of ``length`` elements, ``inner`` apart (see cuda/rowwise.cuh).

    ``move_axis``: the axis is moved last first (a C-contiguous copy of each
    input, and of the result back), after which inner == 1.
    """

    rows: int
    length: int
    inner: int
    lanes: int
    move_axis: bool


def contiguous_row_lanes(length: int) -> int:
    """Threads per contiguous row: one when the row fits one thread's chunk, a warp up to WARP_ROW_MAX, else a block."""
    if length <= ROW_ITEMS:
        return 1
    return 32 if length <= WARP_ROW_MAX else THREADS


def rowwise_plan(shape: tuple, axis: int, sm_count: int) -> RowwisePlan:
    """Rows along ``axis`` (non-negative; a 0-d shape is one element) and how to run them.

    axis last (inner == 1): contiguous rows, a thread, warp or block per row.
    Otherwise the strided kernel runs in place, a thread per row, when its
    reads are coalesced (inner >= STRIDED_MIN_INNER) and there are rows for
    at least two blocks per SM (each thread walks a whole row, so fewer rows
    would leave the device idle; with 16-byte columns, rowwise_launch, a
    thread walks 1/16 of VEC rows, but the same threshold is kept).  Else
    moving the axis last is cheaper: a transposed copy costs one extra read
    and write of each operand, while an uncoalesced strided pass wastes most
    of every 32-byte sector it reads, and an under-filled one leaves SMs idle
    for the whole row walk.
    """
    shape = tuple(shape) or (1,)
    outer, length, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])
    if inner == 1:
        return RowwisePlan(outer, length, 1, contiguous_row_lanes(length), False)
    if inner >= STRIDED_MIN_INNER and outer * inner >= 2 * sm_count * THREADS:
        return RowwisePlan(outer * inner, length, inner, 1, False)
    return RowwisePlan(outer * inner, length, 1, contiguous_row_lanes(length), True)


def row_vectors(dtype, lanes: int) -> tuple[int, ...]:
    """The access widths of the row kernels with ``lanes`` lanes: scalar, and 16-byte (a warp or a block per
    contiguous row; with one lane, the strided kernel's columns of rows)."""
    if lanes == 1 and compute_dtype(dtype) == np.float64:
        return (1,)  # float64 strided rows keep the scalar kernel (rowwise_launch)
    return vector_widths(dtype)


# The strided kernel with 16-byte vectors (rowwise_columns in cuda/rowwise.cuh):
# a block takes column_tile(direction) vectors of VEC rows side by side and
# splits the rows' axis among column_split(direction) groups of threads, each
# reading column_steps(direction) elements of its rows per chunk.


def column_tile(direction: str) -> int:
    """Vectors side by side in a tile of rowwise_columns (column_tile in cuda/rowwise.cuh): a
    backward re-reads dy as well as x, so its tiles are half as wide (the same L2 per tile)."""
    return 8 if direction == "backward" else 16


def column_split(direction: str) -> int:
    """Groups of threads splitting a tile's rows (kColumnSplit in cuda/rowwise.cuh)."""
    return THREADS // column_tile(direction)


# Blocks per SM of its grid: the blocks that fit at once (kColumnBlocksPerSm:
# at most 64 registers on sm_90; 80 with 64-bit indices).
COLUMN_BLOCKS_PER_SM = 4
# Passes 2 and 3 of rowwise_columns read a tile's row elements again; the grid (the tiles resident
# at once: the kernel loops over tiles) is kept so that those tiles take at most this much of L2,
# for the reads to hit it.  H100 and H200 have 50 MB of L2 (A100 40 MB), split in two partitions
# and shared with every other access; a row too long for even one block per SM reads from memory.
COLUMN_L2_BYTES = 36 << 20
COLUMN_BLOCKS_PER_SM_64 = 3


def column_steps(direction: str, dtype) -> int:
    """Row elements per thread per chunk of rowwise_columns (column_steps in cuda/rowwise.cuh)."""
    if direction == "backward":
        return 1
    return 4 if itemsize(dtype) == 4 else 2


def row_items(lanes: int, vector: int, dtype=None) -> int:
    """Elements per lane per chunk (row_slots in cuda/rowwise.cuh): a row of at most lanes * row_items
    elements is read once (and, but for float64, its exps computed once)."""
    if lanes == 1 and vector > 1:
        raise ValueError("the strided vector kernel reads each row's elements in three passes (column_steps)")
    if dtype is not None and compute_dtype(dtype) == np.float64:
        return 2 if vector == 1 else vector
    if vector == 1:
        return ROW_ITEMS
    return (2 if lanes > 32 else 4) * vector


@dataclass(frozen=True)
class RowwiseLaunch:
    grid: int
    index: str
    lanes: int = 1
    vector: int = 1

    @property
    def block(self) -> int:
        return THREADS


def rowwise_launch(p: RowwisePlan, sm_count: int, dtype=None, pointers=(), direction: str = "forward") -> RowwiseLaunch:
    """Grid, index type and access width of a row-wise kernel.

    16-byte vectors for contiguous rows (a warp or a block per row) whose
    length is a multiple of the width, when every pointer is 16-byte aligned
    (without ``dtype``: the scalar path).  The grid covers every row once:
    the vector kernels hold a chunk of the row in registers, so fewer than 8
    blocks fit on an SM, and a grid sized for 8 would leave a partial wave.

    Strided rows (inner > 1) of float32, float16 and bfloat16 take 16-byte
    columns of rows (rowwise_columns) when inner is a multiple of the width
    and every pointer is 16-byte aligned: a grid-stride loop over tiles of
    column_tile(direction) vectors, COLUMN_BLOCKS_PER_SM blocks per SM at most and no more
    than keep the tiles they re-read within COLUMN_L2_BYTES (``direction``:
    a backward reads dy too).  float64
    keeps the scalar strided kernel: its row sums are compared with the
    oracle's to 1e-15, and the oracle adds a strided row's terms one by one,
    in the scalar kernel's order.
    """
    vector = 1
    aligned = all(q % VECTOR_BYTES == 0 for q in pointers)
    if dtype is not None and p.inner == 1 and p.lanes > 1:
        full = VECTOR_BYTES // itemsize(dtype)
        if p.length % full == 0 and aligned:
            vector = full
    if (dtype is not None and p.inner > 1 and aligned and compute_dtype(dtype) == np.float32
            and p.inner % (VECTOR_BYTES // itemsize(dtype)) == 0):
        # The strided rows as columns of 16-byte vectors (rowwise_columns): a grid-stride loop over tiles.
        vector = VECTOR_BYTES // itemsize(dtype)
        tiles = math.ceil(p.rows // vector / column_tile(direction))
        index = index_type(p.rows * p.length, 2 * tiles * THREADS)  # tile indices reach tiles + grid
        per_sm = COLUMN_BLOCKS_PER_SM if index == "int" else COLUMN_BLOCKS_PER_SM_64
        arrays = 2 if direction == "backward" else 1  # x, and dy
        within_l2 = max(sm_count, COLUMN_L2_BYTES // (column_tile(direction) * VECTOR_BYTES * p.length * arrays))
        return RowwiseLaunch(max(1, min(tiles, sm_count * per_sm, within_l2)), index, 1, vector)
    rows_per_block = THREADS // p.lanes
    grid = max(1, math.ceil(p.rows / rows_per_block))
    # Indices reach the rows plus one grid step of rows, and n plus a chunk
    # past a row's end (its last chunk's padding).
    bound = max(p.rows + grid * rows_per_block, p.rows * p.length + p.lanes * row_items(p.lanes, vector, dtype))
    return RowwiseLaunch(grid, index_type(bound, 0), p.lanes, vector)


def rowwise_kernel(direction: str, kernel: str, dtype, launch: RowwiseLaunch) -> str:
    """Name expression of fastact::rowwise for one op, direction and instantiation."""
    op = ROWWISE_OPS[kernel][0 if direction == "forward" else 1]
    return (f"fastact::rowwise<{op}<{compute_type(dtype)}>, {STORAGE_TYPES[dtype_name(dtype)]}, {launch.index}, "
            f"{launch.vector}, {launch.lanes}>")


MODULE_FAMILIES = (*ELEMENTWISE_KERNELS, *ROWWISE_KERNELS, "prelu", "conv")


# --------------------------------------------------------------------------- #
# PReLU: every broadcastable alpha as (outer, channels, inner).
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class PreluPlan:
    """x (after ``axes``, if any, and a C-contiguous copy) seen as (outer, channels, inner).

    alpha varies only along the ``channels`` run; ``axes`` is a permutation of
    x's axes that puts alpha's axes last when they are not adjacent in x
    (then inner == 1).  ``scalar``: one slope for every element.
    """

    outer: int
    channels: int
    inner: int
    axes: tuple[int, ...] | None = None

    @property
    def scalar(self) -> bool:
        return self.channels == 1


def prelu_plan(x_shape: tuple, alpha_shape: tuple) -> PreluPlan:
    """The plan for an alpha that broadcasts to x (the dispatcher has checked it does)."""
    ndim = len(x_shape)
    padded = (1,) * (ndim - len(alpha_shape)) + tuple(alpha_shape)
    # Axes of size 1 in x do not matter either way; the rest are either
    # "alpha varies" (kept) or "alpha broadcast" (summed over by dalpha).
    live = [d for d in range(ndim) if x_shape[d] != 1]
    kept = [d for d in live if padded[d] != 1]
    if not kept:
        return PreluPlan(1, 1, math.prod(x_shape))
    position = [live.index(d) for d in kept]
    if position == list(range(position[0], position[0] + len(kept))):
        first, last = kept[0], kept[-1]
        return PreluPlan(math.prod(x_shape[:first]), math.prod(x_shape[first : last + 1]), math.prod(x_shape[last + 1 :]))
    broadcast = [d for d in range(ndim) if d not in kept]
    return PreluPlan(math.prod(x_shape[d] for d in broadcast), math.prod(x_shape[d] for d in kept), 1, (*broadcast, *kept))


# Blocks per SM of the per-channel backward grids: three waves at full
# occupancy, so that a kernel whose activation takes more than 32 registers
# (6 or 4 resident blocks of 256 threads) still fills whole waves, or wastes
# a few percent in its last one; each block adds one row of partial sums.
REDUCE_BLOCKS_PER_SM = 3 * BLOCKS_PER_SM


@dataclass(frozen=True)
class PreluBackwardLaunch:
    block: tuple[int, int]  # (lanes, rows)
    grid: tuple[int, int]  # (channel groups, chunks)
    index: str
    layout: str = PLANES  # PLANES (inner > 1) or ROWS (inner == 1)
    vector: int = 1  # elements per access

    @property
    def chunks(self) -> int:
        return self.grid[1]


def prelu_backward_launch(plan: PreluPlan, sm_count: int, dtype=None, pointers=()) -> PreluBackwardLaunch:
    """Layout, vector width, block shape and grid of the per-channel backward kernels (cuda/prelu.cuh).

    inner > 1 (PLANES): a channel's elements are runs of consecutive
    addresses, so one lane and 256 rows read them coalesced, 16-byte vectors
    when inner is a multiple of the width and every pointer is 16-byte
    aligned.  inner == 1 (ROWS): consecutive channels are consecutive
    addresses, so lanes side by side take consecutive vectors of channels (up
    to 32 lanes, 256 when there is one row), 16-byte vectors when channels
    is a multiple of the width and the pointers are aligned (each thread's
    per-channel double sums live in shared memory: see reduce_rows in
    cuda/prelu.cuh).  Without ``dtype`` the scalar path.  chunks: blocks per channel group, enough for
    REDUCE_BLOCKS_PER_SM per SM; each adds one row of partial sums.
    """
    full = 1 if dtype is None else VECTOR_BYTES // itemsize(dtype)
    aligned = all(p % VECTOR_BYTES == 0 for p in pointers)
    if plan.inner > 1:
        layout, vector = PLANES, (full if aligned and plan.inner % full == 0 else 1)
        lanes, per_channel, groups = 1, plan.outer * plan.inner // vector, plan.channels
    else:
        layout, vector = ROWS, (full if aligned and plan.channels % full == 0 else 1)
        vectors = plan.channels // vector
        lanes = min(THREADS if plan.outer == 1 else 32, 1 << max(0, vectors - 1).bit_length())
        per_channel, groups = plan.outer, math.ceil(vectors / lanes)
    rows = THREADS // lanes
    chunks = max(1, min(sm_count * REDUCE_BLOCKS_PER_SM // groups, math.ceil(per_channel / rows)))
    n = plan.outer * plan.channels * plan.inner
    return PreluBackwardLaunch((lanes, rows), (groups, chunks), index_type(n, groups * chunks * THREADS), layout, vector)


# --------------------------------------------------------------------------- #
# Fused calls (cuda/bias_act.cuh, cuda/conv.cuh): bias_act kernels live in each
# activation's module (they are templates on its functor), im2col/col2im in
# the "conv" module of each dtype.
# --------------------------------------------------------------------------- #
def divider_dtype(index: str) -> np.dtype:
    """The C layout of Divider<Index> (cuda/divider.cuh)."""
    return np.dtype([("divisor", _index_dtype(index)), ("magic", np.uint32), ("shift", np.uint32)], align=True)


def _index_dtype(index: str) -> np.dtype:
    return np.dtype(np.int32 if index == "int" else np.int64)


def divider(divisor: int) -> tuple[int, int, int]:
    """(divisor, magic, shift) with n // divisor == (umulhi(n, magic) + n) >> shift for 0 <= n < 2**31.

    Granlund and Montgomery's round-up method, as PyTorch's IntDivider:
    shift = ceil(log2(divisor)), magic = 2**32 * (2**shift - divisor) // divisor + 1.
    """
    if not 1 <= divisor <= INT32_MAX:
        raise ValueError(f"divisor {divisor} outside [1, 2**31)")
    shift = (divisor - 1).bit_length()
    magic = (1 << 32) * ((1 << shift) - divisor) // divisor + 1
    return divisor, magic, shift


def _pack(struct_dtype: np.dtype, values: dict) -> np.void:
    """A structured scalar (a C struct passed by value) from field values; Divider fields take a divisor."""
    struct = np.zeros((), struct_dtype)
    for name, value in values.items():
        field = struct_dtype.fields[name][0]
        struct[name] = divider(value) if field.names else value
    return struct[()]


def channel_of(p: PreluPlan, index: str) -> np.void:
    """ChannelOf<Index> (cuda/prelu.cuh): the channel of a flat element of x seen as (outer, channels, inner).

    64-bit instantiations divide plainly (no magic numbers), also by sizes past 2**31.
    """
    dtype = np.dtype([("inner", divider_dtype(index)), ("channels", divider_dtype(index))], align=True)
    struct = np.zeros((), dtype)
    for name, value in (("inner", p.inner), ("channels", p.channels)):
        struct[name] = (value, 0, 0) if index != "int" and value > INT32_MAX else divider(value)
    return struct[()]


def bias_act_forward_kernel(kernel: str, dtype, layout: str, vector: int, index: str) -> str:
    functor = f"{FUNCTORS[kernel].template}<{compute_type(dtype)}>"
    return f"fastact::bias_act_forward<{layout}, {functor}, {STORAGE_TYPES[dtype_name(dtype)]}, {index}, {vector}>"


def bias_act_backward_kernel(kernel: str, dtype, launch: PreluBackwardLaunch) -> str:
    functor = f"{FUNCTORS[kernel].template}<{compute_type(dtype)}>"
    return (f"fastact::bias_act_backward<{launch.layout}, {functor}, {STORAGE_TYPES[dtype_name(dtype)]}, "
            f"{launch.index}, {launch.vector}>")


_WINDOW_DIVIDERS = ("batch", "channels", "height", "width", "out_height", "out_width", "kernel_height",
                    "kernel_width", "group_channels")
_WINDOW_STRIDES = ("stride_h", "stride_w")  # Divider<int> whatever the index type
_WINDOW_INDICES = ("dilation_h", "dilation_w", "pad_top", "pad_left",
                   "col_sample", "col_group", "col_channel", "col_tap", "col_pixel")


def conv_windows(index: str, **values: int) -> np.void:
    """ConvWindows<Index> (cuda/conv.cuh) from its field values by name."""
    dtype = np.dtype([(name, divider_dtype(index)) for name in _WINDOW_DIVIDERS]
                     + [(name, divider_dtype("int")) for name in _WINDOW_STRIDES]
                     + [(name, _index_dtype(index)) for name in _WINDOW_INDICES], align=True)
    return _pack(dtype, values)


def conv_kernel(direction: str, dtype, index: str, channels_last: bool) -> str:
    """im2col or col2im for one dtype, index type and data format."""
    return f"fastact::{direction}<{STORAGE_TYPES[dtype_name(dtype)]}, {index}, {'true' if channels_last else 'false'}>"


def fused_kernels(family: str, dtype) -> list[str]:
    """The fused-call instantiations of one module: bias_act for an activation, im2col/col2im for "conv"."""
    if family == "conv":
        return [conv_kernel(d, dtype, index, last) for index in INDEX_TYPES for d in ("im2col", "col2im")
                for last in (False, True)]
    if family not in ELEMENTWISE_KERNELS:
        return []
    names = []
    for index in INDEX_TYPES:
        names += [bias_act_forward_kernel(family, dtype, layout, vector, index)
                  for layout, vector in forward_layouts(dtype, index, one_channel=False)]
        names += [bias_act_backward_kernel(family, dtype, PreluBackwardLaunch((1, 1), (1, 1), index, layout, vector))
                  for layout, vector in backward_layouts(dtype)]
        names += [prelu_sum_kernel(index, out) for out in SUM_TYPES]
    return names
