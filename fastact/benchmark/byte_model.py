"""The byte model: how many bytes one call must move, the one place that decides it.

Each operand the call must read or write counts once, at its own dtype and
size.  Not counted: temporaries an implementation makes, the second pass a
naive expression makes over its temporaries, or the cache line a CPU reads
before it writes (write-allocate).  So GB/s is *useful* bytes per second, the
same count for fastact, the baselines and the rooflines, and a naive
expression that moves more memory shows up as a lower GB/s, not a higher one.
"""
from __future__ import annotations

# (form, direction) -> (operands read, operands written).  Names: x the forward
# input, y its output, dy/dx their gradients; alpha (PReLU), bias (bias_act),
# w and b (dense and conv2d) and their gradients dalpha, dbias, dw, db.
OPERANDS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("elementwise", "forward"): (("x",), ("y",)),
    ("elementwise", "backward"): (("dy", "x"), ("dx",)),
    ("prelu", "forward"): (("x", "alpha"), ("y",)),
    ("prelu", "backward"): (("dy", "x", "alpha"), ("dx", "dalpha")),
    ("bias_act", "forward"): (("x", "bias"), ("y",)),
    ("bias_act", "backward"): (("dy", "x", "bias"), ("dx", "dbias")),
    ("matmul", "forward"): (("x", "w", "b"), ("y",)),
    ("matmul", "backward"): (("dy", "x", "w", "b"), ("dx", "dw", "db")),
    # The rooflines: np.copyto moves what an elementwise forward moves, and
    # np.add(a, b, out=c) (on integer views, see devices.as_bits) what an elementwise backward moves.
    ("copy", "forward"): (("x",), ("y",)),
    ("add", "backward"): (("dy", "x"), ("dx",)),
}

# A gradient has the shape of what it is the gradient of; y has the output's.
_SAME_SIZE_AS = {"dx": "x", "dalpha": "alpha", "dbias": "bias", "dw": "w", "db": "b", "dy": "y"}


def bytes_moved(form: str, direction: str, nbytes: dict[str, int]) -> int:
    """Bytes one call of ``form`` in ``direction`` must read plus write.

    ``nbytes`` gives the size in bytes of the inputs and of ``y`` (the forward
    output); gradients take the size of what they are the gradient of.  For an
    elementwise activation on n elements of itemsize s this is 2*n*s forward
    (read x, write y) and 3*n*s backward (read dy and x, write dx); PReLU adds
    alpha (read) forward and alpha plus dalpha backward, bias_act the same for
    bias; dense and conv2d count x, w, b and y (and their gradients) once each.
    """
    reads, writes = OPERANDS[(form, direction)]
    return sum(nbytes[name] if name in nbytes else nbytes[_SAME_SIZE_AS[name]] for name in (*reads, *writes))
