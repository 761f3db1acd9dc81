"""Reading the official dataset files, and fetching them with torchvision."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

#: Sub-folder that torchvision's downloaders create under ``root``.
TORCHVISION_FOLDER = {"mnist": "MNIST", "fmnist": "FashionMNIST"}
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCHES = ("test_batch",)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DISPLAY_NAME = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def default_root() -> Path:
    """Folder used by ``download=True`` when no ``root`` is given."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glitchlib" / "data"


# --------------------------------------------------------------------- IDX

def _idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(name: str, root: Path) -> Path | None:
    """Folder holding the four IDX files of ``name`` under ``root``, or None.

    Looked up, in order: ``root/MNIST/raw`` (``root/FashionMNIST/raw``), as torchvision
    lays them out, then ``root`` itself (e.g. Debian's ``/usr/share/datasets/fashion-mnist``).
    Every file may be gzip-compressed (``.gz``) or not.
    """
    stems = [s for pair in IDX_FILES.values() for s in pair]
    for directory in (root / TORCHVISION_FOLDER[name] / "raw", root):
        if all(_idx_file(directory, s) is not None for s in stems):
            return directory
    return None


def _idx_instructions(name: str, root: Path) -> str:
    folder = root / TORCHVISION_FOLDER[name] / "raw"
    stems = ", ".join(s + "[.gz]" for pair in IDX_FILES.values() for s in pair)
    return (f"put {stems} into {str(folder)!r} (torchvision's layout) or directly "
            f"into {str(root)!r}")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (magic 0x0801 or 0x0803), gzip or plain."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc}; replace the file") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise ValueError(f"{str(path)!r} is not an IDX file of unsigned bytes "
                         "(bad magic number); replace the file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise ValueError(f"{str(path)!r} is truncated or corrupt: header says shape "
                         f"{shape}, file holds {len(raw) - header} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 ``N x 28 x 28``) and labels (int64) of one split."""
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = _idx_file(directory, image_stem), _idx_file(directory, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"{str(image_path)!r} / {str(label_path)!r}: expected N x H x W "
                         f"images and N labels, got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{str(image_path)!r} holds {len(images)} images but "
                         f"{str(label_path)!r} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{str(label_path)!r} holds labels above 9; replace the file")
    return images, labels.astype(np.int64)


# ----------------------------------------------------------------- CIFAR-10

def find_cifar_dir(root: Path) -> Path | None:
    """``root/cifar-10-batches-py`` (or ``root`` itself) when it holds all six batches."""
    names = CIFAR_TRAIN_BATCHES + CIFAR_TEST_BATCHES
    for directory in (root / CIFAR_FOLDER, root):
        if all((directory / b).is_file() for b in names):
            return directory
    return None


def _cifar_instructions(root: Path) -> str:
    return (f"download {CIFAR_URL} and extract it into {str(root)!r} (giving "
            f"{str(root / CIFAR_FOLDER)!r} with data_batch_1..5 and test_batch)")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch of the official python version: uint8 ``N x 3 x 32 x 32``, int64 labels.

    The batches are Python pickles, as distributed by their authors; only load files
    from a source you trust.
    """
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except Exception as exc:  # unpickling raises many types on corrupt input
        raise ValueError(f"cannot read CIFAR-10 batch {str(path)!r}: {exc}; "
                         "replace the file") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{str(path)!r} is not a CIFAR-10 batch (no dictionary inside)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{str(path)!r} is not a CIFAR-10 batch: keys 'data' and "
                         f"'labels' expected, found {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{str(path)!r}: 'data' must be uint8 N x 3072, got "
                         f"{data.dtype} {data.shape}")
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{str(path)!r}: 'labels' must hold one class in 0..9 per image")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    batches = CIFAR_TRAIN_BATCHES if split == "train" else CIFAR_TEST_BATCHES
    parts = [read_cifar_batch(directory / b) for b in batches]
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]))


# ----------------------------------------------------------------- reading

def find_files(name: str, root: Path) -> Path | None:
    return find_cifar_dir(root) if name == "cifar10" else find_idx_dir(name, root)


def instructions(name: str, root: Path) -> str:
    """How to put the official files of ``name`` under ``root`` by hand."""
    return _cifar_instructions(root) if name == "cifar10" else _idx_instructions(name, root)


def missing_message(name: str, root: Path) -> str:
    return (f"root={str(root)!r} holds no complete {DISPLAY_NAME[name]} files: "
            f"{instructions(name, root)}, or pass download=True")


def read_split(name: str, directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (``N x 28 x 28`` or ``N x 3 x 32 x 32``) and int64 labels."""
    if name == "cifar10":
        return read_cifar_split(directory, split)
    return read_idx_split(directory, split)


# ----------------------------------------------------------------- download

def download(name: str, root: Path) -> None:
    """Fetch ``name`` into ``root`` with torchvision's downloader (needs internet)."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fmnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(root=str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
        raise RuntimeError(
            f"could not download {DISPLAY_NAME[name]} into {str(root)!r} ({exc}). "
            f"Without internet access, {instructions(name, root)}, then call again with "
            f"root={str(root)!r} and download=False") from exc
    if find_files(name, root) is None:
        raise RuntimeError(f"torchvision reported success but {missing_message(name, root)}")
