"""Tests of the book's build script and of its headless-browser check."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_book = _load("build_book", ROOT / "scripts" / "build_book.py")
check_book = _load("check_book", ROOT / "book" / "check_book.py")


def _notebook(path: Path, stderr: str) -> Path:
    cell = {"cell_type": "code", "metadata": {}, "source": "x", "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stderr", "text": stderr}]}
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_build_finds_python_warnings_in_executed_notebooks(tmp_path):
    bad = _notebook(tmp_path / "a.ipynb", "/x/y.py:3: RuntimeWarning: invalid value encountered\n  z = a / b\n")
    found = build_book._warnings_in(bad)
    assert len(found) == 1 and "RuntimeWarning" in found[0] and "cell 1" in found[0]
    allowed = _notebook(tmp_path / "b.ipynb", "/x/auto.py:21: TqdmWarning: IProgress not found. Please update\n")
    assert build_book._warnings_in(allowed) == []
    progress = _notebook(tmp_path / "c.ipynb", "grid: 100%|██████████| 8/8 [00:05<00:00]\n")
    assert build_book._warnings_in(progress) == []


def test_every_toc_chapter_is_a_notebook_or_a_page():
    pages = check_book.toc_pages(ROOT / "_toc.yml")
    assert pages[0] == ("book/intro", False)
    for page, is_result in pages:
        if is_result:
            assert (ROOT / "notebooks" / f"{Path(page).name}.py").is_file(), page
        else:
            assert (ROOT / f"{page}.md").is_file(), page


def test_build_parameters_read_the_profile_file():
    params = build_book._parameters("tiny", None)
    assert params["profile"] == "tiny" and params["compute_missing"] is True
    assert build_book._parameters("no-such-profile", None) == {"profile": "no-such-profile"}


@pytest.mark.skipif(not any(shutil.which(b) for b in check_book.BROWSERS), reason="needs Chromium")
def test_browser_check_passes_a_good_book_and_fails_a_broken_one(tmp_path):
    html = tmp_path / "html"
    (html / "notebooks" / "_executed").mkdir(parents=True)
    (html / "book").mkdir()
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
    (html / "f.png").write_bytes(png)
    page = "<html><body><main><h1>T</h1><table><tr><td>1</td></tr></table>{}</main></body></html>"
    (html / "index.html").write_text(page.format(""))
    (html / "book" / "intro.html").write_text(page.format(""))
    (html / "notebooks" / "_executed" / "a.html").write_text(page.format('<img src="../../f.png">'))
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nparts:\n- caption: A\n  chapters:\n"
                   "  - file: notebooks/_executed/a\n")
    shots = tmp_path / "shots"
    assert check_book.main(["--html", str(html), "--toc", str(toc), "--screenshots", str(shots)]) == 0
    assert (shots / "notebooks___executed__a.png").stat().st_size > 0

    (html / "notebooks" / "_executed" / "a.html").write_text(
        page.format("<pre>Traceback (most recent call last):</pre>"))
    assert check_book.main(["--html", str(html), "--toc", str(toc), "--screenshots", str(shots)]) == 1
