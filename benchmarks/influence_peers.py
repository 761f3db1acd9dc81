"""Peers in one run: glitchlib's TracIn against captum's TracInCP and TracInCPFast and dattri's TracIn.

Every library gets the same module, the same checkpoints (``--checkpoints``
perturbed copies of the initial weights, learning rate 0.1) and the same inputs,
and computes the train-to-validation matrix ``I[i, j] = sum_t lr_t <g_t(z_i), g_t(z'_j)>``
(SPEC.md section 3, ``n x m``). Models (the trainable part, fed with what it
sees in the pipeline; random inputs, since time and agreement do not depend on
their values):

* ``linear head``: ``fc = nn.Linear(1280, 10)`` on cached features
  (``efficientnet_lite0``'s width); influence layer ``fc``;
* ``small CNN``: two ``Conv2d`` and a ``Linear`` on 1x8x8 images (the model of
  ``influence_projection.py``); every layer;
* ``resnet20 layer3.2+fc``: ResNet-20's suffix (random weights) on 64x7x7 prefix
  outputs; ``layer3.2.conv1``, ``layer3.2.conv2`` and ``fc``.

Rows per model, each timed after an untimed warm-up on 8 samples, the fastest of
``--repeats`` runs (the least slowed down by other processes):

* glitchlib ``TracIn`` (weights and biases) against captum ``TracInCP``
  (``sample_wise_grads_per_batch=True``, layers named by their leaves) and dattri
  ``TracInAttributor`` (``normalized_grad=False``, identity projection: dattri
  projects to 512 dimensions unless ``proj_type="identity"``, layers named by
  their parameters);
* glitchlib ``TracIn(layers=[last linear], bias=False)`` against captum
  ``TracInCPFast`` (the last linear layer, weights only).

captum and dattri get training batches of ``--batch`` samples and the validation
set in one batch; glitchlib chunks by its own memory budget (its default). Agreement: relative Frobenius error against glitchlib, must be at most
``--tolerance`` (1e-5; the script exits with status 1 otherwise). The ratios are
the peer's seconds over glitchlib's (above 1: glitchlib is faster), in wall-clock
and in process CPU seconds (the steadier figure on a shared machine).

Run: ``python benchmarks/influence_peers.py [--n 2000 --m 400 --device cuda --json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")  # dattri's per-batch progress bars would bury the table

import torch
import torch.nn.functional as F
from torch import nn

from influence_projection import SmallCNN  # the small CNN of the projection benchmark
from influence_resnet import captum_checkpoint_files, clear_sample_grads, make_checkpoints, rel_err


class Head(nn.Module):
    """A linear head on cached features, as a named module (captum and dattri name layers)."""

    def __init__(self, features: int = 1280, classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        return self.fc(x)


def build(name: str, seed: int):
    """Module, its influence layers (leaf modules), the last linear layer, and one input's shape."""
    torch.manual_seed(seed)
    if name == "linear head":
        return Head(), ["fc"], "fc", (1280,)
    if name == "small CNN":
        return SmallCNN(), ["conv1", "conv2", "fc"], "fc", (1, 8, 8)
    from glitchlib.models import create

    suffix = create("resnet20", n_classes=10, pretrained=False, freeze=True, seed=seed).suffix
    return suffix, ["layer3.2.conv1", "layer3.2.conv2", "fc"], "fc", (64, 7, 7)


def timed(call, device):
    """``(result, wall seconds, process CPU seconds)``; waits for the CUDA device before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run_glitchlib(model, checkpoints, layers, data, device, bias=True):
    from glitchlib.influence import TracIn

    x, y, xt, yt = data
    engine = TracIn(model, checkpoints, layers=layers, device=device, bias=bias, progress=False)  # its own chunking
    return engine.train_test(x, y, xt, yt)


def run_captum(model, checkpoints, layers, data, device, batch, fast_layer=None):
    from captum.influence import TracInCP, TracInCPFast

    x, y, xt, yt = data
    clear_sample_grads(model)
    dataset = torch.utils.data.TensorDataset(x, y)
    with tempfile.TemporaryDirectory() as tmp:
        paths, load = captum_checkpoint_files(checkpoints, tmp, target=lambda net: net)
        loss = nn.CrossEntropyLoss(reduction="sum")
        if fast_layer is None:
            tracin = TracInCP(model, dataset, paths, checkpoints_load_func=load, layers=layers, loss_fn=loss,
                              batch_size=batch, sample_wise_grads_per_batch=True)
        else:
            tracin = TracInCPFast(model, fast_layer, dataset, paths, checkpoints_load_func=load, loss_fn=loss,
                                  batch_size=batch)
        return tracin.influence((xt, yt), k=None).T


def run_dattri(model, checkpoints, layers, data, device, batch):
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.task import AttributionTask

    x, y, xt, yt = data

    def loss(params, sample):
        xi, yi = sample
        logits = torch.func.functional_call(model, params, (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    names = [f"{layer}.{p}" for layer in layers for p, _ in model.get_submodule(layer).named_parameters()]
    task = AttributionTask(loss_func=loss, model=model, checkpoints=[state for state, _ in checkpoints])
    attributor = TracInAttributor(
        task=task, weight_list=torch.tensor([lr for _, lr in checkpoints]), normalized_grad=False,
        projector_kwargs={"proj_type": "identity", "device": str(device)}, layer_name=names, device=str(device),
    )
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=False)
    test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=len(xt), shuffle=False)
    return attributor.attribute(train, test)


def compare(name, n, m, args, device):
    """Rows of one model: each peer's seconds, ratio to glitchlib and relative error."""
    model, layers, last, shape = build(name, args.seed)
    model = model.to(device).eval()
    checkpoints = [({k: v.to(device) for k, v in state.items()}, lr)
                   for state, lr in make_checkpoints(model, args.checkpoints, lr=0.1, seed=args.seed)]
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(n + m, *shape, generator=gen)
    x = (x.relu() if name.startswith("resnet") else x).to(device)
    y = torch.randint(0, 10, (n + m,), generator=gen).to(device)
    data, warm = (x[:n], y[:n], x[n:], y[n:]), (x[:8], y[:8], x[n:n + 8], y[n:n + 8])
    runs = {
        "captum TracInCP": (lambda d: run_glitchlib(model, checkpoints, layers, d, device),
                            lambda d: run_captum(model, checkpoints, layers, d, device, args.batch)),
        "dattri TracIn": (None, lambda d: run_dattri(model, checkpoints, layers, d, device, args.batch)),
        "captum TracInCPFast": (
            lambda d: run_glitchlib(model, checkpoints, [last], d, device, bias=False),
            lambda d: run_captum(model, checkpoints, layers, d, device, args.batch, fast_layer=last)),
    }
    rows, reference = [], None
    def fastest(call):
        """The result and the smallest wall and CPU seconds over ``--repeats`` runs."""
        runs_ = [timed(lambda: call(data), device) for _ in range(args.repeats)]
        return runs_[0][0], min(r[1] for r in runs_), min(r[2] for r in runs_)

    for peer, (ours, theirs) in runs.items():
        if ours is not None:
            ours(warm)
            reference, t_ours, c_ours = fastest(ours)
        theirs(warm)
        result, t_theirs, c_theirs = fastest(theirs)
        rows.append({"model": name, "n": n, "m": m, "peer": peer, "glitchlib_s": t_ours, "peer_s": t_theirs,
                     "ratio": t_theirs / t_ours, "glitchlib_cpu_s": c_ours, "peer_cpu_s": c_theirs,
                     "cpu_ratio": c_theirs / c_ours, "rel_error": rel_err(result.cpu(), reference.cpu())})
        print(f"{name:<22}{peer:<21}{t_ours:>9.2f}{t_theirs:>9.2f}{t_theirs / t_ours:>7.1f}"
              f"{c_ours:>9.2f}{c_theirs:>9.2f}{c_theirs / c_ours:>7.1f}{rows[-1]['rel_error']:>11.1e}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["linear head", "small CNN", "resnet20"],
                        choices=["linear head", "small CNN", "resnet20"])
    parser.add_argument("--n", type=int, default=2000, help="training samples")
    parser.add_argument("--m", type=int, default=400, help="validation samples")
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128, help="training batch of every library")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each; the fastest counts")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest relative error accepted")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")  # captum
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, device {device}")
    print(f"n={args.n}, m={args.m}, T={args.checkpoints}, batch {args.batch}, fastest of {args.repeats}; "
          "ratio = peer s / glitchlib s")
    print(f"{'':<43}{' wall-clock ':-^25}{' process CPU ':-^25}")
    print(f"{'model':<22}{'peer':<21}{'ours s':>9}{'peer s':>9}{'ratio':>7}{'ours s':>9}{'peer s':>9}{'ratio':>7}"
          f"{'rel. error':>11}")
    rows = [row for name in args.models for row in compare(name, args.n, args.m, args, device)]
    bad = [r for r in rows if not r["rel_error"] <= args.tolerance]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "influence_peers", "device": str(device), "rows": rows}, f, indent=2)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if bad:
        raise SystemExit(f"{len(bad)} matri(x/ces) disagree with glitchlib beyond {args.tolerance:.0e}: "
                         + ", ".join(f"{r['model']} / {r['peer']} {r['rel_error']:.1e}" for r in bad))


if __name__ == "__main__":
    main()
