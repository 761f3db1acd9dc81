"""Stratified subset drawing (SPEC.md section 1: the paper's 10 % subsets)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["stratified_indices"]


def _class_quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes proportionally to ``counts`` (largest remainders).

    Parameters
    ----------
    counts : numpy.ndarray of int, shape (C,)
        Number of samples of every class.
    total : int
        Size of the subset, ``0 <= total <= counts.sum()``.

    Returns
    -------
    numpy.ndarray of int64, shape (C,)
        ``floor(total * n_c / n)`` per class, plus one for the classes with the
        largest fractional parts (ties to the lower class index) until the quotas
        sum to ``total``. Never more than ``counts``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if not 0 <= total <= n:
        raise ValueError(f"total must lie in [0, {n}], got {total}")
    exact = counts * total / n if n else np.zeros(len(counts))
    quotas = np.floor(exact).astype(np.int64)
    short = total - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:short]] += 1
    return quotas


def stratified_indices(labels, *, fraction: float, seed: int) -> np.ndarray:
    """Draw a stratified random subset, as the paper's 10 % subsets.

    The subset holds ``round(fraction * n)`` samples (halves round up), split over
    the classes proportionally to their sizes (largest remainders: ``floor(total * n_c / n)``
    per class, plus one for the classes with the largest fractional parts, ties to
    the lower class index); inside every
    class, in increasing class order, the samples are drawn uniformly without
    replacement from one ``numpy.random.default_rng(seed)`` stream.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Class of every sample of the full split.
    fraction : float
        Share of the split to keep, in ``(0, 1]``.
    seed : int
        Seed of the draw.

    Returns
    -------
    numpy.ndarray of int64
        Sorted indices into ``labels``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError("labels must be a non-empty 1-D array")
    from .._validation import as_real, as_seed

    fraction = as_real(fraction, "fraction", low=0.0, high=1.0, low_open=True)
    seed = as_seed(seed)
    classes, counts = np.unique(labels, return_counts=True)
    total = math.floor(fraction * labels.size + 0.5)
    quotas = _class_quotas(counts, total)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)
              for c, q in zip(classes, quotas)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
