"""Training the suffix: plain SGD, cross-entropy, shuffled mini-batches, one checkpoint per epoch.

SPEC.md section 1.  ``fit`` trains a copy of the trainable suffix of a
``GlitchModel`` on precomputed prefix features (``glitchlib.features``) and keeps,
after every epoch, a ``Checkpoint``: the suffix's parameters and buffers and the
learning rate of that epoch, which is exactly what TracIn needs (SPEC.md section 3).

Mode of the suffix during training: ``train()`` (as in the paper's code), so a
batch-norm layer inside the suffix (``layer3.2`` of ResNet-20, or every layer of a
from-scratch model) normalises with batch statistics and updates its running
statistics; dropout in a from-scratch suffix is active.  The checkpoints store the
running statistics, and influence is computed later in eval mode, i.e. on the
model as it would be used for prediction.  The frozen prefix is always in eval
mode (see ``glitchlib.models.GlitchModel``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from collections.abc import Mapping
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import _validation
from .features import _atomic_save, _tensor_sha256
from .settings import TrainSettings

__all__ = ["Checkpoint", "TrainResult", "fit", "evaluate_accuracy", "load_checkpoints"]

_FILE = re.compile(r"^epoch_(\d{3,})\.pt$")
#: sha256 of every checkpoint file as written, so a resumed run starts from verified epochs only.
CHECKSUMS_FILE = "checksums.json"

log = logging.getLogger(__name__)


class Checkpoint(NamedTuple):
    """Weights after one epoch and the learning rate used in it (SPEC.md section 3).

    ``state_dict`` holds every parameter and buffer of the suffix (CPU tensors),
    so ``suffix.load_state_dict(checkpoint.state_dict)`` restores it.
    """

    state_dict: dict[str, torch.Tensor]
    learning_rate: float


class TrainResult(NamedTuple):
    """Output of ``fit``.

    Attributes
    ----------
    checkpoints : list of Checkpoint
        One per epoch, in order.
    history : pandas.DataFrame
        Columns ``epoch`` (1-based), ``train_loss`` (mean cross-entropy over the
        epoch's batches, weighted by batch size, in train mode), ``train_acc``
        (accuracy over the same batches, as they were trained), ``val_acc``
        (accuracy on ``x_test``, ``y_test``, the validation set, after the epoch, eval mode; NaN without one).
    final_model : nn.Module
        The trained copy of the suffix, in eval mode, on the training device.
    """

    checkpoints: list[Checkpoint]
    history: pd.DataFrame
    final_model: nn.Module


def _settings_dict(settings, name: str = "settings") -> dict[str, object]:
    """``lr``, ``batch_size`` and ``epochs`` of a ``TrainSettings``, a mapping or any object, checked by value.

    A mapping holds ``TrainSettings``' fields only: a key it does not know (a
    misspelling, ``momentum``) is refused rather than ignored.
    """
    if isinstance(settings, Mapping):
        values = dict(settings)
        accepted = [f.name for f in dataclasses.fields(TrainSettings)]
        unknown = [k for k in values if k not in accepted]
        if unknown:
            raise _validation.ArgumentError(
                name, settings, f"unknown key(s) {', '.join(map(repr, unknown))}; "
                f"the accepted keys are {', '.join(accepted)} (plain SGD: no momentum, no weight decay)")
    elif hasattr(settings, "to_dict"):
        values = settings.to_dict()
    else:
        values = {k: getattr(settings, k) for k in ("lr", "batch_size", "epochs") if hasattr(settings, k)}
    missing = [k for k in ("lr", "batch_size", "epochs") if k not in values]
    if missing:
        raise ValueError(f"{name} lacks {', '.join(missing)}; pass a TrainSettings(lr=..., batch_size=..., "
                         "epochs=...) or a mapping with these keys")
    return {"lr": _validation.as_positive(values["lr"], "lr"),
            "batch_size": _validation.as_int(values["batch_size"], "batch_size", low=1),
            "epochs": _validation.as_int(values["epochs"], "epochs", low=1)}


def _state_sha(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(_tensor_sha256(value).encode())
    return digest.hexdigest()


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device=None,
                      batch_size: int = 512) -> float:
    """Share of ``x`` whose argmax logit equals ``y``, with ``model`` in eval mode."""
    device = _validation.as_device(device, optional=True)
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(x) if len(x) else float("nan")


def _saved_epochs(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _FILE.match(p.name)))


def load_checkpoints(checkpoint_dir: str | os.PathLike) -> list[Checkpoint]:
    """The per-epoch checkpoints a ``fit`` run persisted in ``checkpoint_dir``, in epoch order."""
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint_dir={str(checkpoint_dir)!r} does not exist.")
    out = []
    for epoch in _saved_epochs(directory):
        saved = torch.load(directory / f"epoch_{epoch:03d}.pt", map_location="cpu", weights_only=True)
        out.append(Checkpoint(saved["state_dict"], float(saved["learning_rate"])))
    return out


def _check_inputs(x_train, y_train, x_test, y_test) -> None:
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x is not None and not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if x is not None and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values; pass finite inputs")
    if len(x_train) != len(y_train) or len(x_train) == 0:
        raise ValueError(f"x_train ({len(x_train)}) and y_train ({len(y_train)}) need the same, "
                         "non-zero length.")
    if (x_test is None) != (y_test is None) or (x_test is not None and len(x_test) != len(y_test)):
        raise ValueError("x_test and y_test must both be given (same length) or both be None.")
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if y is not None and (not isinstance(y, torch.Tensor) or y.dtype != torch.int64):
            raise ValueError(f"{name} must be an int64 torch tensor of class indices.")


def fit(
    suffix: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor | None,
    y_test: torch.Tensor | None,
    *,
    settings,
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a copy of ``suffix`` with plain SGD and cross-entropy; one checkpoint per epoch.

    Parameters
    ----------
    suffix : nn.Module
        The trainable part (``GlitchModel.suffix``), initialised (the head by
        ``create``'s seed).  It is not modified: a deep copy is trained.
    x_train : torch.Tensor
        Suffix inputs ``(n_train, ...)``: prefix features from
        ``glitchlib.features.compute_features`` (or images for an unfrozen model).
    y_train : torch.Tensor
        int64 ``(n_train,)`` labels as given (possibly noisy).
    x_test, y_test : torch.Tensor or None
        The clean held-out set (the library's test split, used for validation):
        inputs as ``x_train`` and int64 labels; the accuracy on it after every epoch
        is the history's ``val_acc``.  It never influences training.
    settings : TrainSettings or mapping
        Keyword-only, like every option of the library: ``lr`` (a finite
        number > 0), ``batch_size`` and ``epochs`` (integers >= 1),
        any numeric type, checked by value. A mapping may also hold
        ``TrainSettings``' ``source`` and ``notes``; any other key is refused.  SGD has no momentum and no weight
        decay; the learning rate is constant and stored in every checkpoint.
    seed : int
        Seeds the batch order (a ``torch.Generator``; a new permutation each epoch;
        the last batch may be smaller) and the RNG of dropout, if any.  The
        caller's global RNG state is left untouched.
    device : str or torch.device, optional
        Where to train (``None``: CPU): ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``
        or ``"mps"``, one this machine has.  Checkpoints are CPU tensors.
    checkpoint_dir : path-like, optional
        Directory where each epoch is saved atomically as ``epoch_NNN.pt`` with the
        optimizer and RNG states, its sha256 in ``checksums.json``.  A later call
        with the same directory, inputs, settings, seed and initial suffix resumes
        after the last saved epoch and gives the same checkpoints as an
        uninterrupted run; epochs already saved are reused (also when fewer epochs
        are asked for). Only epochs ``1..k`` whose files match their recorded
        sha256 are reused: the first missing, unreadable or altered epoch and every
        later one are deleted (with a warning) and trained again.
    progress : bool
        Show a tqdm bar over epochs.

    Returns
    -------
    TrainResult
        ``checkpoints`` (one per epoch), ``history`` and ``final_model``.

    Raises
    ------
    ValueError
        Inconsistent inputs, bad settings (NaN or infinite ``lr`` and unknown
        keys included; the message names the field), a bad ``seed``, a ``device``
        this machine does not have, or a ``checkpoint_dir`` holding a run
        with other inputs, settings, seed or initial weights.
    """
    _check_inputs(x_train, y_train, x_test, y_test)
    config = _settings_dict(settings)
    seed = _validation.as_seed(seed)
    progress = _validation.as_bool(progress, "progress")
    device = _validation.as_device(device, optional=True)
    model = copy.deepcopy(suffix).to(device)
    fingerprint = {
        "settings": {k: config[k] for k in ("lr", "batch_size")},
        "seed": seed,
        "x_train": _tensor_sha256(x_train),
        "y_train": _tensor_sha256(y_train),
        "initial_suffix": _state_sha(model),
    }
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config["lr"], momentum=0.0, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return _run(model, optimizer, generator, fingerprint, config, x_train, y_train, x_test,
                    y_test, device, checkpoint_dir, progress)


def _run(model, optimizer, generator, fingerprint, config, x_train, y_train, x_test, y_test,
         device, checkpoint_dir, progress) -> TrainResult:
    checkpoints: list[Checkpoint] = []
    rows: list[dict[str, float]] = []
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        checkpoints, rows = _resume(directory, fingerprint, config["epochs"], model, optimizer,
                                    generator, device)
    lr, batch_size, n = config["lr"], config["batch_size"], len(x_train)
    bar = tqdm(range(len(checkpoints) + 1, config["epochs"] + 1), desc="epochs", disable=not progress,
               leave=False, initial=len(checkpoints), total=config["epochs"])
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            xb, yb = x_train[index].to(device), y_train[index].to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.detach().argmax(1) == yb).sum())
        val_acc = float("nan") if x_test is None else evaluate_accuracy(
            model, x_test, y_test, device=device, batch_size=max(512, batch_size))
        rows.append({"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
                     "val_acc": val_acc})
        checkpoints.append(Checkpoint(_cpu_state(model), float(lr)))
        bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", val_acc=f"{val_acc:.3f}")
        if directory is not None:
            name = f"epoch_{epoch:03d}.pt"
            _atomic_save(_interned({
                "fingerprint": fingerprint, "epoch": epoch, "state_dict": checkpoints[-1].state_dict,
                "learning_rate": float(lr), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "rng": _rng_state(device), "history": rows,
            }), directory / name)
            _record_checksum(directory, name)
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "train_acc", "val_acc"])
    return TrainResult(checkpoints, history.astype({"epoch": "int64"}), model)


def _interned(obj):
    """``obj`` with every string interned: pickled to the same bytes whether its strings were
    created here or read back from a checkpoint (pickle shares equal objects, not equal strings)."""
    if type(obj) is str:
        return sys.intern(obj)
    if type(obj) is dict:
        return {_interned(k): _interned(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_interned(v) for v in obj)
    return obj


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _read_checksums(directory: Path) -> dict[str, str]:
    try:
        with open(directory / CHECKSUMS_FILE, encoding="utf-8") as f:
            checksums = json.load(f)
    except (OSError, ValueError):
        return {}
    return checksums if isinstance(checksums, dict) else {}


def _record_checksum(directory: Path, name: str) -> None:
    from .store import sha256_file, write_json

    checksums = _read_checksums(directory)
    checksums[name] = sha256_file(directory / name)
    write_json(directory / CHECKSUMS_FILE, dict(sorted(checksums.items())))


def _verified_epochs(directory: Path) -> list[int]:
    """Epochs 1..k whose files match their recorded sha256; later epoch files are deleted."""
    from .store import sha256_file

    checksums = _read_checksums(directory)
    saved = _saved_epochs(directory)
    verified = 0
    for epoch in range(1, len(saved) + 1):
        name = f"epoch_{epoch:03d}.pt"
        path = directory / name
        if epoch not in saved or checksums.get(name) is None or sha256_file(path) != checksums[name]:
            break
        verified = epoch
    dropped = [e for e in saved if e > verified]
    if dropped:
        log.warning("checkpoint_dir=%s: epoch %d is missing, unverified or altered; deleting epochs %s "
                    "and training them again", directory, verified + 1, dropped)
        for epoch in dropped:
            (directory / f"epoch_{epoch:03d}.pt").unlink(missing_ok=True)
    return list(range(1, verified + 1))


def _resume(directory, fingerprint, epochs, model, optimizer, generator, device):
    """Load saved epochs 1..k (k <= epochs) and restore the training state after epoch k."""
    saved = _verified_epochs(directory)
    checkpoints, states = [], []
    for epoch in saved[:epochs]:
        state = torch.load(directory / f"epoch_{epoch:03d}.pt", map_location="cpu", weights_only=True)
        if state["fingerprint"] != fingerprint:
            raise ValueError(
                f"checkpoint_dir={str(directory)!r} holds a run with other inputs, settings, seed "
                "or initial weights; use another (or an empty) directory.")
        checkpoints.append(Checkpoint(state["state_dict"], float(state["learning_rate"])))
        states.append(state)
    if not states:
        return [], []
    last = states[-1]
    model.load_state_dict(last["state_dict"])
    optimizer.load_state_dict(last["optimizer"])
    generator.set_state(last["generator"])
    torch.set_rng_state(last["rng"]["cpu"])
    if device.type == "cuda" and "cuda" in last["rng"]:
        torch.cuda.set_rng_state(last["rng"]["cuda"], device)
    return checkpoints, [dict(row) for row in last["history"]]
