"""Figures across runs: validation accuracy, detection metrics, time per stage, training histories.

Each function takes a tidy table of the results store and returns a matplotlib
figure drawn with seaborn; an empty table gives a small figure saying so.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .names import GLITCH_NAMES, SIGNAL_NAMES, _rank, _model_variants, pretty
from .tables import _STAGE_ORDER, _signals_in, _paper_validation

__all__ = ["plot_validation", "plot_metric", "plot_stages", "plot_histories"]


def plot_validation(runs: pd.DataFrame):
    """Validation accuracy per glitch: our seeds as dots and their mean ± std, the paper's means as crosses.

    One panel per dataset; the paper's models are drawn for the datasets we ran.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if runs.empty:
        return _empty_figure("no finished runs")
    ours = pretty(_model_variants(runs))
    paper = _paper_validation()
    paper = pretty(_model_variants(paper[paper["dataset"].isin(set(runs["dataset"]))]))
    paper["model"] = "paper: " + paper["model"]
    glitches = [GLITCH_NAMES[g] for g in GLITCH_NAMES if GLITCH_NAMES[g] in set(ours["glitch"]) | set(paper["glitch"])]
    datasets = sorted(set(ours["dataset"]), key=lambda v: _rank("dataset", v))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        mine = ours[ours["dataset"] == dataset]
        several = mine["model"].nunique() > 1
        sns.pointplot(data=mine, x="glitch", y="val_acc", hue="model", order=glitches, errorbar="sd",
                      capsize=0.15, linestyle="none", dodge=0.3 if several else False, ax=ax)
        sns.stripplot(data=mine, x="glitch", y="val_acc", hue="model", order=glitches, dodge=several,
                      alpha=0.4, size=4, ax=ax, legend=False)
        theirs = paper[paper["dataset"] == dataset]
        sns.scatterplot(data=theirs, x="glitch", y="mean", style="model", color="black", marker="X", s=60,
                        ax=ax, legend=ax is axes[0][0])
        ax.set_title(dataset)
        ax.set_xlabel("")
        ax.set_ylabel("validation accuracy")
        # "class-based noise" and "uniform noise" side by side: one word per line, never overlapping
        ax.set_xticks(range(len(glitches)), [g.replace(" ", "\n") for g in glitches])
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False)
    fig.tight_layout()
    return fig


def plot_metric(
    metrics: pd.DataFrame,
    *,
    metric: str = "f1",
    signals: Sequence[str] | None = None,
    highlight: Sequence[str] = ("cnci", "pcid", "cfrank"),
    title: str | None = None,
):
    """Bar plot of ``metric`` per signal (mean over seeds, error bars = std), one panel per dataset x model.

    The signals named in ``highlight`` (the paper's) are drawn in a strong
    colour, the others in grey. Returns the matplotlib figure; an empty table
    gives a figure saying so.
    """
    import seaborn as sns

    chosen = _signals_in(metrics, signals)
    data = metrics[metrics["signal"].isin(chosen)] if len(metrics) else metrics
    if data.empty:
        return _empty_figure(f"no {metric} results")
    data = pretty(_model_variants(data))
    order = [SIGNAL_NAMES.get(s, s) for s in chosen]
    strong = {SIGNAL_NAMES.get(s, s) for s in highlight}
    palette = {s: ("#c0392b" if s in strong else "#95a5a6") for s in order}
    cols = sorted(set(data["dataset"]), key=lambda v: _rank("dataset", v))
    rows = sorted(set(data["model"]), key=lambda v: _rank("model", v))
    # horizontal bars: one row per signal keeps every name readable however many signals there are
    grid = sns.catplot(
        data=data, kind="bar", y="signal", x=metric, order=order, hue="signal", hue_order=order,
        palette=palette, legend=False, col="dataset", row="model", col_order=cols, row_order=rows,
        errorbar="sd", capsize=0.2,
        height=max(2.5, 0.3 * len(order) + 0.8), aspect=max(0.9, 4.5 / max(2.5, 0.3 * len(order) + 0.8)),
    )
    grid.set_titles("{col_name} · {row_name}")
    grid.set_axis_labels(metric.upper() if len(metric) <= 5 else metric, "")
    grid.set(xlim=(0, 1.05) if metric in ("f1", "ap", "auroc") else None)
    if title:
        grid.figure.suptitle(title, y=1.02)
    return grid.figure


def plot_stages(timings: pd.DataFrame):
    """Seconds per stage of a run on a log scale (mean over runs, error bars = std), one colour per dataset x model."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if timings.empty:
        return _empty_figure("no timings")
    per_run = timings.groupby(["key", "dataset", "model", "stage"], sort=False)["seconds"].sum().reset_index()
    data = pretty(_model_variants(per_run))
    data["run"] = data["dataset"] + " · " + data["model"]
    data["seconds"] = data["seconds"].clip(lower=1e-3)
    stages = [s for s in _STAGE_ORDER if s in set(data["stage"])]
    stages += [s for s in dict.fromkeys(data["stage"]) if s not in stages]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    sns.barplot(data=data, x="stage", y="seconds", hue="run", order=stages, errorbar="sd", capsize=0.1, ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("")
    ax.set_ylabel("seconds per run (log scale)")
    ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    return fig


def plot_histories(histories: pd.DataFrame):
    """Training loss and validation accuracy per epoch, one line per run, one panel per dataset x quantity."""
    import seaborn as sns

    if histories.empty:
        return _empty_figure("no training histories")
    long = pretty(histories).melt(
        id_vars=["dataset", "model", "glitch", "seed", "epoch"], value_vars=["train_loss", "val_acc"],
        var_name="quantity", value_name="value",
    )
    long["quantity"] = long["quantity"].map({"train_loss": "training loss", "val_acc": "validation accuracy"})
    grid = sns.relplot(
        data=long, kind="line", x="epoch", y="value", hue="glitch", style="model", units="seed",
        estimator=None, col="dataset", row="quantity", facet_kws={"sharey": "row"}, height=2.8, aspect=1.3,
        marker="o", alpha=0.7,
    )
    grid.set_titles("{col_name} · {row_name}")
    return grid.figure


# ----------------------------------------------------------------------------- helpers


def _empty_figure(message: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 1.2))
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return fig
