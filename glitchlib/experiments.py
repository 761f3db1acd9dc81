"""One experiment, one call: from :class:`ExperimentSettings` to stored results.

:func:`run` performs the stages below in order, each recorded in the entry's stage
log with its time and its files, each output written atomically to the results
store (:mod:`glitchlib.store`). A run killed at any point resumes after its last
finished stage; a finished run is read back, never recomputed.

================ ================================================================
stage            what it computes (and keeps in the entry)
================ ================================================================
data             loads the dataset (embedded or official files) and, for tiny runs,
                 a seeded stratified sub-sample (``data.json``, ``data.npz``)
inject           the glitches, seeded with the run's seed (``glitch.npz``)
features         the frozen backbone's features of the clean training inputs, of
                 the validation inputs and of the appended out-of-distribution
                 images, in the store's shared content-keyed cache
                 (``features.json``); the dirty training set's features are put
                 together from them, never recomputed
training         SGD on the features, one checkpoint per epoch (``checkpoints/``,
                 ``history.csv``, ``training.json`` with the accuracies)
influence        TracIn self-influence and train-to-validation matrix
                 (``matrices/self_influence.pt``, ``matrices/influence.pt``)
counterfactuals  the labels ``c*`` (NIL-opt) and ``b`` (second best) and the two
                 counterfactual matrices at the last checkpoint
signals          every signal of SPEC.md section 4 per training sample
                 (``scores.csv.gz``)
metrics          F1, AP and AUROC per signal against the glitch mask, repair and
                 characterisation accuracy (``metrics.csv``, ``summary.json``)
================ ================================================================

``record.json``, written last, marks the entry complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from .config import ExperimentSettings
from .profiles import profile_settings, runnable
from .store import (
    ENVIRONMENT_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    SCORES_FILE,
    SETTINGS_FILE,
    Entry,
    IncompatibleEntry,
    Store,
    as_store,
    file_lock,
)

__all__ = [
    "ExperimentSettings",
    "RunResult",
    "TrainingSet",
    "STAGES",
    "run",
    "load_result",
    "load_training_set",
    "environment",
    "profile_settings",
    "runnable",
    "resolve_training_settings",
]

log = logging.getLogger(__name__)

#: Stages of :func:`run`, in order (names used by the stage log and the timings table).
STAGES = ("data", "inject", "features", "training", "influence", "counterfactuals", "signals", "metrics")

_DATA_JSON, _DATA_NPZ = "data.json", "data.npz"
_GLITCH_NPZ, _GLITCH_JSON = "glitch.npz", "glitch.json"
_FEATURES_JSON = "features.json"
_CHECKPOINT_DIR, _TRAINING_JSON = "checkpoints", "training.json"
_SELF_INFLUENCE, _INFLUENCE = "matrices/self_influence.pt", "matrices/influence.pt"
_INFLUENCE_CNCI, _INFLUENCE_PCID = "matrices/influence_cnci.pt", "matrices/influence_pcid.pt"
_COUNTERFACTUAL_NPZ = "counterfactual.npz"
_SUMMARY_JSON = "summary.json"


# ----------------------------------------------------------------------- results
@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns: the summary of one finished experiment.

    Attributes
    ----------
    key : str
        The entry's key (:meth:`ExperimentSettings.key`).
    settings : ExperimentSettings
        The settings the entry was computed with.
    path : Path
        The entry's directory in the store.
    summary : dict
        Sizes and accuracies: ``n_train`` (training samples, appended anomalies
        included), ``n_test``, ``n_glitches``, ``n_mislabeled``, ``n_anomalies``, ``val_acc``,
        ``repair_acc`` (CNCI's suggestion ``c*`` on the mislabeled samples),
        ``char_acc_mislabeled``, ``char_acc_anomaly``, ``char_acc`` (mixed only:
        among the top-k of CFRank, the share given the right kind),
        ``train_acc_clean``, ``train_acc_mislabeled``, ``train_acc_anomaly`` (the
        final model's accuracy against the labels *given* to training),
        ``data_source``, ``weights_id``; ``None`` where undefined.
    metrics : pandas.DataFrame
        One row per signal: ``signal``, ``f1``, ``ap``, ``auroc``.
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
        """Per training sample: labels, glitch kind, suggestions and every signal."""
        return self.store.load_scores(self.key)

    def matrix(self, name: str = "influence") -> torch.Tensor:
        """A stored matrix: ``influence``, ``self_influence``, ``influence_cnci``, ``influence_pcid``."""
        names = {"influence": _INFLUENCE, "self_influence": _SELF_INFLUENCE,
                 "influence_cnci": _INFLUENCE_CNCI, "influence_pcid": _INFLUENCE_PCID}
        if name not in names:
            raise ValueError(f"name={name!r} is not a stored matrix; choose from {', '.join(names)}")
        return self.store.entry(self.key).load_tensor(names[name])


class TrainingSet(NamedTuple):
    """The dirty training set of a run and its validation set, as the run used them."""

    x: torch.Tensor  #: inputs, anomalies appended after the originals (n x C x H x W)
    y: np.ndarray  #: labels given to training (int64)
    y_true: np.ndarray  #: true labels (anomalies: their class in the other dataset)
    mask: np.ndarray  #: True for glitches
    kind: np.ndarray  #: "clean" | "mislabeled" | "anomaly"
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

    Parameters
    ----------
    settings : ExperimentSettings or dict
        The experiment; a dict goes through :meth:`ExperimentSettings.from_dict`.
    store : Store or path, optional
        Results store (default ``results/``).
    progress : bool
        Show progress bars of the heavy stages.

    Returns
    -------
    RunResult

    Notes
    -----
    The entry is locked while it runs, so two processes never compute the same
    entry at once (the second waits, then reads the result). A corrupt or
    incompatible entry (unreadable files, other settings, another format, a
    dataset that changed since the entry was started) is reported through
    ``logging`` and recomputed.
    """
    if isinstance(settings, dict):
        settings = ExperimentSettings.from_dict(settings)
    if not isinstance(settings, ExperimentSettings):
        raise ValueError(f"settings must be an ExperimentSettings or a dict, got {type(settings).__name__}")
    store = as_store(store)
    entry = store.entry(settings.key())
    with entry.lock():
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


def load_training_set(
    settings: ExperimentSettings, *, store: Store | str | Path | None = None
) -> TrainingSet:
    """Inputs, labels and glitch ground truth of a run whose data and inject stages finished.

    Used to look at the samples a signal flags (the book's gallery).
    """
    store = as_store(store)
    entry = store.entry(settings.key())
    for stage in ("data", "inject"):
        problem = entry.stage_problem(stage, deep=False)
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


def resolve_training_settings(settings: ExperimentSettings):
    """The ``TrainSettings`` of a run: the registered ones with ``lr``/``batch_size``/``epochs`` overrides."""
    from . import settings as settings_module

    overrides = {k: getattr(settings, k) for k in ("lr", "batch_size", "epochs") if getattr(settings, k) is not None}
    if len(overrides) == 3:  # fully given: no registry entry needed (e.g. timm models)
        return settings_module.TrainSettings(**overrides, source="user")
    base = settings_module.training_settings(settings.dataset, settings.model, pretrained=settings.pretrained)
    return dataclasses.replace(base, **overrides, source="user") if overrides else base


# ---------------------------------------------------------------- environment
def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Package versions, device, processor or GPU name, git commit and platform."""
    import glitchlib

    device = torch.device(device)
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


def _train_dict(train) -> dict[str, Any]:
    values = train.to_dict()
    return {k: values[k] for k in ("lr", "batch_size", "epochs")}


def _run_locked(settings: ExperimentSettings, store: Store, entry: Entry, progress: bool) -> RunResult:
    document = _settings_document(settings)
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
    # A complete entry is read back as it is, once its files match their checksums.
    try:
        record = entry.read_record(settings=settings.keyed_dict(), deep=True)
        return _result_from_record(store, entry, record, computed=())
    except FileNotFoundError:
        pass
    except IncompatibleEntry as exc:
        log.warning("results entry %s is not complete (%s); resuming it from its stage log", entry.key, exc)
        entry.invalidate_record()

    entry.path.mkdir(parents=True, exist_ok=True)
    entry.write_json(SETTINGS_FILE, document)
    start = _first_stage_to_compute(entry)
    entry.forget_stages(list(STAGES[start:]))
    if start < STAGES.index("training"):
        # checkpoints of a killed training resume it, unless its inputs are recomputed
        shutil.rmtree(entry.file(_CHECKPOINT_DIR), ignore_errors=True)
    pipeline = _Pipeline(settings, store, entry, progress)
    computed = []
    for index, stage in enumerate(STAGES):
        if index < start:
            entry.log_reuse(stage)
            continue
        log.info("%s: stage %s", entry.key, stage)
        t0 = time.perf_counter()
        files, info = getattr(pipeline, f"_stage_{stage}")()
        entry.finish_stage(stage, time.perf_counter() - t0, files, device=settings.device, **info)
        computed.append(stage)

    env = environment(settings.device)
    entry.write_json(ENVIRONMENT_FILE, env)
    stages = entry.read_stages()["finished"]
    record = {
        "settings": settings.to_dict(),
        "training": document["training"],
        "summary": entry.read_json(_SUMMARY_JSON),
        "timings": {stage: stages[stage]["seconds"] for stage in STAGES},
        "environment": env,
    }
    files = [SETTINGS_FILE, ENVIRONMENT_FILE, METRICS_FILE, SCORES_FILE, HISTORY_FILE, _SUMMARY_JSON]
    files += [name for stage in STAGES for name in stages[stage]["files"] if name not in files]
    entry.write_record(record, files)
    return _result_from_record(store, entry, entry.read_record(), computed=tuple(computed))


def _first_stage_to_compute(entry: Entry) -> int:
    """Index of the first stage that is not finished or whose files cannot be trusted."""
    for index, stage in enumerate(STAGES):
        problem = entry.stage_problem(stage, deep=True)
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


def _fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        array = t.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _subsample(y: torch.Tensor, n: int | None, seed: int, name: str) -> np.ndarray:
    """Indices of a seeded stratified sub-sample of ``n`` samples (all, in order, when ``n`` is None)."""
    from .data import stratified_indices

    total = len(y)
    if n is None or n == total:
        return np.arange(total, dtype=np.int64)
    if n > total:
        raise ValueError(f"{name}={n} exceeds the {total} samples loaded; use at most {total} or None")
    return stratified_indices(y.numpy(), n / total, seed)


def _none_if_nan(value) -> Any:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@torch.no_grad()
def _predict(module: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    module = module.to(device).eval()
    out = [module(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def _accuracy(pred: torch.Tensor, y: np.ndarray, select: np.ndarray) -> float | None:
    if not select.any():
        return None
    return float((pred.numpy()[select] == y[select]).mean())


class _Pipeline:
    """The stages of one run and the artefacts they share.

    Each artefact is a cached property that reads the output of its (finished)
    stage from the entry, so a resumed run loads exactly what it needs. A stage
    method computes, saves and returns ``(files, info)`` for the stage log, and
    seeds the cached properties with what it computed.
    """

    def __init__(self, settings: ExperimentSettings, store: Store, entry: Entry, progress: bool):
        self.s = settings
        self.store = store
        self.entry = entry
        self.progress = progress
        self.device = torch.device(settings.device)

    def _set(self, **values: Any) -> None:
        self.__dict__.update(values)

    # ------------------------------------------------------------ data
    @cached_property
    def loaded(self):
        from . import data

        return data.load(self.s.dataset, seed=self.s.seed, subset=self.s.subset, root=self.s.data_root)

    @cached_property
    def ood_pool(self):
        from . import data

        return data.load_ood(self.s.dataset, seed=self.s.seed, root=self.s.data_root)

    @cached_property
    def split(self) -> dict[str, Any]:
        info = self.entry.read_json(_DATA_JSON)
        index = self.entry.load_arrays(_DATA_NPZ)
        split = self._take(index["train_index"], index["test_index"])
        if _fingerprint(split["x_train"], split["y_train"], split["x_test"], split["y_test"]) != info["fingerprint"]:
            raise IncompatibleEntry("the dataset differs from the one the entry was started with")
        return split

    def _take(self, train_index: np.ndarray, test_index: np.ndarray) -> dict[str, Any]:
        d = self.loaded
        return {
            "x_train": d.x_train[train_index], "y_train": d.y_train[train_index],
            "x_test": d.x_test[test_index], "y_test": d.y_test[test_index],
            "n_classes": d.n_classes, "class_names": list(d.class_names), "source": d.source,
        }

    def _stage_data(self):
        d = self.loaded
        train_index = _subsample(d.y_train, self.s.n_train, self.s.seed, "n_train")
        test_index = _subsample(d.y_test, self.s.n_test, self.s.seed, "n_test")
        split = self._take(train_index, test_index)
        self._set(split=split)
        self.entry.save_arrays(_DATA_NPZ, train_index=train_index, test_index=test_index)
        self.entry.write_json(_DATA_JSON, {
            "source": d.source, "n_classes": d.n_classes, "class_names": split["class_names"],
            "n_train": len(train_index), "n_test": len(test_index), "n_loaded_train": len(d.y_train),
            "n_loaded_test": len(d.y_test),
            "fingerprint": _fingerprint(split["x_train"], split["y_train"], split["x_test"], split["y_test"]),
        })
        return [_DATA_JSON, _DATA_NPZ], {}

    # ---------------------------------------------------------- inject
    @cached_property
    def glitch(self) -> dict[str, Any]:
        arrays = self.entry.load_arrays(_GLITCH_NPZ)
        arrays["kind"] = arrays["kind"].astype(str)
        return arrays

    @cached_property
    def dirty_inputs(self) -> torch.Tensor:
        ood_index = self.glitch["ood_index"]
        x = self.split["x_train"]
        if len(ood_index):
            x = torch.cat([x, self.ood_pool.x[torch.from_numpy(ood_index)]])
        return x

    def _stage_inject(self):
        from . import glitches

        s, split = self.s, self.split
        pool = self.ood_pool if s.glitch in ("anomalies", "mixed") else None
        g = glitches.inject(
            s.glitch, split["y_train"].numpy(), s.ratio, s.seed, x=split["x_train"],
            x_ood=None if pool is None else pool.x, y_ood=None if pool is None else pool.y.numpy(),
            n_classes=split["n_classes"], n_contaminated=s.n_contaminated,
        )
        arrays = {
            "y": np.asarray(g.y, dtype=np.int64), "y_true": np.asarray(g.y_true, dtype=np.int64),
            "mask": np.asarray(g.mask, dtype=bool), "kind": np.asarray(g.kind).astype(str),
            "ood_index": np.asarray(g.ood_index, dtype=np.int64),
        }
        self._set(glitch=arrays)
        targets = g.target_classes
        self.entry.save_arrays(_GLITCH_NPZ, **arrays)
        self.entry.write_json(_GLITCH_JSON, {
            "glitch": s.glitch, "n_glitches": int(arrays["mask"].sum()),
            "n_mislabeled": int((arrays["kind"] == "mislabeled").sum()),
            "n_anomalies": int((arrays["kind"] == "anomaly").sum()),
            "target_classes": {str(k): int(v) for k, v in targets.items()} if targets else None,
            "ood_source": self.ood_pool.source_name if len(arrays["ood_index"]) else None,
        })
        return [_GLITCH_NPZ, _GLITCH_JSON], {}

    # -------------------------------------------------------- features
    @cached_property
    def model(self):
        from . import models

        return models.create(self.s.model, self.split["n_classes"], pretrained=self.s.pretrained,
                             weights=self.s.weights, seed=self.s.seed)

    @cached_property
    def features(self) -> dict[str, torch.Tensor]:
        """Suffix inputs: ``train`` (dirty training set, anomalies appended) and ``test``."""
        from . import features

        model, cache = self.model, self.store.features_dir
        name = f"features-{self.s.dataset}-{model.name}-{model.weights_id}"
        lock = self.store.lock_path(re.sub(r"[^A-Za-z0-9_.-]+", "_", name))

        def compute(x):
            return features.compute_features(model, x, device=self.device, cache_dir=cache, progress=self.progress)

        with file_lock(lock):  # one process computes a feature set, the others then read it
            train, test = compute(self.split["x_train"]), compute(self.split["x_test"])
            ood_index = self.glitch["ood_index"]
            if len(ood_index):
                train = torch.cat([train, compute(self.ood_pool.x[torch.from_numpy(ood_index)])])
        return {"train": train, "test": test}

    def _stage_features(self):
        f = self.features
        self.entry.write_json(_FEATURES_JSON, {
            "model": self.model.name, "weights_id": self.model.weights_id, "input_size": self.model.input_size,
            "train_shape": list(f["train"].shape), "test_shape": list(f["test"].shape),
            "cache_dir": str(self.store.features_dir),
        })
        return [_FEATURES_JSON], {}

    # -------------------------------------------------------- training
    @cached_property
    def train_settings(self):
        return resolve_training_settings(self.s)

    @cached_property
    def checkpoints(self) -> list:
        from . import train

        checkpoints = train.load_checkpoints(self.entry.file(_CHECKPOINT_DIR))
        return checkpoints[: self.train_settings.epochs]

    @cached_property
    def labels(self) -> dict[str, torch.Tensor]:
        return {"train": torch.from_numpy(self.glitch["y"]), "test": self.split["y_test"]}

    def _stage_training(self):
        from . import train

        f, y = self.features, self.labels
        result = train.fit(self.model.suffix, f["train"], y["train"], f["test"], y["test"], self.train_settings,
                           seed=self.s.seed, device=self.device, checkpoint_dir=self.entry.file(_CHECKPOINT_DIR),
                           progress=self.progress)
        self._set(checkpoints=list(result.checkpoints))
        final = result.final_model
        kind, given = self.glitch["kind"], self.glitch["y"]
        train_pred = _predict(final, f["train"], self.device)
        test_pred = _predict(final, f["test"], self.device)
        self.entry.write_frame(HISTORY_FILE, result.history)
        self.entry.write_json(_TRAINING_JSON, {
            "training": _train_dict(self.train_settings),
            "val_acc": float((test_pred == y["test"]).double().mean()),
            # accuracy against the labels given to training (SPEC.md section 6's claim)
            "train_acc": float((train_pred.numpy() == given).mean()),
            "train_acc_clean": _accuracy(train_pred, given, kind == "clean"),
            "train_acc_mislabeled": _accuracy(train_pred, given, kind == "mislabeled"),
            "train_acc_anomaly": _accuracy(train_pred, given, kind == "anomaly"),
        })
        files = sorted(f"{_CHECKPOINT_DIR}/{p.name}" for p in self.entry.file(_CHECKPOINT_DIR).glob("epoch_*.pt"))
        return [HISTORY_FILE, _TRAINING_JSON, *files], {}

    # ------------------------------------------------------- influence
    def _layers(self, choice: str) -> list[str]:
        return list(self.model.influence_layers if choice == "all" else self.model.head_layers)

    def _engine(self, checkpoints, layers):
        from . import influence

        return influence.TracIn(self.model.suffix, checkpoints, layers, device=self.device,
                                projection_dim=self.s.projection_dim, seed=self.s.seed, progress=self.progress)

    @cached_property
    def matrices(self) -> dict[str, torch.Tensor]:
        e = self.entry
        out = {"self_influence": e.load_tensor(_SELF_INFLUENCE), "influence": e.load_tensor(_INFLUENCE)}
        if e.exists(_INFLUENCE_CNCI):
            out.update(influence_cnci=e.load_tensor(_INFLUENCE_CNCI), influence_pcid=e.load_tensor(_INFLUENCE_PCID))
        return out

    def _stage_influence(self):
        f, y = self.features, self.labels
        engine = self._engine(self.checkpoints, self._layers(self.s.influence))
        matrix, si = engine.train_test_and_self_influence(f["train"], y["train"], f["test"], y["test"])
        matrix, si = matrix.float(), si.float()
        self._set(matrices={"self_influence": si, "influence": matrix})
        self.entry.save_tensor(_SELF_INFLUENCE, si)
        self.entry.save_tensor(_INFLUENCE, matrix)
        return [_SELF_INFLUENCE, _INFLUENCE], {"layers": self._layers(self.s.influence)}

    # ------------------------------------------------- counterfactuals
    @cached_property
    def counterfactual_labels(self) -> dict[str, np.ndarray]:
        return self.entry.load_arrays(_COUNTERFACTUAL_NPZ)

    def _stage_counterfactuals(self):
        from . import signals

        f, y, n_classes = self.features, self.labels, self.split["n_classes"]
        matrix, y_test = self.matrices["influence"], y["test"].numpy()
        labels = {"cnci": signals.counterfactual_labels(matrix, y_test, n_classes),
                  "pcid": signals.second_best_labels(matrix, y_test, n_classes)}
        layers = self._layers(self.s.counterfactual)
        engine = self._engine(self.checkpoints[-1:], layers)
        for name, path in (("cnci", _INFLUENCE_CNCI), ("pcid", _INFLUENCE_PCID)):
            cf = engine.train_test(f["train"], torch.from_numpy(labels[name]), f["test"], y["test"]).float()
            self.matrices[f"influence_{name}"] = cf
            self.entry.save_tensor(path, cf)
        self._set(counterfactual_labels=labels)
        self.entry.save_arrays(_COUNTERFACTUAL_NPZ, **labels)
        return [_COUNTERFACTUAL_NPZ, _INFLUENCE_CNCI, _INFLUENCE_PCID], {"layers": layers}

    # --------------------------------------------------------- signals
    @cached_property
    def scores(self) -> pd.DataFrame:
        return self.entry.read_frame(SCORES_FILE)

    def _stage_signals(self):
        from . import detect

        g, m, labels = self.glitch, self.matrices, self.counterfactual_labels
        y_test = self.labels["test"].numpy()
        report = detect.compute_signals_from_matrices(
            m["influence"], m["self_influence"], m["influence_cnci"], m["influence_pcid"], g["y"], y_test,
            n_classes=self.split["n_classes"],
        )
        table = pd.DataFrame({
            "index": np.arange(len(g["y"])), "y": g["y"], "y_true": g["y_true"], "kind": g["kind"],
            "mask": g["mask"], "suggested_label": labels["cnci"], "second_best_label": labels["pcid"],
            "characterization": np.asarray(report.characterization).astype(str),
        })
        scores = report.scores.reset_index(drop=True)
        table = pd.concat([table, scores], axis=1)
        self._set(scores=table)
        self.entry.write_frame(SCORES_FILE, table)
        return [SCORES_FILE], {}

    # --------------------------------------------------------- metrics
    def _stage_metrics(self):
        from . import metrics, signals

        table, g = self.scores, self.glitch
        mask, kind = g["mask"], g["kind"]
        signal_names = [c for c in signals.SIGNALS if c in table.columns]
        rows = [{"signal": name, "f1": metrics.detection_f1(table[name].to_numpy(), mask),
                 "ap": metrics.average_precision(table[name].to_numpy(), mask),
                 "auroc": metrics.auroc(table[name].to_numpy(), mask)} for name in signal_names]
        self.entry.write_frame(METRICS_FILE, pd.DataFrame(rows, columns=["signal", "f1", "ap", "auroc"]))

        mislabeled = kind == "mislabeled"
        repair = metrics.repair_accuracy(table["suggested_label"].to_numpy(), g["y_true"], mislabeled) \
            if mislabeled.any() else None
        char = {}
        if self.s.glitch == "mixed":
            flagged = metrics.flag_top_k(table["cfrank"].to_numpy(), int(mask.sum()))
            char = metrics.characterization_accuracy(table["characterization"].to_numpy(), kind, flagged)
        training = self.entry.read_json(_TRAINING_JSON)
        data_info = self.entry.read_json(_DATA_JSON)
        summary = {
            "n_train": int(len(g["y"])), "n_test": int(data_info["n_test"]), "n_glitches": int(mask.sum()),
            "n_mislabeled": int(mislabeled.sum()), "n_anomalies": int((kind == "anomaly").sum()),
            "val_acc": training["val_acc"],
            "repair_acc": _none_if_nan(repair),
            "char_acc_mislabeled": _none_if_nan(char.get("mislabeled")),
            "char_acc_anomaly": _none_if_nan(char.get("anomaly")),
            "char_acc": _none_if_nan(char.get("overall")),
            "train_acc": training["train_acc"],
            "train_acc_clean": training["train_acc_clean"],
            "train_acc_mislabeled": training["train_acc_mislabeled"],
            "train_acc_anomaly": training["train_acc_anomaly"],
            "data_source": data_info["source"],
            "weights_id": self.entry.read_json(_FEATURES_JSON)["weights_id"],
        }
        self.entry.write_json(_SUMMARY_JSON, summary)
        return [METRICS_FILE, _SUMMARY_JSON], {}
