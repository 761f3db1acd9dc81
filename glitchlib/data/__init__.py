"""Datasets of the paper: MNIST, Fashion-MNIST and CIFAR-10 (SPEC.md sections 1, 2, 8).

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
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import _files
from ._embedded import EMBEDDED, EMBEDDED_DIR, provenance, read_embedded
from .subsets import class_quotas, stratified_indices
from .transforms import denormalize, match_image_shape, preprocess

__all__ = [
    "DATASETS", "OOD_SOURCE", "CLASS_NAMES", "IMAGE_SHAPE", "EMBEDDED_SUBSET", "EMBEDDED_DIR",
    "Dataset", "OODPool", "load", "load_ood", "denormalize", "preprocess",
    "match_image_shape", "stratified_indices", "class_quotas", "default_root", "provenance",
]

logger = logging.getLogger(__name__)

DATASETS = ("mnist", "fmnist", "cifar10")
#: Dataset whose test split supplies the anomalies of a run on the key (SPEC.md section 2).
OOD_SOURCE = {"mnist": "fmnist", "fmnist": "mnist", "cifar10": "fmnist"}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fmnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"],
}
#: ``(C, H, W)`` of every dataset's images.
IMAGE_SHAPE = {"mnist": (1, 28, 28), "fmnist": (1, 28, 28), "cifar10": (3, 32, 32)}
#: The share of the official splits that the embedded data holds.
EMBEDDED_SUBSET = 0.1

default_root = _files.default_root
_announced: set[str] = set()


def _say_once(key: str, message: str) -> None:
    if key not in _announced:
        _announced.add(key)
        logger.info(message)


def _short_repr(obj, fields: dict) -> str:
    def fmt(v):
        if isinstance(v, (torch.Tensor, np.ndarray)):
            return f"<{tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}>"
        return repr(v)
    body = ", ".join(f"{k}={fmt(v)}" for k, v in fields.items())
    return f"{type(obj).__name__}({body})"


@dataclass(eq=False, repr=False)
class Dataset:
    """A training subset and a clean validation subset of one dataset.

    Attributes
    ----------
    name : str
        ``"mnist"``, ``"fmnist"`` or ``"cifar10"``.
    x_train, x_test : torch.Tensor
        float32 ``N x C x H x W`` normalised to ``[-1, 1]`` (SPEC.md section 1).
    y_train, y_test : torch.Tensor
        int64 labels in ``[0, n_classes)``.
    n_classes : int
    class_names : list of str
    source : str
        ``"embedded"`` or a description of the files read.
    train_index, test_index : numpy.ndarray of int64
        Position of every sample in its source (the official split, or for the
        embedded data the rows of the embedded file).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    class_names: list[str]
    source: str
    train_index: np.ndarray | None = field(default=None)
    test_index: np.ndarray | None = field(default=None)

    def __repr__(self) -> str:
        return _short_repr(self, {"name": self.name, "x_train": self.x_train,
                                  "x_test": self.x_test, "n_classes": self.n_classes,
                                  "source": self.source})


@dataclass(eq=False, repr=False)
class OODPool:
    """Out-of-distribution images offered to the anomaly injector of one dataset.

    Attributes
    ----------
    x : torch.Tensor
        float32 ``N x C x H x W``, already resized and channel-matched to the
        in-distribution dataset's image shape, normalised to ``[-1, 1]``.
    y : torch.Tensor
        int64 class of every image *in its own dataset* (``source_name``).
    source_name : str
        The dataset the images come from.
    class_names : list of str
        Class names of ``source_name``.
    source : str
        ``"embedded"`` or a description of the files read.
    """

    x: torch.Tensor
    y: torch.Tensor
    source_name: str
    class_names: list[str]
    source: str = "embedded"

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return _short_repr(self, {"source_name": self.source_name, "x": self.x,
                                  "source": self.source})


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
    return Path(root).expanduser() if root is not None else default_root()


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
        f"({str(EMBEDDED_DIR / (name + '.npz'))}); pass root= to draw subsets from the "
        "official files"))
    images, labels = arrays["images"], arrays["labels"]
    tr, te = arrays["train_index"], arrays["test_index"]
    return Dataset(
        name=name, x_train=preprocess(images[tr]),
        y_train=torch.from_numpy(labels[tr].astype(np.int64)),
        x_test=preprocess(images[te]), y_test=torch.from_numpy(labels[te].astype(np.int64)),
        n_classes=10, class_names=list(CLASS_NAMES[name]), source="embedded",
        train_index=tr.copy(), test_index=te.copy())


def load(name: str, seed: int = 0, subset: float = 0.1, root=None,
         download: bool = False) -> Dataset:
    """Load the stratified training and validation subsets of a dataset.

    Parameters
    ----------
    name : {"mnist", "fmnist", "cifar10"}
    seed : int, default 0
        Seed of the stratified draw (:func:`stratified_indices`, applied to the
        official train split for ``x_train`` and to the official test split for
        ``x_test``). The embedded data is one fixed draw, the paper's 10 % made once
        with seed 0, so with it ``seed`` changes nothing; the glitches and the
        training still vary with the run's seed.
    subset : float, default 0.1
        Share of each official split to keep, in ``(0, 1]``
        (``round(subset * n)`` samples, proportional per class). The embedded data
        only offers 0.1; other shares need ``root=`` or ``download=True``.
    root : str or path, optional
        Folder with the official files: ``root/MNIST/raw/*-ubyte[.gz]``,
        ``root/FashionMNIST/raw/...``, ``root/cifar-10-batches-py/`` (torchvision's
        layout), or a folder holding the four IDX files of ``name`` directly (such as
        Debian's ``/usr/share/datasets/fashion-mnist``).
    download : bool, default False
        Fetch missing files with torchvision's downloaders into ``root`` (default
        ``~/.cache/glitchlib/data``).

    Returns
    -------
    Dataset
        float32 ``N x C x H x W`` images in ``[-1, 1]`` and int64 labels.

    Raises
    ------
    ValueError
        Unknown ``name``, bad ``seed`` or ``subset``, or corrupt files.
    FileNotFoundError
        ``root`` (or, for CIFAR-10, the default folder) lacks the files.
    RuntimeError
        ``download=True`` failed (e.g. no internet); the message says where to put
        the files by hand.
    """
    download = _check_flag(download, "download")
    name = _check_name(name)
    seed = _check_seed(seed)
    subset = _check_subset(subset)
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
        index = stratified_indices(labels, subset, seed)
        parts[split] = (preprocess(images[index]), torch.from_numpy(labels[index]), index)
    return Dataset(
        name=name, x_train=parts["train"][0], y_train=parts["train"][1],
        x_test=parts["test"][0], y_test=parts["test"][1], n_classes=10,
        class_names=list(CLASS_NAMES[name]),
        source=f"{str(directory)} (subset={subset:g}, seed={seed})",
        train_index=parts["train"][2], test_index=parts["test"][2])


def load_ood(name: str, seed: int = 0, root=None, download: bool = False) -> OODPool:
    """The out-of-distribution pool from which anomalies of ``name`` are drawn.

    The pool is the test split of ``OOD_SOURCE[name]`` (MNIST runs get Fashion-MNIST,
    Fashion-MNIST runs get MNIST, CIFAR-10 runs get Fashion-MNIST; SPEC.md section 2),
    converted to ``name``'s image shape (bilinear resize, grey channel repeated; see
    :func:`match_image_shape`) and normalised.

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
    x = match_image_shape(preprocess(images), IMAGE_SHAPE[name])
    return OODPool(x=x, y=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                   source_name=source_name, class_names=list(CLASS_NAMES[source_name]),
                   source=source)
