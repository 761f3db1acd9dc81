"""Image preprocessing shared by the loaders and the anomaly injector.

All images in glitchlib are float32 tensors ``N x C x H x W`` normalised as in
SPEC.md section 1: ``ToTensor()`` (uint8 / 255) followed by
``Normalize(mean=0.5, std=0.5)`` per channel, so values lie in ``[-1, 1]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["preprocess", "denormalize", "match_image_shape"]

#: Weights of ITU-R BT.601 luma, as PIL's ``convert("L")`` uses them.
_LUMA = (0.299, 0.587, 0.114)


def preprocess(images: np.ndarray) -> torch.Tensor:
    """Turn uint8 images into normalised float32 tensors (SPEC.md section 1).

    Parameters
    ----------
    images : numpy.ndarray of uint8
        ``N x H x W`` (grey) or ``N x C x H x W`` (channels first).

    Returns
    -------
    torch.Tensor
        float32 ``N x C x H x W`` with ``(images / 255 - 0.5) / 0.5`` in ``[-1, 1]``;
        the same operations, in the same order and precision, as torchvision's
        ``ToTensor()`` followed by ``Normalize((0.5,), (0.5,))``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape N x H x W or N x C x H x W, got {images.shape}")
    x = torch.from_numpy(images.astype(np.float32)).div(255)  # astype: a writable copy
    return x.sub(0.5).div(0.5)


def denormalize(x):
    """Map normalised images back to ``[0, 1]`` for plotting.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        Normalised images (any shape), values nominally in ``[-1, 1]``.

    Returns
    -------
    Same type as ``x``
        ``x * 0.5 + 0.5`` clipped to ``[0, 1]``.
    """
    if isinstance(x, torch.Tensor):
        return (x * 0.5 + 0.5).clamp(0.0, 1.0)
    return np.clip(np.asarray(x) * 0.5 + 0.5, 0.0, 1.0)


def match_image_shape(x: torch.Tensor, *, shape: Sequence[int]) -> torch.Tensor:
    """Resize and channel-match images to ``shape = (C, H, W)``.

    Resizing is bilinear (``torch.nn.functional.interpolate``, ``align_corners=False``,
    with antialiasing as ``torchvision.transforms.Resize`` does, which only matters when
    shrinking). Channels: one grey channel is repeated to three (SPEC.md section 1);
    three channels become one grey channel with the ITU-R BT.601 luma weights
    (0.299, 0.587, 0.114), as PIL's ``convert("L")``. Both operations are linear, so
    they commute with the normalisation and can be applied to normalised images.

    Parameters
    ----------
    x : torch.Tensor
        float ``N x C x H x W``.
    shape : sequence of 3 ints
        Target ``(C, H, W)``.

    Returns
    -------
    torch.Tensor
        ``N x shape[0] x shape[1] x shape[2]``, same dtype as ``x``; ``x`` itself when it
        already has that shape.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError("x must be a float tensor of shape N x C x H x W")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {shape}")
    channels, height, width = shape
    if tuple(x.shape[2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear",
                          align_corners=False, antialias=True)
    if x.shape[1] != channels:
        if x.shape[1] == 1:
            x = x.repeat(1, channels, 1, 1)
        elif x.shape[1] == 3 and channels == 1:
            weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
            x = (x * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        else:
            raise ValueError(
                f"cannot convert {x.shape[1]} channels to {channels}; "
                "only 1 -> C (repeat) and 3 -> 1 (grey) are defined")
    return x
