"""Tables: mean ± std over seeds, the paper's numbers beside ours, detection, repair and cost.

Pure functions: tidy tables of the results store (runs, metrics, timings) in,
tables ready to display out, with display names (:mod:`glitchlib.report.names`)
in the row index and the column labels. The paper's numbers (SPEC.md section 6)
are the constants below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..settings import ANOMALY, CLEAN, MISLABELED, ExperimentSettings
from .names import (
    DATASET_NAMES,
    GLITCH_NAMES,
    INFLUENCE_SIGNALS,
    SIGNAL_NAMES,
    SIGNAL_ORDER,
    UNINFORMATIVE_MARK,
    _order,
    _pretty_index,
    _rank,
    _require_columns,
    _sort_rows,
    _model_variants,
    pretty,
    uninformative_signals,
)

__all__ = [
    "summary_tables",
    "PAPER_VALIDATION",
    "PAPER_TRAIN_ACCURACY",
    "PAPER_SIGNAL_SHARE",
    "DETECTION_STAGES",
    "format_mean_std",
    "mean_std_table",
    "training_settings_table",
    "training_notes",
    "validation_side_by_side",
    "metric_table",
    "compare_signals",
    "claim_table",
    "repair_table",
    "characterization_table",
    "train_accuracy_table",
    "cost_table",
]


#: The paper's validation accuracy (mean, std over 5 seeds) with glitches in
#: the training set, SPEC.md section 6: {(dataset, model): {glitch: (mean, std)}}.
PAPER_VALIDATION = {
    ("mnist", "resnet20"): {"uniform": (0.94, 0.01), "class-based": (0.95, 0.01), "anomalies": (0.96, 0.01)},
    ("mnist", "vit_b_16"): {"uniform": (0.83, 0.03), "class-based": (0.81, 0.03), "anomalies": (0.90, 0.01)},
    ("mnist", "convnext_tiny"): {"uniform": (0.83, 0.01), "class-based": (0.82, 0.02), "anomalies": (0.87, 0.01)},
    ("fmnist", "resnet20"): {"uniform": (0.82, 0.01), "class-based": (0.80, 0.01), "anomalies": (0.82, 0.01)},
    ("fmnist", "vit_b_16"): {"uniform": (0.81, 0.01), "class-based": (0.81, 0.01), "anomalies": (0.83, 0.01)},
    ("fmnist", "convnext_tiny"): {"uniform": (0.81, 0.01), "class-based": (0.80, 0.01), "anomalies": (0.82, 0.01)},
    ("cifar10", "resnet20"): {"uniform": (0.89, 0.01), "class-based": (0.88, 0.00), "anomalies": (0.90, 0.00)},
    ("cifar10", "vit_b_16"): {"uniform": (0.90, 0.01), "class-based": (0.90, 0.01), "anomalies": (0.91, 0.01)},
    ("cifar10", "convnext_tiny"): {"uniform": (0.85, 0.01), "class-based": (0.85, 0.00), "anomalies": (0.87, 0.00)},
}
#: The paper's claim on training accuracy of ResNet-20 on MNIST, per kind of sample.
PAPER_TRAIN_ACCURACY = {CLEAN: 0.97, MISLABELED: 0.05, ANOMALY: 1.00}
#: The paper's claim: computing the signals costs about this share of training time.
PAPER_SIGNAL_SHARE = 0.08
#: Stages of a run that the signals add on top of training.
DETECTION_STAGES = ("influence", "counterfactuals", "signals")


# ----------------------------------------------------------------------------- mean ± std


def format_mean_std(mean: float, *, std: float = float("nan"), digits: int = 2) -> str:
    """Format ``mean ± std`` with ``digits`` decimals; ``mean`` alone when ``std`` is NaN.

    A NaN ``mean`` gives the empty string (nothing to show).
    """
    if mean is None or pd.isna(mean):
        return ""
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _mean_std(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean, sample standard deviation and count of ``value`` per group of ``by``.

    Returns one row per group with columns ``by + ["mean", "std", "n"]``; the
    std of a single-seed group is NaN. Rows with a NaN ``value`` are ignored.
    """
    by = list(by)
    _require_columns(df, by + [value], "df")
    if df.empty:
        return pd.DataFrame(columns=by + ["mean", "std", "n"])
    grouped = df.dropna(subset=[value]).groupby(by, sort=True, dropna=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n"})


def mean_std_table(
    df: pd.DataFrame, index: Sequence[str], columns: str, value: str, *, digits: int = 2
) -> pd.DataFrame:
    """Wide table of ``mean ± std`` strings: rows ``index``, one column per value of ``columns``.

    Codes in the row index and column labels are shown with display names
    (see :func:`~glitchlib.report.names.pretty`). Empty cells are empty strings.
    """
    stats = _mean_std(df, list(index) + [columns], value)
    if stats.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(df[columns]))
    stats["text"] = [format_mean_std(m, std=s, digits=digits) for m, s in zip(stats["mean"], stats["std"])]
    wide = stats.pivot_table(index=list(index), columns=columns, values="text", aggfunc="first")
    wide = _sort_rows(wide).reindex(columns=[c for c in _order(order, columns) if c in wide.columns]).fillna("")
    return _pretty_index(wide, columns)


# ----------------------------------------------------------------------------- the paper


def training_settings_table(*, settings: Sequence = ()) -> pd.DataFrame:
    """The paper's training settings (SPEC.md section 1) and those of ``settings``, side by side.

    One row per dataset x model x source: "paper" for the paper's table,
    "public code" where the paper's public code differs (SPEC.md section 7),
    and "this book" for every dataset x model (x pretrained) of ``settings``
    with the values its runs use (explicit ``lr``/``batch_size``/``epochs`` or
    the registered :func:`glitchlib.settings.training_settings`).
    """
    from glitchlib import settings as registry

    rows = []
    for (d, m), t in registry.PAPER_TRAINING.items():
        rows.append({"dataset": d, "model": m, "source": "paper", "lr": t.lr, "batch size": t.batch_size,
                     "epochs": t.epochs, "notes": ""})
        public = registry.PUBLIC_CODE_TRAINING.get((d, m))
        if public is not None:
            rows.append({"dataset": d, "model": m, "source": "public code", "lr": public.lr,
                         "batch size": public.batch_size, "epochs": public.epochs, "notes": public.notes})
    seen = set()
    for s in settings:
        t = registry.training_settings(s.dataset, s.model, pretrained=s.pretrained)
        row = {"dataset": s.dataset, "model": s.model, "pretrained": s.pretrained, "source": "this book",
               "lr": s.lr if s.lr is not None else t.lr,
               "batch size": s.batch_size if s.batch_size is not None else t.batch_size,
               "epochs": s.epochs if s.epochs is not None else t.epochs, "notes": t.notes}
        if tuple(row.values()) not in seen:
            seen.add(tuple(row.values()))
            rows.append(row)
    table = _model_variants(pd.DataFrame(rows)).drop(columns="pretrained", errors="ignore")
    table = table.set_index(["dataset", "model", "source"])
    return _pretty_index(_sort_rows(table), None)


def training_notes(*, settings: Sequence = ()) -> str:
    """Markdown list of the notes behind the non-paper rows of :func:`training_settings_table`.

    One item per distinct note, naming the dataset x model rows it applies to.
    """
    table = training_settings_table(settings=settings)
    notes: dict[str, list[str]] = {}
    for (dataset, model, source), note in table["notes"].items():
        if note:
            notes.setdefault(note, []).append(f"{dataset} · {model} ({source})")
    if not notes:
        return "*No notes.*"
    return "\n".join(f"- {', '.join(rows)}: {note}" for note, rows in notes.items())


def _paper_validation() -> pd.DataFrame:
    """The paper's validation accuracy table (SPEC.md section 6) as a tidy table.

    Columns: dataset, model, glitch, mean, std (codes as used by the library).
    """
    rows = [
        {"dataset": d, "model": m, "glitch": g, "mean": mu, "std": sd}
        for (d, m), cells in PAPER_VALIDATION.items()
        for g, (mu, sd) in cells.items()
    ]
    return pd.DataFrame(rows)


def validation_side_by_side(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Our validation accuracy (mean ± std over seeds) beside the paper's, one row per dataset x model.

    ``runs`` is the store's runs table (columns dataset, model, glitch,
    val_acc). Rows carry a ``source`` level ("paper" or "ours"); the paper's
    rows are given for every dataset that has a row of ours, or for all
    datasets when ``runs`` is empty. Columns are the glitches.
    """
    paper = _paper_validation()
    paper["source"] = "paper"
    if len(runs):
        ours = _mean_std(_model_variants(runs), ["dataset", "model", "glitch"], "val_acc").assign(source="ours")
        paper = paper[paper["dataset"].isin(set(ours["dataset"]))]
    else:
        ours = paper.iloc[:0]
    paper = _model_variants(paper)
    both = pd.concat([paper, ours[list(paper.columns)]], ignore_index=True)
    both["text"] = [format_mean_std(m, std=s, digits=digits) for m, s in zip(both["mean"], both["std"])]
    wide = both.pivot_table(index=["dataset", "model", "source"], columns="glitch", values="text", aggfunc="first")
    wide = wide.iloc[sorted(range(len(wide)), key=lambda i: (
        _rank("dataset", wide.index[i][0]), _rank("model", wide.index[i][1]), wide.index[i][2] != "paper"))]
    wide = wide.reindex(columns=[g for g in GLITCH_NAMES if g in wide.columns]).fillna("")
    return _pretty_index(wide, "glitch")


# ----------------------------------------------------------------------------- detection


def _signals_in(metrics: pd.DataFrame, signals: Sequence[str] | None) -> list:
    present = list(dict.fromkeys(metrics["signal"])) if "signal" in metrics else []
    wanted = list(signals) if signals is not None else [s for s in SIGNAL_ORDER if s in present]
    return [s for s in wanted if s in present]


def metric_table(
    metrics: pd.DataFrame,
    *,
    metric: str = "f1",
    signals: Sequence[str] | None = None,
    columns: Sequence[str] = ("dataset", "model", "glitch"),
    digits: int = 2,
) -> pd.DataFrame:
    """``metric`` of each signal as mean ± std over seeds: one row per signal, one column per run group.

    Rows follow :data:`~glitchlib.report.names.SIGNAL_ORDER`; columns are the
    groups of ``columns`` ("MNIST / EfficientNet-Lite0"; a level with a single
    value, such as the glitch of a chapter, is left out of the labels). A
    signal that is uninformative for some column's runs
    (:func:`~glitchlib.report.names.uninformative_signals`: NIL, #SLIN and #SLIP
    on a linear head over non-negative features) gets
    :data:`~glitchlib.report.names.UNINFORMATIVE_MARK` after its name.
    """
    chosen = _signals_in(metrics, signals)
    sub = metrics[metrics["signal"].isin(chosen)] if len(metrics) else metrics
    if sub.empty:
        return pd.DataFrame()
    flagged = set()
    if "model" in sub.columns:
        influence = sub["influence"] if "influence" in sub.columns else pd.Series("all", index=sub.index)
        for model, inf in set(zip(sub["model"], influence.fillna("all"))):
            flagged.update(uninformative_signals(model, influence=inf))
    sub = _model_variants(sub)
    levels = [c for c in columns if c in sub.columns and sub[c].nunique() > 1] or \
        [c for c in columns if c in sub.columns][:1]
    if levels:
        shown = pretty(sub[levels])
        order = [tuple(_rank(c, v) for c, v in zip(levels, row)) for row in shown.itertuples(index=False)]
        sub = sub.assign(run=shown.astype(str).agg(" / ".join, axis=1), _order=order)
        sub = sub.sort_values("_order", kind="stable")
    else:
        sub = sub.assign(run=metric)
    table = mean_std_table(sub, ["signal"], "run", metric, digits=digits)
    table.index = pd.Index([name + (UNINFORMATIVE_MARK if code in flagged else "")
                            for code, name in zip(_codes(table.index), table.index)], name="signal")
    return table


def _codes(names) -> list:
    codes = {v: k for k, v in SIGNAL_NAMES.items()}
    return [codes.get(n, n) for n in names]


def compare_signals(
    metrics: pd.DataFrame, signal: str, baseline: str, *, metric: str = "f1",
    by: Sequence[str] = ("dataset", "model", "glitch", "ratio"), digits: int = 2,
) -> pd.DataFrame:
    """Mean ``metric`` of ``signal`` and ``baseline`` per group of ``by``, their difference and relative gain.

    ``relative gain`` is (signal - baseline) / baseline, NaN when the baseline is 0.
    """
    by = list(by)
    sub = metrics[metrics["signal"].isin([signal, baseline])] if len(metrics) else metrics
    if sub.empty:
        return pd.DataFrame()
    means = _model_variants(sub).pivot_table(index=by + ["seed"], columns="signal", values=metric)
    if signal not in means.columns or baseline not in means.columns:
        return pd.DataFrame()
    grouped = means.groupby(level=by, sort=False)
    a, b = grouped[signal].mean(), grouped[baseline].mean()
    name_a, name_b = SIGNAL_NAMES.get(signal, signal), SIGNAL_NAMES.get(baseline, baseline)
    out = pd.DataFrame({
        name_a: a.round(digits), name_b: b.round(digits), f"{name_a} - {name_b}": (a - b).round(digits),
        "relative gain": ((a - b) / b.where(b != 0)).round(digits), "seeds": grouped.size(),
    })
    return _pretty_index(_sort_rows(out), None)


def _best_signal_rows(metrics: pd.DataFrame, new: str, metric: str, groups: list[str], baselines: Sequence[str], *,
               digits: int, best_label: str) -> list[dict]:
    """One row per group of ``groups``: ``new``'s mean ``metric``, the best of ``baselines``, the gap, the seed wins.

    Signals without a value in a group (NaN means) are not candidates; a group
    where ``new`` or every baseline is missing gives no row.
    """
    rows = []
    for keys, group in _model_variants(metrics).groupby(groups, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        means = group.groupby("signal")[metric].mean()
        others = means[[s for s in baselines if s in means.index and s != new]].dropna()
        if new not in means.index or others.empty:
            continue
        best = others.idxmax()
        per_seed = group.pivot_table(index="seed", columns="signal", values=metric)
        wins = int((per_seed[new] >= per_seed[best] - 1e-12).sum())
        rows.append({**dict(zip(groups, keys)), SIGNAL_NAMES.get(new, new): round(means[new], digits),
                     best_label: SIGNAL_NAMES.get(best, best), "its " + metric: round(others[best], digits),
                     "difference": round(means[new] - others[best], digits),
                     "seeds at least as good": f"{wins}/{len(per_seed)}"})
    return rows


def claim_table(
    metrics: pd.DataFrame, *, new: str, metric: str = "f1", baselines: Sequence[str] | None = None, digits: int = 2
) -> pd.DataFrame:
    """The paper's claim "``new`` is on par with or better than every existing signal", per dataset x model x glitch.

    Columns: the new signal's mean ``metric`` over seeds, the best other
    signal (among ``baselines``, default every influence signal but CNCI,
    PCID and CFRank) and its mean, their difference, and in how many seeds the new
    signal is at least as good as that best signal.
    """
    if metrics.empty:
        return pd.DataFrame()
    excluded = {"cnci", "pcid", "cfrank"}
    base = list(baselines) if baselines is not None else [s for s in INFLUENCE_SIGNALS if s not in excluded]
    groups = ["dataset", "model", "glitch"]
    rows = _best_signal_rows(metrics, new, metric, groups, base, digits=digits, best_label="best existing signal")
    if not rows:
        return pd.DataFrame()
    return _pretty_index(_sort_rows(pd.DataFrame(rows).set_index(groups)), None)


# ----------------------------------------------------------------------------- repair and training


def repair_table(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Repair accuracy of CNCI's suggestions (mean ± std over seeds): rows dataset x model, one column per glitch.

    Only runs with mislabeled samples have a repair accuracy.
    """
    _require_columns(runs, ["dataset", "model", "glitch", "repair_acc"], "runs")
    with_repairs = runs.dropna(subset=["repair_acc"])
    if with_repairs.empty:
        return pd.DataFrame()
    return mean_std_table(_model_variants(with_repairs), ["dataset", "model"], "glitch", "repair_acc", digits=digits)


def characterization_table(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """CFRank's characterisation accuracy on mixed glitches: mean ± std over seeds per dataset x model.

    Columns: detected mislabeled samples called mislabeled, detected anomalies
    called anomalies (SPEC.md section 5).
    """
    kinds = {"char_acc_mislabeled": MISLABELED, "char_acc_anomaly": ANOMALY}
    _require_columns(runs, ["dataset", "model", *kinds], "runs")
    if runs.empty:
        return pd.DataFrame()
    long = _model_variants(runs).melt(id_vars=["dataset", "model"], value_vars=list(kinds), var_name="kind",
                                     value_name="accuracy")
    long["kind"] = long["kind"].map(kinds)
    return mean_std_table(long, ["dataset", "model"], "kind", "accuracy", digits=digits)


def train_accuracy_table(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Training accuracy on clean, mislabeled and anomalous samples (mean ± std), beside the paper's claim.

    Rows dataset x model x glitch; the last row is the paper's claim for
    ResNet-20 on MNIST. Cells without such samples are empty.
    """
    kinds = {"train_acc_clean": CLEAN, "train_acc_mislabeled": MISLABELED, "train_acc_anomaly": ANOMALY}
    _require_columns(runs, ["dataset", "model", "glitch", *kinds], "runs")
    long = _model_variants(runs).melt(
        id_vars=["dataset", "model", "glitch"], value_vars=list(kinds), var_name="kind", value_name="accuracy"
    )
    long["kind"] = long["kind"].map(kinds)
    table = mean_std_table(long, ["dataset", "model", "glitch"], "kind", "accuracy", digits=digits)
    paper = pd.DataFrame(
        [{k: format_mean_std(v, digits=digits) for k, v in PAPER_TRAIN_ACCURACY.items()}],
        index=pd.MultiIndex.from_tuples([("MNIST", "ResNet-20", "paper's claim")], names=["dataset", "model", "glitch"]),
    )
    return pd.concat([table, paper]).reindex(columns=list(PAPER_TRAIN_ACCURACY)).fillna("")


# ----------------------------------------------------------------------------- cost


def cost_table(timings: pd.DataFrame) -> pd.DataFrame:
    """Seconds per stage (mean over runs): one row per stage, one column per dataset x model.

    ``timings`` is the store's timings table (key, dataset, model, glitch,
    seed, stage, seconds). Two rows follow the stages: ``detection /
    training``, the time of :data:`DETECTION_STAGES` divided by the training
    time (mean over runs), to compare with the paper's claim (about 8 %), and
    ``runs``, the number of runs averaged.
    """
    _require_columns(timings, ["key", "dataset", "model", "stage", "seconds"], "timings")
    if timings.empty:
        return pd.DataFrame()
    data = pretty(_model_variants(timings))
    data["run"] = data["dataset"] + " · " + data["model"]
    per_run = data.pivot_table(index=["run", "key"], columns="stage", values="seconds", aggfunc="sum")
    stages = [s for s in _STAGE_ORDER if s in per_run.columns] + [s for s in per_run.columns if s not in _STAGE_ORDER]
    per_run = per_run[stages].fillna(0.0)
    detection = per_run[[s for s in DETECTION_STAGES if s in per_run.columns]].sum(axis=1)
    training = per_run["training"] if "training" in per_run.columns else np.nan
    per_run["detection / training"] = detection / training
    out = per_run.groupby(level="run", sort=False).mean()
    out["runs"] = per_run.groupby(level="run", sort=False).size()
    order = sorted(out.index, key=lambda r: tuple(_rank(c, v) for c, v in zip(("dataset", "model"), r.split(" · "))))
    out = out.loc[order].T
    out.columns.name = None
    out.index.name = "stage"
    return out


_STAGE_ORDER = ("data", "inject", "features", "training", *DETECTION_STAGES, "metrics")


def summary_tables(*, store=None, keys: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """The summary tables of ``glitchlib report``: mean ± std over seeds.

    Returns ``{"validation accuracy": ..., "detection F1, <glitch> at ratio <r>[, <settings>]": ...}``:
    validation accuracy per dataset x model x ratio (rows) and glitch (columns), and
    per glitch and ratio the detection F1 of every signal (rows) per
    dataset x model (columns). Only seeds are averaged: runs at another ratio, or with
    other settings (sizes, validation noise, one contaminated class, ...; named in the
    title and in the dataset column), are tables or rows of their own.
    Restricted to ``keys`` when given.

    Parameters
    ----------
    store : glitchlib.store.Store, path or None
        The results store (None: the default ``results/``).
    keys : list of str, optional
        The run keys to summarise.
    """
    from ..store import as_store

    store = as_store(store)
    runs, metrics = store.load_runs(), store.load_metrics()
    if keys is not None:
        runs, metrics = runs[runs["key"].isin(keys)], metrics[metrics["key"].isin(keys)]
    tables = {}
    if runs.empty:
        return tables
    # runs of different experiments (other ratios, sizes, validation noise, ...) are never averaged
    # together: only seeds of the same settings are
    variant = {r["key"]: _settings_variant(r["settings"]) for r in store.records()}
    runs = _model_variants(runs).assign(variant=lambda d: [variant.get(k, "") for k in d["key"]])
    metrics = _model_variants(metrics).assign(variant=lambda d: [variant.get(k, "") for k in d["key"]])
    validation = runs.assign(dataset=runs["dataset"] + runs["variant"].map(lambda v: f" ({v})" if v else ""))
    tables["validation accuracy"] = mean_std_table(validation, ["dataset", "model", "ratio"], "glitch", "val_acc")
    for glitch in [g for g in GLITCH_NAMES if g in set(metrics["glitch"])]:
        of_glitch = metrics[metrics["glitch"] == glitch]
        for ratio, kind_of_run in sorted({(r, v) for r, v in zip(of_glitch["ratio"], of_glitch["variant"])},
                                         key=lambda rv: (-rv[0], rv[1])):
            part = of_glitch[(of_glitch["ratio"] == ratio) & (of_glitch["variant"] == kind_of_run)].copy()
            if part["f1"].isna().all():
                continue  # the clean twins record no detection numbers
            part["run"] = part["dataset"].map(lambda d: DATASET_NAMES.get(d, d)) + " / " + part["model"]
            table = mean_std_table(part, ["signal"], "run", "f1")
            order = [SIGNAL_NAMES[s] for s in SIGNAL_ORDER if SIGNAL_NAMES[s] in table.index]
            title = f"detection F1, {GLITCH_NAMES[glitch]} at ratio {ratio:g}" + (f", {kind_of_run}" if kind_of_run else "")
            tables[title] = table.reindex(order)
    return tables


#: Settings that make a run a different experiment when they differ from their defaults
#: (the seed does not: seeds are what a table averages over).
_VARIANT_FIELDS = ("n_train", "n_test", "subset", "n_contaminated", "corruption", "test_ratio", "test_share", "lr",
                   "batch_size", "epochs", "influence", "counterfactual", "projection_dim")
_VARIANT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ExperimentSettings) if f.name in _VARIANT_FIELDS}


def _settings_variant(settings: dict) -> str:
    """``"n_train=2000, test_ratio=0.2"``: the settings of a run that differ from the defaults, in words."""
    return ", ".join(f"{name}={settings[name]}" for name in _VARIANT_FIELDS
                     if name in settings and settings[name] != _VARIANT_DEFAULTS[name])
