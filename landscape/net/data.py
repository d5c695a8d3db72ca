"""Datasets for ``landscape net``: a name (or an ``.npz`` path) → balanced, class-ordered arrays.

No torch. A dataset is a :class:`Dataset` of float64 arrays laid out as the deep UFM needs
(``docs/MODEL.md`` §1): the N = K·n training columns are **class-ordered** (sample index fastest,
class slowest), so the backbone's features of the training set are the UFM's H₁ ∈ ℝ^{d×N} as they
stand. The test set is balanced the same way (its own n per class).

Sources (:data:`DATASETS`):

* ``"digits"``: scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1,797 8×8
  images, K = 10, 174–183 per class), shipped with scikit-learn, read offline.
* a path ending in ``.npz`` holding ``X`` (N_total, F) or (N_total, h, w) and integer labels
  ``y`` (N_total,) in 0..K−1: a user's own arrays (and the tests' tiny ones).

Balancing takes the first ``n_train`` samples of each class (in a seeded random order) for
training and the next ``n_test`` for testing. Standardisation (``standardise=true``, as the
paper normalises its inputs) subtracts the training mean of each input feature and divides by
its training standard deviation (features constant on the training set are only centred).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.validate import SpecError, check_memory

#: Named datasets that ship with a package (loaded offline).
DATASETS = ("digits",)


@dataclass(frozen=True)
class Dataset:
    """A balanced, class-ordered split.

    ``X_train`` (N, F) with N = K·n_train and ``X_test`` (K·n_test, F), float64; labels
    ``y_train``/``y_test`` (int64) equal ``repeat(arange(K), n)``; ``image_shape`` (h, w) when the
    inputs are images (a CNN backbone needs it), else None; ``name`` the source."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    K: int
    n_train: int
    n_test: int
    image_shape: tuple[int, int] | None

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])


def _digits() -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise SpecError("dataset='digits' needs scikit-learn (pip install scikit-learn)") from None
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y.astype(np.int64), (8, 8)


#: float64 copies of X alive while a dataset is read and split (the array, its float64 form, the split).
_X_COPIES = 3


def _npy_shape(fh) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a .npy stream from its header alone (nothing of the data is read)."""
    from numpy.lib import format as npy

    version = npy.read_magic(fh)
    read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f".npy version {version} is not 1.0 or 2.0")
    shape, _, dtype = read(fh)
    return shape, dtype


def _check_npz_memory(path, f) -> None:
    """Refuse an .npz whose X and y (by their headers, before any data is read or decompressed)
    would need more memory than the budget once read as float64 and split."""
    sizes = {}
    names = set(f.zip.namelist())
    for key in ("X", "y"):
        with f.zip.open(f"{key}.npy" if f"{key}.npy" in names else key) as fh:
            shape, _ = _npy_shape(fh)
        sizes[key] = (shape, int(np.prod(shape, dtype=object)))
    need = 8 * (_X_COPIES * sizes["X"][1] + 2 * sizes["y"][1])
    check_memory(f"dataset={str(path)!r}", need,
                 f"reading its X {sizes['X'][0]} and y {sizes['y'][0]} as float64 and splitting them")


def read_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """``X`` (flattened to (N, F), float64), ``y`` (int64) and the image shape of an ``.npz``
    file; a one-line SpecError for a missing file, missing keys or arrays of the wrong kind."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"dataset={str(path)!r} is invalid: no such file (a name in {DATASETS} or an .npz path)")
    try:
        with np.load(p, allow_pickle=False) as f:
            if "X" not in f or "y" not in f:
                raise SpecError(f"dataset={str(path)!r} is invalid: the .npz must hold arrays 'X' and 'y' "
                                f"(it holds {sorted(f.files)})")
            _check_npz_memory(path, f)
            X, y = np.asarray(f["X"]), np.asarray(f["y"])
    except (OSError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"dataset={str(path)!r} is invalid: not a readable .npz file ({exc})") from None
    if X.ndim not in (2, 3) or X.shape[0] == 0:
        raise SpecError(f"dataset X has shape {X.shape}: must be (samples, features) or (samples, h, w)")
    if not np.issubdtype(X.dtype, np.number) or not np.all(np.isfinite(X)):
        raise SpecError("dataset X is invalid: must be finite real numbers")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise SpecError(f"dataset y has shape {y.shape}: must be one label per sample ({X.shape[0]},)")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise SpecError("dataset y is invalid: must be integer class labels 0..K-1")
    image = tuple(int(s) for s in X.shape[1:]) if X.ndim == 3 else None
    return X.reshape(X.shape[0], -1).astype(np.float64), y.astype(np.int64), image


#: Most classes a dataset's counts per class are listed for in an error message.
_SHOWN_CLASSES = 20


def check_labels(y: np.ndarray) -> int:
    """K, the class count of integer labels ``y`` (N,), if they are exactly 0..K−1 with K ≥ 2;
    else a SpecError. The range is checked against N before anything of size K is made: every
    class needs a sample, so K ≤ N, and a label of 1.5·10⁹ among 1,797 samples is refused
    instead of counted (a 12 GB bincount)."""
    N = int(y.shape[0])
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= N:
        raise SpecError(f"dataset y is invalid: labels must be class numbers 0..K-1 with every class present, so in "
                        f"[0, {N - 1}] for {N:,} samples (found labels {lo}..{hi})")
    K = hi + 1
    counts = np.bincount(y, minlength=K)
    if K < 2 or counts.min() == 0:
        missing = np.flatnonzero(counts == 0)
        shown = (f"classes without a sample: {missing[:_SHOWN_CLASSES].tolist()}"
                 + (f" and {missing.size - _SHOWN_CLASSES:,} more" if missing.size > _SHOWN_CLASSES else "")
                 if K >= 2 else f"only K={K} class")
        raise SpecError(f"dataset y is invalid: labels must cover 0..K-1 with K >= 2 ({shown})")
    return K


def load_dataset(name: str, n_train: int, n_test: int = 0, *, seed: int = 0,
                 standardise: bool = True) -> Dataset:
    """The balanced split of dataset ``name`` (see the module docstring) with ``n_train`` training
    and ``n_test`` test samples per class; SpecError if a class has fewer than
    ``n_train + n_test`` samples or the labels are not 0..K−1 with K ≥ 2."""
    if name in DATASETS:
        X, y, image = _digits()
    elif isinstance(name, str) and name.endswith(".npz"):
        X, y, image = read_arrays(name)
    else:
        raise SpecError(f"dataset={name!r} is invalid: must be one of {DATASETS} or a path ending in .npz")
    K = check_labels(y)
    counts = np.bincount(y, minlength=K)
    need = n_train + n_test
    if counts.min() < need:
        raise SpecError(f"n_train + n_test = {need} is invalid: the smallest class of {name!r} has "
                        f"{int(counts.min())} samples (must be <= {int(counts.min())})")
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in range(K):
        idx = rng.permutation(np.nonzero(y == c)[0])
        tr.append(idx[:n_train])
        te.append(idx[n_train:need])
    tr, te = np.concatenate(tr), np.concatenate(te)
    X_train, X_test = X[tr], X[te]
    if standardise:
        mu, sd = X_train.mean(axis=0), X_train.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        X_train, X_test = (X_train - mu) / sd, (X_test - mu) / sd
    return Dataset(str(name), X_train, y[tr], X_test, y[te], K, n_train, n_test, image)
