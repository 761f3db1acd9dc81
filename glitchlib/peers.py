"""Dedicated glitch detectors beside the influence signals: confident learning, losses, OOD scores.

The same convention as :mod:`glitchlib.signals`: every score is one float64
per training sample and **higher means more suspicious**. The scores, named
after their methods (:data:`PEERS`), are the field's usual answers to the two
questions the influence signals answer:

=============== ===============================================================
column          what it scores (source)
=============== ===============================================================
``cleanlab``    ``1 -`` cleanlab's label quality score (self-confidence) from
                out-of-sample predicted probabilities of K-fold cross-validation
                (Northcutt et al., 2021, *Confident Learning*; SPEC.md 9.6)
``loss``        cross-entropy of the final checkpoint on the given label
``aum``         minus the area under the margin over the epochs' checkpoints
                (Pleiss et al., 2020)
``knn``         distance to the k-th nearest validation feature, features on
                the unit sphere (Sun et al., 2022)
``mahalanobis`` class-conditional Mahalanobis distance with a tied covariance,
                fitted on the validation features (Lee et al., 2018)
``energy``      energy score of the head, ``-T logsumexp(logits / T)``
                (Liu et al., 2020)
=============== ===============================================================

The first two are label-error detectors, the last three out-of-distribution
detectors; the repair suggestion of confident learning (the argmax of the
out-of-sample probabilities) comes from :func:`cleanlab_suggested_labels`.
The scores are pure functions on arrays; :func:`cross_validated_pred_probs`
trains and runs the head, and :func:`compute_peers` puts everything together
for one training set.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from time import perf_counter
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp

from . import _validation

__all__ = [
    "PEERS",
    "PeerReport",
    "cross_validated_pred_probs",
    "cleanlab_scores",
    "cleanlab_suggested_labels",
    "training_loss",
    "area_under_margin",
    "knn_distance",
    "mahalanobis",
    "energy",
    "compute_peers",
]

#: Names of the dedicated detectors' scores, in table order (column names).
PEERS = ("cleanlab", "loss", "aum", "knn", "mahalanobis", "energy")


# ----------------------------------------------------------------------------- validation


def _array(x, name: str, ndim: int | None = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size == 0 or a.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one sample")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _features(x, name: str) -> np.ndarray:
    """Features as a float64 matrix ``(n, d)``; higher-dimensional features are flattened."""
    a = _array(x, name)
    if a.ndim < 2:
        raise ValueError(f"{name} must have one row of features per sample, got shape {a.shape}")
    return a.reshape(a.shape[0], -1)


def _labels(y, name: str, n: int | None = None, n_classes: int | None = None) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {a.shape}, dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{name} is empty; pass one label per sample")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} labels for {n} samples; pass one label per sample")
    if a.min() < 0 or (n_classes is not None and a.max() >= n_classes):
        raise ValueError(f"{name} holds labels outside 0 .. {'n_classes-1' if n_classes is None else n_classes - 1}")
    return a.astype(np.int64, copy=False)


def _probabilities(p, name: str = "pred_probs") -> np.ndarray:
    a = _array(p, name, ndim=2)
    if a.shape[1] < 2:
        raise ValueError(f"{name} needs one column per class (at least 2), got shape {a.shape}")
    if (a < 0).any() or not np.allclose(a.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"{name} rows must be probabilities (non-negative, summing to 1)")
    return a


def _logits(z, name: str, y: np.ndarray | None = None, ndim: int = 2) -> np.ndarray:
    a = _array(z, name, ndim=ndim)
    if a.shape[-1] < 2:
        raise ValueError(f"{name} needs one column per class (at least 2), got shape {a.shape}")
    if y is not None and (y.shape[0] != a.shape[-2] or y.max() >= a.shape[-1]):
        raise ValueError(f"{name} of shape {a.shape} does not fit labels y of length {y.shape[0]} "
                         f"with largest label {int(y.max())}")
    return a


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- confident learning


def cross_validated_pred_probs(features, y, *, train_settings, n_folds: int = 5, seed: int, head=None,
                               n_classes: int | None = None, device=None, progress: bool = False) -> np.ndarray:
    """Out-of-sample predicted probabilities from stratified K-fold cross-validation of the head.

    Each fold's samples are predicted by a copy of ``head`` trained, with
    :func:`glitchlib.train.fit` and the run's ``train_settings`` (plain SGD,
    same learning rate, batch size and epochs), on the other ``n_folds - 1``
    folds only, so no probability ever comes from a model that saw the sample
    (SPEC.md section 9.6: the out-of-sample probabilities confident learning
    needs). Folds are scikit-learn's ``StratifiedKFold`` on the given labels,
    shuffled with ``seed``; every fold's training starts from the same initial
    ``head`` and uses ``seed`` for its batch order.

    Parameters
    ----------
    features : torch.Tensor or numpy.ndarray, shape (n_train, ...)
        Inputs of the head (the frozen backbone's features).
    y : array-like of int, shape (n_train,)
        Labels as given (possibly noisy).
    train_settings : TrainSettings
        ``lr``, ``batch_size``, ``epochs`` of the run (:class:`glitchlib.settings.TrainSettings`).
    n_folds : int, keyword-only
        Number of folds ``K >= 2``. A class with fewer than ``K`` samples is
        absent from some folds (scikit-learn's warning about it is silenced);
        its samples are still predicted out of sample.
    seed : int, keyword-only
        Seeds the folds and the training.
    head : torch.nn.Module, optional
        The initial trainable part (``GlitchModel.suffix``); it is not modified.
        Default: a linear layer ``d -> n_classes`` initialised from ``seed``
        (features must then be 2-D).
    n_classes : int, optional
        Default ``max(y) + 1``.
    device : str or torch.device, optional
        Where to train (default CPU): ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``
        or ``"mps"``, one this machine has.
    progress : bool
        Show a progress bar over the folds.

    Returns
    -------
    numpy.ndarray of float64, shape (n_train, n_classes)
        Softmax of the held-out model's logits; rows sum to 1.

    Raises
    ------
    ValueError
        Bad shapes or labels, bad ``train_settings`` (a mapping with keys other
        than ``TrainSettings``' fields included), a bad ``seed``, a ``device``
        this machine does not have, ``n_folds < 2``, or ``n_folds`` larger than
        every class.
    """
    from sklearn.model_selection import StratifiedKFold
    from tqdm.auto import tqdm

    from . import train

    train._settings_dict(train_settings, "train_settings")  # refused before any fold is trained
    seed = _validation.as_seed(seed)
    device = _validation.as_device(device, optional=True)
    progress = _validation.as_bool(progress, "progress")
    x = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"features must have one row per sample, got shape {tuple(x.shape)}")
    labels = _labels(y, "y", len(x))
    c = int(labels.max()) + 1 if n_classes is None else _positive_int(n_classes, "n_classes", 2)
    labels = _labels(labels, "y", len(x), c)
    n_folds = _positive_int(n_folds, "n_folds", 2)
    if n_folds > np.bincount(labels).max():
        raise ValueError(f"n_folds={n_folds} exceeds the size of every class in y; use fewer folds")
    x = x.float() if not x.is_floating_point() else x
    if head is None:
        if x.ndim != 2:
            raise ValueError("features must be 2-D (n_train, d) when no head is given; pass head=...")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            head = torch.nn.Linear(x.shape[1], c).to(x.dtype)
    target = torch.from_numpy(labels)
    probs = np.full((len(x), c), np.nan)
    with warnings.catch_warnings():  # a small class missing from some folds is expected, see n_folds
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(x)), labels))
    for fit_index, held_out in tqdm(folds, desc="cross-validation", disable=not progress, leave=False):
        fit_index, held_out = torch.from_numpy(fit_index), torch.from_numpy(held_out)
        result = train.fit(head, x[fit_index], target[fit_index], None, None, settings=train_settings, seed=seed,
                           device=device, progress=False)
        with torch.no_grad():
            logits = _forward(result.final_model, x[held_out], device)
        probs[held_out.numpy()] = torch.softmax(logits.double(), dim=1).numpy()
    return probs


def cleanlab_scores(y, pred_probs, *, method: str = "self_confidence") -> np.ndarray:
    """Confident learning's label-error score, in [0, 1]; higher = more likely mislabeled.

    ``1 - cleanlab.rank.get_label_quality_scores(y, pred_probs, method=method)``
    (Northcutt et al., 2021, *Confident Learning: Estimating Uncertainty in
    Dataset Labels*). With the default ``self_confidence`` the score is
    ``1 - pred_probs[i, y[i]]``. Ranking by it is how SPEC.md section 9.6
    ranks cleanlab's detections.

    Parameters
    ----------
    y : array-like of int, shape (n_train,)
        Labels as given.
    pred_probs : array-like, shape (n_train, n_classes)
        Out-of-sample predicted probabilities (:func:`cross_validated_pred_probs`).
    method : str, keyword-only
        cleanlab's scoring method: ``"self_confidence"``, ``"normalized_margin"``
        or ``"confidence_weighted_entropy"``.

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
    """
    from cleanlab.rank import get_label_quality_scores

    p = _probabilities(pred_probs)
    labels = _labels(y, "y", p.shape[0], p.shape[1])
    methods = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
    if method not in methods:
        raise ValueError(f"method={method!r} is not one of cleanlab's scores; choose from {', '.join(methods)}")
    quality = get_label_quality_scores(labels, p, method=method)
    return 1.0 - np.asarray(quality, dtype=np.float64)


def cleanlab_suggested_labels(pred_probs) -> np.ndarray:
    """Confident learning's repair suggestion: the argmax of the out-of-sample probabilities (int64).

    SPEC.md section 9.6: cleanlab suggests ``argmax_c pred_probs[i, c]``; ties
    go to the lower class index.
    """
    return np.argmax(_probabilities(pred_probs), axis=1).astype(np.int64)


# ----------------------------------------------------------------------------- training dynamics


def training_loss(logits, y) -> np.ndarray:
    """Cross-entropy of the final model on the given label; higher = more suspicious.

    ``loss[i] = logsumexp(z_i) - z_i[y_i]`` for the logits ``z`` of the last
    checkpoint: the small-loss criterion of noisy-label learning (samples
    the model cannot fit are likely mislabeled).

    Parameters
    ----------
    logits : array-like, shape (n_train, n_classes)
    y : array-like of int, shape (n_train,)

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,), non-negative
    """
    labels = _labels(y, "y")
    z = _logits(logits, "logits", labels)
    return logsumexp(z, axis=1) - z[np.arange(z.shape[0]), labels]


def area_under_margin(logits_per_epoch, y) -> np.ndarray:
    """Minus the area under the margin (AUM); higher = more likely mislabeled.

    Pleiss et al., 2020, *Identifying Mislabeled Data using the Area Under the
    Margin Ranking*: the margin of sample ``i`` at epoch ``t`` is
    ``M_t(i) = z_t[i, y_i] - max_{c != y_i} z_t[i, c]`` and
    ``AUM(i) = mean_t M_t(i)``; mislabeled samples have a small or negative
    AUM. Here ``z_t`` are the logits of the checkpoint after epoch ``t``
    (the paper averages the margins seen during the epoch, which only
    differ by the updates within it). Returned as ``-AUM``.

    Parameters
    ----------
    logits_per_epoch : array-like, shape (n_epochs, n_train, n_classes)
    y : array-like of int, shape (n_train,)

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
    """
    labels = _labels(y, "y")
    z = _logits(logits_per_epoch, "logits_per_epoch", labels, ndim=3)
    rows = np.arange(z.shape[1])
    assigned = z[:, rows, labels]
    others = z.copy()
    others[:, rows, labels] = -np.inf
    margins = assigned - others.max(axis=2)
    return -margins.mean(axis=0)


# ----------------------------------------------------------------------------- out-of-distribution scores


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms > 0, norms, 1.0)


def knn_distance(features, reference, *, k: int = 10) -> np.ndarray:
    """Distance to the k-th nearest reference sample on the unit sphere; higher = more out-of-distribution.

    Sun et al., 2022, *Out-of-Distribution Detection with Deep Nearest
    Neighbors*: features and references are divided by their L2 norm, and the
    score is the Euclidean distance from each sample to its ``k``-th nearest
    reference (scikit-learn ``NearestNeighbors``, exact search). The
    references are the clean validation features.

    Parameters
    ----------
    features : array-like, shape (n_train, ...)
        Samples to score (flattened to vectors).
    reference : array-like, shape (n_ref, ...)
        In-distribution samples, same feature shape.
    k : int, keyword-only
        Which neighbour, ``1 <= k <= n_ref``.

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,), in [0, 2]
    """
    from sklearn.neighbors import NearestNeighbors

    x, ref = _features(features, "features"), _features(reference, "reference")
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"features have {x.shape[1]} dimensions but reference has {ref.shape[1]}; they must match")
    k = _positive_int(k, "k")
    if k > ref.shape[0]:
        raise ValueError(f"k={k} exceeds the {ref.shape[0]} reference samples; use a smaller k")
    index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(_unit_rows(ref))
    distances, _ = index.kneighbors(_unit_rows(x))
    return distances[:, k - 1].astype(np.float64)


def mahalanobis(features, reference, reference_labels, *, covariance: str = "ledoit_wolf") -> np.ndarray:
    """Class-conditional Mahalanobis distance to the closest class; higher = more out-of-distribution.

    Lee et al., 2018, *A Simple Unified Framework for Detecting
    Out-of-Distribution Samples and Adversarial Attacks*: fit one Gaussian per
    class with mean ``mu_c`` (the class mean of the reference features) and a
    covariance ``S`` shared by all classes (estimated from the reference
    features minus their class means), and score
    ``min_c (x - mu_c)^T S^{-1} (x - mu_c)`` (squared distance). The
    covariance is scikit-learn's Ledoit-Wolf shrinkage estimate (features
    often have more dimensions than references) or the empirical one
    (pseudo-inverted when singular).

    Parameters
    ----------
    features : array-like, shape (n_train, ...)
        Samples to score (flattened to vectors).
    reference : array-like, shape (n_ref, ...)
        Labelled in-distribution samples (the clean validation features).
    reference_labels : array-like of int, shape (n_ref,)
    covariance : {"ledoit_wolf", "empirical"}, keyword-only

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,), non-negative
    """
    from sklearn.covariance import EmpiricalCovariance, LedoitWolf

    x, ref = _features(features, "features"), _features(reference, "reference")
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"features have {x.shape[1]} dimensions but reference has {ref.shape[1]}; they must match")
    labels = _labels(reference_labels, "reference_labels", ref.shape[0])
    estimators = {"ledoit_wolf": LedoitWolf, "empirical": EmpiricalCovariance}
    if covariance not in estimators:
        raise ValueError(f"covariance={covariance!r} is not supported; choose from {', '.join(estimators)}")
    classes = np.unique(labels)
    means = np.stack([ref[labels == c].mean(axis=0) for c in classes])
    centred = ref - means[np.searchsorted(classes, labels)]
    covariance_matrix = estimators[covariance](assume_centered=True, store_precision=False).fit(centred).covariance_
    precision = _inverse(covariance_matrix)
    # (x - mu)^T P (x - mu) = x^T P x - 2 x^T P mu + mu^T P mu, one product with P for all classes
    xp = x @ precision
    quadratic = np.einsum("ij,ij->i", xp, x)[:, None] - 2.0 * xp @ means.T + np.einsum("cj,jk,ck->c", means,
                                                                                         precision, means)[None, :]
    return np.maximum(quadratic.min(axis=1), 0.0)


def _inverse(covariance: np.ndarray) -> np.ndarray:
    """Inverse of a covariance matrix: Cholesky when it is positive definite, else the pseudo-inverse."""
    from scipy import linalg

    try:
        return linalg.cho_solve(linalg.cho_factor(covariance), np.eye(covariance.shape[0]))
    except linalg.LinAlgError:
        return linalg.pinvh(covariance)


def energy(logits, *, temperature: float = 1.0) -> np.ndarray:
    """Energy score ``-T logsumexp(z / T)`` of the head's logits; higher = more out-of-distribution.

    Liu et al., 2020, *Energy-based Out-of-distribution Detection*:
    in-distribution inputs get low energy (large logits), so the free energy
    itself is the OOD score.

    Parameters
    ----------
    logits : array-like, shape (n_train, n_classes)
    temperature : float, keyword-only
        ``T > 0`` (the paper uses 1).

    Returns
    -------
    numpy.ndarray of float64, shape (n_train,)
    """
    z = _logits(logits, "logits")
    if not isinstance(temperature, (int, float, np.floating)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return -temperature * logsumexp(z / temperature, axis=1)


# ----------------------------------------------------------------------------- running the head


def _forward(module: torch.nn.Module, x: torch.Tensor, device, batch_size: int = 2048) -> torch.Tensor:
    device = _validation.as_device(device, optional=True)
    module = module.to(device).eval()
    out = [module(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


class _CheckpointOutputs(NamedTuple):
    """What :func:`_checkpoint_outputs` returns."""

    logits: np.ndarray  #: float64, shape (n_checkpoints, n, n_classes)
    penultimate: np.ndarray | None  #: float64, shape (n, d): the input of ``head_layer`` at the last checkpoint


@torch.no_grad()
def _checkpoint_outputs(head: torch.nn.Module, checkpoints, features, *, head_layer: str | None = None,
                        device=None) -> _CheckpointOutputs:
    """Logits of every checkpoint and the penultimate features of the last one.

    Parameters
    ----------
    head : torch.nn.Module
        The trainable part (``GlitchModel.suffix``); a copy is loaded with each
        checkpoint and run in eval mode.
    checkpoints : sequence of :class:`glitchlib.train.Checkpoint`
        One per epoch, in order.
    features : torch.Tensor, shape (n, ...)
        The head's inputs.
    head_layer : str, optional
        Name (relative to ``head``) of the final linear layer whose input is
        the penultimate representation (``GlitchModel.head_layers[0]``); None
        skips it.
    device : str or torch.device, optional

    Returns
    -------
    _CheckpointOutputs
    """
    if len(checkpoints) == 0:
        raise ValueError("checkpoints is empty; pass the run's checkpoints (one per epoch)")
    model = copy.deepcopy(head)
    captured: list[torch.Tensor] = []
    hook = None
    if head_layer is not None:
        modules = dict(model.named_modules())
        if head_layer not in modules:
            raise ValueError(f"head_layer={head_layer!r} is not a module of head; choose from {list(modules)[1:]}")
        hook = modules[head_layer].register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].cpu()))
    logits = []
    try:
        for index, checkpoint in enumerate(checkpoints):
            model.load_state_dict(checkpoint.state_dict)
            captured.clear()
            logits.append(_forward(model, features, device).double().numpy())
    finally:
        if hook is not None:
            hook.remove()
    penultimate = None if head_layer is None else torch.cat(captured).reshape(len(features), -1).double().numpy()
    return _CheckpointOutputs(np.stack(logits), penultimate)


# ----------------------------------------------------------------------------- everything for one run


@dataclass
class PeerReport:
    """The dedicated detectors' scores for one training set.

    Attributes
    ----------
    scores : pandas.DataFrame
        One float64 column per name in :data:`PEERS`, one row per training
        sample; higher = more suspicious in every column.
    suggested_labels : numpy.ndarray of int64, shape (n_train,)
        cleanlab's repair suggestion (:func:`cleanlab_suggested_labels`).
    pred_probs : numpy.ndarray, shape (n_train, n_classes)
        The out-of-sample probabilities of the cross-validation.
    timings : dict[str, float]
        Seconds per score: ``cleanlab`` (the cross-validation included),
        ``loss``, ``aum``, ``energy`` (each with an equal share of running the
        checkpoints), ``knn``, ``mahalanobis`` (each with the penultimate features).
    """

    scores: pd.DataFrame
    suggested_labels: np.ndarray
    pred_probs: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def compute_peers(head, checkpoints, x_train, y_train, x_test, y_test, *, train_settings, seed: int,
                  n_classes: int | None = None, head_layer: str | None = None, n_folds: int = 5, k: int = 10,
                  device=None) -> PeerReport:
    """Every dedicated detector of :data:`PEERS` on one training set.

    The label-error scores use the training run itself (``checkpoints``:
    loss, AUM) or retrain ``head`` by cross-validation with the run's
    ``train_settings`` (cleanlab). The out-of-distribution scores compare the
    training samples with the clean validation set ``(x_test, y_test)`` in
    the penultimate features of the last checkpoint (the input of
    ``head_layer``; ``x`` itself when ``head_layer`` is None) and take the
    energy of the last checkpoint's logits.

    Parameters
    ----------
    head : torch.nn.Module
        The initial trainable part (``GlitchModel.suffix`` before training).
    checkpoints : sequence of :class:`glitchlib.train.Checkpoint`
        The run's checkpoints, one per epoch.
    x_train, x_test : torch.Tensor
        The head's inputs for the (dirty) training set and the validation set.
    y_train, y_test : array-like of int
        Training labels as given, validation labels.
    train_settings : TrainSettings
        The run's training settings (for the cross-validation).
    seed, n_classes, n_folds, k, device
        See :func:`cross_validated_pred_probs` and :func:`knn_distance`.
    head_layer : str, optional
        The final linear layer of ``head`` (``GlitchModel.head_layers[0]``).

    Returns
    -------
    PeerReport
    """
    device = _validation.as_device(device, optional=True)
    y = _labels(y_train, "y_train", len(x_train))
    y_te = _labels(y_test, "y_test", len(x_test))
    c = int(max(y.max(), y_te.max())) + 1 if n_classes is None else _positive_int(n_classes, "n_classes", 2)
    timings: dict[str, float] = {}
    start = perf_counter()
    probs = cross_validated_pred_probs(x_train, y, train_settings=train_settings, n_folds=n_folds, seed=seed, head=head,
                                       n_classes=c, device=device)
    scores = {"cleanlab": cleanlab_scores(y, probs)}
    timings["cleanlab"] = perf_counter() - start

    start = perf_counter()
    outputs = _checkpoint_outputs(head, checkpoints, x_train, head_layer=head_layer, device=device)
    shared = (perf_counter() - start) / 3
    for name, compute in (("loss", lambda: training_loss(outputs.logits[-1], y)),
                          ("aum", lambda: area_under_margin(outputs.logits, y)),
                          ("energy", lambda: energy(outputs.logits[-1]))):
        start = perf_counter()
        scores[name] = compute()
        timings[name] = shared + perf_counter() - start

    start = perf_counter()
    if head_layer is None:
        train_features, test_features = x_train, x_test
    else:
        train_features = outputs.penultimate
        test_features = _checkpoint_outputs(head, checkpoints[-1:], x_test, head_layer=head_layer,
                                            device=device).penultimate
    shared = (perf_counter() - start) / 2
    for name, compute in (("knn", lambda: knn_distance(train_features, test_features, k=min(k, len(y_te)))),
                          ("mahalanobis", lambda: mahalanobis(train_features, test_features, y_te))):
        start = perf_counter()
        scores[name] = compute()
        timings[name] = shared + perf_counter() - start
    table = pd.DataFrame({name: np.asarray(scores[name], dtype=np.float64) for name in PEERS})
    return PeerReport(table, cleanlab_suggested_labels(probs), probs, timings)
