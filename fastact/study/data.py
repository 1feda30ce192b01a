"""The study's data: scikit-learn's digits (the default) or a user's ``.npz``.

Images come out as float arrays scaled to [0, 1] in the layout the networks take:
``(N, C, H, W)`` for the CNN (NCHW, fastact's default), flattened ``(N, C*H*W)``
for the MLP.  Labels are integer classes ``0 .. n_classes - 1``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# digits: a fixed stratified split, the same for every seed, so that seeds vary only the
# initialization and the batch order (and every activation sees the same test set).
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Train and test images ``(N, C, H, W)`` (2-d feature data as ``(N, F, 1, 1)``) with their labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    is_image: bool  # False for 2-d feature data, on which the CNN is refused

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": int(len(self.y_train)),
            "test": int(len(self.y_test)),
            "shape": list(self.x_train.shape[1:]),
            "classes": self.n_classes,
        }


def load_digits() -> Dataset:
    """scikit-learn's digits: 1,797 handwritten 8x8 digits shipped with the package (nothing is downloaded).

    Pixel values 0..16 are scaled to [0, 1]; 20% of the samples, stratified by class, are the test set.

        >>> data = load_digits()
        >>> data.x_train.shape, data.x_test.shape
        ((1438, 1, 8, 8), (359, 1, 8, 8))
    """
    images, labels = _digits_arrays()
    images = images / 16.0
    test = _stratified_test_mask(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return Dataset("digits", images[~test, None], labels[~test], images[test, None], labels[test], 10, True)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """digits' (1797, 8, 8) images (0..16) and labels, read from the file inside scikit-learn.

    The file is read with NumPy without importing scikit-learn, whose import takes about 3 s of
    CPU (a third of ``--quick``); its public loader is used where the file is not where
    scikit-learn has always kept it (``sklearn/datasets/data/digits.csv.gz``: 64 pixels and the
    label per row).
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "python -m fastact study: the default data set, digits, comes with scikit-learn, which is not "
            "installed here: pip install \"fastact[study]\" (or give --data FILE.npz)"
        )
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        table = np.loadtxt(path, delimiter=",")
        return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return digits.images.astype(np.float64), digits.target.astype(np.int64)


def _stratified_test_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask choosing ``round(fraction * count)`` samples of every class, at random with ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        mask[rng.choice(where, size=int(round(fraction * len(where))), replace=False)] = True
    return mask


def load_npz(path: str | Path) -> Dataset:
    """A user's data set: an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    x: ``(N, features)`` (MLP only), ``(N, H, W)`` (one channel, as MNIST ships) or
    ``(N, H, W, C)`` (channels-last, as Keras' data sets ship); any real dtype, scaled
    to [0, 1] by the training set's range.  y: integer class labels ``(N,)``.

        >>> np.savez("tiny.npz", x_train=np.zeros((4, 8, 8)), y_train=[0, 1, 0, 1],
        ...          x_test=np.zeros((2, 8, 8)), y_test=[0, 1])
        >>> load_npz("tiny.npz").x_train.shape
        (4, 1, 8, 8)
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as error:  # no such file, or not an .npz of plain arrays
        raise ValueError(f"--data {path}: cannot read it as an .npz of arrays: {error}") from error
    if not hasattr(archive, "files"):
        raise ValueError(f"--data {path}: this is a single .npy array; an .npz with {list(NPZ_KEYS)} is needed")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise ValueError(f"--data {path}: missing arrays {missing}; an .npz needs {list(NPZ_KEYS)}, it has {archive.files}")
        arrays = {key: np.asarray(archive[key]) for key in NPZ_KEYS}
    x_train, x_test = _images(path, "x_train", arrays["x_train"]), _images(path, "x_test", arrays["x_test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"--data {path}: x_train and x_test samples differ in shape: {x_train.shape[1:]} and {x_test.shape[1:]}")
    y_train, y_test = _labels(path, "y_train", arrays["y_train"], len(x_train)), _labels(path, "y_test", arrays["y_test"], len(x_test))
    low, high = float(x_train.min()), float(x_train.max())
    scale = high - low if high > low else 1.0
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if n_classes < 2:
        raise ValueError(f"--data {path}: the labels name only one class; at least two are needed")
    is_image = arrays["x_train"].ndim >= 3
    return Dataset(path.stem, (x_train - low) / scale, y_train, (x_test - low) / scale, y_test, n_classes, is_image)


def _images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """x as float64 ``(N, C, H, W)``; 2-d features become ``(N, F, 1, 1)``."""
    if x.dtype.kind not in "iuf":
        raise ValueError(f"--data {path}: {key} must hold real numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[:, :, None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)  # channels-last -> NCHW
    else:
        raise ValueError(
            f"--data {path}: {key} must be (N, features), (N, H, W) or (N, H, W, C), got shape {x.shape}"
        )
    if len(x) == 0:
        raise ValueError(f"--data {path}: {key} is empty")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"--data {path}: {key} holds NaN or infinite values")
    return np.ascontiguousarray(x)


def _labels(path: Path, key: str, y: np.ndarray, count: int) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"--data {path}: {key} must be 1-d integer class labels, got dtype {y.dtype} and shape {y.shape}")
    if len(y) != count:
        raise ValueError(f"--data {path}: {key} has {len(y)} labels for {count} samples")
    if y.min() < 0:
        raise ValueError(f"--data {path}: {key} has negative labels; classes must be 0, 1, 2, ...")
    return y.astype(np.int64)
