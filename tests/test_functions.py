"""The public functions are written out in fastact/functions.py; their signatures and docstrings must
be the registry's (names, defaults, order), so that the two cannot drift apart."""
from __future__ import annotations

import inspect

import pytest

import fastact
from fastact import functions
from fastact._registry import REGISTRY

P = inspect.Parameter


def _expected(spec, arrays: tuple[str, ...]) -> inspect.Signature:
    return inspect.Signature([
        *(P(name, P.POSITIONAL_OR_KEYWORD) for name in arrays),
        *(P(p.name, P.POSITIONAL_OR_KEYWORD, default=P.empty if p.required else p.default) for p in spec.params),
        P("out", P.KEYWORD_ONLY, default=None),
    ])


def _pairs():
    for spec in REGISTRY.values():
        for name in (spec.name, *spec.aliases):
            yield spec, name


@pytest.mark.parametrize("spec,name", list(_pairs()), ids=[name for _, name in _pairs()])
def test_signature_and_docstring_are_the_registry_s(spec, name):
    for function_name, arrays, direction in ((name, ("x",), "forward"), (f"{name}_backward", ("dy", "x"), "backward")):
        function = getattr(functions, function_name)
        expected = _expected(spec, arrays)
        signature = inspect.signature(function)
        assert signature == expected, function_name
        # == compares defaults by value (0 == 0.0 == False); the reprs also tell their types apart.
        assert str(signature) == str(expected), function_name
        assert getattr(fastact, function_name) is function
        assert function_name in fastact.__all__
        if spec.form != "prelu":
            assert function.__doc__ == spec.docstring(direction), function_name


def test_no_function_without_a_declaration():
    declared = {f"{name}{suffix}" for _, name in _pairs() for suffix in ("", "_backward")}
    assert set(functions.__all__) - {"Activation"} == declared
