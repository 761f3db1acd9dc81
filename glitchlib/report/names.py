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

__all__ = ["DATASET_NAMES", "MODEL_NAMES", "GLITCH_NAMES", "SIGNAL_NAMES", "SIGNAL_ORDER", "pretty", "model_variants"]


DATASET_NAMES = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
MODEL_NAMES = {
    "resnet20": "ResNet-20",
    "vit_b_16": "ViT-B/16",
    "convnext_tiny": "ConvNeXt-T",
    "efficientnet_lite0": "EfficientNet-Lite0",
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
}
#: Display order of the signals: the paper's new ones last.
SIGNAL_ORDER = tuple(SIGNAL_NAMES)
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


def model_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` whose ``model`` column also names the variant of the run.

    A run with ``pretrained`` False becomes "<model> (random weights)", one
    with ``influence`` "head" gets " (head-only influence)", so that tables
    never average a variant into the default model. Model codes become display
    names.
    """
    out = df.copy()
    if "model" not in out.columns or out.empty:
        return out
    suffix = pd.Series("", index=out.index)
    if "pretrained" in out.columns:
        scratch = out["pretrained"].astype(str).str.lower().isin(["false", "0"])
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
