"""How the influence matrix's cost grows with ``n``, ``m`` and ``d`` (SPEC.md section 9.9: ``O(T n m d)``).

Each point computes one train-to-validation matrix ``I`` (``n x m``, ``T``
checkpoints) with :class:`glitchlib.influence.TracIn` and records:

* ``seconds``: wall-clock time of ``TracIn.train_test`` (the fastest of ``repeats``);
* ``peak_mib``: peak memory the call added (:class:`~glitchlib.cost.measure.PeakMemory`),
  and ``beyond_matrix_mib``, the same minus the returned matrix (``n * m * 4`` bytes);
* ``mm_seconds``: ``torch.mm`` doing the dot products the call does, with the
  same shapes, in the same process (:func:`~glitchlib.cost.measure.matmul_seconds`);
* ``mm_share = mm_seconds / seconds``: the share of the matrix-multiply bound the
  whole call reaches (1 = as fast as the bare products; the rest is computing
  the per-sample gradients and the bookkeeping).

Cases (``d`` is the number of gradient entries per sample and checkpoint):

* ``linear head``: ``nn.Linear(features, n_classes)`` on cached features (weights
  and bias, ``d = (features + 1) * n_classes``). Its gradient factors
  (SPEC.md section 3, closed form): the dot products are one product over the
  ``features + 1`` activations and one over the ``T * n_classes`` output
  gradients;
* ``resnet20 layer3.2+fc``: the suffix of ResNet-20 (random weights) on
  ``64 x 7 x 7`` prefix outputs, influence layers ``layer3.2.conv1``,
  ``layer3.2.conv2`` and ``fc`` (``d = 74,378``): per checkpoint, a product over
  the ``73,728`` convolution weights and two over ``fc``'s factors;
* ``resnet20 projected to k``: the same gradients through a Gaussian random
  projection to ``k`` numbers (``d = k``): one product over ``k`` per checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import _validation
from .measure import PeakMemory, matmul_seconds, timed

__all__ = [
    "BOOK_SCALING", "ScalingSettings", "growth_summary", "plot_scaling", "run_scaling",
]

_MIB = 2**20


@dataclass(frozen=True, kw_only=True)
class ScalingSettings:
    """The sweeps of :func:`run_scaling`; saved beside the result.

    Attributes
    ----------
    n_values : tuple of int
        Training sizes of the ``n`` sweep (linear head, ``m = m_fixed``).
    m_values : tuple of int
        Validation sizes of the ``m`` sweep (linear head, ``n = n_fixed``).
    n_fixed, m_fixed : int
        The other size in the ``n`` and ``m`` sweeps.
    d_n, d_m : int
        Sizes of the ``d`` sweep (every case at ``n = d_n``, ``m = d_m``).
    k_values : tuple of int
        Projection sizes of the ``d`` sweep.
    features : int
        Input width of the linear head (1,280: ``efficientnet_lite0``'s pooled features).
    n_classes : int
        Outputs of every model.
    checkpoints : int
        ``T``.
    repeats : int
        Timed repetitions of each matrix; ``seconds`` is the fastest (the least
        disturbed by other processes), memory is measured on the first.
    seed : int
        Seeds the inputs, labels, checkpoints and projections.
    device : str
        Where to compute.
    """

    n_values: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 60_000)
    m_values: tuple[int, ...] = (100, 300, 1_000, 3_000, 10_000)
    n_fixed: int = 6_000
    m_fixed: int = 1_000
    d_n: int = 2_000
    d_m: int = 1_000
    k_values: tuple[int, ...] = (64, 256, 1_024)
    features: int = 1280
    n_classes: int = 10
    checkpoints: int = 4
    repeats: int = 2
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("n_values", "m_values", "k_values"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ValueError(f"{name}={values!r}: need a non-empty tuple of positive sizes")
        for name in ("n_fixed", "m_fixed", "d_n", "d_m", "features", "n_classes", "checkpoints", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: need a positive integer")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#: Cheap sweeps for the book (about a minute on two idle CPU cores).
BOOK_SCALING = ScalingSettings(n_values=(5_000, 10_000, 20_000, 40_000), m_values=(250, 500, 1_000, 2_000),
                               n_fixed=4_000, m_fixed=500, d_n=256, d_m=128, k_values=(256,))


def _checkpoints(model: nn.Module, t: int, gen: torch.Generator) -> list[tuple[dict, float]]:
    state = model.state_dict()
    return [({k: v + 0.05 * v.float().std().nan_to_num() * torch.randn(v.shape, generator=gen)
              if v.is_floating_point() else v for k, v in state.items()}, 0.1) for _ in range(t)]


def _case(name: str, s: ScalingSettings, n: int, m: int, k: int | None, gen: torch.Generator):
    """Model, influence layers, inputs, labels and the products' shapes of one case."""
    t, c = s.checkpoints, s.n_classes
    if name == "linear head":
        model = nn.Linear(s.features, c)
        x = torch.randn(n + m, s.features, generator=gen)
        layers = [""]
        d = (s.features + 1) * c
        shapes = [(n, s.features + 1, m, 1), (n, t * c, m, 1)]
    else:
        from ..models import create

        model = create("resnet20", n_classes=c, pretrained=False, freeze=True, seed=s.seed).suffix
        x = torch.randn(n + m, 64, 7, 7, generator=gen).relu()
        layers = ["layer3.2", "fc"]
        conv = sum(p.numel() for name_, p in model.named_parameters() if "conv" in name_)
        d = conv + 65 * c if k is None else k
        shapes = [(n, conv, m, t), (n, 65, m, t), (n, c, m, t)] if k is None else [(n, k, m, t)]
    y = torch.randint(0, c, (n + m,), generator=gen)
    return model, layers, x, y, d, shapes


def _measure_point(case: str, n: int, m: int, settings: ScalingSettings, *, k: int | None = None) -> dict[str, Any]:
    """Time and memory of one influence matrix, and its matrix-multiply bound.

    Parameters
    ----------
    case : {"linear head", "resnet20"}
        The model (see the module docstring).
    n, m : int
        Training and validation samples.
    settings : ScalingSettings
        Features, classes, checkpoints, seed and device.
    k : int, optional
        Project the gradients to ``k`` numbers (``resnet20`` only).

    Returns
    -------
    dict
        ``case``, ``n``, ``m``, ``d``, ``k``, ``checkpoints``, ``seconds``,
        ``mm_seconds``, ``mm_share``, ``peak_mib``, ``matrix_mib``,
        ``beyond_matrix_mib`` (None where memory cannot be read).

    Raises
    ------
    ValueError
        An unknown case, a projection of the linear head, or a size below 1.
    """
    from ..influence import TracIn

    if case not in ("linear head", "resnet20"):
        raise ValueError(f"case={case!r}: use 'linear head' or 'resnet20'")
    if k is not None and case != "resnet20":
        raise ValueError("k: only the resnet20 case is projected")
    if min(n, m) < 1:
        raise ValueError(f"n={n}, m={m}: need at least one sample each")
    gen = torch.Generator().manual_seed(settings.seed)
    model, layers, x, y, d, shapes = _case(case, settings, n, m, k, gen)
    checkpoints = _checkpoints(model, settings.checkpoints, gen)
    engine = TracIn(model, checkpoints, layers=layers, device=settings.device, projection_dim=k, seed=settings.seed,
                    progress=False)
    engine.train_test(x[:2], y[:2], x[n:n + 2], y[n:n + 2])  # warm-up (one-off initialisation), untimed
    def run():
        return engine.train_test(x[:n], y[:n], x[n:], y[n:])

    with PeakMemory(device=settings.device) as memory:
        matrix, seconds = timed(run, device=settings.device)
    matrix_mib = matrix.numel() * matrix.element_size() / _MIB
    del matrix
    for _ in range(settings.repeats - 1):
        seconds = min(seconds, timed(run, device=settings.device)[1])
    mm = matmul_seconds(shapes, device=settings.device)
    peak = None if memory.peak_bytes is None else memory.peak_bytes / _MIB
    return {"case": case if k is None else f"{case} projected", "n": n, "m": m, "d": d, "k": k,
            "checkpoints": settings.checkpoints, "seconds": seconds, "mm_seconds": mm, "mm_share": mm / seconds,
            "peak_mib": peak, "matrix_mib": matrix_mib,
            "beyond_matrix_mib": None if peak is None else peak - matrix_mib}


def run_scaling(settings: ScalingSettings, *, progress: bool = True) -> pd.DataFrame:
    """Every point of the three sweeps: one row per point.

    Columns ``sweep`` (``"n"``, ``"m"`` or ``"d"``), ``case``, ``n``, ``m``, ``d``,
    ``k``, ``checkpoints``, ``seconds``, ``mm_seconds``, ``mm_share``, ``peak_mib``,
    ``matrix_mib`` and ``beyond_matrix_mib`` (None where memory cannot be read);
    see the module docstring. A ``settings.device`` this machine does not have
    raises ``ValueError`` before anything is measured.
    """
    s = settings
    _validation.as_device(s.device)
    progress = _validation.as_bool(progress, "progress")
    points = [("n", "linear head", n, s.m_fixed, None) for n in sorted(s.n_values)]
    points += [("m", "linear head", s.n_fixed, m, None) for m in sorted(s.m_values)]
    points += [("d", "linear head", s.d_n, s.d_m, None), ("d", "resnet20", s.d_n, s.d_m, None)]
    points += [("d", "resnet20", s.d_n, s.d_m, k) for k in sorted(s.k_values)]
    rows = []
    for sweep, case, n, m, k in tqdm(points, desc="influence scaling", disable=not progress, leave=False):
        rows.append({"sweep": sweep, **_measure_point(case, n, m, s, k=k)})
    return pd.DataFrame(rows)


def _growth_exponent(table: pd.DataFrame, sweep: str, column: str = "seconds") -> float:
    """Slope of ``log(column)`` against ``log(size)`` over the points of ``sweep`` ("n" or "m").

    1 means linear growth, 0 flat. Least squares over all points of the sweep.
    """
    if sweep not in ("n", "m"):
        raise ValueError(f"sweep={sweep!r}: use 'n' or 'm'")
    rows = table[table["sweep"] == sweep]
    values = rows[column].astype(float).to_numpy()
    if len(rows) < 2 or (values <= 0).any():
        raise ValueError(f"sweep {sweep!r} needs at least two points with positive {column}")
    return float(np.polyfit(np.log(rows[sweep].to_numpy(float)), np.log(values), 1)[0])


def plot_scaling(table: pd.DataFrame):
    """Seconds (glitchlib and the ``torch.mm`` bound) against ``n``, ``m`` and ``d``, and peak memory against ``n``."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, StrMethodFormatter

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, sweep in zip(axes, ("n", "m", "d")):
        rows = table[table["sweep"] == sweep].sort_values(sweep)
        style = ("o", "s") if sweep == "d" else ("o-", "s--")  # the d points are different models: no lines
        ax.loglog(rows[sweep], rows["seconds"], style[0], label="glitchlib TracIn")
        ax.loglog(rows[sweep], rows["mm_seconds"], style[1], label="torch.mm, same products")
        if sweep == "d":
            for _, r in rows.iterrows():
                label = r["case"] if pd.isna(r["k"]) else f"projected, k={r['k']:.0f}"
                ax.annotate(label, (r["d"], r["seconds"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        else:
            ax.set_xticks(rows[sweep].to_numpy())
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
        fixed = rows.iloc[0]
        other = {"n": f"m={fixed['m']}", "m": f"n={fixed['n']}", "d": f"n={fixed['n']}, m={fixed['m']}"}[sweep]
        ax.set(xlabel=sweep, ylabel="seconds", title=f"time against {sweep} ({other})")
    axes[0].legend(fontsize=8)
    rows = table[table["sweep"] == "n"].sort_values("n")
    axes[3].plot(rows["n"], rows["peak_mib"], "o-", label="peak added")
    axes[3].plot(rows["n"], rows["beyond_matrix_mib"], "s--", label="beyond the n x m matrix")
    axes[3].set(xscale="log", xticks=rows["n"].to_numpy(), xlabel="n", ylabel="MiB", ylim=(0, None),
                title="peak memory against n")
    axes[3].xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes[3].xaxis.set_minor_formatter(NullFormatter())
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    return fig


def growth_summary(table: pd.DataFrame) -> str:
    """One sentence: the time exponents in ``n`` and ``m`` and the range of memory beyond the matrix over ``n``."""
    rows = table[table["sweep"] == "n"]
    beyond = rows["beyond_matrix_mib"].dropna()
    memory = (f"memory beyond the n x m matrix stays within {beyond.min():.0f} to {beyond.max():.0f} MiB"
              if len(beyond) else "memory could not be read on this platform")
    return (f"Time grows as n^{_growth_exponent(table, 'n'):.2f} (n from {rows['n'].min():,} to "
            f"{rows['n'].max():,}) and m^{_growth_exponent(table, 'm'):.2f}; {memory} while n grows "
            f"{rows['n'].max() / rows['n'].min():.0f}-fold.")
