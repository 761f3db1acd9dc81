"""Tables of the tabular-data chapter: the paper's tabular claim beside ours, and peers' scores (SPEC.md 9.7).

The paper's claim on tables (Forest Cover, Jannis, Epsilon x MLP, ResNet,
FT-Transformer, 10 % uniform noise): CNCI beats every earlier influence signal,
with an F1 of 0.65 on average.  F1 is that of the top-``k`` flags, ``k`` the
number of mislabeled samples (SPEC.md section 5); a higher score is more
suspicious for every signal and peer.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .names import DATASET_NAMES, _model_variants

__all__ = ["EARLIER_SIGNALS", "PAPER_TABULAR_CNCI_F1", "tabular_claim", "peer_f1", "influence_parameters"]

#: The influence signals that predate the paper (SPEC.md section 4).
EARLIER_SIGNALS = ("si", "mi", "mai", "aai", "mpi", "nil", "nil_opt", "slip", "slin", "gd_class")
#: The paper's average F1 of CNCI over its tabular datasets and models (SPEC.md section 9.7).
PAPER_TABULAR_CNCI_F1 = 0.65


def tabular_claim(metrics: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """The paper's tabular claim beside ours: one row each.

    Parameters
    ----------
    metrics : DataFrame
        Tidy metrics (``store.load_metrics()``) of tabular runs: columns
        ``dataset``, ``model``, ``seed``, ``signal``, ``f1``.
    digits : int
        Decimals of our mean F1.

    Returns
    -------
    DataFrame
        Rows "paper" and "ours"; columns: CNCI's F1 averaged over dataset x model
        pairs (each pair first averaged over seeds), and the share of pairs in
        which CNCI's mean F1 is at least that of every earlier signal.  Empty
        when ``metrics`` holds no CNCI rows.
    """
    if metrics.empty or "cnci" not in set(metrics["signal"]):
        return pd.DataFrame()
    means = _model_variants(metrics).groupby(["dataset", "model", "signal"])["f1"].mean().unstack("signal")
    earlier = [s for s in EARLIER_SIGNALS if s in means.columns]
    wins = (means["cnci"] >= means[earlier].max(axis=1) - 1e-12) if earlier else pd.Series(dtype=bool)
    return pd.DataFrame(
        {"mean F1 of CNCI": [PAPER_TABULAR_CNCI_F1, round(float(means["cnci"].mean()), digits)],
         "CNCI at least as good as every earlier signal": [
             "3 datasets x 3 models (claimed)", f"{int(wins.sum())} of {len(means)} dataset x model pairs"],
         "datasets": ["Forest Cover, Jannis, Epsilon",
                      ", ".join(DATASET_NAMES.get(d, d) for d in sorted(set(metrics["dataset"])))]},
        index=pd.Index(["paper", "ours"], name="source"))


def peer_f1(store, settings: Sequence, *, peer: str = "cleanlab") -> pd.DataFrame:
    """F1 of CNCI and of a peer detector's stored score column, per run, as tidy metrics rows.

    Parameters
    ----------
    store : glitchlib.store.Store
        The results store.
    settings : sequence of ExperimentSettings
        The runs to read; runs not finished, or whose scores table has no
        ``peer`` column, are skipped.
    peer : str
        Column of the scores table holding the peer's score (higher = more
        likely mislabeled), e.g. ``"cleanlab"``.

    Returns
    -------
    DataFrame
        Columns ``key, dataset, model, glitch, ratio, seed, pretrained, influence,
        signal, f1`` (``signal`` is ``"cnci"`` or ``peer``), ready for
        :func:`~glitchlib.report.compare_signals`; empty when no run has the column.
    """
    from ..metrics import detection_f1
    from ..store import IncompatibleEntry

    rows = []
    for s in settings:
        try:
            scores = store.load_scores(s.key())
        except (FileNotFoundError, IncompatibleEntry):
            continue
        if peer not in scores.columns:
            continue
        mask = scores["mask"].to_numpy(bool)
        for signal in ("cnci", peer):
            rows.append({"key": s.key(), "dataset": s.dataset, "model": s.model, "glitch": s.glitch,
                         "ratio": s.ratio, "seed": s.seed, "pretrained": s.pretrained, "influence": s.influence,
                         "signal": signal, "f1": detection_f1(scores[signal].to_numpy(float), mask)})
    return pd.DataFrame(rows, columns=["key", "dataset", "model", "glitch", "ratio", "seed", "pretrained",
                                       "influence", "signal", "f1"])



def influence_parameters(*, n_features: int, n_classes: int) -> pd.DataFrame:
    """What TracIn differentiates in each tabular model, for a table of ``n_features`` columns.

    Returns
    -------
    DataFrame
        One row per model: its parameter count, the influence parameters (weights
        and biases of every ``Linear`` and of the FT-Transformer's feature
        tokenizer; SPEC.md section 9.7) and the modules whose parameters are
        trained but not differentiated (normalisation layers, the [CLS] token).
    """
    from .. import models
    from ..influence._layers import resolve_layers
    from .names import MODEL_NAMES

    rows = []
    for name in models.TABULAR_MODELS:
        net = models.create(name, n_classes=n_classes, pretrained=False, n_features=n_features).suffix
        params = dict(net.named_parameters())
        used = {p for layer in resolve_layers(net, layers=None) for p in layer.parameter_names}
        rest = sorted({p.rsplit(".", 1)[0].removeprefix("net.") for p in params if p not in used})
        rows.append({"model": MODEL_NAMES.get(name, name), "parameters": sum(v.numel() for v in params.values()),
                     "influence parameters": sum(params[p].numel() for p in used),
                     "not differentiated": ", ".join(rest) or "-"})
    return pd.DataFrame(rows).set_index("model")
