"""The declarations of every activation: name, parameters, defaults, formulas.

This table is the one source of truth.  The public functions, ``Activation``,
the fused calls, the benchmark and the docs all read it.  The math itself
lives in exactly one place per backend, under the spec's ``kernel`` name:

* NumPy: ``fastact/backends/numpy_math.py``
* CUDA:  ``cuda/activations.cuh``

Adding an activation = one ``register(...)`` here + one NumPy function pair +
one CUDA functor + an oracle row in ``tests/oracle.py``.
"""
from __future__ import annotations

from ._registry import ActivationSpec, Param, array, optional_nonnegative, real, register, required

# --------------------------------------------------------------------------- #
# The ReLU family: one kernel, "relu", with parameters (alpha, max_value,
# threshold) exactly as the Keras backend's relu(x, alpha, max_value, threshold).
# --------------------------------------------------------------------------- #


def _relu_kernel(alpha: float = 0.0, max_value: float | None = None, threshold: float = 0.0) -> dict:
    return {"alpha": alpha, "max_value": max_value, "threshold": threshold}


_RELU_NOTES = """Conventions (the same on every backend):
    * x <= threshold gives alpha * (x - threshold), exactly 0 when alpha == 0,
      also for x = -inf; with a negative threshold, values in (threshold, 0)
      pass through unchanged when max_value is None.
    * At a kink the left derivative is used (TensorFlow and PyTorch do the
      same): the derivative at x == threshold is alpha, and with max_value
      given it is 0 at x == 0 and at x == max_value.
    * NaN in x gives NaN in y and in dx.  dx = dy * derivative, so a NaN or
      inf in dy where the derivative is 0 gives NaN (IEEE 0 * NaN), unlike
      PyTorch's select-based threshold_backward, which gives 0 there."""

RELU = register(
    ActivationSpec(
        name="relu",
        summary="Rectified linear unit with Keras' options: leaky slope, cap and threshold.",
        params=(
            Param("alpha", 0.0, real, "slope below the threshold (may be negative)."),
            Param("max_value", None, optional_nonnegative, "cap (>= 0), or None for no cap."),
            Param("threshold", 0.0, real, "where the function switches from the slope to the identity."),
        ),
        formula=(
            "alpha * (x - threshold)  if x <= threshold\n"
            "      x                       if x > threshold and max_value is None\n"
            "      min(max(x, 0), max_value)  if x > threshold otherwise"
        ),
        derivative=(
            "alpha if x <= threshold; 1 if x > threshold and max_value is None;\n"
            "      1 where 0 < x < max_value (else 0) if x > threshold and max_value is given"
        ),
        kernel="relu",
        kernel_params=_relu_kernel,
        notes=_RELU_NOTES,
        example=(
            "    >>> import numpy as np, fastact\n"
            "    >>> fastact.relu(np.array([-2.0, 0.5, 8.0]), max_value=6.0)\n"
            "    array([0. , 0.5, 6. ])"
        ),
    )
)

LEAKY_RELU = register(
    ActivationSpec(
        name="leaky_relu",
        summary="Leaky ReLU: relu(x, alpha=alpha). Default slope 0.2 as tf.nn.leaky_relu and Keras.",
        params=(Param("alpha", 0.2, real, "slope for x <= 0 (may be negative or > 1)."),),
        formula="x if x > 0 else alpha * x",
        derivative="1 if x > 0 else alpha  (alpha at x == 0)",
        kernel="relu",
        kernel_params=lambda alpha: _relu_kernel(alpha=alpha),
        notes=_RELU_NOTES,
        example=(
            "    >>> fastact.leaky_relu(np.array([-2.0, 3.0]), 0.1)\n"
            "    array([-0.2,  3. ])"
        ),
    )
)

RELU6 = register(
    ActivationSpec(
        name="relu6",
        summary="ReLU capped at 6: relu(x, max_value=6).",
        params=(),
        formula="min(max(x, 0), 6)",
        derivative="1 where 0 < x < 6, else 0 (0 at x == 0 and at x == 6)",
        kernel="relu",
        kernel_params=lambda: _relu_kernel(max_value=6.0),
        notes=_RELU_NOTES,
        example=(
            "    >>> fastact.relu6(np.array([-1.0, 3.0, 7.0]))\n"
            "    array([0., 3., 6.])"
        ),
    )
)

THRESHOLDED_RELU = register(
    ActivationSpec(
        name="thresholded_relu",
        summary="Thresholded ReLU (Keras ThresholdedReLU): relu(x, threshold=theta).",
        params=(Param("theta", 1.0, real, "values at or below theta become 0."),),
        formula="x if x > theta else 0",
        derivative="1 if x > theta else 0  (0 at x == theta)",
        kernel="relu",
        kernel_params=lambda theta: _relu_kernel(threshold=theta),
        notes=_RELU_NOTES,
        example=(
            "    >>> fastact.thresholded_relu(np.array([0.5, 1.0, 2.0]))\n"
            "    array([0., 0., 2.])"
        ),
    )
)

PRELU = register(
    ActivationSpec(
        name="prelu",
        summary="Parametric ReLU with a learned slope array alpha, broadcast against x (NumPy rules).",
        params=(required("alpha", array, "slopes, broadcastable to x: a scalar, (C, 1, 1) for NCHW, (C,) for channels-last, or x's shape."),),
        formula="x if x > 0 else alpha * x",
        derivative="dx = dy if x > 0 else alpha * dy;  dalpha = sum over broadcast dims of (0 if x > 0 else x * dy)",
        kernel="prelu",
        kernel_params=lambda alpha: {"alpha": alpha},
        form="prelu",
        notes=(
            "alpha is data, not a parameter: it is not checked for finiteness (a NaN slope gives NaN\n"
            "where it is used), and it follows the formula literally, so alpha == 0 at x = -inf gives\n"
            "NaN (0 * -inf), as PyTorch's prelu does.  alpha may have any supported float dtype; the\n"
            "math runs in x's compute type and dalpha has alpha's shape and dtype.  alpha must\n"
            "broadcast to x's shape without growing it."
        ),
        example=(
            "    >>> x = np.array([[-1.0, 2.0], [-3.0, 4.0]])\n"
            "    >>> fastact.prelu(x, np.array([0.1, 0.5]))\n"
            "    array([[-0.1,  2. ],\n"
            "           [-0.3,  4. ]])"
        ),
    )
)
