"""Notebook parameters typed as text on papermill's command line reach the library by value.

``papermill ... -p compute_missing false`` injects the string ``"false"``; the
chapter must then compute nothing (it used to read the non-empty string as True
and run every missing experiment).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "glitchlib"


@pytest.mark.slow
def test_papermill_compute_missing_false_computes_nothing(tmp_path):
    pytest.importorskip("papermill")
    import jupytext
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.fail(f"the Jupyter kernel {KERNEL!r} is not installed: run `make setup`")
    profile = tmp_path / "p.yaml"
    profile.write_text("- {dataset: fmnist, glitch: uniform, n_train: 200, n_test: 60}\n", encoding="utf-8")
    source = tmp_path / "01.ipynb"
    jupytext.write(jupytext.read(ROOT / "notebooks" / "01_training_settings.py"), source)
    store = tmp_path / "results"
    command = [sys.executable, "-m", "papermill", str(source), str(tmp_path / "out.ipynb"), "-k", KERNEL,
               "--cwd", str(ROOT), "-p", "profile", str(profile), "-p", "results_dir", str(store),
               "-p", "compute_missing", "false", "--no-progress-bar"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (store / "runs").exists(), "compute_missing='false' computed runs"
    out = (tmp_path / "out.ipynb").read_text(encoding="utf-8")
    assert '"compute_missing": "false"' in out or "compute_missing = \\\"false\\\"" in out  # papermill passed text

    bad = command[:-3] + ["compute_missing", "nope", "--no-progress-bar"]
    done = subprocess.run(bad, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "compute='nope'" in done.stderr + done.stdout
