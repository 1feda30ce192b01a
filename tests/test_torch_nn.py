"""fastact.torch.nn and fastact.torch.patch against torch.nn: same results, same parameters, same training.

Skipped without torch.  Every module is compared with its torch.nn twin (forward, and the
gradients of the input and of its parameters), torch's defaults and a non-default argument;
fused Linear/Conv2d with torch's layer followed by the activation; a patched CNN trains like
the stock one; and ``torch.compile(fullgraph=True)`` takes a patched model without a graph break.
"""
from __future__ import annotations

import copy

import pytest

import fastact
import support

torch = pytest.importorskip("torch")
import fastact.torch as ft  # noqa: E402
from fastact.torch import nn as ftnn  # noqa: E402

F = torch.nn.functional

# (module name in both torch.nn and fastact.torch.nn, constructor arguments)
MODULE_CASES = [
    ("ReLU", {}), ("ReLU", {"inplace": True}), ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.2}),
    ("ReLU6", {}), ("ELU", {}), ("ELU", {"alpha": 0.5}), ("SELU", {}), ("GELU", {}),
    ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("Softplus", {}), ("Mish", {}), ("Hardsigmoid", {}),
    ("Hardswish", {}), ("Sigmoid", {}), ("Tanh", {}), ("Softmax", {"dim": 1}), ("LogSoftmax", {"dim": -1}),
    ("PReLU", {}), ("PReLU", {"num_parameters": 3, "init": 0.1}),
]
MODULE_IDS = [f"{name}-{kwargs}" for name, kwargs in MODULE_CASES]
# float64 agrees to rounding; float32 to torch.testing's float32 defaults.
TOLERANCE = {torch.float64: {"rtol": 1e-12, "atol": 1e-13}, torch.float32: {}}


def _input(shape=(2, 3, 5, 5), dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * 3).to(dtype)


def _compare(ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor, tolerance: dict) -> None:
    """Forward and backward (input and parameter gradients) of two modules on the same input."""
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    # clone(): torch's inplace modules may not write into a leaf that requires grad.
    ya, yb = ours(xa.clone()), theirs(xb.clone())
    torch.testing.assert_close(ya, yb, **tolerance)
    dy = _input(ya.shape, ya.dtype, seed=1)
    ya.backward(dy)
    yb.backward(dy)
    torch.testing.assert_close(xa.grad, xb.grad, **tolerance)
    for (name, pa), (_, pb) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, **tolerance, msg=lambda m: f"{name}.grad: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name,kwargs", MODULE_CASES, ids=MODULE_IDS)
def test_module_matches_its_torch_twin(name, kwargs, dtype):
    theirs = getattr(torch.nn, name)(**kwargs).to(dtype)
    ours = getattr(ftnn, name)(**kwargs).to(dtype)
    assert isinstance(ours, getattr(torch.nn, name))
    assert repr(ours) == repr(theirs)
    ours.load_state_dict(theirs.state_dict())
    tolerance = TOLERANCE[dtype]
    if name == "Hardsigmoid":  # torch's hardsigmoid_backward multiplies by 1.0f / 6.0f, float32 also in float64
        tolerance = TOLERANCE[torch.float32]
    _compare(ours, theirs, _input(dtype=dtype), tolerance)


def test_prelu_on_other_ranks():
    for shape, parameters in (((4, 3), 3), ((2, 3, 7), 3), ((5,), 1), ((), 1)):
        theirs = torch.nn.PReLU(parameters, init=0.3).double()
        ours = ftnn.PReLU(parameters, init=0.3).double()
        _compare(ours, theirs, _input(shape), TOLERANCE[torch.float64])


def test_softmax_without_dim_follows_torchs_legacy_rule():
    for shape in ((4,), (2, 5), (2, 3, 4), (2, 3, 4, 5)):
        x = _input(shape)
        with pytest.warns(UserWarning, match="Implicit dimension"):
            ours = ftnn.Softmax()(x)
        with pytest.warns(UserWarning, match="Implicit dimension"):
            theirs = torch.nn.Softmax()(x)
        torch.testing.assert_close(ours, theirs)


def test_keras_relu_module():
    module = ftnn.Relu(alpha=0.1, max_value=6.0, threshold=0.5)
    x = _input()
    torch.testing.assert_close(module(x), ft.relu(x, 0.1, 6.0, 0.5))
    assert module.fastact_activation() == fastact.Activation("relu", alpha=0.1, max_value=6.0, threshold=0.5)
    with pytest.raises(ValueError, match="max_value must be >= 0"):
        ftnn.Relu(max_value=-1.0)


def test_arguments_fastact_lacks_are_refused_clearly():
    with pytest.raises(ValueError, match="beta=2.0 is not supported.*torch.nn.Softplus"):
        ftnn.Softplus(beta=2.0)
    with pytest.raises(ValueError, match="threshold=10.0 is not supported"):
        ftnn.Softplus(threshold=10.0)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        ftnn.GELU(approximate="erf")
    with pytest.raises(ValueError, match="padding_mode='reflect' is not supported"):
        ftnn.Conv2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="not elementwise"):
        ftnn.Linear(3, 4, activation="softmax")
    module = ftnn.Softplus()
    module.beta = 3.0  # changed after construction: refused when used, not computed wrongly
    with pytest.raises(ValueError, match="beta=3.0"):
        module(_input())


# --------------------------------------------------------------------------- #
# Fused Linear and Conv2d
# --------------------------------------------------------------------------- #
ACT = fastact.Activation("leaky_relu", alpha=0.05)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5), (5,)])
def test_fused_linear_matches_torch(shape, bias):
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 4, bias=bias), torch.nn.LeakyReLU(0.05)).double()
    ours = ftnn.Linear(5, 4, bias=bias, activation=ACT).double()
    ours.load_state_dict(theirs[0].state_dict())
    _compare(ours, theirs, _input(shape), TOLERANCE[torch.float64])


CONV_OPTIONS = [
    {}, {"padding": 1, "stride": 2}, {"padding": "same", "dilation": 2}, {"groups": 3, "padding": (1, 0)},
    {"bias": False, "kernel_size": (1, 1)},
]


@pytest.mark.parametrize("options", CONV_OPTIONS, ids=[str(o) for o in CONV_OPTIONS])
def test_fused_conv2d_matches_torch(options):
    options = {"kernel_size": 3, **options}
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 6, **options), torch.nn.LeakyReLU(0.05)).double()
    ours = ftnn.Conv2d(3, 6, **options, activation=ACT).double()
    ours.load_state_dict(theirs[0].state_dict())
    _compare(ours, theirs, _input((2, 3, 7, 8)), TOLERANCE[torch.float64])
    _compare(ours, theirs, _input((3, 7, 8)), TOLERANCE[torch.float64])  # unbatched


def _graph(node) -> list:
    """The autograd graph under ``node``, as the names of its nodes, depth first."""
    if node is None:
        return []
    return [type(node).__name__, [_graph(child) for child, _ in node.next_functions]]


@pytest.mark.parametrize("layer", ["Linear", "Conv2d"])
def test_fused_layers_on_float_cpu_tensors_are_torchs_layer_then_fastacts_activation(layer):
    # Under the activation's node, the autograd graph of torch's own layer: its product or convolution
    # with the bias, the weight taken as is (no transposes of its own), fastact's backward on top.
    torch.manual_seed(0)
    theirs = torch.nn.Linear(5, 4) if layer == "Linear" else torch.nn.Conv2d(3, 4, 3, padding="same")
    ours = getattr(ftnn, layer).from_torch(copy.deepcopy(theirs), activation=ACT)
    x = _input((2, 5) if layer == "Linear" else (2, 3, 6, 6), torch.float32).requires_grad_(True)
    ours(x)  # (a first call loads the cpu backend, through the activation's op)
    y = ours(x)
    assert type(y.grad_fn).__name__ == "_ActivationAfterPrimitiveBackward"
    assert [_graph(child) for child, _ in y.grad_fn.next_functions][0] == _graph(theirs(x).grad_fn)
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(theirs(x), 0.05))
    with pytest.raises(TypeError, match="same dtype"):  # another dtype than the layer's: the fused call's error
        ours(x.double())


def test_fused_layers_default_to_the_identity_and_share_torchs_initialization():
    torch.manual_seed(1)
    theirs = torch.nn.Conv2d(2, 3, 3)
    torch.manual_seed(1)
    ours = ftnn.Conv2d(2, 3, 3)
    assert ours.activation == "linear"
    torch.testing.assert_close(ours.weight, theirs.weight)
    x = _input((1, 2, 5, 5), torch.float32)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.manual_seed(2)
    linear = torch.nn.Linear(4, 3)
    torch.manual_seed(2)
    torch.testing.assert_close(ftnn.Linear(4, 3).weight, linear.weight)


# --------------------------------------------------------------------------- #
# patch
# --------------------------------------------------------------------------- #
def article_cnn() -> torch.nn.Sequential:
    """The Keras article's CNN, written in PyTorch: Leaky ReLU as its own layer after each convolution."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.LeakyReLU(0.05), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.LeakyReLU(0.05), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 5 * 5, 90), torch.nn.LeakyReLU(0.05), torch.nn.Linear(90, 10),
    )


def test_patch_fuses_the_articles_cnn_in_place():
    torch.manual_seed(0)
    model = article_cnn()
    x = _input((4, 1, 28, 28), torch.float32)
    before, state = model(x), copy.deepcopy(model.state_dict())
    weight = model[0].weight
    replaced = ft.patch(model)
    assert sorted(replaced) == ["0", "1", "3", "4", "7", "8"]
    assert isinstance(replaced["1"], torch.nn.LeakyReLU) and type(replaced["0"]) is torch.nn.Conv2d
    assert type(model[0]) is ftnn.Conv2d and model[0].activation == ACT and type(model[1]) is torch.nn.Identity
    assert model[0].weight is weight  # the same Parameter: an optimizer built before keeps training it
    torch.testing.assert_close(model(x), before)
    assert model.state_dict().keys() == state.keys()
    stock = article_cnn()
    stock.load_state_dict(model.state_dict())  # and back
    torch.testing.assert_close(stock(x), before)
    assert ft.patch(model) == {}


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
        self.act = torch.nn.GELU(approximate="tanh")
        self.soft = torch.nn.Softplus(beta=2.0)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5), torch.nn.SiLU(),
                                        torch.nn.Linear(5, 3), torch.nn.LogSoftmax(dim=1))
        self.gate = torch.nn.PReLU(4)

    def forward(self, x):
        return self.head(self.soft(self.gate(self.act(self.conv(x)))))


def test_patch_nested_modules_and_what_it_leaves():
    torch.manual_seed(0)
    model = _Block().double()
    x = _input((2, 3, 6, 6))
    before = model(x)
    replaced = ft.patch(model)
    assert sorted(replaced) == ["act", "gate", "head.1", "head.2", "head.4"]
    assert type(model.conv) is torch.nn.Conv2d  # padding_mode="reflect": torch's stays
    assert type(model.soft) is torch.nn.Softplus  # beta=2: torch's stays
    assert type(model.act) is ftnn.GELU and model.act.approximate == "tanh"
    assert type(model.head[1]) is ftnn.Linear and model.head[1].activation == fastact.Activation("silu")
    torch.testing.assert_close(model(x), before, **TOLERANCE[torch.float64])


def test_patch_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ft.patch([torch.nn.ReLU()])


def _train(model: torch.nn.Module, steps: int, dtype: torch.dtype) -> list[float]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(8, 1, 28, 28, generator=generator).to(dtype)
    target = torch.randint(0, 10, (8,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_patched_cnn_trains_like_the_stock_one(dtype):
    torch.manual_seed(0)
    stock = article_cnn().to(dtype)
    patched = copy.deepcopy(stock)
    ft.patch(patched)
    stock_losses, patched_losses = _train(stock, 4, dtype), _train(patched, 4, dtype)
    assert stock_losses[-1] < stock_losses[0]  # it learns
    # float64: rounding only; float32: the two convolutions sum in different orders, and four
    # momentum steps carry that rounding (measured: below 1e-7 relative).
    rtol = 1e-12 if dtype is torch.float64 else 1e-5
    assert patched_losses == pytest.approx(stock_losses, rel=rtol)


# --------------------------------------------------------------------------- #
# torch.compile
# --------------------------------------------------------------------------- #
def test_compile_fullgraph_sees_fastacts_ops_without_a_graph_break():
    torch.manual_seed(0)
    model = article_cnn()
    ft.patch(model)
    compiled, graphs = support.compile_recording(model)
    x = _input((2, 1, 28, 28), torch.float32)
    torch.testing.assert_close(compiled(x), model(x))
    assert len(graphs) == 1
    # float32 CPU: torch's convolution / linear with the bias, then fastact's activation op (ops.py)
    assert graphs[0].count("torch.ops.fastact.leaky_relu") == 3 and "fastact.bias_act" not in graphs[0]


def test_compile_fullgraph_aot_eager_trains():
    """AOT autograd (fake tensors, the backward graph) on a patched model; 'aot_eager' rather than
    inductor, whose C++ compile takes minutes on a 2-core machine: fullgraph is what proves there is
    no graph break."""
    torch.manual_seed(0)
    model = article_cnn()
    model.insert(7, torch.nn.PReLU())
    model.append(torch.nn.LogSoftmax(dim=1))
    ft.patch(model)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = _input((2, 1, 28, 28), torch.float32)
    y_compiled, y_eager = compiled(x), model(x)
    torch.testing.assert_close(y_compiled, y_eager)
    dy = torch.randn_like(y_eager)
    grads_compiled = torch.autograd.grad(y_compiled, list(model.parameters()), dy)
    grads_eager = torch.autograd.grad(y_eager, list(model.parameters()), dy)
    for a, b in zip(grads_compiled, grads_eager):
        torch.testing.assert_close(a, b)


def test_export_keeps_fastacts_ops():
    torch.manual_seed(0)
    model = article_cnn()
    ft.patch(model)
    x = _input((2, 1, 28, 28), torch.float32)
    exported = torch.export.export(model, (x,))
    targets = [str(node.target) for node in exported.graph.nodes if "fastact" in str(node.target)]
    assert targets == ["fastact.leaky_relu.default"] * 3  # after torch's convolution / linear (float32 CPU)
    torch.testing.assert_close(exported.module()(x), model(x))
