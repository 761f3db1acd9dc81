"""Sweeps behind the offline defaults: efficientnet_lite0's input size, then training settings.

Two stages, each printing a table (the tables are recorded in ``glitchlib.settings``):

``sizes``
    For each input size, the throughput of the frozen ``efficientnet_lite0`` prefix
    (images/s, best of three passes over 64 images) is measured, the prefix
    computes features of a stratified subset of the embedded data, and a head is
    trained on them for each learning rate; the table gives the best validation
    accuracy per size.  Picks the size for the offline
    book: about 26,000 images need features, on two CPU cores.

``settings``
    For one (dataset, model), trains with each learning rate for the maximum
    number of epochs and reports validation accuracy after every epoch (one run
    per learning rate gives the whole epoch curve, since the learning rate is
    constant).  Models: ``efficientnet_lite0`` (head on cached features),
    ``resnet20-scratch`` (every layer trained from random weights) and, as a
    control, ``efficientnet_lite0-random`` (head on a random frozen backbone).

Examples::

    python benchmarks/sweep_input_size.py sizes --n-train 1000 --n-val 500 --threads 1
    python benchmarks/sweep_input_size.py settings --dataset fmnist --model efficientnet_lite0
    python benchmarks/sweep_input_size.py settings --dataset fmnist --model resnet20-scratch \\
        --n-train 2000 --lrs 0.05 0.1 0.2 --epochs 12
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from glitchlib import models
from glitchlib.features import compute_features
from glitchlib.settings import TrainSettings
from glitchlib.train import fit


def stratified_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` samples with (about) equal counts per class, sorted."""
    rng = np.random.default_rng(seed)
    labels = y.numpy()
    classes = np.unique(labels)
    per_class = n // len(classes)
    picked = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    return torch.as_tensor(np.sort(np.concatenate(picked)))


def load_subset(dataset: str, n_train: int, n_val: int, noise: float, seed: int):
    """Embedded data subset, optionally with class-based label noise on the training part."""
    from glitchlib import data

    ds = data.load(dataset, seed=seed)
    train = stratified_subset(ds.y_train, min(n_train, len(ds.y_train)), seed)
    val = stratified_subset(ds.y_test, min(n_val, len(ds.y_test)), seed)
    x_train, y_train = ds.x_train[train], ds.y_train[train]
    if noise > 0:
        from glitchlib import glitches

        y_train = torch.as_tensor(glitches.class_based_noise(y_train.numpy(), ratio=noise, seed=seed).y)
    return x_train, y_train, ds.x_test[val], ds.y_test[val]


@torch.inference_mode()
def prefix_throughput(model, batch: torch.Tensor, repeats: int = 3) -> float:
    """Images per second of ``model.prefix`` on ``batch``: best of ``repeats`` timed passes.

    The best pass filters out the slowdowns caused by other processes on a shared machine.
    """
    model.prefix(batch[:2])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.prefix(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def sweep_sizes(x_train, y_train, x_val, y_val, sizes, lrs, epochs, batch_size=128, seed=0):
    """One row per input size: throughput of the prefix and best head accuracy over ``lrs``."""
    rows = []
    x_all = torch.cat([x_train, x_val])
    for size in sizes:
        model = models.create("efficientnet_lite0", n_classes=10, seed=seed, input_size=size)
        rate = prefix_throughput(model, x_all[:64])
        features = compute_features(model, x_all, batch_size=64, progress=False)
        f_train, f_val = features[: len(x_train)], features[len(x_train):]
        accuracy = {}
        for lr in lrs:
            settings = TrainSettings(lr=lr, batch_size=batch_size, epochs=epochs)
            result = fit(model.suffix, f_train, y_train, f_val, y_val, settings=settings, seed=seed,
                         progress=False)
            accuracy[lr] = result.history["val_acc"].iloc[-1]
        best = max(accuracy, key=accuracy.get)
        rows.append({"input_size": size, "img_per_s": rate, "min_per_26k_images": 26000 / rate / 60,
                     "val_acc": accuracy[best], "best_lr": best})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    return pd.DataFrame(rows)


def create_variant(spec: str, seed: int = 0, input_size=None):
    """``"<model>"``: pretrained, frozen; ``"<model>-random"``: random frozen backbone
    (a control); ``"<model>-scratch"``: random weights, every layer trained."""
    name, _, variant = spec.partition("-")
    if variant not in ("", "random", "scratch"):
        raise ValueError(f"model={spec!r}: use <model>, <model>-random or <model>-scratch")
    options = {"": {}, "random": {"pretrained": False, "freeze": True},
               "scratch": {"pretrained": False}}[variant]
    return models.create(name, n_classes=10, seed=seed, input_size=input_size, **options)


def sweep_settings(model_name, x_train, y_train, x_val, y_val, lrs, epochs, batch_size=128,
                   seed=0, input_size=None, cache_dir=None):
    """Validation accuracy after each epoch (rows) for each learning rate (columns)."""
    model = create_variant(model_name, seed=seed, input_size=input_size)
    f_train = compute_features(model, x_train, cache_dir=cache_dir, progress=False)
    f_val = compute_features(model, x_val, cache_dir=cache_dir, progress=False)
    table = {}
    for lr in lrs:
        start = time.perf_counter()
        result = fit(model.suffix, f_train, y_train, f_val, y_val,
                     settings=TrainSettings(lr=lr, batch_size=batch_size, epochs=epochs), seed=seed,
                     progress=False)
        table[f"lr={lr:g}"] = result.history["val_acc"].to_numpy()
        print(f"lr={lr:g}: {time.perf_counter() - start:.1f} s, val_acc by epoch "
              + " ".join(f"{a:.3f}" for a in table[f"lr={lr:g}"]), flush=True)
    return pd.DataFrame(table, index=pd.RangeIndex(1, epochs + 1, name="epoch"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", default="sizes", choices=["sizes", "settings"])
    parser.add_argument("--dataset", default="fmnist")
    parser.add_argument("--model", default="efficientnet_lite0",
                        help="settings stage: <model> (pretrained, frozen), <model>-random "
                             "(random frozen backbone) or <model>-scratch (all layers trained)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-val", type=int, default=None)
    parser.add_argument("--noise", type=float, default=0.0, help="class-based noise ratio")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160, 224])
    parser.add_argument("--lrs", type=float, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--cache-dir", default=None, help="settings stage: feature cache directory")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage == "sizes":
        data = load_subset(args.dataset, args.n_train or 1000, args.n_val or 500, args.noise, args.seed)
        table = sweep_sizes(*data, args.sizes, args.lrs or [0.05, 0.2, 0.5], args.epochs or 10,
                            seed=args.seed)
    else:
        data = load_subset(args.dataset, args.n_train or 6000, args.n_val or 1000, args.noise, args.seed)
        table = sweep_settings(args.model, *data, args.lrs or [0.01, 0.05, 0.1, 0.5],
                               args.epochs or 10, seed=args.seed, cache_dir=args.cache_dir)
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
