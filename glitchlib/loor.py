"""Leave-one-out retraining (LOOR), the reference that influence estimates approximate (SPEC.md section 9.8).

``LOOR[i, j] = loss_j(without i) - loss_j(all)``: the change of validation sample
``j``'s cross-entropy when the model is trained again without training sample
``i``. Positive means ``i`` was helping ``j`` (it lowered ``j``'s loss), the sign
of TracIn's ``I[i, j]``.

What "without ``i``" means here, so that the only difference between the two
trainings is sample ``i``'s term:

* the same initial weights, learning rate, batch size and number of epochs;
* the same batches: every epoch draws the permutation of all ``n`` samples that
  ``glitchlib.train.fit`` draws (``torch.randperm`` of one ``torch.Generator``
  seeded with ``seed``), and the batch holding ``i`` loses it;
* that batch keeps its divisor: its loss is the summed cross-entropy of the
  remaining samples divided by the batch's original size, so the step is the
  full run's step minus ``i``'s gradient (a batch left empty takes no step).

Without a removal, :func:`retrain` is ``glitchlib.train.fit`` bit for bit.
Every retraining runs on one thread, so that the numbers do not depend on the
number of processes of :func:`leave_one_out`.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import _validation
from .train import _settings_dict

__all__ = ["LeaveOneOut", "leave_one_out", "retrain", "row_correlations"]


class LeaveOneOut(NamedTuple):
    """Output of :func:`leave_one_out`.

    Attributes
    ----------
    matrix : numpy.ndarray
        float64 ``k x m``: ``matrix[r, j] = loss_j(without indices[r]) - loss_j(all)``.
    indices : numpy.ndarray
        int64 ``(k,)``: the training samples left out, positions in ``x_train``.
    losses : numpy.ndarray
        float64 ``(m,)``: ``loss_j(all)``, the validation losses of the model trained on all samples.
    seconds : float
        Wall-clock time of the ``k + 1`` trainings.
    n_jobs : int
        Processes used.
    """

    matrix: np.ndarray
    indices: np.ndarray
    losses: np.ndarray
    seconds: float
    n_jobs: int


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _config(settings: Any) -> tuple[float, int, int]:
    """``lr``, ``batch_size``, ``epochs`` checked as ``glitchlib.train.fit`` checks them."""
    config = _settings_dict(settings)
    return config["lr"], config["batch_size"], config["epochs"]


def retrain(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    *,
    settings: Any,
    seed: int = 0,
    remove: int | None = None,
) -> nn.Module:
    """Train a copy of ``model`` as ``glitchlib.train.fit`` does, optionally without one sample.

    Parameters
    ----------
    model : nn.Module
        Initial model (not modified).
    x_train : Tensor
        Inputs ``n x ...``.
    y_train : Tensor
        int64 labels ``(n,)``.
    settings : TrainSettings or mapping
        ``lr``, ``batch_size``, ``epochs`` (plain SGD, constant learning rate),
        checked as ``glitchlib.train.fit`` checks them: a mapping with any other
        key than ``TrainSettings``' fields is refused.
    seed : int
        Seed of the batch order (and of dropout), as in ``fit``.
    remove : int, optional
        Position of the training sample left out (see the module docstring for
        how its batch is treated). None trains on every sample.

    Returns
    -------
    nn.Module
        The trained copy, in eval mode.

    Raises
    ------
    ValueError
        Inconsistent inputs or settings, or ``remove`` outside ``[0, n)``.
    """
    lr, batch_size, epochs = _config(settings)
    seed = _validation.as_seed(seed)
    n = len(x_train)
    if n == 0 or len(y_train) != n:
        raise ValueError(f"x_train ({n}) and y_train ({len(y_train)}) need the same, non-zero length")
    if remove is not None and not 0 <= int(remove) < n:
        raise ValueError(f"remove={remove}: need a training sample position in [0, {n})")
    model = copy.deepcopy(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                index = order[start:start + batch_size]
                if remove is not None and bool((index == remove).any()):
                    keep = index[index != remove]
                    if len(keep) == 0:
                        continue
                    loss = F.cross_entropy(model(x_train[keep]), y_train[keep], reduction="sum") / len(index)
                else:
                    loss = F.cross_entropy(model(x_train[index]), y_train[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return model.eval()


@torch.no_grad()
def _sample_losses(model: nn.Module, x: Tensor, y: Tensor) -> np.ndarray:
    """Cross-entropy of every sample, ``(m,)`` float64, with ``model`` in eval mode."""
    model.eval()
    return F.cross_entropy(model(x), y, reduction="none").double().numpy()


# ---------------------------------------------------------------- processes
_PAYLOAD: dict[str, Any] = {}


def _set_payload(payload: dict[str, Any]) -> None:
    _PAYLOAD.clear()
    _PAYLOAD.update(payload)


def _losses_without(indices: Sequence[int | None]) -> np.ndarray:
    """Validation losses ``len(indices) x m`` of the retrainings without each index (None: all samples)."""
    p = _PAYLOAD
    with _one_thread():
        rows = [_sample_losses(retrain(p["model"], p["x_train"], p["y_train"], settings=p["settings"],
                                       seed=p["seed"], remove=None if i is None else int(i)),
                               p["x_test"], p["y_test"])
                for i in indices]
    return np.stack(rows)


def _removal_indices(n_train: int, n_removed: int | None, seed: int) -> np.ndarray:
    """Training samples to leave out: all of them (``n_removed=None``) or a seeded uniform subset, sorted.

    The subset is ``numpy.random.default_rng(seed).choice(n_train, n_removed, replace=False)``.
    """
    if n_removed is None or n_removed >= n_train:
        return np.arange(n_train, dtype=np.int64)
    if n_removed < 1:
        raise ValueError(f"n_removed={n_removed}: need a positive number of samples or None (all)")
    return np.sort(np.random.default_rng(seed).choice(n_train, n_removed, replace=False)).astype(np.int64)


def _default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def leave_one_out(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    settings: Any,
    seed: int = 0,
    indices: Sequence[int] | np.ndarray | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
) -> LeaveOneOut:
    """Leave-one-out retraining: ``LOOR[i, j] = loss_j(without i) - loss_j(all)`` (SPEC.md section 9.8).

    Parameters
    ----------
    model : nn.Module
        The initial model; every retraining starts from these weights.
    x_train, y_train : Tensor
        Training set, ``n x ...`` and int64 ``(n,)``.
    x_test, y_test : Tensor
        Validation set, ``m x ...`` and int64 ``(m,)``.
    settings : TrainSettings or mapping
        ``lr``, ``batch_size``, ``epochs``, as in :func:`retrain`.
    seed : int
        Seed of the batch order, shared by every retraining.
    indices : sequence of int, optional
        Training samples to leave out (default: every one).
    n_jobs : int, optional
        Worker processes (default: the CPU cores available). ``1`` runs in this
        process. The result does not depend on it.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    LeaveOneOut
        ``matrix`` ``k x m`` (positive: sample ``i`` lowered loss ``j``), ``indices``,
        the losses of the full training, the seconds it took.

    Raises
    ------
    ValueError
        Inconsistent inputs or settings, an index outside ``[0, n)``, a bad ``n_jobs``.
    """
    _config(settings)
    seed = _validation.as_seed(seed)
    progress = _validation.as_bool(progress, "progress")
    n = len(x_train)
    if len(y_train) != n or len(x_test) != len(y_test) or n == 0:
        raise ValueError(f"x_train/y_train ({n}/{len(y_train)}) and x_test/y_test ({len(x_test)}/{len(y_test)}) "
                         "need matching, non-zero lengths")
    indices = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"indices must be training sample positions in [0, {n})")
    n_jobs = _default_jobs() if n_jobs is None else n_jobs
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs!r}: need a positive integer or None (all cores)")
    n_jobs = min(n_jobs, max(1, len(indices)))
    payload = {"model": copy.deepcopy(model).cpu(), "x_train": x_train.cpu(), "y_train": y_train.cpu(),
               "x_test": x_test.cpu(), "y_test": y_test.cpu(), "settings": settings, "seed": seed}
    chunks = np.array_split(indices, min(len(indices), 8 * n_jobs)) if len(indices) else []
    tasks: list[list[int | None]] = [[None]] + [list(map(int, c)) for c in chunks if len(c)]
    start = time.perf_counter()
    results: list[np.ndarray | None] = [None] * len(tasks)
    with tqdm(total=len(indices) + 1, desc="leave-one-out retraining", disable=not progress) as bar:
        if n_jobs == 1:
            _set_payload(payload)
            try:
                for k, task in enumerate(tasks):
                    results[k] = _losses_without(task)
                    bar.update(len(task))
            finally:
                _PAYLOAD.clear()
        else:
            # fork, as torch's DataLoader workers do on Linux: no re-import, no main-module guard needed
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            with ProcessPoolExecutor(n_jobs, mp_context=context, initializer=_set_payload,
                                     initargs=(payload,)) as pool:
                futures = {pool.submit(_losses_without, task): k for k, task in enumerate(tasks)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(len(tasks[futures[future]]))
    seconds = time.perf_counter() - start
    base = results[0][0]
    rows = np.concatenate(results[1:]) if len(tasks) > 1 else np.zeros((0, len(x_test)))
    return LeaveOneOut(rows - base[None, :], indices, base, seconds, n_jobs)


def row_correlations(estimate: Any, reference: Any) -> np.ndarray:
    """Pearson correlation of each row of ``estimate`` with the same row of ``reference``.

    Parameters
    ----------
    estimate, reference : array-like
        ``k x m`` (e.g. TracIn's rows of the left-out samples and LOOR).

    Returns
    -------
    numpy.ndarray
        float64 ``(k,)`` in ``[-1, 1]``; higher means the estimate orders the
        validation samples more like the reference. NaN where a row is constant.
    """
    a, b = np.asarray(estimate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"estimate {a.shape} and reference {b.shape} must be matrices of the same shape")
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / norm
    return np.where(norm > 0, np.clip(r, -1.0, 1.0), np.nan)
