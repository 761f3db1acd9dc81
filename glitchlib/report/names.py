"""Display names and row orders of the book's tables and figures.

The library's codes (``fmnist``, ``efficientnet_lite0``, ``class-based``,
``nil_opt``) become the names a reader sees (Fashion-MNIST, EfficientNet-Lite0,
class-based noise, NIL-opt), and rows follow the order of the name tables:
MNIST before Fashion-MNIST, the paper's models first, the paper's signals last.
Its private helpers are shared by the other modules of
:mod:`glitchlib.report`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["DATASET_NAMES", "MODEL_NAMES", "GLITCH_NAMES", "SIGNAL_NAMES", "SIGNAL_ORDER", "INFLUENCE_SIGNALS",
           "PEER_SIGNALS", "SAME_CLASS_SIGN_SIGNALS", "HEAD_ON_NON_NEGATIVE_FEATURES", "UNINFORMATIVE_MARK",
           "uninformative_signals", "pretty"]


DATASET_NAMES = {
    "mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
    "breast_cancer": "Breast cancer", "wine": "Wine", "digits": "Digits 8x8",
    "covtype": "Forest Cover", "jannis": "Jannis", "epsilon": "Epsilon",
}
MODEL_NAMES = {
    "resnet20": "ResNet-20",
    "vit_b_16": "ViT-B/16",
    "convnext_tiny": "ConvNeXt-T",
    "efficientnet_lite0": "EfficientNet-Lite0",
    "mlp": "MLP",
    "tabular_resnet": "ResNet (tabular)",
    "ft_transformer": "FT-Transformer",
}
GLITCH_NAMES = {
    "uniform": "uniform noise",
    "class-based": "class-based noise",
    "anomalies": "anomalies",
    "mixed": "mixed",
    "corruption": "corrupted images",
    "none": "no glitch",
}
SIGNAL_NAMES = {
    "si": "SI",
    "mi": "MI",
    "mai": "MAI",
    "aai": "AAI",
    "mpi": "MPI",
    "nil": "NIL",
    "nil_opt": "NIL-opt",
    "slip": "#SLIP",
    "slin": "#SLIN",
    "gd_class": "GD-class",
    "cnci": "CNCI",
    "pcid": "PCID",
    "cfrank": "CFRank",
    # dedicated detectors (glitchlib.peers)
    "cleanlab": "cleanlab",
    "loss": "loss",
    "aum": "AUM",
    "knn": "k-NN",
    "mahalanobis": "Mahalanobis",
    "energy": "energy",
}
#: The dedicated detectors of :mod:`glitchlib.peers`: label errors first, then out-of-distribution scores.
PEER_SIGNALS = ("cleanlab", "loss", "aum", "knn", "mahalanobis", "energy")
#: The influence signals of SPEC.md section 4, the paper's new ones last.
INFLUENCE_SIGNALS = tuple(s for s in SIGNAL_NAMES if s not in PEER_SIGNALS)
#: Display order of the signals: the influence signals (the paper's new ones last), then the dedicated detectors.
SIGNAL_ORDER = tuple(SIGNAL_NAMES)
#: Signals that read only the *sign* of the influences on the sample's own labelled class.
SAME_CLASS_SIGN_SIGNALS = ("nil", "slip", "slin")
#: (model, influence setting) whose influence parameters are one linear head on
#: non-negative features: EfficientNet-Lite0 (pooled ReLU6 features; only the head
#: is trained) and ResNet-20 with ``influence="head"`` (pooled ReLU features).
#: ViT-B/16 and ConvNeXt-T heads read LayerNorm outputs, which can be negative, and
#: ResNet-20's default influence layers include the convolutions of ``layer3.2``.
HEAD_ON_NON_NEGATIVE_FEATURES = frozenset({
    ("efficientnet_lite0", "all"), ("efficientnet_lite0", "head"), ("resnet20", "head"),
})
#: Mark appended to a signal's name in a table where it is uninformative.
UNINFORMATIVE_MARK = " †"


def uninformative_signals(model: str, *, influence: str = "all") -> tuple[str, ...]:
    """Signals that carry no information about glitches for runs of ``model`` with this ``influence``.

    For a linear head ``z = W a + b`` on features ``a >= 0``, the per-sample
    gradient of the cross-entropy is ``g = (p - e_y) [a; 1]^T``, so the TracIn
    influence of training sample ``i`` on validation sample ``j`` is
    ``I[i, j] = sum_t lr_t (a_i . a_j + 1) (p_i - e_{y_i}) . (p_j - e_{y_j})``.
    With ``a_i . a_j + 1 > 0`` and, when ``y_i = y_j = c``,
    ``(p_i - e_c) . (p_j - e_c) = sum_{k != c} p_ik p_jk + (1 - p_ic)(1 - p_jc) >= 0``,
    every same-class influence is ``>= 0`` at every checkpoint. So NIL and #SLIN
    are 0 for every sample and #SLIP is the number of validation samples of the
    sample's labelled class: their ranking is tie-breaking (AP = the glitch ratio,
    AUROC = 0.5). Returns :data:`SAME_CLASS_SIGN_SIGNALS` for such runs
    (:data:`HEAD_ON_NON_NEGATIVE_FEATURES`), else an empty tuple.
    """
    return SAME_CLASS_SIGN_SIGNALS if (model, influence) in HEAD_ON_NON_NEGATIVE_FEATURES else ()
_KIND_COLUMNS = {"dataset": DATASET_NAMES, "model": MODEL_NAMES, "glitch": GLITCH_NAMES, "signal": SIGNAL_NAMES}


# ----------------------------------------------------------------------------- names


def pretty(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` with dataset, model, glitch and signal codes as display names.

    Columns named ``dataset``, ``model``, ``glitch`` and ``signal`` are mapped
    (unknown codes are kept as they are); other columns are untouched.
    """
    out = df.copy()
    for column, names in _KIND_COLUMNS.items():
        if column in out.columns:
            out[column] = out[column].map(lambda v, names=names: names.get(v, v))
    return out


def _model_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` whose ``model`` column also names the variant of the run.

    A run with ``pretrained`` False becomes "<model> (random weights)" (except
    the tabular models, which have no pretrained weights), one with
    ``influence`` "head" gets " (head-only influence)", so that tables never
    average a variant into the default model. Model codes become display names.
    """
    from ..models._tabular import TABULAR_MODELS

    out = df.copy()
    if "model" not in out.columns or out.empty:
        return out
    suffix = pd.Series("", index=out.index)
    if "pretrained" in out.columns:
        scratch = out["pretrained"].astype(str).str.lower().isin(["false", "0"]) & ~out["model"].isin(TABULAR_MODELS)
        suffix = suffix.where(~scratch, suffix + " (random weights)")
    if "influence" in out.columns:
        head = out["influence"].astype(str) == "head"
        suffix = suffix.where(~head, suffix + " (head-only influence)")
    out["model"] = out["model"].map(lambda m: MODEL_NAMES.get(m, m)) + suffix
    return out


# ----------------------------------------------------------------------------- helpers


def _require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}; it has {list(df.columns)}")


def _rank(column: str | None, value) -> tuple:
    """Sort key of a code or display name: the order of the name tables first, then alphabetical."""
    names = _KIND_COLUMNS.get(column, {})
    for position, (code, name) in enumerate(names.items()):
        if value == code or value == name:
            return (0, position, "")
        if isinstance(value, str) and value.startswith(name + " ("):
            return (0, position, value)
    return (1, 0, str(value))


def _sort_rows(wide: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order of the name tables (MNIST before Fashion-MNIST, the paper's models first, ...)."""
    levels = list(wide.index.names)
    if isinstance(wide.index, pd.MultiIndex):
        keys = [tuple(_rank(n, v) for n, v in zip(levels, t)) for t in wide.index]
    else:
        keys = [_rank(levels[0], v) for v in wide.index]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return wide.iloc[order]


def _order(values: list, column: str) -> list:
    names = _KIND_COLUMNS.get(column)
    if names is None:
        return values
    known = [v for v in names if v in values]
    return known + [v for v in values if v not in names]


def _pretty_index(wide: pd.DataFrame, columns: str | None) -> pd.DataFrame:
    """Display names in the row index levels and, for ``columns``, in the column labels."""
    wide = wide.copy()
    if isinstance(wide.index, pd.MultiIndex):
        wide.index = pd.MultiIndex.from_tuples(
            [tuple(_KIND_COLUMNS.get(n, {}).get(v, v) for n, v in zip(wide.index.names, t)) for t in wide.index],
            names=wide.index.names,
        )
    else:
        names = _KIND_COLUMNS.get(wide.index.name, {})
        wide.index = pd.Index([names.get(v, v) for v in wide.index], name=wide.index.name)
    if columns in _KIND_COLUMNS:
        wide.columns = [_KIND_COLUMNS[columns].get(c, c) for c in wide.columns]
    wide.columns.name = None
    return wide
