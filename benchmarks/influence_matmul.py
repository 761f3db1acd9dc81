"""Dot-product phase alone: achieved FLOP/s as a share of ``torch.mm`` on the same shapes.

The phase turns per-sample gradient factors into an ``n x m`` block of the
influence matrix (``glitchlib.influence._kernels.accumulate_cross``). Its useful
work is counted as the FLOPs of the matrix products it needs,
``2 n m K`` with ``K`` the summed inner dimensions; the baseline is one
``torch.mm`` of an ``n x K`` by a ``K x m`` matrix into a preallocated output,
which does the same FLOPs with no element-wise work. Cases:

* ``head, shared``: a linear head on cached ``--d``-dim features (activations the
  same at every checkpoint): ``K = d + 1 + T * C``;
* ``head, per-ckpt``: the same head with activations that change per checkpoint:
  ``K = T * (d + 1 + C)``;
* ``conv flat``: materialised per-sample gradients of ResNet-20's ``layer3.2``
  (``p = 73,728``), one checkpoint: ``K = p``.

Run: ``python benchmarks/influence_matmul.py [--n 4096 --m 4096]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from glitchlib.influence._gradients import Factors
from glitchlib.influence._kernels import Workspace, accumulate_cross


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def head_factors(n, d, c, t, shared, gen):
    a0 = torch.randn(n, d + 1, generator=gen)
    out = []
    for _ in range(t):
        a = a0 if shared else torch.randn(n, d + 1, generator=gen)
        out.append(Factors([(a, torch.randn(n, c, generator=gen))]))
    return out


def case(name, train, test, lrs, k, repeats):
    n, m = len(train[0]), len(test[0])
    out = torch.zeros(n, m)
    ws = Workspace()
    ours = best_time(lambda: accumulate_cross(out, train, test, lrs, workspace=ws), repeats)
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(n, k, generator=gen), torch.randn(k, m, generator=gen)
    buf = torch.empty(n, m)
    base = best_time(lambda: torch.mm(a, b, out=buf), repeats)
    flops = 2.0 * n * m * k
    print(f"{name:<18}{n:>7}{m:>7}{k:>8}{flops / ours / 1e9:>12.1f}{flops / base / 1e9:>12.1f}{base / ours:>9.0%}")
    return base / ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="training rows of the block")
    parser.add_argument("--m", type=int, default=4096, help="test columns of the block")
    parser.add_argument("--d", type=int, default=768, help="feature dimension of the head")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n, m, d, c, t = args.n, args.m, args.d, args.classes, args.checkpoints
    lrs = [0.1] * t

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"{'case':<18}{'n':>7}{'m':>7}{'K':>8}{'ours GF/s':>12}{'mm GF/s':>12}{'share':>9}")
    shared = (head_factors(n, d, c, t, True, gen), head_factors(m, d, c, t, True, gen))
    case("head, shared", *shared, lrs, d + 1 + t * c, args.repeats)
    per = (head_factors(n, d, c, t, False, gen), head_factors(m, d, c, t, False, gen))
    case("head, per-ckpt", *per, lrs, t * (d + 1 + c), args.repeats)
    p, rows, cols = 73_728, 512, 1000
    flat = (
        [Factors([], [torch.randn(rows, p, generator=gen)])],
        [Factors([], [torch.randn(cols, p, generator=gen)])],
    )
    case("conv flat", *flat, lrs[:1], p, args.repeats)


if __name__ == "__main__":
    main()
