"""End-to-end cost: one paper-scale run stage by stage, and (optionally) the embedded grid.

Part 1 runs one class-based experiment at the paper's scale (6,000 training and
1,000 validation images of the embedded Fashion-MNIST, ``efficientnet_lite0``,
10 % noise, seed 0) into a fresh results store and prints the seconds of each
stage and the share of the detection stages (influence, counterfactuals,
signals) in the training time, which the paper puts at about 8 %. Training here
runs on cached backbone features, so the share is also given against an
estimate of training without the cache (the features' forward pass once per
epoch plus the head's training), which is what the paper's training did.

Part 2 (``--grid``) times the ``embedded`` grid (40 runs) twice: from a clean
store, then from a store that keeps the backbone features but no runs.

    python benchmarks/end_to_end.py                     # part 1 (a few minutes on 2 CPU cores)
    python benchmarks/end_to_end.py --grid -j 2         # parts 1 and 2 (long: hours on 2 CPU cores)
    python benchmarks/end_to_end.py --device cuda
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from glitchlib import experiments
from glitchlib.settings import ExperimentSettings
from glitchlib.grid import run_grid
from glitchlib.profiles import profile_settings
from glitchlib.store import Store

DETECTION = ("influence", "counterfactuals", "signals")


def one_run(settings: ExperimentSettings, root: Path) -> None:
    start = time.perf_counter()
    result = experiments.run(settings, store=root, progress=True)
    wall = time.perf_counter() - start
    t = result.timings
    env = result.environment
    s = result.summary
    print(f"\n== one run: {settings.label()}: {s['n_train']} training / {s['n_test']} validation samples")
    print(f"   device {env['device']}, {env['machine']}, torch {env['versions']['torch']}, "
          f"{env['torch_threads']} threads")
    width = max(len(k) for k in t)
    for stage, seconds in t.items():
        print(f"   {stage:{width}s} {seconds:9.2f} s")
    print(f"   {'total':{width}s} {sum(t.values()):9.2f} s   (wall time of run(): {wall:.1f} s)")
    detection = sum(t[k] for k in DETECTION)
    epochs = len(result.history)
    uncached = t["training"] + epochs * t["features"]
    print(f"   detection = influence + counterfactuals + signals = {detection:.2f} s")
    print(f"   detection / training on cached features             = {detection / t['training']:7.1%}")
    print(f"   detection / training without the cache (estimated)  = {detection / uncached:7.1%}"
          f"   (training + {epochs} epochs x features = {uncached:.1f} s; the paper: about 8 %)")
    f1 = result.metrics.set_index("signal")["f1"]
    print(f"   val_acc {s['val_acc']:.3f}; F1 CNCI {f1['cnci']:.3f}, SI {f1['si']:.3f}, "
          f"MAI {f1['mai']:.3f}, MI {f1['mi']:.3f}, GD-class {f1['gd_class']:.3f}")


def grid(profile: str, root: Path, jobs: int, device: str) -> None:
    cells = [c.replace(device=device) for c in profile_settings(profile)]
    print(f"\n== grid {profile}: {len(cells)} cells, {jobs} worker(s), store {root}")
    if root.exists():
        shutil.rmtree(root)
    start = time.perf_counter()
    outcome = run_grid(cells, store=root, jobs=jobs)
    clean = time.perf_counter() - start
    print(f"   from a clean store:        {clean:8.1f} s  ({len(outcome.computed)} runs, {len(outcome.failed)} failed)")
    shutil.rmtree(Store(root=root).runs_dir)  # keep the features, drop every run
    start = time.perf_counter()
    outcome = run_grid(cells, store=root, jobs=jobs)
    cached = time.perf_counter() - start
    print(f"   from cached features only: {cached:8.1f} s  ({len(outcome.computed)} runs, {len(outcome.failed)} failed)")
    runs, metrics = Store(root=root).load_runs(), Store(root=root).load_metrics()
    class_based = metrics[(metrics["glitch"] == "class-based") & metrics["signal"].isin(["cnci", "si"])]
    print("   class-based F1 (mean ± std over seeds):")
    for (dataset, signal), f1 in class_based.groupby(["dataset", "signal"])["f1"]:
        print(f"     {dataset:7s} {signal:5s} {f1.mean():.3f} ± {f1.std():.3f}")
    print("   validation accuracy (mean ± std over seeds):")
    for (dataset, glitch), acc in runs.groupby(["dataset", "glitch"])["val_acc"]:
        print(f"     {dataset:7s} {glitch:12s} {acc.mean():.3f} ± {acc.std():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="fmnist", choices=["mnist", "fmnist"])
    parser.add_argument("--store", type=Path, default=None,
                        help="Store of part 1 (default: a temporary one, so the features are computed)")
    parser.add_argument("--grid", action="store_true", help="Also time the grid (part 2)")
    parser.add_argument("--profile", default="embedded")
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--grid-store", type=Path, default=Path("results-benchmark"),
                        help="Store of part 2, deleted first (default: results-benchmark)")
    args = parser.parse_args()

    settings = ExperimentSettings(dataset=args.dataset, model="efficientnet_lite0", glitch="class-based",
                                  ratio=0.1, seed=0, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        one_run(settings, args.store if args.store is not None else Path(tmp) / "results")
    if args.grid:
        grid(args.profile, args.grid_store, args.jobs, args.device)


if __name__ == "__main__":
    main()
