"""The ``glitchlib`` command line: run one experiment, run a grid, show its status, report.

Examples::

    glitchlib run --dataset fmnist --model efficientnet_lite0 --glitch class-based --ratio 0.1 --seed 0
    glitchlib grid --profile embedded -j 2
    glitchlib grid --profile paper --scheduler tcp://10.0.0.5:8786 --device cuda
    glitchlib status --profile paper
    glitchlib report --profile embedded
    glitchlib scan path/to/labelled/images --out scan-results

Every command takes ``--store`` (default ``results/``). Bad arguments, and
settings that cannot run on this machine, exit with status 2 and one message
naming the argument and what to change (``-v`` adds the traceback); nothing is
written to the store then.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from .settings import (COUNTERFACTUAL_CHOICES, CORRUPTIONS, DATASETS, GLITCHES, INFLUENCE_CHOICES, MODELS,
                       ExperimentSettings, field_help)
from .profiles import PROFILES

__all__ = ["main"]

_CHOICES = {"dataset": DATASETS, "glitch": GLITCHES, "influence": INFLUENCE_CHOICES,
            "counterfactual": COUNTERFACTUAL_CHOICES, "corruption": CORRUPTIONS}
_CLUSTERS = ("local", "slurm")  # glitchlib.grid.CLUSTERS, without importing torch for --help


def _model_name(value: str) -> str:
    if value in MODELS or (value.startswith("timm:") and len(value) > 5):
        return value
    raise argparse.ArgumentTypeError(
        f"invalid choice: {value!r} (choose from {', '.join(MODELS)}, or timm:<name>)"
    )


def _profile(value: str) -> str:
    if value in PROFILES:
        return value
    path = Path(value)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        return value
    if path.suffix.lower() in (".yaml", ".yml"):
        raise argparse.ArgumentTypeError(f"profile file {value!r} does not exist")
    raise argparse.ArgumentTypeError(
        f"invalid choice: {value!r} (choose from {', '.join(PROFILES)}, or a .yaml/.yml file)"
    )


def _field_type(field: dataclasses.Field) -> str:
    """The type of a settings field without its ``| None``: "int", "float", "bool" or "str"."""
    return str(field.type).split("|")[0].strip()


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`ExperimentSettings`, parsed as the field's type."""
    helps = field_help()
    for f in dataclasses.fields(ExperimentSettings):
        flag = "--" + f.name.replace("_", "-")
        type_name = _field_type(f)
        text = helps[f.name] + (f" Default: {f.default}." if type_name != "bool" else "")
        if type_name == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=text)
        elif f.name in _CHOICES:
            parser.add_argument(flag, choices=_CHOICES[f.name], default=f.default, help=text)
        elif f.name == "model":
            parser.add_argument(flag, type=_model_name, default=f.default, metavar="MODEL", help=text)
        elif type_name in ("int", "float"):
            parser.add_argument(flag, type=int if type_name == "int" else float, default=f.default,
                                metavar="N" if type_name == "int" else "X", help=text)
        elif type_name == "str":
            parser.add_argument(flag, type=str, default=f.default, help=text)
        else:
            raise TypeError(f"ExperimentSettings.{f.name}: no command-line option for type {f.type!r}")


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="results", metavar="DIR",
                        help="Results store directory. Default: results.")


def _build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``glitchlib`` command."""
    parser = argparse.ArgumentParser(
        prog="glitchlib",
        description="Data glitch discovery with influence-based model explanation: run experiments "
                    "into a resumable results store and report on them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log each stage.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="Run one experiment (or read it back if it is stored).",
                              description="Run one experiment end to end; a finished one is read back.")
    _add_settings_arguments(run)
    _add_store(run)
    run.add_argument("--quiet", action="store_true", help="No progress bars.")

    profile_help = f"A built-in profile ({', '.join(PROFILES)}) or a YAML file. Default: embedded."
    grid = commands.add_parser("grid", help="Run the missing cells of a profile.",
                               description="Run every missing, runnable cell of a profile.")
    grid.add_argument("--profile", type=_profile, default="embedded", help=profile_help)
    grid.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                      help="Cells at once on this machine: 1 runs them in this process, N > 1 is short for "
                           "--cluster local --workers N. Default: 1.")
    grid.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="Run the cells as tasks of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                           "(its workers must see --store).")
    grid.add_argument("--cluster", choices=_CLUSTERS, default=None,
                      help="Start a Dask cluster for this grid: local (worker processes on this machine) "
                           "or slurm (dask-jobqueue SLURMCluster, options from --cluster-config).")
    grid.add_argument("--workers", type=int, default=None, metavar="N",
                      help="Worker processes of --cluster, one cell at a time each. Default: the CPU count "
                           "(local), the processes of one job (slurm).")
    grid.add_argument("--cluster-config", default=None, metavar="YAML",
                      help="YAML mapping of keyword arguments of LocalCluster or SLURMCluster "
                           "(cores, processes, memory, walltime, queue, account, job_extra_directives, ...).")
    grid.add_argument("--threads", type=int, default=1, metavar="N",
                      help="Torch threads per cell wherever it runs; the same value gives the same bits "
                           "on CPU. Default: 1.")
    grid.add_argument("--device", default=None,
                      help="Torch device for every cell (not part of the results' key). Default: the profile's.")
    grid.add_argument("--quiet", action="store_true", help="No progress bar.")
    grid.add_argument("--verify", action="store_true",
                      help="Check the sha256 of every file of the finished cells (matrices and checkpoints "
                           "included) and recompute the cells that fail.")
    grid.add_argument("--studies", action="store_true",
                      help="Also the profile's further experiments (SPEC.md section 9: glitch ratios, one "
                           "contaminated class, clean twins, corruptions, dirty validation sets).")
    _add_store(grid)

    status = commands.add_parser("status", help="Which cells of a profile are done, missing or not runnable.",
                                 description="List the cells of a profile: done, partial, missing, "
                                             "corrupt, or not runnable here and why.")
    status.add_argument("--profile", type=_profile, default="embedded", help=profile_help)
    status.add_argument("--verify", action="store_true",
                        help="Check the sha256 of every file, matrices, checkpoints and the feature cache "
                             "included (by default matrices and checkpoints are checked by size).")
    status.add_argument("--studies", action="store_true", help="Also the profile's further experiments.")
    _add_store(status)

    report = commands.add_parser("report", help="Print the summary tables of the stored results.",
                                 description="Validation accuracy and detection F1 (mean ± std over seeds).")
    report.add_argument("--profile", type=_profile, default=None,
                        help="Restrict to the cells of this profile. Default: every stored run.")
    _add_store(report)

    scan = commands.add_parser(
        "scan", help="Rank the images of a labelled folder (one sub-folder per class) by suspicion.",
        description="Train a head on a frozen backbone over a labelled image folder, compute TracIn and "
                    "every signal, and write suspects.csv and a self-contained index.html into --out.")
    scan.add_argument("path", help="Folder of images: PATH/<class>/<image>, or PATH/train/... with PATH/val/...")
    scan.add_argument("--out", required=True, help="Output folder (resumable: rerunning reuses what it holds).")
    scan.add_argument("--model", type=_model_name, default="efficientnet_lite0",
                      help="Frozen backbone. Default: efficientnet_lite0 (offline).")
    scan.add_argument("--ratio-hint", type=float, default=0.1,
                      help="Expected share of glitches; that many images (by CFRank) are flagged. Default: 0.1.")
    scan.add_argument("--seed", type=int, default=0, help="Seed of the split, the head and the batches. Default: 0.")
    scan.add_argument("--test-fraction", type=float, default=0.15,
                      help="Validation share per class when the folder has no val/. Default: 0.15.")
    scan.add_argument("--lr", type=float, default=None, help="Learning rate. Default: the model's CIFAR-10 one.")
    scan.add_argument("--epochs", type=int, default=None, help="Epochs. Default: the model's CIFAR-10 ones.")
    scan.add_argument("--device", default="cpu", help="Torch device. Default: cpu.")
    scan.add_argument("--quiet", action="store_true", help="No progress bars.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``glitchlib`` console script; returns the exit status.

    ``argv`` is the list of arguments (None: ``sys.argv[1:]``).
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    command = {"run": _run, "grid": _grid, "status": _status, "report": _report, "scan": _scan}[args.command]
    try:
        status = command(args, parser)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        # the reader went away (``glitchlib status | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except ValueError as exc:  # bad input: one message naming the argument, no traceback
        if args.verbose:
            logging.getLogger(__name__).info("traceback of the error below", exc_info=True)
        parser.exit(2, f"{parser.prog} {args.command}: error: {_argument_message(exc)}\n")
    except PermissionError as exc:  # a read-only store, or a folder of someone else's
        if args.verbose:
            logging.getLogger(__name__).info("traceback of the error below", exc_info=True)
        where = f" {exc.filename!r}" if exc.filename else ""
        parser.exit(2, f"{parser.prog} {args.command}: error: cannot write{where}: {exc.strerror or exc}; "
                       "finished runs can be read from a read-only store (status, report), new ones need a "
                       "writable --store\n")
    except KeyboardInterrupt:
        # finished stages are in the store; the next call resumes from them
        parser.exit(130, f"\n{parser.prog} {args.command}: interrupted; run the same command again to resume "
                         "(finished stages are kept)\n")


#: Library argument names that the command line spells differently.
_FLAGS = {"root": "--store", "store": "--store", "profile": "--profile"}


def _argument_message(exc: ValueError, flags: dict[str, str] | None = None) -> str:
    """``exc`` as ``argument --flag: ...`` when it names one argument, else as it is.

    ``flags`` adds a command's own spellings of library argument names.
    """
    from ._validation import ArgumentError

    names = {f.name for f in dataclasses.fields(ExperimentSettings)}
    spelled = {**_FLAGS, **(flags or {})}

    def flag(name: str) -> str | None:
        return spelled.get(name) or ("--" + name.replace("_", "-") if name in names else None)

    if isinstance(exc, ArgumentError) and flag(exc.argument):
        return f"argument {flag(exc.argument)}: {exc.value!r}: {exc.problem}"
    first = str(exc).split("=", 1)[0]  # "device='gpu' is not valid ..." names its field first
    if first.isidentifier() and flag(first):
        return f"argument {flag(first)}: {exc}"
    return str(exc)


def _subparser_error(parser: argparse.ArgumentParser, command: str, message: str):
    parser.exit(2, f"{parser.prog} {command}: error: {message}\n")


def _profile_settings(args, parser):
    from .profiles import profile_settings, study_settings

    try:
        extra = study_settings(args.profile) if getattr(args, "studies", False) else []
        return profile_settings(args.profile) + extra
    except ValueError as exc:
        _subparser_error(parser, args.command, f"argument --profile: {exc}")


def _run(args, parser) -> int:
    from . import experiments

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ExperimentSettings)}
    settings = ExperimentSettings(**values)  # a bad value raises, main() reports it
    # refused before anything is written when it cannot run here (NotRunnable, a ValueError)
    result = experiments.run(settings, store=args.store, progress=not args.quiet)
    state = "computed stages " + ", ".join(result.computed) if result.computed else "read from the store"
    print(f"{settings.label()}: {state}")
    print(f"entry: {result.path}")
    summary = {k: v for k, v in result.summary.items() if v is not None}
    for name, value in summary.items():
        print(f"  {name:22s} {value:.4f}" if isinstance(value, float) else f"  {name:22s} {value}")
    print(result.metrics.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))
    return 0


def _grid(args, parser) -> int:
    from .grid import load_cluster_options, run_grid

    def error(message):
        _subparser_error(parser, "grid", message)

    for flag, value in (("-j/--jobs", args.jobs), ("--workers", args.workers), ("--threads", args.threads)):
        if value is not None and value < 1:
            error(f"argument {flag}: {value} must be a positive integer")
    if args.scheduler is not None and (args.cluster is not None or args.jobs > 1):
        error("argument --scheduler: runs the cells on that scheduler's workers; "
              "leave out --cluster and -j/--jobs")
    if args.cluster is not None and args.jobs > 1:
        error("argument -j/--jobs: with --cluster, give the number of workers as --workers")
    if args.cluster is None and (args.workers is not None or args.cluster_config is not None):
        flag = "--workers" if args.workers is not None else "--cluster-config"
        error(f"argument {flag}: needs --cluster local or --cluster slurm")
    options = {}
    if args.cluster_config is not None:
        try:
            options = load_cluster_options(args.cluster_config)
        except ValueError as exc:
            error(f"argument --cluster-config: {exc}")
    settings = _profile_settings(args, parser)
    if args.device is not None:
        try:
            settings = [s.replace(device=args.device) for s in settings]
        except ValueError as exc:
            error(f"argument --device: {exc}")
    try:
        outcome = run_grid(settings, store=args.store, jobs=args.jobs, scheduler=args.scheduler,
                           cluster=args.cluster, workers=args.workers, cluster_options=options,
                           threads=args.threads, progress=not args.quiet, verify=args.verify)
    except ValueError as exc:
        error(_argument_message(exc))
    except ImportError as exc:  # dask-jobqueue missing
        error(f"argument --cluster: {exc}")
    print(f"profile {args.profile}: {len(settings)} cells; computed {len(outcome.computed)}, "
          f"already done {len(outcome.already_done)}, not runnable {len(outcome.not_runnable)}, "
          f"failed {len(outcome.failed)}")
    for key, reason in outcome.not_runnable:
        print(f"  not runnable: {key}: {reason}")
    for key, error_text in outcome.failed:
        print(f"  failed: {key}: {error_text.strip().splitlines()[-1]}")
    return 0 if outcome.ok else 1


def _status(args, parser) -> int:
    import pandas as pd

    from .grid import grid_status

    from .features import _cache_problems
    from .store import as_store

    settings = _profile_settings(args, parser)
    table = grid_status(settings, store=args.store, verify=args.verify)
    counts = table["status"].value_counts()
    print(f"profile {args.profile} in {args.store}: {len(table)} cells; "
          + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for path, problem in _cache_problems(as_store(args.store).features_dir) if args.verify else []:
        print(f"damaged feature cache file {path}: {problem} (recomputed when next needed)")
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 120):
        print(table.drop(columns=["key"]).to_string(index=False))
    return 0


def _report(args, parser) -> int:
    import pandas as pd

    from .report import summary_tables

    if not Path(args.store).exists():  # a file there is refused by the store itself, naming --store
        _subparser_error(parser, "report", f"argument --store: no results store at {args.store!r}; "
                                           "give the folder `glitchlib run`/`grid` wrote to")
    keys = None
    if args.profile is not None:
        keys = [s.key() for s in _profile_settings(args, parser)]
    tables = summary_tables(store=args.store, keys=keys)
    if not tables:
        print(f"no finished runs in {args.store}" + (f" for profile {args.profile}" if args.profile else "")
              + "; run `glitchlib grid` first")
        return 0
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250):
        for title, table in tables.items():
            print(f"\n{title} (mean ± std over seeds)")
            print(table.to_string())
    return 0




#: Settings of ``glitchlib.scan.ScanSettings`` named at the start of their error messages, and their flags.
_SCAN_FLAGS = {"ratio_hint": "--ratio-hint", "seed": "--seed", "test_fraction": "--test-fraction",
               "lr": "--lr", "epochs": "--epochs", "out": "--out", "model": "--model", "device": "--device",
               "path": "PATH"}


def _scan(args, parser) -> int:
    from .scan import scan_folder

    try:
        result = scan_folder(args.path, out=args.out, model=args.model, ratio_hint=args.ratio_hint, seed=args.seed,
                             test_fraction=args.test_fraction, lr=args.lr, epochs=args.epochs,
                             device=args.device, progress=not args.quiet)
    except ValueError as exc:
        message = _argument_message(exc, _SCAN_FLAGS)
        # what names no option is about the folder itself (its layout, its images)
        _subparser_error(parser, "scan", message if message.startswith("argument ") else f"argument PATH: {message}")
    state = f"computed in {result.seconds:.0f} s" if result.computed else "read back"
    flagged = int(result.suspects["flagged"].sum())
    print(f"{args.path}: {len(result.suspects)} training images, {len(result.class_names)} classes, "
          f"validation accuracy {result.val_acc:.3f} ({state})")
    print(f"{flagged} flagged by CFRank (--ratio-hint {args.ratio_hint:g}); top 10 by CNCI:")
    top = result.suspects.head(10)[["file", "given_label", "suggested_label", "rank_cnci", "rank_pcid"]]
    print(top.to_string(index=False))
    print(f"table: {result.out / 'suspects.csv'}\npage:  {result.page}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
