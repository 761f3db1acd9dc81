"""The containers every loader returns: a dataset's training and validation subsets, and the anomaly pool."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Dataset", "OODPool"]


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
    train_files, test_files : list of str or None
        For image folders (:func:`load_image_folder`, ImageWoof): the file of every
        sample, in tensor order.
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
    train_files: list[str] | None = field(default=None)
    test_files: list[str] | None = field(default=None)

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
