"""Training with and without the frozen-prefix feature cache: time ratio and peak memory.

One training run (the settings below, 7 epochs by default) on the embedded
Fashion-MNIST, for ``efficientnet_lite0`` (ImageNet weights) and ``resnet20``
(random weights, frozen prefix):

* cached: ``compute_features`` once for the training and validation images, then
  ``fit`` on the suffix alone;
* uncached: ``fit`` on the whole ``GlitchModel``, so every batch goes through the
  frozen backbone again in every epoch (and the validation set after each epoch).

Both start from the same head and batch order and should end at the same weights
(the script prints the largest difference).  Each variant runs in its own
process, so that the peak resident memory (``ru_maxrss``) is its own.  The cached
run costs about one backbone forward pass per image in total, the uncached one
``epochs`` passes per image (plus the validation passes), so the ratio is close to
the number of epochs when the backbone dominates.

Usage::

    python benchmarks/feature_cache.py                      # 6,000 training images
    python benchmarks/feature_cache.py --n-train 1000 --n-val 200 --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

MODELS = {
    "efficientnet_lite0": {"pretrained": True},
    "resnet20": {"pretrained": False, "freeze": True},
}


def run_one(model_name: str, cached: bool, n_train: int, n_val: int, epochs: int,
            lr: float, batch_size: int, device: str) -> dict[str, object]:
    """Train once; returns seconds, peak memory and a digest of the final head."""
    from glitchlib import data, models
    from glitchlib.features import compute_features
    from glitchlib.settings import TrainSettings
    from glitchlib.train import fit

    ds = data.load("fmnist", seed=0)
    x_train, y_train = ds.x_train[:n_train], ds.y_train[:n_train]
    x_val, y_val = ds.x_test[:n_val], ds.y_test[:n_val]
    model = models.create(model_name, n_classes=ds.n_classes, seed=0, **MODELS[model_name])
    settings = TrainSettings(lr=lr, batch_size=batch_size, epochs=epochs)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # one-time imports, untimed
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if cached:
        f = compute_features(model, torch.cat([x_train, x_val]), device=device, progress=False)
        result = fit(model.suffix, f[:n_train], y_train, f[n_train:], y_val, settings=settings, device=device,
                     progress=False)
        head = result.final_model.state_dict()
    else:
        result = fit(model, x_train, y_train, x_val, y_val, settings=settings, device=device, progress=False)
        head = {k[len("suffix."):]: v for k, v in result.final_model.state_dict().items()
                if k.startswith("suffix.")}
    seconds = time.perf_counter() - start
    out = {
        "model": model_name, "cached": cached, "n_train": n_train, "n_val": n_val, "epochs": epochs,
        "seconds": seconds, "val_acc": float(result.history["val_acc"].iloc[-1]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "head": {k: v.detach().cpu().flatten()[:64].tolist() for k, v in head.items()
                 if v.is_floating_point()},
    }
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CACHED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common = (args.n_train, args.n_val, args.epochs, args.lr, args.batch_size, args.device)
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1] == "1", *common)))
        return
    import pandas as pd

    rows = []
    for name in args.models:
        runs = {}
        for cached in (True, False):
            command = [sys.executable, __file__, "--one", name, "1" if cached else "0",
                       "--n-train", str(args.n_train), "--n-val", str(args.n_val),
                       "--epochs", str(args.epochs), "--lr", str(args.lr),
                       "--batch-size", str(args.batch_size), "--device", args.device]
            if args.threads:
                command += ["--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[cached] = json.loads(output.strip().splitlines()[-1])
        diff = max(max(abs(a - b) for a, b in zip(runs[True]["head"][k], runs[False]["head"][k]))
                   for k in runs[True]["head"])
        for cached, run in runs.items():
            rows.append({k: v for k, v in run.items() if k != "head"})
        rows[-1]["time_ratio_uncached_over_cached"] = runs[False]["seconds"] / runs[True]["seconds"]
        rows[-1]["max_head_diff"] = diff
        print(pd.DataFrame(rows[-2:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
