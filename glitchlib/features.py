"""Frozen-prefix features: ``model.prefix(x)`` computed once per input and cached on disk.

The prefix of a ``GlitchModel`` is frozen and in eval mode, so its output for a
given input never changes.  Training (``glitchlib.train.fit``) and every later
gradient computation (TracIn) therefore run on the trainable suffix alone, fed
with these features; the backbone costs one forward pass per image in total.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["compute_features", "feature_cache_key", "tensor_sha256"]

_FORMAT = 1


def tensor_sha256(x: torch.Tensor) -> str:
    """sha256 (hex) of a tensor's dtype, shape and bytes (C order, on the CPU)."""
    array = x.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{array.dtype}|{tuple(array.shape)}|".encode())
    if array.numel():
        digest.update(array.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def feature_cache_key(model: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """What identifies a feature tensor: model name, weights, input size, input content."""
    return {
        "format": _FORMAT,
        "model": getattr(model, "name", type(model).__name__),
        "weights_id": getattr(model, "weights_id", None),
        "input_size": getattr(model, "input_size", None),
        "inputs_sha256": tensor_sha256(x),
    }


def _cache_path(cache_dir: Path, key: dict[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    model = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(key["model"]))
    return cache_dir / f"features_{model}_{digest}.pt"


def _atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@torch.no_grad()
def _forward(prefix: nn.Module, x: torch.Tensor, device, batch_size: int, progress: bool) -> torch.Tensor:
    prefix = prefix.to(device).eval()
    chunks = []
    for start in tqdm(range(0, len(x), batch_size), desc="features", disable=not progress,
                      unit="batch", leave=False):
        batch = x[start:start + batch_size].to(device, dtype=torch.float32)
        chunks.append(prefix(batch).float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def compute_features(
    model: nn.Module,
    x: torch.Tensor,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Output of the frozen prefix, ``model.prefix(x)``, computed in batches and cached.

    Parameters
    ----------
    model : GlitchModel
        Needs ``.prefix``; ``.name``, ``.weights_id`` and ``.input_size`` key the cache.
    x : torch.Tensor
        Images ``(N, C, H, W)``, normalised to [-1, 1].
    device : str or torch.device, optional
        Where the prefix runs (``None``: CPU).  The prefix is moved there.
    batch_size : int
        Images per forward pass.
    cache_dir : path-like, optional
        Directory of the cache.  The file name hashes (model name, weights id,
        input size, sha256 of ``x``'s bytes); files are written atomically (a
        temporary file, then ``os.replace``), so concurrent runs never see partial
        files.  ``None`` disables the cache.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    torch.Tensor
        float32 on the CPU, ``(N, *feature_shape)``, e.g. ``(N, 1280)`` for
        ``efficientnet_lite0`` and ``(N, 64, 7, 7)`` for ``resnet20`` on 28x28 images.
        When the prefix is ``nn.Identity`` (an unfrozen model) this is ``x`` itself
        as float32, not cached.
    """
    if not hasattr(model, "prefix"):
        raise ValueError("model has no .prefix; pass a GlitchModel from glitchlib.models.create.")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of images (N, C, H, W).")
    from ._validation import as_bool, as_int

    batch_size = as_int(batch_size, "batch_size", low=1)
    progress = as_bool(progress, "progress")
    device = torch.device("cpu") if device is None else torch.device(device)
    if isinstance(model.prefix, nn.Identity):
        return x.detach().cpu().float()
    path = None
    if cache_dir is not None:
        key = feature_cache_key(model, x)
        path = _cache_path(Path(cache_dir), key)
        if path.is_file():
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.get("key") == key and len(stored["features"]) == len(x):
                return stored["features"]
    features = _forward(model.prefix, x, device, batch_size, progress)
    if path is not None:
        _atomic_save({"key": key, "features": features}, path)
    return features
