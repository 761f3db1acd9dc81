"""Every notebook of the book executes under papermill with tiny parameters, and reads as the book needs.

The executing tests share one tiny results store (one dataset, 200 training and
60 validation samples, seed 0, the four glitch kinds) computed once per session;
each notebook then computes whatever else it needs (e.g. the low-ratio runs)
through the library, as it would on a fresh clone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
KERNEL = "glitchlib"
MAX_CELL_LINES = 15

TINY_PROFILE = """\
base: {dataset: fmnist, model: efficientnet_lite0, ratio: 0.1, seed: 0, n_train: 200, n_test: 60}
product:
  glitch: [uniform, class-based, anomalies, mixed]
"""
TINY_PARAMETERS = {"compute_missing": True, "low_ratio": 0.05, "low_ratio_seeds": 1, "example_seed": 0, "n_images": 4,
                   "n_train": 200, "n_test": 100, "per_class": 30,
                   # 1 % of 20 samples per class is none; 30 validation samples per 100 give each class one noisy label
                   "ratios": [0.05, 0.1], "test_share": 0.3}
#: Chapters that build one run from the library's primitives alone (no store, no report).
PRIMITIVE_CHAPTERS = {"00_one_run", "20_your_own_images"}


def _cells(path: Path):
    import jupytext

    return jupytext.read(path).cells


def test_there_is_a_notebook_per_chapter():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [c["file"] for part in toc["parts"] for c in part["chapters"] if c["file"].startswith("notebooks/")]
    assert [Path(c).name for c in chapters] == [p.stem for p in NOTEBOOKS]
    assert all(c.startswith("notebooks/_executed/") for c in chapters)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_as_the_book_needs(path):
    import jupytext

    notebook = jupytext.read(path)
    assert notebook.metadata["kernelspec"]["name"] == KERNEL
    cells = notebook.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "a title first"
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is cells[1], "one parameters cell, right after the title"
    names = set(re.findall(r"^(\w+)\s*=", tagged[0].source, re.MULTILINE))
    text = path.read_text(encoding="utf-8")
    if path.stem in PRIMITIVE_CHAPTERS:
        assert {"dataset", "seed", "results_dir"} <= names
        assert "report." not in text and "Store(" not in text and "experiments.run" not in text.replace(
            "`glitchlib.experiments.run`", ""), "primitives only"
    else:
        assert {"profile", "results_dir", "compute_missing"} <= names
    for before, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code" and cell is not tagged[0]:
            assert before.cell_type == "markdown", f"no markdown before code cell:\n{cell.source}"
        if cell.cell_type == "code":
            lines = len(cell.source.strip().splitlines())
            assert lines <= MAX_CELL_LINES, f"code cell of {lines} lines:\n{cell.source}"
    said = "Markdown(chapter.provenance)" in text or "provenance_markdown" in text
    assert said or path.stem in PRIMITIVE_CHAPTERS, "say what produced the numbers"


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    pytest.importorskip("papermill")
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.fail(f"the Jupyter kernel {KERNEL!r} is not installed: run `make setup`")
    from glitchlib.grid import run_grid
    from glitchlib.profiles import profile_settings

    root = tmp_path_factory.mktemp("book")
    profile = root / "tiny.yaml"
    profile.write_text(TINY_PROFILE, encoding="utf-8")
    store = root / "results"
    outcome = run_grid(profile_settings(profile), store=store, progress=False)
    assert outcome.ok, outcome.failed
    return profile, store


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tiny_store, tmp_path):
    import jupytext
    import papermill

    profile, store = tiny_store
    source = tmp_path / f"{path.stem}.ipynb"
    jupytext.write(jupytext.read(path), source)
    declared = papermill.inspect_notebook(source)
    parameters = {"profile": str(profile), "results_dir": str(store), **TINY_PARAMETERS}
    output = tmp_path / f"{path.stem}.out.ipynb"
    papermill.execute_notebook(
        str(source), str(output), parameters={k: v for k, v in parameters.items() if k in declared},
        kernel_name=KERNEL, cwd=str(ROOT), progress_bar=False,
    )
    notebook = json.loads(output.read_text(encoding="utf-8"))
    outputs = [o for c in notebook["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    stderr = "".join("".join(o.get("text", "")) for o in outputs if o.get("name") == "stderr")
    warnings = [line for line in re.findall(r"^.*\b\w*Warning: .*$", stderr, re.MULTILINE)
                if "TqdmWarning: IProgress not found" not in line]
    assert not warnings, warnings
    mimes = {m for o in outputs for m in o.get("data", {})}
    assert "image/png" in mimes, "a figure"
    assert any("<table" in "".join(o.get("data", {}).get("text/html", "")) for o in outputs), "a table"
    assert any("text/markdown" in o.get("data", {}) for o in outputs), "the provenance paragraph"
