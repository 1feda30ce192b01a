"""The rules of SPEC 2.4 that are not about values: dtypes, parameters, out, errors, array-likes."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import fastact
import support
from support import BACKENDS, backend_param

backend_params = [backend_param(b) for b in BACKENDS]
ELEMENTWISE = ["relu", "leaky_relu", "relu6", "thresholded_relu"]


def test_signatures_follow_the_spec():
    sig = lambda f: str(inspect.signature(f))  # noqa: E731
    assert sig(fastact.relu) == "(x, alpha=0.0, max_value=None, threshold=0.0, *, out=None)"
    assert sig(fastact.relu_backward) == "(dy, x, alpha=0.0, max_value=None, threshold=0.0, *, out=None)"
    assert sig(fastact.leaky_relu) == "(x, alpha=0.2, *, out=None)"
    assert sig(fastact.relu6) == "(x, *, out=None)"
    assert sig(fastact.thresholded_relu) == "(x, theta=1.0, *, out=None)"
    assert sig(fastact.prelu) == "(x, alpha, *, out=None)"
    assert sig(fastact.prelu_backward) == "(dy, x, alpha, *, out=None)"


def test_params_positional_or_keyword_python_and_numpy_scalars():
    x = np.array([-2.0, 1.0, 9.0])
    expected = fastact.relu(x, alpha=0.5, max_value=6.0, threshold=0.0)
    np.testing.assert_array_equal(fastact.relu(x, 0.5, 6.0, 0.0), expected)
    np.testing.assert_array_equal(fastact.relu(x, np.float32(0.5), np.int64(6), np.float16(0)), expected)
    np.testing.assert_array_equal(fastact.relu(x, alpha=1 / 2, max_value=6), expected)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.float128 if hasattr(np, "float128") else np.complex128])
def test_unsupported_dtypes_raise_type_error_naming_supported(dtype):
    x = np.zeros(3, dtype)
    with pytest.raises(TypeError, match="float16, bfloat16, float32, float64"):
        fastact.relu(x)
    with pytest.raises(TypeError, match="supported dtypes"):
        fastact.relu_backward(x, x)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"alpha": float("nan")}, ValueError, "alpha must be finite"),
        ({"alpha": float("inf")}, ValueError, "alpha must be finite"),
        ({"threshold": -float("inf")}, ValueError, "threshold must be finite"),
        ({"max_value": -1.0}, ValueError, "max_value must be >= 0"),
        ({"max_value": float("nan")}, ValueError, "max_value must be finite"),
        ({"alpha": "0.1"}, TypeError, "alpha must be a real number"),
        ({"alpha": 1j}, TypeError, "alpha must be a real number"),
        ({"alpha": True}, TypeError, "alpha must be a real number"),
        ({"alpha": np.array([0.1])}, TypeError, "alpha must be a real number"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    x = np.ones(3, np.float32)
    with pytest.raises(error, match=match):
        fastact.relu(x, **kwargs)
    with pytest.raises(error, match=match):
        fastact.relu_backward(x, x, **kwargs)


def test_negative_alpha_is_accepted():
    assert fastact.leaky_relu(np.array([-2.0]), -0.5)[0] == 1.0


def test_unknown_and_extra_arguments():
    x = np.ones(2)
    with pytest.raises(TypeError):
        fastact.relu(x, 0.0, None, 0.0, 5.0)
    with pytest.raises(TypeError):
        fastact.relu6(x, max_value=3)
    with pytest.raises(TypeError):
        fastact.leaky_relu(x, out=None, beta=1)


def test_backward_shape_and_dtype_mismatch_name_both():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"dy \(3, 2\) and x \(2, 3\)"):
        fastact.relu_backward(np.ones((3, 2), np.float32), x)
    with pytest.raises(TypeError, match="dy float64 and x float32"):
        fastact.relu_backward(np.ones((2, 3), np.float64), x)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_out_errors_leave_everything_untouched(name):
    f = getattr(fastact, name)
    x = np.linspace(-3, 8, 12, dtype=np.float32).reshape(3, 4)
    x_before = x.copy()
    cases = [
        (np.zeros((4, 3), np.float32), ValueError, "shape"),
        (np.zeros((3, 4), np.float64), TypeError, "dtype"),
        ([[0.0] * 4] * 3, TypeError, "numpy array"),
    ]
    readonly = np.zeros((3, 4), np.float32)
    readonly.flags.writeable = False
    cases.append((readonly, ValueError, "read-only"))
    for out, error, match in cases:
        out_before = np.array(out, copy=True)
        with pytest.raises(error, match=match):
            f(x, out=out)
        np.testing.assert_array_equal(np.asarray(out), out_before)
    np.testing.assert_array_equal(x, x_before)


def test_partial_overlap_is_refused_and_exact_aliasing_accepted():
    base = np.linspace(-1, 1, 20, dtype=np.float32)
    before = base.copy()
    with pytest.raises(ValueError, match="overlaps x in part"):
        fastact.relu(base[:10], out=base[5:15])
    np.testing.assert_array_equal(base, before)
    with pytest.raises(ValueError, match="overlaps dy in part"):
        fastact.relu_backward(base[2:12], base[10:20], out=base[:10])
    np.testing.assert_array_equal(base, before)
    # Interleaved views share a buffer but no element: fine.
    fastact.relu(base[::2], out=base[1::2])
    np.testing.assert_array_equal(base[1::2], np.maximum(before[::2], 0))
    # The same view is in-place.
    y = base.copy()
    assert fastact.leaky_relu(y, out=y) is y


def test_array_likes_and_scalars():
    assert isinstance(fastact.relu([-1.0, 2.0]), np.ndarray)
    np.testing.assert_array_equal(fastact.relu([-1, 2]), [0.0, 2.0])  # ints in a list -> float64, as np.exp does
    y = fastact.relu(-3.0)
    assert isinstance(y, np.ndarray) and y.shape == () and y == 0.0
    assert fastact.relu(np.float32(2.5)).dtype == np.float32
    dx = fastact.relu_backward([1.0, 1.0], [-1.0, 1.0])
    np.testing.assert_array_equal(dx, [0.0, 1.0])


def test_dtypes_preserved():
    for name in support.DTYPE_NAMES:
        dtype = support.dtype_of(name)
        x = np.array([-1.0, 0.5, 7.0]).astype(dtype)
        assert fastact.relu6(x).dtype == dtype
        assert fastact.relu6_backward(x, x).dtype == dtype


def test_activation_object():
    act = fastact.Activation("leaky_relu", alpha=0.05)
    assert act.name == "leaky_relu" and act.params == {"alpha": 0.05}
    np.testing.assert_allclose(act(np.array([-2.0, 3.0])), [-0.1, 3.0])
    np.testing.assert_allclose(act.backward(np.ones(2), np.array([-2.0, 3.0])), [0.05, 1.0])
    assert repr(act) == "Activation('leaky_relu', alpha=0.05)"
    assert fastact.Activation("relu6").kernel_params == {"alpha": 0.0, "max_value": 6.0, "threshold": 0.0}
    assert fastact.Activation.coerce("relu") == fastact.Activation("relu")
    with pytest.raises(ValueError, match="unknown activation 'rellu'"):
        fastact.Activation("rellu")
    with pytest.raises(TypeError, match="unknown parameter"):
        fastact.Activation("relu", slope=1)
    with pytest.raises(ValueError, match="alpha must be finite"):
        fastact.Activation("leaky_relu", alpha=float("nan"))


def test_activation_hash_is_remembered_but_not_pickled():
    import pickle
    import subprocess
    import sys

    act = fastact.Activation("leaky_relu", alpha=0.05)
    assert hash(act) == hash(fastact.Activation("leaky_relu", alpha=0.05)) == hash(act)
    assert "_hash" not in act.__getstate__()
    # unpickled in a process with another string hash seed: equal objects hash alike there
    code = ("import pickle, sys, fastact; a = pickle.loads(sys.stdin.buffer.read()); "
            "b = fastact.Activation('leaky_relu', alpha=0.05); assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1")
    subprocess.run([sys.executable, "-c", code], input=pickle.dumps(act), check=True, timeout=120,
                   env={**__import__("os").environ, "PYTHONHASHSEED": "123"})


def test_docstrings_carry_formula_and_example():
    for name in ELEMENTWISE + ["prelu"]:
        for f in (getattr(fastact, name), getattr(fastact, f"{name}_backward")):
            assert ">>>" in f.__doc__ and "Parameters" in f.__doc__


def test_docstring_examples_run():
    import doctest

    for name in ELEMENTWISE + ["prelu"]:
        f = getattr(fastact, name)
        finder = doctest.DocTestFinder()
        for test in finder.find(f, name, globs={"np": np, "fastact": fastact}):
            result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE).run(test)
            assert result.failed == 0, name
