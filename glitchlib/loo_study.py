"""Why TracIn: TracIn and Koh and Liang's influence function against leave-one-out retraining (SPEC.md 9.8).

For one small dataset and model, :func:`run_study` trains the model with
``glitchlib.train.fit``, computes TracIn's ``I`` (every epoch's checkpoint), the
influence function ``IF`` (last checkpoint, exact Hessian) and the leave-one-out
matrix ``LOOR`` (``glitchlib.loor``), and correlates, per left-out training sample
``i``, the row ``I[i, :]`` (and ``IF[i, :]``) with ``LOOR[i, :]`` over the
validation samples (Pearson). The paper's claim: TracIn correlates better.

Datasets: scikit-learn's breast cancer (2 classes, 30 features) and wine (3
classes, 13 features), standardised with the training rows' means and standard
deviations, and MNIST (the embedded 10 % subset): features of the frozen
``efficientnet_lite0`` backbone, reduced by a PCA fitted on the training rows and
standardised likewise. Models: logistic regression (one ``Linear``) or an MLP
with one hidden ReLU layer, in float64, trained with plain SGD.

The leave-one-out matrix is the expensive part; it is cached in the results store
under ``<results>/loo_study/<key>/`` (settings and data fingerprint in
``settings.json``, the matrix in ``loor.npz``, both written atomically), so a
second build reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import loor as _loor
from .features import _tensor_sha256
from .influence import InfluenceFunction, TracIn
from .settings import TrainSettings
from .store import atomic_write, read_json, write_json
from .train import fit

__all__ = [
    "DATASETS", "METHODS", "StudySettings", "Study", "chapter_settings", "run_study",
    "correlation_table", "timing_table", "plot_ecdf", "plot_sample", "summary_markdown", "provenance_markdown",
]

#: Datasets of the study: two from scikit-learn, MNIST on frozen-backbone features.
DATASETS = ("breast_cancer", "wine", "mnist")
#: The two estimates compared with leave-one-out retraining.
METHODS = ("TracIn", "influence function")
_DIR = "loo_study"
_FORMAT = 1


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True, kw_only=True)
class StudySettings:
    """One dataset x model of the study; every field changes the numbers."""

    dataset: str = _help("breast_cancer, wine (scikit-learn) or mnist (embedded, efficientnet_lite0 features).",
                         "breast_cancer")
    n_train: int = _help("Training samples (a seeded stratified split).", 200)
    n_test: int = _help("Validation samples (a seeded stratified split, disjoint from training).", 100)
    hidden: int = _help("0: logistic regression; otherwise the width of one hidden ReLU layer.", 0)
    lr: float = _help("SGD learning rate (constant).", 0.1)
    batch_size: int = _help("Mini-batch size.", 32)
    epochs: int = _help("Epochs (one TracIn checkpoint each).", 20)
    damping: float = _help(
        "lambda added to the Hessian's diagonal by the influence function (plus the magnitude of the Hessian's "
        "most negative eigenvalue, if any).", 1e-3)
    seed: int = _help("Seeds the split, the initial weights and the batch order.", 0)
    n_removed: int | None = _help("Training samples left out one at a time (None: all; else a seeded subset).",
                                  None)
    pca_dim: int = _help("MNIST only: PCA components of the backbone features.", 32)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: choose one of {', '.join(DATASETS)}")
        for name in ("n_train", "n_test", "batch_size", "epochs", "pca_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: need a positive integer")
        if not isinstance(self.hidden, int) or self.hidden < 0:
            raise ValueError(f"hidden={self.hidden!r}: need 0 (logistic regression) or a positive width")
        if not self.lr > 0 or not self.damping >= 0:
            raise ValueError(f"lr={self.lr!r}, damping={self.damping!r}: need lr > 0 and damping >= 0")
        if self.n_removed is not None and (not isinstance(self.n_removed, int) or self.n_removed < 1):
            raise ValueError(f"n_removed={self.n_removed!r}: need a positive integer or None (all)")

    @property
    def model_name(self) -> str:
        return "logistic regression" if self.hidden == 0 else f"MLP ({self.hidden} hidden)"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Name of the store directory: dataset, model and a hash of every field."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.dataset}-h{self.hidden}-{digest}"


def chapter_settings(profile: str) -> list[StudySettings]:
    """The study's cells for a book profile: full sizes for ``embedded``/``paper``, small ones otherwise.

    Each dataset gets a logistic regression and an MLP with 16 hidden units; every
    training sample is left out once.
    """
    full = str(profile) in ("embedded", "paper")
    sizes = {"breast_cancer": (300, 150), "wine": (118, 60), "mnist": (300, 200)} if full else \
        {"breast_cancer": (40, 30), "wine": (40, 30), "mnist": (40, 30)}
    return [StudySettings(dataset=d, n_train=n, n_test=m, hidden=h, epochs=20 if full else 5)
            for d, (n, m) in sizes.items() for h in (0, 16)]


# ---------------------------------------------------------------- data
class _Split(NamedTuple):
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    return torch.from_numpy(scaler.transform(train)), torch.from_numpy(scaler.transform(test))


def _load_sklearn(s: StudySettings) -> _Split:
    """Breast cancer or wine from ``sklearn.datasets``, split (stratified, seeded) and standardised."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[s.dataset]
    x, y = loader(return_X_y=True)
    if s.n_train + s.n_test > len(y):
        raise ValueError(f"n_train + n_test = {s.n_train + s.n_test} exceeds the {len(y)} samples of {s.dataset}")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, train_size=s.n_train, test_size=s.n_test, stratify=y, random_state=s.seed)
    x_train, x_test = _standardise(x_train, x_test)
    return _Split(x_train, torch.from_numpy(y_train).long(), x_test, torch.from_numpy(y_test).long(),
                  f"scikit-learn {s.dataset} ({len(y)} samples, {x.shape[1]} features)")


def _load_mnist(s: StudySettings, features_dir: Path) -> _Split:
    """Embedded MNIST: a stratified subset, efficientnet_lite0 features (cached), PCA and standardisation."""
    from sklearn.decomposition import PCA

    from . import data, features, models

    d = data.load("mnist")
    for name, n, y in (("n_train", s.n_train, d.y_train), ("n_test", s.n_test, d.y_test)):
        if n > len(y):
            raise ValueError(f"{name}={n} exceeds the {len(y)} MNIST samples available")
    train = data.stratified_indices(d.y_train.numpy(), fraction=s.n_train / len(d.y_train), seed=s.seed)
    test = data.stratified_indices(d.y_test.numpy(), fraction=s.n_test / len(d.y_test), seed=s.seed)
    backbone = models.create("efficientnet_lite0", n_classes=d.n_classes, seed=s.seed)
    f_train, f_test = (features.compute_features(backbone, x, cache_dir=features_dir, progress=False).double()
                       for x in (d.x_train[torch.from_numpy(train)], d.x_test[torch.from_numpy(test)]))
    pca = PCA(n_components=min(s.pca_dim, len(train)), random_state=s.seed).fit(f_train.numpy())
    x_train, x_test = _standardise(pca.transform(f_train.numpy()), pca.transform(f_test.numpy()))
    return _Split(x_train, d.y_train[train], x_test, d.y_test[test],
                  f"MNIST ({d.source}), efficientnet_lite0 features (weights `{backbone.weights_id}`), "
                  f"PCA to {pca.n_components_} dimensions")


def _load(s: StudySettings, results_dir: Path) -> _Split:
    return _load_mnist(s, results_dir / "features") if s.dataset == "mnist" else _load_sklearn(s)


def _initial_model(s: StudySettings, n_features: int, n_classes: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        if s.hidden == 0:
            model = nn.Linear(n_features, n_classes)
        else:
            model = nn.Sequential(nn.Linear(n_features, s.hidden), nn.ReLU(), nn.Linear(s.hidden, n_classes))
    return model.double()


# ---------------------------------------------------------------- study
@dataclass
class Study:
    """Everything :func:`run_study` measured for one :class:`StudySettings`.

    ``tracin`` and ``influence`` are ``k x m`` (rows of the left-out samples,
    positive: the sample lowered the validation loss); ``loor`` holds the
    ``k x m`` leave-one-out matrix; ``correlations`` has one row per sample and
    method (columns ``sample``, ``method``, ``pearson``).
    """

    settings: StudySettings
    source: str
    n_parameters: int
    damping: float
    val_accuracy: float
    tracin: np.ndarray
    influence: np.ndarray
    loor: _loor.LeaveOneOut
    loor_cached: bool
    seconds: dict[str, float]
    correlations: pd.DataFrame


def _fingerprint(split: _Split, model: nn.Module) -> str:
    parts = [_tensor_sha256(t) for t in split[:4]] + [_tensor_sha256(v) for v in model.state_dict().values()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _cached_loor(directory: Path, s: StudySettings, fingerprint: str) -> _loor.LeaveOneOut | None:
    try:
        meta = read_json(directory / "settings.json")
        if meta["format"] != _FORMAT or meta["settings"] != s.to_dict() or meta["fingerprint"] != fingerprint:
            return None
        with np.load(directory / "loor.npz") as z:
            return _loor.LeaveOneOut(z["matrix"], z["indices"], z["losses"], float(meta["seconds"]),
                                     int(meta["n_jobs"]))
    except (OSError, KeyError, ValueError, json.JSONDecodeError):
        return None


def _save_loor(directory: Path, s: StudySettings, fingerprint: str, result: _loor.LeaveOneOut) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, matrix=result.matrix, indices=result.indices, losses=result.losses)
    atomic_write(directory / "loor.npz", lambda f: f.write(buffer.getvalue()))
    write_json(directory / "settings.json", {"format": _FORMAT, "settings": s.to_dict(), "fingerprint": fingerprint,
                                             "seconds": result.seconds, "n_jobs": result.n_jobs})


def _damping(model: nn.Module, checkpoint, split: _Split, damping: float) -> float:
    """``damping``, raised by the Hessian's most negative eigenvalue when there is one (non-convex models).

    Koh and Liang damp the Hessian so that it is positive definite; the smallest
    damping that does so plus ``damping`` keeps the estimate as close to the
    undamped one as the Cholesky solve allows.
    """
    h = InfluenceFunction(model, checkpoint, layers=None, damping=damping).hessian(split.x_train, split.y_train)
    return damping + max(0.0, -float(torch.linalg.eigvalsh(h)[0]))


def run_study(
    settings: StudySettings,
    *,
    results_dir: str | Path = "results",
    compute: bool = True,
    n_jobs: int | None = None,
    progress: bool = True,
) -> Study:
    """Train, estimate (TracIn, influence function), retrain leave-one-out (cached) and correlate.

    Parameters
    ----------
    settings : StudySettings
        Dataset, sizes, model and training.
    results_dir : path-like
        The results store; the leave-one-out matrix is read from and written to
        ``<results_dir>/loo_study/<settings.key()>/``, MNIST features are cached
        in ``<results_dir>/features``.
    compute : bool
        Compute the leave-one-out matrix when it is not cached; False raises instead.
    n_jobs : int, optional
        Processes for the leave-one-out retraining (default: every core).
    progress : bool
        Show progress bars.

    Returns
    -------
    Study

    Raises
    ------
    ValueError
        A leave-one-out matrix is missing and ``compute`` is False, or a size
        exceeds the dataset.
    """
    s, root = settings, Path(results_dir)
    split = _load(s, root)
    n_classes = int(max(split.y_train.max(), split.y_test.max())) + 1
    model = _initial_model(s, split.x_train.shape[1], n_classes)
    train = TrainSettings(lr=s.lr, batch_size=s.batch_size, epochs=s.epochs)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=s.lr)  # its first use imports torch._dynamo: untimed
    seconds = {}
    start = time.perf_counter()
    trained = fit(model, split.x_train, split.y_train, split.x_test, split.y_test, settings=train, seed=s.seed,
                  progress=False)
    seconds["training"] = time.perf_counter() - start
    indices = _loor._removal_indices(s.n_train, s.n_removed, s.seed)
    start = time.perf_counter()
    tracin = TracIn(model, trained.checkpoints, layers=None, dtype=torch.float64, progress=False).train_test(*split[:4])
    seconds["TracIn"] = time.perf_counter() - start
    start = time.perf_counter()
    damping = _damping(model, trained.checkpoints[-1], split, s.damping)
    engine = InfluenceFunction(model, trained.checkpoints[-1], layers=None, damping=damping)
    influence = engine.train_test(*split[:4])
    seconds["influence function"] = time.perf_counter() - start

    directory, fingerprint = root / _DIR / s.key(), _fingerprint(split, model)
    result = _cached_loor(directory, s, fingerprint)
    cached = result is not None
    if result is None:
        if not compute:
            raise ValueError(f"no leave-one-out matrix for {s.key()} in {directory}; run with compute=True")
        result = _loor.leave_one_out(model, *split[:4], settings=train, seed=s.seed, indices=indices, n_jobs=n_jobs,
                                     progress=progress)
        _save_loor(directory, s, fingerprint, result)
    seconds["leave-one-out"] = result.seconds
    rows = {"TracIn": tracin.numpy()[indices], "influence function": influence.numpy()[indices]}
    correlations = pd.concat([
        pd.DataFrame({"sample": indices, "method": method, "pearson": _loor.row_correlations(m, result.matrix)})
        for method, m in rows.items()], ignore_index=True)
    accuracy = float(trained.history["val_acc"].iloc[-1])
    return Study(s, split.source, engine.n_parameters, damping, accuracy, rows["TracIn"], rows["influence function"],
                 result, cached, seconds, correlations)


# ---------------------------------------------------------------- report
_NAMES = {"breast_cancer": "breast cancer", "wine": "wine", "mnist": "MNIST"}


def _label(s: StudySettings) -> tuple[str, str]:
    return _NAMES[s.dataset], s.model_name


def correlation_table(studies: list[Study]) -> pd.DataFrame:
    """Mean and median Pearson correlation with LOOR per dataset, model and method, the paper's claim beside.

    Rows are dataset x model; the column ``TracIn better`` says whether TracIn's
    mean correlation is the higher one (the paper's claim).
    """
    rows = []
    for study in studies:
        dataset, model = _label(study.settings)
        row = {"dataset": dataset, "model": model, "n": len(study.loor.indices), "m": study.tracin.shape[1],
               "parameters": study.n_parameters, "damping": study.damping}
        stats = study.correlations.groupby("method")["pearson"]
        for method in METHODS:
            row[f"{method} mean"] = stats.mean()[method]
            row[f"{method} median"] = stats.median()[method]
        row["TracIn better"] = "yes" if row["TracIn mean"] > row["influence function mean"] else "no"
        row["paper"] = "TracIn better"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["dataset", "model"])


def timing_table(studies: list[Study]) -> pd.DataFrame:
    """Seconds of training, TracIn, the influence function and the leave-one-out retraining, per cell."""
    rows = []
    for study in studies:
        dataset, model = _label(study.settings)
        rows.append({"dataset": dataset, "model": model, **study.seconds,
                     "retrainings": len(study.loor.indices) + 1, "processes": study.loor.n_jobs,
                     "from cache": study.loor_cached})
    return pd.DataFrame(rows).set_index(["dataset", "model"])


def plot_ecdf(studies: list[Study]):
    """ECDF of the per-sample correlations with LOOR: a panel per dataset (columns) and model (rows), a line per method.

    A curve further right means higher correlations (the paper's figure).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    datasets = list(dict.fromkeys(_label(st.settings)[0] for st in studies))
    models = list(dict.fromkeys(_label(st.settings)[1] for st in studies))
    fig, axes = plt.subplots(len(models), len(datasets), figsize=(3.3 * len(datasets), 2.8 * len(models)),
                             squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat:
        ax.set_visible(False)
    for study in studies:
        dataset, model = _label(study.settings)
        ax = axes[models.index(model)][datasets.index(dataset)]
        ax.set_visible(True)
        sns.ecdfplot(data=study.correlations.dropna(), x="pearson", hue="method", hue_order=list(METHODS), ax=ax)
        legend = ax.get_legend()
        if legend is not None:
            handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
            legend.remove()
        ax.set_title(f"{dataset}, {model}", fontsize=10)
        ax.set_xlabel("Pearson r with LOOR")
        ax.set_xlim(-1, 1)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(METHODS), frameon=False)
    fig.tight_layout()
    return fig


def plot_sample(study: Study, *, sample: int | None = None):
    """One training sample's row: TracIn and the influence function against LOOR, one dot per validation sample.

    ``sample`` is a position in ``x_train`` (default: the left-out sample whose
    TracIn correlation is the median one). Each estimate is drawn on its own
    axis scale; a straight rising cloud means a correlation near 1.
    """
    import matplotlib.pyplot as plt

    r = study.correlations[study.correlations["method"] == "TracIn"].dropna()
    if sample is None:
        sample = int(r.sort_values("pearson")["sample"].iloc[len(r) // 2])
    row = int(np.flatnonzero(study.loor.indices == sample)[0])
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    for ax, (method, matrix) in zip(axes, (("TracIn", study.tracin), ("influence function", study.influence))):
        ax.scatter(study.loor.matrix[row], matrix[row], s=10)
        rho = study.correlations.query("method == @method and sample == @sample")["pearson"].iloc[0]
        ax.set_title(f"{method}: r = {rho:.2f}", fontsize=10)
        ax.set_xlabel(f"LOOR[{sample}, j]")
        ax.set_ylabel(f"estimate[{sample}, j]")
    fig.suptitle(" / ".join(_label(study.settings)) + f", training sample {sample}", fontsize=10)
    fig.tight_layout()
    return fig


def summary_markdown(studies: list[Study]) -> str:
    """One sentence: in how many cells TracIn's mean (and median) correlation with LOOR is the higher one."""
    table = correlation_table(studies)
    mean = int((table["TracIn mean"] > table["influence function mean"]).sum())
    median = int((table["TracIn median"] > table["influence function median"]).sum())
    return (f"**TracIn has the higher mean correlation with LOOR in {mean} of {len(table)} cells** "
            f"(the higher median in {median} of {len(table)}); the paper claims it is the better estimate.")


def provenance_markdown(studies: list[Study]) -> str:
    """A short Markdown paragraph: data, sizes, seeds, training and how long the retraining took."""
    lines = []
    for study in studies:
        s, loo = study.settings, study.loor
        left = "every training sample" if len(loo.indices) == s.n_train else \
            f"a seeded subset of {len(loo.indices)} training samples"
        when = "read from the results store (it took" if study.loor_cached else "computed now in"
        lines.append(
            f"- {study.source}; {s.n_train} training and {s.n_test} validation samples (seed {s.seed}); "
            f"{s.model_name}, {study.n_parameters} parameters, SGD lr {s.lr}, batch {s.batch_size}, "
            f"{s.epochs} epochs, validation accuracy {study.val_accuracy:.3f}; {left} left out; "
            f"LOOR {when} {loo.seconds:.1f} s on {loo.n_jobs} processes{')' if study.loor_cached else ''}.")
    return "\n".join(lines)
