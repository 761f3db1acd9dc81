"""Settings of one experiment: a frozen dataclass, its dictionary form and its key.

One :class:`ExperimentSettings` names one cell of the grid "dataset x model x
glitch x ratio x seed" plus every option that changes its numbers. Its
:meth:`~ExperimentSettings.key` names the results-store entry that holds the
cell's results, so that a finished cell is never computed twice.

A leaf of the package: it imports neither torch nor any glitchlib module but
:mod:`glitchlib._validation` (the checks of every argument), so that settings can
be built, checked and keyed anywhere, cheaply. What lives where:

:mod:`glitchlib.config` (here)
    the names an experiment is made of (:data:`DATASETS`, :data:`GLITCH_KINDS`,
    :data:`CORRUPTIONS`, :data:`MODEL_NAMES`, ...), which :mod:`glitchlib.data`,
    :mod:`glitchlib.glitches` and :mod:`glitchlib.models` re-export, and
    :class:`ExperimentSettings`, one grid cell;
:mod:`glitchlib.settings`
    the training settings (:class:`~glitchlib.settings.TrainSettings`: learning
    rate, batch size, epochs) registered per dataset and model, and their
    resolution for a cell (:func:`~glitchlib.settings.resolve_training_settings`);
:mod:`glitchlib.profiles`
    the named grids of cells (``tiny``, ``embedded``, ``paper``, ...) and whether
    a cell can run on this machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import _validation



__all__ = [
    "ExperimentSettings",
    "IMAGE_DATASETS",
    "SHIPPED_TABLES",
    "DOWNLOADED_TABLES",
    "TABULAR_DATASETS",
    "DATASETS",
    "GLITCH_KINDS",
    "CORRUPTIONS",
    "TABULAR_MODELS",
    "MODEL_NAMES",
    "MODELS",
    "INFLUENCE_CHOICES",
    "COUNTERFACTUAL_CHOICES",
]

# ----------------------------------------------------------------------------- names
# The names an experiment is made of, defined here so that this module imports
# neither torch nor the modules that implement them; :mod:`glitchlib.data`,
# :mod:`glitchlib.glitches` and :mod:`glitchlib.models` import them from here.

#: Image datasets of the paper (SPEC.md section 1).
IMAGE_DATASETS = ("mnist", "fmnist", "cifar10", "imagewoof")
#: Tables shipped with scikit-learn, and tables downloaded from OpenML (SPEC.md section 9.7).
SHIPPED_TABLES = ("breast_cancer", "wine", "digits")
DOWNLOADED_TABLES = ("covtype", "jannis", "epsilon")
#: Every tabular dataset.
TABULAR_DATASETS = SHIPPED_TABLES + DOWNLOADED_TABLES
#: Every dataset: images and tables.
DATASETS = IMAGE_DATASETS + TABULAR_DATASETS
#: Glitch kinds (SPEC.md section 2; "corruption" section 9.4, "none" the clean twin).
GLITCH_KINDS = ("uniform", "class-based", "anomalies", "mixed", "corruption", "none")
#: Image corruptions (MNIST-C, Mu and Gilmer 2019; SPEC.md section 9.4).
CORRUPTIONS = ("stripe", "brightness")
#: Models of tables (SPEC.md section 9.7: MLP, ResNet and FT-Transformer of Gorishniy et al. 2021).
TABULAR_MODELS = ("mlp", "tabular_resnet", "ft_transformer")
#: Registered model names (``timm:<name>`` selects any timm model as well).
MODEL_NAMES = ("resnet20", "vit_b_16", "convnext_tiny", "efficientnet_lite0", *TABULAR_MODELS)
#: Same as :data:`MODEL_NAMES`.
MODELS = MODEL_NAMES

#: Which parameters TracIn differentiates: every influence layer, or the final linear head only.
INFLUENCE_CHOICES = ("all", "head")
#: Which parameters the counterfactual matrices (CNCI, PCID) differentiate.
COUNTERFACTUAL_CHOICES = ("all", "head")

# Fields that do not change the numbers, hence are left out of the key.
_NOT_IN_KEY = frozenset({"device"})
# Fields added after the first stored results: left out of the key while they keep
# their default, so that the keys (and the stored results) of earlier cells stay valid.
_IN_KEY_WHEN_SET = {"corruption": None, "test_ratio": 0.0, "test_share": None}
#: Largest label-noise ratio of the validation set (SPEC.md section 9.5).
MAX_TEST_RATIO = 0.5


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class ExperimentSettings:
    """Everything that defines one experiment (one grid cell).

    ``None`` for ``lr``, ``batch_size`` and ``epochs`` means "the training
    settings registered for this dataset and model"
    (:func:`glitchlib.settings.training_settings`).

    Every field is validated on construction, by value: numbers of any numeric
    type are accepted (``np.float32(0.1)``, ``np.int64(1)``) and stored as plain
    Python numbers, so equal settings have equal keys; booleans are refused as
    numbers, NaN and infinities everywhere. A bad value raises ``ValueError``
    naming the field and what to pass (:mod:`glitchlib._validation`). Whether the
    settings can run on this machine is checked separately
    (:func:`glitchlib.profiles.runnable`).
    """

    dataset: str = _help("Dataset: one of " + ", ".join(DATASETS) + ".", "fmnist")
    model: str = _help(
        "Model: one of " + ", ".join(MODELS) + ", or timm:<name>.", "efficientnet_lite0"
    )
    glitch: str = _help("Glitch kind: one of " + ", ".join(GLITCH_KINDS) + ".", "class-based")
    ratio: float = _help("Glitch ratio in (0, 0.5] (for mixed: the ratio of each kind).", 0.1)
    seed: int = _help(
        "Seed of the run: data subset, glitch injection, head initialisation, batch order.", 0
    )
    n_train: int | None = _help(
        "Training samples: None keeps the loaded subset; an int draws a seeded stratified "
        "sub-sample of it (tiny runs).",
        None,
    )
    n_test: int | None = _help(
        "Validation samples: None keeps the loaded subset; an int draws a seeded stratified "
        "sub-sample of it.",
        None,
    )
    subset: float = _help(
        "Share of the official splits loaded (SPEC.md section 1: 0.1); ignored by the embedded data.",
        0.1,
    )
    n_contaminated: int | None = _help(
        "Class-based noise only: number of contaminated classes (None: every class).", None
    )
    corruption: str | None = _help(
        "glitch='corruption' only: the corruption, one of " + ", ".join(CORRUPTIONS)
        + " (SPEC.md section 9.4).",
        None,
    )
    test_ratio: float = _help(
        "Label noise of the validation set in [0, 0.5], of the same kind as the training noise "
        "(uniform or class-based; SPEC.md section 9.5). Influence uses these dirty validation labels, "
        "validation accuracy always the clean ones.",
        0.0,
    )
    test_share: float | None = _help(
        "Validation samples as a share of the training samples, in (0, 1] (None: n_test decides; "
        "SPEC.md section 9.5 uses 0.15).",
        None,
    )
    lr: float | None = _help("Learning rate (None: the registered training settings).", None)
    batch_size: int | None = _help("Batch size (None: the registered training settings).", None)
    epochs: int | None = _help("Epochs (None: the registered training settings).", None)
    pretrained: bool = _help(
        "Pretrained backbone weights (False: random weights, the from-scratch setting).", True
    )
    influence: str = _help(
        "Influence parameters: 'all' influence layers of the model or the final linear 'head' only.",
        "all",
    )
    counterfactual: str = _help(
        "Parameters of the counterfactual matrices: 'all' influence layers or the 'head' only "
        "(the paper's public code).",
        "all",
    )
    projection_dim: int | None = _help(
        "Random projection dimension of the gradients (None: exact, no projection).", None
    )
    device: str = _help("Torch device, e.g. 'cpu' or 'cuda' (not part of the key).", "cpu")
    data_root: str | None = _help(
        "Directory holding the official dataset files (None: the embedded data).", None
    )
    weights: str | None = _help(
        "Local weights file of the backbone (None: the torch hub cache, then the download URL).",
        None,
    )

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ forms
    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dictionary."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentSettings":
        """Settings from a dictionary; unknown keys raise ``ValueError`` listing the valid ones."""
        if not isinstance(values, dict):
            raise ValueError(f"settings must be a mapping of field names to values, got {values!r}")
        names = field_names()
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"unknown settings field(s) {', '.join(unknown)}; valid fields: {', '.join(names)}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> "ExperimentSettings":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def keyed_dict(self) -> dict[str, Any]:
        """The fields that change the numbers (all but ``device``), hashed by :meth:`key`."""
        return {
            k: v for k, v in self.to_dict().items()
            if k not in _NOT_IN_KEY and not (k in _IN_KEY_WHEN_SET and v == _IN_KEY_WHEN_SET[k])
        }

    def key(self) -> str:
        """Stable name of the results-store entry of these settings.

        A readable prefix (dataset, model, glitch, ratio, seed) and the first 12
        hex digits of the sha256 of every field that changes the numbers (all
        but ``device``: CPU and GPU results agree within float tolerance).
        """
        digest = hashlib.sha256(
            json.dumps(self.keyed_dict(), sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:12]
        prefix = f"{self.dataset}-{self.model}-{self.glitch}-{self.ratio:g}-s{self.seed}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix) + "-" + digest

    def label(self) -> str:
        """Short human-readable description, for logs and progress bars."""
        extra = []
        if self.corruption is not None:
            extra.append(self.corruption)
        if self.n_contaminated is not None:
            extra.append(f"{self.n_contaminated} contaminated class(es)")
        if self.test_ratio:
            extra.append(f"validation noise {self.test_ratio:g}")
        if self.n_train is not None:
            extra.append(f"n_train={self.n_train}")
        if not self.pretrained:
            extra.append("random weights")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.dataset}/{self.model}/{self.glitch} {self.ratio:g} seed {self.seed}{tail}"


def field_names() -> list[str]:
    """Names of the fields of :class:`ExperimentSettings`, in order."""
    return [f.name for f in dataclasses.fields(ExperimentSettings)]


def field_help() -> dict[str, str]:
    """Help text of every field of :class:`ExperimentSettings`."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(ExperimentSettings)}


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose from {', '.join(choices)}")


def _optional_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be None or an integer >= {minimum}")


def _normalize(s: ExperimentSettings) -> None:
    """Check numbers, flags and paths by value and store them as plain Python values.

    ``np.float32(0.1)`` becomes ``0.1`` and ``np.int64(1)`` becomes ``1``, so equal
    settings have equal keys; booleans are refused as numbers, NaN and infinities
    everywhere (:mod:`glitchlib._validation`).
    """
    v = _validation
    values = {
        "ratio": v.as_ratio(s.ratio, "ratio"),
        "seed": v.as_seed(s.seed, "seed"),
        "n_train": v.as_int(s.n_train, "n_train", low=2, optional=True),
        "n_test": v.as_int(s.n_test, "n_test", low=1, optional=True),
        "subset": v.as_real(s.subset, "subset", low=0.0, high=1.0, low_open=True),
        "n_contaminated": v.as_int(s.n_contaminated, "n_contaminated", low=1, optional=True),
        "lr": v.as_positive(s.lr, "lr", optional=True),
        "batch_size": v.as_int(s.batch_size, "batch_size", low=1, optional=True),
        "epochs": v.as_int(s.epochs, "epochs", low=1, optional=True),
        "pretrained": v.as_bool(s.pretrained, "pretrained"),
        "projection_dim": v.as_int(s.projection_dim, "projection_dim", low=1, optional=True),
        "data_root": v.as_text(s.data_root, "data_root", optional=True),
        "weights": v.as_text(s.weights, "weights", optional=True),
    }
    for name, value in values.items():
        object.__setattr__(s, name, value)


def _validate(s: ExperimentSettings) -> None:
    _normalize(s)
    _choice("dataset", s.dataset, DATASETS)
    _choice("glitch", s.glitch, GLITCH_KINDS)
    if not isinstance(s.model, str) or not (
        s.model in MODELS or (s.model.startswith("timm:") and len(s.model) > 5)
    ):
        raise ValueError(
            f"model={s.model!r} is not valid; choose from {', '.join(MODELS)}, or timm:<name>"
        )
    if isinstance(s.ratio, bool) or not isinstance(s.ratio, (int, float)) or not 0 < s.ratio <= 0.5:
        raise ValueError(f"ratio={s.ratio!r} must be a number in (0, 0.5]")
    if isinstance(s.seed, bool) or not isinstance(s.seed, int) or s.seed < 0:
        raise ValueError(f"seed={s.seed!r} must be a non-negative integer")
    _optional_positive_int("n_train", s.n_train, minimum=2)
    _optional_positive_int("n_test", s.n_test, minimum=1)
    if isinstance(s.subset, bool) or not isinstance(s.subset, (int, float)) or not 0 < s.subset <= 1:
        raise ValueError(f"subset={s.subset!r} must be a number in (0, 1]")
    _optional_positive_int("n_contaminated", s.n_contaminated)
    if s.n_contaminated is not None and s.glitch != "class-based":
        raise ValueError(
            f"n_contaminated={s.n_contaminated!r} applies to glitch='class-based' only "
            f"(glitch={s.glitch!r}); leave it None"
        )
    _validate_experiment_fields(s)
    if s.lr is not None and (
        isinstance(s.lr, bool) or not isinstance(s.lr, (int, float)) or not s.lr > 0
    ):
        raise ValueError(f"lr={s.lr!r} must be None or a positive number")
    _optional_positive_int("batch_size", s.batch_size)
    _optional_positive_int("epochs", s.epochs)
    if not isinstance(s.pretrained, bool):
        raise ValueError(f"pretrained={s.pretrained!r} must be True or False")
    _choice("influence", s.influence, INFLUENCE_CHOICES)
    _choice("counterfactual", s.counterfactual, COUNTERFACTUAL_CHOICES)
    _optional_positive_int("projection_dim", s.projection_dim)
    if not isinstance(s.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?|mps", s.device):
        raise ValueError(f"device={s.device!r} is not valid; use cpu, cuda, cuda:<index> or mps")
    for name in ("data_root", "weights"):
        value = getattr(s, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}={value!r} must be None or a path given as a string")
    if s.weights is not None and not s.pretrained:
        raise ValueError(f"weights={s.weights!r} was given with pretrained=False; drop one of them")
    _validate_tabular(s)


def _validate_tabular(s: ExperimentSettings) -> None:
    """Tables go with the tabular models, without pretrained weights or anomalies (SPEC.md section 9.7)."""
    table, tabular_model = s.dataset in TABULAR_DATASETS, s.model in TABULAR_MODELS
    if table != tabular_model:
        models = ", ".join(TABULAR_MODELS)
        raise ValueError(
            f"model={s.model!r} does not fit dataset={s.dataset!r}: tables ({', '.join(TABULAR_DATASETS)}) "
            f"take the tabular models ({models}), images the others")
    if tabular_model and s.pretrained:
        raise ValueError(f"pretrained=True: the tabular model {s.model!r} has no pretrained weights; "
                         "set pretrained=False (it is trained whole)")
    if table and s.glitch in ("anomalies", "mixed"):
        raise ValueError(f"glitch={s.glitch!r} needs out-of-distribution images; anomalies are not defined "
                         f"for tables such as {s.dataset!r}: use uniform or class-based noise")


def _validate_experiment_fields(s: ExperimentSettings) -> None:
    """The fields of SPEC.md section 9's experiments: corruption, test_ratio, test_share."""
    if s.glitch == "corruption":
        _choice("corruption", s.corruption, CORRUPTIONS)
    elif s.corruption is not None:
        raise ValueError(
            f"corruption={s.corruption!r} applies to glitch='corruption' only (glitch={s.glitch!r}); leave it None"
        )
    if isinstance(s.test_ratio, bool) or not isinstance(s.test_ratio, (int, float)) \
            or not 0 <= s.test_ratio <= MAX_TEST_RATIO:
        raise ValueError(f"test_ratio={s.test_ratio!r} must be a number in [0, {MAX_TEST_RATIO}]")
    if s.test_ratio and s.glitch not in ("uniform", "class-based"):
        raise ValueError(
            f"test_ratio={s.test_ratio!r} needs label noise of the same kind in training: "
            f"glitch='uniform' or 'class-based', not {s.glitch!r}; leave it 0"
        )
    if s.test_share is not None:
        if isinstance(s.test_share, bool) or not isinstance(s.test_share, (int, float)) \
                or not 0 < s.test_share <= 1:
            raise ValueError(f"test_share={s.test_share!r} must be None or a number in (0, 1]")
        if s.n_test is not None:
            raise ValueError(f"test_share={s.test_share!r} and n_test={s.n_test!r} both set the validation "
                             "size; give one of them")
