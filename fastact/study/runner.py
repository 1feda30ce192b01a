"""Train every (network, regime, activation, seed) of a :class:`StudyConfig` and collect what happened."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .data import Dataset
from .grid import ARCHITECTURES, Regime, StudyConfig
from .layers import Nonlinearity, parse_nonlinearity
from .networks import Network, array_module, build_cnn, build_mlp
from .optim import make_optimizer


@dataclass(frozen=True)
class DeviceData:
    """The data set as the training arrays: the study's dtype, on the device (NumPy or CuPy)."""

    x_train: Any
    onehot_train: Any
    x_test: Any
    y_test: Any
    n_classes: int

    @classmethod
    def of(cls, data: Dataset, dtype: str, device: str) -> "DeviceData":
        xp = _device_module(device)
        onehot = np.eye(data.n_classes, dtype=dtype)[data.y_train]
        as_device = lambda a: xp.asarray(np.ascontiguousarray(a))  # noqa: E731
        return cls(
            as_device(data.x_train.astype(dtype)), as_device(onehot), as_device(data.x_test.astype(dtype)),
            as_device(data.y_test), data.n_classes,
        )


def _device_module(device: str) -> Any:
    if device == "cpu":
        return np
    if device == "cuda":
        try:
            import cupy
        except ImportError as error:
            raise SystemExit(f"--device cuda needs CuPy: pip install \"fastact[cuda12]\" or \"fastact[cuda13]\" ({error})") from error
        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception as error:  # noqa: BLE001 - CuPy's CUDARuntimeError: no GPU or no driver
            raise SystemExit(f"--device cuda: CuPy finds no usable GPU here ({type(error).__name__}: {error})") from error
        return cupy
    raise ValueError(f"--device must be cpu or cuda, got {device!r}")


def build_network(network: str, depth: str, data: DeviceData, nonlinearity: Nonlinearity, bias_init: float, seed: int) -> Network:
    """The network of a run; its weights depend only on (seed, network, depth), never on the activation."""
    rng = np.random.default_rng([seed, 0])
    build = build_mlp if network == "mlp" else build_cnn
    return build(data.x_train[:1], data.n_classes, ARCHITECTURES[network][depth], nonlinearity, bias_init, rng)


def train_run(
    data: DeviceData, network_name: str, regime: Regime, nonlinearity: Nonlinearity, seed: int, config: StudyConfig
) -> dict:
    """Train one network; returns its per-epoch record.

    ``train_loss[e]``: the mean minibatch loss of epoch e+1; ``test_accuracy[e]`` and
    ``dead_fraction[e]`` (one per hidden layer) measured after epoch e, e = 0 being the
    initialization; ``final_test_accuracy``.  A run whose loss becomes NaN or infinite
    stops there (``diverged``).
    """
    started = time.perf_counter()
    network = build_network(network_name, regime.depth, data, nonlinearity, regime.bias_init, seed)
    optimizer = make_optimizer(config.optimizer, regime.learning_rate)
    order = np.random.default_rng([seed, 1])  # the batch order: the same for every activation
    xp = array_module(data.x_train)
    params = [layer.params for layer in network.layers]
    record = {"train_loss": [], "test_accuracy": [], "dead_fraction": [], "diverged": False}

    def measure() -> None:
        record["test_accuracy"].append(network.accuracy(data.x_test, data.y_test))
        record["dead_fraction"].append(network.dead_fractions(data.x_train))

    measure()
    n = len(data.x_train)
    with np.errstate(all="ignore"):  # a diverging run overflows on its way to NaN: recorded, not warned
        for _ in range(config.epochs):
            permutation = xp.asarray(order.permutation(n))
            total = 0.0
            for start in range(0, n, config.batch_size):
                batch = permutation[start:start + config.batch_size]
                loss, grads = network.loss_and_gradients(data.x_train[batch], data.onehot_train[batch])
                if not math.isfinite(loss):
                    record["diverged"] = True
                    break
                optimizer.step(params, grads)
                total += loss * len(batch)
            if record["diverged"]:
                break
            record["train_loss"].append(total / n)
            measure()
        # A diverged network is judged as it ended (NaN logits: about chance); its dead
        # fractions are left out of the means (NaN is never > 0, so every unit would count).
        final_accuracy = network.accuracy(data.x_test, data.y_test) if record["diverged"] else None
    record["final_test_accuracy"] = record["test_accuracy"][-1] if final_accuracy is None else final_accuracy
    if nonlinearity.learned:
        record["prelu_slopes"] = [_slope_summary(layer.params["alpha"]) for layer in network.hidden]
    record["seconds"] = time.perf_counter() - started
    return record


def _slope_summary(alpha: Any) -> dict:
    values = np.asarray(alpha.get() if hasattr(alpha, "get") else alpha, dtype=np.float64).ravel()
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


# --------------------------------------------------------------------------- #
# The whole study
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Task:
    """One training run: the network, the regime, the activation (as given in the config) and the seed."""

    network: str
    regime: Regime
    activation: str
    seed: int


def tasks_of(config: StudyConfig) -> list[Task]:
    seeds = range(config.seed, config.seed + config.seeds)
    return [
        Task(network, regime, activation, seed)
        for network in config.networks for regime in config.regimes() for seed in seeds for activation in config.activations
    ]


# What a forked worker needs, set before the pool starts (fork copies it; nothing is pickled but the task).
_WORKER: dict = {}


def _run_task(task: Task) -> dict:
    return train_run(_WORKER["data"], task.network, task.regime, _WORKER["nonlinearities"][task.activation], task.seed, _WORKER["config"])


def run_tasks(config: StudyConfig, data: DeviceData, progress: Callable[[int, int, Task, dict], None]) -> dict:
    """{task: record} for every task of ``config``, ``config.jobs`` at a time (worker processes when > 1)."""
    tasks = tasks_of(config)
    _WORKER.update(data=data, config=config, nonlinearities={text: parse_nonlinearity(text) for text in config.activations})
    records: dict = {}
    try:
        if config.jobs == 1:
            for task in tasks:
                records[task] = _run_task(task)
                progress(len(records), len(tasks), task, records[task])
            return records
        import concurrent.futures
        import multiprocessing

        # fork: the workers inherit the data and the compiled backend already loaded here.
        with concurrent.futures.ProcessPoolExecutor(config.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {pool.submit(_run_task, task): task for task in tasks}
            for future in concurrent.futures.as_completed(futures):
                task = futures[future]
                records[task] = future.result()
                progress(len(records), len(tasks), task, records[task])
        return records
    finally:
        _WORKER.clear()
