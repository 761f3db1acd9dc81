"""The paper's further image experiments (SPEC.md sections 9.1-9.5) as lists of settings.

Each function takes the cells of a profile (e.g. :func:`glitchlib.profiles.profile_settings`),
picks its *base cells* (the four glitches of SPEC.md section 2 with none of the
options below) and derives the cells of one experiment from them, keeping
dataset, model, sizes and every other field. The profiles list these cells, and
the book's chapters derive them again from the same function, so both name the
same results-store entries: a cell computed by ``glitchlib grid`` is read, never
recomputed, by the chapter.

================================ ===============================================
function                         experiment
================================ ===============================================
:func:`ratio_ablation`           9.1: glitch ratios 1 % ... 30 %
:func:`one_contaminated_class`   9.2: class-based noise in one class
:func:`clean_twins`              9.3: the same runs with nothing injected
:func:`corruption_cells`         9.4: MNIST-C stripe and brightness
:func:`dirty_validation`         9.5: label noise in the validation set too
================================ ===============================================

>>> from glitchlib import studies
>>> from glitchlib.settings import ExperimentSettings
>>> base = [ExperimentSettings(dataset="mnist", glitch="uniform", seed=s) for s in range(5)]
>>> [(s.glitch, s.seed) for s in studies.clean_twins(base, seeds=2)]
[('none', 0), ('none', 1)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from .glitches import CORRUPTIONS

__all__ = [
    "PAPER_GLITCHES",
    "RATIOS",
    "base_cells",
    "ratio_ablation",
    "one_contaminated_class",
    "clean_twin",
    "clean_twins",
    "corruption_cells",
    "dirty_validation",
    "clean_validation_twin",
    "study_cells",
]

#: The glitches of SPEC.md section 2, whose cells the experiments start from.
PAPER_GLITCHES = ("uniform", "class-based", "anomalies", "mixed")
#: Glitch ratios of the ablation (SPEC.md section 9.1: "from 1 % up to 30 %").
RATIOS = (0.01, 0.05, 0.1, 0.2, 0.3)
#: Ratio carried by the settings of the clean twins (glitch "none" injects nothing).
TWIN_RATIO = 0.1
#: Training samples of the experiments run at a smaller size: the anomalies of the ratio
#: ablation (30 % of 2,000 = 600 images of one class fit the embedded out-of-distribution
#: pools, 763 to 900 images per class; 30 % of 6,000 would not), the corruptions and the
#: dirty validation sets (their new features and runs stay cheap). Base cells with fewer
#: training samples keep theirs.
SMALL_N_TRAIN = 2000
# Options that make a cell one of this module's experiments rather than a base cell.
_PLAIN = {"n_contaminated": None, "corruption": None, "test_ratio": 0.0, "test_share": None}


def base_cells(settings: Iterable) -> list:
    """The image cells of ``settings`` with a glitch of SPEC.md section 2 and none of the experiments' options.

    Tables are left out: the experiments of SPEC.md sections 9.1 to 9.5 are image
    experiments (anomalies and corruptions are not defined for tables).
    """
    from .data import IMAGE_DATASETS

    return [s for s in settings if s.glitch in PAPER_GLITCHES and s.dataset in IMAGE_DATASETS
            and all(getattr(s, name) == value for name, value in _PLAIN.items())]


def _derive(settings: Iterable, seeds: int, glitches: Sequence[str] | None = None, **changes) -> list:
    """One cell per distinct base cell (seed < ``seeds``, glitch in ``glitches``) with ``changes`` applied."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be a positive integer (the seeds 0 .. seeds-1 are used)")
    out = {}
    for s in base_cells(settings):
        if s.seed < seeds and (glitches is None or s.glitch in glitches):
            new = dataclasses.replace(s, **changes)
            out.setdefault(new.key(), new)
    return list(out.values())


def _small(n_train: int | None, cap: int | None) -> int | None:
    """``n_train`` capped at ``cap`` (None: no cap; a base cell with ``n_train`` None has the loaded size)."""
    if cap is None:
        return n_train
    return cap if n_train is None else min(n_train, cap)


def _datasets_models(settings: Iterable, seeds: int) -> list:
    """One base cell per dataset x model x every other field, of each seed < ``seeds`` (glitch left as is)."""
    out = {}
    for s in base_cells(settings):
        if s.seed < seeds:
            out.setdefault(dataclasses.replace(s, glitch="uniform", ratio=TWIN_RATIO).key(), s)
    return list(out.values())


def ratio_ablation(settings: Iterable, *, ratios: Sequence[float] = RATIOS, seeds: int = 3,
                   glitches: Sequence[str] = ("uniform", "class-based", "anomalies"),
                   anomaly_n_train: int | None = SMALL_N_TRAIN) -> list:
    """SPEC.md 9.1: every glitch of ``glitches`` at every ratio of ``ratios``, seeds ``0 .. seeds-1``.

    Label noise keeps the base cells' size, so its cells at the base cells' own
    ratio are the base cells themselves. Anomalies use at most
    ``anomaly_n_train`` training samples at every ratio (None: the base size),
    because all anomalies of a run come from one class of the pool.

    Raises
    ------
    ValueError
        A ratio outside (0, 0.5] (through ``ExperimentSettings``), or ``seeds`` < 1.
    """
    cells = {}
    for glitch in glitches:
        for ratio in ratios:
            for s in _derive(_datasets_models(settings, seeds), seeds, glitch=glitch, ratio=float(ratio)):
                if glitch == "anomalies":
                    s = dataclasses.replace(s, n_train=_small(s.n_train, anomaly_n_train))
                cells.setdefault(s.key(), s)
    return list(cells.values())


def one_contaminated_class(settings: Iterable, *, seeds: int = 5, ratio: float = 0.1) -> list:
    """SPEC.md 9.2: class-based noise in one class chosen per seed (``n_contaminated=1``)."""
    return _derive(_datasets_models(settings, seeds), seeds, glitch="class-based", ratio=ratio, n_contaminated=1)


def clean_twin(settings):
    """The same run with nothing injected (glitch ``"none"``; SPEC.md 9.3): same data, seed and model.

    Every glitched run of one seed (any glitch, any ratio) has the same twin; its
    ``ratio`` is :data:`TWIN_RATIO`, which ``"none"`` does not use.
    """
    return dataclasses.replace(settings, glitch="none", ratio=TWIN_RATIO, **_PLAIN)


def clean_twins(settings: Iterable, *, seeds: int = 5) -> list:
    """SPEC.md 9.3: the clean twin of every base cell of seed < ``seeds`` (one per dataset x model x seed)."""
    out = {}
    for s in _datasets_models(settings, seeds):
        twin = clean_twin(s)
        out.setdefault(twin.key(), twin)
    return list(out.values())


def corruption_cells(settings: Iterable, *, corruptions: Sequence[str] = CORRUPTIONS, seeds: int = 3,
                     ratio: float = 0.1, n_train: int | None = SMALL_N_TRAIN) -> list:
    """SPEC.md 9.4: ``ratio`` of the training images corrupted (MNIST-C), one cell per corruption and seed.

    At most ``n_train`` training samples (None: the base size): only the
    corrupted images need new features.
    """
    cells = {}
    for corruption in corruptions:
        for s in _derive(_datasets_models(settings, seeds), seeds, glitch="corruption", ratio=ratio,
                         corruption=corruption):
            s = dataclasses.replace(s, n_train=_small(s.n_train, n_train))
            cells.setdefault(s.key(), s)
    return list(cells.values())


def dirty_validation(settings: Iterable, *, test_ratio: float = 0.2, test_share: float = 0.15, seeds: int = 3,
                     glitches: Sequence[str] = ("uniform", "class-based"), ratio: float = 0.1,
                     n_train: int | None = SMALL_N_TRAIN) -> list:
    """SPEC.md 9.5: pairs of cells, clean and dirty validation set, for uniform and class-based noise.

    Both cells of a pair have at most ``n_train`` training samples (None: the
    base size) and a validation set of ``test_share`` times the training set;
    the dirty one gives ``test_ratio`` of its labels the same glitch as the
    training set. The list holds the dirty cell, then its clean
    twin (:func:`clean_validation_twin`), for every pair.
    """
    cells = {}
    for glitch in glitches:
        for s in _derive(_datasets_models(settings, seeds), seeds, glitch=glitch, ratio=ratio, n_test=None,
                         test_share=test_share, test_ratio=test_ratio):
            s = dataclasses.replace(s, n_train=_small(s.n_train, n_train))
            for cell in (s, clean_validation_twin(s)):
                cells.setdefault(cell.key(), cell)
    return list(cells.values())


def clean_validation_twin(settings):
    """The same run with a clean validation set of the same size (``test_ratio`` 0)."""
    return dataclasses.replace(settings, test_ratio=0.0)


def study_cells(settings: Iterable) -> list:
    """Every experiment of this module with its default sizes, for a profile's base cells.

    The ratio ablation uses 3 seeds, the one-class noise and the clean twins 5,
    the corruptions and the dirty validation sets 3; the anomalies of the
    ablation, the corruptions and the dirty validation sets at most
    :data:`SMALL_N_TRAIN` training samples (with the clean twins of seed 0 at
    that size: the originals of the corrupted images). Cells the profile
    already has are not repeated.
    """
    settings = list(settings)
    cells = {}
    gallery = [clean_twin(s) for s in corruption_cells(settings, corruptions=CORRUPTIONS[:1], seeds=1)]  # originals
    for group in (ratio_ablation(settings), one_contaminated_class(settings), clean_twins(settings),
                  corruption_cells(settings), gallery, dirty_validation(settings)):
        for s in group:
            cells.setdefault(s.key(), s)
    return list(cells.values())
