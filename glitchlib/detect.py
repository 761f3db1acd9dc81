"""Every signal in one call: influence engine in, table of scores out (SPEC.md sections 3-4).

:func:`compute_signals` asks an influence engine (e.g.
:class:`glitchlib.influence.TracIn`) for the four matrices the signals need,
each exactly once:

1. ``I = engine.train_test(x_train, y_train, x_test, y_test)`` and
   ``SI = engine.self_influence(x_train, y_train)``, in one pass through
   ``engine.train_test_and_self_influence`` when the engine has it;
2. the labels ``c*`` (NIL-opt argmin) and ``b`` (second largest positive class
   influence) from ``I``;
3. ``I* = cf.train_test(x_train, c*, ...)`` and ``I^b = cf.train_test(x_train, b, ...)``
   with ``cf = engine.last_checkpoint()`` (SPEC.md: counterfactuals use the
   last checkpoint only).

Each matrix is reduced to per-class sums as soon as it arrives and then
released, so only one ``n_train x n_test`` matrix is alive at a time (unless
``keep_matrices=True``). :func:`compute_signals_from_matrices` does the same
from matrices computed earlier (e.g. loaded from a results store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from glitchlib import _validation
from glitchlib.signals import (
    SIGNALS,
    _class_sums,
    _ClassSums,
    _resolve_n_classes,
    _signals_from_class_sums,
    characterize,
)

__all__ = ["SignalReport", "compute_signals", "compute_signals_from_matrices"]


@dataclass
class SignalReport:
    """All signals for one training set.

    Attributes
    ----------
    scores : pandas.DataFrame
        One row per training sample (index ``0 .. n_train-1``, the original
        training indices) and one float64 column per signal, named as in
        :data:`glitchlib.signals.SIGNALS` (``si, mi, mai, aai, mpi, nil,
        nil_opt, slip, slin, gd_class, cnci, pcid, cfrank``); higher = more
        suspicious in every column.
    suggested_labels : numpy.ndarray of int64, shape (n_train,)
        ``c*``, the NIL-opt label: the repair suggestion and CNCI's counterfactual.
    second_best_labels : numpy.ndarray of int64, shape (n_train,)
        ``b``, PCID's counterfactual label.
    characterization : numpy.ndarray of str, shape (n_train,)
        ``"mislabeled"`` or ``"anomaly"`` per sample (CFRank's rule).
    timings : dict[str, float]
        Seconds spent in ``"influence"`` (``I`` and ``SI``), ``"counterfactuals"``
        (``I*`` and ``I^b``) and ``"signals"`` (everything else).
        :func:`compute_signals_from_matrices` only measures ``"signals"``.
    matrices : dict[str, numpy.ndarray] or None
        ``{"I", "SI", "I_cf", "I_b"}`` when asked for, else None.
    """

    scores: pd.DataFrame
    suggested_labels: np.ndarray
    second_best_labels: np.ndarray
    characterization: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] | None = None


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _labels_like(labels: np.ndarray, y_train):
    """``labels`` in the container type of ``y_train`` (torch tensor or NumPy array)."""
    if hasattr(y_train, "detach") and hasattr(y_train, "device"):
        import torch

        return torch.as_tensor(labels).to(dtype=y_train.dtype, device=y_train.device)
    return labels.astype(np.asarray(y_train).dtype, copy=False)


def _check_shape(matrix, expected: tuple[int, int], what: str) -> None:
    shape = tuple(matrix.shape)
    if shape != expected:
        raise RuntimeError(f"{what} returned a matrix of shape {shape}, expected (n_train, n_test) = {expected}")


def _report(self_influence, sums: _ClassSums, cf_sums: _ClassSums, b_sums: _ClassSums, y_train) -> SignalReport:
    columns = _signals_from_class_sums(self_influence, sums, cf_sums, b_sums, y_train)
    return SignalReport(
        scores=pd.DataFrame({name: columns[name] for name in SIGNALS}),
        suggested_labels=sums.counterfactual_labels(),
        second_best_labels=sums.second_best_labels(),
        characterization=characterize(columns["cnci"], columns["pcid"]),
    )


def compute_signals_from_matrices(I, SI, I_cf, I_b, y_train, y_test, *, n_classes: int | None = None) -> SignalReport:
    """Every signal from precomputed influence matrices.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
        Train-to-validation influence over all checkpoints.
    SI : array-like, shape (n_train,)
        Self-influence.
    I_cf : array-like, shape (n_train, n_test)
        ``I*``: last-checkpoint influence with training labels
        ``glitchlib.signals.counterfactual_labels(I, y_test, n_classes=n_classes)``.
    I_b : array-like, shape (n_train, n_test)
        ``I^b``: last-checkpoint influence with training labels
        ``glitchlib.signals.second_best_labels(I, y_test, n_classes=n_classes)``.
    y_train : array-like of int, shape (n_train,)
        Training labels as given (possibly noisy).
    y_test : array-like of int, shape (n_test,)
        Validation labels.
    n_classes : int, optional
        Default: largest label in ``y_train`` and ``y_test`` plus one. Pass the
        value used to compute the counterfactual labels.

    Returns
    -------
    SignalReport
        ``timings`` holds ``"signals"`` only; ``matrices`` is None.
    """
    start = perf_counter()
    c = _resolve_n_classes(y_train, y_test, n_classes=n_classes)
    n_train, n_test = len(_numpy(y_train)), len(_numpy(y_test))
    I, I_cf, I_b = (_validation.matrix_to_array(m, name) for m, name in ((I, "I"), (I_cf, "I_cf"), (I_b, "I_b")))
    for name, matrix in (("I", I), ("I_cf", I_cf), ("I_b", I_b)):
        if tuple(matrix.shape) != (n_train, n_test):
            raise ValueError(
                f"{name} has shape {tuple(matrix.shape)} but y_train and y_test give "
                f"(n_train, n_test) = {(n_train, n_test)}"
            )
    sums = _class_sums(I, y_test, n_classes=c, name="I")
    cf_sums = _class_sums(I_cf, y_test, n_classes=c, parts=("neg",), name="I_cf")
    b_sums = _class_sums(I_b, y_test, n_classes=c, parts=("pos",), name="I_b")
    report = _report(SI, sums, cf_sums, b_sums, y_train)
    report.timings = {"signals": perf_counter() - start}
    return report


def compute_signals(
    engine,
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    n_classes: int | None = None,
    counterfactual_engine=None,
    keep_matrices: bool = False,
    progress: bool = True,
) -> SignalReport:
    """Compute the influence matrices with ``engine`` and every signal from them.

    Parameters
    ----------
    engine : influence engine
        Provides ``train_test(x_train, y_train, x_test, y_test) -> (n_train, n_test)``,
        ``self_influence(x, y) -> (n,)`` and ``last_checkpoint() -> engine``,
        e.g. :class:`glitchlib.influence.TracIn`.
    x_train, y_train : training inputs and labels as given (possibly dirty)
        Labels are an int tensor or array of shape (n_train,); the
        counterfactual labels are passed to the engine in the same type.
    x_test, y_test : clean validation inputs and labels, ``y_test`` of shape (n_test,)
    n_classes : int, optional
        Default: largest label in ``y_train`` and ``y_test`` plus one.
    counterfactual_engine : influence engine, optional
        Engine for ``I*`` and ``I^b``; default ``engine.last_checkpoint()``.
    keep_matrices : bool
        Keep ``I``, ``SI``, ``I_cf`` and ``I_b`` in ``report.matrices``
        (otherwise each matrix is released once reduced).
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    SignalReport
        Scores (higher = more suspicious), ``c*``, ``b``, the characterisation
        and the timings of the three stages.
    """
    c = _resolve_n_classes(y_train, y_test, n_classes=n_classes)
    keep_matrices = _validation.as_bool(keep_matrices, "keep_matrices")
    progress = _validation.as_bool(progress, "progress")
    n_train, n_test = len(_numpy(y_train)), len(_numpy(y_test))
    timings = {"influence": 0.0, "counterfactuals": 0.0, "signals": 0.0}
    kept: dict[str, np.ndarray] = {}
    with tqdm(total=4, desc="influence signals", disable=not progress) as bar:
        bar.set_postfix_str("I")
        start = perf_counter()
        if hasattr(engine, "train_test_and_self_influence"):  # one pass over the training gradients
            I, SI = engine.train_test_and_self_influence(x_train, y_train, x_test, y_test)
        else:
            I = engine.train_test(x_train, y_train, x_test, y_test)
            SI = engine.self_influence(x_train, y_train)
        _check_shape(I, (n_train, n_test), "engine.train_test")
        SI = _numpy(SI)
        timings["influence"] += perf_counter() - start
        bar.update()

        start = perf_counter()
        sums = _class_sums(I, y_test, n_classes=c, name="I")
        c_star, b = sums.counterfactual_labels(), sums.second_best_labels()
        if keep_matrices:
            kept["I"], kept["SI"] = _numpy(I), SI
        del I
        timings["signals"] += perf_counter() - start

        start = perf_counter()
        cf = engine.last_checkpoint() if counterfactual_engine is None else counterfactual_engine
        timings["counterfactuals"] += perf_counter() - start

        partial = {}
        for key, labels, part in (("I_cf", c_star, "neg"), ("I_b", b, "pos")):
            bar.set_postfix_str(key)
            start = perf_counter()
            matrix = cf.train_test(x_train, _labels_like(labels, y_train), x_test, y_test)
            _check_shape(matrix, (n_train, n_test), "counterfactual_engine.train_test")
            timings["counterfactuals"] += perf_counter() - start
            start = perf_counter()
            partial[key] = _class_sums(matrix, y_test, n_classes=c, parts=(part,), name=key)
            if keep_matrices:
                kept[key] = _numpy(matrix)
            del matrix
            timings["signals"] += perf_counter() - start
            bar.update()

        bar.set_postfix_str("signals")
        start = perf_counter()
        report = _report(SI, sums, partial["I_cf"], partial["I_b"], y_train)
        timings["signals"] += perf_counter() - start
        bar.update()
    report.timings = timings
    report.matrices = kept if keep_matrices else None
    return report
