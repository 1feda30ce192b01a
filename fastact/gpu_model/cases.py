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
    rowwise: dict = field(default_factory=dict)  # softmax: length, lanes, row items

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
            chosen, vector = plan.channel_layout(p, launch.vector, launch.index, 0, one_channel=True)
            cases.append(Case("prelu", layout, dtype, "forward", "prelu",
                              plan.prelu_forward_kernel(chosen, dt, vector, launch.index),
                              plan.channel_of(p, launch.index).tobytes(),
                              2 * dt.itemsize, launch.block, launch.grid / SM_COUNT, True))
            if p.scalar:
                continue
            back = plan.prelu_backward_launch(p, SM_COUNT, dt, [0, 0, 0])
            cases.append(Case("prelu", layout, dtype, "backward", "prelu", plan.prelu_backward_kernel(dt, back),
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
            chosen, vector = plan.channel_layout(p, launch.vector, launch.index, 0, one_channel=False)
            cases.append(Case(f"bias_act[{spec.name}]", "", dtype, "forward", spec.kernel,
                              plan.bias_act_forward_kernel(spec.kernel, dt, chosen, vector, launch.index),
                              functor.tobytes(),
                              2 * dt.itemsize, launch.block, launch.grid / SM_COUNT, True))
            back = plan.prelu_backward_launch(p, SM_COUNT, dt, [0, 0, 0])
            # Parameters: the functor (its alignment), then outer, channels, inner.
            align = functor.dtype.alignment
            index_align = 4 if back.index == "int" else 8
            offset = -(-len(functor.tobytes()) // index_align) * index_align
            leading = functor.tobytes().ljust(offset, b"\0") + _index_bytes(back.index, p.outer, p.channels, p.inner)
            del align
            cases.append(Case(f"bias_act[{spec.name}]", "", dtype, "backward", spec.kernel,
                              plan.bias_act_backward_kernel(spec.kernel, dt, back), leading, 3 * dt.itemsize,
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
                launch = plan.rowwise_launch(p, SM_COUNT, dt, [0, 0, 0])
                for direction, operands in (("forward", 2), ("backward", 3)):
                    cases.append(Case(spec.name, label, dtype, direction, spec.kernel,
                                      plan.rowwise_kernel(direction, spec.kernel, dt, launch),
                                      _index_bytes(launch.index, p.rows, p.length, p.inner), operands * dt.itemsize,
                                      launch.block, launch.grid / SM_COUNT, False,
                                      {"length": p.length, "lanes": p.lanes,
                                       "items": plan.row_items(p.lanes, launch.vector, dt)}))
    return cases


def all_cases(dtypes=SUPPORTED_DTYPES) -> list[Case]:
    return [*elementwise_cases(dtypes), *prelu_cases(dtypes), *bias_act_cases(dtypes), *rowwise_cases(dtypes)]
