"""Paper's ResNet setting: glitchlib's influence step against captum's TracInCP.

Setting (SPEC.md sections 1 and 3): ResNet-20 (random weights; timing and
agreement do not depend on them), 28x28 grey inputs, influence layers ``layer3.2``
(its two convolutions) and ``fc``, ``--checkpoints`` checkpoints. The influence step
is the four computations the signals need: self-influence, the train-to-validation
matrix, and two counterfactual matrices at the last checkpoint with other labels.

* glitchlib: prefix features computed once (timed and included), then
  ``TracIn`` on the suffix; self-influence comes with the matrix
  (``train_test_and_self_influence``), from the same training gradients.
* captum: ``TracInCP`` on the full model, ``sample_wise_grads_per_batch=True``,
  layers named by their leaves, checkpoints loaded from files, training batches
  of ``--captum-batch`` (the paper's code used 4096), as the paper's code did.

glitchlib runs at full size (``--n`` x ``--m``); captum would take too long there,
so both also run on the first ``--n-captum`` training samples (same validation
set), where the ratio and the agreement are measured; nothing is extrapolated.

A second row measures the influence step *as the paper's public code actually ran
it* (SPEC.md sections 3 and 7), on the first ``--n-paper`` training samples (default
``--n-captum``), both sides at that same size, nothing extrapolated:

* captum: ``TracInCP`` with the paper's ``layers=['layer3.2', 'fc']`` (here
  ``suffix.layer3.2``, ``suffix.fc``) for self-influence and the matrix over all
  checkpoints; captum 0.9.0 skips the container ``layer3.2`` without a word and
  differentiates ``fc`` (weight and bias) alone. The two counterfactual matrices
  with ``TracInCPFast`` (``fc``, weights only) at the last checkpoint.
* glitchlib: the same quantities, ``TracIn`` on the suffix with the head layer only
  (``model.head_layers``, weight and bias) for self-influence and the matrix, and
  with ``bias=False`` for the counterfactual matrices, last checkpoint.

The agreement is printed for each of the four quantities (must be <= 1e-4; the
script exits with status 1 otherwise), with two controls that identify what the
paper's call differentiated: glitchlib on ``fc`` weights only, and on all
influence layers (the first row's glitchlib result).

captum keeps per-sample gradients as ``param.sample_grad`` attributes after a call;
a later ``TracInCP`` whose layers include a container picks up the stale ones of the
container's convolutions (a shape error, or wrong numbers when the batch sizes
match). Every captum run here starts by deleting them, as a fresh process would.

Wall-clock and process CPU seconds are both reported: on a shared machine the CPU
seconds are the steadier figure (``--threads 1`` steadier still).

Run: ``python benchmarks/influence_resnet.py [--n 6000 --m 1000 --n-captum 600 --n-paper 2000 --threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def make_checkpoints(suffix: nn.Module, n: int, lr: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        state = {
            k: v + 0.05 * v.std().nan_to_num() * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
            for k, v in suffix.state_dict().items()
        }
        out.append((state, lr))
    return out


def run_glitchlib(model, checkpoints, x, y, xt, yt, y_star, y_b, layers=None, counterfactual_bias=True):
    """The four quantities; ``layers`` default to ``model.influence_layers``.

    ``counterfactual_bias=False`` computes the counterfactual matrices on the same
    layers, weights only (what captum's ``TracInCPFast`` computes on the head).
    """
    from glitchlib.influence import TracIn

    layers = model.influence_layers if layers is None else layers

    def features():
        with torch.no_grad():
            return (torch.cat([model.prefix(c) for c in x.split(1024)]),
                    torch.cat([model.prefix(c) for c in xt.split(1024)]))

    times, results = {}, {}
    (f_train, f_test), times["features"] = timed(features)
    engine = TracIn(model.suffix, checkpoints, layers=layers, progress=False)
    weights_only = None if counterfactual_bias else TracIn(
        model.suffix, checkpoints[-1:], layers=layers, bias=False, progress=False)

    def last():
        return engine.last_checkpoint() if weights_only is None else weights_only

    (results["I"], results["SI"]), times["SI + I"] = timed(
        lambda: engine.train_test_and_self_influence(f_train, y, f_test, yt))
    results["I*"], times["I*"] = timed(lambda: last().train_test(f_train, y_star, f_test, yt))
    results["Ib"], times["Ib"] = timed(lambda: last().train_test(f_train, y_b, f_test, yt))
    return results, times


def clear_sample_grads(model: nn.Module) -> None:
    """Delete the per-sample gradients captum leaves on parameters (``param.sample_grad``)."""
    for parameter in model.parameters():
        if hasattr(parameter, "sample_grad"):
            del parameter.sample_grad


def captum_checkpoint_files(checkpoints, directory, target=lambda net: net.suffix):
    """Write ``(state_dict, lr)`` pairs as files for captum; return their paths and captum's load function.

    The load function puts the weights into ``target(net)`` (by default the
    suffix of the full model) and returns the checkpoint's learning rate, as
    captum's ``checkpoints_load_func`` must.
    """
    paths = []
    for t, (state, lr) in enumerate(checkpoints):
        paths.append(str(Path(directory) / f"epoch{t}.pt"))
        torch.save({"state": state, "lr": lr}, paths[-1])

    def load(net, path):
        saved = torch.load(path, weights_only=True)
        target(net).load_state_dict(saved["state"])
        return saved["lr"]

    return paths, load


def run_captum(model, checkpoints, x, y, xt, yt, y_star, y_b, batch_size, paper=False):
    """captum's four quantities: layers named by their leaves, or (``paper=True``) as the paper's code ran it.

    ``paper=True``: ``TracInCP`` with the trained layers as the paper named them
    (the container ``layer3.2`` and ``fc``), counterfactuals with ``TracInCPFast`` on ``fc``.
    """
    from captum.influence import TracInCP, TracInCPFast

    clear_sample_grads(model)  # stale ones from an earlier call would leak into a container's layers
    layers = [f"suffix.{name}" for name in (model.trained_layers if paper else model.influence_layers)]
    with tempfile.TemporaryDirectory() as tmp:
        paths, load = captum_checkpoint_files(checkpoints, tmp)

        def tracin(labels, ckpts):
            return TracInCP(
                model, torch.utils.data.TensorDataset(x, labels), ckpts, checkpoints_load_func=load,
                layers=layers, loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=batch_size,
                sample_wise_grads_per_batch=True,
            )

        def fast(labels, ckpts):
            return TracInCPFast(
                model, f"suffix.{model.head_layers[0]}", torch.utils.data.TensorDataset(x, labels), ckpts,
                checkpoints_load_func=load, loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=batch_size,
            )

        counterfactual = fast if paper else tracin
        results, times = {}, {}
        results["SI"], times["SI"] = timed(lambda: tracin(y, paths).self_influence(None))
        results["I"], times["I"] = timed(lambda: tracin(y, paths).influence((xt, yt), k=None).T)
        results["I*"], times["I*"] = timed(
            lambda: counterfactual(y_star, paths[-1:]).influence((xt, yt), k=None).T)
        results["Ib"], times["Ib"] = timed(lambda: counterfactual(y_b, paths[-1:]).influence((xt, yt), k=None).T)
    return results, times


STEPS = ("features", "SI + I", "I*", "Ib")


def report(t_full, n, m, ours, t_ours, theirs, t_theirs, nc, mc):
    """Print glitchlib's full-size timings, then the same-size table against captum."""
    if t_full is not None:
        print(f"glitchlib at full size (n={n}, m={m}), wall / cpu s:")
        for name in STEPS:
            print(f"  {name:<9}{t_full[name][0]:>9.1f}{t_full[name][1]:>9.1f}")
        total = [sum(t[i] for t in t_full.values()) for i in (0, 1)]
        print(f"  {'total':<9}{total[0]:>9.1f}{total[1]:>9.1f}")
    print(f"same size, both measured (n={nc}, m={mc}):")
    errors = {name: max(rel_err(ours[k], theirs[k]) for k in name.split(" + ")) for name in STEPS[1:]}
    print_step_table(t_ours, t_theirs, digits=1, errors=errors)


def print_step_table(t_ours, t_theirs, *, digits: int, errors=None) -> None:
    """One row per step of ``STEPS``: wall and CPU seconds of both libraries, their ratios, then totals."""
    f = f">12.{digits}f"
    print(f"{'step':<9}{'glitchlib wall / cpu s':>24}{'captum wall / cpu s':>24}{'ratio wall / cpu':>19}"
          + (f"{'rel. error':>12}" if errors else ""))
    totals = [0.0, 0.0, 0.0, 0.0]
    for name in STEPS:
        ow, oc = t_ours[name]
        cw, cc = (0.0, 0.0) if name == "features" else [sum(t_theirs[k][i] for k in name.split(" + ")) for i in (0, 1)]
        totals = [a + b for a, b in zip(totals, (ow, oc, cw, cc))]
        if name == "features":
            print(f"{name:<9}{ow:{f}}{oc:{f}}{'(in every step)':>24}")
            continue
        error = f"{errors[name]:>12.1e}" if errors else ""
        print(f"{name:<9}{ow:{f}}{oc:{f}}{cw:{f}}{cc:{f}}{cw / ow:>10.1f}{cc / oc:>9.1f}{error}")
    ow, oc, cw, cc = totals
    print(f"{'total':<9}{ow:{f}}{oc:{f}}{cw:{f}}{cc:{f}}{cw / ow:>10.1f}{cc / oc:>9.1f}")


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest entry-wise difference relative to the largest reference entry."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max())


TOLERANCE = 1e-4


def report_paper(n, m, ours, t_ours, theirs, t_theirs, controls) -> bool:
    """Print the paper-call table and the per-quantity agreement; True when all four agree."""
    print(f"as the paper's public code ran it, same size, both measured (n={n}, m={m}):")
    print("  captum: TracInCP(layers=['suffix.layer3.2', 'suffix.fc']) for SI and I (T checkpoints),")
    print("          TracInCPFast('suffix.fc') for I* and Ib (last checkpoint)")
    print("  glitchlib: TracIn on the suffix, head_layers (fc weight and bias) for SI and I,")
    print("             head_layers with bias=False for I* and Ib (last checkpoint)")
    print_step_table(t_ours, t_theirs, digits=2)
    print(f"agreement with captum (reference), must be <= {TOLERANCE:.0e}:")
    print(f"  {'quantity':<10}{'norm rel. error':>17}{'max |diff| / max |captum|':>28}")
    ok = True
    for key in ("SI", "I", "I*", "Ib"):
        norm, peak = rel_err(ours[key], theirs[key]), max_rel_err(ours[key], theirs[key])
        good = max(norm, peak) <= TOLERANCE
        ok &= good
        print(f"  {key:<10}{norm:>17.1e}{peak:>28.1e}  {'ok' if good else 'FAIL'}")
    print("what captum's paper call differentiated (its SI and I against glitchlib on other layers):")
    for label, (si, matrix) in controls.items():
        rows = len(si)  # the first row's result may cover fewer training samples
        print(f"  SI {rel_err(si, theirs['SI'][:rows]):.1e}, I {rel_err(matrix, theirs['I'][:rows]):.1e}  {label}"
              + (f" (first {rows} training samples)" if rows < n else ""))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=6000, help="training samples for glitchlib")
    parser.add_argument("--m", type=int, default=1000, help="validation samples")
    parser.add_argument("--n-captum", type=int, default=600, help="training samples for the comparison")
    parser.add_argument("--n-paper", type=int, default=None,
                        help="training samples for the paper-call comparison (default: --n-captum)")
    parser.add_argument("--checkpoints", type=int, default=7)
    parser.add_argument("--captum-batch", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                        help="also time glitchlib at full size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from glitchlib.models import create

    model = create("resnet20", n_classes=10, pretrained=False, freeze=True, seed=args.seed).eval()
    checkpoints = make_checkpoints(model.suffix, args.checkpoints, lr=0.01, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.n, 1, 28, 28, generator=gen) * 2 - 1
    xt = torch.rand(args.m, 1, 28, 28, generator=gen) * 2 - 1
    y = torch.randint(0, 10, (args.n,), generator=gen)
    yt = torch.randint(0, 10, (args.m,), generator=gen)
    y_star, y_b = (y + 1) % 10, (y + 2) % 10
    nc = min(args.n_captum, args.n)
    npaper = min(args.n_paper or nc, args.n)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"setting: resnet20 28x28, layers {model.influence_layers}, T={args.checkpoints}, n={args.n}, m={args.m}")
    warm = slice(0, 8)  # first calls pay one-off initialisation (oneDNN); keep it out of the timings
    run_glitchlib(model, checkpoints, x[warm], y[warm], xt[warm], yt[warm], y_star[warm], y_b[warm])
    run_captum(model, checkpoints, x[warm], y[warm], xt[warm], yt[warm], y_star[warm], y_b[warm], 8)
    run_glitchlib(model, checkpoints, x[warm], y[warm], xt[warm], yt[warm], y_star[warm], y_b[warm],
                  layers=model.head_layers, counterfactual_bias=False)
    run_captum(model, checkpoints, x[warm], y[warm], xt[warm], yt[warm], y_star[warm], y_b[warm], 8, paper=True)
    t_full = run_glitchlib(model, checkpoints, x, y, xt, yt, y_star, y_b)[1] if args.full else None
    ours, t_ours = run_glitchlib(model, checkpoints, x[:nc], y[:nc], xt, yt, y_star[:nc], y_b[:nc])
    theirs, t_theirs = run_captum(model, checkpoints, x[:nc], y[:nc], xt, yt, y_star[:nc], y_b[:nc],
                                  args.captum_batch)
    report(t_full, args.n, args.m, ours, t_ours, theirs, t_theirs, nc, args.m)
    print()

    small = (x[:npaper], y[:npaper], xt, yt, y_star[:npaper], y_b[:npaper])
    paper_ours, t_paper_ours = run_glitchlib(model, checkpoints, *small, layers=model.head_layers,
                                             counterfactual_bias=False)
    paper_theirs, t_paper_theirs = run_captum(model, checkpoints, *small, args.captum_batch, paper=True)
    from glitchlib.influence import TracIn

    f_small = torch.cat([model.prefix(c) for c in x[:npaper].split(1024)]).detach()
    f_test = torch.cat([model.prefix(c) for c in xt.split(1024)]).detach()
    weights_only = TracIn(model.suffix, checkpoints, layers=model.head_layers, bias=False, progress=False)
    w_matrix, w_self = weights_only.train_test_and_self_influence(f_small, y[:npaper], f_test, yt)
    rows = min(nc, npaper)
    controls = {
        "glitchlib fc weight and bias (the row above)": (paper_ours["SI"], paper_ours["I"]),
        "glitchlib fc weights only": (w_self, w_matrix),
        f"glitchlib all influence layers {model.influence_layers}": (ours["SI"][:rows], ours["I"][:rows]),
    }
    ok = report_paper(npaper, args.m, paper_ours, t_paper_ours, paper_theirs, t_paper_theirs, controls)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if not ok:
        raise SystemExit(f"the paper-call row disagrees with captum beyond {TOLERANCE:.0e}")


if __name__ == "__main__":
    main()
