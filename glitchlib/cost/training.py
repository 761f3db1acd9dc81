"""The paper's cost decomposition T1 to T4 (SPEC.md section 9.9), and training time both ways.

* **T1**, training. Two ways:

  - *the paper's way*: the frozen backbone runs inside training, so every epoch
    pays its forward pass over the training set,
    ``T1_paper = epochs * n_train * c_epoch`` with ``c_epoch`` the seconds per
    image of one training epoch of the whole model (backbone forward, head
    forward and backward, SGD step);
  - *ours*: the backbone runs once over the training and validation images
    (features are cached) and the head trains on the features,
    ``T1_ours = (n_train + n_test) * c_backbone + t_head``.

  ``c_epoch`` and ``c_backbone`` are measured on ``sample`` training images by
  :func:`measure_training_cost`; ``t_head`` is the pipeline's ``training`` stage.
* **T2**, the train-to-validation matrix ``O(T n m d)`` (stage ``influence``);
* **T3**, the two counterfactual matrices at the last checkpoint ``O(n m d)``
  (stage ``counterfactuals``);
* **T4**, the signals ``O(n m |C|)`` (stage ``signals``).

The paper's claim: ``(T2 + T3 + T4) / T1`` is about 8 % (MNIST, 10 % of the
samples, same epochs, CPU only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import _validation
from .measure import timed

__all__ = [
    "PAPER_SHARE",
    "TrainingCostSettings",
    "cost_breakdown",
    "cost_cells",
    "measure_training_cost",
    "t1_to_t4_table",
]

#: The paper's claim: the signals cost about 8 % of training time.
PAPER_SHARE = 0.08

_STAGES = {"T2": "influence", "T3": "counterfactuals", "T4": "signals"}


@dataclass(frozen=True, kw_only=True)
class TrainingCostSettings:
    """What :func:`measure_training_cost` times; saved beside its result.

    Attributes
    ----------
    dataset, model, seed, subset, pretrained, weights, data_root :
        As in :class:`glitchlib.settings.ExperimentSettings`: which images and which model.
    lr, batch_size :
        SGD settings of the timed epoch (the run's training settings).
    sample : int
        Training images timed (the first ``sample`` of the loaded training set);
        per-image costs are the measured seconds divided by it.
    repeats : int
        Timed repetitions of each pass; the fastest counts (the one least slowed
        down by other processes on a shared machine).
    device : str
        Where to run.
    """

    dataset: str = "mnist"
    model: str = "efficientnet_lite0"
    seed: int = 0
    subset: float = 0.1
    pretrained: bool = True
    weights: str | None = None
    data_root: str | None = None
    lr: float = 0.02
    batch_size: int = 128
    sample: int = 256
    repeats: int = 3
    device: str = "cpu"

    def __post_init__(self) -> None:
        if int(self.sample) != self.sample or self.sample < 1:
            raise ValueError(f"sample={self.sample!r}: need a positive number of images to time")
        if int(self.repeats) != self.repeats or self.repeats < 1:
            raise ValueError(f"repeats={self.repeats!r}: need at least one timed repetition")

    @classmethod
    def from_experiment(cls, settings, *, sample: int = 256, repeats: int = 3) -> TrainingCostSettings:
        """The cost settings of one experiment cell (its data, model and training settings).

        ``sample`` is capped at the cell's ``n_train`` when the cell has one.
        """
        from ..experiments import resolve_training_settings

        train = resolve_training_settings(settings)
        sample = min(sample, settings.n_train) if settings.n_train else sample
        return cls(dataset=settings.dataset, model=settings.model, seed=settings.seed, subset=settings.subset,
                   pretrained=settings.pretrained, weights=settings.weights, data_root=settings.data_root,
                   lr=train.lr, batch_size=train.batch_size, sample=sample, repeats=repeats,
                   device=settings.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_training_cost(settings: TrainingCostSettings) -> dict[str, Any]:
    """Seconds per image of the backbone's forward pass and of one training epoch of the whole model.

    Times, on the first ``settings.sample`` training images, after an untimed
    warm-up on 8 images (one-off initialisation), both in batches of
    ``settings.batch_size``, each the fastest of ``settings.repeats`` passes:

    * ``backbone_seconds``: :func:`glitchlib.features.compute_features` (the
      frozen prefix's forward pass, no cache), what "features once" costs;
    * ``epoch_seconds``: one epoch of :func:`glitchlib.train.fit` on the whole
      model (backbone forward pass in every batch), what every epoch costs the
      paper's way.

    Returns
    -------
    dict
        ``n_train`` and ``n_test`` (sizes of the loaded sets), ``sample``,
        ``backbone_seconds``, ``epoch_seconds``, and the per-image costs
        ``backbone_per_image`` and ``epoch_per_image`` (seconds).

    Raises
    ------
    ValueError
        A ``settings.device`` this machine does not have, before anything is loaded.
    """
    from .. import data, models
    from ..features import compute_features
    from ..settings import TrainSettings
    from ..train import fit

    s = settings
    _validation.as_device(s.device)  # before loading data and weights
    ds = data.load(s.dataset, seed=s.seed, subset=s.subset, root=s.data_root)
    model = models.create(s.model, n_classes=ds.n_classes, pretrained=s.pretrained, weights=s.weights, seed=s.seed)
    k = min(s.sample, len(ds.x_train))
    x, y = ds.x_train[:k], ds.y_train[:k]
    one_epoch = TrainSettings(lr=s.lr, batch_size=s.batch_size, epochs=1)

    def backbone(images):
        return compute_features(model, images, device=s.device, batch_size=s.batch_size, progress=False)

    def epoch(images, labels):
        return fit(model, images, labels, None, None, settings=one_epoch, seed=s.seed, device=s.device, progress=False)

    backbone(x[:8]), epoch(x[:8], y[:8])  # warm-up, untimed
    t_backbone = min(timed(lambda: backbone(x), device=s.device)[1] for _ in range(s.repeats))
    t_epoch = min(timed(lambda: epoch(x, y), device=s.device)[1] for _ in range(s.repeats))
    return {"n_train": len(ds.x_train), "n_test": len(ds.x_test), "sample": k,
            "backbone_seconds": t_backbone, "epoch_seconds": t_epoch,
            "backbone_per_image": t_backbone / k, "epoch_per_image": t_epoch / k}


def cost_breakdown(
    stage_seconds: Mapping[str, float],
    measured: Mapping[str, float],
    *,
    n_train: int,
    n_test: int,
    epochs: int,
) -> dict[str, float]:
    """T1 both ways, T2, T3, T4 (seconds) and the share ``(T2 + T3 + T4) / T1`` both ways.

    Parameters
    ----------
    stage_seconds : mapping
        Seconds of the pipeline's stages ``training``, ``influence``,
        ``counterfactuals`` and ``signals`` (one run, or a mean over runs).
    measured : mapping
        ``backbone_per_image`` and ``epoch_per_image`` from :func:`measure_training_cost`.
    n_train, n_test : int
        Training and validation samples of the run.
    epochs : int
        Training epochs of the run.

    Returns
    -------
    dict
        ``T1 paper``, ``T1 ours``, ``T2``, ``T3``, ``T4``, ``share paper``, ``share ours``.

    Raises
    ------
    ValueError
        A stage or a measured cost is missing, or a size is not positive.
    """
    missing = [s for s in ("training", *_STAGES.values()) if s not in stage_seconds]
    missing += [k for k in ("backbone_per_image", "epoch_per_image") if k not in measured]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}: give the pipeline's stage seconds and the measured costs")
    if min(n_train, n_test, epochs) < 1:
        raise ValueError(f"n_train={n_train}, n_test={n_test}, epochs={epochs}: all must be positive")
    out = {
        "T1 paper": epochs * n_train * float(measured["epoch_per_image"]),
        "T1 ours": (n_train + n_test) * float(measured["backbone_per_image"]) + float(stage_seconds["training"]),
        **{t: float(stage_seconds[stage]) for t, stage in _STAGES.items()},
    }
    detection = out["T2"] + out["T3"] + out["T4"]
    out["share paper"] = detection / out["T1 paper"]
    out["share ours"] = detection / out["T1 ours"]
    return out


def cost_cells(settings: Sequence, *, dataset: str = "mnist", glitch: str = "class-based"):
    """One cell per model of a profile in the paper's cost setting, and the models that cannot run here.

    Picks, for every model of ``settings``, the first cell with ``dataset`` (the
    profile's first dataset when it has none) and ``glitch`` (the first glitch
    when absent). Cells :func:`glitchlib.profiles.runnable` rejects are returned
    apart, with the reason.

    Returns
    -------
    (list of ExperimentSettings, dict of str to str)
        Runnable cells; not-runnable model -> reason.
    """
    from ..profiles import runnable

    if not settings:
        raise ValueError("settings is empty: give the cells of a profile")
    datasets = [s.dataset for s in settings]
    chosen = dataset if dataset in datasets else datasets[0]
    cells, skipped = [], {}
    for model in dict.fromkeys(s.model for s in settings):
        candidates = [s for s in settings if s.model == model and s.dataset == chosen]
        if not candidates:
            continue
        cell = next((s for s in candidates if s.glitch == glitch), candidates[0])
        ok, reason = runnable(cell)
        if ok:
            cells.append(cell)
        else:
            skipped[model] = reason
    return cells, skipped


def t1_to_t4_table(timings: pd.DataFrame, runs: pd.DataFrame, measured: Mapping[str, Mapping], *,
                   cells) -> pd.DataFrame:
    """T1 (both ways), T2, T3, T4 and the shares, one column per cell's model.

    Stage seconds are the mean over the runs of each cell's dataset, model and
    glitch in ``timings`` (the store's timings table); sizes come from ``runs``,
    epochs from the cell's training settings, per-image costs from ``measured``
    (model -> :func:`measure_training_cost` result). The last row is the paper's claim.
    """
    from ..experiments import resolve_training_settings

    columns = {}
    for cell in cells:
        select = (timings["dataset"] == cell.dataset) & (timings["model"] == cell.model) & (
            timings["glitch"] == cell.glitch)
        stages = timings[select].groupby(["key", "stage"])["seconds"].sum().groupby("stage").mean()
        sizes = runs[runs["key"].isin(timings.loc[select, "key"])]
        if sizes.empty:
            continue
        epochs = resolve_training_settings(cell).epochs
        b = cost_breakdown(stages.to_dict(), measured[cell.model], n_train=int(sizes["n_train"].iloc[0]),
                           n_test=int(sizes["n_test"].iloc[0]), epochs=epochs)
        column = {k: f"{v:.2f} s" for k, v in b.items() if k.startswith("T")}
        column.update({k: f"{b[k]:.2%}" for k in ("share paper", "share ours")})
        column["runs, epochs, n, m"] = (f"{sizes['key'].nunique()}, {epochs}, {int(sizes['n_train'].iloc[0])}, "
                                        f"{int(sizes['n_test'].iloc[0])}")
        columns[f"{cell.dataset} · {cell.model}"] = column
    table = pd.DataFrame(columns)
    table["the paper"] = ""
    if not table.empty:
        table.loc["share paper", "the paper"] = f"about {PAPER_SHARE:.0%}"
    return table.rename(index=_ROW_NAMES)


_ROW_NAMES = {
    "T1 paper": "T1 training, the paper's way (backbone every epoch)",
    "T1 ours": "T1 training, ours (features once)",
    "T2": "T2 influence matrix",
    "T3": "T3 counterfactual matrices",
    "T4": "T4 signals",
    "share paper": "(T2+T3+T4) / T1, the paper's way",
    "share ours": "(T2+T3+T4) / T1, ours",
}
