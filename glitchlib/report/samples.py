"""One run's training samples: the most suspicious ones as images, label confusion and repairs.

Most functions take one run's per-sample scores (``store.load_scores``);
:func:`suspect_gallery` also reads the run's images back from the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import _validation
from ..settings import ANOMALY, CLEAN, MISLABELED, SAMPLE_KINDS
from .names import SIGNAL_NAMES, _require_columns
from .plots import _empty_figure

__all__ = [
    "top_suspects",
    "plot_gallery",
    "suspect_gallery",
    "label_confusion",
    "plot_confusion",
    "repair_summary",
]


# ----------------------------------------------------------------------------- suspects


def top_suspects(scores: pd.DataFrame, signal: str, *, k: int = 16) -> pd.DataFrame:
    """The ``k`` training samples with the highest ``signal`` score, most suspicious first.

    Ties are broken by the sample index (stable sort), as the metrics do.
    """
    _require_columns(scores, [signal], "scores")
    order = np.argsort(-scores[signal].to_numpy(dtype=np.float64), kind="stable")[:k]
    return scores.iloc[order]


def plot_gallery(images, captions: Sequence[str], hits: Sequence[bool], *, ncols: int = 4, title: str | None = None):
    """Images in a grid with a caption each; a red frame marks a real glitch, a grey one a clean sample.

    ``images``: array N x C x H x W (or N x H x W) with values in [0, 1].
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.ndim == 4:
        images = images.transpose(0, 2, 3, 1)
        if images.shape[-1] == 1:
            images = images[..., 0]
    n = len(images)
    if n != len(captions) or n != len(hits):
        raise ValueError(f"got {n} images, {len(captions)} captions and {len(hits)} hits; pass one of each per image")
    if n == 0:
        return _empty_figure("no suspects")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.8 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, caption, hit in zip(axes.flat, images, captions, hits):
        ax.imshow(np.clip(image, 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("#c0392b" if hit else "#bdc3c7")
            spine.set_linewidth(3 if hit else 1)
        ax.set_title(caption, fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def suspect_gallery(store, settings, signal: str, *, k: int = 16, ncols: int = 4):
    """The ``k`` training samples of one run that ``signal`` finds most suspicious, as images.

    Each caption gives the rank, the label given to training, the suggested
    label (CNCI's repair; for anomalies, "anomaly" and the other dataset's
    class), the score and whether the sample really is a glitch (a red frame).
    ``settings`` None gives a figure saying there is no run.
    """
    import torch

    from glitchlib import experiments
    from glitchlib.data import denormalize

    from glitchlib import _validation

    k = _validation.as_int(k, "k", low=1, text=True)
    ncols = _validation.as_int(ncols, "ncols", low=1, text=True)
    if settings is None:
        return _empty_figure("no finished run")
    scores = store.load_scores(settings.key())
    top = top_suspects(scores, signal, k=k)
    data = experiments.load_training_set(settings, store=store)
    index = torch.from_numpy(top["index"].to_numpy(dtype=np.int64, copy=True))
    images = denormalize(data.x[index]).numpy()
    names, captions = data.class_names, []
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        kind = str(row.kind)
        truth = (f"{ANOMALY}: " + data.ood_class_names[int(row.y_true)]) if kind == ANOMALY and data.ood_class_names \
            else (CLEAN if kind == CLEAN else f"{kind}, true {names[int(row.y_true)]}")
        captions.append(f"#{rank} given {names[int(row.y)]}\nsuggested {names[int(row.suggested_label)]}\n"
                        f"{SIGNAL_NAMES.get(signal, signal)} {getattr(row, signal):.3g}\n{truth}")
    hits = top["mask"].astype(bool).tolist()
    title = f"top {len(top)} by {SIGNAL_NAMES.get(signal, signal)}: {sum(hits)} real glitches"
    return plot_gallery(images, captions, hits, ncols=ncols, title=title)


# ----------------------------------------------------------------------------- labels


def _confusion_table(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str] | None = None,
    *, names: tuple[str, str] = ("true label", "suggested label"),
) -> pd.DataFrame:
    """Counts of (true label, predicted label): rows true, columns predicted; ``names`` titles the two axes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred has shape {y_pred.shape}, but y_true has {y_true.shape}; pass one label per sample")
    n = int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    if class_names is not None:
        if len(class_names) < n:
            raise ValueError(f"class_names has {len(class_names)} names, but labels go up to {n - 1}")
        n = len(class_names)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    labels = list(class_names) if class_names is not None else list(range(n))
    return pd.DataFrame(counts, index=pd.Index(labels, name=names[0]), columns=pd.Index(labels, name=names[1]))


def label_confusion(scores: pd.DataFrame, *, dataset: str | None = None, column: str = "suggested_label",
                    kind: str = MISLABELED) -> pd.DataFrame:
    """Confusion of the true label with ``column`` (a label column of a run's scores) over samples of ``kind``.

    ``column`` "suggested_label" shows CNCI's repairs, "y" the noise that was
    injected. Classes are named after ``dataset`` (:data:`glitchlib.data.CLASS_NAMES`).
    ``kind`` is a kind of sample (one of :data:`glitchlib.settings.SAMPLE_KINDS`;
    anything else raises ``ValueError``).
    Returns counts: rows the true label, columns ``column``'s label.
    """
    from glitchlib.data import CLASS_NAMES

    kind = _validation.as_choice(kind, "kind", SAMPLE_KINDS)

    _require_columns(scores, ["kind", "y_true", column], "scores")
    chosen = scores[scores["kind"].astype(str) == kind]
    titles = {"suggested_label": "suggested label", "y": "given label", "second_best_label": "second-best label"}
    return _confusion_table(chosen["y_true"].to_numpy(dtype=np.int64), chosen[column].to_numpy(dtype=np.int64),
                           CLASS_NAMES.get(dataset), names=("true label", titles.get(column, column)))


def plot_confusion(table: pd.DataFrame, *, title: str | None = None):
    """Heat map of a :func:`label_confusion` table with the counts written in the cells."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if table.empty or table.values.sum() == 0:
        return _empty_figure("no samples")

    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * table.shape[1], 0.8 + 0.45 * table.shape[0]))
    sns.heatmap(table, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def repair_summary(scores: pd.DataFrame, *, signal: str = "cnci") -> pd.DataFrame:
    """How good the repair suggestions are, on all mislabeled samples and on those ``signal`` flags.

    ``scores`` is one run's per-sample table (``store.load_scores``). The
    flagged samples are the top ``k`` by ``signal``, ``k`` = number of glitches.
    Returns one row per group with the count and the share whose suggested
    label equals the true label.
    """
    _require_columns(scores, ["mask", "kind", "y_true", "suggested_label", signal], "scores")
    mislabeled = scores["kind"].astype(str) == MISLABELED
    k = int(scores["mask"].astype(bool).sum())
    flagged = pd.Series(False, index=scores.index)
    flagged.iloc[np.argsort(-scores[signal].to_numpy(dtype=np.float64), kind="stable")[:k]] = True
    right = scores["suggested_label"].to_numpy() == scores["y_true"].to_numpy()
    rows = []
    for name, chosen in (("all mislabeled samples", mislabeled), (f"mislabeled samples flagged by {SIGNAL_NAMES.get(signal, signal)}", mislabeled & flagged)):
        n = int(chosen.sum())
        rows.append({"samples": name, "count": n, "repair accuracy": float(right[chosen.to_numpy()].mean()) if n else float("nan")})
    return pd.DataFrame(rows).set_index("samples")
