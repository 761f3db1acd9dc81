"""Tables and figures of the paper's further experiments (SPEC.md sections 9.1-9.5).

Pure functions on the results store's tidy tables (runs, metrics, one run's
predictions), plus :func:`with_fields` that adds settings fields the tidy
tables do not carry (``corruption``, ``test_ratio``, ...) from the chapter's
settings. The paper's numbers of SPEC.md section 9 are the constants below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..settings import ANOMALY, CLEAN, MISLABELED, SAMPLE_KINDS
from .names import (
    DATASET_NAMES,
    INFLUENCE_SIGNALS,
    SIGNAL_NAMES,
    SIGNAL_ORDER,
    _pretty_index,
    _rank,
    _require_columns,
    _sort_rows,
    _model_variants,
    pretty,
)
from .plots import _empty_figure
from .tables import _best_signal_rows, format_mean_std, mean_std_table

__all__ = [
    "PAPER_CNCI_GAIN_AT_1PCT",
    "PAPER_KIND_LOSS_ACCURACY",
    "PAPER_TWIN_DIFFERENCE",
    "with_fields",
    "plot_ratio_curves",
    "claim_table_by",
    "low_ratio_gain",
    "signal_by_ratio",
    "kind_table",
    "twin_pairs",
    "twin_difference_table",
    "si_decile_accuracy",
    "plot_si_deciles",
    "validation_pairs",
    "dirty_validation_table",
    "plot_dirty_validation",
]

#: SPEC.md 9.1: at a 1 % noise ratio CNCI's F1 is about 36 % higher than SI's, on average.
PAPER_CNCI_GAIN_AT_1PCT = 0.36
#: SPEC.md 9.3: the paper's ResNet-20 at 10 %: {dataset: {kind: (average loss, training accuracy)}}.
PAPER_KIND_LOSS_ACCURACY = {
    "mnist": {CLEAN: (1.60, 0.97), MISLABELED: (2.35, 0.05), ANOMALY: (1.47, 1.00)},
    "fmnist": {CLEAN: (1.67, 0.91), MISLABELED: (2.35, 0.09), ANOMALY: (1.48, 1.00)},
    "cifar10": {CLEAN: (1.76, 0.95), MISLABELED: (2.38, 0.06), ANOMALY: (1.59, 1.00)},
}
#: SPEC.md 9.3: the paper's ResNet-20, validation accuracy of the glitched run minus its clean twin.
PAPER_TWIN_DIFFERENCE = {
    "uniform": {"mnist": -0.2, "fmnist": -0.01, "cifar10": 0.00},
    "anomalies": {"mnist": -0.006, "fmnist": 0.31, "cifar10": 0.19},
}


# ----------------------------------------------------------------------------- settings


def with_fields(df: pd.DataFrame, settings: Iterable, fields: Sequence[str]) -> pd.DataFrame:
    """``df`` with the settings ``fields`` of each row's run (matched by ``key``) as extra columns.

    Rows whose key is not among ``settings`` get None.
    """
    _require_columns(df, ["key"], "df")
    by_key = {s.key(): s for s in settings}
    out = df.copy()
    for name in fields:
        out[name] = [getattr(by_key[k], name) if k in by_key else None for k in out["key"]]
    return out


# ----------------------------------------------------------------------------- 9.1 glitch ratio


def plot_ratio_curves(metrics: pd.DataFrame, *, metric: str = "f1", signals: Sequence[str] | None = None,
                      highlight: Sequence[str] = ("cnci", "pcid")):
    """``metric`` of every signal against the glitch ratio: mean over seeds, band = ± 1 std.

    One panel per glitch (columns) and dataset x model (rows). The
    signals of ``highlight`` (at most three) are drawn thick in red, dark blue
    and black, the others thin.
    """
    import seaborn as sns

    _require_columns(metrics, ["dataset", "model", "glitch", "ratio", "signal", metric], "metrics")
    chosen = [s for s in (signals or SIGNAL_ORDER) if s in set(metrics["signal"])]
    data = metrics[metrics["signal"].isin(chosen)]
    if data.empty:
        return _empty_figure(f"no {metric} results")
    data = pretty(_model_variants(data))
    data["run"] = data["dataset"] + " · " + data["model"]
    order = [SIGNAL_NAMES.get(s, s) for s in chosen]
    strong = [SIGNAL_NAMES.get(s, s) for s in highlight]
    sizes = {s: (2.6 if s in strong else 0.9) for s in order}
    glitches = sorted(set(data["glitch"]), key=lambda v: _rank("glitch", v))
    rows = sorted(set(data["run"]),
                  key=lambda r: tuple(_rank(c, v) for c, v in zip(("dataset", "model"), r.split(" · "))))
    others = [s for s in order if s not in strong]
    palette = dict(zip(others, sns.color_palette("tab20", len(others))))
    palette.update(zip(strong, ["#c0392b", "#1a3e8c", "#000000"]))
    grid = sns.relplot(data=data, kind="line", x="ratio", y=metric, hue="signal", hue_order=order, palette=palette,
                       size="signal", sizes=sizes, size_order=order, col="glitch", col_order=glitches, row="run",
                       row_order=rows, errorbar="sd", marker="o", height=3.2, aspect=1.2)
    grid.set_titles("{col_name}\n{row_name}", size=10)
    grid.set(xscale="log", ylim=(-0.02, 1.02))
    ratios = sorted(set(data["ratio"]))
    for ax in grid.axes.flat:
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.minorticks_off()
    grid.set_axis_labels("glitch ratio (log scale)", metric.upper())
    return grid.figure


def claim_table_by(metrics: pd.DataFrame, *, new: str = "cnci", metric: str = "f1",
                   by: Sequence[str] = ("dataset", "model", "glitch", "ratio"),
                   baselines: Sequence[str] | None = None, digits: int = 2) -> pd.DataFrame:
    """The claim "``new`` is the best signal" per group of ``by`` (default: dataset x model x glitch x ratio).

    Columns: ``new``'s mean ``metric`` over seeds, the best other signal
    (among ``baselines``, default every influence signal but CNCI, PCID and
    CFRank: the signals the paper compares with, as :func:`claim_table`; the
    dedicated detectors are compared by :mod:`glitchlib.report.detectors`), its
    mean, the difference, and in how many seeds ``new`` is at least as good.
    ``by`` may name settings fields added with :func:`with_fields` (e.g. ``corruption``).
    """
    groups = list(by)
    _require_columns(metrics, [*groups, "seed", "signal", metric], "metrics")
    excluded = {"cnci", "pcid", "cfrank"}
    base = list(baselines) if baselines is not None else [s for s in INFLUENCE_SIGNALS if s not in excluded]
    rows = _best_signal_rows(metrics, new, metric, groups, base, digits=digits, best_label="best other signal")
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    order = sorted(range(len(table)), key=lambda i: tuple(
        _rank(c, table[c][i]) if c in ("dataset", "model", "glitch") else (0, 0, table[c][i]) for c in groups))
    return _pretty_index(table.iloc[order].set_index(groups), None)


def low_ratio_gain(metrics: pd.DataFrame, *, ratio: float = 0.01, signal: str = "cnci", baseline: str = "si",
                   metric: str = "f1", digits: int = 2) -> pd.DataFrame:
    """``signal``'s relative gain over ``baseline`` at ``ratio``, per dataset x model x glitch, and on average.

    The relative gain of a row is ``(mean signal - mean baseline) / mean baseline``
    over seeds (NaN when the baseline's mean is 0) and its difference
    ``mean signal - mean baseline`` (in units of ``metric``): the paper's "about
    36 % higher" (:data:`PAPER_CNCI_GAIN_AT_1PCT`) reads either way, so both are
    shown; the "average" row averages the rows, the "paper: about" row holds
    0.36 in both columns.
    """
    _require_columns(metrics, ["dataset", "model", "glitch", "ratio", "signal", metric], "metrics")
    at = metrics[np.isclose(metrics["ratio"].astype(float), ratio) & metrics["signal"].isin([signal, baseline])]
    if at.empty:
        return pd.DataFrame()
    means = _model_variants(at).pivot_table(index=["dataset", "model", "glitch"], columns="signal", values=metric)
    if signal not in means or baseline not in means:
        return pd.DataFrame()
    gain = (means[signal] - means[baseline]) / means[baseline].where(means[baseline] != 0)
    name_a, name_b = SIGNAL_NAMES.get(signal, signal), SIGNAL_NAMES.get(baseline, baseline)
    out = pd.DataFrame({name_a: means[signal], name_b: means[baseline], "relative gain": gain,
                        "difference": means[signal] - means[baseline]})
    out = _pretty_index(_sort_rows(out), None)
    average = pd.DataFrame({column: [out[column].mean()] for column in out.columns},
                           index=pd.MultiIndex.from_tuples([("average", "", "")], names=out.index.names))
    paper = pd.DataFrame({name_a: [np.nan], name_b: [np.nan], "relative gain": [PAPER_CNCI_GAIN_AT_1PCT],
                          "difference": [PAPER_CNCI_GAIN_AT_1PCT]},
                         index=pd.MultiIndex.from_tuples([("paper: about", "", "")], names=out.index.names))
    table = pd.concat([out, average, paper]).round(digits)
    return table.astype(object).where(table.notna(), "")


def signal_by_ratio(metrics: pd.DataFrame, *, signal: str = "pcid", metric: str = "f1",
                    digits: int = 2) -> pd.DataFrame:
    """``signal``'s ``metric`` (mean ± std over seeds): rows dataset x model x glitch, one column per ratio."""
    _require_columns(metrics, ["dataset", "model", "glitch", "ratio", "signal", metric], "metrics")
    sub = metrics[metrics["signal"] == signal]
    if sub.empty:
        return pd.DataFrame()
    return mean_std_table(_model_variants(sub).sort_values("ratio"), ["dataset", "model", "glitch"], "ratio",
                          metric, digits=digits)


# ----------------------------------------------------------------------------- 9.3 the model and each glitch


def kind_table(runs: pd.DataFrame, *, digits: int = 2, paper: bool = True) -> pd.DataFrame:
    """Average training loss and accuracy per kind of sample (mean ± std over seeds), beside the paper's.

    Rows dataset x model x glitch, columns "<kind> loss" and "<kind> acc." for
    the kinds present; the paper's ResNet-20 rows (SPEC.md 9.3) follow for the
    datasets of ``runs`` (all three when ``paper`` and ``runs`` is empty).
    Loss and accuracy are the final model's, against the labels *given* to training.
    """
    columns = {f"train_{q}_{k}": f"{k} {'loss' if q == 'loss' else 'acc.'}"
               for k in SAMPLE_KINDS for q in ("loss", "acc")}
    present = [c for c in columns if c in runs.columns and runs[c].notna().any()]
    _require_columns(runs, ["dataset", "model", "glitch"], "runs")
    table = pd.DataFrame()
    if present:
        long = _model_variants(runs).melt(id_vars=["dataset", "model", "glitch"], value_vars=present,
                                         var_name="quantity", value_name="value")
        long["quantity"] = long["quantity"].map(columns)
        long["value"] = pd.to_numeric(long["value"], errors="coerce")
        table = mean_std_table(long, ["dataset", "model", "glitch"], "quantity", "value", digits=digits)
    if not paper:
        return table
    datasets = set(runs["dataset"]) if len(runs) else set(PAPER_KIND_LOSS_ACCURACY)
    rows, index = [], []
    for dataset, kinds in PAPER_KIND_LOSS_ACCURACY.items():
        if dataset in datasets:
            row = {}
            for kind, (loss, acc) in kinds.items():
                row[f"{kind} loss"] = format_mean_std(loss, digits=digits)
                row[f"{kind} acc."] = format_mean_std(acc, digits=digits)
            rows.append(row)
            index.append((DATASET_NAMES[dataset], "ResNet-20", "paper, 10 %"))
    theirs = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["dataset", "model", "glitch"]))
    order = [c for c in columns.values() if c in table.columns or c in theirs.columns]
    return pd.concat([table, theirs]).reindex(columns=order).fillna("")


def twin_pairs(settings: Iterable) -> pd.DataFrame:
    """One row per glitched run of ``settings``: its ``key`` and its clean twin's ``twin_key`` (SPEC.md 9.3).

    The twin has the same data, model and seed, and nothing injected
    (:func:`glitchlib.studies.clean_twin`). Runs of glitch "none" are left out.
    """
    from glitchlib.studies import clean_twin

    rows = [{"key": s.key(), "twin_key": clean_twin(s).key()} for s in settings if s.glitch != "none"]
    return pd.DataFrame(rows, columns=["key", "twin_key"]).drop_duplicates().reset_index(drop=True)


def twin_difference_table(runs: pd.DataFrame, pairs: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """Validation accuracy of each glitched run minus that of its clean twin: mean ± std over seeds.

    Rows dataset x model, one column per glitch; the paper's ResNet-20
    differences (SPEC.md 9.3) follow as rows "ResNet-20 (paper)". Runs whose
    twin is not in ``runs`` are left out.
    """
    _require_columns(runs, ["key", "dataset", "model", "glitch", "val_acc"], "runs")
    _require_columns(pairs, ["key", "twin_key"], "pairs")
    accuracy = runs.set_index("key")["val_acc"]
    merged = runs.merge(pairs, on="key")
    merged = merged[merged["twin_key"].isin(accuracy.index)].copy()
    merged["difference"] = merged["val_acc"].to_numpy(float) - accuracy.loc[merged["twin_key"]].to_numpy(float)
    table = mean_std_table(_model_variants(merged), ["dataset", "model"], "glitch", "difference", digits=digits) \
        if len(merged) else pd.DataFrame()
    datasets = set(runs["dataset"]) if len(runs) else {"mnist", "fmnist", "cifar10"}
    paper = {}
    for glitch, values in PAPER_TWIN_DIFFERENCE.items():
        for dataset, value in values.items():
            if dataset in datasets:
                paper.setdefault(dataset, {})[glitch] = value
    theirs = pd.DataFrame.from_dict(paper, orient="index").map(lambda v: f"{v:+g}")
    theirs.index = pd.MultiIndex.from_tuples([(d, "ResNet-20 (paper)") for d in theirs.index],
                                             names=["dataset", "model"])
    theirs = _pretty_index(theirs, "glitch")
    both = pd.concat([table, theirs])
    keys = [tuple(_rank(n, v) for n, v in zip(("dataset", "model"), t)) for t in both.index]
    return both.iloc[sorted(range(len(keys)), key=keys.__getitem__)].fillna("")


def si_decile_accuracy(predictions: pd.DataFrame, *, bins: int = 10) -> pd.DataFrame:
    """Training accuracy of the clean samples per self-influence bin (deciles by default), SPEC.md 9.3.

    ``predictions`` holds one or more runs' per-sample tables
    (:func:`glitchlib.experiments.load_predictions`) with a ``run`` column
    naming the run (and any grouping columns, e.g. dataset). Bins are the
    SI quantiles of each run's clean samples, 1 = lowest SI.

    Returns
    -------
    pandas.DataFrame
        One row per run and bin: the run's other columns, ``bin``,
        ``accuracy`` (share of clean samples of the bin the model predicts as
        labelled) and ``mean_si``.
    """
    _require_columns(predictions, ["run", "kind", "si", "correct"], "predictions")
    clean = predictions[predictions["kind"] == CLEAN]
    extra = [c for c in clean.columns if c not in ("run", "index", "y", "kind", "pred", "correct", "loss", "si")]
    frames = []
    for run, group in clean.groupby("run", sort=False):
        binned = pd.qcut(group["si"].rank(method="first"), bins, labels=False) + 1
        out = group.assign(bin=binned).groupby("bin").agg(accuracy=("correct", "mean"), mean_si=("si", "mean"))
        out = out.reset_index().assign(run=run, **{c: group[c].iloc[0] for c in extra})
        frames.append(out)
    columns = ["run", *extra, "bin", "accuracy", "mean_si"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def plot_si_deciles(deciles: pd.DataFrame, *, hue: str = "dataset"):
    """Accuracy of clean training samples per self-influence bin: mean over runs, band = ± 1 std."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if deciles.empty:
        return _empty_figure("no predictions")
    data = pretty(deciles)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    sns.lineplot(data=data, x="bin", y="accuracy", hue=hue if hue in data else None, errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("self-influence bin of the clean training samples (1 = lowest SI)")
    ax.set_ylabel("training accuracy")
    ax.set_xticks(sorted(set(data["bin"])))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 9.5 dirty validation


def validation_pairs(settings: Iterable) -> pd.DataFrame:
    """One row per run of ``settings`` with a dirty validation set: its ``key`` and its clean twin's ``clean_key``."""
    from glitchlib.studies import clean_validation_twin

    rows = [{"key": s.key(), "clean_key": clean_validation_twin(s).key()} for s in settings if s.test_ratio]
    return pd.DataFrame(rows, columns=["key", "clean_key"])


def dirty_validation_table(metrics: pd.DataFrame, pairs: pd.DataFrame, *, metric: str = "f1") -> pd.DataFrame:
    """Mean ``metric`` over seeds with a clean and with a dirty validation set, per dataset x model x glitch x signal.

    Columns: dataset, model, glitch, signal, ``clean``, ``dirty``,
    ``difference`` (dirty - clean) and ``seeds`` (pairs averaged). Codes, not
    display names: pass it to :func:`plot_dirty_validation` or ``pretty``.
    """
    _require_columns(metrics, ["key", "dataset", "model", "glitch", "signal", metric], "metrics")
    _require_columns(pairs, ["key", "clean_key"], "pairs")
    values = metrics.set_index(["key", "signal"])[metric]
    dirty = metrics.merge(pairs, on="key")
    index = pd.MultiIndex.from_arrays([dirty["clean_key"], dirty["signal"]])
    present = index.isin(values.index)
    dirty = dirty[present].assign(clean=values.reindex(index[present]).to_numpy(), dirty=dirty[metric][present])
    columns = ["dataset", "model", "glitch", "signal", "clean", "dirty", "difference", "seeds"]
    if dirty.empty:
        return pd.DataFrame(columns=columns)
    out = _model_variants(dirty).groupby(["dataset", "model", "glitch", "signal"], sort=False).agg(
        clean=("clean", "mean"), dirty=("dirty", "mean"), seeds=("dirty", "size")).reset_index()
    out["difference"] = out["dirty"] - out["clean"]
    levels = ("dataset", "model", "glitch", "signal")
    order = sorted(range(len(out)), key=lambda i: tuple(_rank(c, out[c][i]) for c in levels))
    return out.iloc[order][columns].reset_index(drop=True)


def plot_dirty_validation(table: pd.DataFrame, *, metric: str = "F1", highlight: Sequence[str] = ("cnci",)):
    """Scatter of ``metric`` with a clean (x) against a dirty (y) validation set, with the diagonal.

    One point per dataset x model x glitch x signal of
    :func:`dirty_validation_table`; the signals of ``highlight`` in red, the
    others in grey; marker shape = glitch.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if table.empty:
        return _empty_figure("no pairs of runs")
    data = pretty(table)
    strong = {SIGNAL_NAMES.get(s, s) for s in highlight}
    data["signal group"] = np.where(data["signal"].isin(strong), data["signal"], "other signals")
    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle="--", label="no change")
    palette = {name: "#c0392b" for name in strong} | {"other signals": "#95a5a6"}
    sns.scatterplot(data=data, x="clean", y="dirty", hue="signal group", palette=palette, style="glitch",
                    s=60, ax=ax)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"{metric}, clean validation set")
    ax.set_ylabel(f"{metric}, dirty validation set")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
