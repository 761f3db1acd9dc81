"""One experiment, one call: from :class:`~glitchlib.settings.ExperimentSettings` to stored results.

:func:`run` performs the stages below in order, each recorded in the entry's stage
log with its time and its files, each output written atomically to the results
store (:mod:`glitchlib.store`). A run killed at any point resumes after its last
finished stage; a finished run is read back, never recomputed.

================ ================================================================
stage            what it computes (and keeps in the entry)
================ ================================================================
data             loads the dataset (embedded or official files) and, for tiny runs,
                 a seeded stratified sub-sample (``data.json``, ``data.npz``)
inject           the glitches, seeded with the run's seed, and the validation
                 label noise of ``test_ratio`` (``glitch.npz``)
features         the frozen backbone's features of the clean training inputs, of
                 the validation inputs, of the appended out-of-distribution
                 images and of the corrupted images, in the store's shared
                 content-keyed cache
                 (``features.json``); the dirty training set's features are put
                 together from them, never recomputed
training         SGD on the features, one checkpoint per epoch (``checkpoints/``,
                 ``history.csv``, ``training.json`` with the accuracies and the
                 average loss per kind of sample, ``predictions.npz`` with the
                 final model's prediction and loss per training sample)
influence        TracIn self-influence and train-to-validation matrix
                 (``matrices/self_influence.pt``, ``matrices/influence.pt``)
counterfactuals  the labels ``c*`` (NIL-opt) and ``b`` (second best) and the two
                 counterfactual matrices at the last checkpoint
signals          every signal of SPEC.md section 4 per training sample, and the
                 dedicated detectors of :mod:`glitchlib.peers` beside them
                 (``scores.csv.gz``)
metrics          F1, AP and AUROC per signal and detector against the glitch
                 mask, repair accuracy of CNCI's and cleanlab's suggestions,
                 characterisation accuracy (``metrics.csv``, ``summary.json``)
================ ================================================================

``record.json``, written last, marks the entry complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from ._pipeline import (
    _CHECKPOINT_DIR,
    _INFLUENCE,
    _INFLUENCE_CNCI,
    _INFLUENCE_PCID,
    _SELF_INFLUENCE,
    _SUMMARY_JSON,
    _PREDICTIONS_NPZ,
    SAMPLE_KINDS,
    _Pipeline,
    _train_dict,
    outdated_stage,
)
from . import _validation, profiles
from .settings import ExperimentSettings, resolve_training_settings
from .store import (
    ENVIRONMENT_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    SCORES_FILE,
    SETTINGS_FILE,
    STAGES_FILE,
    Entry,
    IncompatibleEntry,
    Store,
    as_store,
)

__all__ = [
    "RunResult",
    "TrainingSet",
    "STAGES",
    "run",
    "load_result",
    "load_training_set",
    "recompute_peers",
    "load_predictions",
    "environment",
]

log = logging.getLogger(__name__)

#: Stages of :func:`run`, in order (names used by the stage log and the timings table).
STAGES = ("data", "inject", "features", "training", "influence", "counterfactuals", "signals", "metrics")


# ----------------------------------------------------------------------- results
@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns: the summary of one finished experiment.

    Attributes
    ----------
    key : str
        The entry's key (:meth:`~glitchlib.settings.ExperimentSettings.key`).
    settings : ExperimentSettings
        The settings the entry was computed with.
    path : Path
        The entry's directory in the store.
    summary : dict
        Sizes and accuracies: ``n_train`` (training samples, appended anomalies
        included), ``n_test``, ``n_glitches``, ``n_mislabeled``, ``n_anomalies``, ``val_acc``,
        ``repair_acc`` (CNCI's suggestion ``c*`` on the mislabeled samples),
        ``repair_acc_cleanlab`` (cleanlab's suggestion on the same samples),
        ``char_acc_mislabeled``, ``char_acc_anomaly``, ``char_acc`` (mixed only:
        among the top-k of CFRank, the share given the right kind),
        ``train_acc_<kind>`` and ``train_loss_<kind>`` for the kinds ``clean``,
        ``mislabeled``, ``anomaly``, ``corrupted`` (the final model's accuracy
        and average cross-entropy against the labels *given* to training; None
        without such samples), ``n_corrupted``, ``n_test_noisy`` (validation
        labels changed by ``test_ratio``),
        ``data_source``, ``weights_id``, ``seconds_<detector>`` (seconds each
        detector of :data:`glitchlib.peers.PEERS` took); ``None`` where undefined.
    metrics : pandas.DataFrame
        One row per signal and dedicated detector: ``signal``, ``f1``, ``ap``, ``auroc``.
    timings : dict[str, float]
        Seconds per stage, as measured when the stage was computed.
    history : pandas.DataFrame
        ``epoch``, ``train_loss``, ``train_acc``, ``val_acc``.
    environment : dict
        Package versions, device, machine, git commit of the run that finished it.
    computed : tuple of str
        Stages computed by this call (empty when the entry was already complete).
    store : Store
        The store holding the entry.
    """

    key: str
    settings: ExperimentSettings
    path: Path
    summary: dict[str, Any]
    metrics: pd.DataFrame
    timings: dict[str, float]
    history: pd.DataFrame
    environment: dict[str, Any]
    computed: tuple[str, ...]
    store: Store

    def scores(self) -> pd.DataFrame:
        """Per training sample: labels, kind of sample, suggested labels, every signal and detector."""
        return self.store.load_scores(self.key)

    def matrix(self, name: str) -> torch.Tensor:
        """A stored matrix: ``influence``, ``self_influence``, ``influence_cnci``, ``influence_pcid``.

        The file is checked against its recorded sha256 first; a damaged one raises
        :class:`glitchlib.store.IncompatibleEntry` (``run`` recomputes it).
        """
        names = {"influence": _INFLUENCE, "self_influence": _SELF_INFLUENCE,
                 "influence_cnci": _INFLUENCE_CNCI, "influence_pcid": _INFLUENCE_PCID}
        if name not in names:
            raise ValueError(f"name={name!r} is not a stored matrix; choose from {', '.join(names)}")
        self.store.checked_file(self.key, names[name])  # matches its recorded sha256, or raise
        return self.store.entry(self.key).load_tensor(names[name])


class TrainingSet(NamedTuple):
    """The dirty training set of a run and its validation set, as the run used them."""

    x: torch.Tensor  #: inputs, anomalies appended after the originals (n x C x H x W)
    y: np.ndarray  #: labels given to training (int64)
    y_true: np.ndarray  #: true labels (anomalies: their class in the other dataset)
    mask: np.ndarray  #: True for glitches
    kind: np.ndarray  #: the kind of each sample, one of :data:`glitchlib.settings.SAMPLE_KINDS`
    x_test: torch.Tensor
    y_test: np.ndarray
    class_names: list[str]
    ood_class_names: list[str]


# --------------------------------------------------------------- entry points
def run(
    settings: ExperimentSettings | dict,
    *,
    store: Store | str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Run one experiment end to end, or read it back if the store holds it.

    Invalid settings raise ``ValueError``, and so do settings that cannot run on
    this machine (:class:`glitchlib.profiles.NotRunnable`, whose ``reason`` is the
    one :func:`glitchlib.profiles.runnable` gives), before anything is written to
    the store.

    Parameters
    ----------
    settings : ExperimentSettings or dict
        The experiment; a dict goes through :meth:`~glitchlib.settings.ExperimentSettings.from_dict`.
    store : Store or path, optional
        Results store (default ``results/``).
    progress : bool
        Show progress bars of the heavy stages.

    Returns
    -------
    RunResult

    Raises
    ------
    OSError
        A file cannot be written (full disk, not writable); the message names it.
        The files of the stage that failed are removed and no stage is marked
        finished, so a rerun after freeing space completes the entry.

    Notes
    -----
    A complete entry is read back even when its lock cannot be taken (a
    read-only store). The entry is locked while it runs, so two processes never compute the same
    entry at once (the second waits, then reads the result). A corrupt or
    incompatible entry (unreadable files, other settings, another format, a
    dataset that changed since the entry was started) is reported through
    ``logging`` and recomputed from its first damaged stage on: the files of
    that stage and of every later one are deleted first, so a damaged file is
    never an input of the recomputation (training resumes only from checkpoints
    that match their sha256). Temporary files and ``.trash-*`` folders left by a
    killed run of the entry are removed.
    """
    progress = _validation.as_bool(progress, "progress")
    if isinstance(settings, dict):
        settings = ExperimentSettings.from_dict(settings)
    if not isinstance(settings, ExperimentSettings):
        raise ValueError(f"settings must be an ExperimentSettings or a dict, got {type(settings).__name__}")
    store = as_store(store)
    entry = store.entry(settings.key())
    if not _looks_complete(settings, entry):
        profiles._require_runnable(settings)  # before anything is written
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(entry.lock())
        except OSError:  # a read-only store: a finished entry is still read back
            finished = _read_finished(settings, store, entry)
            if finished is None:
                raise
            return finished
        try:
            return _run_locked(settings, store, entry, progress)
        except IncompatibleEntry as exc:
            log.warning("results entry %s cannot be reused (%s); recomputing it from scratch",
                        entry.key, exc)
            entry.wipe()
            return _run_locked(settings, store, entry, progress)


def load_result(settings: ExperimentSettings | str, *, store: Store | str | Path | None = None) -> RunResult:
    """The stored result of finished settings (or key), without computing anything.

    Raises ``FileNotFoundError`` when the entry is not complete, and
    :class:`glitchlib.store.IncompatibleEntry` when it is corrupt.
    """
    store = as_store(store)
    key = settings.key() if isinstance(settings, ExperimentSettings) else str(settings)
    record = store.load_record(key)
    return _result_from_record(store, store.entry(key), record, computed=())


def recompute_peers(settings: ExperimentSettings, *, store: Store | str | Path | None = None):
    """The dedicated detectors of a run whose training stage finished, computed again from its stored state.

    Runs :func:`glitchlib.peers.compute_peers` on the run's cached features
    and checkpoints exactly as its signals stage does, and returns the
    :class:`glitchlib.peers.PeerReport` (with the cross-validated
    probabilities, which the entry does not keep). Writes nothing.
    """
    store = as_store(store)
    entry = store.entry(settings.key())
    problem = entry.stage_problem("training", deep=False)
    if problem:
        raise FileNotFoundError(f"the training stage of {entry.key} is not available ({problem}); run it first")
    return _Pipeline(settings, store, entry, progress=False)._peers()


def load_training_set(
    settings: ExperimentSettings, *, store: Store | str | Path | None = None
) -> TrainingSet:
    """Inputs, labels and glitch ground truth of a run whose data and inject stages finished.

    Used to look at the samples a signal flags (the book's gallery).
    """
    store = as_store(store)
    entry = store.entry(settings.key())
    for stage in ("data", "inject"):
        problem = entry.stage_problem(stage, deep=True)
        if problem:
            raise FileNotFoundError(
                f"the {stage} stage of {entry.key} is not available ({problem}); run the experiment first"
            )
    pipeline = _Pipeline(settings, store, entry, progress=False)
    glitch = pipeline.glitch
    return TrainingSet(
        x=pipeline.dirty_inputs, y=glitch["y"], y_true=glitch["y_true"], mask=glitch["mask"],
        kind=glitch["kind"], x_test=pipeline.split["x_test"], y_test=pipeline.split["y_test"].numpy(),
        class_names=pipeline.split["class_names"],
        ood_class_names=pipeline.ood_pool.class_names if len(glitch["ood_index"]) else [],
    )


def load_predictions(settings: ExperimentSettings, *, store: Store | str | Path | None = None) -> pd.DataFrame:
    """What the final model of a finished run does with each training sample (SPEC.md section 9.3).

    Returns
    -------
    pandas.DataFrame
        One row per training sample (indices of the original training set,
        appended anomalies last): ``index``, ``y`` (label given to training),
        ``kind``, ``pred`` (the final model's class), ``correct`` (``pred == y``),
        ``loss`` (cross-entropy against ``y``, nats) and ``si`` (self-influence).

    Raises
    ------
    FileNotFoundError
        The run is not finished in ``store``.
    """
    store = as_store(store)
    scores = store.load_scores(settings.key())
    arrays = store.entry(settings.key()).load_arrays(_PREDICTIONS_NPZ)
    out = scores[["index", "y", "kind"]].copy()
    out["pred"] = arrays["train_pred"]
    out["correct"] = out["pred"].to_numpy() == out["y"].to_numpy()
    out["loss"] = arrays["train_loss"]
    out["si"] = scores["si"].to_numpy()
    return out


# ---------------------------------------------------------------- environment
def environment(*, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Package versions, device, processor or GPU name, git commit and platform.

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``) must exist on
    this machine; otherwise ``ValueError`` names it.
    """
    import glitchlib

    device = _validation.as_device(device)
    cpu = _cpu_name()
    gpu = None
    if device.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device)
    versions = {"glitchlib": glitchlib.__version__, "torch": torch.__version__, "numpy": np.__version__,
                "pandas": pd.__version__}
    for name in ("torchvision", "timm", "scipy", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    cores = os.cpu_count()
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cpu": cpu,
        "cpu_count": cores,
        "gpu": gpu,
        "machine": gpu or f"{cpu} ({cores} cores)",
        "git_commit": _git_commit(),
        "torch_threads": torch.get_num_threads(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _git_commit() -> str | None:
    """Commit of the glitchlib source tree when it is a git checkout (``+dirty`` if modified)."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if re.fullmatch(r"[0-9a-f]{40}", commit) else None


# ------------------------------------------------------------------ internals
def _settings_document(settings: ExperimentSettings) -> dict[str, Any]:
    train = resolve_training_settings(settings)
    return {"settings": settings.to_dict(), "training": _train_dict(train)}


def _looks_complete(settings: ExperimentSettings, entry: Entry) -> bool:
    """Whether the entry holds a complete record of these settings (sizes checked, nothing written)."""
    try:
        entry.read_record(settings=settings.keyed_dict(), deep=False)
    except (FileNotFoundError, NotADirectoryError, IncompatibleEntry, ValueError):
        return False
    return True


def _read_finished(settings: ExperimentSettings, store: Store, entry: Entry) -> RunResult | None:
    """The complete, intact entry of ``settings`` read back, or None (nothing is written)."""
    try:
        record = entry.read_record(settings=settings.keyed_dict(), deep=True)
        training = _settings_document(settings)["training"]
    except (FileNotFoundError, NotADirectoryError, IncompatibleEntry, ValueError):
        return None
    if record.get("training") != training:
        return None
    return _result_from_record(store, entry, record, computed=())


def _run_locked(settings: ExperimentSettings, store: Store, entry: Entry, progress: bool) -> RunResult:
    document = _settings_document(settings)
    for path in entry.remove_orphans():
        log.info("results entry %s: removed %s, left by a killed run", entry.key, path.name)
    if entry.exists(SETTINGS_FILE):
        try:
            stored = entry.read_json(SETTINGS_FILE)
        except ValueError as exc:
            raise IncompatibleEntry(f"unreadable {SETTINGS_FILE}: {exc}") from exc
        if not isinstance(stored, dict):
            raise IncompatibleEntry(f"{SETTINGS_FILE} is not a JSON object")
        keyed = settings.keyed_dict()
        if {k: (stored.get("settings") or {}).get(k) for k in keyed} != keyed:
            raise IncompatibleEntry("it holds other settings under the same key")
        if stored.get("training") != document["training"]:
            raise IncompatibleEntry(
                f"its training settings {stored.get('training')} differ from the registered "
                f"ones {document['training']}"
            )
    outdated = outdated_stage(entry)
    if outdated is not None:  # a stage computed by an older glitchlib: that stage on is computed again
        log.info("results entry %s: %s; recomputing from that stage", entry.key, outdated)
        entry.invalidate_record()

    # A complete entry is read back as it is, once its files match their checksums.
    try:
        record = entry.read_record(settings=settings.keyed_dict(), deep=True)
        entry.read_stages(required=True)  # a missing or altered stage log: recomputed
        if f"train_loss_{SAMPLE_KINDS[0]}" not in record.get("summary", {}):
            raise _Outdated("it predates the per-kind training loss; recomputing it")
        return _result_from_record(store, entry, record, computed=())
    except FileNotFoundError:
        pass
    except _Outdated:
        raise
    except IncompatibleEntry as exc:
        log.warning("results entry %s is not complete (%s); resuming it from its stage log", entry.key, exc)
        entry.invalidate_record()

    entry.path.mkdir(parents=True, exist_ok=True)
    entry.write_json(SETTINGS_FILE, document)
    start = _first_stage_to_compute(entry)
    entry.forget_stages(list(STAGES[start:]))
    _discard_unfinished(entry, keep_checkpoints=start >= STAGES.index("training"))
    pipeline = _Pipeline(settings, store, entry, progress)
    computed = []
    for index, stage in enumerate(STAGES):
        if index < start:
            entry.log_reuse(stage)
            continue
        log.info("%s: stage %s", entry.key, stage)
        t0 = time.perf_counter()
        try:
            files, info = getattr(pipeline, f"_stage_{stage}")()
            entry.finish_stage(stage, time.perf_counter() - t0, files, device=settings.device, **info)
        except BaseException:
            # the files of the unfinished stage go (the stage is computed again next time)
            with contextlib.suppress(Exception):
                _discard_unfinished(entry, keep_checkpoints=True)
            raise
        computed.append(stage)

    env = environment(device=settings.device)
    entry.write_json(ENVIRONMENT_FILE, env)
    stages = entry.read_stages()["finished"]
    record = {
        "settings": settings.to_dict(),
        "training": document["training"],
        # times are kept out of summary.json (its bits depend on the results only) and added here
        "summary": {**entry.read_json(_SUMMARY_JSON),
                    **{f"seconds_{name}": seconds
                       for name, seconds in stages["signals"].get("peer_seconds", {}).items()}},
        "timings": {stage: stages[stage]["seconds"] for stage in STAGES},
        "environment": env,
    }
    files = [SETTINGS_FILE, ENVIRONMENT_FILE, METRICS_FILE, SCORES_FILE, HISTORY_FILE, _SUMMARY_JSON]
    files += [name for stage in STAGES for name in stages[stage]["files"] if name not in files]
    entry.write_record(record, files)
    return _result_from_record(store, entry, entry.read_record(), computed=tuple(computed))


def _discard_unfinished(entry: Entry, *, keep_checkpoints: bool) -> None:
    """Delete every file of the entry that no finished stage lists (outputs of unfinished stages).

    Such files are never read: a stage that did not finish is computed again from
    its inputs. Checkpoints of an unfinished training are kept with
    ``keep_checkpoints`` (``train.fit`` resumes from those that match their
    recorded sha256); otherwise they go too.
    """
    keep = {SETTINGS_FILE, STAGES_FILE, *entry.stage_files()}
    for path in sorted(entry.path.rglob("*"), reverse=True):
        name = path.relative_to(entry.path).as_posix()
        if name in keep or (keep_checkpoints and name.split("/", 1)[0] == _CHECKPOINT_DIR):
            continue
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()  # empty folders only
        else:
            path.unlink(missing_ok=True)


class _Outdated(IncompatibleEntry):
    """A complete entry written by an earlier glitchlib that lacks numbers this one keeps."""


def _first_stage_to_compute(entry: Entry) -> int:
    """Index of the first stage that is not finished or whose files cannot be trusted."""
    for index, stage in enumerate(STAGES):
        problem = entry.stage_problem(stage, deep=True) or outdated_stage(entry, stage)
        if problem is None:
            continue
        if problem != "not finished":
            log.warning("results entry %s: finished stage %s cannot be reused (%s); recomputing from it",
                        entry.key, stage, problem)
        return index
    return len(STAGES)


def _result_from_record(store: Store, entry: Entry, record: dict, computed: tuple[str, ...]) -> RunResult:
    return RunResult(
        key=entry.key,
        settings=ExperimentSettings.from_dict(record["settings"]),
        path=entry.path,
        summary=record["summary"],
        metrics=entry.read_frame(METRICS_FILE),
        timings=record["timings"],
        history=entry.read_frame(HISTORY_FILE),
        environment=record["environment"],
        computed=computed,
        store=store,
    )
