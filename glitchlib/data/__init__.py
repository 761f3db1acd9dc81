"""Datasets of the paper: MNIST, Fashion-MNIST, CIFAR-10 and tables (SPEC.md sections 1, 2, 8, 9.7).

>>> from glitchlib import data
>>> ds = data.load("fmnist")          # embedded 10 % subset, no files or network needed
>>> ds.x_train.shape
torch.Size([6000, 1, 28, 28])
>>> pool = data.load_ood("fmnist")    # MNIST digits, the anomalies of Fashion-MNIST runs

Three sources, in order of precedence:

* ``root=`` a folder with the official files (torchvision's layout, or a folder
  holding the four IDX files directly such as Debian's
  ``/usr/share/datasets/fashion-mnist``): the stratified subset is drawn from the full
  splits with ``seed``, as the paper does.
* ``download=True``: torchvision's downloaders fetch the files into ``root``
  (default ``~/.cache/glitchlib/data``), then as above.
* nothing: for MNIST and Fashion-MNIST, the real 10 % subsets embedded in the
  package (see ``glitchlib/data/embedded/README.md``). CIFAR-10 cannot be embedded;
  it is looked up in ``~/.cache/glitchlib/data``.

Tables (:mod:`glitchlib.data.tabular`): ``breast_cancer``, ``wine`` and ``digits``
ship with scikit-learn; ``covtype``, ``jannis`` and ``epsilon`` are fetched once with
``download=True`` and cached under ``root``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..settings import DATASETS, IMAGE_DATASETS
from . import _embedded, _files
from ._dataset import Dataset, OODPool
from ._embedded import EMBEDDED, provenance, read_embedded
from .folders import IMAGEWOOF_CLASSES, load_image_folder, load_imagewoof
from .subsets import stratified_indices
from .tabular import TABULAR_DATASETS, _fit_quantile_transform, _train_validation_split, read_table
from .transforms import denormalize, match_image_shape, preprocess

__all__ = [
    "DATASETS", "OOD_SOURCE", "CLASS_NAMES", "IMAGE_SHAPE", "EMBEDDED_SUBSET",
    "Dataset", "OODPool", "load", "load_ood", "denormalize", "stratified_indices", "provenance",
    "load_image_folder",
]

logger = logging.getLogger(__name__)

#: Dataset whose test split supplies the anomalies of a run on the key (SPEC.md section 2).
OOD_SOURCE = {"mnist": "fmnist", "fmnist": "mnist", "cifar10": "fmnist", "imagewoof": "fmnist"}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fmnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"],
    "imagewoof": list(IMAGEWOOF_CLASSES.values()),
}
#: ``(C, H, W)`` of every dataset's images.
IMAGE_SHAPE = {"mnist": (1, 28, 28), "fmnist": (1, 28, 28), "cifar10": (3, 32, 32), "imagewoof": (3, 224, 224)}
#: The share of the official splits that the embedded data holds.
EMBEDDED_SUBSET = 0.1

# IMAGE_DATASETS and DATASETS (images and tables, SPEC.md section 9.7; tables hold
# ``N x n_features`` float32 rows, see :mod:`glitchlib.data.tabular`) are defined in
# :mod:`glitchlib.settings`.
__all__ += ["IMAGE_DATASETS", "TABULAR_DATASETS"]

_announced: set[str] = set()


def _say_once(key: str, message: str) -> None:
    if key not in _announced:
        _announced.add(key)
        logger.info(message)


# ------------------------------------------------------------------ checks

def _check_name(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"name must be one of {', '.join(DATASETS)}; got {name!r}")
    return name


def _check_seed(seed) -> int:
    from .._validation import as_seed

    return as_seed(seed, "seed")


def _check_flag(value, name: str) -> bool:
    from .._validation import as_bool

    return as_bool(value, name)


def _check_subset(subset) -> float:
    from .._validation import as_real

    return as_real(subset, "subset", low=0.0, high=1.0, low_open=True)


def _root_path(root) -> Path:
    return Path(root).expanduser() if root is not None else _files.default_root()


# ------------------------------------------------------------------ loading

def _locate(name: str, root, download: bool) -> Path:
    """Folder of the official files of ``name``, downloading when asked."""
    root = _root_path(root)
    directory = _files.find_files(name, root)
    if directory is None and download:
        _files.download(name, root)
        directory = _files.find_files(name, root)
    if directory is None:
        raise FileNotFoundError(_files.missing_message(name, root))
    return directory


def _load_embedded(name: str) -> Dataset:
    arrays = read_embedded(name)
    _say_once(f"load:{name}", (
        f"glitchlib.data.load({name!r}): using the embedded 10 % subset "
        f"({str(_embedded.EMBEDDED_DIR / (name + '.npz'))}); pass root= to draw subsets from the "
        "official files"))
    images, labels = arrays["images"], arrays["labels"]
    tr, te = arrays["train_index"], arrays["test_index"]
    return Dataset(
        name=name, x_train=preprocess(images[tr]),
        y_train=torch.from_numpy(labels[tr].astype(np.int64)),
        x_test=preprocess(images[te]), y_test=torch.from_numpy(labels[te].astype(np.int64)),
        n_classes=10, class_names=list(CLASS_NAMES[name]), source="embedded",
        train_index=tr.copy(), test_index=te.copy())


def load(name: str, *, seed: int = 0, subset: float = 0.1, root=None,
         download: bool = False) -> Dataset:
    """Load the stratified training and validation subsets of a dataset.

    ``name`` may also be a table of ``TABULAR_DATASETS``: ``breast_cancer``,
    ``wine``, ``digits`` (shipped with scikit-learn), ``covtype``, ``jannis``,
    ``epsilon`` (``download=True`` once, then cached); see :mod:`glitchlib.data.tabular`.

    Parameters
    ----------
    name : {"mnist", "fmnist", "cifar10", "imagewoof"}
        ``"imagewoof"`` reads fastai's ImageWoof 320 px release (SPEC.md section 9.10)
        from ``root`` (or downloads it), resized to 224 px; see
        :func:`glitchlib.data.folders.load_imagewoof`. Any other labelled image
        folder: :func:`load_image_folder`.
    seed : int, default 0
        Seed of the stratified draw (:func:`stratified_indices`, applied to the
        official train split for ``x_train`` and to the official test split for
        ``x_test``). The embedded data is one fixed draw, the paper's 10 % made once
        with seed 0, so with it ``seed`` changes nothing; the glitches and the
        training still vary with the run's seed.
    subset : float, default 0.1
        Share of each official split to keep, in ``(0, 1]``
        (``round(subset * n)`` samples, proportional per class). The embedded data
        only offers 0.1; other shares need ``root=`` or ``download=True``. Tables
        ignore it: every row is used, 80 % for training and 20 % for validation.
    root : str or path, optional
        Folder with the official files: ``root/MNIST/raw/*-ubyte[.gz]``,
        ``root/FashionMNIST/raw/...``, ``root/cifar-10-batches-py/`` (torchvision's
        layout), or a folder holding the four IDX files of ``name`` directly (such as
        Debian's ``/usr/share/datasets/fashion-mnist``).
    download : bool, default False
        Fetch missing files with torchvision's downloaders into ``root`` (default
        ``~/.cache/glitchlib/data``); for covtype, jannis and epsilon,
        scikit-learn's ``fetch_covtype`` / ``fetch_openml``, cached as
        ``root/tabular/<name>.npz``.

    Returns
    -------
    Dataset
        float32 ``N x C x H x W`` images in ``[-1, 1]`` (tables: ``N x n_features``,
        quantile-transformed) and int64 labels.

    Raises
    ------
    ValueError
        Unknown ``name``, bad ``seed`` or ``subset``, or corrupt files.
    FileNotFoundError
        ``root`` (or, for CIFAR-10, the default folder) lacks the files.
    RuntimeError
        ``download=True`` failed (e.g. no internet); the message says where to put
        the files by hand. For tables the host is probed first (at most 5 s).
    """
    download = _check_flag(download, "download")
    name = _check_name(name)
    if name in TABULAR_DATASETS:
        return _load_table(name, seed, root, download)
    seed = _check_seed(seed)
    subset = _check_subset(subset)
    if name == "imagewoof":
        return load_imagewoof(root=root, download=download, subset=subset, seed=seed)
    if root is None and not download and name in EMBEDDED:
        if not math.isclose(subset, EMBEDDED_SUBSET):
            raise ValueError(
                f"subset={subset} is not available in the embedded {name} data, which is "
                f"the {EMBEDDED_SUBSET:g} subset; pass root= (a folder with the official "
                "files) or download=True for other subset sizes")
        return _load_embedded(name)
    try:
        directory = _locate(name, root, download)
    except FileNotFoundError as exc:
        if root is None:
            raise FileNotFoundError(
                f"{_files.DISPLAY_NAME[name]} is not embedded in glitchlib and no root= was "
                f"given; {exc}") from None
        raise
    parts = {}
    for split in ("train", "test"):
        images, labels = _files.read_split(name, directory, split)
        index = stratified_indices(labels, fraction=subset, seed=seed)
        parts[split] = (preprocess(images[index]), torch.from_numpy(labels[index]), index)
    return Dataset(
        name=name, x_train=parts["train"][0], y_train=parts["train"][1],
        x_test=parts["test"][0], y_test=parts["test"][1], n_classes=10,
        class_names=list(CLASS_NAMES[name]),
        source=f"{str(directory)} (subset={subset:g}, seed={seed})",
        train_index=parts["train"][2], test_index=parts["test"][2])


def load_ood(name: str, *, seed: int = 0, root=None, download: bool = False) -> OODPool:
    """The out-of-distribution pool from which anomalies of ``name`` are drawn.

    The pool is the test split of ``OOD_SOURCE[name]`` (MNIST runs get Fashion-MNIST,
    Fashion-MNIST runs get MNIST, CIFAR-10 runs get Fashion-MNIST; SPEC.md section 2),
    converted to ``name``'s image shape (bilinear resize, grey channel repeated; see
    :func:`glitchlib.data.transforms.match_image_shape`) and normalised.

    Parameters
    ----------
    name : {"mnist", "fmnist", "cifar10"}
        The in-distribution dataset.
    seed : int, default 0
        Accepted for symmetry with :func:`load`; the pool is the whole split and does
        not depend on it (:func:`glitchlib.glitches.anomalies` draws from it with its
        own seed).
    root : str or path, optional
        Folder with the official files of the *pool's* dataset, laid out as for
        :func:`load` (a shared torchvision root serves both). When it lacks them and
        ``download`` is False, the embedded pool is used and a log message says so.
    download : bool, default False
        Fetch the pool dataset with torchvision into ``root`` when missing.

    Returns
    -------
    OODPool
        The whole official test split with ``root``; without it, the embedded pool:
        for Fashion-MNIST the 9,000 test images outside the embedded validation subset
        (900 per class), for MNIST the embedded digits outside its validation subset
        (at least 763 per class).
    """
    download = _check_flag(download, "download")
    name = _check_name(name)
    _check_seed(seed)
    if name in TABULAR_DATASETS:
        raise ValueError(
            f"name={name!r} is a table: anomalies (out-of-distribution samples) are defined for the image "
            "datasets only (SPEC.md section 2); use uniform or class-based noise on tables")
    source_name = OOD_SOURCE[name]
    images = None
    if root is not None or download:
        path = _root_path(root)
        directory = _files.find_files(source_name, path)
        if directory is None and download:
            _files.download(source_name, path)
            directory = _files.find_files(source_name, path)
        if directory is not None:
            images, labels = _files.read_split(source_name, directory, "test")
            source = f"{str(directory)} (test split)"
        else:
            _say_once(f"ood-fallback:{name}:{path}", (
                f"glitchlib.data.load_ood({name!r}): no {_files.DISPLAY_NAME[source_name]} "
                f"files under {str(path)!r}; using the embedded pool"))
    if images is None:
        arrays = read_embedded(source_name)
        index = arrays["pool_index"]
        images, labels = arrays["images"][index], arrays["labels"][index].astype(np.int64)
        source = "embedded"
        _say_once(f"ood:{name}", (
            f"glitchlib.data.load_ood({name!r}): using the embedded "
            f"{_files.DISPLAY_NAME[source_name]} pool"))
    x = match_image_shape(preprocess(images), shape=IMAGE_SHAPE[name])
    return OODPool(x=x, y=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                   source_name=source_name, class_names=list(CLASS_NAMES[source_name]),
                   source=source)


def _load_table(name: str, seed, root, download: bool) -> Dataset:
    """A table split into stratified training and validation rows, quantile-transformed (SPEC.md section 9.7).

    The validation set is a stratified 20 % of the rows drawn with ``seed``
    (:data:`~glitchlib.data.tabular.VALIDATION_SHARE`); a quantile transform to normal
    marginals (see :mod:`glitchlib.data.tabular`) is fitted on the
    training rows only, then applied to both sets.  Every row of the table is
    used (``subset`` does not apply to tables; sub-sample with the experiment's
    ``n_train`` / ``n_test``).
    """
    seed = _check_seed(seed)
    table = read_table(name, root=_root_path(root), download=download)
    train_index, test_index = _train_validation_split(table.y, seed=seed)
    transform = _fit_quantile_transform(table.x[train_index], seed=seed)

    def prepared(index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(transform.transform(table.x[index]).astype(np.float32))

    return Dataset(
        name=name, x_train=prepared(train_index), y_train=torch.from_numpy(table.y[train_index]),
        x_test=prepared(test_index), y_test=torch.from_numpy(table.y[test_index]),
        n_classes=len(table.class_names), class_names=list(table.class_names),
        source=f"{table.source}; stratified 80/20 split and quantile transform with seed={seed}",
        train_index=train_index, test_index=test_index)
