"""Tables and figures of the book, from the results store's tidy tables.

The notebooks in ``notebooks/`` read the results store through the tidy loaders
of :mod:`glitchlib.store` (``load_runs``, ``load_metrics``, ``load_histories``,
``load_timings``, ``load_scores``) and turn those pandas tables into what a
reader sees with the functions below: mean ± std formatting over seeds, the
paper's numbers (SPEC.md section 6) as tables, side-by-side comparisons, and
seaborn figures. Apart from :func:`ensure_results`, every function is pure: a
table in, a table or a matplotlib figure out.

Scores follow the library's rule: a higher score means more likely a glitch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DATASET_NAMES",
    "MODEL_NAMES",
    "GLITCH_NAMES",
    "SIGNAL_NAMES",
    "SIGNAL_ORDER",
    "PAPER_VALIDATION",
    "PAPER_TRAIN_ACCURACY",
    "PAPER_SIGNAL_SHARE",
    "DETECTION_STAGES",
    "pretty",
    "model_variants",
    "format_mean_std",
    "mean_std",
    "mean_std_table",
    "paper_validation",
    "training_settings_table",
    "training_notes",
    "validation_side_by_side",
    "select_keys",
    "with_glitch",
    "status_table",
    "ensure_results",
    "status_summary",
    "plot_validation",
    "claim_table",
    "repair_summary",
    "provenance",
    "provenance_markdown",
    "metric_table",
    "plot_metric",
    "confusion_table",
    "plot_confusion",
    "top_suspects",
    "plot_gallery",
    "suspect_gallery",
    "pick_run",
    "run_caption",
    "run_scores",
    "label_confusion",
    "cost_table",
    "train_accuracy_table",
    "repair_table",
    "characterization_table",
    "plot_stages",
    "compare_signals",
    "at_ratio",
    "plot_histories",
]

DATASET_NAMES = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
MODEL_NAMES = {
    "resnet20": "ResNet-20",
    "vit_b_16": "ViT-B/16",
    "convnext_tiny": "ConvNeXt-T",
    "efficientnet_lite0": "EfficientNet-Lite0",
}
GLITCH_NAMES = {
    "uniform": "uniform noise",
    "class-based": "class-based noise",
    "anomalies": "anomalies",
    "mixed": "mixed",
}
SIGNAL_NAMES = {
    "si": "SI",
    "mi": "MI",
    "mai": "MAI",
    "aai": "AAI",
    "mpi": "MPI",
    "nil": "NIL",
    "nil_opt": "NIL-opt",
    "slip": "#SLIP",
    "slin": "#SLIN",
    "gd_class": "GD-class",
    "cnci": "CNCI",
    "pcid": "PCID",
    "cfrank": "CFRank",
}
#: Display order of the signals: the paper's new ones last.
SIGNAL_ORDER = tuple(SIGNAL_NAMES)
_KIND_COLUMNS = {"dataset": DATASET_NAMES, "model": MODEL_NAMES, "glitch": GLITCH_NAMES, "signal": SIGNAL_NAMES}

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
PAPER_TRAIN_ACCURACY = {"clean": 0.97, "mislabeled": 0.05, "anomaly": 1.00}
#: The paper's claim: computing the signals costs about this share of training time.
PAPER_SIGNAL_SHARE = 0.08
#: Stages of a run that the signals add on top of training.
DETECTION_STAGES = ("influence", "counterfactuals", "signals")


# ----------------------------------------------------------------------------- names


def pretty(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` with dataset, model, glitch and signal codes as display names.

    Columns named ``dataset``, ``model``, ``glitch`` and ``signal`` are mapped
    (unknown codes are kept as they are); other columns are untouched.
    """
    out = df.copy()
    for column, names in _KIND_COLUMNS.items():
        if column in out.columns:
            out[column] = out[column].map(lambda v, names=names: names.get(v, v))
    return out


def model_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` whose ``model`` column also names the variant of the run.

    A run with ``pretrained`` False becomes "<model> (random weights)", one
    with ``influence`` "head" gets " (head-only influence)", so that tables
    never average a variant into the default model. Model codes become display
    names.
    """
    out = df.copy()
    if "model" not in out.columns or out.empty:
        return out
    suffix = pd.Series("", index=out.index)
    if "pretrained" in out.columns:
        scratch = out["pretrained"].astype(str).str.lower().isin(["false", "0"])
        suffix = suffix.where(~scratch, suffix + " (random weights)")
    if "influence" in out.columns:
        head = out["influence"].astype(str) == "head"
        suffix = suffix.where(~head, suffix + " (head-only influence)")
    out["model"] = out["model"].map(lambda m: MODEL_NAMES.get(m, m)) + suffix
    return out


# ----------------------------------------------------------------------------- mean ± std


def format_mean_std(mean: float, std: float = float("nan"), digits: int = 2) -> str:
    """Format ``mean ± std`` with ``digits`` decimals; ``mean`` alone when ``std`` is NaN.

    A NaN ``mean`` gives the empty string (nothing to show).
    """
    if mean is None or pd.isna(mean):
        return ""
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_std(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
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
    (see :func:`pretty`). Empty cells are empty strings.
    """
    stats = mean_std(df, list(index) + [columns], value)
    if stats.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(df[columns]))
    stats["text"] = [format_mean_std(m, s, digits) for m, s in zip(stats["mean"], stats["std"])]
    wide = stats.pivot_table(index=list(index), columns=columns, values="text", aggfunc="first")
    wide = _sort_rows(wide).reindex(columns=[c for c in _order(order, columns) if c in wide.columns]).fillna("")
    return _pretty_index(wide, columns)


# ----------------------------------------------------------------------------- the paper


def training_settings_table(settings: Sequence = ()) -> pd.DataFrame:
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
    table = model_variants(pd.DataFrame(rows)).drop(columns="pretrained", errors="ignore")
    table = table.set_index(["dataset", "model", "source"])
    return _pretty_index(_sort_rows(table), None)


def training_notes(settings: Sequence = ()) -> str:
    """Markdown list of the notes behind the non-paper rows of :func:`training_settings_table`.

    One item per distinct note, naming the dataset x model rows it applies to.
    """
    table = training_settings_table(settings)
    notes: dict[str, list[str]] = {}
    for (dataset, model, source), note in table["notes"].items():
        if note:
            notes.setdefault(note, []).append(f"{dataset} · {model} ({source})")
    if not notes:
        return "*No notes.*"
    return "\n".join(f"- {', '.join(rows)}: {note}" for note, rows in notes.items())


def paper_validation() -> pd.DataFrame:
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
    datasets when ``runs`` is empty. Columns are the glitch kinds.
    """
    paper = paper_validation()
    paper["source"] = "paper"
    if len(runs):
        ours = mean_std(model_variants(runs), ["dataset", "model", "glitch"], "val_acc").assign(source="ours")
        paper = paper[paper["dataset"].isin(set(ours["dataset"]))]
    else:
        ours = paper.iloc[:0]
    paper = model_variants(paper)
    both = pd.concat([paper, ours[list(paper.columns)]], ignore_index=True)
    both["text"] = [format_mean_std(m, s, digits) for m, s in zip(both["mean"], both["std"])]
    wide = both.pivot_table(index=["dataset", "model", "source"], columns="glitch", values="text", aggfunc="first")
    wide = wide.iloc[sorted(range(len(wide)), key=lambda i: (
        _rank("dataset", wide.index[i][0]), _rank("model", wide.index[i][1]), wide.index[i][2] != "paper"))]
    wide = wide.reindex(columns=[g for g in GLITCH_NAMES if g in wide.columns]).fillna("")
    return _pretty_index(wide, "glitch")


def plot_validation(runs: pd.DataFrame):
    """Validation accuracy per glitch kind: our seeds as dots and their mean ± std, the paper's means as crosses.

    One panel per dataset; the paper's models are drawn for the datasets we ran.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if runs.empty:
        return _empty_figure("no finished runs")
    ours = pretty(model_variants(runs))
    paper = paper_validation()
    paper = pretty(model_variants(paper[paper["dataset"].isin(set(runs["dataset"]))]))
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
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- settings and status


def select_keys(df: pd.DataFrame, settings: Iterable) -> pd.DataFrame:
    """Rows of ``df`` whose ``key`` belongs to one of ``settings`` (objects with a ``key()`` method)."""
    keys = {s.key() for s in settings}
    _require_columns(df, ["key"], "df")
    return df[df["key"].isin(keys)].reset_index(drop=True)


def with_glitch(settings: Sequence, glitch: str) -> list:
    """The settings of a profile for one glitch kind.

    Returns the settings whose ``glitch`` is ``glitch``; when the profile has
    none, derives them from the profile's settings by replacing the glitch kind
    (one per dataset x model x ratio x seed), so that every chapter has runs.
    """
    chosen = [s for s in settings if s.glitch == glitch]
    if chosen or not settings:
        return chosen
    derived = {}
    for s in settings:
        new = dataclasses.replace(s, glitch=glitch)
        derived.setdefault(new.key(), new)
    return list(derived.values())


def status_table(settings: Sequence, done_keys: Iterable[str], runnable=None) -> pd.DataFrame:
    """One row per setting: dataset, model, glitch, ratio, seed, key, status and reason.

    ``status`` is "done" when the key is in ``done_keys``, else "missing" or
    "not runnable" according to ``runnable(settings) -> (bool, reason)``
    (every setting is runnable when ``runnable`` is None).
    """
    done = set(done_keys)
    rows = []
    for s in settings:
        key = s.key()
        if key in done:
            status, reason = "done", ""
        else:
            ok, reason = runnable(s) if runnable is not None else (True, "")
            status = "missing" if ok else "not runnable"
        rows.append(
            {"dataset": s.dataset, "model": s.model, "glitch": s.glitch, "ratio": s.ratio, "seed": s.seed,
             "key": key, "status": status, "reason": reason}
        )
    return pd.DataFrame(rows, columns=["dataset", "model", "glitch", "ratio", "seed", "key", "status", "reason"])


def ensure_results(settings: Sequence, store, *, compute: bool = True, progress: bool = True) -> pd.DataFrame:
    """Compute the missing, runnable runs of ``settings`` into ``store``; return their status table.

    Parameters
    ----------
    settings : sequence of ExperimentSettings
        The runs a chapter needs.
    store : glitchlib.store.Store or path
        The results store; finished runs are read, never recomputed.
    compute : bool
        Run the missing (or partial) runs with :func:`glitchlib.grid.run_grid`,
        with a progress bar over runs. With False, only report them.
    progress : bool
        Show the progress bar.

    Returns
    -------
    pandas.DataFrame
        :func:`glitchlib.grid.grid_status` after computing: one row per
        setting with ``status`` "done", "missing", "partial", "corrupt" or
        "not runnable" and the ``reason``.

    Raises
    ------
    RuntimeError
        When a run fails; the message names it and ends with its error.
    """
    from glitchlib.grid import grid_status, run_grid

    settings = list(settings)
    status = grid_status(settings, store)
    if compute and status["status"].isin(["missing", "partial", "corrupt"]).any():
        outcome = run_grid(settings, store=store, jobs=1, progress=progress)
        if outcome.failed:
            lines = [f"{key}: {error.strip().splitlines()[-1]}" for key, error in outcome.failed]
            raise RuntimeError(f"{len(lines)} run(s) failed:\n" + "\n".join(lines))
        status = grid_status(settings, store)
    return status


def status_summary(status: pd.DataFrame) -> pd.DataFrame:
    """A status table summarised: rows dataset x model, one column per glitch kind, and the reasons.

    A glitch cell reads "5/5 done", "3/5 done, 2 missing" or "not runnable";
    the last column, ``why not runnable``, gives the distinct reasons of the
    row's cells that cannot run here (empty when every cell can).
    """
    if status.empty:
        return pd.DataFrame()

    def cell(group: pd.DataFrame) -> str:
        counts = group["status"].value_counts()
        done, total = int(counts.get("done", 0)), len(group)
        if counts.get("not runnable", 0) == total:
            return "not runnable"
        text = f"{done}/{total} done"
        for state, count in counts.items():
            if state != "done":
                text += f", {int(count)} {state}"
        return text

    rows = [
        {"dataset": d, "model": m, "glitch": gl, "text": cell(group)}
        for (d, m, gl), group in status.groupby(["dataset", "model", "glitch"], sort=False)
    ]
    wide = pd.DataFrame(rows).pivot_table(index=["dataset", "model"], columns="glitch", values="text", aggfunc="first")
    wide = wide.reindex(columns=[g for g in _order(list(wide.columns), "glitch")]).fillna("")
    blocked = status[status["status"] == "not runnable"]
    reasons = blocked.groupby(["dataset", "model"])["reason"].agg(lambda r: "; ".join(dict.fromkeys(r)))
    if len(reasons):
        wide["why not runnable"] = [reasons.get(index, "") for index in wide.index]
    return _pretty_index(_sort_rows(wide), "glitch")


# ----------------------------------------------------------------------------- provenance


_PROVENANCE = ["data_source", "weights_id", "device", "machine"]


def provenance(runs: pd.DataFrame) -> pd.DataFrame:
    """What produced the numbers: one row per dataset x model x data source x weights x device x machine.

    Columns: dataset, model, data_source, weights_id, device, machine, seeds
    (sorted, comma-separated), runs (count).
    """
    cols = ["dataset", "model"] + _PROVENANCE
    if runs.empty:
        return pd.DataFrame(columns=cols + ["seeds", "runs"])
    _require_columns(runs, cols + ["seed"], "runs")
    frame = runs[cols + ["seed"]].astype({c: str for c in cols})
    out = frame.groupby(cols, sort=True).agg(
        seeds=("seed", lambda s: ", ".join(str(v) for v in sorted(set(s)))), runs=("seed", "size")
    ).reset_index()
    order = sorted(range(len(out)), key=lambda i: (_rank("dataset", out["dataset"][i]), _rank("model", out["model"][i])))
    return pretty(out.iloc[order].reset_index(drop=True))


def provenance_markdown(runs: pd.DataFrame, profile: str = "") -> str:
    """A short Markdown paragraph stating the data, weights, seeds and machine behind ``runs``."""
    head = f"**Profile `{profile}`.** " if profile else ""
    if runs.empty:
        return head + "No finished runs in the results store for this chapter."
    table = provenance(runs)
    lines = [head + f"{len(runs)} runs from the results store:", ""]
    for row in table.itertuples(index=False):
        lines.append(
            f"- {row.dataset} with {row.model}: data *{row.data_source}*, weights `{row.weights_id}`, "
            f"seeds {row.seeds}, device `{row.device}` on *{row.machine}*"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- detection


def _signals_in(metrics: pd.DataFrame, signals: Sequence[str] | None) -> list:
    present = list(dict.fromkeys(metrics["signal"])) if "signal" in metrics else []
    wanted = list(signals) if signals is not None else [s for s in SIGNAL_ORDER if s in present]
    return [s for s in wanted if s in present]


def metric_table(
    metrics: pd.DataFrame,
    metric: str = "f1",
    signals: Sequence[str] | None = None,
    *,
    index: Sequence[str] = ("dataset", "model", "glitch"),
    digits: int = 2,
) -> pd.DataFrame:
    """``metric`` of each signal as mean ± std over seeds: rows ``index`` (dataset x model x glitch), columns signals."""
    chosen = _signals_in(metrics, signals)
    sub = metrics[metrics["signal"].isin(chosen)] if len(metrics) else metrics
    if sub.empty:
        return pd.DataFrame()
    return mean_std_table(model_variants(sub), list(index), "signal", metric, digits=digits)


def compare_signals(
    metrics: pd.DataFrame, signal: str, baseline: str, metric: str = "f1",
    *, by: Sequence[str] = ("dataset", "model", "glitch", "ratio"), digits: int = 2,
) -> pd.DataFrame:
    """Mean ``metric`` of ``signal`` and ``baseline`` per group of ``by``, their difference and relative gain.

    ``relative gain`` is (signal - baseline) / baseline, NaN when the baseline is 0.
    """
    by = list(by)
    sub = metrics[metrics["signal"].isin([signal, baseline])] if len(metrics) else metrics
    if sub.empty:
        return pd.DataFrame()
    means = model_variants(sub).pivot_table(index=by + ["seed"], columns="signal", values=metric)
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


def at_ratio(settings: Sequence, ratio: float | None, seeds: int = 1) -> list:
    """The ``settings`` of the first ``seeds`` seeds with the glitch ratio changed to ``ratio``.

    ``ratio`` None gives an empty list (nothing to run).
    """
    if ratio is None:
        return []
    chosen = {}
    for s in settings:
        if s.seed < seeds:
            new = dataclasses.replace(s, ratio=ratio)
            chosen.setdefault(new.key(), new)
    return list(chosen.values())


def claim_table(
    metrics: pd.DataFrame, new: str, metric: str = "f1", *, baselines: Sequence[str] | None = None, digits: int = 2
) -> pd.DataFrame:
    """The paper's claim "``new`` is on par with or better than every existing signal", per dataset x model x glitch.

    Columns: the new signal's mean ``metric`` over seeds, the best other
    signal (among ``baselines``, default every signal but CNCI, PCID and
    CFRank) and its mean, their difference, and in how many seeds the new
    signal is at least as good as that best signal.
    """
    if metrics.empty:
        return pd.DataFrame()
    excluded = {"cnci", "pcid", "cfrank"}
    base = list(baselines) if baselines is not None else [s for s in SIGNAL_ORDER if s not in excluded]
    data = model_variants(metrics)
    groups = ["dataset", "model", "glitch"]
    rows = []
    for keys, group in data.groupby(groups, sort=False):
        means = group.groupby("signal")[metric].mean()
        others = means[[s for s in base if s in means.index and s != new]]
        if new not in means.index or others.empty:
            continue
        best = others.idxmax()
        per_seed = group.pivot_table(index="seed", columns="signal", values=metric)
        wins = int((per_seed[new] >= per_seed[best] - 1e-12).sum())
        rows.append({**dict(zip(groups, keys)), SIGNAL_NAMES.get(new, new): round(means[new], digits),
                     "best existing signal": SIGNAL_NAMES.get(best, best), "its " + metric: round(others[best], digits),
                     "difference": round(means[new] - others[best], digits),
                     "seeds at least as good": f"{wins}/{len(per_seed)}"})
    if not rows:
        return pd.DataFrame()
    return _pretty_index(_sort_rows(pd.DataFrame(rows).set_index(groups)), None)


def repair_summary(scores: pd.DataFrame, signal: str = "cnci") -> pd.DataFrame:
    """How good the repair suggestions are, on all mislabeled samples and on those ``signal`` flags.

    ``scores`` is one run's per-sample table (``store.load_scores``). The
    flagged samples are the top ``k`` by ``signal``, ``k`` = number of glitches.
    Returns one row per group with the count and the share whose suggested
    label equals the true label.
    """
    _require_columns(scores, ["mask", "kind", "y_true", "suggested_label", signal], "scores")
    mislabeled = scores["kind"].astype(str) == "mislabeled"
    k = int(scores["mask"].astype(bool).sum())
    flagged = pd.Series(False, index=scores.index)
    flagged.iloc[np.argsort(-scores[signal].to_numpy(dtype=np.float64), kind="stable")[:k]] = True
    right = scores["suggested_label"].to_numpy() == scores["y_true"].to_numpy()
    rows = []
    for name, chosen in (("all mislabeled samples", mislabeled), (f"mislabeled samples flagged by {SIGNAL_NAMES.get(signal, signal)}", mislabeled & flagged)):
        n = int(chosen.sum())
        rows.append({"samples": name, "count": n, "repair accuracy": float(right[chosen.to_numpy()].mean()) if n else float("nan")})
    return pd.DataFrame(rows).set_index("samples")


def plot_metric(
    metrics: pd.DataFrame,
    metric: str = "f1",
    signals: Sequence[str] | None = None,
    *,
    highlight: Sequence[str] = ("cnci", "pcid", "cfrank"),
    title: str | None = None,
):
    """Bar plot of ``metric`` per signal (mean over seeds, error bars = std), one panel per dataset x model.

    The signals named in ``highlight`` (the paper's) are drawn in a strong
    colour, the others in grey. Returns the matplotlib figure; an empty table
    gives a figure saying so.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    chosen = _signals_in(metrics, signals)
    data = metrics[metrics["signal"].isin(chosen)] if len(metrics) else metrics
    if data.empty:
        return _empty_figure(f"no {metric} results")
    data = pretty(model_variants(data))
    order = [SIGNAL_NAMES.get(s, s) for s in chosen]
    strong = {SIGNAL_NAMES.get(s, s) for s in highlight}
    palette = {s: ("#c0392b" if s in strong else "#95a5a6") for s in order}
    cols = sorted(set(data["dataset"]), key=lambda v: _rank("dataset", v))
    rows = sorted(set(data["model"]), key=lambda v: _rank("model", v))
    grid = sns.catplot(
        data=data, kind="bar", x="signal", y=metric, order=order, hue="signal", hue_order=order,
        palette=palette, legend=False, col="dataset", row="model", col_order=cols, row_order=rows,
        errorbar="sd", capsize=0.2,
        height=3.2, aspect=max(1.2, len(order) / 5),
    )
    grid.set_titles("{col_name} · {row_name}")
    grid.set_axis_labels("", metric.upper() if len(metric) <= 5 else metric)
    grid.set(ylim=(0, 1.05) if metric in ("f1", "ap", "auroc") else None)
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", labelrotation=60)
    if title:
        grid.figure.suptitle(title, y=1.02)
    return grid.figure


def top_suspects(scores: pd.DataFrame, signal: str, k: int = 16) -> pd.DataFrame:
    """The ``k`` training samples with the highest ``signal`` score, most suspicious first.

    Ties are broken by the sample index (stable sort), as the metrics do.
    """
    _require_columns(scores, [signal], "scores")
    order = np.argsort(-scores[signal].to_numpy(dtype=np.float64), kind="stable")[:k]
    return scores.iloc[order]


# ----------------------------------------------------------------------------- one run


def pick_run(settings: Sequence, runs: pd.DataFrame, *, glitch: str | None = None, dataset: str | None = None,
             seed: int | None = None):
    """The settings of the first finished run matching ``glitch``, ``dataset`` and ``seed`` (None: any).

    ``settings`` are the candidates (e.g. a chapter's), ``runs`` the store's
    runs table; runs are tried in dataset order (MNIST first), then seed
    order. Returns None when no finished run matches.
    """
    done = set(runs["key"]) if "key" in runs.columns else set()
    matches = [
        s for s in settings
        if s.key() in done and (glitch is None or s.glitch == glitch)
        and (dataset is None or s.dataset == dataset) and (seed is None or s.seed == seed)
    ]
    matches.sort(key=lambda s: (_rank("dataset", s.dataset), _rank("model", s.model), s.seed))
    return matches[0] if matches else None


def run_caption(settings) -> str:
    """One Markdown line naming the run whose samples a figure shows."""
    if settings is None:
        return "*No finished run to show: compute the chapter's runs first.*"
    model = MODEL_NAMES.get(settings.model, settings.model) + ("" if settings.pretrained else " (random weights)")
    return (f"Run shown: **{DATASET_NAMES.get(settings.dataset, settings.dataset)}**, {model}, "
            f"{GLITCH_NAMES.get(settings.glitch, settings.glitch)} at {settings.ratio:g}, seed {settings.seed} "
            f"(store key `{settings.key()}`).")


def run_scores(store, settings) -> pd.DataFrame:
    """The per-sample scores of one run (``store.load_scores``); an empty table when ``settings`` is None."""
    if settings is None:
        return pd.DataFrame(columns=["index", "y", "y_true", "kind", "mask", "suggested_label",
                                     "second_best_label", "characterization"])
    return store.load_scores(settings.key())


# ----------------------------------------------------------------------------- repair


def confusion_table(
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


def label_confusion(scores: pd.DataFrame, dataset: str | None = None, column: str = "suggested_label",
                    *, kind: str = "mislabeled") -> pd.DataFrame:
    """Confusion of the true label with ``column`` (a label column of a run's scores) over samples of ``kind``.

    ``column`` "suggested_label" shows CNCI's repairs, "y" the noise that was
    injected. Classes are named after ``dataset`` (:data:`glitchlib.data.CLASS_NAMES`).
    """
    from glitchlib.data import CLASS_NAMES

    _require_columns(scores, ["kind", "y_true", column], "scores")
    chosen = scores[scores["kind"].astype(str) == kind]
    titles = {"suggested_label": "suggested label", "y": "given label", "second_best_label": "second-best label"}
    return confusion_table(chosen["y_true"].to_numpy(dtype=np.int64), chosen[column].to_numpy(dtype=np.int64),
                           CLASS_NAMES.get(dataset), names=("true label", titles.get(column, column)))


def plot_confusion(table: pd.DataFrame, *, title: str | None = None):
    """Heat map of a :func:`confusion_table` with the counts written in the cells."""
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


# ----------------------------------------------------------------------------- gallery


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

    if settings is None:
        return _empty_figure("no finished run")
    scores = store.load_scores(settings.key())
    top = top_suspects(scores, signal, k)
    data = experiments.load_training_set(settings, store=store)
    index = torch.from_numpy(top["index"].to_numpy(dtype=np.int64, copy=True))
    images = denormalize(data.x[index]).numpy()
    names, captions = data.class_names, []
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        kind = str(row.kind)
        truth = ("anomaly: " + data.ood_class_names[int(row.y_true)]) if kind == "anomaly" and data.ood_class_names \
            else ("clean" if kind == "clean" else f"{kind}, true {names[int(row.y_true)]}")
        captions.append(f"#{rank} given {names[int(row.y)]}\nsuggested {names[int(row.suggested_label)]}\n"
                        f"{SIGNAL_NAMES.get(signal, signal)} {getattr(row, signal):.3g}\n{truth}")
    hits = top["mask"].astype(bool).tolist()
    title = f"top {len(top)} by {SIGNAL_NAMES.get(signal, signal)}: {sum(hits)} real glitches"
    return plot_gallery(images, captions, hits, ncols=ncols, title=title)


# ----------------------------------------------------------------------------- cost and training


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
    data = pretty(model_variants(timings))
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


def characterization_table(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """CFRank's characterisation accuracy on mixed glitches: mean ± std over seeds per dataset x model.

    Columns: detected mislabeled samples called mislabeled, detected anomalies
    called anomalies (SPEC.md section 5).
    """
    kinds = {"char_acc_mislabeled": "mislabeled", "char_acc_anomaly": "anomaly"}
    _require_columns(runs, ["dataset", "model", *kinds], "runs")
    if runs.empty:
        return pd.DataFrame()
    long = model_variants(runs).melt(id_vars=["dataset", "model"], value_vars=list(kinds), var_name="kind",
                                     value_name="accuracy")
    long["kind"] = long["kind"].map(kinds)
    return mean_std_table(long, ["dataset", "model"], "kind", "accuracy", digits=digits)


def plot_stages(timings: pd.DataFrame):
    """Seconds per stage of a run on a log scale (mean over runs, error bars = std), one colour per dataset x model."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if timings.empty:
        return _empty_figure("no timings")
    per_run = timings.groupby(["key", "dataset", "model", "stage"], sort=False)["seconds"].sum().reset_index()
    data = pretty(model_variants(per_run))
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


def repair_table(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Repair accuracy of CNCI's suggestions (mean ± std over seeds): rows dataset x model, columns glitch kinds.

    Only runs with mislabeled samples have a repair accuracy.
    """
    _require_columns(runs, ["dataset", "model", "glitch", "repair_acc"], "runs")
    with_repairs = runs.dropna(subset=["repair_acc"])
    if with_repairs.empty:
        return pd.DataFrame()
    return mean_std_table(model_variants(with_repairs), ["dataset", "model"], "glitch", "repair_acc", digits=digits)


def train_accuracy_table(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Training accuracy on clean, mislabeled and anomalous samples (mean ± std), beside the paper's claim.

    Rows dataset x model x glitch; the last row is the paper's claim for
    ResNet-20 on MNIST. Cells without such samples are empty.
    """
    kinds = {"train_acc_clean": "clean", "train_acc_mislabeled": "mislabeled", "train_acc_anomaly": "anomaly"}
    _require_columns(runs, ["dataset", "model", "glitch", *kinds], "runs")
    long = model_variants(runs).melt(
        id_vars=["dataset", "model", "glitch"], value_vars=list(kinds), var_name="kind", value_name="accuracy"
    )
    long["kind"] = long["kind"].map(kinds)
    table = mean_std_table(long, ["dataset", "model", "glitch"], "kind", "accuracy", digits=digits)
    paper = pd.DataFrame(
        [{k: format_mean_std(v, digits=digits) for k, v in PAPER_TRAIN_ACCURACY.items()}],
        index=pd.MultiIndex.from_tuples([("MNIST", "ResNet-20", "paper's claim")], names=["dataset", "model", "glitch"]),
    )
    return pd.concat([table, paper]).reindex(columns=list(PAPER_TRAIN_ACCURACY)).fillna("")


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


def _require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}; it has {list(df.columns)}")


def _rank(column: str | None, value) -> tuple:
    """Sort key of a code or display name: the order of the name tables first, then alphabetical."""
    names = _KIND_COLUMNS.get(column, {})
    for position, (code, name) in enumerate(names.items()):
        if value == code or value == name:
            return (0, position, "")
        if isinstance(value, str) and value.startswith(name + " ("):
            return (0, position, value)
    return (1, 0, str(value))


def _sort_rows(wide: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order of the name tables (MNIST before Fashion-MNIST, the paper's models first, ...)."""
    levels = list(wide.index.names)
    if isinstance(wide.index, pd.MultiIndex):
        keys = [tuple(_rank(n, v) for n, v in zip(levels, t)) for t in wide.index]
    else:
        keys = [_rank(levels[0], v) for v in wide.index]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return wide.iloc[order]


def _order(values: list, column: str) -> list:
    names = _KIND_COLUMNS.get(column)
    if names is None:
        return values
    known = [v for v in names if v in values]
    return known + [v for v in values if v not in names]


def _pretty_index(wide: pd.DataFrame, columns: str | None) -> pd.DataFrame:
    """Display names in the row index levels and, for ``columns``, in the column labels."""
    wide = wide.copy()
    if isinstance(wide.index, pd.MultiIndex):
        wide.index = pd.MultiIndex.from_tuples(
            [tuple(_KIND_COLUMNS.get(n, {}).get(v, v) for n, v in zip(wide.index.names, t)) for t in wide.index],
            names=wide.index.names,
        )
    else:
        names = _KIND_COLUMNS.get(wide.index.name, {})
        wide.index = pd.Index([names.get(v, v) for v in wide.index], name=wide.index.name)
    if columns in _KIND_COLUMNS:
        wide.columns = [_KIND_COLUMNS[columns].get(c, c) for c in wide.columns]
    wide.columns.name = None
    return wide


def _empty_figure(message: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 1.2))
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return fig
