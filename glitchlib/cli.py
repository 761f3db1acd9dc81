"""The ``glitchlib`` command line: run one experiment, run a grid, show its status, report.

Examples::

    glitchlib run --dataset fmnist --model efficientnet_lite0 --glitch class-based --ratio 0.1 --seed 0
    glitchlib grid --profile embedded -j 2
    glitchlib status --profile paper
    glitchlib report --profile embedded

Every command takes ``--store`` (default ``results/``). Bad arguments exit with
status 2 and a message naming the argument and its valid values.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from .config import COUNTERFACTUAL_CHOICES, DATASETS, GLITCH_KINDS, INFLUENCE_CHOICES, MODELS, ExperimentSettings, field_help
from .profiles import PROFILES

__all__ = ["main", "build_parser"]

_CHOICES = {"dataset": DATASETS, "glitch": GLITCH_KINDS, "influence": INFLUENCE_CHOICES,
            "counterfactual": COUNTERFACTUAL_CHOICES}
_INTS = {"seed", "n_train", "n_test", "n_contaminated", "batch_size", "epochs", "projection_dim"}
_FLOATS = {"ratio", "subset", "lr"}


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


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    helps = field_help()
    for f in dataclasses.fields(ExperimentSettings):
        flag = "--" + f.name.replace("_", "-")
        text = helps[f.name] + (f" Default: {f.default}." if f.name not in _CHOICES else "")
        if f.name == "pretrained":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=helps[f.name])
        elif f.name in _CHOICES:
            parser.add_argument(flag, choices=_CHOICES[f.name], default=f.default,
                                help=f"{helps[f.name]} Default: {f.default}.")
        elif f.name == "model":
            parser.add_argument(flag, type=_model_name, default=f.default, metavar="MODEL", help=text)
        elif f.name in _INTS:
            parser.add_argument(flag, type=int, default=f.default, metavar="N", help=text)
        elif f.name in _FLOATS:
            parser.add_argument(flag, type=float, default=f.default, metavar="X", help=text)
        else:
            parser.add_argument(flag, type=str, default=f.default, help=text)


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="results", metavar="DIR",
                        help="Results store directory. Default: results.")


def build_parser() -> argparse.ArgumentParser:
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
    grid.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="Worker processes. Default: 1.")
    grid.add_argument("--device", default=None,
                      help="Torch device for every cell (not part of the results' key). Default: the profile's.")
    grid.add_argument("--quiet", action="store_true", help="No progress bar.")
    grid.add_argument("--studies", action="store_true",
                      help="Also the profile's further experiments (SPEC.md section 9: glitch ratios, one "
                           "contaminated class, clean twins, corruptions, dirty validation sets).")
    _add_store(grid)

    status = commands.add_parser("status", help="Which cells of a profile are done, missing or not runnable.",
                                 description="List the cells of a profile: done, partial, missing, "
                                             "corrupt, or not runnable here and why.")
    status.add_argument("--profile", type=_profile, default="embedded", help=profile_help)
    status.add_argument("--studies", action="store_true", help="Also the profile's further experiments.")
    _add_store(status)

    report = commands.add_parser("report", help="Print the summary tables of the stored results.",
                                 description="Validation accuracy and detection F1 (mean ± std over seeds).")
    report.add_argument("--profile", type=_profile, default=None,
                        help="Restrict to the cells of this profile. Default: every stored run.")
    _add_store(report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``glitchlib`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    command = {"run": _run, "grid": _grid, "status": _status, "report": _report}[args.command]
    return command(args, parser)


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
    try:
        settings = ExperimentSettings(**values)
    except ValueError as exc:
        name = str(exc).split("=", 1)[0]
        _subparser_error(parser, "run", f"argument --{name.replace('_', '-')}: {exc}")
    ok, reason = experiments.runnable(settings)
    if not ok:
        _subparser_error(parser, "run", f"cannot run {settings.label()} here: {reason}")
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
    from .grid import run_grid

    if args.jobs < 1:
        _subparser_error(parser, "grid", f"argument -j/--jobs: {args.jobs} must be a positive integer")
    settings = _profile_settings(args, parser)
    if args.device is not None:
        try:
            settings = [s.replace(device=args.device) for s in settings]
        except ValueError as exc:
            _subparser_error(parser, "grid", f"argument --device: {exc}")
    outcome = run_grid(settings, store=args.store, jobs=args.jobs, progress=not args.quiet)
    print(f"profile {args.profile}: {len(settings)} cells; computed {len(outcome.computed)}, "
          f"already done {len(outcome.already_done)}, not runnable {len(outcome.not_runnable)}, "
          f"failed {len(outcome.failed)}")
    for key, reason in outcome.not_runnable:
        print(f"  not runnable: {key}: {reason}")
    for key, error in outcome.failed:
        print(f"  failed: {key}: {error.strip().splitlines()[-1]}")
    return 0 if outcome.ok else 1


def _status(args, parser) -> int:
    import pandas as pd

    from .grid import grid_status

    settings = _profile_settings(args, parser)
    table = grid_status(settings, args.store)
    counts = table["status"].value_counts()
    print(f"profile {args.profile} in {args.store}: {len(table)} cells; "
          + ", ".join(f"{n} {status}" for status, n in counts.items()))
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 120):
        print(table.drop(columns=["key"]).to_string(index=False))
    return 0


def _report(args, parser) -> int:
    import pandas as pd

    from .grid import summary_tables

    keys = None
    if args.profile is not None:
        keys = [s.key() for s in _profile_settings(args, parser)]
    tables = summary_tables(args.store, keys)
    if not tables:
        print(f"no finished runs in {args.store}" + (f" for profile {args.profile}" if args.profile else "")
              + "; run `glitchlib grid` first")
        return 0
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250):
        for title, table in tables.items():
            print(f"\n{title} (mean ± std over seeds)")
            print(table.to_string())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
