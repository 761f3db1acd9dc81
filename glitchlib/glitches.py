"""Seeded injection of data glitches (SPEC.md section 2).

Six injectors, pure functions on arrays; each returns a :class:`GlitchSet` with the
labels given to training, the true labels, the glitch mask and every sample's kind
(one of :data:`SAMPLE_KINDS`: clean, mislabeled, anomaly, corrupted):

* :func:`uniform_noise`: ``floor(r*n)`` samples get a label drawn uniformly from the
  ``C-1`` other classes;
* :func:`class_based_noise`: every contaminated class ``c`` sends ``floor(r*n_c)`` of
  its samples to one target class ``T(c) != c``;
* :func:`anomalies`: ``floor(r*n)`` images of one out-of-distribution class, all
  with one random in-distribution label, appended after the originals;
* :func:`mixed`: uniform noise and anomalies, ``ratio`` of the original ``n`` each;
* :func:`corruptions`: ``floor(r*n)`` images corrupted in place (MNIST-C's stripe or
  brightness, SPEC.md section 9.4), labels kept;
* :func:`no_glitch`: nothing injected, the clean twin of a glitched run (SPEC.md 9.3).

>>> from glitchlib import glitches
>>> g = glitches.uniform_noise([0, 1, 2, 3] * 5, ratio=0.1, seed=0)
>>> int(g.mask.sum()), bool((g.y[g.mask] != g.y_true[g.mask]).all())
(2, True)

Indices always refer to the original training set: the first ``n`` entries of every
returned array are the original samples in their original order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import _validation
from .settings import ANOMALY, CLEAN, CORRUPTED, CORRUPTIONS, GLITCHES, MISLABELED, SAMPLE_KINDS
from .data.transforms import match_image_shape

__all__ = [
    "GLITCHES", "SAMPLE_KINDS", "CLEAN", "MISLABELED", "ANOMALY", "CORRUPTED", "GlitchSet", "glitch_count",
    "uniform_noise", "class_based_noise", "anomalies", "mixed", "inject",
    "CORRUPTIONS", "corruptions", "corrupt_images", "no_glitch",
]

MAX_RATIO = 0.5


@dataclass(frozen=True, eq=False, repr=False)
class GlitchSet:
    """A training set with injected glitches and the ground truth to score detectors.

    Attributes
    ----------
    y : numpy.ndarray of int64, shape (n_dirty,)
        Labels given to training (``n_dirty = n`` plus the appended anomalies).
    y_true : numpy.ndarray of int64, shape (n_dirty,)
        True labels; for appended anomalies, their class in the out-of-distribution
        dataset.
    mask : numpy.ndarray of bool, shape (n_dirty,)
        True for glitched samples.
    kind : numpy.ndarray of str, shape (n_dirty,)
        The kind of every sample, one of :data:`SAMPLE_KINDS`: ``"clean"``,
        ``"mislabeled"``, ``"anomaly"`` or ``"corrupted"``.
    x : torch.Tensor, numpy.ndarray or None
        The inputs with the anomalies appended after the originals, or with the
        corrupted images in place (same type as the ``x`` given); None for pure
        label noise and for :func:`no_glitch`.
    ood_index : numpy.ndarray of int64
        Indices into ``x_ood`` of the appended anomalies, in append order (empty if none).
    target_classes : dict[int, int] or None
        Class-based noise: the target ``T(c)`` of every contaminated class ``c``.
    glitch : str
        The glitch injected, one of :data:`GLITCHES`.
    """

    y: np.ndarray
    y_true: np.ndarray
    mask: np.ndarray
    kind: np.ndarray
    x: object
    ood_index: np.ndarray
    target_classes: dict | None
    glitch: str

    @property
    def n_glitches(self) -> int:
        """Number of glitched samples (``mask.sum()``)."""
        return int(self.mask.sum())

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (f"GlitchSet(glitch={self.glitch!r}, n={len(self.y)}, "
                f"mislabeled={int((self.kind == MISLABELED).sum())}, "
                f"anomaly={int((self.kind == ANOMALY).sum())}, "
                f"corrupted={int((self.kind == CORRUPTED).sum())})")


# ------------------------------------------------------------------ checks

def glitch_count(ratio: float, n: int) -> int:
    """``floor(ratio * n)``, robust to binary rounding (``0.29 * 100`` gives 29)."""
    return math.floor(ratio * n + 1e-9)


def _check_ratio(ratio) -> float:
    return _validation.as_ratio(ratio, "ratio", high=MAX_RATIO)


def _check_seed(seed) -> int:
    return _validation.as_seed(seed, "seed")


def _labels(y, arg: str) -> np.ndarray:
    """``y`` as a 1-D non-empty int64 array of non-negative labels."""
    return _validation.labels_to_array(y, arg)


def _n_classes(y: np.ndarray, n_classes) -> int:
    if n_classes is None:
        n_classes = int(y.max()) + 1
        if n_classes < 2:
            raise ValueError("y holds a single class; pass n_classes (at least 2)")
        return n_classes
    n_classes = _validation.as_int(n_classes, "n_classes", low=2)
    if y.max() >= n_classes:
        raise ValueError(f"y holds label {y.max()}, outside [0, n_classes={n_classes})")
    return n_classes


def _check_length(x, n: int, arg: str, against: str) -> None:
    if not hasattr(x, "shape") or len(x.shape) == 0:
        raise ValueError(f"{arg} must be an array or tensor with one row per sample")
    if x.shape[0] != n:
        raise ValueError(f"{arg} has {x.shape[0]} rows but {against} has {n} labels")


def _what_to_do(n: int, samples: str) -> str:
    """How to make ``floor(ratio * n) >= 1``: a larger ratio where one is allowed, else more samples."""
    needed = math.ceil(1 / MAX_RATIO)
    if 1 / n <= MAX_RATIO:
        digits = 2 - math.floor(math.log10(1 / n))          # three significant digits, rounded up
        smallest = math.ceil(round(10 ** digits / n, 9)) / 10 ** digits
        return f"raise ratio to at least {smallest:g} or use more {samples} (n_train)"
    return f"use at least {needed} {samples} (n_train): ratio can be at most {MAX_RATIO:g}"


def _nonzero(count: int, ratio: float, n: int) -> int:
    if count == 0:
        raise ValueError(f"ratio={ratio:g} selects no sample: floor(ratio * n) = 0 for n = {n} samples; "
                         + _what_to_do(n, "samples"))
    return count


def _sub_seeds(seed: int, k: int) -> list[int]:
    """``k`` independent seeds derived from ``seed`` (numpy SeedSequence)."""
    return [int(s.generate_state(1, np.uint32)[0])
            for s in np.random.SeedSequence(seed).spawn(k)]


# ------------------------------------------------------------------ label noise

def uniform_noise(y, *, ratio: float, seed: int, n_classes: int | None = None) -> GlitchSet:
    """Uniform class noise: ``floor(ratio*n)`` labels flipped to a random other class.

    The flipped samples are drawn uniformly without replacement; each gets a label
    drawn uniformly from the ``n_classes - 1`` classes other than its own
    (SPEC.md section 2).

    Parameters
    ----------
    y : array-like of int, shape (n,)
        Clean training labels in ``[0, n_classes)`` (numpy or torch).
    ratio : float
        Share of samples to mislabel, in ``(0, 0.5]``.
    seed : int
        Seed of ``numpy.random.default_rng``.
    n_classes : int, optional
        Number of classes; default ``max(y) + 1``.

    Returns
    -------
    GlitchSet
        ``x`` is None; ``kind`` is ``"mislabeled"`` where ``mask``.
    """
    y_true = _labels(y, "y")
    ratio, seed = _check_ratio(ratio), _check_seed(seed)
    n_classes = _n_classes(y_true, n_classes)
    n = len(y_true)
    count = _nonzero(glitch_count(ratio, n), ratio, n)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, size=count, replace=False)
    y_new = y_true.copy()
    y_new[chosen] = (y_true[chosen] + rng.integers(1, n_classes, size=count)) % n_classes
    return _label_noise(y_new, y_true, chosen, "uniform", None)


def class_based_noise(y, *, ratio: float, seed: int, n_classes: int | None = None,
                      n_contaminated: int | None = None) -> GlitchSet:
    """Class-dependent noise: in a contaminated class ``c``, ``floor(ratio*n_c)`` labels become ``T(c)``.

    For every class ``c`` a target ``T(c) != c`` is drawn uniformly at random;
    then the contaminated classes are chosen (all classes present in ``y`` by
    default, else ``n_contaminated`` of them uniformly without replacement), and in
    each, ``floor(ratio * n_c)`` of its samples, drawn uniformly without replacement,
    are relabelled ``T(c)`` (SPEC.md section 2).

    Parameters
    ----------
    y : array-like of int, shape (n,)
        Clean training labels.
    ratio : float
        Share of every contaminated class to mislabel, in ``(0, 0.5]``.
    seed : int
    n_classes : int, optional
        Default ``max(y) + 1``.
    n_contaminated : int, optional
        Number of contaminated classes, in ``[1, number of classes present]``;
        None contaminates every class (the paper's per-dataset plots use 1).

    Returns
    -------
    GlitchSet
        ``target_classes`` maps every contaminated class to its target.
    """
    y_true = _labels(y, "y")
    ratio, seed = _check_ratio(ratio), _check_seed(seed)
    n_classes = _n_classes(y_true, n_classes)
    present = np.unique(y_true)
    n_contaminated = _validation.as_int(n_contaminated, "n_contaminated", low=1, optional=True)
    if n_contaminated is not None and n_contaminated > len(present):
        raise ValueError(f"n_contaminated={n_contaminated}: need None or an integer in [1, {len(present)}] "
                         "(the classes present in y)")
    rng = np.random.default_rng(seed)
    targets = (np.arange(n_classes) + rng.integers(1, n_classes, size=n_classes)) % n_classes
    if n_contaminated is None:
        contaminated = present
    else:
        contaminated = np.sort(rng.choice(present, size=int(n_contaminated), replace=False))
    y_new = y_true.copy()
    chosen = []
    for c in contaminated:
        members = np.flatnonzero(y_true == c)
        picked = rng.choice(members, size=glitch_count(ratio, len(members)), replace=False)
        y_new[picked] = targets[c]
        chosen.append(picked)
    chosen = np.concatenate(chosen)
    if len(chosen) == 0:
        largest = int(max((y_true == c).sum() for c in contaminated))
        raise ValueError(
            f"ratio={ratio:g} selects no sample: class-based noise mislabels floor(ratio * n_c) samples "
            f"of each contaminated class c, and the largest has n_c = {largest} "
            f"(floor({ratio:g} * {largest}) = 0); " + _what_to_do(largest, "samples per class"))
    mapping = {int(c): int(targets[c]) for c in contaminated}
    return _label_noise(y_new, y_true, chosen, "class-based", mapping)


def _label_noise(y_new, y_true, chosen, glitch, targets) -> GlitchSet:
    mask = np.zeros(len(y_true), dtype=bool)
    mask[chosen] = True
    kind = np.where(mask, MISLABELED, CLEAN)
    return GlitchSet(y=y_new, y_true=y_true, mask=mask, kind=kind, x=None,
                     ood_index=np.empty(0, dtype=np.int64), target_classes=targets,
                     glitch=glitch)


# ------------------------------------------------------------------ anomalies

def _append(x, x_ood, index: np.ndarray):
    """``x`` with ``x_ood[index]`` appended, converted to ``x``'s type, dtype and shape."""
    is_torch = isinstance(x, torch.Tensor)
    extra = x_ood[torch.as_tensor(index)] if isinstance(x_ood, torch.Tensor) else \
        np.asarray(x_ood)[index]
    if tuple(extra.shape[1:]) != tuple(x.shape[1:]):
        if len(x.shape) != 4 or len(extra.shape) != 4:
            raise ValueError(f"x_ood images of shape {tuple(extra.shape[1:])} cannot be matched "
                             f"to x images of shape {tuple(x.shape[1:])}; both must be "
                             "N x C x H x W to resize")
        floating = x.is_floating_point() if is_torch else np.issubdtype(x.dtype, np.floating)
        if not floating:
            raise ValueError("x must hold floating-point images when x_ood needs resizing")
        extra = match_image_shape(torch.as_tensor(extra).to(torch.float32), shape=x.shape[1:])
    if is_torch:
        extra = torch.as_tensor(extra).to(device=x.device, dtype=x.dtype)
        return torch.cat([x, extra])
    if isinstance(extra, torch.Tensor):
        extra = extra.detach().cpu().numpy()
    return np.concatenate([x, np.asarray(extra).astype(x.dtype, copy=False)])


def anomalies(x, y, x_ood, y_ood, *, ratio: float, seed: int,
              n_classes: int | None = None) -> GlitchSet:
    """Out-of-distribution anomalies: ``floor(ratio*n)`` images of one foreign class, appended.

    One class of the out-of-distribution pool is drawn uniformly; ``floor(ratio*n)``
    of its images are drawn without replacement, resized and channel-matched to
    ``x``'s images when needed (:func:`glitchlib.data.transforms.match_image_shape`), given one
    random in-distribution label in ``[0, n_classes)``, and appended after the
    originals (SPEC.md section 2).

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray, shape (n, C, H, W)
        Training inputs.
    y : array-like of int, shape (n,)
        Training labels.
    x_ood : torch.Tensor or numpy.ndarray, shape (m, C', H', W')
        Out-of-distribution pool (e.g. :func:`glitchlib.data.load_ood` ``.x``).
    y_ood : array-like of int, shape (m,)
        Classes of the pool in its own dataset. Every class must hold at least
        ``floor(ratio*n)`` images.
    ratio : float
        In ``(0, 0.5]``, relative to the original ``n``.
    seed : int
    n_classes : int, optional
        Default ``max(y) + 1``.

    Returns
    -------
    GlitchSet
        ``x`` of the same type as the given ``x`` with ``n + floor(ratio*n)`` rows;
        ``y_true`` of the anomalies is their class in the pool's dataset;
        ``ood_index`` gives their rows in ``x_ood``.
    """
    y_true = _labels(y, "y")
    ratio, seed = _check_ratio(ratio), _check_seed(seed)
    n_classes = _n_classes(y_true, n_classes)
    n = len(y_true)
    _check_length(x, n, "x", "y")
    y_ood = _labels(y_ood, "y_ood")
    _check_length(x_ood, len(y_ood), "x_ood", "y_ood")
    count = _nonzero(glitch_count(ratio, n), ratio, n)
    classes, sizes = np.unique(y_ood, return_counts=True)
    if sizes.min() < count:
        small = ", ".join(f"class {c}: {s}" for c, s in zip(classes, sizes) if s < count)
        raise ValueError(f"y_ood: every out-of-distribution class needs at least "
                         f"floor(ratio*n) = {count} images, but {small}; lower ratio or "
                         "give a larger pool")
    rng = np.random.default_rng(seed)
    ood_class = classes[rng.integers(len(classes))]
    ood_index = rng.choice(np.flatnonzero(y_ood == ood_class), size=count, replace=False)
    label = int(rng.integers(n_classes))
    x_new = _append(x, x_ood, ood_index)
    mask = np.concatenate([np.zeros(n, dtype=bool), np.ones(count, dtype=bool)])
    return GlitchSet(
        y=np.concatenate([y_true, np.full(count, label, dtype=np.int64)]),
        y_true=np.concatenate([y_true, y_ood[ood_index]]),
        mask=mask, kind=np.where(mask, ANOMALY, CLEAN), x=x_new,
        ood_index=ood_index.astype(np.int64), target_classes=None, glitch="anomalies")


def mixed(x, y, x_ood, y_ood, *, ratio: float, seed: int,
          n_classes: int | None = None) -> GlitchSet:
    """Uniform noise and anomalies in one training set, ``ratio`` of the original ``n`` each.

    :func:`uniform_noise` on the originals and :func:`anomalies` appended after them,
    each with its own seed derived from ``seed`` (``numpy.random.SeedSequence(seed).spawn(2)``),
    so ``mixed`` equals those two calls with the derived seeds (SPEC.md section 2).

    Parameters
    ----------
    x, y, x_ood, y_ood, ratio, seed, n_classes
        As for :func:`anomalies`.

    Returns
    -------
    GlitchSet
        ``kind`` tells the mislabeled originals from the appended anomalies.
    """
    _check_seed(seed)
    noise_seed, anomaly_seed = _sub_seeds(int(seed), 2)
    noise = uniform_noise(y, ratio=ratio, seed=noise_seed, n_classes=n_classes)
    n_classes = _n_classes(noise.y_true, n_classes)
    anomaly = anomalies(x, y, x_ood, y_ood, ratio=ratio, seed=anomaly_seed, n_classes=n_classes)
    n = len(noise.y)
    return GlitchSet(
        y=np.concatenate([noise.y, anomaly.y[n:]]),
        y_true=anomaly.y_true,
        mask=np.concatenate([noise.mask, anomaly.mask[n:]]),
        kind=np.concatenate([noise.kind, anomaly.kind[n:]]),
        x=anomaly.x, ood_index=anomaly.ood_index, target_classes=None, glitch="mixed")


# ------------------------------------------------------------------ corruptions

def _check_corruption(corruption, strength) -> tuple[str, float]:
    corruption = _validation.as_choice(corruption, "corruption", CORRUPTIONS)
    return corruption, _validation.as_real(strength, "strength", low=0.0, high=1.0, low_open=True)


def corrupt_images(x, *, corruption: str = "stripe", strength: float = 0.3):
    """Apply one MNIST-C corruption to every image of ``x`` (SPEC.md section 9.4).

    The corruption acts on pixel values in [0, 1]: the normalised images are
    mapped back (``x * 0.5 + 0.5``), corrupted, and normalised again
    (``(v - 0.5) / 0.5``), so the result is normalised like every input.

    * ``"stripe"``: invert (``1 - v``) the ``W // 4`` leftmost and the ``W // 4``
      rightmost columns (columns 0-6 and 21-27 of a 28 x 28 image); ``strength``
      is not used.
    * ``"brightness"``: ``clip(v + strength, 0, 1)`` per pixel (on grey images
      MNIST-C's shift of the HSV value).

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray, shape (n, C, H, W)
        Normalised images (values in [-1, 1]), floating point.
    corruption : {"stripe", "brightness"}
    strength : float
        Brightness shift ``c`` in (0, 1], default 0.3.

    Returns
    -------
    Same type and dtype as ``x``
        The corrupted images (a new array; ``x`` is not modified).

    Raises
    ------
    ValueError
        Unknown ``corruption``, ``strength`` outside (0, 1], ``x`` not a
        floating-point ``N x C x H x W`` array.
    """
    corruption, strength = _check_corruption(corruption, strength)
    if not hasattr(x, "shape") or len(x.shape) != 4:
        raise ValueError(f"x must hold N x C x H x W images, got shape {getattr(x, 'shape', None)}")
    is_torch = isinstance(x, torch.Tensor)
    floating = x.is_floating_point() if is_torch else np.issubdtype(np.asarray(x).dtype, np.floating)
    if not floating:
        raise ValueError("x must hold floating-point (normalised) images")
    out = x.clone() if is_torch else np.array(x, copy=True)
    if corruption == "stripe":  # only the two bands change; the other columns stay bit for bit
        width = out.shape[-1]
        band = width // 4
        for columns in (slice(0, band), slice(width - band, width)):
            out[..., columns] = _normalise(1 - _unit(out[..., columns]))
        return out
    shifted = _unit(out) + strength
    return _normalise(shifted.clamp(0, 1) if is_torch else np.clip(shifted, 0, 1))


def _unit(x):
    """Normalised values back in [0, 1] (SPEC.md section 1: ``x = (v - 0.5) / 0.5``)."""
    return x * 0.5 + 0.5


def _normalise(v):
    return (v - 0.5) / 0.5


def corruptions(x, y, *, ratio: float, seed: int, corruption: str = "stripe", strength: float = 0.3,
                n_classes: int | None = None) -> GlitchSet:
    """Corrupted images: ``floor(ratio*n)`` images corrupted in place, labels kept (SPEC.md section 9.4).

    The corrupted samples are drawn uniformly without replacement and changed by
    :func:`corrupt_images`; their labels stay right, the mask marks them and
    their kind is ``"corrupted"`` (scored like anomalies: detectors should rank
    them first).

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray, shape (n, C, H, W)
        Normalised training images (values in [-1, 1]).
    y : array-like of int, shape (n,)
        Training labels (kept as they are).
    ratio : float
        Share of images to corrupt, in ``(0, 0.5]``.
    seed : int
    corruption : {"stripe", "brightness"}
    strength : float
        Brightness shift in (0, 1] (default 0.3); unused by ``"stripe"``.
    n_classes : int, optional
        Default ``max(y) + 1``.

    Returns
    -------
    GlitchSet
        ``x`` the images with the corrupted ones in place (same type as the given
        ``x``, ``n`` rows), ``y == y_true``, ``kind`` ``"corrupted"`` where ``mask``.

    Raises
    ------
    ValueError
        Bad ``ratio``, ``seed``, labels, ``corruption`` (e.g. ``"blur"``) or
        ``strength``, or ``x`` and ``y`` of different lengths.
    """
    y_true = _labels(y, "y")
    ratio, seed = _check_ratio(ratio), _check_seed(seed)
    _check_corruption(corruption, strength)
    _n_classes(y_true, n_classes)
    n = len(y_true)
    _check_length(x, n, "x", "y")
    count = _nonzero(glitch_count(ratio, n), ratio, n)
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    x_new = x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
    index = torch.from_numpy(chosen) if isinstance(x, torch.Tensor) else chosen
    x_new[index] = corrupt_images(x[index], corruption=corruption, strength=strength)
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return GlitchSet(y=y_true.copy(), y_true=y_true, mask=mask, kind=np.where(mask, CORRUPTED, CLEAN),
                     x=x_new, ood_index=np.empty(0, dtype=np.int64), target_classes=None,
                     glitch="corruption")


def no_glitch(y, *, ratio: float = 0.1, seed: int = 0, n_classes: int | None = None) -> GlitchSet:
    """The clean twin of a glitched run: nothing injected, the mask all False (SPEC.md section 9.3).

    ``ratio`` and ``seed`` are checked like every injector's, so that a twin has
    valid settings, and otherwise ignored.

    Returns
    -------
    GlitchSet
        ``y == y_true`` (a copy of ``y``), ``mask`` all False, ``kind`` all
        ``"clean"``, ``x`` None.
    """
    y_true = _labels(y, "y")
    _check_ratio(ratio), _check_seed(seed)
    _n_classes(y_true, n_classes)
    return _label_noise(y_true.copy(), y_true, np.empty(0, dtype=np.int64), "none", None)


def inject(glitch: str, y, *, ratio: float, seed: int, x=None, x_ood=None, y_ood=None,
           n_classes: int | None = None, n_contaminated: int | None = None,
           corruption: str | None = None, strength: float = 0.3) -> GlitchSet:
    """Inject the glitch named ``glitch`` (one of :data:`GLITCHES`).

    ``x``, ``x_ood`` and ``y_ood`` are required for ``"anomalies"`` and ``"mixed"``,
    ``x`` for ``"corruption"`` (``corruption`` None means ``"stripe"``); ``n_contaminated`` only applies
    to ``"class-based"``. ``"none"`` injects nothing (``ratio`` is checked, then
    ignored).
    """
    _validation.as_choice(glitch, "glitch", GLITCHES)
    if n_contaminated is not None and glitch != "class-based":
        raise ValueError(f"n_contaminated only applies to glitch='class-based', not {glitch!r}")
    if corruption is not None and glitch != "corruption":
        raise ValueError(f"corruption only applies to glitch='corruption', not {glitch!r}")
    if glitch == "uniform":
        return uniform_noise(y, ratio=ratio, seed=seed, n_classes=n_classes)
    if glitch == "class-based":
        return class_based_noise(y, ratio=ratio, seed=seed, n_classes=n_classes, n_contaminated=n_contaminated)
    if glitch == "none":
        return no_glitch(y, ratio=ratio, seed=seed, n_classes=n_classes)
    if glitch == "corruption":
        if x is None:
            raise ValueError("glitch='corruption' needs x: pass the training images")
        return corruptions(x, y, ratio=ratio, seed=seed, corruption="stripe" if corruption is None else corruption,
                           strength=strength, n_classes=n_classes)
    missing = [name for name, v in (("x", x), ("x_ood", x_ood), ("y_ood", y_ood)) if v is None]
    if missing:
        raise ValueError(f"glitch={glitch!r} needs {', '.join(missing)}: pass the training images and the "
                         "out-of-distribution pool (glitchlib.data.load_ood)")
    function = anomalies if glitch == "anomalies" else mixed
    return function(x, y, x_ood, y_ood, ratio=ratio, seed=seed, n_classes=n_classes)
