"""What every chapter of the book starts with: its runs, computed when missing, their status and provenance.

:func:`chapter` is the one call at the top of a chapter: it reads the profile's
cells, picks the chapter's, computes the missing ones into the results store
(:func:`glitchlib.grid.ensure_results`), and returns the chapter's tables with
the status and provenance a reader needs to know where the numbers come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import _validation
from ..settings import GLITCHES
from ..grid import ensure_results
from ..profiles import profile_settings
from .runs import _provenance_markdown, select_keys, _status_summary, _with_glitch

__all__ = ["Chapter", "chapter"]


@dataclass(frozen=True, eq=False)
class Chapter:
    """The runs of one chapter, read from the results store.

    Attributes
    ----------
    profile : str
        The profile's name (or YAML path), as given.
    settings : list of ExperimentSettings
        Every cell of the profile.
    cells : list of ExperimentSettings
        The chapter's cells (those its tables are about).
    store : glitchlib.store.Store
        The results store.
    status : pandas.DataFrame
        One row per cell of ``cells`` (and of ``also``):
        :func:`glitchlib.grid.grid_status` columns, ``status`` "done",
        "missing", "partial", "corrupt" or "not runnable", and ``reason``.
    summary : pandas.DataFrame
        ``status`` summarised: rows dataset x model, one column per glitch,
        and why cells cannot run.
    runs : pandas.DataFrame
        The store's runs table (:meth:`glitchlib.store.Store.load_runs`),
        finished runs of ``cells`` only: one row per run.
    metrics : pandas.DataFrame
        The store's metrics table (:meth:`glitchlib.store.Store.load_metrics`),
        finished runs of ``cells`` only: one row per run and signal.
    provenance : str
        Markdown: the data, weights, seeds and machine behind ``runs``
        (one line per dataset x model).
    """

    profile: str
    settings: list
    cells: list
    store: object
    status: pd.DataFrame
    summary: pd.DataFrame
    runs: pd.DataFrame
    metrics: pd.DataFrame
    provenance: str

    @property
    def done(self) -> list[str]:
        """Keys of the chapter's finished runs, in the order of ``status``."""
        return list(self.status.loc[self.status["status"] == "done", "key"])

    def first_done(self) -> str:
        """Key of the chapter's first finished run (the one a chapter recomputes step by step).

        Raises
        ------
        ValueError
            No cell of the chapter is finished in the store; the message says how
            to compute them (``compute_missing=True`` or ``glitchlib grid``).
        """
        if not self.done:
            raise ValueError(
                f"no finished run of this chapter in the store {str(self.store.root)!r}: set the notebook "
                f"parameter compute_missing=True, or run `glitchlib grid --profile {self.profile} "
                f"--store {self.store.root}` first")
        return self.done[0]

    def table(self, name: str) -> pd.DataFrame:
        """Another tidy table of the store for the chapter's cells: ``"timings"``, ``"histories"``, ...

        ``store.load_<name>()`` restricted to the finished runs of ``cells``.
        Raises ``ValueError`` when the store has no such table.
        """
        loader = getattr(self.store, f"load_{name}", None) if isinstance(name, str) else None
        if loader is None:
            raise ValueError(f"name={name!r}: the store has no table of that name; "
                             "use 'runs', 'metrics', 'timings' or 'histories'")
        return select_keys(loader(), self.cells)


def chapter(profile: str | Path, *, results_dir=None, cells: Sequence | None = None,
            glitch: str | Sequence[str] | None = None,
            also: Sequence = (), compute: bool = True, progress: bool = True) -> Chapter:
    """The runs a chapter shows: the profile's (or ``cells``), computed when missing, with status and provenance.

    Parameters
    ----------
    profile : str or path
        A built-in profile (``"embedded"``, ``"paper"``, ``"tiny"``) or a
        profile YAML file (:func:`glitchlib.profiles.profile_settings`).
    results_dir : glitchlib.store.Store, path or None
        The results store (None: ``results/``).
    cells : sequence of ExperimentSettings, optional
        The chapter's cells, e.g. ``glitchlib.studies.ratio_ablation(...)`` of
        the profile's; default: every cell of the profile.
    glitch : str or sequence of str, optional
        Keep the cells of this glitch (one of
        :data:`glitchlib.settings.GLITCHES`); when there are none, the cells
        with their glitch replaced by it (one per dataset x model x ratio x
        seed; cells that cannot take it are left out). Several glitches: the
        cells of each, one glitch after the other.
    also : sequence of ExperimentSettings
        Further cells to make sure exist (e.g. the clean twins a gallery
        shows), left out of ``runs`` and ``metrics``.
    compute : bool
        Compute the missing runs now (:func:`glitchlib.grid.ensure_results`,
        one run after another with a progress bar); with False, only report
        them. The notebook spellings ``"true"``/``"false"`` are read by value.
    progress : bool
        Show the progress bar.

    Returns
    -------
    Chapter
        The cells, the store, their status and its summary, the finished runs'
        ``runs`` and ``metrics`` tables and their provenance (Markdown).

    Raises
    ------
    ValueError
        Unknown ``profile`` or ``glitch``; ``compute`` or ``progress`` not a
        boolean.
    RuntimeError
        A run failed while computing (the message names it and its error).

    Examples
    --------
    >>> ch = chapter("embedded", results_dir="results", glitch="class-based")  # doctest: +SKIP
    >>> ch.summary, ch.metrics, Markdown(ch.provenance)  # doctest: +SKIP
    """
    from ..store import as_store

    glitches = [glitch] if glitch is None or isinstance(glitch, str) else list(glitch)
    glitches = [_validation.as_choice(g, "glitch", GLITCHES, optional=len(glitches) == 1) for g in glitches]
    settings = profile_settings(profile)
    chosen = list(settings if cells is None else cells)
    if glitches != [None]:
        chosen = [s for g in glitches for s in _with_glitch(chosen, g)]
    store = as_store(results_dir)
    also = [s for s in also if s.key() not in {c.key() for c in chosen}]
    status = ensure_results(chosen + also, store, compute=compute, progress=progress)
    runs = select_keys(store.load_runs(), chosen)
    return Chapter(
        profile=str(profile),
        settings=settings,
        cells=chosen,
        store=store,
        status=status,
        summary=_status_summary(status),
        runs=runs,
        metrics=select_keys(store.load_metrics(), chosen),
        provenance=_provenance_markdown(runs, str(profile)),
    )
