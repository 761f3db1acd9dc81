"""Settings: the names an experiment is made of, one grid cell, and how models are trained.

The one settings module of the package, a leaf: it imports neither torch nor any
glitchlib module but :mod:`glitchlib._validation` (the checks of every argument),
so that settings can be built, checked and keyed anywhere, cheaply. It holds

* the names an experiment is made of (:data:`DATASETS`, :data:`GLITCHES`,
  :data:`SAMPLE_KINDS`, :data:`CORRUPTIONS`, :data:`MODEL_NAMES`, ...), which
  :mod:`glitchlib.data`, :mod:`glitchlib.glitches` and :mod:`glitchlib.models`
  re-export. A *glitch* is the family a run injects (``"uniform"``,
  ``"class-based"``, ...); a sample's *kind* is what one training sample turned
  out to be (``"clean"``, ``"mislabeled"``, ``"anomaly"``, ``"corrupted"``);
* :class:`ExperimentSettings`, one cell of the grid "dataset x model x glitch x
  ratio x seed" plus every option that changes its numbers. Its
  :meth:`~ExperimentSettings.key` names the results-store entry that holds the
  cell's results, so that a finished cell is never computed twice;
* :class:`TrainSettings` (learning rate, batch size, epochs) registered per
  dataset and model (:func:`training_settings`), and their resolution for a
  cell (:func:`resolve_training_settings`).

The named grids of cells (``tiny``, ``embedded``, ``paper``, ...) and whether a
cell can run on this machine live in :mod:`glitchlib.profiles`.

Training settings
-----------------
``PAPER_TRAINING`` is the table of SPEC.md section 1 (learning rate, batch size,
epochs per dataset and model, as the paper reports them).  SPEC.md section 7
records one discrepancy with the public code, kept in ``PUBLIC_CODE_TRAINING``:
its configs use lr 0.1 (not 0.01) for ResNet on MNIST and Fashion-MNIST.  The
paper's values are the default.

Two models that the paper does not use get settings of their own, chosen by
``benchmarks/sweep_input_size.py`` on the embedded data (stratified 10 % subsets;
2 CPU cores):

* ``efficientnet_lite0`` (ImageNet weights, frozen, new linear head on the 1280
  pooled features): the default model of the offline book.
* ``resnet20`` with ``pretrained=False`` (random weights, every layer trained:
  the "from scratch" setting, used where the CIFAR-10 checkpoint is out of reach).

Input-size sweep for ``efficientnet_lite0`` (``sizes`` stage, ``--threads 1``):
embedded Fashion-MNIST, 1,000 training / 500 validation images (stratified,
clean labels), head trained 10 epochs, best of lr 0.05 / 0.2 / 0.5; throughput
of the frozen prefix is the best of three passes over 64 images on one CPU
thread (on two cores shared with other jobs, one thread was faster than two)::

    input size   images/s   minutes per 26,000 images   val. accuracy
            64      570                 0.8                  0.804
            96      194                 2.2                  0.828
           128       81                 5.3                  0.860
           160       44                 9.9                  0.858
           224       18                23.7                  0.856

Accuracy stops improving at 128 while the cost keeps growing (224 costs 4.4 times
as much), so ``glitchlib.models.EFFICIENTNET_LITE0_INPUT_SIZE = 128``.

Learning-rate sweep (``settings`` stage): the whole embedded training set (6,000)
with 10 % class-based noise (seed 0), clean validation set (1,000), batch 128,
validation accuracy after epochs 5 / 10 / 15:

* ``efficientnet_lite0``, Fashion-MNIST: lr 0.005: 0.808 / 0.817 / 0.832;
  0.01: 0.817 / 0.839 / 0.843; 0.02: 0.817 / 0.851 / 0.851; 0.05: 0.768 / 0.844 /
  0.820; 0.1: 0.621 / 0.830 / 0.658 (unstable).
* ``efficientnet_lite0``, MNIST: lr 0.005: 0.851 / 0.880 / 0.888; 0.01: 0.876 /
  0.895 / 0.905; 0.02: 0.891 / 0.910 / 0.918; 0.05: 0.884 / 0.905 / 0.914; 0.1:
  0.784 / 0.844 / 0.859 (unstable).
* ``resnet20`` from scratch, Fashion-MNIST (7 epochs only: 75 s per epoch here):
  lr 0.1: 0.778 after 5, 0.797 after 7, unstable (0.392 after 3); lr 0.05: 0.737
  after 5, 0.793 after 7, smoother.

Chosen: lr 0.02 for 10 epochs for ``efficientnet_lite0`` (the most stable of the
best learning rates on both datasets; the head trains on cached features in
seconds), lr 0.05 for 7 epochs (the paper's ResNet epoch count) for ``resnet20``
from scratch.  For comparison, a head on a *random* frozen
``efficientnet_lite0`` backbone reaches at best 0.39 on the same Fashion-MNIST
task (lr 0.00001 ... 0.5, 10 epochs).

Tabular models (SPEC.md section 9.7; the paper gives no training settings for
them): ``benchmarks/sweep_tabular.py`` on scikit-learn's shipped tables,
stratified 80/20 split, 10 % uniform noise (seed 0), plain SGD, validation
accuracy after 5 / 10 / 20 epochs::

    model           batch  lr     breast_cancer        wine                 digits
    mlp             32     0.01   .921 .921 .921       .889 .944 .944       .805 .864 .930
    mlp             32     0.03   .921 .939 .939       .944 .944 .944       .903 .947 .953
    mlp             32     0.1    .939 .904 .912       .972 .917 .861       .953 .964 .964
    mlp             128    0.1    .921 .921 .939       .889 .944 .917       .894 .944 .958
    tabular_resnet  32     0.01   .947 .956 .930       .917 .917 .944       .955 .969 .969
    tabular_resnet  32     0.03   .930 .930 .895       .889 .917 .944       .972 .967 .958
    tabular_resnet  128    0.03   .930 .956 .939       .889 .917 .944       .944 .964 .969

(lr 0.3 and, for the ResNet, lr 0.1 at batch 32 are unstable.)  The
FT-Transformer learns slowly with plain SGD (Gorishniy et al. train it with
AdamW), and its validation accuracy oscillates from epoch to epoch at every
setting.  On wine, lr 0.1 and 0.3 (batch 32 or 128) stay at 0.28-0.39 for 20
epochs (one class), batch 128 at lr 0.01-0.03 reaches at most 0.44, and lr 0.001
at most 0.39.  Batch 16, after 5 / 10 / 20 / 30 epochs::

    lr     breast_cancer              wine                       digits
    0.01   .825 .386 .912 .939        .556 .306 .750 .972        .100 .117 .418 .730
    0.02   .930 .754 .939 .939        .361 .278 .472 .917        .100 .100 .476 .702
    0.03   .632 .368 .930 .939        .278 .278 .556 .944        .100 .100 .546 .772

Chosen, for every table: ``mlp`` lr 0.03, batch 32, 10 epochs; ``tabular_resnet``
lr 0.01, batch 32, 10 epochs; ``ft_transformer`` lr 0.01, batch 16, 30 epochs
(the steadiest curves on the two small tables).  The paper's tables (covtype,
jannis, epsilon) are not available offline: they get the same values, not swept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import _validation

__all__ = [
    "IMAGE_DATASETS",
    "SHIPPED_TABLES",
    "DOWNLOADED_TABLES",
    "TABULAR_DATASETS",
    "DATASETS",
    "GLITCHES",
    "SAMPLE_KINDS",
    "CLEAN",
    "MISLABELED",
    "ANOMALY",
    "CORRUPTED",
    "CORRUPTIONS",
    "TABULAR_MODELS",
    "MODEL_NAMES",
    "MODELS",
    "INFLUENCE_CHOICES",
    "COUNTERFACTUAL_CHOICES",
    "ExperimentSettings",
    "TrainSettings",
    "PAPER_TRAINING",
    "PUBLIC_CODE_TRAINING",
    "OWN_TRAINING",
    "default_pretrained",
    "training_settings",
    "resolve_training_settings",
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
#: Glitches, the families a run injects (SPEC.md section 2; "corruption" section 9.4,
#: "none" the clean twin); :func:`glitchlib.glitches.inject` takes one by name.
GLITCHES = ("uniform", "class-based", "anomalies", "mixed", "corruption", "none")
#: Kinds of training sample, what one sample turned out to be after injection
#: (``GlitchSet.kind``, the ``kind`` column of a run's scores).
CLEAN, MISLABELED, ANOMALY, CORRUPTED = "clean", "mislabeled", "anomaly", "corrupted"
SAMPLE_KINDS = (CLEAN, MISLABELED, ANOMALY, CORRUPTED)
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


@dataclass(frozen=True, kw_only=True)
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
    glitch: str = _help("Glitch: one of " + ", ".join(GLITCHES) + ".", "class-based")
    ratio: float = _help("Glitch ratio in (0, 0.5] (for mixed: the ratio of each of its two glitches).", 0.1)
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
    pretrained: bool | None = _help(
        "Pretrained backbone weights (False: random weights, the from-scratch setting). None: the "
        "model's own, True for the image models and False for the tabular models (no pretrained weights).",
        None,
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
        "Directory holding the official dataset files (None: the embedded MNIST and Fashion-MNIST, and "
        "$XDG_CACHE_HOME/glitchlib/data (~/.cache/glitchlib/data) for every other dataset).", None
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
        "pretrained": default_pretrained(s.model) if s.pretrained is None else v.as_bool(s.pretrained, "pretrained"),
        "projection_dim": v.as_int(s.projection_dim, "projection_dim", low=1, optional=True),
        "data_root": v.as_text(s.data_root, "data_root", optional=True),
        "weights": v.as_text(s.weights, "weights", optional=True),
    }
    for name, value in values.items():
        object.__setattr__(s, name, value)


def _validate(s: ExperimentSettings) -> None:
    _normalize(s)
    _choice("dataset", s.dataset, DATASETS)
    _choice("glitch", s.glitch, GLITCHES)
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


# ----------------------------------------------------------------------------- training settings

@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How the suffix is trained: plain SGD, cross-entropy, shuffled batches (SPEC.md section 1).

    Attributes
    ----------
    lr : float
        Constant learning rate (no momentum, no weight decay); stored in every checkpoint.
    batch_size : int
        Mini-batch size; batches are reshuffled every epoch.
    epochs : int
        Number of epochs, hence of checkpoints.
    source : str
        Where the values come from: "paper", "public code", "sweep" (our sweep on
        the embedded data), "not swept" (values carried over from a swept
        dataset), or "user".
    notes : str
        Free text: discrepancies, how the values were chosen.
    """

    lr: float
    batch_size: int = 128
    epochs: int = 7
    source: str = "user"
    notes: str = ""

    def __post_init__(self) -> None:
        from ._validation import as_int, as_positive

        # by value (numpy numbers accepted), stored as plain Python numbers
        object.__setattr__(self, "lr", as_positive(self.lr, "lr"))
        object.__setattr__(self, "batch_size", as_int(self.batch_size, "batch_size", low=1))
        object.__setattr__(self, "epochs", as_int(self.epochs, "epochs", low=1))

    def to_dict(self) -> dict[str, object]:
        """Plain dict of the fields (saved next to results)."""
        return asdict(self)


def _paper(lr: float, epochs: int) -> TrainSettings:
    return TrainSettings(lr=lr, batch_size=128, epochs=epochs, source="paper",
                         notes="SPEC.md section 1, as the paper reports it")


#: SPEC.md section 1: (dataset, model) -> settings, as the paper reports them.
PAPER_TRAINING: dict[tuple[str, str], TrainSettings] = {
    ("mnist", "resnet20"): _paper(0.01, 7),
    ("mnist", "vit_b_16"): _paper(0.1, 2),
    ("mnist", "convnext_tiny"): _paper(0.05, 2),
    ("fmnist", "resnet20"): _paper(0.01, 7),
    ("fmnist", "vit_b_16"): _paper(0.1, 2),
    ("fmnist", "convnext_tiny"): _paper(0.1, 4),
    ("cifar10", "resnet20"): _paper(0.01, 7),
    ("cifar10", "vit_b_16"): _paper(0.1, 4),
    ("cifar10", "convnext_tiny"): _paper(0.1, 3),
}

#: SPEC.md section 7: where the public code's training configs differ from the paper's table.
PUBLIC_CODE_TRAINING: dict[tuple[str, str], TrainSettings] = {
    (dataset, "resnet20"): TrainSettings(
        lr=0.1, batch_size=128, epochs=7, source="public code",
        notes="the public training configs use lr 0.1 for ResNet on MNIST and FMNIST; "
              "the paper reports 0.01 (SPEC.md section 7)")
    for dataset in ("mnist", "fmnist")
}

_SWEEP = "benchmarks/sweep_input_size.py settings"
_IMAGEWOOF = ("the paper gives no ImageWoof settings and the data is not available offline, so not swept: "
              "the paper's CIFAR-10 settings of the same model (SPEC.md sections 1 and 9.10)")
_NOT_SWEPT = "{} is not available offline, so not swept: the Fashion-MNIST values"


def _own(lr: float, epochs: int, notes: str, source: str = "sweep") -> TrainSettings:
    return TrainSettings(lr=lr, batch_size=128, epochs=epochs, source=source, notes=notes)


_EFFNET = ("head on frozen ImageNet features at 128 px; chosen by {} on the embedded data with "
           "10 % class-based noise (val. accuracy {} after 10 epochs, seed 0)")
_SCRATCH = ("random weights, every layer trained; chosen by {} on the embedded Fashion-MNIST with "
            "10 % class-based noise (val. accuracy 0.793 after 7 epochs, seed 0)")

#: Settings of our own (not in the paper), keyed by (dataset, model, pretrained).
OWN_TRAINING: dict[tuple[str, str, bool], TrainSettings] = {
    ("fmnist", "efficientnet_lite0", True): _own(0.02, 10, _EFFNET.format(_SWEEP, "0.851")),
    ("mnist", "efficientnet_lite0", True): _own(0.02, 10, _EFFNET.format(_SWEEP, "0.910")),
    ("cifar10", "efficientnet_lite0", True): _own(0.02, 10, _NOT_SWEPT.format("CIFAR-10"), "not swept"),
    ("fmnist", "resnet20", False): _own(0.05, 7, _SCRATCH.format(_SWEEP)),
    ("mnist", "resnet20", False): _own(
        0.05, 7, "not swept (75 s per epoch on two CPU cores): the Fashion-MNIST values", "not swept"),
    ("cifar10", "resnet20", False): _own(0.05, 7, _NOT_SWEPT.format("CIFAR-10"), "not swept"),
    ("imagewoof", "vit_b_16", True): _own(0.1, 4, _IMAGEWOOF, "not swept"),
    ("imagewoof", "convnext_tiny", True): _own(0.1, 3, _IMAGEWOOF, "not swept"),
    ("imagewoof", "efficientnet_lite0", True): _own(0.02, 10, _NOT_SWEPT.format("ImageWoof"), "not swept"),
}


_TABULAR_SWEEP = ("chosen by benchmarks/sweep_tabular.py on scikit-learn's shipped tables with 10 % uniform "
                  "noise (the paper gives no tabular settings)")
#: Tabular models (always trained from random weights): model -> (lr, batch size, epochs).
_TABULAR_CHOICE = {"mlp": (0.03, 32, 10), "tabular_resnet": (0.01, 32, 10), "ft_transformer": (0.01, 16, 30)}


def _tabular_training() -> dict[tuple[str, str, bool], TrainSettings]:
    out = {}
    for model, (lr, batch, epochs) in _TABULAR_CHOICE.items():
        for dataset in ("breast_cancer", "wine", "digits"):
            out[(dataset, model, False)] = TrainSettings(lr=lr, batch_size=batch, epochs=epochs, source="sweep",
                                                          notes=_TABULAR_SWEEP)
        for dataset in ("covtype", "jannis", "epsilon"):
            out[(dataset, model, False)] = TrainSettings(
                lr=lr, batch_size=batch, epochs=epochs, source="not swept",
                notes=f"{dataset} is not available offline, so not swept: the values swept on the shipped tables")
    return out


OWN_TRAINING.update(_tabular_training())


def default_pretrained(model: str) -> bool:
    """Whether ``model`` starts from pretrained weights unless told otherwise.

    True for the image models (pretrained backbones, SPEC.md section 1); False for
    the tabular models (:data:`TABULAR_MODELS`), which have no pretrained weights
    and are trained whole (SPEC.md section 9.7).
    """
    return model not in TABULAR_MODELS


def training_settings(dataset: str, model: str, *, pretrained: bool | None = None,
                      variant: str = "paper") -> TrainSettings:
    """Settings for training ``model`` on ``dataset``.

    Parameters
    ----------
    dataset : str
        ``"mnist"``, ``"fmnist"`` or ``"cifar10"``.
    model : str
        A registry name of ``glitchlib.models.create``.
    pretrained : bool or None
        ``False`` selects the from-scratch settings (random weights, every layer
        trained); available for ``resnet20`` and the tabular models. None (default):
        :func:`default_pretrained` of ``model``.
    variant : str
        ``"paper"`` (default, SPEC.md section 1) or ``"public-code"`` (the public
        code's configs where they differ, SPEC.md section 7; otherwise the paper's).

    Raises
    ------
    ValueError
        Unknown variant, or no settings for this (dataset, model, pretrained); build
        a ``TrainSettings(lr=..., batch_size=..., epochs=...)`` yourself then.
    """
    from ._validation import as_bool

    pretrained = default_pretrained(model) if pretrained is None else as_bool(pretrained, "pretrained")
    if variant not in ("paper", "public-code"):
        raise ValueError(f"variant={variant!r}: choose 'paper' or 'public-code'.")
    key = (dataset, model)
    if pretrained and variant == "public-code" and key in PUBLIC_CODE_TRAINING:
        return PUBLIC_CODE_TRAINING[key]
    if pretrained and key in PAPER_TRAINING:
        return PAPER_TRAINING[key]
    if (dataset, model, bool(pretrained)) in OWN_TRAINING:
        return OWN_TRAINING[(dataset, model, bool(pretrained))]
    known = sorted({f"{d}/{m}" + ("" if p else " (pretrained=False)") for d, m, p in OWN_TRAINING}
                   | {f"{d}/{m}" for d, m in PAPER_TRAINING})
    raise ValueError(
        f"no training settings for dataset={dataset!r}, model={model!r}, pretrained={pretrained}. "
        f"Known: {', '.join(known)}. Pass TrainSettings(lr=..., batch_size=..., epochs=...) instead."
    )


def resolve_training_settings(settings) -> TrainSettings:
    """The ``TrainSettings`` of a run: the registered ones with its ``lr``/``batch_size``/``epochs`` overrides.

    Parameters
    ----------
    settings : ExperimentSettings
        Its ``dataset``, ``model``, ``pretrained`` pick the registered settings
        (:func:`training_settings`); its ``lr``, ``batch_size``, ``epochs``, where not
        None, replace theirs. With all three given no registered entry is needed
        (e.g. ``timm:`` models), and ``source`` is ``"user"``.

    Raises
    ------
    ValueError
        No registered settings and not all three given.
    """
    overrides = {k: getattr(settings, k) for k in ("lr", "batch_size", "epochs") if getattr(settings, k) is not None}
    if len(overrides) == 3:
        return TrainSettings(**overrides, source="user")
    base = training_settings(settings.dataset, settings.model, pretrained=settings.pretrained)
    return replace(base, **overrides, source="user") if overrides else base
