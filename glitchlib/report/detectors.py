"""The influence signals against the dedicated detectors: detection, repair, cost, the paper's claims.

Pure functions on the store's tidy tables (``load_metrics``, ``load_runs``,
``load_timings``). The dedicated detectors are the scores of
:mod:`glitchlib.peers` (:data:`~glitchlib.report.names.PEER_SIGNALS`); SPEC.md
section 9.6 states the paper's comparison with cleanlab.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .names import (
    GLITCH_NAMES,
    INFLUENCE_SIGNALS,
    PEER_SIGNALS,
    SIGNAL_NAMES,
    _pretty_index,
    _rank,
    _require_columns,
    _sort_rows,
    _model_variants,
    pretty,
)
from .tables import format_mean_std, _mean_std

__all__ = ["PAPER_NEW_SIGNALS", "detector_table", "plot_detectors", "repair_comparison", "detector_cost_table",
           "detector_claims", "claim_summary", "winner_summary"]

#: The paper's new influence signals, each shown in its own column beside the detectors.
PAPER_NEW_SIGNALS = ("cnci", "pcid", "cfrank")
_GROUPS = ["dataset", "model", "glitch"]
_BEST = "best influence signal"
_BEST_SHORT = "best influence"


def _best_influence(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per dataset x model x glitch, the rows of the influence signal with the highest mean ``metric``."""
    influence = metrics[metrics["signal"].isin(INFLUENCE_SIGNALS)]
    if influence.empty:
        return influence
    # groups without a number (runs of the glitch "none" record NaN metrics) have no best signal
    means = influence.groupby(_GROUPS + ["signal"], sort=False)[metric].mean().reset_index().dropna(subset=[metric])
    best = means.loc[means.groupby(_GROUPS, sort=False)[metric].idxmax(), _GROUPS + ["signal"]]
    return influence.merge(best, on=_GROUPS + ["signal"])


def detector_table(metrics: pd.DataFrame, *, metric: str = "f1", digits: int = 2) -> pd.DataFrame:
    """``metric`` (mean ± std over seeds) of the best influence signal, CNCI, PCID, CFRank and every detector.

    Rows: dataset x model x glitch. The first two columns name the
    influence signal with the highest mean ``metric`` in that row (among all
    of SPEC.md section 4) and give its value; then one column per paper
    signal and per dedicated detector present in ``metrics``. Pass the runs
    of one glitch ratio (runs at other ratios would be averaged in).
    """
    _require_columns(metrics, _GROUPS + ["seed", "signal", metric], "metrics")
    data = _model_variants(metrics) if len(metrics) else metrics
    columns = [s for s in (*PAPER_NEW_SIGNALS, *PEER_SIGNALS) if s in set(data["signal"])]
    if data.empty or not columns:
        return pd.DataFrame()
    stats = _mean_std(data[data["signal"].isin(columns)], _GROUPS + ["signal"], metric)
    stats["text"] = [format_mean_std(m, std=s, digits=digits) for m, s in zip(stats["mean"], stats["std"])]
    wide = stats.pivot_table(index=_GROUPS, columns="signal", values="text", aggfunc="first")
    wide = wide.reindex(columns=columns)
    best = _best_influence(data, metric)
    if len(best):
        best_stats = _mean_std(best, _GROUPS + ["signal"], metric).set_index(_GROUPS)
        wide.insert(0, f"its {metric}", [
            format_mean_std(best_stats.loc[i, "mean"], std=best_stats.loc[i, "std"], digits=digits)
            if i in best_stats.index else "" for i in wide.index])
        wide.insert(0, _BEST, [SIGNAL_NAMES.get(best_stats.loc[i, "signal"], "") if i in best_stats.index else ""
                               for i in wide.index])
    wide = wide.rename(columns={s: SIGNAL_NAMES.get(s, s) for s in columns}).fillna("")
    return _pretty_index(_sort_rows(wide), None)


def plot_detectors(metrics: pd.DataFrame, *, metric: str = "f1"):
    """Bars of ``metric`` per glitch (mean over seeds, error bar = std): influence signals and detectors.

    One panel per dataset x model and glitch that has runs, four to a row;
    bars for the best influence signal, CNCI, PCID, CFRank and every detector. The
    influence signals are drawn in red, the label-error detectors in blue and
    the out-of-distribution detectors in green.
    """
    import seaborn as sns

    from .plots import _empty_figure

    metrics = metrics.dropna(subset=[metric]) if metric in metrics else metrics  # no panel without numbers
    if metrics.empty:
        return _empty_figure(f"no {metric} results")
    data = _model_variants(metrics)
    best = _best_influence(data, metric).assign(signal=_BEST_SHORT)
    chosen = data[data["signal"].isin((*PAPER_NEW_SIGNALS, *PEER_SIGNALS))]
    data = pretty(pd.concat([best, chosen], ignore_index=True))
    data["run"] = data["dataset"] + " · " + data["model"]
    order = [_BEST_SHORT] + [SIGNAL_NAMES[s] for s in (*PAPER_NEW_SIGNALS, *PEER_SIGNALS)]
    order = [s for s in order if s in set(data["signal"])]
    colours = {_BEST_SHORT: "#c0392b", **{SIGNAL_NAMES[s]: "#e6786a" for s in PAPER_NEW_SIGNALS},
               **{SIGNAL_NAMES[s]: "#2e86c1" for s in PEER_SIGNALS[:3]},
               **{SIGNAL_NAMES[s]: "#27ae60" for s in PEER_SIGNALS[3:]}}
    glitches = [GLITCH_NAMES[g] for g in GLITCH_NAMES if GLITCH_NAMES[g] in set(data["glitch"])]
    runs = sorted(set(data["run"]), key=lambda r: tuple(_rank(c, v) for c, v in zip(("dataset", "model"),
                                                                                       r.split(" · "))))
    # one panel per (dataset x model, glitch) that has runs, four to a row; horizontal bars keep
    # every signal's name readable on each row of panels
    data["panel"] = data["run"] + "\n" + data["glitch"]
    panels = [f"{r}\n{g}" for r in runs for g in glitches if f"{r}\n{g}" in set(data["panel"])]
    height = max(2.5, 0.3 * len(order) + 0.8)
    grid = sns.catplot(data=data, kind="bar", y="signal", x=metric, order=order, hue="signal", hue_order=order,
                       palette=colours, legend=False, col="panel", col_order=panels, col_wrap=min(4, len(panels)),
                       errorbar="sd", capsize=0.2, height=height, aspect=3.6 / height)
    grid.set_titles("{col_name}")
    grid.set_axis_labels(metric.upper() if len(metric) <= 5 else metric, "")
    grid.set(xlim=(0, 1.05))
    return grid.figure


def repair_comparison(runs: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Repair accuracy of CNCI's ``c*`` and of cleanlab's suggestion over all mislabeled samples (SPEC.md 9.6).

    Rows: dataset x model x glitch with mislabeled samples. Columns: each
    repair accuracy as mean ± std over seeds, the difference of the means, and
    in how many seeds CNCI's suggestion is right at least as often as
    cleanlab's.
    """
    _require_columns(runs, _GROUPS + ["seed", "repair_acc", "repair_acc_cleanlab"], "runs")
    data = runs.dropna(subset=["repair_acc", "repair_acc_cleanlab"])
    if data.empty:
        return pd.DataFrame()
    rows = []
    for keys, group in _model_variants(data).groupby(_GROUPS, sort=False):
        cnci, cleanlab = group["repair_acc"].astype(float), group["repair_acc_cleanlab"].astype(float)
        rows.append({**dict(zip(_GROUPS, keys)),
                     "CNCI (c*)": format_mean_std(cnci.mean(), std=cnci.std(), digits=digits),
                     "cleanlab (argmax)": format_mean_std(cleanlab.mean(), std=cleanlab.std(), digits=digits),
                     "difference": round(cnci.mean() - cleanlab.mean(), digits),
                     "seeds CNCI at least as good":
                         f"{int((cnci.to_numpy() >= cleanlab.to_numpy()).sum())}/{len(group)}"})
    return _pretty_index(_sort_rows(pd.DataFrame(rows).set_index(_GROUPS)), None)


def detector_cost_table(runs: pd.DataFrame, timings: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Seconds per run (mean over runs) of the influence signals, of each detector, and of training.

    The influence signals cost the stages influence and counterfactuals plus
    the signals stage less the detectors' time (``seconds_<detector>`` in
    ``runs``). Rows: what is timed; columns: dataset x model, with the number of runs averaged.
    """
    _require_columns(timings, ["key", "dataset", "model", "stage", "seconds"], "timings")
    _require_columns(runs, ["key"], "runs")
    peer_columns = [f"seconds_{p}" for p in PEER_SIGNALS if f"seconds_{p}" in runs.columns]
    if timings.empty or runs.empty or not peer_columns:
        return pd.DataFrame()
    stages = timings.pivot_table(index="key", columns="stage", values="seconds", aggfunc="sum")
    peers = runs.set_index("key")[peer_columns].astype(float)
    keys = stages.index.intersection(peers.dropna().index)
    stages, peers = stages.loc[keys], peers.loc[keys]
    table = pd.DataFrame(index=keys)
    table["training"] = stages.get("training", np.nan)
    table["influence signals"] = (stages.get("influence", 0.0) + stages.get("counterfactuals", 0.0)
                                  + stages.get("signals", 0.0) - peers.sum(axis=1))
    for column in peer_columns:
        table[SIGNAL_NAMES[column.removeprefix("seconds_")]] = peers[column]
    info = pretty(_model_variants(runs.set_index("key").loc[keys].reset_index()))
    table["run"] = (info["dataset"] + " · " + info["model"]).to_numpy()
    out = table.groupby("run", sort=False).mean().round(digits)
    counts = table.groupby("run", sort=False).size()
    order = sorted(out.index, key=lambda r: tuple(_rank(c, v) for c, v in zip(("dataset", "model"), r.split(" · "))))
    out = out.loc[order].T
    out.columns = [f"{run} ({counts[run]} runs)" for run in out.columns]  # a count, not a time: in the header
    out.index.name = "seconds per run"
    return out


def detector_claims(metrics: pd.DataFrame, runs: pd.DataFrame, *, glitches: Sequence[str] = ("uniform", "class-based"),
                    digits: int = 2) -> pd.DataFrame:
    """The paper's claims against cleanlab (SPEC.md 9.6), checked per dataset x model x glitch.

    Two claims: "CNCI detects better than cleanlab" (detection F1 at ``k``)
    and "CNCI repairs better than cleanlab" (repair accuracy over all
    mislabeled samples). Columns: CNCI's and cleanlab's means over seeds, the
    difference, in how many seeds CNCI is strictly better, and the verdict:
    "holds" when CNCI's mean is higher, "fails" otherwise.
    """
    _require_columns(metrics, _GROUPS + ["seed", "signal", "f1"], "metrics")
    _require_columns(runs, _GROUPS + ["seed", "repair_acc", "repair_acc_cleanlab"], "runs")
    rows = []
    f1 = _model_variants(metrics[metrics["glitch"].isin(glitches)]) if len(metrics) else metrics
    if len(f1):
        wide = f1.pivot_table(index=_GROUPS + ["seed"], columns="signal", values="f1")
        if {"cnci", "cleanlab"} <= set(wide.columns):
            rows += _claim_rows(wide["cnci"], wide["cleanlab"], "CNCI detects better (F1)", digits)
    repair = runs[runs["glitch"].isin(glitches)].dropna(subset=["repair_acc", "repair_acc_cleanlab"])
    if len(repair):
        repair = _model_variants(repair).set_index(_GROUPS + ["seed"])
        rows += _claim_rows(repair["repair_acc"].astype(float), repair["repair_acc_cleanlab"].astype(float),
                            "CNCI repairs better (repair accuracy)", digits)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index(["claim", *_GROUPS])
    keys = sorted(range(len(table)), key=lambda i: (table.index[i][0],) + tuple(
        _rank(c, v) for c, v in zip(_GROUPS, table.index[i][1:])))
    return _pretty_index(table.iloc[keys], None)


def _claim_rows(cnci: pd.Series, cleanlab: pd.Series, claim: str, digits: int) -> list[dict]:
    rows = []
    for keys, a in cnci.groupby(level=_GROUPS, sort=False):
        b = cleanlab.loc[a.index]
        difference = a.mean() - b.mean()
        rows.append({"claim": claim, **dict(zip(_GROUPS, keys)), "CNCI": round(a.mean(), digits),
                     "cleanlab": round(b.mean(), digits), "difference": round(difference, digits),
                     "seeds CNCI better": f"{int((a.to_numpy() > b.to_numpy()).sum())}/{len(a)}",
                     "verdict": "holds" if difference > 0 else "fails"})
    return rows


def claim_summary(claims: pd.DataFrame) -> str:
    """Markdown list: for each claim of :func:`detector_claims`, in how many rows it holds and where it fails."""
    if claims.empty:
        return "*No run to check the claims on.*"
    lines = []
    for claim, rows in claims.groupby(level="claim", sort=False):
        holds = rows["verdict"] == "holds"
        failing = [" · ".join(map(str, index[1:])) for index in rows.index[~holds]]
        text = f"- **{claim}**: holds in {int(holds.sum())} of {len(rows)} dataset x model x glitch rows"
        lines.append(text + (f"; fails for {', '.join(failing)}." if failing else "."))
    return "\n".join(lines)


def winner_summary(metrics: pd.DataFrame, *, metric: str = "f1", digits: int = 2) -> str:
    """Markdown list: per dataset x model x glitch, the best score overall and the best influence signal.

    "Best" is the highest mean ``metric`` over seeds, among every influence
    signal and dedicated detector in ``metrics``.
    """
    if metrics.empty:
        return "*No run to compare.*"
    means = _model_variants(metrics).groupby(_GROUPS + ["signal"], sort=False)[metric].mean()
    lines = []
    groups = sorted(means.groupby(level=_GROUPS, sort=False), key=lambda item: tuple(
        _rank(c, v) for c, v in zip(_GROUPS, item[0])))
    for keys, group in groups:
        group = group.droplevel(_GROUPS)
        best = group.idxmax()
        influence = group[group.index.isin(INFLUENCE_SIGNALS)]
        row = " · ".join(pretty(pd.DataFrame([dict(zip(_GROUPS, keys))])).iloc[0])
        text = f"- {row}: best {SIGNAL_NAMES.get(best, best)} ({group[best]:.{digits}f})"
        if len(influence) and best not in INFLUENCE_SIGNALS:
            top = influence.idxmax()
            text += (f"; best influence signal {SIGNAL_NAMES.get(top, top)} ({influence[top]:.{digits}f}, "
                     f"{influence[top] - group[best]:+.{digits}f})")
        lines.append(text + ".")
    return "\n".join(lines)
