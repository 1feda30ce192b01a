"""The geometry of a 2-D convolution: layouts, stride, padding, dilation, groups, sizes.

Parsed and checked once, in the dispatcher, from the user's arguments and the
shapes of ``x`` and ``w``; every backend then receives one frozen
:class:`Conv2dGeometry` and never looks at the raw arguments again.

Layouts (README.md, Fused calls): ``"NCHW"`` takes ``x`` as (N, C, H, W) and weights
(O, C/groups, kh, kw), as PyTorch; ``"NHWC"`` takes (N, H, W, C) and weights
(kh, kw, C/groups, O), as Keras/TensorFlow.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

DATA_FORMATS = ("NCHW", "NHWC")
_PADDING_FORMS = "'valid', 'same', an int, a pair (rows, columns), or ((top, bottom), (left, right))"


@dataclass(frozen=True)
class Conv2dGeometry:
    """A checked convolution: every size a backend needs, in layout-free terms.

    ``padding`` is ((top, bottom), (left, right)) in input pixels, already
    resolved from ``"same"``/``"valid"``.  ``out_size`` follows PyTorch and
    TensorFlow: ``(in + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1``.
    """

    data_format: str
    batch: int
    in_channels: int
    in_size: tuple[int, int]
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    groups: int

    @property
    def channel_axis(self) -> int:
        """Where the channels are in x, y and dy: 1 for NCHW, 3 (last) for NHWC."""
        return 1 if self.data_format == "NCHW" else 3

    @property
    def out_size(self) -> tuple[int, int]:
        return tuple(
            (n + before + after - d * (k - 1) - 1) // s + 1
            for n, (before, after), d, k, s in zip(self.in_size, self.padding, self.dilation, self.kernel_size, self.stride)
        )

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The shape of y (and dy) in this layout."""
        return self.layout_shape(self.out_channels, self.out_size)

    def layout_shape(self, channels: int, size: tuple[int, int]) -> tuple[int, ...]:
        if self.data_format == "NCHW":
            return (self.batch, channels, *size)
        return (self.batch, *size, channels)

    @property
    def is_pointwise(self) -> bool:
        """A 1x1, stride-1, unpadded convolution: a plain matrix product over the pixels."""
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == ((0, 0), (0, 0))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_pair(function: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a pair."""
    pair = (value, value) if _is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise TypeError(f"{function}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{function}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same": out = ceil(size / stride); the odd extra pixel goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _explicit_padding(function: str, padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """An int, a pair, or a pair of pairs, as ((top, bottom), (left, right))."""
    if _is_int(padding) or (isinstance(padding, (tuple, list)) and all(_is_int(p) for p in padding)):
        rows, columns = _int_pair(function, "padding", padding, 0)
        return (rows, rows), (columns, columns)
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        return _int_pair(function, "padding", padding[0], 0), _int_pair(function, "padding", padding[1], 0)
    raise TypeError(f"{function}: padding must be {_PADDING_FORMS}, got {padding!r}")


def resolve_padding(function: str, padding: Any, in_size, kernel_size, stride, dilation):
    """The user's padding as ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        form = padding.lower()
        if form == "valid":
            return (0, 0), (0, 0)
        if form == "same":
            return tuple(map(_same_padding, in_size, kernel_size, stride, dilation))
        raise ValueError(f"{function}: padding must be {_PADDING_FORMS}, got {padding!r}")
    return _explicit_padding(function, padding)


def _split_shapes(function: str, data_format: Any, x_shape: tuple, w_shape: tuple):
    """(batch, in channels, (H, W)), (out channels, in channels per group, (kh, kw)) for the layout."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"{function}: data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    if len(x_shape) != 4 or len(w_shape) != 4:
        expected = "x (N, C, H, W) and w (O, C/groups, kh, kw)" if data_format == "NCHW" else "x (N, H, W, C) and w (kh, kw, C/groups, O)"
        raise ValueError(f"{function}: {data_format} takes 4-d {expected}, got x {x_shape} and w {w_shape}")
    if data_format == "NCHW":
        (n, c, h, w), (o, cg, kh, kw) = x_shape, w_shape
    else:
        (n, h, w, c), (kh, kw, cg, o) = x_shape, w_shape
    return (n, c, (h, w)), (o, cg, (kh, kw))


def _check_groups(function: str, groups: Any, in_channels: int, out_channels: int, per_group: int, shapes: str) -> int:
    if not _is_int(groups):
        raise TypeError(f"{function}: groups must be an int, got {groups!r}")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{function}: groups={groups} must be >= 1 and divide both the input channels ({in_channels}) "
            f"and the output channels ({out_channels}); {shapes}"
        )
    if in_channels // groups != per_group:
        raise ValueError(
            f"{function}: w takes {per_group} input channel(s) per group, but x has {in_channels} channels "
            f"in {groups} group(s) ({in_channels // groups} per group); {shapes}"
        )
    return int(groups)


def conv2d_geometry(
    function: str, x_shape: tuple, w_shape: tuple, *, stride: Any, padding: Any, dilation: Any, groups: Any, data_format: Any
) -> Conv2dGeometry:
    """Check the user's convolution arguments against the shapes of x and w; ValueError/TypeError say what is wrong."""
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    (batch, channels, in_size), (out_channels, per_group, kernel_size) = _split_shapes(function, data_format, x_shape, w_shape)
    shapes = f"x {x_shape}, w {w_shape}, data_format {data_format!r}"
    groups = _check_groups(function, groups, channels, out_channels, per_group, shapes)
    if min(kernel_size) < 1:
        raise ValueError(f"{function}: the kernel must be at least 1x1; {shapes}")
    stride = _int_pair(function, "stride", stride, 1)
    dilation = _int_pair(function, "dilation", dilation, 1)
    pads = resolve_padding(function, padding, in_size, kernel_size, stride, dilation)
    geometry = Conv2dGeometry(
        data_format, batch, channels, in_size, out_channels, kernel_size, stride, dilation, pads, groups
    )
    if min(geometry.out_size) < 1:
        raise ValueError(
            f"{function}: the padded input {tuple(n + sum(p) for n, p in zip(in_size, pads))} is smaller than the "
            f"dilated kernel {tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel_size))}; {shapes}, padding {padding!r}"
        )
    return geometry
