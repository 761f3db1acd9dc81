"""Projections of per-sample gradients (SPEC.md section 3, optional speed-up).

``IdentityProjector`` is the default: it leaves the gradients as they are, so the
engine's exact closed forms apply; it is the oracle the random projection is
checked against. ``GaussianProjector`` maps each flattened per-sample gradient
``g`` (``p`` numbers) to ``P_t g`` with ``P_t`` a ``k x p`` matrix of independent
``N(0, 1/k)`` entries drawn from ``(seed, checkpoint index)``. Because
``E[P^T P] = I``, ``<P g, P g'>`` is an unbiased estimate of ``<g, g'>``
(Johnson-Lindenstrauss), with relative spread about ``sqrt(2 / k)``.

Linear layers are projected exactly as the definition says: their per-sample
gradient ``d a^T`` is materialised (chunk by chunk) and projected as a whole.
Projecting ``a`` and ``d`` separately would not be a projection of the outer
product, so it is not done.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._gradients import Factors

__all__ = ["IdentityProjector", "GaussianProjector"]

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant to mix seeds


def _stream_seed(seed: int, checkpoint: int, block: int) -> int:
    value = (seed * _MIX + checkpoint * 1_000_003 + block * 7919 + 12345) % (2**63 - 1)
    return value


class IdentityProjector:
    """No projection: gradients stay exact (the default and the oracle)."""

    dim: int | None = None

    def project(self, factors: Factors, checkpoint: int) -> Factors:
        """Return ``factors`` unchanged."""
        return factors

    def __repr__(self) -> str:
        return "IdentityProjector()"


class GaussianProjector:
    """Seeded Gaussian random projection to ``dim`` numbers per sample and checkpoint.

    Parameters
    ----------
    dim : int
        Projected dimension ``k``.
    seed : int
        Base seed; checkpoint ``t`` uses the stream ``(seed, t)``, so train and
        test samples are projected with the same matrix and results are
        reproducible (also across devices: matrices are drawn on the CPU).
    block : int
        Columns of ``P`` drawn per random stream; bounds the temporary memory.
    cache_bytes : int
        Drawn blocks are kept (per device and dtype) up to this many bytes and
        redrawn beyond it.
    """

    def __init__(self, *, dim: int, seed: int = 0, block: int = 8192, cache_bytes: int = 2**30):
        from .._validation import as_int, as_seed

        self.dim = as_int(dim, "projection_dim", low=1)
        self.seed = as_seed(seed)
        self.block = as_int(block, "block", low=1)
        self.cache_bytes = as_int(cache_bytes, "cache_bytes", low=0)
        self._cache: dict[tuple, Tensor] = {}
        self._cached = 0

    def matrix_block(self, checkpoint: int, index: int, width: int, like: Tensor) -> Tensor:
        """Columns ``[index * block, index * block + width)`` of ``P_t``, ``dim x width``."""
        key = (checkpoint, index, width, like.device, like.dtype)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        gen = torch.Generator().manual_seed(_stream_seed(self.seed, checkpoint, index))
        block = torch.randn(self.dim, width, generator=gen, dtype=torch.float64)
        block = (block / math.sqrt(self.dim)).to(device=like.device, dtype=like.dtype)
        size = block.numel() * block.element_size()
        if self._cached + size <= self.cache_bytes:
            self._cache[key] = block
            self._cached += size
        return block

    def project(self, factors: Factors, checkpoint: int) -> Factors:
        """Materialise the per-sample gradients and project them: ``n x dim`` flat factors."""
        g = factors.materialise()
        out = g.new_zeros(g.shape[0], self.dim)
        for index, start in enumerate(range(0, g.shape[1], self.block)):
            cols = g[:, start : start + self.block]
            out.addmm_(cols, self.matrix_block(checkpoint, index, cols.shape[1], g).T)
        return Factors([], [out])

    def __repr__(self) -> str:
        return f"GaussianProjector(dim={self.dim}, seed={self.seed})"
