"""How influence time and peak memory grow with n, m and d, beside the matrix-multiply bound.

Sweeps (``glitchlib.cost.run_scaling``; every point one train-to-validation
matrix with ``TracIn``, ``--checkpoints`` checkpoints, random inputs):

* ``n`` from 1,000 to 60,000 (linear head on 1,280 features, ``m = --m-fixed``);
* ``m`` from 100 to 10,000 (the same head, ``n = --n-fixed``);
* ``d``: the linear head (``d`` = 12,810), ResNet-20's ``layer3.2`` and ``fc``
  (random weights, ``d`` = 74,378) and the same gradients projected to ``k``
  numbers, at ``n = --d-n``, ``m = --d-m``.

Each point reports the seconds of ``TracIn.train_test`` (fastest of
``--repeats``), the peak memory the call added (on the CPU, the process's
resident size sampled every 2 ms; on a GPU, torch's peak allocation) and the same
minus the returned ``n x m`` matrix, and ``torch.mm`` timed on the same products
(same shapes, same process): ``mm_share`` is its time over the influence time.
The growth exponents are least-squares slopes of log time against log size.

``--book`` runs the book's cheap sweep (``glitchlib.cost.BOOK_SCALING``) and
stores it in the results store (``--store``), where the cost chapter reads it.

Run::

    python benchmarks/influence_scaling.py                  # the full sweep (a 24 GB machine, long on a CPU)
    python benchmarks/influence_scaling.py --n-values 1000 2000 --m-values 100 300 --k-values 64
    python benchmarks/influence_scaling.py --book --store results
    python benchmarks/influence_scaling.py --device cuda --json scaling.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform

import pandas as pd
import torch

from glitchlib import cost

COLUMNS = ["sweep", "case", "n", "m", "d", "seconds", "mm_seconds", "mm_share", "peak_mib", "beyond_matrix_mib"]


def main() -> None:
    defaults = cost.ScalingSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-values", type=int, nargs="+", default=list(defaults.n_values))
    parser.add_argument("--m-values", type=int, nargs="+", default=list(defaults.m_values))
    parser.add_argument("--k-values", type=int, nargs="+", default=list(defaults.k_values))
    for name in ("n_fixed", "m_fixed", "d_n", "d_m", "checkpoints", "repeats"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--book", action="store_true", help="the book's cheap sweep, stored in --store")
    parser.add_argument("--store", default="results", help="results store for --book")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.book:
        settings = dataclasses.replace(cost.BOOK_SCALING, device=args.device)
    else:
        settings = cost.ScalingSettings(
            n_values=tuple(args.n_values), m_values=tuple(args.m_values), k_values=tuple(args.k_values),
            n_fixed=args.n_fixed, m_fixed=args.m_fixed, d_n=args.d_n, d_m=args.d_m,
            checkpoints=args.checkpoints, repeats=args.repeats, device=args.device)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, device {settings.device}")
    print(f"T={settings.checkpoints} checkpoints; seconds: fastest of {settings.repeats}; "
          "mm_share = torch.mm on the same products / influence time")
    if args.book:
        stored = cost.stored_benchmark(args.store, "influence-scaling", settings=settings.to_dict(),
                                       compute=lambda: cost.run_scaling(settings).to_dict("records"), recompute=True,
                                       device=settings.device)
        table = pd.DataFrame(stored["result"])
        print(f"stored in {stored['path']}")
    else:
        table = cost.run_scaling(settings)
    print(table[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(cost.growth_summary(table))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "influence_scaling", "device": settings.device,
                       "rows": table.to_dict("records")}, f, indent=2)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
