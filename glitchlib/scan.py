"""Scan a labelled image folder for data glitches: the paper's method on your own images.

:func:`scan_folder` trains a new linear head on a frozen pretrained backbone over
the folder (one sub-folder per class; a seeded stratified validation split unless
the folder has ``train/`` and ``val/``), computes TracIn and every signal of SPEC.md
section 4, and writes into ``out``:

* ``suspects.csv``: one row per training image: ``file``, ``given_label``,
  ``suggested_label`` (CNCI's counterfactual label ``c*``, the NIL-opt label),
  every signal's score (higher = more suspicious), ``rank_cnci``, ``rank_pcid``,
  ``rank_cfrank`` (1 = most suspicious) and ``flagged`` (among the
  ``ratio_hint`` share of highest CFRank);
* ``index.html``: a self-contained page (thumbnails embedded, no network) of the
  top suspects by CNCI, PCID and CFRank with their given and suggested labels;
* ``scan.json``: the settings and the folder's fingerprint;
* ``features/`` (the backbone's outputs, cached by content) and ``checkpoints/``
  (one per epoch), so an interrupted scan resumes where it stopped and a finished
  one is read back.

The command line is ``glitchlib scan PATH --out DIR``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import _validation
from .settings import MODEL_NAMES, TABULAR_MODELS

__all__ = ["ScanSettings", "ScanResult", "scan_folder"]

SUSPECTS_FILE, PAGE_FILE, SETTINGS_FILE = "suspects.csv", "index.html", "scan.json"
#: Signals ranked in the CSV and shown on the page (the paper's three).
RANKED = ("cnci", "pcid", "cfrank")


@dataclass(frozen=True, kw_only=True)
class ScanSettings:
    """Settings of one scan, saved as ``scan.json`` beside its results."""

    path: str  #: the folder scanned (absolute)
    model: str = "efficientnet_lite0"  #: registry name of the frozen backbone (glitchlib.models.create)
    ratio_hint: float = 0.1  #: expected share of glitches: that many images (by CFRank) are flagged
    seed: int = 0  #: validation split, head initialisation and batch order
    test_fraction: float = 0.15  #: validation share of every class (folders without val/)
    lr: float | None = None  #: learning rate (default: the model's CIFAR-10 settings)
    batch_size: int | None = None  #: mini-batch size (default: as lr)
    epochs: int | None = None  #: epochs, one checkpoint each (default: as lr)
    device: str = "cpu"  #: torch device (not part of the results)

    def __post_init__(self) -> None:
        v = _validation
        values = {
            "path": v.as_text(self.path, "path"),
            "model": v.as_text(self.model, "model"),
            "ratio_hint": v.as_real(self.ratio_hint, "ratio_hint", low=0.0, high=1.0, low_open=True, high_open=True),
            "seed": v.as_seed(self.seed, "seed"),
            "test_fraction": v.as_real(self.test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True,
                                       high_open=True),
            "lr": v.as_positive(self.lr, "lr", optional=True),
            "batch_size": v.as_int(self.batch_size, "batch_size", low=1, optional=True),
            "epochs": v.as_int(self.epochs, "epochs", low=1, optional=True),
            "device": v.as_text(self.device, "device"),
        }
        if values["model"] in TABULAR_MODELS or not (values["model"] in MODEL_NAMES
                                                     or values["model"].startswith("timm:")):
            image_models = [m for m in MODEL_NAMES if m not in TABULAR_MODELS]
            raise v.ArgumentError("model", self.model, f"choose an image model: {', '.join(image_models)} "
                                                        "or timm:<name>")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ScanResult:
    """What :func:`scan_folder` returns."""

    suspects: pd.DataFrame  #: the rows of ``suspects.csv``, most suspicious by CNCI first
    out: Path  #: the output folder
    page: Path  #: ``index.html``
    val_acc: float  #: accuracy of the trained head on the validation split
    class_names: list  #: the folder's classes
    seconds: float  #: time spent by this call (0 when read back)
    computed: bool  #: False when a finished scan was read back


def _folder_fingerprint(files) -> str:
    """sha256 over the files' paths, sizes and modification times (cheap; changes when the folder does)."""
    digest = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _train_settings(s: ScanSettings):
    from . import settings as settings_module

    base = settings_module.training_settings("cifar10", s.model)  # colour photographs: the CIFAR-10 settings
    overrides = {k: getattr(s, k) for k in ("lr", "batch_size", "epochs") if getattr(s, k) is not None}
    return dataclasses.replace(base, **overrides, source="user") if overrides else base


def scan_folder(path, *, out, model: str = "efficientnet_lite0", ratio_hint: float = 0.1, seed: int = 0,
                test_fraction: float = 0.15, lr: float | None = None, batch_size: int | None = None,
                epochs: int | None = None, device: str = "cpu", n_shown: int = 24,
                progress: bool = True) -> ScanResult:
    """Rank the images of a labelled folder by how likely they are glitches.

    Parameters
    ----------
    path : str or path
        ``PATH/<class>/<image>`` or ``PATH/train/<class>/...`` with ``PATH/val/...``
        (:func:`glitchlib.data.load_image_folder`).
    out : str or path
        Output folder (created); see the module docstring for what it holds.
    model : str
        Frozen backbone (``efficientnet_lite0`` works offline).
    ratio_hint : float
        Expected share of glitches in ``(0, 1)``: ``ceil(ratio_hint * n)`` images
        with the highest CFRank get ``flagged = True``.
    seed : int
    test_fraction : float
        Validation share per class when the folder has no ``val/``.
    lr, batch_size, epochs : optional
        Training settings (default: the model's CIFAR-10 settings).
    device : str
        Torch device.
    n_shown : int
        Suspects shown per signal on the page.
    progress : bool
        Progress bars.

    Returns
    -------
    ScanResult

    Raises
    ------
    ValueError
        Bad folder (named), unreadable image (named), bad settings.
    """
    from . import data, detect, features, influence, models, store, train

    start = time.perf_counter()
    _validation.as_device(device)  # before any image is read
    settings = ScanSettings(path=str(Path(path).expanduser().resolve()), model=model, ratio_hint=ratio_hint,
                            seed=seed, test_fraction=test_fraction, lr=lr, batch_size=batch_size,
                            epochs=epochs, device=device)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file; give a folder for the results")
    layout = data.folders.list_image_folder(settings.path)
    files = layout["train"][0] + (layout["val"][0] if layout["val"] is not None else [])
    record = {"settings": settings.to_dict(), "fingerprint": _folder_fingerprint(files)}
    record["settings"].pop("device")
    finished = _read_back(out, record)
    if finished is not None:
        return finished

    net = models.create(model, n_classes=len(layout["class_names"]), seed=seed)
    ds = data.load_image_folder(settings.path, image_size=net.input_size, test_fraction=test_fraction,
                                seed=seed, progress=progress)
    cache = out / "features"
    f_train = features.compute_features(net, ds.x_train, device=device, cache_dir=cache, progress=progress)
    f_test = features.compute_features(net, ds.x_test, device=device, cache_dir=cache, progress=progress)
    train_settings = _train_settings(settings)
    fit = train.fit(net.suffix, f_train, ds.y_train, f_test, ds.y_test, settings=train_settings, seed=seed,
                    device=device, checkpoint_dir=out / "checkpoints", progress=progress)
    engine = influence.TracIn(net.suffix, fit.checkpoints, layers=net.influence_layers, device=device)
    signals = detect.compute_signals(engine, f_train, ds.y_train, f_test, ds.y_test)
    suspects = _suspects_table(signals, ds, ratio_hint=ratio_hint)
    val_acc = float(fit.history["val_acc"].iloc[-1])
    record.update({"class_names": ds.class_names, "val_acc": val_acc, "n_train": len(ds.y_train),
                   "n_test": len(ds.y_test), "training": train_settings.to_dict()})
    out.mkdir(parents=True, exist_ok=True)
    store.atomic_write(out / SUSPECTS_FILE, lambda f: f.write(suspects.to_csv(index=False)), binary=False)
    page = _suspects_html(suspects, ds.class_names, title=f"Suspects in {settings.path}", n_shown=n_shown,
                          val_acc=val_acc)
    store.atomic_write(out / PAGE_FILE, lambda f: f.write(page), binary=False)
    store.write_json(out / SETTINGS_FILE, record)  # written last: marks the scan finished
    return ScanResult(suspects=suspects, out=out, page=out / PAGE_FILE, val_acc=val_acc,
                      class_names=ds.class_names, seconds=time.perf_counter() - start, computed=True)


def _read_back(out: Path, record: dict) -> ScanResult | None:
    from . import store

    try:
        stored = store.read_json(out / SETTINGS_FILE)
        if stored.get("settings") != record["settings"] or stored.get("fingerprint") != record["fingerprint"]:
            return None
        suspects = pd.read_csv(out / SUSPECTS_FILE)
        if not (out / PAGE_FILE).is_file():
            return None
    except (OSError, ValueError, KeyError):
        return None
    return ScanResult(suspects=suspects, out=out, page=out / PAGE_FILE, val_acc=stored["val_acc"],
                      class_names=stored["class_names"], seconds=0.0, computed=False)


def _suspects_table(signals, ds, *, ratio_hint: float) -> pd.DataFrame:
    """One row per training image: file, labels, every score, ranks (1 = most suspicious), flag.

    Parameters
    ----------
    signals : glitchlib.detect.SignalReport
    ds : glitchlib.data.Dataset
        With ``train_files``.
    ratio_hint : float
        Share flagged by CFRank.

    Returns
    -------
    pandas.DataFrame
        Sorted by ``rank_cnci``.
    """
    from . import metrics

    names = ds.class_names
    table = pd.DataFrame({
        "file": ds.train_files,
        "given_label": [names[c] for c in ds.y_train.tolist()],
        "suggested_label": [names[c] for c in signals.suggested_labels.tolist()],
    })
    for column in signals.scores.columns:
        table[column] = signals.scores[column].to_numpy()
    n = len(table)
    for name in RANKED:
        order = metrics.suspicion_order(table[name].to_numpy())
        ranks = np.empty(n, dtype=np.int64)
        ranks[order] = np.arange(1, n + 1)
        table[f"rank_{name}"] = ranks
    k = int(np.ceil(ratio_hint * n))
    table["flagged"] = table["rank_cfrank"] <= k
    return table.sort_values("rank_cnci", kind="stable").reset_index(drop=True)


def _thumbnail(file: str, size: int = 96) -> str:
    from PIL import Image

    with Image.open(file) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.5em}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:120px;border:1px solid #ddd;border-radius:4px;padding:4px;text-align:center}
figure img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated}
figcaption{font-size:0.75em;line-height:1.3}
.changed{color:#b00020;font-weight:600}
"""


def _suspects_html(suspects: pd.DataFrame, class_names, *, title: str, n_shown: int = 24,
                   val_acc: float | None = None) -> str:
    """A self-contained HTML page of the top suspects (thumbnails embedded as data URIs; no network).

    Parameters
    ----------
    suspects : pandas.DataFrame
        :func:`_suspects_table`'s output.
    class_names : list of str
    title : str
    n_shown : int
        Images per signal.
    val_acc : float, optional
        Shown in the header.

    Returns
    -------
    str
    """
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{len(suspects)} training images, {len(class_names)} classes"
             + (f", validation accuracy {val_acc:.3f}" if val_acc is not None else "")
             + ". Each image shows its given label and the label the influence suggests (CNCI's "
               "counterfactual label c*); red when they differ.</p>"]
    headings = {"cnci": "Top suspects by CNCI (mislabeled images)",
                "pcid": "Top suspects by PCID (anomalous images)",
                "cfrank": "Top suspects by CFRank (either)"}
    for name in RANKED:
        top = suspects.sort_values(f"rank_{name}", kind="stable").head(n_shown)
        parts.append(f"<h2>{headings[name]}</h2><div class='grid'>")
        for row in top.itertuples(index=False):
            changed = row.given_label != row.suggested_label
            parts.append(
                f"<figure><img src='{_thumbnail(row.file)}' alt='{html.escape(Path(row.file).name)}'>"
                f"<figcaption>#{getattr(row, 'rank_' + name)} {html.escape(Path(row.file).name)}<br>"
                f"given: {html.escape(row.given_label)}<br>"
                f"<span class='{'changed' if changed else ''}'>suggested: {html.escape(row.suggested_label)}"
                "</span></figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
