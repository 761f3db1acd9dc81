"""Training-settings sweep for the tabular models on scikit-learn's shipped tables (SPEC.md section 9.7).

The paper gives no training settings for its tabular runs, so they are chosen
here.  For every shipped table (breast cancer, wine, digits) and tabular model
(``mlp``, ``tabular_resnet``, ``ft_transformer``), the model is trained with plain
SGD (no momentum, no weight decay, as every run of the project) on the training
rows with 10 % uniform label noise (seed 0), for each learning rate and batch
size, and the validation accuracy (clean labels) is printed after selected
epochs.  One run per (learning rate, batch size) gives the whole epoch curve,
since the learning rate is constant.  The table is recorded in
``glitchlib.settings``.

Example::

    OMP_NUM_THREADS=1 python benchmarks/sweep_tabular.py --lrs 0.01 0.03 0.1 0.3 --batch-sizes 32 128 \\
        --epochs 20 --report 5 10 20
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from glitchlib import data, glitches, models
from glitchlib.settings import TrainSettings
from glitchlib.train import fit


def sweep(dataset: str, model_name: str, lrs, batch_sizes, epochs: int, seed: int) -> pd.DataFrame:
    """Validation accuracy after every epoch for each (lr, batch size): one row per epoch."""
    ds = data.load(dataset, seed=seed)
    noisy = glitches.inject("uniform", ds.y_train.numpy(), ratio=0.1, seed=seed, n_classes=ds.n_classes)
    y_train = torch.as_tensor(noisy.y, dtype=torch.int64)
    model = models.create(model_name, n_classes=ds.n_classes, pretrained=False, seed=seed, n_features=ds.x_train.shape[1])
    rows = []
    for lr in lrs:
        for batch_size in batch_sizes:
            start = time.process_time()
            result = fit(model.suffix, ds.x_train, y_train, ds.x_test, ds.y_test,
                         settings=TrainSettings(lr=lr, batch_size=batch_size, epochs=epochs), seed=seed, progress=False)
            cpu = time.process_time() - start
            for row in result.history.itertuples():
                rows.append({"dataset": dataset, "model": model_name, "lr": lr, "batch_size": batch_size,
                             "epoch": row.epoch, "val_acc": row.val_acc, "cpu_s": cpu})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(data.tabular.SHIPPED_TABLES))
    parser.add_argument("--models", nargs="+", default=list(models.TABULAR_MODELS))
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--report", nargs="+", type=int, default=[5, 10, 20], help="epochs shown in the table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames = [sweep(d, m, args.lrs, args.batch_sizes, args.epochs, args.seed)
              for d in args.datasets for m in args.models]
    table = pd.concat(frames)
    shown = table[table.epoch.isin(args.report)].pivot_table(
        index=["dataset", "model", "batch_size", "lr"], columns="epoch", values="val_acc")
    pd.set_option("display.width", 200)
    print(shown.round(3).to_string())
    cost = table.groupby(["dataset", "model", "batch_size", "lr"]).cpu_s.first().groupby(level=[0, 1, 2]).mean()
    print("\nCPU seconds per training run (all epochs):")
    print(cost.round(1).to_string())


if __name__ == "__main__":
    main()
