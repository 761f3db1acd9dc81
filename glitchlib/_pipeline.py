"""The stages of :func:`glitchlib.experiments.run` and the files they keep in a results entry.

``_Pipeline`` computes one stage at a time and reads the outputs of finished
stages back from the entry; :mod:`glitchlib.experiments` runs the stages in
order, records them in the stage log and reads the finished entry back.
"""

from __future__ import annotations

import hashlib
import math
import re
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import _validation
from .settings import ANOMALY, CORRUPTED, MISLABELED, SAMPLE_KINDS, ExperimentSettings
from .store import HISTORY_FILE, METRICS_FILE, SCORES_FILE, Entry, IncompatibleEntry, Store, file_lock

# Files of the stages, relative to the entry's directory.
_DATA_JSON, _DATA_NPZ = "data.json", "data.npz"
_GLITCH_NPZ, _GLITCH_JSON = "glitch.npz", "glitch.json"
_FEATURES_JSON = "features.json"
_CHECKPOINT_DIR, _TRAINING_JSON = "checkpoints", "training.json"
_SELF_INFLUENCE, _INFLUENCE = "matrices/self_influence.pt", "matrices/influence.pt"
_INFLUENCE_CNCI, _INFLUENCE_PCID = "matrices/influence_cnci.pt", "matrices/influence_pcid.pt"
_COUNTERFACTUAL_NPZ = "counterfactual.npz"
_SUMMARY_JSON = "summary.json"
_PREDICTIONS_NPZ = "predictions.npz"

# A sub-sample holding at least this share of its loaded split takes its rows from the
# features of the whole split (computed once, cached), not from a feature set of its own.
_WHOLE_SPLIT_SHARE = 0.25

#: Version of what a stage computes, kept in its stage-log entry (absent: 1). A finished
#: stage of another version is recomputed, with the stages after it, and nothing before.
#: signals 2: the dedicated detectors of glitchlib.peers beside the influence signals.
STAGE_VERSIONS = {"signals": 2}


def outdated_stage(entry: Entry, stage: str | None = None) -> str | None:
    """Why the finished ``stage`` (default: any of :data:`STAGE_VERSIONS`) is of another version, or None.

    An unreadable stage log gives None: the store's own checks report it.
    """
    try:
        finished = entry.read_stages()["finished"]
    except IncompatibleEntry:
        return None
    for name in [stage] if stage else list(STAGE_VERSIONS):
        version = finished[name].get("version", 1) if name in finished else None
        if name in STAGE_VERSIONS and version not in (None, STAGE_VERSIONS[name]):
            return (f"its {name} stage was computed by version {version}, "
                    f"this glitchlib computes {STAGE_VERSIONS[name]}")
    return None


def _train_dict(train) -> dict[str, Any]:
    values = train.to_dict()
    return {k: values[k] for k in ("lr", "batch_size", "epochs")}


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
    return stratified_indices(y.numpy(), fraction=n / total, seed=seed)


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


@torch.no_grad()
def _logits(module: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    module = module.to(device).eval()
    out = [module(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def _mean(values: np.ndarray, select: np.ndarray) -> float | None:
    return float(values[select].mean()) if select.any() else None


def _rows(compute, full: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """Features of ``full[index]``: from those of the whole of ``full`` when ``index`` holds enough of it."""
    if len(index) == len(full) and np.array_equal(index, np.arange(len(full))):
        return compute(full)
    if len(index) >= _WHOLE_SPLIT_SHARE * len(full):
        return compute(full)[torch.from_numpy(index)]
    return compute(full[torch.from_numpy(index)])


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
        self.device = _validation.as_device(settings.device)  # one this machine has, before any stage

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
            "train_index": np.asarray(train_index), "test_index": np.asarray(test_index),
            "n_classes": d.n_classes, "class_names": list(d.class_names), "source": d.source,
        }

    def _stage_data(self):
        d = self.loaded
        train_index = _subsample(d.y_train, self.s.n_train, self.s.seed, "n_train")
        n_test = self.s.n_test
        if self.s.test_share is not None:  # SPEC.md section 9.5: a share of the training set
            n_test = max(1, math.floor(self.s.test_share * len(train_index) + 1e-9))
            if n_test > len(d.y_test):
                raise ValueError(f"test_share={self.s.test_share} asks for {n_test} validation samples but "
                                 f"{len(d.y_test)} are loaded; lower test_share or n_train")
        test_index = _subsample(d.y_test, n_test, self.s.seed, "n_test")
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
        arrays.setdefault("corrupt_index", np.flatnonzero(arrays["kind"] == CORRUPTED))
        if "y_test" not in arrays:  # entries without validation noise
            arrays["y_test"] = self.split["y_test"].numpy()
            arrays["test_mask"] = np.zeros(len(arrays["y_test"]), dtype=bool)
        return arrays

    @cached_property
    def corrupted_inputs(self) -> torch.Tensor:
        """The corrupted training images, in the order of ``corrupt_index`` (SPEC.md section 9.4)."""
        from . import glitches

        index = torch.from_numpy(self.glitch["corrupt_index"])
        return glitches.corrupt_images(self.split["x_train"][index], corruption=self.s.corruption)

    @cached_property
    def dirty_inputs(self) -> torch.Tensor:
        ood_index = self.glitch["ood_index"]
        x = self.split["x_train"]
        if len(self.glitch["corrupt_index"]):
            x = x.clone()
            x[torch.from_numpy(self.glitch["corrupt_index"])] = self.corrupted_inputs
        if len(ood_index):
            x = torch.cat([x, self.ood_pool.x[torch.from_numpy(ood_index)]])
        return x

    def _stage_inject(self):
        from . import glitches

        s, split = self.s, self.split
        pool = self.ood_pool if s.glitch in ("anomalies", "mixed") else None
        g = glitches.inject(
            s.glitch, split["y_train"].numpy(), ratio=s.ratio, seed=s.seed, x=split["x_train"],
            x_ood=None if pool is None else pool.x, y_ood=None if pool is None else pool.y.numpy(),
            n_classes=split["n_classes"], n_contaminated=s.n_contaminated, corruption=s.corruption,
        )
        y_test, test_mask = split["y_test"].numpy(), np.zeros(len(split["y_test"]), dtype=bool)
        if s.test_ratio:  # SPEC.md section 9.5: the same kind of noise, the same seed (same T(c))
            t = glitches.inject(s.glitch, y_test, ratio=s.test_ratio, seed=s.seed, n_classes=split["n_classes"],
                                n_contaminated=s.n_contaminated)
            y_test, test_mask = t.y, t.mask
        arrays = {
            "y": np.asarray(g.y, dtype=np.int64), "y_true": np.asarray(g.y_true, dtype=np.int64),
            "mask": np.asarray(g.mask, dtype=bool), "kind": np.asarray(g.kind).astype(str),
            "ood_index": np.asarray(g.ood_index, dtype=np.int64),
            "corrupt_index": np.flatnonzero(np.asarray(g.kind) == CORRUPTED).astype(np.int64),
            "y_test": np.asarray(y_test, dtype=np.int64), "test_mask": np.asarray(test_mask, dtype=bool),
        }
        self._set(glitch=arrays)
        targets = g.target_classes
        self.entry.save_arrays(_GLITCH_NPZ, **arrays)
        self.entry.write_json(_GLITCH_JSON, {
            "glitch": s.glitch, "n_glitches": int(arrays["mask"].sum()),
            "n_mislabeled": int((arrays["kind"] == MISLABELED).sum()),
            "n_anomalies": int((arrays["kind"] == ANOMALY).sum()),
            "n_corrupted": len(arrays["corrupt_index"]), "corruption": s.corruption,
            "n_test_noisy": int(test_mask.sum()),
            "target_classes": {str(k): int(v) for k, v in targets.items()} if targets else None,
            "ood_source": self.ood_pool.source_name if len(arrays["ood_index"]) else None,
        })
        return [_GLITCH_NPZ, _GLITCH_JSON], {}

    # -------------------------------------------------------- features
    @cached_property
    def model(self):
        from . import models

        x = self.split["x_train"]  # tables: (n, n_features), for the tabular models' input width
        n_features = int(x.shape[1]) if self.s.model in models.TABULAR_MODELS else None
        return models.create(self.s.model, n_classes=self.split["n_classes"], pretrained=self.s.pretrained,
                             weights=self.s.weights, seed=self.s.seed, n_features=n_features)

    @cached_property
    def features(self) -> dict[str, torch.Tensor]:
        """Suffix inputs: ``train`` (dirty training set, anomalies appended) and ``test``."""
        from . import features

        model, cache = self.model, self.store.features_dir
        name = f"features-{self.s.dataset}-{model.name}-{model.weights_id}"
        lock = self.store.lock_path(re.sub(r"[^A-Za-z0-9_.-]+", "_", name))

        def compute(x):
            return features.compute_features(model, x, device=self.device, cache_dir=cache, progress=self.progress)

        d, split, glitch = self.loaded, self.split, self.glitch
        with file_lock(lock):  # one process computes a feature set, the others then read it
            train = _rows(compute, d.x_train, split["train_index"])
            test = _rows(compute, d.x_test, split["test_index"])
            if len(glitch["corrupt_index"]):  # only the corrupted images are new to the backbone
                train = train.clone()
                train[torch.from_numpy(glitch["corrupt_index"])] = compute(self.corrupted_inputs)
            if len(glitch["ood_index"]):
                train = torch.cat([train, compute(self.ood_pool.x[torch.from_numpy(glitch["ood_index"])])])
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
        from .settings import resolve_training_settings

        return resolve_training_settings(self.s)

    @cached_property
    def checkpoints(self) -> list:
        from . import train

        checkpoints = train.load_checkpoints(self.entry.file(_CHECKPOINT_DIR))
        return checkpoints[: self.train_settings.epochs]

    @cached_property
    def labels(self) -> dict[str, torch.Tensor]:
        """Labels given to training (``train``), validation labels given to the influence (``test``,
        dirty when ``test_ratio`` > 0) and the clean validation labels (``test_clean``)."""
        return {"train": torch.from_numpy(self.glitch["y"]), "test": torch.from_numpy(self.glitch["y_test"]),
                "test_clean": self.split["y_test"]}

    def _stage_training(self):
        from . import train

        f, y = self.features, self.labels
        # validation accuracy against the clean labels, whatever the influence sees (SPEC.md 9.5)
        result = train.fit(self.model.suffix, f["train"], y["train"], f["test"], y["test_clean"],
                           settings=self.train_settings, seed=self.s.seed, device=self.device,
                           checkpoint_dir=self.entry.file(_CHECKPOINT_DIR), progress=self.progress)
        self._set(checkpoints=list(result.checkpoints))
        final = result.final_model
        kind, given = self.glitch["kind"], self.glitch["y"]
        logits = _logits(final, f["train"], self.device)
        train_pred = logits.argmax(1)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(given), reduction="none").numpy()
        test_pred = _predict(final, f["test"], self.device)
        self.entry.write_frame(HISTORY_FILE, result.history)
        self.entry.save_arrays(_PREDICTIONS_NPZ, train_pred=train_pred.numpy(), train_loss=loss,
                               test_pred=test_pred.numpy())
        per_kind = {}
        for name in SAMPLE_KINDS:  # average loss and accuracy per kind of sample, every run (SPEC.md 9.3)
            per_kind[f"train_loss_{name}"] = _mean(loss, kind == name)
            per_kind[f"train_acc_{name}"] = _accuracy(train_pred, given, kind == name)
        self.entry.write_json(_TRAINING_JSON, {
            "training": _train_dict(self.train_settings),
            "val_acc": float((test_pred == y["test_clean"]).double().mean()),
            # accuracy against the labels given to training (SPEC.md section 6's claim)
            "train_acc": float((train_pred.numpy() == given).mean()),
            **per_kind,  # train_acc_clean, train_acc_mislabeled, ... (SPEC.md section 6's claim)
        })
        files = sorted(f"{_CHECKPOINT_DIR}/{p.name}" for p in self.entry.file(_CHECKPOINT_DIR).glob("epoch_*.pt"))
        return [HISTORY_FILE, _TRAINING_JSON, _PREDICTIONS_NPZ, *files, f"{_CHECKPOINT_DIR}/{train.CHECKSUMS_FILE}"], {}

    # ------------------------------------------------------- influence
    def _layers(self, choice: str) -> list[str]:
        return list(self.model.influence_layers if choice == "all" else self.model.head_layers)

    def _engine(self, checkpoints, layers):
        from . import influence

        return influence.TracIn(self.model.suffix, checkpoints, layers=layers, device=self.device,
                                projection_dim=self.s.projection_dim, seed=self.s.seed, progress=self.progress)

    @cached_property
    def matrices(self) -> dict[str, torch.Tensor]:
        e = self.entry
        out = {"self_influence": e.load_tensor(_SELF_INFLUENCE), "influence": e.load_tensor(_INFLUENCE)}
        # the counterfactual matrices only once their stage finished, never some of its files
        if "counterfactuals" in e.read_stages()["finished"]:
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
        labels = {"cnci": signals.counterfactual_labels(matrix, y_test, n_classes=n_classes),
                  "pcid": signals.second_best_labels(matrix, y_test, n_classes=n_classes)}
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
        peer = self._peers()
        table.insert(table.columns.get_loc("second_best_label"), "cleanlab_label", peer.suggested_labels)
        table = pd.concat([table, scores, peer.scores], axis=1)
        self._set(scores=table)
        self.entry.write_frame(SCORES_FILE, table)
        return [SCORES_FILE], {"version": STAGE_VERSIONS["signals"], "peer_seconds": peer.timings}

    def _peers(self):
        """The dedicated detectors (:mod:`glitchlib.peers`) on the run's features and checkpoints."""
        from . import peers

        f, y = self.features, self.labels
        return peers.compute_peers(
            self.model.suffix, self.checkpoints, f["train"], y["train"].numpy(), f["test"], y["test"].numpy(),
            train_settings=self.train_settings, seed=self.s.seed, n_classes=self.split["n_classes"],
            head_layer=self.model.head_layers[0], device=self.device,
        )

    # --------------------------------------------------------- metrics
    def _stage_metrics(self):
        from . import metrics, peers, signals

        table, g = self.scores, self.glitch
        mask, kind = g["mask"], g["kind"]
        signal_names = [c for c in (*signals.SIGNALS, *peers.PEERS) if c in table.columns]
        if mask.any():
            rows = [{"signal": name, "f1": metrics.detection_f1(table[name].to_numpy(), mask),
                     "ap": metrics.average_precision(table[name].to_numpy(), mask),
                     "auroc": metrics.auroc(table[name].to_numpy(), mask)} for name in signal_names]
        else:  # glitch "none": nothing to detect, the metrics are missing (NaN), not an error
            rows = [{"signal": name, "f1": math.nan, "ap": math.nan, "auroc": math.nan} for name in signal_names]
        self.entry.write_frame(METRICS_FILE, pd.DataFrame(rows, columns=["signal", "f1", "ap", "auroc"]))

        mislabeled = kind == MISLABELED
        repair, repair_cleanlab = (
            metrics.repair_accuracy(table[column].to_numpy(), g["y_true"], mislabeled) if mislabeled.any() else None
            for column in ("suggested_label", "cleanlab_label"))
        char = {}
        if self.s.glitch == "mixed":
            flagged = metrics.flag_top_k(table["cfrank"].to_numpy(), k=int(mask.sum()))
            char = metrics.characterization_accuracy(table["characterization"].to_numpy(), kind, flagged)
        training = self.entry.read_json(_TRAINING_JSON)
        data_info = self.entry.read_json(_DATA_JSON)
        summary = {
            "n_train": int(len(g["y"])), "n_test": int(data_info["n_test"]), "n_glitches": int(mask.sum()),
            "n_mislabeled": int(mislabeled.sum()), "n_anomalies": int((kind == ANOMALY).sum()),
            "val_acc": training["val_acc"],
            "repair_acc": _none_if_nan(repair),
            "repair_acc_cleanlab": _none_if_nan(repair_cleanlab),
            "char_acc_mislabeled": _none_if_nan(char.get(MISLABELED)),
            "char_acc_anomaly": _none_if_nan(char.get(ANOMALY)),
            "char_acc": _none_if_nan(char.get("overall")),
            "train_acc": training["train_acc"],
            "train_acc_clean": training["train_acc_clean"],
            "train_acc_mislabeled": training["train_acc_mislabeled"],
            "train_acc_anomaly": training["train_acc_anomaly"],
            **{f"train_{q}_{name}": training.get(f"train_{q}_{name}")
               for name in SAMPLE_KINDS for q in ("loss", "acc")},
            "n_corrupted": int((kind == CORRUPTED).sum()),
            "n_test_noisy": int(g["test_mask"].sum()),
            "data_source": data_info["source"],
            "weights_id": self.entry.read_json(_FEATURES_JSON)["weights_id"],
        }
        self.entry.write_json(_SUMMARY_JSON, summary)
        return [METRICS_FILE, _SUMMARY_JSON], {}
