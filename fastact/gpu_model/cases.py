"""What the model measures: one case per kernel launch fastact makes, enumerated from the registry and the launch plan.

Each case is the launch the CUDA backend makes for a large, 16-byte aligned
array (``SHAPE``), chosen by the backend's own functions in
``fastact/backends/kernels/plan.py`` (vector width, index type, grid) with
the parameters the registry packs (``plan.pack_functor``).  Activations come
from the registry at their default parameters, plus each boolean parameter
flipped (gelu's ``approximate``): parameters that select a code path inside
the kernel are read from the constant bank by the path walk (walk.py, values.py).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from .._arrays import SUPPORTED_DTYPES
from .._registry import REGISTRY, boolean
from ..backends.kernels import plan

# The array of every case: 32 x 256 x 64 x 64 = 2^25 elements (64 MiB in
# float16), NCHW; the per-channel cases broadcast along axis 1.
SHAPE = (32, 256, 64, 64)
# The SM count the launch plan sizes grids for (H100 and H200 SXM: 132).
SM_COUNT = 132
# The softmax cases, (label, shape, axis): contiguous rows with a warp per row
# (two passes of 4 chunks) and a block per row (two passes of 2 chunks), and
# softmax over the channels of NCHW SHAPE: the strided kernel, a thread per
# row, consecutive threads on consecutive addresses.
ROW_SHAPES = (
    ("rows of 1024", (math.prod(SHAPE) // 1024, 1024), 1),
    ("rows of 4096", (math.prod(SHAPE) // 4096, 4096), 1),
    (f"axis 1 of {'x'.join(map(str, SHAPE))}", SHAPE, 1),
)


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclass
class Case:
    kernel: str  # row label: activation name, "prelu", "bias_act[relu]", "softmax"
    variant: str  # parameters or layout that select the path ("" when default)
    dtype: str
    direction: str
    family: str  # compiled module (plan.MODULE_FAMILIES)
    name: str  # template instantiation (name expression)
    params: bytes  # the kernel's leading parameters as laid out in the constant bank
    bytes_per_element: int  # minimal device-memory traffic: inputs read once, output written once
    threads: int  # threads per block of the launch
    grid_blocks_per_sm: float  # the launch's grid over the SM count
    elementwise: bool  # an elementwise-engine loop (held to the invariants)
    # softmax: length, lanes (threads sharing a row), items (a lane's row elements per chunk),
    # columns (rows side by side in each thread's accesses: the strided vector kernel; 1 if absent)
    rowwise: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kernel}({self.variant})" if self.variant else self.kernel


def _variants(spec) -> list[tuple[str, dict]]:
    """(label, kernel params) for the defaults and each boolean parameter flipped."""
    defaults = [p.default for p in spec.params]
    out = [("", spec.kernel_params_of(*defaults))]
    for k, p in enumerate(spec.params):
        if p.check is boolean:
            values = list(defaults)
            values[k] = not p.default
            out.append((f"{p.name}={values[k]}", spec.kernel_params_of(*values)))
    return out


def _index_bytes(index: str, *values: int) -> bytes:
    return b"".join(struct.pack("<i" if index == "int" else "<q", v) for v in values)


def elementwise_cases(dtypes=SUPPORTED_DTYPES) -> list[Case]:
    n = math.prod(SHAPE)
    cases = []
    for spec in REGISTRY.values():
        if spec.form != "elementwise":
            continue
        for variant, params in _variants(spec):
            for dtype in dtypes:
                dt = numpy_dtype(dtype)
                launch = plan.elementwise_launch(n, dt, [0, 0, 0], SM_COUNT)
                packed = plan.pack_functor(spec.kernel, params, dt).tobytes()
                for direction, operands in (("forward", 2), ("backward", 3)):
                    cases.append(Case(spec.name, variant, dtype, direction, spec.kernel,
                                      plan.activation_kernel(direction, spec.kernel, dt, launch.vector, launch.index),
                                      packed, operands * dt.itemsize, launch.block, launch.grid / SM_COUNT, True))
    return cases


# The launch plan of the per-channel and row-wise kernels is being rewritten (issue 11): the new plan
# picks a memory layout per launch (plan.channel_layout), names the backward and row kernels from
# their launch object (which carries the layout and vector width, so it takes the dtype and the
# pointers) and sizes a row's chunk per vector (plan.row_items).  The four helpers below ask whichever
# plan is present, the new one when it has ``channel_layout`` / ``row_items``, so the model runs on
# both; the old branch of each can go once the new plan is on main.
_LAYOUT_PLAN = hasattr(plan, "channel_layout")
_ROW_VECTORS = hasattr(plan, "row_items")
_ALIGNED = [0, 0, 0]  # 16-byte aligned pointers (and per-channel table)


def _prelu_forward(p, dt, launch) -> tuple[str, bytes]:
    """(kernel, leading parameters) of prelu_forward for ``launch``."""
    if _LAYOUT_PLAN:
        layout, vector = plan.channel_layout(p, launch.vector, launch.index, 0, one_channel=True)
        return plan.prelu_forward_kernel(layout, dt, vector, launch.index), plan.channel_of(p, launch.index).tobytes()
    vector = plan.prelu_forward_vector(p.scalar, launch.index, launch.vector)
    return plan.prelu_forward_kernel(p.scalar, dt, vector, launch.index), b""  # first parameter: n


def _bias_act_forward(kernel: str, p, dt, launch) -> str:
    if _LAYOUT_PLAN:
        layout, vector = plan.channel_layout(p, launch.vector, launch.index, 0, one_channel=False)
        return plan.bias_act_forward_kernel(kernel, dt, layout, vector, launch.index)
    return plan.bias_act_forward_kernel(kernel, dt, plan.bias_act_forward_vector(launch.index, launch.vector),
                                        launch.index)


def _channel_backward(p, dt):
    """(launch, what prelu_backward_kernel / bias_act_backward_kernel take after the dtype)."""
    if _LAYOUT_PLAN:
        back = plan.prelu_backward_launch(p, SM_COUNT, dt, _ALIGNED)
        return back, back
    back = plan.prelu_backward_launch(p, SM_COUNT)
    return back, back.index


def _row_kernel(p, dt, direction: str, kernel: str):
    """(launch, kernel, elements per lane per chunk) of a row-wise op."""
    if _ROW_VECTORS:
        launch = plan.rowwise_launch(p, SM_COUNT, dt, _ALIGNED, direction)
        name = plan.rowwise_kernel(direction, kernel, dt, launch)
        if launch.lanes == 1 and launch.vector > 1:
            # The strided kernel's columns (rowwise_columns): column_split threads share a column of
            # `vector` rows, each reading column_steps elements of them per chunk.
            return launch, name, {"lanes": plan.column_split(direction), "items": plan.column_steps(direction, dt),
                                  "columns": launch.vector}
        return launch, name, plan.row_items(p.lanes, launch.vector, dt)
    launch = plan.rowwise_launch(p, SM_COUNT)
    return launch, plan.rowwise_kernel(direction, kernel, dt, p.lanes, launch.index), plan.ROW_ITEMS


def prelu_cases(dtypes=SUPPORTED_DTYPES) -> list[Case]:
    """Forward with a scalar, a per-channel NCHW (C,1,1) and a channels-last (C,) alpha; backward per channel."""
    n = math.prod(SHAPE)
    channels = SHAPE[1]
    layouts = (("scalar alpha", SHAPE, ()), ("alpha (C,1,1)", SHAPE, (channels, 1, 1)),
               ("alpha (C,), channels last", (*SHAPE[:1], *SHAPE[2:], channels), (channels,)))
    cases = []
    for dtype in dtypes:
        dt = numpy_dtype(dtype)
        for layout, shape, alpha_shape in layouts:
            p = plan.prelu_plan(shape, alpha_shape)
            launch = plan.elementwise_launch(n, dt, [0, 0], SM_COUNT)
            name, leading = _prelu_forward(p, dt, launch)
            cases.append(Case("prelu", layout, dtype, "forward", "prelu", name, leading,
                              2 * dt.itemsize, launch.block, launch.grid / SM_COUNT, True))
            if p.scalar:
                continue
            back, key = _channel_backward(p, dt)
            cases.append(Case("prelu", layout, dtype, "backward", "prelu", plan.prelu_backward_kernel(dt, key),
                              _index_bytes(back.index, p.outer, p.channels, p.inner), 3 * dt.itemsize,
                              math.prod(back.block), math.prod(back.grid) / SM_COUNT, False))
    return cases


def bias_act_cases(dtypes=SUPPORTED_DTYPES) -> list[Case]:
    """bias_act forward and backward of every activation (default parameters), bias along axis 1 of NCHW."""
    from ..backends.kernels.fused import channel_plan

    n = math.prod(SHAPE)
    p = channel_plan(SHAPE, 1)
    cases = []
    for spec in REGISTRY.values():
        if spec.form != "elementwise":
            continue
        params = spec.kernel_params_of(*[q.default for q in spec.params])
        for dtype in dtypes:
            dt = numpy_dtype(dtype)
            functor = plan.pack_functor(spec.kernel, params, dt)
            launch = plan.elementwise_launch(n, dt, [0, 0], SM_COUNT)
            cases.append(Case(f"bias_act[{spec.name}]", "", dtype, "forward", spec.kernel,
                              _bias_act_forward(spec.kernel, p, dt, launch), functor.tobytes(),
                              2 * dt.itemsize, launch.block, launch.grid / SM_COUNT, True))
            back, key = _channel_backward(p, dt)
            # Parameters: the functor (its alignment), then outer, channels, inner.
            align = functor.dtype.alignment
            index_align = 4 if back.index == "int" else 8
            offset = -(-len(functor.tobytes()) // index_align) * index_align
            leading = functor.tobytes().ljust(offset, b"\0") + _index_bytes(back.index, p.outer, p.channels, p.inner)
            del align
            cases.append(Case(f"bias_act[{spec.name}]", "", dtype, "backward", spec.kernel,
                              plan.bias_act_backward_kernel(spec.kernel, dt, key), leading, 3 * dt.itemsize,
                              math.prod(back.block), math.prod(back.grid) / SM_COUNT, False))
    return cases


def rowwise_cases(dtypes=SUPPORTED_DTYPES) -> list[Case]:
    """softmax and log_softmax over the rows of ROW_SHAPES, forward and backward."""
    cases = []
    for spec in REGISTRY.values():
        if spec.form != "rowwise":
            continue
        for label, shape, axis in ROW_SHAPES:
            p = plan.rowwise_plan(shape, axis, SM_COUNT)
            if p.move_axis:
                raise AssertionError(f"{label}: the plan moves the axis; a case must run its kernel in place")
            for dtype in dtypes:
                dt = numpy_dtype(dtype)
                for direction, operands in (("forward", 2), ("backward", 3)):
                    launch, name, items = _row_kernel(p, dt, direction, spec.kernel)
                    shape_of_work = items if isinstance(items, dict) else {"lanes": p.lanes, "items": items}
                    cases.append(Case(spec.name, label, dtype, direction, spec.kernel, name,
                                      _index_bytes(launch.index, p.rows, p.length, p.inner), operands * dt.itemsize,
                                      launch.block, launch.grid / SM_COUNT, False,
                                      {"length": p.length, **shape_of_work}))
    return cases


def all_cases(dtypes=SUPPORTED_DTYPES) -> list[Case]:
    return [*elementwise_cases(dtypes), *prelu_cases(dtypes), *bias_act_cases(dtypes), *rowwise_cases(dtypes)]
