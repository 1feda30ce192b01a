"""``python -m fastact study`` (fastact/study/): gradients, the dead-unit measure, training, data, flags, report."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

import fastact
import fastact.__main__
from fastact.study import cli, report
from fastact.study.data import load_npz
from fastact.study.grid import StudyConfig
from fastact.study.layers import Conv2d, Dense, parse_nonlinearity
from fastact.study.networks import Network, build_cnn, build_mlp, dead_fraction, units_active
from fastact.study.optim import SGD, Adam
from fastact.study.runner import DeviceData, train_run
from fastact.study.stats import mean_interval, t_quantile

GRADIENT_ACTIVATIONS = ["relu", "leaky_relu:0.1", "prelu", "elu", "gelu"]


# --------------------------------------------------------------------------- #
# The whole network's gradient against finite differences (float64)
# --------------------------------------------------------------------------- #
def _numeric_gradient(network: Network, x, onehot, p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    numeric = np.zeros_like(p)
    for index in np.ndindex(p.shape):
        kept = p[index]
        p[index] = kept + eps
        plus = network.loss_and_gradients(x, onehot)[0]
        p[index] = kept - eps
        minus = network.loss_and_gradients(x, onehot)[0]
        p[index] = kept
        numeric[index] = (plus - minus) / (2 * eps)
    return numeric


@pytest.mark.parametrize("network", ["mlp", "cnn"])
@pytest.mark.parametrize("activation", GRADIENT_ACTIVATIONS)
def test_network_gradient_matches_finite_differences(network, activation):
    rng = np.random.default_rng(1)
    x = rng.random((4, 1, 4, 4))
    onehot = np.eye(3)[rng.integers(0, 3, 4)]
    nonlinearity = parse_nonlinearity(activation)
    if network == "mlp":
        net = build_mlp(x, 3, (5, 4), nonlinearity, 0.1, np.random.default_rng(2))
    else:  # a stride-2 layer, so that the flattened feature map has another shape than the input
        net = build_cnn(x, 3, ((2, 1), (3, 2)), nonlinearity, 0.1, np.random.default_rng(2))
    if nonlinearity.learned:  # distinct slopes per unit, so that dalpha is checked unit by unit
        for layer in net.hidden:
            layer.params["alpha"][...] = rng.uniform(0.05, 0.5, layer.params["alpha"].shape)
    _, grads = net.loss_and_gradients(x, onehot)
    for number, (layer, layer_grads) in enumerate(zip(net.layers, grads)):
        assert set(layer_grads) == set(layer.params)
        for name, p in layer.params.items():
            numeric = _numeric_gradient(net, x, onehot, p)
            assert layer_grads[name].shape == p.shape and layer_grads[name].dtype == np.float64
            np.testing.assert_allclose(layer_grads[name], numeric, rtol=1e-5, atol=1e-7 * np.abs(numeric).max(),
                                       err_msg=f"layer {number} {name}")


# --------------------------------------------------------------------------- #
# Dead units
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("activation", ["relu", "leaky_relu:0.3", "prelu", "gelu"])
def test_dead_units_dense_constructed(activation):
    """Unit 0: bias -100, dead on every input; unit 1: positive on one example only; unit 2: always positive."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.1]])
    w = np.array([[1.0, 2.0, 1.0], [1.0, -1.0, 1.0]])
    b = np.array([-100.0, -1.5, 1.0])  # unit 1: 2*x0 - x1 - 1.5 > 0 only on the first example
    layer = Dense(w, b, parse_nonlinearity(activation), np.full(3, 0.25) if activation == "prelu" else None)
    net = Network([layer], Dense(np.ones((3, 2)), np.zeros(2), parse_nonlinearity("linear")), flatten_input=True)
    z = next(net.hidden_preactivations(x))
    np.testing.assert_array_equal(units_active(z, layer.unit_axes), [False, True, True])
    assert net.dead_fractions(x) == [pytest.approx(1 / 3)]
    assert net.dead_fractions(x[1:]) == [pytest.approx(2 / 3)]  # without the first example, unit 1 is dead too


def test_dead_units_conv_constructed():
    """A channel is dead when its pre-activation is <= 0 at every position of every example."""
    x = np.zeros((3, 1, 4, 4))
    x[2, 0, 3, 3] = 1.0  # one pixel of one example
    w = np.zeros((2, 1, 3, 3))
    w[1, 0, 1, 1] = 5.0  # channel 1 sees that pixel at one position only
    layer = Conv2d(w, np.array([-100.0, -1.0]), parse_nonlinearity("relu"))
    net = Network([layer], Dense(np.ones((32, 2)), np.zeros(2), parse_nonlinearity("linear")), flatten_input=False)
    assert net.dead_fractions(x) == [0.0 + 0.5]  # channel 0 dead; channel 1 alive at one pixel
    assert net.dead_fractions(x[:2]) == [1.0]


def test_dead_units_nan_counts_as_never_active_and_chunks_combine(monkeypatch):
    assert units_active(np.array([[np.nan, 1.0]]), (0,)).tolist() == [False, True]
    assert dead_fraction(np.array([True, False, False, False])) == 0.75
    # The training set is measured in chunks; a unit active in one chunk only is alive.
    monkeypatch.setattr("fastact.study.networks.MEASURE_CHUNK", 2)
    x = np.array([[-1.0], [-1.0], [-1.0], [1.0]])
    net = Network([Dense(np.ones((1, 1)), np.zeros(1), parse_nonlinearity("relu"))],
                  Dense(np.ones((1, 2)), np.zeros(2), parse_nonlinearity("linear")), flatten_input=True)
    assert net.dead_fractions(x) == [0.0]
    assert net.dead_fractions(x[:3]) == [1.0]


# --------------------------------------------------------------------------- #
# Optimizers and statistics
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizers_match_torch(optimizer):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4))
    gradients = [rng.standard_normal((3, 4)) for _ in range(5)]
    mine = SGD(0.1, momentum=0.9) if optimizer == "sgd" else Adam(0.1)
    params = [{"w": start.copy()}]
    tensor = torch.tensor(start.copy(), requires_grad=True)
    theirs = torch.optim.SGD([tensor], lr=0.1, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam([tensor], lr=0.1)
    for g in gradients:
        mine.step(params, [{"w": g}])
        tensor.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(params[0]["w"], tensor.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_t_interval():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 4, 9, 30, 200):
        assert t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-8)
    values = [0.90, 0.94, 0.95, 0.97]
    stat = mean_interval(values)
    half = scipy_stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert stat["mean"] == pytest.approx(0.94) and stat["high"] - stat["mean"] == pytest.approx(half)
    assert mean_interval([0.9]) == {"mean": 0.9, "low": None, "high": None, "n": 1}


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #
def _write_npz(path, x_train, y_train, x_test, y_test):
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def test_npz_loader_layouts(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 5, 5), dtype=np.uint8)
    data = load_npz(_write_npz(tmp_path / "mnist_like.npz", images[:4], np.array([0, 1, 2, 1], np.uint8), images[4:], np.array([2, 0])))
    assert data.x_train.shape == (4, 1, 5, 5) and data.x_test.shape == (2, 1, 5, 5) and data.is_image
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0  # scaled by the training set's range
    np.testing.assert_allclose(data.x_test, (images[4:, None] - images[:4].min()) / float(images[:4].max() - images[:4].min()))
    assert data.n_classes == 3 and data.y_train.tolist() == [0, 1, 2, 1]
    channels_last = rng.random((3, 4, 4, 2))
    data = load_npz(_write_npz(tmp_path / "rgb.npz", channels_last, [0, 1, 0], channels_last[:1], [1]))
    assert data.x_train.shape == (3, 2, 4, 4)
    np.testing.assert_array_equal(data.x_train[1, 1], (channels_last[1, :, :, 1] - channels_last.min()) / np.ptp(channels_last))
    data = load_npz(_write_npz(tmp_path / "features.npz", rng.random((4, 7)), [0, 1, 0, 1], rng.random((2, 7)), [1, 0]))
    assert data.x_train.shape == (4, 7, 1, 1) and not data.is_image


@pytest.mark.parametrize("change, message", [
    ({"y_train": np.array([0.0, 1.0, 0.0, 1.0])}, "integer class labels"),
    ({"y_train": np.array([0, 1, 0])}, "3 labels for 4 samples"),
    ({"y_test": np.array([-1, 0])}, "negative labels"),
    ({"x_test": np.zeros((2, 3, 3))}, "differ in shape"),
    ({"x_train": np.zeros((4, 2, 2, 2, 2))}, "must be (N, features)"),
    ({"x_train": np.full((4, 4, 4), np.nan)}, "NaN"),
])
def test_npz_loader_refuses_bad_arrays(tmp_path, change, message):
    arrays = {"x_train": np.zeros((4, 4, 4)), "y_train": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 4, 4)), "y_test": np.array([1, 0])}
    arrays.update(change)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_npz(_write_npz(tmp_path / "bad.npz", **arrays))


def test_npz_loader_missing_keys_and_not_an_npz(tmp_path):
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"missing arrays \['y_train', 'x_test', 'y_test'\]"):
        load_npz(tmp_path / "partial.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="cannot read it as an .npz"):
        load_npz(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="cannot read it as an .npz"):
        load_npz(tmp_path / "absent.npz")


def _blobs_npz(tmp_path, shape=(4, 4)):
    """Two classes of images a CNN and an MLP separate in a few epochs: bright top half or bright bottom half."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 96)
    x = rng.random((96, *shape)) * 0.2
    half = shape[0] // 2
    for i, label in enumerate(labels):
        x[i, half * label:half * (label + 1)] += 0.8
    return _write_npz(tmp_path / "blobs.npz", x[:64], labels[:64], x[64:], labels[64:])


def test_study_trains_on_a_users_npz(tmp_path):
    path = _blobs_npz(tmp_path)
    out = tmp_path / "out.json"
    cli.main(["--data", str(path), "--activations", "relu", "prelu", "--lr", "normal", "--bias", "zero", "--depth", "shallow",
              "--seeds", "2", "--epochs", "5", "--batch-size", "16", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["data"] == {"name": "blobs", "train": 64, "test": 32, "shape": [1, 4, 4], "classes": 2}
    assert [(r["network"], r["activation"]) for r in result["rows"]] == [("mlp", "relu"), ("mlp", "prelu"), ("cnn", "relu"), ("cnn", "prelu")]
    for row in result["rows"]:
        assert row["test_accuracy"]["mean"] >= 0.9, row
        assert len(row["dead_fraction_per_epoch"]) == 6 and len(row["train_loss"]) == 5
        assert row["train_loss"][-1] < row["train_loss"][0]
    slopes = result["rows"][1]["prelu_slopes"]
    assert len(slopes) == 2 and any(layer["mean"] != pytest.approx(0.25) for layer in slopes)  # learned, reported


# --------------------------------------------------------------------------- #
# Training on digits (needs scikit-learn)
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from fastact.study.data import load_digits

    return load_digits()


def test_digits_as_scikit_learn_loads_them():
    datasets = pytest.importorskip("sklearn.datasets")
    from fastact.study.data import _digits_arrays

    images, labels = _digits_arrays()
    reference = datasets.load_digits()
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(labels, reference.target)


def test_digits_split(digits):
    assert (len(digits.y_train), len(digits.y_test)) == (1438, 359) and digits.n_classes == 10
    assert np.bincount(digits.y_test).min() >= 35  # stratified: every class in the test set


def test_quick_relu_normal_reaches_90_percent(digits):
    """The --quick settings, relu in the normal regime (the cell --quick promises >= 90% for), both seeds."""
    config = replace(cli.config_from(cli.build_parser().parse_args(["--quick"])), activations=("relu",), lr=("normal",))
    data = DeviceData.of(digits, config.dtype, config.device)
    regime = config.regimes()[0]
    for seed in range(config.seed, config.seed + config.seeds):
        record = train_run(data, "mlp", regime, parse_nonlinearity("relu"), seed, config)
        assert not record["diverged"] and record["final_test_accuracy"] >= 0.90, record["test_accuracy"]
        assert record["train_loss"][-1] < record["train_loss"][0] / 5


def test_full_settings_relu_normal_reach_95_percent(digits):
    """The full study's settings: relu, normal regime, the MLP with one seed (the CNN costs ten times more;
    bench/results/study-amd-epyc-2c.md has both networks with five seeds)."""
    config = StudyConfig()
    data = DeviceData.of(digits, config.dtype, config.device)
    regime = next(r for r in config.regimes() if (r.lr, r.bias, r.depth) == ("normal", "zero", "shallow"))
    record = train_run(data, "mlp", regime, parse_nonlinearity("relu"), 0, config)
    assert record["final_test_accuracy"] >= 0.95, record["test_accuracy"]


def _study(args, tmp_path, name):
    out = tmp_path / f"{name}.json"
    cli.main([*args, "--json", str(out)])
    return json.loads(out.read_text())


SMALL = ["--networks", "mlp", "--activations", "relu,leaky_relu:0.1", "--lr", "high", "--bias", "negative",
         "--depth", "shallow", "--seeds", "2", "--epochs", "1"]


@pytest.fixture(scope="module")
def small_study(digits, tmp_path_factory):
    """(the JSON's path, the result) of the SMALL study, run once for the tests below."""
    folder = tmp_path_factory.mktemp("study")
    return folder / "small.json", _study(SMALL, folder, "small")


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def test_same_seed_same_table(small_study, tmp_path):
    first = small_study[1]
    second, other = _study(SMALL, tmp_path, "second"), _study([*SMALL, "--seed", "5"], tmp_path, "other")
    assert report.summary_markdown(first) == report.summary_markdown(second)
    assert report.summary_markdown(first) != report.summary_markdown(other)
    assert _without_timing(first["rows"]) == _without_timing(second["rows"])
    assert first["rows"][0]["seeds"] == [0, 1] and other["rows"][0]["seeds"] == [5, 6]


def test_jobs_do_not_change_the_result(small_study, tmp_path):
    two = _study([*SMALL, "--jobs", "2"], tmp_path, "two")
    assert _without_timing(small_study[1]["rows"]) == _without_timing(two["rows"])


def test_report_markdown_plot_and_from_json(small_study, tmp_path, capsys):
    path, result = small_study
    row = result["rows"][1]
    assert row["activation"] == "leaky_relu(alpha=0.1)" and row["vs_relu"]["n"] == 2
    assert row["vs_relu"]["mean"] == pytest.approx(np.mean(row["test_accuracy_per_seed"]) - np.mean(result["rows"][0]["test_accuracy_per_seed"]))
    assert row["regime"] == {"name": "lr=high,bias=negative,depth=shallow", "lr": "high", "bias": "negative", "depth": "shallow",
                             "learning_rate": 0.2, "bias_init": -0.3}
    assert len(row["dead_fraction"]) == 2 and all(0 <= f <= 1 for f in row["dead_fraction"])
    cli.main(["--from-json", str(path), "--markdown", "-"])
    table = capsys.readouterr().out
    assert "| leaky_relu(alpha=0.1) |" in table and "MLP: test accuracy" in table
    pytest.importorskip("matplotlib")
    cli.main(["--from-json", str(path), "--plot", str(tmp_path / "study.png")])
    assert (tmp_path / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- #
# Flags
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("args, message", [
    (["--activations", "softmax"], "'softmax' is not an elementwise activation"),
    (["--activations", "swishy"], "unknown activation 'swishy'"),
    (["--activations", "leaky_relu:beta=1"], "no parameter 'beta'"),
    (["--activations", "elu:abc"], "'abc' is not a number"),
    (["--activations", "relu:max_value=-1"], "max_value must be >= 0"),
    (["--activations", "relu", "relu"], "named twice"),
    (["--activations", "leaky_relu:0.1,0.2"], "too many values"),
    (["--activations", "prelu:true"], "initial slope must be a finite number"),
    (["--networks", "rnn"], "invalid choice: 'rnn'"),
    (["--epochs", "0"], "must be >= 1"),
    (["--high-lr", "nan"], "finite number > 0"),
    (["--negative-bias", "0.5"], "finite number < 0"),
    (["--jobs", "2", "--device", "cuda"], "only --device cpu"),
])
def test_bad_flags_give_clear_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_activation_lists():
    parse = lambda *values: cli.config_from(cli.build_parser().parse_args(["--activations", *values])).activations  # noqa: E731
    assert parse("relu,leaky_relu:0.1,elu") == ("relu", "leaky_relu:0.1", "elu")
    assert parse("relu:0,6,gelu:approximate=true", "prelu:0.1") == ("relu:0,6", "gelu:approximate=true", "prelu:0.1")
    labels = [parse_nonlinearity(text).label for text in ("relu:0,6", "gelu:approximate=true", "prelu:0.1", "leaky_relu")]
    assert labels == ["relu(alpha=0, max_value=6)", "gelu(approximate=True)", "prelu(init=0.1)", "leaky_relu"]
    assert parse_nonlinearity("leaky_relu").activation == fastact.Activation("leaky_relu")  # the registry's default


def test_cnn_refused_on_feature_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = _write_npz(tmp_path / "features.npz", rng.random((4, 3)), [0, 1, 0, 1], rng.random((2, 3)), [0, 1])
    with pytest.raises(SystemExit):
        cli.main(["--data", str(path), "--networks", "cnn"])
    assert "the CNN needs images" in capsys.readouterr().err


def test_registered_as_a_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fastact.__main__.main(["study", "--help"])
    assert exit_info.value.code == 0
    assert "Leaky ReLU" in capsys.readouterr().out
