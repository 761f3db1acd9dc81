"""Tabular datasets of the paper and of scikit-learn (SPEC.md sections 8 and 9.7).

Two sources:

* **shipped** with scikit-learn, no network: ``breast_cancer`` (569 rows, 30
  features, 2 classes), ``wine`` (178, 13, 3) and ``digits`` (1,797 rows, the 8x8
  images as 64 features, 10 classes);
* **downloaded** once and cached, the paper's tables: ``covtype`` (Forest Cover
  Type, 581,012 rows, 54 features, 7 classes; scikit-learn's ``fetch_covtype``),
  ``jannis`` (83,733 rows, 54 features, 4 classes; OpenML dataset 41168) and
  ``epsilon`` (500,000 rows, 2,000 features, 2 classes; OpenML dataset
  ``epsilon`` version 1).  ``download=True`` fetches them with scikit-learn into
  ``<root>/scikit_learn_data`` and keeps a float32 copy in
  ``<root>/tabular/<name>.npz``, which later loads read without network.

Every table is split into a stratified training set and a stratified validation
set (20 % of the rows) with the run's seed, and preprocessed as Gorishniy et al.
(2021) do: a quantile transform to normal marginals, fitted on the training rows
only and applied to both.
"""

from __future__ import annotations

import io
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..settings import DOWNLOADED_TABLES, SHIPPED_TABLES, TABULAR_DATASETS
from .subsets import stratified_indices

__all__ = [
    "SHIPPED_TABLES",
    "DOWNLOADED_TABLES",
    "TABULAR_DATASETS",
    "VALIDATION_SHARE",
    "Table",
    "read_table",
]

#: Share of the rows drawn (stratified) as the clean validation set.
VALIDATION_SHARE = 0.2

#: Where each downloaded table comes from: (what it is, the host probed before downloading, the page).
_SOURCES = {
    "covtype": ("scikit-learn's fetch_covtype (UCI Covertype)", "ndownloader.figshare.com",
                "https://archive.ics.uci.edu/dataset/31/covertype"),
    "jannis": ("OpenML dataset 41168 (jannis)", "www.openml.org", "https://www.openml.org/d/41168"),
    "epsilon": ("OpenML dataset 'epsilon', version 1", "www.openml.org",
                "https://www.openml.org/search?type=data&q=epsilon"),
}
_QUANTILE_NOISE = 1e-3
_PORT = 443
_PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Table:
    """A whole table before splitting: ``x`` float32 ``(n, n_features)``, ``y`` int64 ``(n,)``."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    source: str


def _table_cache_path(name: str, root: Path) -> Path:
    """``<root>/tabular/<name>.npz``: the cached copy of a downloaded table."""
    return Path(root) / "tabular" / f"{name}.npz"


def _shipped(name: str) -> Table:
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
              "digits": datasets.load_digits}[name]
    bunch = loader()
    return Table(np.asarray(bunch.data, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64),
                 [str(c) for c in bunch.target_names], f"scikit-learn {name} (shipped with scikit-learn)")


def _encode(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    classes, y = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return y.astype(np.int64), [str(c) for c in classes]


def _check_reachable(name: str, path: Path) -> None:
    """Fail fast, naming what to download and where, when the table's host cannot be reached."""
    what, host, page = _SOURCES[name]
    try:
        socket.create_connection((host, _PORT), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise RuntimeError(
            f"cannot download {name}: {host} is unreachable ({type(error).__name__}: {error}). "
            f"On a machine with internet run glitchlib.data.load({name!r}, download=True), which fetches "
            f"{what} ({page}) and writes {str(path)!r}; copy that file to the same place here "
            "(or pass root= / data_root= pointing at its parent's parent).") from error


def _download(name: str, root: Path) -> Table:
    from sklearn import datasets

    home = str(root / "scikit_learn_data")
    if name == "covtype":
        bunch = datasets.fetch_covtype(data_home=home, download_if_missing=True)
        x, labels = bunch.data, bunch.target
    elif name == "jannis":
        bunch = datasets.fetch_openml(data_id=41168, data_home=home, as_frame=False, parser="auto")
        x, labels = bunch.data, bunch.target
    else:
        bunch = datasets.fetch_openml(name="epsilon", version=1, data_home=home, as_frame=False, parser="auto")
        x, labels = bunch.data, bunch.target
    y, class_names = _encode(labels)
    return Table(np.asarray(x, dtype=np.float32), y, class_names, _SOURCES[name][0])


def _save(table: Table, path: Path) -> None:
    from ..store import atomic_write  # the store's one atomic writer (full-disk errors name the file)

    buffer = io.BytesIO()  # numpy writes zip files to seekable files only
    np.savez(buffer, x=table.x, y=table.y, class_names=np.asarray(table.class_names), source=table.source)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def read_table(name: str, *, root: Path, download: bool = False) -> Table:
    """The whole table ``name``: shipped, cached under ``root``, or downloaded with ``download=True``.

    Raises
    ------
    ValueError
        ``name`` is not a tabular dataset.
    FileNotFoundError
        A downloaded table is not cached and ``download`` is False (the message
        names the file and how to get it).
    RuntimeError
        ``download=True`` but the host cannot be reached (checked with one
        connection attempt of at most 5 s before scikit-learn's downloaders start).
    """
    if name in SHIPPED_TABLES:
        return _shipped(name)
    if name not in DOWNLOADED_TABLES:
        raise ValueError(f"name={name!r} is not a tabular dataset; choose one of {', '.join(TABULAR_DATASETS)}")
    path = _table_cache_path(name, root)
    if path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return Table(npz["x"], npz["y"], [str(c) for c in npz["class_names"]],
                         f"{npz['source']} (cached in {str(path)})")
    if not download:
        what, _, page = _SOURCES[name]
        raise FileNotFoundError(
            f"{name} is not downloaded: {str(path)!r} does not exist. Pass download=True on a machine "
            f"with internet (it fetches {what}, {page}, with scikit-learn and writes that file), or copy "
            "the file there from such a machine.")
    _check_reachable(name, path)
    table = _download(name, root)
    _save(table, path)
    return table


def _train_validation_split(y: np.ndarray, *, seed: int,
                           share: float = VALIDATION_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the rows: ``(train_index, validation_index)``, sorted, disjoint, covering all rows.

    The validation rows are :func:`~glitchlib.data.stratified_indices` ``(y, fraction=share, seed=seed)``.
    """
    validation = stratified_indices(y, fraction=share, seed=seed)
    train = np.setdiff1d(np.arange(len(y)), validation).astype(np.int64)
    return train, validation


def _fit_quantile_transform(x_train: np.ndarray, *, seed: int):
    """scikit-learn's ``QuantileTransformer`` to normal marginals, fitted on ``x_train`` only.

    As Gorishniy et al. (2021): ``n_quantiles = clip(n_train // 30, 10, 1000)``,
    ``output_distribution="normal"``, no subsampling, and the transform is
    fitted on the training rows plus Gaussian noise of standard deviation
    ``1e-3 / max(std_j, 1e-3)`` per feature ``j`` (seeded), which spreads tied
    values (e.g. the many zero pixels of ``digits``) over the quantiles instead of
    sending them to the tails.  Returns the fitted transformer; apply
    ``.transform`` to the (noise-free) training and validation rows alike.
    """
    from sklearn.preprocessing import QuantileTransformer

    x_train = np.asarray(x_train, dtype=np.float64)
    n_quantiles = int(np.clip(len(x_train) // 30, 10, 1000))
    noise_std = _QUANTILE_NOISE / np.maximum(x_train.std(axis=0, keepdims=True), _QUANTILE_NOISE)
    noisy = x_train + noise_std * np.random.default_rng(seed).standard_normal(x_train.shape)
    transformer = QuantileTransformer(n_quantiles=n_quantiles, output_distribution="normal",
                                      subsample=10**9, random_state=seed)
    return transformer.fit(noisy)
