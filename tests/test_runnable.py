"""A cell that cannot run is refused before anything is written, with its reason, everywhere.

``experiments.run``, ``glitchlib run``, ``glitchlib grid`` and ``glitchlib status``
share one runnability check (:func:`glitchlib.profiles.runnable`); bad input
reaches the user as one message naming the argument (exit status 2, no
traceback), and a finished cell reads back from a store it cannot write to.
"""

from __future__ import annotations

import builtins
import logging
import os
import tempfile
from pathlib import Path

import pytest
import torch

from glitchlib import cli, experiments
from glitchlib.settings import ExperimentSettings
from glitchlib.grid import grid_status
from glitchlib.profiles import NotRunnable, runnable

BASE = dict(dataset="mnist", glitch="class-based", ratio=0.1, seed=0, n_test=100, epochs=2)
CLI_BASE = ["run", "--dataset", "mnist", "--glitch", "class-based", "--ratio", "0.1", "--seed", "0",
            "--n-test", "100", "--epochs", "2"]


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00 not a checkpoint")
    return path


def _other_architecture(tmp_path: Path) -> Path:
    path = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    return path


# (settings changes, CLI arguments, text the reason must hold)
CASES = [
    ({"n_train": 20}, ["--n-train", "20"], "n_c = 2"),  # 2 samples per class, not "20 samples"
    ({"n_train": 100000}, ["--n-train", "100000"], "n_train=100000 exceeds the 6000 samples"),
    ({"n_contaminated": 11}, ["--n-contaminated", "11"], "n_contaminated=11"),
    ({"ratio": 0.001}, ["--ratio", "0.001"], "ratio=0.001 selects no sample"),
    ({"model": "timm:doesnotexist"}, ["--model", "timm:doesnotexist"], "timm has no model 'doesnotexist'"),
    ({"glitch": "uniform", "ratio": 0.001, "n_train": 300}, ["--glitch", "uniform", "--n-train", "300",
                                                             "--ratio", "0.001"], "floor(ratio * n) = 0"),
]
if not torch.cuda.is_available():
    CASES.append(({"device": "cuda"}, ["--device", "cuda"], "device='cuda': CUDA is not available"))


@pytest.mark.parametrize("changes, argv, reason", CASES, ids=[c[2][:20] for c in CASES])
def test_the_library_refuses_before_writing(tmp_path, changes, argv, reason):
    settings = ExperimentSettings(**{**BASE, **changes})
    ok, why = runnable(settings)
    assert not ok and reason in why
    store = tmp_path / "results"
    with pytest.raises(NotRunnable, match="cannot run") as info:
        experiments.run(settings, store=store, progress=False)
    assert reason in str(info.value) and isinstance(info.value, ValueError)
    assert not store.exists(), "nothing is written for a cell that cannot run"


@pytest.mark.parametrize("changes, argv, reason", CASES, ids=[c[2][:20] for c in CASES])
def test_the_cli_exits_2_with_one_message(tmp_path, capsys, changes, argv, reason):
    store = tmp_path / "results"
    with pytest.raises(SystemExit) as info:
        cli.main(argv=[*CLI_BASE, *argv, "--store", str(store)])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert reason in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not store.exists()


def test_the_training_settings_are_not_blamed_for_an_unknown_timm_model():
    ok, why = runnable(ExperimentSettings(**{**BASE, "model": "timm:doesnotexist"}))
    assert not ok and "timm has no model" in why and "training settings" not in why


@pytest.mark.parametrize("make, reason", [
    (_garbage, "cannot be read as a PyTorch state dict"),
    (_other_architecture, "not a checkpoint of this architecture"),
])
def test_weights_that_do_not_load_are_refused_naming_weights(tmp_path, capsys, make, reason):
    path = make(tmp_path)
    settings = ExperimentSettings(**{**BASE, "weights": str(path)})
    ok, why = runnable(settings)
    assert not ok and why.startswith(f"weights={str(path)!r}") and reason in why
    with pytest.raises(SystemExit) as info:
        cli.main(argv=[*CLI_BASE, "--weights", str(path), "--store", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "weights=" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_status_shows_why_and_the_grid_does_not_retry(tmp_path):
    cells = [ExperimentSettings(**{**BASE, "n_train": 20})]
    status = grid_status(cells, store=tmp_path / "results")
    assert list(status["status"]) == ["not runnable"] and "n_c = 2" in status["reason"][0]


@pytest.mark.parametrize("command", [["status"], ["run"], ["report"]])
def test_a_store_that_is_a_file_is_refused(tmp_path, capsys, command):
    path = tmp_path / "results"
    path.write_text("")
    with pytest.raises(SystemExit) as info:
        cli.main(argv=[*command, "--store", str(path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "argument --store" in err and "not a directory" in err
    assert "Traceback" not in err


def test_a_failed_grid_cell_is_one_line_and_the_traceback_only_at_info(tmp_path, capsys, monkeypatch, caplog):
    profile = tmp_path / "p.yaml"
    profile.write_text("- {dataset: fmnist, glitch: uniform, n_train: 300, n_test: 100}\n")

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(experiments, "run", broken)
    with caplog.at_level(logging.INFO, logger="glitchlib.grid"):
        assert cli.main(argv=["grid", "--profile", str(profile), "--store", str(tmp_path / "r"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "failed:" in out and "RuntimeError: the disk is full" in out and "Traceback" not in out
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and "the disk is full" in errors[0]
    details = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("Traceback" in m for m in details)  # shown with -v (INFO), not by default


# ------------------------------------------------------------ read-only store
@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("ro") / "results"
    settings = ExperimentSettings(dataset="fmnist", glitch="uniform", n_train=60, n_test=30, epochs=1)
    experiments.run(settings, store=store, progress=False)
    return settings, store


def test_a_finished_cell_reads_back_from_a_read_only_store(finished_store, monkeypatch):
    settings, store = finished_store
    root = str(store.resolve())
    real_open, real_mkstemp, real_os_open = builtins.open, tempfile.mkstemp, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and str(Path(file).resolve()).startswith(root) \
                and any(c in mode for c in "wa+x"):
            raise PermissionError(13, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    def guarded_mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(Path(dir).resolve()).startswith(root):
            raise PermissionError(13, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(tempfile, "mkstemp", guarded_mkstemp)
    result = experiments.run(settings, store=store, progress=False)
    assert result.computed == () and len(result.metrics) > 0
    # the same cell on a machine without the device it ran on still reads back
    result = experiments.run(settings.replace(device="cuda:7"), store=store, progress=False)
    assert result.computed == ()
