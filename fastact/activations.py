"""The declarations of every activation: name, parameters, defaults, formulas.

This table is the one source of truth.  The public functions, ``Activation``,
the fused calls, the benchmark and the docs all read it.  The math itself
lives in exactly one place per backend, under the spec's ``kernel`` name:

* NumPy: ``fastact/backends/numpy/math.py``
* CUDA:  ``cuda/activations.cuh``

Adding an activation = one ``register(...)`` here + one NumPy function pair +
one CUDA functor + an oracle row in ``fastact/reference.py`` (CONTRIBUTING.md,
"Adding an activation").  The kernel names at the end of this file are
derived from the declarations; ``tests/test_registry_coverage.py`` checks
that every backend and the oracle implement each of them.
"""
from __future__ import annotations

from ._registry import (
    ActivationSpec, Param, array, axis_or_axes, boolean, kernel_names, optional_nonnegative, real, register, required,
)

# --------------------------------------------------------------------------- #
# The ReLU family: one kernel, "relu", with parameters (alpha, max_value,
# threshold) exactly as the Keras backend's relu(x, alpha, max_value, threshold).
# --------------------------------------------------------------------------- #


def _relu_kernel(alpha: float = 0.0, max_value: float | None = None, threshold: float = 0.0) -> dict:
    return {"alpha": alpha, "max_value": max_value, "threshold": threshold}


def _relu_derivative_from_output(alpha: float, max_value: float | None, threshold: float) -> bool:
    """Whether relu's derivative at y = relu(x) is its derivative at x (ActivationSpec.derivative_from_output).

    The derivative is alpha for x <= t and 1 above (uncapped); y keeps x's side of t when
    x <= t gives y = alpha (x - t) <= 0 <= t (alpha >= 0, t >= 0) and x > t gives y = x.
    A NaN x gives y = x, the same NaN.  A cap (max_value) breaks it: y = m for all x >= m.
    """
    return max_value is None and alpha >= 0.0 and threshold >= 0.0


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
        derivative_from_output=_relu_derivative_from_output,
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
        derivative_from_output=_relu_derivative_from_output,
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
        derivative_from_output=_relu_derivative_from_output,
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
        derivative_from_output=_relu_derivative_from_output,
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


# --------------------------------------------------------------------------- #
# The wider family.  Their stable forms are written down next to the NumPy
# math in fastact/backends/numpy/math.py, for the CUDA functors to mirror.
# --------------------------------------------------------------------------- #
_SMOOTH_NOTES = """Computed in stable forms (fastact/backends/numpy/math.py): no overflow and no
NaN for any finite x, the limits at +-inf (where PyTorch's formulas may give
NaN), NaN in x gives NaN in y and dx."""


def _no_params() -> dict:
    return {}


def _parameterless(name: str, summary: str, formula: str, derivative: str, example: str, **more) -> ActivationSpec:
    """The declaration of an activation without parameters whose kernel has its name."""
    more.setdefault("notes", _SMOOTH_NOTES)
    return ActivationSpec(
        name=name, summary=summary, params=(), formula=formula, derivative=derivative,
        kernel=name, kernel_params=_no_params, example=example, **more,
    )


def _rowwise(name: str, summary: str, formula: str, derivative: str, example: str) -> ActivationSpec:
    """The declaration of a row-wise activation (softmax): one ``axis`` parameter, kernel of its name."""
    return ActivationSpec(
        name=name, summary=summary, params=(_AXIS,), formula=formula, derivative=derivative,
        kernel=name, kernel_params=lambda axis: {"axis": axis}, form="rowwise", notes=_ROWWISE_NOTES,
        example=example,
    )


def _elu_kernel(alpha: float = 1.0, scale: float = 1.0) -> dict:
    return {"alpha": alpha, "scale": scale}


ELU = register(
    ActivationSpec(
        name="elu",
        summary="Exponential linear unit (Keras, PyTorch).",
        params=(Param("alpha", 1.0, real, "value approached as x -> -inf is -alpha (may be negative)."),),
        formula="x if x > 0 else alpha * (exp(x) - 1)",
        derivative="1 if x > 0 else alpha * exp(x)  (alpha at x == 0)",
        kernel="elu",
        kernel_params=lambda alpha: _elu_kernel(alpha=alpha),
        notes=_SMOOTH_NOTES,
        example=(
            "    >>> fastact.elu(np.array([-1.0, 0.0, 2.0]))\n"
            "    array([-0.63212056,  0.        ,  2.        ])"
        ),
    )
)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

SELU = register(
    ActivationSpec(
        name="selu",
        summary="Scaled ELU (self-normalizing networks): scale * elu(x, alpha), constants of Klambauer et al.",
        params=(),
        formula=f"scale * (x if x > 0 else alpha * (exp(x) - 1)),  scale = {SELU_SCALE!r}, alpha = {SELU_ALPHA!r}",
        derivative="scale if x > 0 else scale * alpha * exp(x)  (scale * alpha at x == 0, as PyTorch)",
        kernel="elu",
        kernel_params=lambda: _elu_kernel(alpha=SELU_ALPHA, scale=SELU_SCALE),
        notes=_SMOOTH_NOTES,
        example=(
            "    >>> fastact.selu(np.array([-1.0, 0.0, 2.0]))\n"
            "    array([-1.11133074,  0.        ,  2.10140197])"
        ),
    )
)

GELU = register(
    ActivationSpec(
        name="gelu",
        summary="Gaussian error linear unit: x * Phi(x), exact (erf) by default, the tanh form when approximate.",
        params=(Param("approximate", False, boolean, "use the tanh approximation (PyTorch approximate='tanh')."),),
        formula=(
            "0.5 * x * (1 + erf(x / sqrt(2)))                                   (approximate=False)\n"
            "      0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))   (approximate=True)"
        ),
        derivative=(
            "Phi(x) + x * exp(-x**2 / 2) / sqrt(2 pi)   (exact);\n"
            "      the derivative of the tanh form when approximate"
        ),
        kernel="gelu",
        kernel_params=lambda approximate: {"approximate": approximate},
        notes=_SMOOTH_NOTES + """
erf is fastact's own (NumPy has none; scipy is not a dependency): a Chebyshev
series for erfc with relative error below 1e-16 in float64 and 1e-8 in float32.""",
        example=(
            "    >>> fastact.gelu(np.array([-1.0, 0.0, 2.0]))\n"
            "    array([-0.15865525,  0.        ,  1.95449974])"
        ),
    )
)

SILU = register(
    _parameterless(
        "silu",
        "Sigmoid linear unit, also called swish: x * sigmoid(x).",
        formula="x * sigmoid(x) = x / (1 + exp(-x))",
        derivative="sigmoid(x) * (1 + x * (1 - sigmoid(x)))",
        example=(
            "    >>> fastact.silu(np.array([-1.0, 0.0, 2.0]))\n"
            "    array([-0.26894142,  0.        ,  1.76159416])"
        ),
        aliases=("swish",),
    )
)

SOFTPLUS = register(
    _parameterless(
        "softplus",
        "Softplus, a smooth ReLU: log(1 + exp(x)), without overflow.",
        formula="log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))",
        derivative="sigmoid(x)",
        example=(
            "    >>> fastact.softplus(np.array([-1.0, 0.0, 1e4]))\n"
            "    array([3.13261688e-01, 6.93147181e-01, 1.00000000e+04])"
        ),
    )
)

SIGMOID = register(
    _parameterless(
        "sigmoid",
        "The logistic function 1 / (1 + exp(-x)).",
        formula="1 / (1 + exp(-x))",
        derivative="sigmoid(x) * (1 - sigmoid(x)) = sigmoid(x) * sigmoid(-x)",
        example=(
            "    >>> fastact.sigmoid(np.array([-1.0, 0.0, 2.0]))\n"
            "    array([0.26894142, 0.5       , 0.88079708])"
        ),
    )
)

TANH = register(
    _parameterless(
        "tanh",
        "The hyperbolic tangent.",
        formula="tanh(x)",
        derivative="1 - tanh(x)**2 = 1 / cosh(x)**2",
        example=(
            "    >>> fastact.tanh_backward(np.ones(3), np.array([-1.0, 0.0, 2.0]))\n"
            "    array([0.41997434, 1.        , 0.07065082])"
        ),
    )
)

HARD_SIGMOID = register(
    _parameterless(
        "hard_sigmoid",
        "Piecewise-linear sigmoid: relu6(x + 3) / 6 (Keras 3, PyTorch hardsigmoid).",
        formula="min(max(x + 3, 0), 6) / 6",
        derivative="1/6 where -3 < x < 3, else 0  (0 at x == -3 and at x == 3, as PyTorch)",
        example=(
            "    >>> fastact.hard_sigmoid(np.array([-4.0, 0.0, 1.5]))\n"
            "    array([0.  , 0.5 , 0.75])"
        ),
    )
)

HARD_SILU = register(
    _parameterless(
        "hard_silu",
        "Hard SiLU, also called hard_swish: x * hard_sigmoid(x) (Keras 3, PyTorch hardswish).",
        formula="x * min(max(x + 3, 0), 6) / 6",
        derivative=(
            "0 if x <= -3; x / 3 + 1/2 if -3 < x < 3; 1 if x >= 3\n"
            "      (as PyTorch 2.13's hardswish_backward: 0 at x == -3 and 1 at x == 3)"
        ),
        example=(
            "    >>> fastact.hard_silu(np.array([-4.0, -1.0, 4.0]))\n"
            "    array([-0.        , -0.33333333,  4.        ])"
        ),
        aliases=("hard_swish",),
        notes="hard_silu(-inf) is 0 (the limit), where PyTorch's formula gives NaN.",
    )
)

MISH = register(
    _parameterless(
        "mish",
        "Mish: x * tanh(softplus(x)).",
        formula="x * tanh(log(1 + exp(x)))",
        derivative="tanh(softplus(x)) + x * sigmoid(x) * (1 - tanh(softplus(x))**2)",
        example=(
            "    >>> fastact.mish(np.array([-1.0, 0.0, 2.0]))\n"
            "    array([-0.30340146,  0.        ,  1.94395896])"
        ),
    )
)

_ROWWISE_NOTES = """Works on whole rows along ``axis`` (any axis; a 0-d x is one element); with a
tuple of axes, the elements along all of them form one row (``axis=(1, 2)`` of
an (N, H, W) array: one row of H * W per sample).  Stable
for logits of any finite size.  As in PyTorch, a row holding NaN or +inf, or
only -inf, gives NaN for the whole row; -inf alone gives 0 (log: -inf)."""

_AXIS = Param(
    "axis", -1, axis_or_axes,
    "the axis along which the rows run (negative counts from the end), or a tuple of axes\n"
    "          that together form one row (as Keras: axis=(1, 2) normalizes over both).",
)

SOFTMAX = register(
    _rowwise(
        "softmax",
        "Softmax along an axis: exp(x) / sum(exp(x)), computed as exp(x - max) / sum(exp(x - max)).",
        formula="exp(x - max(x)) / sum(exp(x - max(x)), axis)",
        derivative="dx = y * (dy - sum(dy * y, axis)) with y = softmax(x, axis)  (not elementwise)",
        example=(
            "    >>> fastact.softmax(np.array([[1.0, 2.0, 3.0], [1e4, 0.0, -1e4]]))\n"
            "    array([[0.09003057, 0.24472847, 0.66524096],\n"
            "           [1.        , 0.        , 0.        ]])"
        ),
    )
)

LOG_SOFTMAX = register(
    _rowwise(
        "log_softmax",
        "Log-softmax along an axis: x - log(sum(exp(x))), computed around the row's max.",
        formula="(x - max(x)) - log(sum(exp(x - max(x)), axis))",
        derivative="dx = dy - softmax(x, axis) * sum(dy, axis)  (not elementwise)",
        example=(
            "    >>> fastact.log_softmax(np.array([1.0, 2.0, 3.0]))\n"
            "    array([-2.40760596, -1.40760596, -0.40760596])"
        ),
    )
)

LINEAR = register(
    _parameterless(
        "linear",
        "The identity (Keras 'linear'): the activation of a layer without one.",
        formula="x",
        derivative="1  (dx = dy, NaN where x is NaN)",
        example=(
            "    >>> fastact.linear(np.array([-1.0, 2.0]))\n"
            "    array([-1.,  2.])"
        ),
        notes="dx = dy, NaN where x is NaN (NaN in, NaN out: README.md, Conventions), although the derivative is 1.",
        derivative_from_output=lambda: True,  # y is x
    )
)


# --------------------------------------------------------------------------- #
# The kernels every backend implements, by form, derived from the
# declarations above (a kernel may serve several activations).
# --------------------------------------------------------------------------- #
ELEMENTWISE_KERNELS = kernel_names("elementwise")
ROWWISE_KERNELS = kernel_names("rowwise")
