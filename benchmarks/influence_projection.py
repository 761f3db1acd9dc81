"""Random projection: how far its influence and detection F1 drift from the exact ones.

A small CNN (two ``Conv2d`` and a ``Linear``, all influence layers, 3,818
parameters) is trained with plain SGD on scikit-learn's 8x8 digits (1,200
training samples with 10 % uniform label noise, 597 clean validation samples),
one checkpoint per epoch. Every signal is computed with the exact engine and with
Gaussian random projections of ``k`` dimensions (``TracIn(projection_dim=k)``);
the table reports the relative error (Frobenius) of the influence matrix and of
the self-influence, and the detection F1 of a few signals (SPEC.md section 5).

Run: ``python benchmarks/influence_projection.py [--dims 64 256 1024]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from glitchlib.detect import compute_signals
from glitchlib.glitches import uniform_noise
from glitchlib.influence import TracIn
from glitchlib.metrics import detection_f1

SIGNALS = ("si", "mai", "nil", "nil_opt", "cnci")


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def train(x, y, epochs: int, lr: float, seed: int):
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    checkpoints = []
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        checkpoints.append(({k: v.clone() for k, v in model.state_dict().items()}, lr))
    return model, checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    digits = load_digits()
    x = torch.tensor(digits.images / 8.0 - 1.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    tr, te = order[:1200], order[1200:]
    glitch = uniform_noise(y[tr].numpy(), ratio=0.1, seed=args.seed, n_classes=10)
    y_noisy = torch.as_tensor(glitch.y)
    model, checkpoints = train(x[tr], y_noisy, args.epochs, 0.05, args.seed)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"digits 8x8: n={len(tr)} (10 % uniform noise), m={len(te)}, T={len(checkpoints)}, "
          f"p={sum(p.numel() for p in model.parameters())} influence parameters")

    def run(dim):
        engine = TracIn(model, checkpoints, layers=None, projection_dim=dim, seed=args.seed, progress=False)
        start = time.perf_counter()
        report = compute_signals(engine, x[tr], y_noisy, x[te], y[te], n_classes=10,
                                 keep_matrices=True, progress=False)
        return report, time.perf_counter() - start

    exact, t_exact = run(None)
    i_exact = torch.tensor(np.asarray(exact.matrices["I"]), dtype=torch.float64)
    si_exact = torch.tensor(exact.scores["si"].to_numpy(), dtype=torch.float64)
    header = "".join(f"{'F1 ' + s:>12}" for s in SIGNALS)
    print(f"{'k':>6}{'time s':>8}{'err I':>9}{'err SI':>9}{header}")

    def row(label, report, seconds):
        i = torch.tensor(np.asarray(report.matrices["I"]), dtype=torch.float64)
        si = torch.tensor(report.scores["si"].to_numpy(), dtype=torch.float64)
        err_i = float((i - i_exact).norm() / i_exact.norm())
        err_si = float((si - si_exact).norm() / si_exact.norm())
        f1 = "".join(f"{detection_f1(report.scores[s].to_numpy(), glitch.mask):>12.3f}" for s in SIGNALS)
        print(f"{label:>6}{seconds:>8.1f}{err_i:>9.3f}{err_si:>9.3f}{f1}")

    row("exact", exact, t_exact)
    for dim in args.dims:
        row(str(dim), *run(dim))


if __name__ == "__main__":
    main()
