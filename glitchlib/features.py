"""Frozen-prefix features: ``model.prefix(x)`` computed once per input and cached on disk.

The prefix of a ``GlitchModel`` is frozen and in eval mode, so its output for a
given input never changes.  Training (``glitchlib.train.fit``) and every later
gradient computation (TracIn) therefore run on the trainable suffix alone, fed
with these features; the backbone costs one forward pass per image in total.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["compute_features"]

log = logging.getLogger(__name__)

_FORMAT = 1


def _tensor_sha256(x: torch.Tensor) -> str:
    """sha256 (hex) of a tensor's dtype, shape and bytes (C order, on the CPU)."""
    array = x.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{array.dtype}|{tuple(array.shape)}|".encode())
    if array.numel():
        digest.update(array.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _feature_cache_key(model: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """What identifies a feature tensor: model name, weights, input size, input content."""
    return {
        "format": _FORMAT,
        "model": getattr(model, "name", type(model).__name__),
        "weights_id": getattr(model, "weights_id", None),
        "input_size": getattr(model, "input_size", None),
        "inputs_sha256": _tensor_sha256(x),
    }


def _cache_path(cache_dir: Path, key: dict[str, object]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    model = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(key["model"]))
    return cache_dir / f"features_{model}_{digest}.pt"


def _atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` (atomic).

    Raises ``OSError`` naming ``path`` and the reason (full disk, not writable).
    """
    from .store import atomic_write

    atomic_write(path, lambda f: torch.save(obj, f))


def _read_cached(path: Path, key: dict[str, object] | None = None) -> tuple[torch.Tensor | None, str | None]:
    """The features of a cache file and ``None``, or ``None`` and why the file cannot be used.

    A usable file loads, holds ``key`` (when given; else the key its name hashes)
    and features whose sha256 matches the one stored beside them.
    """
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, zeroed, not a torch file
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(stored, dict) or not isinstance(stored.get("features"), torch.Tensor):
        return None, "not a feature cache file"
    if key is None and isinstance(stored.get("key"), dict) and _cache_path(path.parent, stored["key"]) != path:
        return None, "its key does not match its name"
    if key is not None and stored.get("key") != key:
        return None, "it holds the features of other inputs or another model"
    if "sha256" not in stored:
        return None, "it has no checksum (written by an older glitchlib)"
    if stored["sha256"] != _tensor_sha256(stored["features"]):
        return None, "its features do not match their sha256 (altered)"
    return stored["features"], None


def _cache_problems(cache_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """Damaged files of a feature cache: ``(path, why)`` for each (an empty list when all are intact).

    A damaged file is recomputed and replaced the next time its features are needed.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    problems = []
    for path in sorted(cache_dir.glob("features_*.pt")):
        _, problem = _read_cached(path)
        if problem:
            problems.append((path, problem))
    return problems


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
        Where the prefix runs (``None``: CPU): ``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"`` or ``"mps"``, one this machine has.  The prefix is moved there.
    batch_size : int
        Images per forward pass.
    cache_dir : path-like, optional
        Directory of the cache.  The file name hashes (model name, weights id,
        input size, sha256 of ``x``'s bytes); files are written atomically (a
        temporary file, then ``os.replace``), so concurrent runs never see partial
        files; each holds the sha256 of its features, checked on every load. A
        damaged file (unreadable, altered) is reported with a warning, recomputed
        and replaced.  ``None`` disables the cache.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    torch.Tensor
        float32 on the CPU, ``(N, *feature_shape)``, e.g. ``(N, 1280)`` for
        ``efficientnet_lite0`` and ``(N, 64, 7, 7)`` for ``resnet20`` on 28x28 images.
        When the prefix is ``nn.Identity`` (an unfrozen model) this is ``x`` itself
        as float32, not cached.

    Raises
    ------
    ValueError
        A ``model`` without a prefix, ``x`` not a tensor of images, a bad
        ``batch_size``, a ``device`` this machine does not have, or a
        ``cache_dir`` that exists and is not a directory.
    OSError
        The cache file cannot be written (full disk, not writable); the message
        names it.
    """
    if not hasattr(model, "prefix"):
        raise ValueError("model has no .prefix; pass a GlitchModel from glitchlib.models.create.")
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of images (N, C, H, W).")
    from ._validation import ArgumentError, as_bool, as_device, as_int, as_text

    batch_size = as_int(batch_size, "batch_size", low=1)
    progress = as_bool(progress, "progress")
    device = as_device(device, optional=True)
    if cache_dir is not None:
        cache_dir = as_text(cache_dir, "cache_dir")
        if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
            raise ArgumentError("cache_dir", cache_dir, "exists and is not a directory; pass a directory "
                                "(created if missing) or None for no cache")
    if isinstance(model.prefix, nn.Identity):
        return x.detach().cpu().float()
    path = None
    if cache_dir is not None:
        key = _feature_cache_key(model, x)
        path = _cache_path(Path(cache_dir), key)
        from .store import remove_orphans

        remove_orphans(path.parent)  # temporary files of killed writers on this host
        if path.is_file():
            features, problem = _read_cached(path, key)
            if problem is None and len(features) == len(x):
                return features
            log.warning("feature cache file %s cannot be used (%s); recomputing and replacing it",
                        path, problem or "other length")
    features = _forward(model.prefix, x, device, batch_size, progress)
    if path is not None:
        _atomic_save({"key": key, "features": features, "sha256": _tensor_sha256(features)}, path)
    return features
