"""Run the missing cells of a grid in worker processes; the status of every cell.

Cells run in ``jobs`` worker processes (``concurrent.futures`` with the ``spawn``
start method, so workers share nothing with the parent but the store on disk).
Backbone features are computed once per input set: a worker takes an inter-process
file lock per (dataset, model, weights) before it looks up or computes features,
so when two cells need the same features one computes them and the other then
reads them from the store's content-keyed cache. Every finished cell is a complete store entry; a grid
stopped midway picks up where it stopped.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .config import ExperimentSettings
from .profiles import runnable
from .store import Store, as_store

__all__ = ["GridOutcome", "grid_status", "run_grid", "summary_tables"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridOutcome:
    """What :func:`run_grid` did: keys computed now, already done, not runnable, failed."""

    computed: list[str]
    already_done: list[str]
    not_runnable: list[tuple[str, str]]
    failed: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        return not self.failed


def grid_status(settings: list[ExperimentSettings], store: Store | str | Path | None = None) -> pd.DataFrame:
    """One row per cell: its settings, key, ``status`` and ``reason``.

    ``status`` is ``done``, ``partial`` (some stages finished; a rerun resumes),
    ``missing``, ``corrupt`` (it will be recomputed) or ``not runnable`` (the
    reason says which data or weights are absent).
    """
    store = as_store(store)
    rows = []
    for s in settings:
        state = store.state(s.key(), settings=s.keyed_dict())
        reason = ""
        if state.startswith("corrupt"):
            state, reason = "corrupt", state.split(": ", 1)[-1]
        if state != "done":
            ok, why = runnable(s)
            if not ok:
                state, reason = "not runnable", why
        rows.append({"dataset": s.dataset, "model": s.model, "glitch": s.glitch, "ratio": s.ratio,
                     "seed": s.seed, "key": s.key(), "status": state, "reason": reason})
    return pd.DataFrame(rows, columns=["dataset", "model", "glitch", "ratio", "seed", "key", "status", "reason"])


def run_grid(
    settings: list[ExperimentSettings],
    *,
    store: Store | str | Path | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> GridOutcome:
    """Run every runnable cell of ``settings`` that the store does not hold yet.

    Parameters
    ----------
    settings : list of ExperimentSettings
        The grid (e.g. :func:`glitchlib.profiles.profile_settings`).
    store : Store or path, optional
        Results store (default ``results/``).
    jobs : int
        Worker processes. Each worker uses ``cpu_count // jobs`` torch threads.
        ``1`` runs the cells in this process.
    progress : bool
        Show a progress bar over cells (per-run bars are off in workers).

    Returns
    -------
    GridOutcome
        A failed cell does not stop the grid; its error is logged and listed.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a positive integer")
    store = as_store(store)
    status = grid_status(settings, store)
    todo = [s for s, st in zip(settings, status["status"]) if st in ("missing", "partial", "corrupt")]
    done = list(status.loc[status["status"] == "done", "key"])
    skipped = [(k, r) for k, st, r in zip(status["key"], status["status"], status["reason"]) if st == "not runnable"]
    for key, reason in skipped:
        log.warning("not runnable here: %s (%s)", key, reason)
    computed, failed = [], []
    bar = tqdm(total=len(todo), desc="grid", unit="run", disable=not progress)
    if jobs == 1 or len(todo) <= 1:
        for s in todo:
            bar.set_postfix_str(s.label())
            key, error = _run_cell(s.to_dict(), str(store.root), None)
            (failed.append((key, error)) if error else computed.append(key))
            bar.update()
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_run_cell, s.to_dict(), str(store.root), threads) for s in todo]
            for future in cf.as_completed(futures):
                key, error = future.result()
                (failed.append((key, error)) if error else computed.append(key))
                bar.update()
    bar.close()
    for key, error in failed:  # one line each; the traceback with -v (INFO)
        log.error("run %s failed: %s", key, error.strip().splitlines()[-1])
        log.info("traceback of %s:\n%s", key, error)
    return GridOutcome(computed=computed, already_done=done, not_runnable=skipped, failed=failed)


def _run_cell(settings: dict, root: str, threads: int | None) -> tuple[str, str | None]:
    """Worker body: run one cell, return ``(key, None)`` or ``(key, traceback text)``."""
    import torch

    from . import experiments

    if threads is not None:
        torch.set_num_threads(threads)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    s = ExperimentSettings.from_dict(settings)
    try:
        experiments.run(s, store=root, progress=False)
        return s.key(), None
    except Exception:  # reported by the parent; the grid goes on
        return s.key(), traceback.format_exc()


def summary_tables(store: Store | str | Path | None = None, keys: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """The summary tables of ``glitchlib report``: mean ± std over seeds.

    Returns ``{"validation accuracy": ..., "detection F1, <glitch> at ratio <r>": ...}``:
    validation accuracy per dataset x model x ratio (rows) and glitch (columns), and
    per glitch kind and ratio the detection F1 of every signal (rows) per
    dataset x model (columns). Runs at different ratios are never averaged together.
    Restricted to ``keys`` when given.
    """
    from . import report

    store = as_store(store)
    runs, metrics = store.load_runs(), store.load_metrics()
    if keys is not None:
        runs, metrics = runs[runs["key"].isin(keys)], metrics[metrics["key"].isin(keys)]
    tables = {}
    if runs.empty:
        return tables
    # runs at different glitch ratios are never averaged together
    runs, metrics = report.model_variants(runs), report.model_variants(metrics)
    tables["validation accuracy"] = report.mean_std_table(runs, ["dataset", "model", "ratio"], "glitch", "val_acc")
    for glitch in [g for g in report.GLITCH_NAMES if g in set(metrics["glitch"])]:
        for ratio in sorted(set(metrics.loc[metrics["glitch"] == glitch, "ratio"]), reverse=True):
            part = metrics[(metrics["glitch"] == glitch) & (metrics["ratio"] == ratio)].copy()
            part["run"] = part["dataset"].map(lambda d: report.DATASET_NAMES.get(d, d)) + " / " + part["model"]
            table = report.mean_std_table(part, ["signal"], "run", "f1")
            order = [report.SIGNAL_NAMES[s] for s in report.SIGNAL_ORDER if report.SIGNAL_NAMES[s] in table.index]
            tables[f"detection F1, {report.GLITCH_NAMES[glitch]} at ratio {ratio:g}"] = table.reindex(order)
    return tables
