"""Finding and identifying pretrained weights files.

Lookup order for a published checkpoint (``find_weights``):

1. ``weights=``: a local file given by the user;
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints/<file name>`` (where
   torchvision and ``torch.hub`` keep downloads; ``TORCH_HOME`` moves it);
3. the download URL, through ``torch.hub.load_state_dict_from_url``, which stores
   the file in the cache of step 2.

When none works, the error names the expected file, the URL and the ``weights=``
argument.  Before downloading, the host is probed with a short timeout, so that a
machine without network fails in seconds instead of hanging.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

__all__ = ["WeightsSpec", "find_weights", "load_state_dict", "weights_id"]

_CONNECT_TIMEOUT_S = 5.0
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class WeightsSpec:
    """A published checkpoint: model name, file name in the hub cache, download URL."""

    model: str
    filename: str
    url: str


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _probe(url: str, timeout: float = _CONNECT_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to the URL's host; raises OSError quickly offline."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname, port), timeout=timeout):
        pass


def _download(url: str, model_dir: Path, filename: str) -> None:
    """Download ``url`` into ``model_dir/filename`` (the torch hub cache)."""
    _probe(url)
    torch.hub.load_state_dict_from_url(
        url, model_dir=str(model_dir), map_location="cpu", progress=True, file_name=filename
    )


def find_weights(spec: WeightsSpec, weights: str | os.PathLike | None = None) -> Path:
    """Path of the weights file for ``spec``, downloading it if needed.

    Parameters
    ----------
    spec : WeightsSpec
        Expected file name and download URL.
    weights : path-like, optional
        A local weights file; used as is when given.

    Raises
    ------
    FileNotFoundError
        ``weights`` does not exist, or the file is neither in the hub cache nor
        downloadable; the message names the file, the URL and ``weights=``.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights={str(weights)!r}: no such file. Pass the path of a {spec.model} "
                f"state dict (published as {spec.filename} at {spec.url})."
            )
        return path
    cache_dir = _hub_checkpoint_dir()
    cached = cache_dir / spec.filename
    if cached.is_file():
        return cached
    try:
        _download(spec.url, cache_dir, spec.filename)
    except Exception as error:  # network errors come in many types
        raise FileNotFoundError(
            f"No pretrained weights for {spec.model}: expected the file {spec.filename} in the "
            f"torch hub cache ({cache_dir}) and could not download it from {spec.url} "
            f"({type(error).__name__}: {error}). Download the file on a machine with internet, "
            f"then pass its path as create(..., weights='/path/to/{spec.filename}') or copy it "
            f"into {cache_dir}; or use pretrained=False for random weights."
        ) from error
    if not cached.is_file():
        raise FileNotFoundError(f"Download of {spec.url} did not produce {cached}.")
    return cached


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict from ``path`` on the CPU (tensors only, ``weights_only``).

    A checkpoint ``{"state_dict": ...}`` is unwrapped, and the prefix that
    ``nn.DataParallel``/``DistributedDataParallel`` (``module.``) or ``torch.compile``
    (``_orig_mod.``) add to every key is removed.

    Raises
    ------
    ValueError
        The file cannot be read as a PyTorch state dict (the message names ``weights``).
    """
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises EOFError, UnpicklingError, RuntimeError, ...
        raise ValueError(
            f"weights={str(path)!r}: cannot be read as a PyTorch state dict ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}); pass a file written by "
            "torch.save(model.state_dict(), path)"
        ) from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"weights={str(path)!r}: does not hold a state dict (a mapping of names to tensors)")
    for prefix in ("module.", "_orig_mod."):  # nn.DataParallel / DistributedDataParallel, torch.compile
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def weights_id(path: str | os.PathLike) -> str:
    """``"sha256:<first 16 hex digits>"`` of the file's bytes (memoised per path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _SHA_CACHE[key] = "sha256:" + digest.hexdigest()[:16]
    return _SHA_CACHE[key]
