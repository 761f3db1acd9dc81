"""Influence-based glitch signals (SPEC.md section 4).

Every signal maps an influence matrix ``I`` (``n_train x n_test``, ``I[i, j]``
the TracIn influence of training sample ``i`` on validation sample ``j``;
positive means ``i`` lowered the loss on ``j``) to one float64 score per
training sample, and **higher means more suspicious** under SPEC.md section 4.
Labels that a signal also yields (the repair suggestion ``c*``, the
second-best label ``b``) come from separate functions.

Notation: ``neg(x) = min(x, 0)``, ``pos(x) = max(x, 0)``, ``J_c`` the
validation samples of class ``c``, ``N_c[i] = sum_{j in J_c} neg(I[i, j])``,
``P_c[i] = sum_{j in J_c} pos(I[i, j])``.

Conventions shared by all functions:

- Inputs are NumPy arrays or torch tensors (a CPU tensor is read without a
  copy). float32 matrices stay float32 for the heavy reductions; the results
  are float64.
- ``n_classes=None`` means one more than the largest label seen (training and
  validation labels where both are given). A class without validation samples
  has an empty ``J_c`` and contributes zero: ``N_c = P_c = 0`` and its
  ``sum_{J_c} I = 0``, and these zeros take part in the minima of NIL-opt and
  GD-class. Labels (``c*``, ``b``) prefer a class that has validation samples
  when sums tie, then the lower class index.
- Matrices are read in row chunks: all per-class sums come from one pass with
  one-hot matrix products, and temporaries never exceed about one row chunk
  (``2**24`` elements, 64 MiB in float32, or a single row if longer).
- Ranks (CFRank, :func:`characterize`) come from :func:`glitchlib.metrics.rank`:
  among equal scores the lower index counts as more suspicious.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glitchlib import _validation
from glitchlib.metrics import rank
from glitchlib.settings import ANOMALY, MISLABELED

__all__ = [
    "SIGNALS",
    "si",
    "mi",
    "mai",
    "aai",
    "mpi",
    "nil",
    "nil_opt",
    "slip",
    "slin",
    "gd_class",
    "cnci",
    "pcid",
    "cfrank",
    "counterfactual_labels",
    "second_best_labels",
    "characterize",
    "PCID_ZERO_DENOMINATOR_SCORE",
]

#: Names of all signals, in table order (lower-case column names).
SIGNALS = ("si", "mi", "mai", "aai", "mpi", "nil", "nil_opt", "slip", "slin", "gd_class", "cnci", "pcid", "cfrank")

_PARTS = ("neg", "pos", "n_pos", "n_neg")
_CHUNK_ELEMENTS = 1 << 24

# PCID's denominator is clamped to the smallest positive normal float64, so a zero
# denominator scores 1 / tiny (about 4.49e307): finite, and the largest PCID possible.
_PCID_MIN_DENOMINATOR = np.finfo(np.float64).tiny
#: PCID of a sample whose denominator ``MPI * max_c |P_c - P^b_c|`` is zero.
PCID_ZERO_DENOMINATOR_SCORE = float(1.0 / _PCID_MIN_DENOMINATOR)


# ----------------------------------------------------------------------------
# input validation


def _matrix(I, name: str) -> np.ndarray:
    """An influence matrix as a float32/float64 NumPy array (no copy if possible)."""
    return _validation.matrix_to_array(I, name)


def _vector(x, name: str) -> np.ndarray:
    return _validation.scores_to_array(x, name)


def _labels(y, name: str, length: int | None = None, what: str = "") -> np.ndarray:
    return _validation.labels_to_array(y, name, length=length, what=what)


def _checked_n_classes(n_classes, labelled: dict[str, np.ndarray]) -> int:
    """``n_classes`` or one more than the largest label; checks every label is below it."""
    largest = max(int(y.max()) for y in labelled.values())
    if n_classes is None:
        return largest + 1
    n_classes = _validation.as_int(n_classes, "n_classes", low=1)
    for name, y in labelled.items():
        if int(y.max()) >= n_classes:
            raise ValueError(
                f"{name} contains the label {int(y.max())}, out of range for n_classes={n_classes}; "
                "pass a larger n_classes or None"
            )
    return int(n_classes)


def _resolve_n_classes(y_train, y_test, *, n_classes: int | None = None) -> int:
    """Number of classes: ``n_classes``, or one more than the largest label in ``y_train`` and ``y_test``.

    Raises ``ValueError`` (naming the argument) for labels that are not 1-D,
    non-negative integers, or not below ``n_classes``.
    """
    labelled = {"y_train": _labels(y_train, "y_train"), "y_test": _labels(y_test, "y_test")}
    return _checked_n_classes(n_classes, labelled)


def _prepare(I, name, y_train, y_test, n_classes):
    """Validate a matrix against its labels; returns (matrix, y_train, y_test, n_classes)."""
    a = _matrix(I, name)
    labelled = {}
    ytr = None
    if y_train is not None:
        ytr = _labels(y_train, "y_train", a.shape[0], f"the rows of {name}")
        labelled["y_train"] = ytr
    yte = _labels(y_test, "y_test", a.shape[1], f"the columns of {name}")
    labelled["y_test"] = yte
    return a, ytr, yte, _checked_n_classes(n_classes, labelled)


# ----------------------------------------------------------------------------
# per-class sums, one chunked pass


@dataclass(frozen=True)
class _ClassSums:
    """Per-class aggregates of an influence matrix ``I`` (``n_train x n_test``).

    Attributes
    ----------
    neg : numpy.ndarray, shape (n_train, n_classes), float64, or None
        ``N_c[i] = sum_{j in J_c} neg(I[i, j])`` (non-positive).
    pos : numpy.ndarray, shape (n_train, n_classes), float64, or None
        ``P_c[i] = sum_{j in J_c} pos(I[i, j])`` (non-negative).
    n_pos : numpy.ndarray, shape (n_train, n_classes), float64, or None
        Number of ``j in J_c`` with ``I[i, j] > 0``.
    n_neg : numpy.ndarray, shape (n_train, n_classes), float64, or None
        Number of ``j in J_c`` with ``I[i, j] < 0``.
    present : numpy.ndarray of bool, shape (n_classes,)
        Whether class ``c`` has at least one validation sample.
    n_test : int
        Number of validation samples ``m``.

    A part is None when :func:`_class_sums` was asked not to compute it.
    ``neg + pos`` is ``sum_{j in J_c} I[i, j]``.
    """

    neg: np.ndarray | None
    pos: np.ndarray | None
    n_pos: np.ndarray | None
    n_neg: np.ndarray | None
    present: np.ndarray
    n_test: int

    @property
    def n_train(self) -> int:
        for part in _PARTS:
            value = getattr(self, part)
            if value is not None:
                return value.shape[0]
        raise ValueError("this _ClassSums holds no part")

    @property
    def n_classes(self) -> int:
        return self.present.shape[0]

    def _need(self, *parts: str) -> None:
        missing = [p for p in parts if getattr(self, p) is None]
        if missing:
            raise ValueError(f"these class sums lack {missing}; compute them with _class_sums(..., parts=...)")

    def counterfactual_labels(self) -> np.ndarray:
        """NIL-opt label ``c*[i] = argmin_c N_c[i]`` (int64, shape (n_train,)).

        Ties: a class with validation samples wins over one without, then the
        lower class index. Since an absent class has ``N_c = 0``, the maximum
        possible, ``c*`` is always a class present in validation, with
        ``N_{c*}[i] = min_c N_c[i]``.
        """
        self._need("neg")
        masked = np.where(self.present[None, :], self.neg, np.inf)
        return np.argmin(masked, axis=1).astype(np.int64)

    def second_best_labels(self) -> np.ndarray:
        """PCID's label ``b[i]``: the class with the second largest ``P_c[i]`` (int64).

        Classes are ordered by ``P_c[i]`` descending; ties: a class with
        validation samples first, then the lower class index. ``b`` is the
        second class in that order (it is an absent class only when fewer than
        two classes have validation samples). Needs ``n_classes >= 2``.
        """
        self._need("pos")
        if self.n_classes < 2:
            raise ValueError("n_classes must be at least 2 for a second-best label")
        # P >= 0, so -1 puts an absent class after every present one.
        key = np.where(self.present[None, :], self.pos, -1.0)
        rows = np.arange(key.shape[0])
        first = np.argmax(key, axis=1)
        key[rows, first] = -np.inf
        return np.argmax(key, axis=1).astype(np.int64)


def _onehot(y_test: np.ndarray, n_classes: int, dtype) -> np.ndarray:
    onehot = np.zeros((y_test.shape[0], n_classes), dtype=dtype)
    onehot[np.arange(y_test.shape[0]), y_test] = 1
    return onehot


def _sums(a: np.ndarray, name: str, y_test: np.ndarray, n_classes: int, parts, chunk_elements: int) -> _ClassSums:
    """One pass over the rows of ``a`` computing the requested per-class sums."""
    unknown = set(parts) - set(_PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {_PARTS}, got {tuple(parts)}")
    n, m = a.shape
    onehot = _onehot(y_test, n_classes, a.dtype)
    rows = max(1, min(n, chunk_elements // m))
    out = {p: np.empty((n, n_classes), dtype=np.float64) for p in parts}
    buf = np.empty((rows, m), dtype=a.dtype)
    counts_only = "neg" not in parts and "pos" not in parts
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block = a[start:stop]
            b = buf[: stop - start]
            if counts_only and not np.isfinite(block).all():
                raise ValueError(f"{name} contains NaN or infinite values")
            if "neg" in out:
                np.minimum(block, 0, out=b)
                out["neg"][start:stop] = b @ onehot
            if "pos" in out:
                np.maximum(block, 0, out=b)
                out["pos"][start:stop] = b @ onehot
            if "n_pos" in out:
                np.greater(block, 0, out=b)
                out["n_pos"][start:stop] = b @ onehot
            if "n_neg" in out:
                np.less(block, 0, out=b)
                out["n_neg"][start:stop] = b @ onehot
    for p in ("neg", "pos"):
        if p in out and not np.isfinite(out[p]).all():
            raise ValueError(f"{name} contains NaN or infinite values (or values whose sums overflow)")
    present = np.bincount(y_test, minlength=n_classes) > 0
    return _ClassSums(
        neg=out.get("neg"), pos=out.get("pos"), n_pos=out.get("n_pos"), n_neg=out.get("n_neg"),
        present=present, n_test=m,
    )


def _class_sums(I, y_test, *, n_classes: int | None = None, parts=_PARTS, name: str = "I") -> _ClassSums:
    """Per-class sums of ``neg(I)``, ``pos(I)`` and the signs of ``I``, in one pass.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
        Influence matrix (NumPy array or torch tensor, float32 or float64).
    y_test : array-like of int, shape (n_test,)
        Validation labels.
    n_classes : int, optional
        Default ``max(y_test) + 1``.
    parts : sequence of str
        Which of ``"neg"``, ``"pos"``, ``"n_pos"``, ``"n_neg"`` to compute
        (default all); each costs one product of a row chunk with the one-hot
        ``n_test x n_classes`` matrix.
    name : str
        Name of the matrix in error messages.

    Returns
    -------
    _ClassSums
        float64 arrays of shape (n_train, n_classes).
    """
    a, _, yte, c = _prepare(I, name, None, y_test, n_classes)
    return _sums(a, name, yte, c, tuple(parts), _CHUNK_ELEMENTS)


def _row_sums(I, name: str, parts) -> _ClassSums:
    """Class sums with every validation sample in one class (label-free signals)."""
    a = _matrix(I, name)
    return _sums(a, name, np.zeros(a.shape[1], dtype=np.int64), 1, parts, _CHUNK_ELEMENTS)


def _at_label(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    return values[np.arange(values.shape[0]), y]


# ----------------------------------------------------------------------------
# scores from class sums (shared by the single-signal functions and the table)


def _mi(s: _ClassSums) -> np.ndarray:
    return (s.neg + s.pos).sum(axis=1)


def _mai(s: _ClassSums) -> np.ndarray:
    return (s.pos - s.neg).sum(axis=1)


def _mpi(s: _ClassSums) -> np.ndarray:
    return s.pos.sum(axis=1)


def _nil(s: _ClassSums, y_train: np.ndarray) -> np.ndarray:
    return 0.0 - _at_label(s.neg, y_train)  # 0.0 - x turns -0.0 into 0.0


def _nil_opt(s: _ClassSums) -> np.ndarray:
    return 0.0 - s.neg.min(axis=1)


def _gd_class(s: _ClassSums) -> np.ndarray:
    return 0.0 - (s.neg + s.pos).min(axis=1)


def _cnci(s_cf: _ClassSums, y_train: np.ndarray) -> np.ndarray:
    return _at_label(s_cf.neg, y_train) + 0.0


def _pcid(s: _ClassSums, s_b: _ClassSums) -> np.ndarray:
    mpi_ = s.pos.sum(axis=1)
    distance = np.abs(s.pos - s_b.pos).max(axis=1)
    with np.errstate(over="ignore"):
        denominator = mpi_ * distance
    return 1.0 / np.maximum(denominator, _PCID_MIN_DENOMINATOR)


# ----------------------------------------------------------------------------
# public signals


def si(self_influence) -> np.ndarray:
    """Self-influence ``SI[i]``; higher = more suspicious (SPEC.md section 4).

    Parameters
    ----------
    self_influence : array-like, shape (n_train,)
        ``SI[i] = sum_t lr_t ||g_t(z_i)||^2`` (SPEC.md section 3).

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        A copy of ``self_influence``: samples the model finds hard to fit score high.
    """
    return _vector(self_influence, "self_influence").copy()


def mi(I) -> np.ndarray:
    """``MI[i] = sum_j I[i, j]``; higher = more suspicious by SPEC.md (though high = helpful).

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Higher = more suspicious per SPEC.md; note that a high value means the
        sample *lowered* the validation loss overall (helpful), as in the
        paper's public code, which also ranks by the raw sum.
    """
    return _mi(_row_sums(I, "I", ("neg", "pos")))


def mai(I) -> np.ndarray:
    """Marginal absolute influence ``MAI[i] = sum_j |I[i, j]|``; higher = more suspicious.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        High for samples with a strong effect, in either direction, on many
        validation samples.
    """
    return _mai(_row_sums(I, "I", ("neg", "pos")))


def aai(I) -> np.ndarray:
    """Average absolute influence ``AAI[i] = mean_j |I[i, j]|`` (= MAI / n_test); higher = more suspicious.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
    """
    a = _matrix(I, "I")
    return _mai(_row_sums(a, "I", ("neg", "pos"))) / a.shape[1]


def mpi(I) -> np.ndarray:
    """``MPI[i] = sum_j pos(I[i, j])``; higher = more suspicious by SPEC.md (though high = helpful).

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Higher = more suspicious per SPEC.md; a high value means the sample
        *helped* many validation samples (the paper's public code ranks by the
        same raw sum).
    """
    return _mpi(_row_sums(I, "I", ("pos",)))


def nil(I, y_train, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """Negative influence on the own label ``NIL[i] = -sum_{j in J_{y_i}} neg(I[i, j])``; higher = more suspicious.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    y_train : array-like of int, shape (n_train,)
        Training labels as given (possibly noisy).
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional
        Default: largest label in ``y_train`` and ``y_test`` plus one.

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Non-negative; higher = the sample hurts more validation samples of its
        own labelled class = more suspicious. Zero when ``J_{y_i}`` is empty.
    """
    a, ytr, yte, c = _prepare(I, "I", y_train, y_test, n_classes)
    return _nil(_sums(a, "I", yte, c, ("neg",), _CHUNK_ELEMENTS), ytr)


def nil_opt(I, y_train, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """``NIL-opt[i] = -min_c N_c[i]``, ``N_c[i] = sum_{j in J_c} neg(I[i, j])``; higher = more suspicious.

    The class the sample hurts most; its label is :func:`counterfactual_labels`.
    ``y_train`` only enters through the default ``n_classes``; classes absent
    from validation have ``N_c = 0`` and never change the minimum (all
    ``N_c <= 0``).

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    y_train : array-like of int, shape (n_train,)
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Non-negative; higher = more suspicious.
    """
    a, _, yte, c = _prepare(I, "I", y_train, y_test, n_classes)
    return _nil_opt(_sums(a, "I", yte, c, ("neg",), _CHUNK_ELEMENTS))


def slip(I, y_train, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """``#SLIP[i] = |{j in J_{y_i}: I[i, j] > 0}|``; higher = more suspicious by SPEC.md (though high = helpful).

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    y_train : array-like of int, shape (n_train,)
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Counts in ``0 .. |J_{y_i}|``. Higher = more suspicious per SPEC.md;
        note that a high count means the sample *helped* many validation
        samples of its own labelled class (the paper's public code ranks by the
        same raw count).
    """
    a, ytr, yte, c = _prepare(I, "I", y_train, y_test, n_classes)
    return _at_label(_sums(a, "I", yte, c, ("n_pos",), _CHUNK_ELEMENTS).n_pos, ytr)


def slin(I, y_train, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """``#SLIN[i] = |{j in J_{y_i}: I[i, j] < 0}|``; higher = more suspicious.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    y_train : array-like of int, shape (n_train,)
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Counts in ``0 .. |J_{y_i}|``; higher = the sample hurts more validation
        samples of its own labelled class = more suspicious.
    """
    a, ytr, yte, c = _prepare(I, "I", y_train, y_test, n_classes)
    return _at_label(_sums(a, "I", yte, c, ("n_neg",), _CHUNK_ELEMENTS).n_neg, ytr)


def gd_class(I, y_train, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """``GD-class[i] = -min_c sum_{j in J_c} I[i, j]``; higher = more suspicious.

    A class absent from validation contributes a zero sum to the minimum
    (SPEC.md: an empty class contributes zero), so with such a class the score
    is never negative.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    y_train : array-like of int, shape (n_train,)
        Only enters through the default ``n_classes``.
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Higher = some class's validation loss is raised more by the sample =
        more suspicious.
    """
    a, _, yte, c = _prepare(I, "I", y_train, y_test, n_classes)
    return _gd_class(_sums(a, "I", yte, c, ("neg", "pos"), _CHUNK_ELEMENTS))


def cnci(I_cf, y_train, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """``CNCI[i] = sum_{j in J_{y_i}} neg(I*[i, j])`` (<= 0); higher (nearer 0) = more suspicious.

    ``I*`` is the influence matrix recomputed at the last checkpoint with the
    training labels replaced by ``c* =`` :func:`counterfactual_labels` of ``I``
    (SPEC.md section 4); the sum runs over the validation samples of the
    *given* label ``y_i``.

    Parameters
    ----------
    I_cf : array-like, shape (n_train, n_test)
        The counterfactual matrix ``I*``.
    y_train : array-like of int, shape (n_train,)
        Training labels as given (not ``c*``).
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Non-positive; near zero = more suspicious (mislabeled), so higher =
        more suspicious holds without a sign change.
    """
    a, ytr, yte, c = _prepare(I_cf, "I_cf", y_train, y_test, n_classes)
    return _cnci(_sums(a, "I_cf", yte, c, ("neg",), _CHUNK_ELEMENTS), ytr)


def pcid(I, I_b, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """``PCID[i] = 1 / (MPI[i] * max_c |P_c[i] - P^b_c[i]|)``; higher = more suspicious.

    ``P_c`` comes from ``I``, ``P^b_c`` from ``I_b``, the matrix recomputed at
    the last checkpoint with training labels ``b =`` :func:`second_best_labels`
    of ``I`` (SPEC.md section 4). ``MPI[i] = sum_c P_c[i]``.

    Zero-denominator guard: the denominator is clamped to the smallest positive
    normal float64 (``numpy.finfo(float64).tiny``), so a sample whose
    denominator is zero (no positive influence at all, or a counterfactual that
    changes no class's positive influence) scores
    :data:`PCID_ZERO_DENOMINATOR_SCORE` (about 4.49e307), the largest PCID
    possible: finite, never NaN, and ranked as most suspicious (such samples tie
    with each other; ties follow :func:`glitchlib.metrics.rank`).

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    I_b : array-like, shape (n_train, n_test)
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional
        Default ``max(y_test) + 1``.

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Positive; higher = the sample helps little and its positive influence
        barely depends on its label = more suspicious (anomaly).
    """
    a, _, yte, c = _prepare(I, "I", None, y_test, n_classes)
    b = _matrix(I_b, "I_b")
    if b.shape != a.shape:
        raise ValueError(f"I_b has shape {b.shape} but I has shape {a.shape}; they must match")
    s = _sums(a, "I", yte, c, ("pos",), _CHUNK_ELEMENTS)
    s_b = _sums(b, "I_b", yte, c, ("pos",), _CHUNK_ELEMENTS)
    return _pcid(s, s_b)


def cfrank(cnci_scores, pcid_scores) -> np.ndarray:
    """``CFRank[i] = max(r_CNCI[i], r_PCID[i])``, ascending ranks (0 = least suspicious); higher = more suspicious.

    Ranks come from :func:`glitchlib.metrics.rank` (ties: lower index ranked
    as more suspicious).

    Parameters
    ----------
    cnci_scores, pcid_scores : array-like, shape (n_train,)
        Output of :func:`cnci` and :func:`pcid`.

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
        Integers in ``0 .. n_train - 1``; higher = suspicious for either
        mislabeling or anomaly.
    """
    r_c, r_p = _ranks(cnci_scores, pcid_scores)
    return np.maximum(r_c, r_p).astype(np.float64)


def _ranks(cnci_scores, pcid_scores):
    c = _vector(cnci_scores, "cnci_scores")
    p = _vector(pcid_scores, "pcid_scores")
    if c.shape != p.shape:
        raise ValueError(f"cnci_scores has length {c.shape[0]} but pcid_scores has {p.shape[0]}; they must match")
    return rank(c), rank(p)


def characterize(cnci_scores, pcid_scores) -> np.ndarray:
    """Predicted kind of each sample: ``"mislabeled"`` if ``r_CNCI[i] > r_PCID[i]``, else ``"anomaly"``.

    SPEC.md section 4 (CFRank); the same ranks as :func:`cfrank`. Meaningful
    for the samples that CFRank flags.

    Parameters
    ----------
    cnci_scores, pcid_scores : array-like, shape (n_train,)

    Returns
    -------
    numpy.ndarray of str, shape (n_train,)
    """
    r_c, r_p = _ranks(cnci_scores, pcid_scores)
    return np.where(r_c > r_p, MISLABELED, ANOMALY)


def counterfactual_labels(I, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """NIL-opt's label ``c*[i] = argmin_c N_c[i]``: CNCI's counterfactual and the repair suggestion.

    Ties: a class with validation samples first, then the lower class index;
    ``c*`` is always a class present in ``y_test``.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional
        Default ``max(y_test) + 1``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_train,)
    """
    return _class_sums(I, y_test, n_classes=n_classes, parts=("neg",)).counterfactual_labels()


def second_best_labels(I, y_test, *, n_classes: int | None = None) -> np.ndarray:
    """PCID's label ``b[i]``: the class with the second largest ``P_c[i] = sum_{j in J_c} pos(I[i, j])``.

    Ties: a class with validation samples first, then the lower class index.

    Parameters
    ----------
    I : array-like, shape (n_train, n_test)
    y_test : array-like of int, shape (n_test,)
    n_classes : int, optional
        Default ``max(y_test) + 1``; must be at least 2.

    Returns
    -------
    numpy.ndarray of int64, shape (n_train,)
    """
    return _class_sums(I, y_test, n_classes=n_classes, parts=("pos",)).second_best_labels()


def _signals_from_class_sums(self_influence, sums: _ClassSums, cf_sums: _ClassSums, b_sums: _ClassSums,
                             y_train) -> dict:
    """Every signal of :data:`SIGNALS` from precomputed class sums.

    Parameters
    ----------
    self_influence : array-like, shape (n_train,)
    sums : _ClassSums
        All four parts of ``I``.
    cf_sums : _ClassSums
        At least ``neg`` of ``I*`` (labels ``sums.counterfactual_labels()``).
    b_sums : _ClassSums
        At least ``pos`` of ``I^b`` (labels ``sums.second_best_labels()``).
    y_train : array-like of int, shape (n_train,)
        Training labels as given.

    Returns
    -------
    dict[str, numpy.ndarray]
        One float64 array of shape (n_train,) per name in :data:`SIGNALS`,
        equal to the single-signal functions up to float rounding (MI, MAI,
        AAI and MPI are summed class by class here); higher = more suspicious.
    """
    sums._need(*_PARTS)
    cf_sums._need("neg")
    b_sums._need("pos")
    n, c = sums.neg.shape
    for name, other in (("cf_sums", cf_sums), ("b_sums", b_sums)):
        if other.n_train != n or other.n_classes != c or other.n_test != sums.n_test:
            raise ValueError(f"{name} does not match sums in n_train, n_classes or n_test")
    ytr = _labels(y_train, "y_train", n, "the class sums")
    if int(ytr.max()) >= c:
        raise ValueError(f"y_train contains the label {int(ytr.max())}, out of range for n_classes={c}")
    si_ = _vector(self_influence, "self_influence")
    if si_.shape[0] != n:
        raise ValueError(f"self_influence has length {si_.shape[0]} but there are {n} training samples")
    mai_ = _mai(sums)
    out = {
        "si": si_,
        "mi": _mi(sums),
        "mai": mai_,
        "aai": mai_ / sums.n_test,
        "mpi": _mpi(sums),
        "nil": _nil(sums, ytr),
        "nil_opt": _nil_opt(sums),
        "slip": _at_label(sums.n_pos, ytr),
        "slin": _at_label(sums.n_neg, ytr),
        "gd_class": _gd_class(sums),
        "cnci": _cnci(cf_sums, ytr),
        "pcid": _pcid(sums, b_sums),
    }
    out["cfrank"] = cfrank(out["cnci"], out["pcid"])
    return {name: out[name] for name in SIGNALS}
