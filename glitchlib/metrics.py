"""Ranking helpers and detection metrics (SPEC.md section 5).

Scores follow one convention throughout glitchlib: one float per training
sample, **higher means more suspicious**. The helpers here turn scores into
ranks and flags, and score those flags against the ground truth of an
injection (a boolean ``mask`` of glitched samples, true labels, sample kinds).
No function assumes that glitches come first or last in the training set.

Ties are broken deterministically everywhere: among equal scores, the sample
with the **lower index counts as more suspicious**. Anomalies are appended at
the end of the training set (SPEC.md section 2), so this rule never lets a tie
favour them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from glitchlib import _validation
from glitchlib.settings import ANOMALY, CLEAN, MISLABELED, SAMPLE_KINDS

__all__ = [
    "suspicion_order",
    "rank",
    "top_k",
    "flag_top_k",
    "detection_f1",
    "average_precision",
    "auroc",
    "repair_accuracy",
    "characterization_accuracy",
]


_to_numpy = _validation.to_numpy


def _scores(scores, name: str = "scores") -> np.ndarray:
    """Validate a score vector: 1-D, non-empty, real, finite; returns float64."""
    return _validation.scores_to_array(scores, name)


def _mask(mask, n: int, name: str = "mask") -> np.ndarray:
    """Validate a boolean mask of length ``n`` (0/1 integers are accepted)."""
    return _validation.mask_to_array(mask, n, name)


def _labels(y, name: str, n: int | None = None) -> np.ndarray:
    return _validation.labels_to_array(y, name, length=n, allow_empty=True)


#: What :func:`glitchlib.signals.characterize` predicts: a flagged sample is mislabeled or an anomaly.
_PREDICTED_KINDS = (MISLABELED, ANOMALY)


def _kinds(kind, name: str, n: int | None = None, allowed: tuple[str, ...] = SAMPLE_KINDS,
           what: str = "sample kind") -> np.ndarray:
    return _validation.strings_to_array(kind, name, length=n, example=MISLABELED, allowed=allowed, what=what)


def suspicion_order(scores) -> np.ndarray:
    """Training-sample indices from most to least suspicious.

    Parameters
    ----------
    scores : array-like, shape (n_train,)
        Higher = more suspicious. NaN or inf raises ``ValueError``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_train,)
        Indices sorted by score descending; equal scores keep index order
        (the lower index first, i.e. counted as more suspicious).
    """
    s = _scores(scores)
    # A stable sort of the negated scores: descending scores, ascending index on ties.
    # -0.0 and 0.0 compare equal, so signed zeros are ties too.
    return np.argsort(-s, kind="stable").astype(np.int64, copy=False)


def rank(scores) -> np.ndarray:
    """Ascending rank of every training sample: 0 = least suspicious.

    ``rank(s)[i] = n_train - 1 - position of i in suspicion_order(s)``, so the
    most suspicious sample has rank ``n_train - 1`` and the ranks are a
    permutation of ``0 .. n_train - 1``. Among equal scores the lower index gets
    the higher rank. These are the ranks of CFRank (SPEC.md section 4).

    Parameters
    ----------
    scores : array-like, shape (n_train,)
        Higher = more suspicious.

    Returns
    -------
    numpy.ndarray of int64, shape (n_train,)
    """
    order = suspicion_order(scores)
    n = order.shape[0]
    r = np.empty(n, dtype=np.int64)
    r[order] = np.arange(n - 1, -1, -1, dtype=np.int64)
    return r


def _check_k(k, n: int, name: str = "k") -> int:
    """``k`` by value: an integer between 1 and the number of samples ``n``."""
    return _validation.as_int(k, name, low=1, high=n)


def top_k(scores, *, k: int) -> np.ndarray:
    """Indices of the ``k`` most suspicious training samples, most suspicious first.

    Parameters
    ----------
    scores : array-like, shape (n_train,)
        Higher = more suspicious.
    k : int
        How many to flag, ``1 <= k <= n_train``.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
        ``suspicion_order(scores)[:k]`` (ties: lower index first).
    """
    order = suspicion_order(scores)
    return order[: _check_k(k, order.shape[0])]


def flag_top_k(scores, *, k: int) -> np.ndarray:
    """Boolean mask of length ``n_train``, True for the samples of :func:`top_k`."""
    idx = top_k(scores, k=k)
    flagged = np.zeros(len(_to_numpy(scores)), dtype=bool)
    flagged[idx] = True
    return flagged


def detection_f1(scores, mask, *, k: int | None = None) -> float:
    """F1 of flagging the ``k`` highest-scoring samples as glitches (SPEC.md section 5).

    Exactly ``k`` samples are flagged (ties broken as in :func:`top_k`), so
    ``precision = tp / k``, ``recall = tp / n_glitches`` and
    ``F1 = 2 tp / (k + n_glitches)``.

    Parameters
    ----------
    scores : array-like, shape (n_train,)
        Higher = more suspicious.
    mask : array-like of bool, shape (n_train,)
        True for the injected glitches.
    k : int, optional
        Number of samples to flag; default the number of glitches, which makes
        precision, recall and F1 equal.

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        If the shapes disagree, ``mask`` has no glitch (F1 undefined) or ``k``
        is not in ``1 .. n_train``.
    """
    s = _scores(scores)
    m = _mask(mask, s.shape[0])
    n_glitches = int(m.sum())
    if n_glitches == 0:
        raise ValueError("mask has no glitch, so detection F1 is undefined; pass a mask with at least one True")
    k = n_glitches if k is None else _check_k(k, s.shape[0])
    tp = int(m[top_k(s, k=k)].sum())
    return 2.0 * tp / (k + n_glitches)


def average_precision(scores, mask) -> float:
    """Average precision of the ranking by ``scores`` (same as scikit-learn's).

    ``AP = sum_t (R_t - R_{t-1}) P_t`` over the distinct score thresholds ``t``
    in decreasing order, where ``P_t`` and ``R_t`` are the precision and recall
    of flagging every sample scoring at least ``t``; equal scores are flagged
    together, so no tie-breaking is involved. Equals
    ``sklearn.metrics.average_precision_score(mask, scores)``.

    Parameters
    ----------
    scores : array-like, shape (n_train,)
        Higher = more suspicious.
    mask : array-like of bool, shape (n_train,)
        True for the glitches; at least one is required.

    Returns
    -------
    float in [0, 1]
    """
    s = _scores(scores)
    m = _mask(mask, s.shape[0])
    if not m.any():
        raise ValueError("mask has no glitch, so average precision is undefined; pass a mask with at least one True")
    order = np.argsort(-s, kind="stable")
    s_sorted, m_sorted = s[order], m[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s_sorted)), s.shape[0] - 1]
    tps = np.cumsum(m_sorted, dtype=np.float64)[last_of_group]
    flagged = last_of_group + 1.0
    precision = tps / flagged
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auroc(scores, mask) -> float:
    """Area under the ROC curve of ``scores`` against ``mask`` (same as scikit-learn's).

    The probability that a random glitch scores higher than a random clean
    sample, ties counting one half (Mann-Whitney U with mid-ranks). Equals
    ``sklearn.metrics.roc_auc_score(mask, scores)``.

    Parameters
    ----------
    scores : array-like, shape (n_train,)
        Higher = more suspicious.
    mask : array-like of bool, shape (n_train,)
        True for the glitches; needs at least one glitch and one clean sample.

    Returns
    -------
    float in [0, 1]
    """
    s = _scores(scores)
    m = _mask(mask, s.shape[0])
    n_pos = int(m.sum())
    n_neg = s.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("mask must contain both glitches (True) and clean samples (False) for AUROC")
    ranks = rankdata(s, method="average")
    u = ranks[m].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def repair_accuracy(suggested, y_true, mask) -> float:
    """Share of the masked (mislabeled) samples whose suggested label is the true one.

    SPEC.md section 5: among mislabeled samples, the share with
    ``suggested == y_true`` (for CNCI the suggestion is the NIL-opt label ``c*``,
    see :func:`glitchlib.signals.counterfactual_labels`).

    Parameters
    ----------
    suggested : array-like of int, shape (n_train,)
        Suggested label of every training sample.
    y_true : array-like of int, shape (n_train,)
        True labels.
    mask : array-like of bool, shape (n_train,)
        Samples to score, normally ``kind == "mislabeled"`` (anomalies have no
        true in-distribution label); at least one is required.

    Returns
    -------
    float in [0, 1]
    """
    sug = _labels(suggested, "suggested")
    if sug.shape[0] == 0:
        raise ValueError("suggested is empty; pass one label per training sample")
    yt = _labels(y_true, "y_true", sug.shape[0])
    m = _mask(mask, sug.shape[0])
    if not m.any():
        raise ValueError("mask selects no sample, so repair accuracy is undefined; mark the mislabeled samples")
    return float(np.mean(sug[m] == yt[m]))


def characterization_accuracy(predicted_kind, true_kind, flagged) -> dict[str, float]:
    """Among flagged glitches of each true sample kind, the share given the right kind.

    SPEC.md section 5 (mixed glitches). Only flagged samples that are true
    glitches count; flagged clean samples are false detections and have no
    right kind.

    Parameters
    ----------
    predicted_kind : array-like of str, shape (n_train,)
        Predicted kind per sample, as :func:`glitchlib.signals.characterize`
        gives it: ``"mislabeled"`` or ``"anomaly"``.
    true_kind : array-like of str, shape (n_train,)
        A sample kind per sample, one of :data:`glitchlib.settings.SAMPLE_KINDS`
        (``"clean"``, ``"mislabeled"``, ``"anomaly"``, ``"corrupted"``; ``GlitchSet.kind``).
    flagged : array-like of bool, shape (n_train,)
        The detected samples, e.g. :func:`flag_top_k`.

    Returns
    -------
    dict[str, float]
        One entry per sample kind present in ``true_kind`` (every value except
        ``"clean"``, sorted), plus ``"overall"`` over all flagged glitches. A
        share is NaN when no glitch of that kind was flagged (undefined, not
        zero).

    Raises
    ------
    ValueError
        Arrays of other lengths or shapes, ``predicted_kind`` with a value other
        than ``"mislabeled"`` and ``"anomaly"``, ``true_kind`` with a value that is
        not a sample kind (a glitch name such as ``"anomalies"`` included); the
        message names the argument and the allowed values.
    """
    pred = _kinds(predicted_kind, "predicted_kind", allowed=_PREDICTED_KINDS,
                  what="kind glitchlib.signals.characterize predicts")
    if pred.shape[0] == 0:
        raise ValueError("predicted_kind is empty; pass one kind per training sample")
    true = _kinds(true_kind, "true_kind", pred.shape[0])
    f = _mask(flagged, pred.shape[0], "flagged")
    result: dict[str, float] = {}
    correct = pred == true
    for kind in sorted(set(true.tolist()) - {CLEAN}):
        sel = f & (true == kind)
        result[kind] = float(correct[sel].mean()) if sel.any() else float("nan")
    sel = f & (true != CLEAN)
    result["overall"] = float(correct[sel].mean()) if sel.any() else float("nan")
    return result
