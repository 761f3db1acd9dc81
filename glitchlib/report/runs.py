"""The runs of a chapter: choosing their settings, their status and provenance.

Every function only reads tables or settings; computing the missing runs is the
grid's job (:func:`glitchlib.grid.ensure_results`, re-exported by
:mod:`glitchlib.report` for the notebooks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import pandas as pd

from .. import _validation
from .names import (
    DATASET_NAMES,
    GLITCH_NAMES,
    MODEL_NAMES,
    _order,
    _pretty_index,
    _rank,
    _require_columns,
    _sort_rows,
    pretty,
)

__all__ = [
    "select_keys",
    "at_ratio",
    "with_seed",
    "pick_run",
    "run_caption",
    "run_scores",
]


# ----------------------------------------------------------------------------- settings


def select_keys(df: pd.DataFrame, settings: Iterable) -> pd.DataFrame:
    """Rows of ``df`` whose ``key`` belongs to one of ``settings`` (objects with a ``key()`` method)."""
    keys = {s.key() for s in settings}
    _require_columns(df, ["key"], "df")
    return df[df["key"].isin(keys)].reset_index(drop=True)


def _with_glitch(settings: Sequence, glitch: str) -> list:
    """The settings of a profile for one glitch.

    Returns the settings whose ``glitch`` is ``glitch``; when the profile has
    none, derives them from the profile's settings by replacing their glitch
    (one per dataset x model x ratio x seed), so that every chapter has runs;
    cells that cannot take ``glitch`` (anomalies on a table) are left out.
    """
    chosen = [s for s in settings if s.glitch == glitch]
    if chosen or not settings:
        return chosen
    derived = {}
    for s in settings:
        try:
            new = dataclasses.replace(s, glitch=glitch)
        except ValueError:  # a glitch this cell cannot take, e.g. anomalies on a table
            continue
        derived.setdefault(new.key(), new)
    return list(derived.values())


def with_seed(settings: Sequence, *, seed) -> list:
    """The ``settings`` of one seed; all of them when none has it (``seed`` read by value, ``"0"`` too)."""
    seed = _validation.as_seed(seed, text=True)
    return [s for s in settings if s.seed == seed] or list(settings[:1])


def at_ratio(settings: Sequence, *, ratio: float | None, seeds: int = 1) -> list:
    """The ``settings`` of the first ``seeds`` seeds with the glitch ratio changed to ``ratio``.

    ``ratio`` None gives an empty list (nothing to run). Both are notebook
    parameters, so the strings papermill may pass are read by value (``"0.01"``,
    ``"none"``, ``"2"``); anything else raises ``ValueError`` naming the argument.
    """
    ratio = _validation.as_ratio(ratio, "ratio", optional=True, text=True)
    seeds = _validation.as_int(seeds, "seeds", low=0, text=True)
    if ratio is None:
        return []
    chosen = {}
    for s in settings:
        if s.seed < seeds:
            new = dataclasses.replace(s, ratio=ratio)
            chosen.setdefault(new.key(), new)
    return list(chosen.values())


# ----------------------------------------------------------------------------- status


def _status_table(settings: Sequence, done_keys: Iterable[str], runnable=None) -> pd.DataFrame:
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


def _status_summary(status: pd.DataFrame) -> pd.DataFrame:
    """A status table summarised: rows dataset x model, one column per glitch, and the reasons.

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


def _provenance(runs: pd.DataFrame) -> pd.DataFrame:
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


def _provenance_markdown(runs: pd.DataFrame, profile: str = "") -> str:
    """A short Markdown paragraph stating the data, weights, seeds and machine behind ``runs``."""
    head = f"**Profile `{profile}`.** " if profile else ""
    if runs.empty:
        return head + "No finished runs in the results store for this chapter."
    table = _provenance(runs)
    lines = [head + f"{len(runs)} runs from the results store:", ""]
    for row in table.itertuples(index=False):
        lines.append(
            f"- {row.dataset} with {row.model}: data *{row.data_source}*, weights `{row.weights_id}`, "
            f"seeds {row.seeds}, device `{row.device}` on *{row.machine}*"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- one run


def pick_run(settings: Sequence, runs: pd.DataFrame, *, glitch: str | None = None, dataset: str | None = None,
             seed: int | None = None):
    """The settings of the first finished run matching ``glitch``, ``dataset`` and ``seed`` (None: any).

    ``settings`` are the candidates (e.g. a chapter's), ``runs`` the store's
    runs table; runs are tried in dataset order (MNIST first), then seed
    order. Returns None when no finished run matches. ``dataset`` and ``seed``
    are notebook parameters: ``"none"`` and numeric strings are read by value.
    """
    glitch = _validation.as_text(glitch, "glitch", optional=True, text=True)
    dataset = _validation.as_text(dataset, "dataset", optional=True, text=True)
    seed = None if seed is None or _validation.is_none_text(seed) else _validation.as_seed(seed, text=True)
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
