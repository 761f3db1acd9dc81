"""The dot-product phase of TracIn: gradient factors in, influence scores out.

With per-checkpoint factors of ``n`` training samples and ``m`` test samples,
:func:`accumulate_cross` adds ``sum_t lr_t <g_t(z_i), g_t(z'_j)>`` to an ``n x m``
block and :func:`self_scores` returns ``sum_t lr_t ||g_t(z_i)||^2`` (SPEC.md
section 3). For a closed-form ``Linear`` layer the dot product is
``(a_i . a'_j) (d_i . d'_j)``: two matrix products and one element-wise product
instead of one product over ``d_in * d_out`` numbers. When a layer's input
activations are the same at every checkpoint (a head on cached features), the sum
over checkpoints factors too:
``sum_t lr_t (a_i . a'_j)(d_ti . d'_tj) = (a_i . a'_j) * ([lr_t d_ti]_t . [d'_tj]_t)``,
so the large product ``A A'^T`` is computed once rather than once per checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._gradients import Factors

__all__ = ["Workspace", "accumulate_cross", "self_scores"]


class Workspace:
    """Reusable scratch matrices (avoids re-allocating, and re-faulting, large blocks)."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def mm(self, name: str, a: Tensor, b: Tensor) -> Tensor:
        """``a @ b`` written into the scratch buffer ``name``."""
        rows, cols = a.shape[0], b.shape[1]
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < rows * cols or buf.dtype != a.dtype or buf.device != a.device:
            buf = torch.empty(rows * cols, dtype=a.dtype, device=a.device)
            self._buffers[name] = buf
        return torch.mm(a, b, out=buf[: rows * cols].view(rows, cols))


def _shares_activations(factors: Sequence[Factors], layer: int) -> bool:
    """Whether closed-form layer ``layer`` has the same input activations at every checkpoint."""
    first = factors[0].linear[layer][0]
    return all(f.linear[layer][0] is first for f in factors[1:])


def accumulate_cross(
    out: Tensor,
    train: Sequence[Factors],
    test: Sequence[Factors],
    learning_rates: Sequence[float],
    *,
    workspace: Workspace | None = None,
) -> Tensor:
    """Add the TracIn train-test influence of one block to ``out``.

    Parameters
    ----------
    out : Tensor
        ``n x m`` block to add to (in place), on the factors' device.
    train : sequence of Factors
        Factors of ``n`` training samples, one per checkpoint.
    test : sequence of Factors
        Factors of ``m`` test samples, one per checkpoint (same layout).
    learning_rates : sequence of float
        ``lr_t`` per checkpoint.
    workspace : Workspace, optional
        Scratch buffers to reuse across calls.

    Returns
    -------
    Tensor
        ``out``, now holding ``out + sum_t lr_t <g_t(z_i), g_t(z'_j)>``.
    """
    ws = workspace or Workspace()
    lrs = [float(lr) for lr in learning_rates]
    for k in range(len(train[0].linear)):
        if _shares_activations(train, k) and _shares_activations(test, k):
            s = ws.mm("act", train[0].linear[k][0], test[0].linear[k][0].T)
            if len(lrs) == 1:
                d_train = train[0].linear[k][1] * lrs[0]
                d_test = test[0].linear[k][1]
            else:
                d_train = torch.cat([f.linear[k][1] * lr for f, lr in zip(train, lrs)], dim=1)
                d_test = torch.cat([f.linear[k][1] for f in test], dim=1)
            out.addcmul_(s, ws.mm("grad", d_train, d_test.T))
        else:
            for f_train, f_test, lr in zip(train, test, lrs):
                s = ws.mm("act", f_train.linear[k][0], f_test.linear[k][0].T)
                p = ws.mm("grad", f_train.linear[k][1], f_test.linear[k][1].T)
                out.addcmul_(s, p, value=lr)
    for f_train, f_test, lr in zip(train, test, lrs):
        for g_train, g_test in zip(f_train.flat, f_test.flat):
            out.addmm_(g_train, g_test.T, alpha=lr)
    return out


def _squared_norms(x: Tensor) -> Tensor:
    return torch.linalg.vecdot(x, x, dim=1)


def self_scores(factors: Sequence[Factors], learning_rates: Sequence[float]) -> Tensor:
    """TracIn self-influence ``sum_t lr_t ||g_t(z_i)||^2`` of ``n`` samples: ``(n,)``."""
    total = None
    for f, lr in zip(factors, learning_rates):
        parts = [_squared_norms(a) * _squared_norms(d) for a, d in f.linear]
        parts += [_squared_norms(g) for g in f.flat]
        score = torch.stack(parts).sum(0) * float(lr)
        total = score if total is None else total + score
    return total
