"""Head-only setting: glitchlib on cached features against captum's TracInCPFast.

Setting (SPEC.md sections 1 and 3, the paper's ViT / ConvNeXt case): a frozen
backbone (``efficientnet_lite0`` by default, random weights, 28x28 grey inputs
resized inside the model) with a linear head, ``--checkpoints`` checkpoints. The
influence step is self-influence, the train-to-validation matrix and two
counterfactual matrices at the last checkpoint.

* glitchlib: backbone features computed once (timed and included), then
  ``TracIn`` on the head, weights only (``bias=False``) so that it computes
  exactly what ``TracInCPFast`` computes (the default, weights and bias, costs
  the same and is timed too); self-influence comes with the matrix
  (``train_test_and_self_influence``).
* captum: ``TracInCPFast`` on the full model, as the paper's code did; it runs the
  backbone for every training batch and checkpoint, and the validation batch
  again for every training batch.

glitchlib runs at full size; captum would take too long there, so both also run
on a copy scaled down by ``--scale`` (training and validation sets alike, with as
many captum training batches as the full run would have,
``ceil(n / --captum-batch)``), so that every cost keeps its share; the ratio and
the agreement are measured there, nothing is extrapolated.

Wall-clock and process CPU seconds are both reported: on a shared machine the CPU
seconds are the steadier figure.

The backbone runs on 64x64 inputs by default (``--input-size``) to keep captum's
run short on a CPU; a larger input makes every forward pass dearer, which only
widens the gap.

Run: ``python benchmarks/influence_head.py [--n 6000 --m 1000 --scale 0.1 --threads 1]``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile

import torch
from torch import nn

from influence_resnet import STEPS, captum_checkpoint_files, report, timed  # shared with the ResNet benchmark


def make_checkpoints(head: nn.Module, n: int, lr: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [
        ({k: v + 0.05 * v.std() * torch.randn(v.shape, generator=gen) for k, v in head.state_dict().items()}, lr)
        for _ in range(n)
    ]


def run_glitchlib(model, checkpoints, x, y, xt, yt, y_star, y_b, bias):
    from glitchlib.influence import TracIn

    def features():
        with torch.no_grad():
            return (torch.cat([model.prefix(c) for c in x.split(256)]),
                    torch.cat([model.prefix(c) for c in xt.split(256)]))

    times, results = {}, {}
    (f_train, f_test), times["features"] = timed(features)
    engine = TracIn(model.suffix, checkpoints, layers=model.influence_layers, bias=bias, progress=False)
    (results["I"], results["SI"]), times["SI + I"] = timed(
        lambda: engine.train_test_and_self_influence(f_train, y, f_test, yt))
    results["I*"], times["I*"] = timed(lambda: engine.last_checkpoint().train_test(f_train, y_star, f_test, yt))
    results["Ib"], times["Ib"] = timed(lambda: engine.last_checkpoint().train_test(f_train, y_b, f_test, yt))
    return results, times


def run_captum(model, checkpoints, x, y, xt, yt, y_star, y_b, batch_size):
    from captum.influence import TracInCPFast

    head = f"suffix.{model.influence_layers[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        paths, load = captum_checkpoint_files(checkpoints, tmp)

        def tracin(labels, ckpts):
            return TracInCPFast(
                model, head, torch.utils.data.TensorDataset(x, labels), ckpts, checkpoints_load_func=load,
                loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=batch_size,
            )

        results, times = {}, {}
        results["SI"], times["SI"] = timed(lambda: tracin(y, paths).self_influence(None))
        results["I"], times["I"] = timed(lambda: tracin(y, paths).influence((xt, yt), k=None).T)
        results["I*"], times["I*"] = timed(lambda: tracin(y_star, paths[-1:]).influence((xt, yt), k=None).T)
        results["Ib"], times["Ib"] = timed(lambda: tracin(y_b, paths[-1:]).influence((xt, yt), k=None).T)
    return results, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0", help="glitchlib.models name")
    parser.add_argument("--input-size", type=int, default=64,
                        help="side the images are resized to inside the backbone (its cost, not the ratio)")
    parser.add_argument("--n", type=int, default=6000, help="training samples for glitchlib")
    parser.add_argument("--m", type=int, default=1000, help="validation samples")
    parser.add_argument("--scale", type=float, default=0.1, help="size of the comparison run relative to n and m")
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--captum-batch", type=int, default=4096, help="captum training batch at full n")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from glitchlib.models import create

    torch.manual_seed(args.seed)
    model = create(args.model, n_classes=10, pretrained=False, freeze=True, seed=args.seed, input_size=args.input_size).eval()
    checkpoints = make_checkpoints(model.suffix, args.checkpoints, lr=0.1, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.n, 1, 28, 28, generator=gen) * 2 - 1
    xt = torch.rand(args.m, 1, 28, 28, generator=gen) * 2 - 1
    y = torch.randint(0, 10, (args.n,), generator=gen)
    yt = torch.randint(0, 10, (args.m,), generator=gen)
    y_star, y_b = (y + 1) % 10, (y + 2) % 10
    n_batches = math.ceil(args.n / args.captum_batch)
    nc, mc = max(1, round(args.n * args.scale)), max(1, round(args.m * args.scale))

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"setting: {args.model} (input {model.input_size}px), head {model.influence_layers}, "
          f"T={args.checkpoints}, n={args.n}, m={args.m}; captum with {n_batches} training batch(es)")
    small = (x[:nc], y[:nc], xt[:mc], yt[:mc], y_star[:nc], y_b[:nc])
    warm = slice(0, 8)  # first calls pay one-off initialisation (oneDNN); keep it out of the timings
    run_glitchlib(model, checkpoints, x[warm], y[warm], xt[warm], yt[warm], y_star[warm], y_b[warm], bias=False)
    run_captum(model, checkpoints, x[warm], y[warm], xt[warm], yt[warm], y_star[warm], y_b[warm], 8)
    _, t_full = run_glitchlib(model, checkpoints, x, y, xt, yt, y_star, y_b, bias=False)
    _, t_bias = run_glitchlib(model, checkpoints, x, y, xt, yt, y_star, y_b, bias=True)
    ours, t_ours = run_glitchlib(model, checkpoints, *small, bias=False)
    theirs, t_theirs = run_captum(model, checkpoints, *small, math.ceil(nc / n_batches))
    report(t_full, args.n, args.m, ours, t_ours, theirs, t_theirs, nc, mc)
    kernels = [sum(t_full[k][i] for k in STEPS[1:]) for i in (0, 1)]
    with_bias = [sum(t_bias[k][i] for k in STEPS[1:]) for i in (0, 1)]
    print(f"glitchlib kernels alone at full size (features cached), wall / cpu s: weights only "
          f"{kernels[0]:.2f} / {kernels[1]:.2f}, weights and biases (default) {with_bias[0]:.2f} / {with_bias[1]:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
