"""Run the missing cells of a grid, here or on a Dask cluster; the status of every cell.

One cell is one task. With one job the cells run in this process; otherwise each
cell is a task of ``dask.distributed``: on a ``LocalCluster`` of worker processes
started for the grid (``jobs=N`` or ``cluster="local"``), on a Slurm allocation
(``cluster="slurm"``, ``dask_jobqueue.SLURMCluster``), or on any running
scheduler (``scheduler="tcp://host:8786"``). Workers share nothing with the
parent but the results store on a shared file system. A worker that dies (killed,
out of memory) has its cell rescheduled on another worker, up to the scheduler's
``distributed.scheduler.allowed-failures``; a cell that fails is reported and the
others go on. Workers started for the grid end with it, even when the parent is
killed (each worker process exits when its parent's pipe closes).

Every cell runs with the same number of torch threads (``threads``, default 1)
wherever it runs, so a cell's numbers do not depend on how the grid was launched.
Entries are locked (:func:`glitchlib.store.file_lock`, a POSIX record lock that
works across machines on NFS), so two grids on one store compute every cell once;
backbone features are computed under a lock per (dataset, model, weights), once,
and read from the store's content-keyed cache by every other cell. Every finished
cell is a complete store entry; a grid stopped midway picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
from tqdm.auto import tqdm

from . import _validation
from .settings import ExperimentSettings
from .profiles import runnable
from .store import Store, as_store

__all__ = ["CLUSTERS", "GridOutcome", "ensure_results", "grid_status", "load_cluster_options", "run_grid"]

log = logging.getLogger(__name__)

#: Kinds of Dask cluster :func:`run_grid` can start for a grid.
CLUSTERS = ("local", "slurm")

#: Dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which fixes
#: glibc's mmap threshold, so every large tensor is mapped and unmapped again: the
#: backbone's forward pass ran about 2x slower in such a worker than in a plain
#: process. The workers of the clusters started here keep glibc's defaults.
_WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": None}
_WORKER_ENVIRON_SHELL = "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON='{\"MALLOC_TRIM_THRESHOLD_\": None}'"


@dataclass(frozen=True)
class GridOutcome:
    """What :func:`run_grid` did: keys computed now, already done, not runnable, failed.

    A cell another process finished while this grid waited for it is read back,
    and listed in ``already_done``, not in ``computed``.
    """

    computed: list[str]
    already_done: list[str]
    not_runnable: list[tuple[str, str]]
    failed: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        return not self.failed


def grid_status(settings: list[ExperimentSettings], *, store: Store | str | Path | None = None,
                verify: bool = False) -> pd.DataFrame:
    """One row per cell: its settings, key, ``status`` and ``reason``.

    ``status`` is ``done``, ``partial`` (some stages finished; a rerun resumes),
    ``missing``, ``corrupt`` (it will be recomputed) or ``not runnable`` (the
    reason says which data or weights are absent). A done cell's files match
    their recorded sha256; with ``verify=False`` the bulky matrices and
    checkpoints are checked by size only (they are checked in full when read).
    """
    store = as_store(store)
    rows = []
    from ._pipeline import outdated_stage  # (imports torch)

    for s in settings:
        state = store.state(s.key(), settings=s.keyed_dict(), deep=verify)
        reason = ""
        if state.startswith("corrupt"):
            state, reason = "corrupt", state.split(": ", 1)[-1]
        if state == "done" and outdated_stage(store.entry(s.key())):  # a rerun recomputes the later stages
            state, reason = "partial", outdated_stage(store.entry(s.key()))
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
    scheduler: Any = None,
    cluster: str | None = None,
    workers: int | None = None,
    cluster_options: dict[str, Any] | None = None,
    threads: int = 1,
    progress: bool = True,
    verify: bool = False,
) -> GridOutcome:
    """Run every runnable cell of ``settings`` that the store does not hold yet.

    Parameters
    ----------
    settings : list of ExperimentSettings
        The grid (e.g. :func:`glitchlib.profiles.profile_settings`).
    store : Store or path, optional
        Results store (default ``results/``); on a cluster, a path every worker
        sees (a shared file system).
    jobs : int
        ``1`` runs the cells in this process (unless ``scheduler`` or ``cluster``
        is given); ``N > 1`` is short for ``cluster="local", workers=N`` (with
        ``cluster`` given: for ``workers=N``).
    scheduler : str or distributed.Client, optional
        Address of a running Dask scheduler (``"tcp://10.0.0.5:8786"``) or a
        client connected to one; the cells become tasks of its workers.
    cluster : {"local", "slurm"}, optional
        Start a cluster for this grid and close it at the end: a
        ``distributed.LocalCluster`` of ``workers`` processes, or a
        ``dask_jobqueue.SLURMCluster`` kept at ``workers`` workers (a job that
        ends is replaced by a new one).
    workers : int, optional
        Worker processes (one cell at a time each). Default: ``jobs`` when it
        is above 1, else the CPU count (local) or the processes of one job (Slurm).
    cluster_options : dict, optional
        Keyword arguments of ``LocalCluster`` or ``SLURMCluster`` (see
        :func:`load_cluster_options`), e.g. ``{"memory_limit": "8GB"}`` or
        ``{"cores": 8, "processes": 8, "memory": "32GB", "walltime": "04:00:00"}``.
    threads : int
        Torch threads of every cell, wherever it runs (default 1). Cells with
        the same settings and ``threads`` give the same bits on CPU.
    progress : bool
        Show a progress bar over cells (per-run bars are off in workers).
    verify : bool
        Check the sha256 of every file of the finished cells, matrices and
        checkpoints included, and recompute those that fail.

    Returns
    -------
    GridOutcome
        ``computed`` holds the cells this grid computed; a cell another process
        finished while this grid waited for its lock counts as already done. A
        failed cell (an exception, or workers that kept dying on it) does not stop
        the grid; its error is logged and listed.

    Raises
    ------
    ValueError
        A bad ``jobs``/``workers``/``threads``, an unknown ``cluster``,
        ``scheduler`` together with ``cluster`` or ``jobs > 1``, or a scheduler
        that does not answer.
    ImportError
        ``cluster="slurm"`` without ``dask-jobqueue`` installed.
    """
    for name, value in (("jobs", jobs), ("threads", threads), ("workers", workers)):
        if value is None and name == "workers":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if cluster is not None and cluster not in CLUSTERS:
        raise ValueError(f"cluster={cluster!r} must be one of {', '.join(CLUSTERS)}")
    if scheduler is not None and (cluster is not None or jobs > 1):
        raise ValueError("scheduler= runs the cells on that scheduler's workers; "
                         "leave out cluster= and jobs= (or leave out scheduler=)")
    if scheduler is None and jobs > 1:
        cluster, workers = cluster or "local", workers or jobs
    if workers is not None and cluster is None:
        raise ValueError(f"workers={workers} needs cluster='local' or 'slurm'")
    store = as_store(store)
    status = grid_status(settings, store=store, verify=verify)
    todo = [s for s, st in zip(settings, status["status"]) if st in ("missing", "partial", "corrupt")]
    done = list(status.loc[status["status"] == "done", "key"])
    skipped = [(k, r) for k, st, r in zip(status["key"], status["status"], status["reason"]) if st == "not runnable"]
    for key, reason in skipped:
        log.warning("not runnable here: %s (%s)", key, reason)
    bar = tqdm(total=len(todo), desc="grid", unit="run", disable=not progress)
    todo = _interleave(todo)
    if todo and (scheduler is not None or cluster is not None):
        results = _run_distributed(todo, str(store.root.resolve()), threads, bar, scheduler, cluster, workers,
                                   cluster_options or {})
    else:
        results = _run_here(todo, str(store.root), threads, bar)
    bar.close()
    computed = [key for key, error, fresh in results if not error and fresh]
    done += [key for key, error, fresh in results if not error and not fresh]
    failed = [(key, error) for key, error, _ in results if error]
    for key, error in failed:  # one line each; the traceback with -v (INFO)
        log.error("run %s failed: %s", key, error.strip().splitlines()[-1])
        log.info("traceback of %s:\n%s", key, error)
    return GridOutcome(computed=computed, already_done=done, not_runnable=skipped, failed=failed)


def load_cluster_options(path: str | Path) -> dict[str, Any]:
    """Keyword arguments of a cluster from a YAML mapping (``--cluster-config``).

    For ``cluster="slurm"`` the keys are those of ``dask_jobqueue.SLURMCluster``
    (``cores``, ``processes``, ``memory``, ``walltime``, ``queue``, ``account``,
    ``job_cpu``, ``job_extra_directives``, ``worker_extra_args``, ...); for
    ``cluster="local"`` those of ``distributed.LocalCluster`` (``memory_limit``,
    ``dashboard_address``, ...).

    Raises
    ------
    ValueError
        The file is missing, not valid YAML, or not a mapping with string keys.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cluster options file {str(path)!r} does not exist")
    try:
        options = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"cluster options file {str(path)!r} is not valid YAML: {exc}") from exc
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"cluster options file {str(path)!r} must hold a mapping of option names to values")
    return options


def _run_here(todo: list[ExperimentSettings], root: str, threads: int, bar) -> list[tuple[str, str | None, bool]]:
    results = []
    for s in todo:
        bar.set_postfix_str(s.label())
        results.append(_run_cell(s.to_dict(), root, threads, worker=False)[:3])
        bar.update()
    return results


def _run_distributed(todo, root, threads, bar, scheduler, cluster, workers, options):
    """Submit one task per cell; collect ``(key, error, computed)`` as the futures finish."""
    from distributed import as_completed

    results = []
    with _dask_client(scheduler, cluster, workers, options) as client:
        futures = {
            client.submit(_run_cell, s.to_dict(), root, threads, key=f"glitchlib-cell-{s.key()}"): s
            for s in todo
        }
        for future in as_completed(futures):
            s = futures[future]
            try:
                key, error, fresh, _ = future.result()
            except Exception as exc:  # KilledWorker (it kept dying on this cell), lost scheduler, ...
                key, error, fresh = s.key(), f"{type(exc).__name__}: {_one_line(exc)}", False
            results.append((key, error, fresh))
            bar.set_postfix_str(s.label())
            bar.update()
    return results


@contextlib.contextmanager
def _dask_client(scheduler, cluster, workers, options) -> Iterator[Any]:
    """A ``distributed.Client`` for the grid; a cluster started here is closed on the way out."""
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"scheduler={scheduler!r}: no Dask scheduler answers there ({_one_line(exc)}); "
                             "start one with `dask scheduler` and `dask worker ADDRESS`, or check "
                             "the address") from None
        with client:
            yield client
        return
    with _quiet_dask(), _start_cluster(cluster, workers, options) as started, Client(started) as client:
        yield client


@contextlib.contextmanager
def _start_cluster(cluster: str, workers: int | None, options: dict[str, Any]) -> Iterator[Any]:
    import dask

    if cluster == "local":
        from distributed import LocalCluster

        defaults = {"n_workers": workers or os.cpu_count() or 1, "threads_per_worker": 1, "processes": True,
                    "dashboard_address": ":0",
                    "silence_logs": logging.INFO if log.isEnabledFor(logging.INFO) else logging.CRITICAL}
        environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **_WORKER_ENVIRON}
        # the nannies set the workers' variables in this process too: put them back afterwards
        before = {name: os.environ.get(name) for name in [*environ, "PYTHONHASHSEED"]}
        try:
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
                    _construct(LocalCluster, {**defaults, **options}) as started:
                yield started
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ImportError("cluster='slurm' needs dask-jobqueue: pip install dask-jobqueue") from exc
    prologue = [_WORKER_ENVIRON_SHELL, *options.get("job_script_prologue", [])]
    with _construct(SLURMCluster, {**options, "job_script_prologue": prologue}) as started:
        # adaptive at a fixed size: a job that ends (time limit, node failure) is replaced
        if workers:
            started.adapt(minimum=workers, maximum=workers)
        else:
            started.adapt(minimum_jobs=1, maximum_jobs=1)
        log.info("Slurm job script:\n%s", started.job_script())
        yield started


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's own messages only with ``-v`` (glitchlib logging at INFO); cells report their errors."""
    logger = logging.getLogger("distributed")
    before = logger.level
    if not log.isEnabledFor(logging.INFO):
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


def _interleave(todo: list[ExperimentSettings]) -> list[ExperimentSettings]:
    """Cells in turn from each (dataset, model), so the first workers compute different feature sets."""
    groups: dict[tuple, list[ExperimentSettings]] = {}
    for s in todo:
        groups.setdefault((s.dataset, s.model, s.pretrained, s.weights), []).append(s)
    columns = list(groups.values())
    return [column[i] for i in range(max(map(len, columns), default=0)) for column in columns if i < len(column)]


def _construct(cls, options: dict[str, Any]):
    if cls.__name__ == "LocalCluster":  # LocalCluster hands unknown keywords to the worker processes
        import inspect

        from distributed import Nanny, Worker

        known = {name for c in (cls, Nanny, Worker) for name in inspect.signature(c).parameters}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"cluster_options: LocalCluster and its workers take no option {', '.join(unknown)}")
    try:
        return cls(**options)
    except TypeError as exc:  # an option the cluster class does not take
        raise ValueError(f"cluster_options: {cls.__name__} {exc}") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


@contextlib.contextmanager
def _cell_threads(threads: int) -> Iterator[None]:
    """Run the body with ``threads`` torch threads and as many BLAS/OpenMP threads, then restore both.

    This is how every grid cell runs, wherever it runs: NumPy's, SciPy's and
    scikit-learn's BLAS (the detectors' covariances and distances) get the same
    limit as torch through threadpoolctl. Their libraries are loaded first,
    since a limit covers only the libraries already loaded. With the same
    ``threads``, a cell gives the same bits serially, on a Dask worker or after
    a resume.

    Raises
    ------
    ValueError
        ``threads`` is not a positive integer.
    """
    import scipy.linalg  # noqa: F401
    import sklearn.covariance  # noqa: F401
    import sklearn.neighbors  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be a positive integer")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def _run_cell(settings: dict, root: str, threads: int, worker: bool = True) -> tuple[str, str | None, bool, int]:
    """Body of one task: run one cell under :func:`_cell_threads` (``threads`` threads everywhere).

    Returns ``(key, None or traceback text, computed, pid)``: ``computed`` is
    False when the entry was read back (another process finished it first).
    """
    from . import experiments

    if worker:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    s = ExperimentSettings.from_dict(settings)
    try:
        with _cell_threads(threads):
            result = experiments.run(s, store=root, progress=False)
        return s.key(), None, bool(result.computed), os.getpid()
    except Exception:  # reported by the grid; the other cells go on
        return s.key(), traceback.format_exc(), False, os.getpid()


def ensure_results(settings: Sequence, store, *, compute: bool = True, progress: bool = True) -> pd.DataFrame:
    """Compute the missing, runnable runs of ``settings`` into ``store``; return their status table.

    Parameters
    ----------
    settings : sequence of ExperimentSettings
        The runs a chapter needs.
    store : glitchlib.store.Store or path
        The results store; finished runs are read, never recomputed.
    compute : bool
        Run the missing (or partial) runs with :func:`run_grid`,
        with a progress bar over runs. With False, only report them. A notebook
        parameter: the strings ``"true"``/``"false"`` (``"yes"``, ``"no"``, ``"1"``,
        ``"0"``) that papermill may pass are read by value, any other string
        raises ``ValueError``.
    progress : bool
        Show the progress bar.

    Returns
    -------
    pandas.DataFrame
        :func:`grid_status` after computing: one row per
        setting with ``status`` "done", "missing", "partial", "corrupt" or
        "not runnable" and the ``reason``.

    Raises
    ------
    ValueError
        ``compute`` or ``progress`` is not a boolean (or a spelling of one).
    RuntimeError
        When a run fails; the message names it and ends with its error.
    """
    compute = _validation.as_bool(compute, "compute", text=True)
    progress = _validation.as_bool(progress, "progress", text=True)
    settings = list(settings)
    status = grid_status(settings, store=store)
    if compute and status["status"].isin(["missing", "partial", "corrupt"]).any():
        outcome = run_grid(settings, store=store, jobs=1, progress=progress)
        if outcome.failed:
            lines = [f"{key}: {error.strip().splitlines()[-1]}" for key, error in outcome.failed]
            raise RuntimeError(f"{len(lines)} run(s) failed:\n" + "\n".join(lines))
        status = grid_status(settings, store=store)
    return status
