"""Tests of the book's build script and of its headless-browser check."""

from __future__ import annotations

import importlib.util
import json
import re
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


# ------------------------------------------------------------------ the offline book
def test_math_check_fails_on_tex_source_and_passes_rendered_math():
    raw = '<main><h1>T</h1><p><span class="math notranslate nohighlight">\\(I[i, j]\\)</span></p></main>'
    problems = check_book.math_problems(raw)
    assert any("MathJax did not load" in p for p in problems) and any("TeX source" in p for p in problems)
    display = '<main><div class="math notranslate nohighlight">$$x$$</div><mjx-container>x</mjx-container></main>'
    assert any("TeX source" in p for p in check_book.math_problems(display))
    rendered = '<main><span class="math notranslate nohighlight"><mjx-container class="MathJax">' \
               '<mjx-math>I</mjx-math></mjx-container></span></main>'
    assert check_book.math_problems(rendered) == []
    code = '<main><pre>print("\\\\(")</pre><p>no formula</p></main>'
    assert check_book.math_problems(code) == []


def test_the_book_serves_its_own_mathjax():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"]
    assert not config["mathjax_path"].startswith(("http:", "https:", "//"))
    assert "book/_static" in config["html_static_path"]
    assert build_book.MATHJAX_DIR == ROOT / "book" / "_static" / config["mathjax_path"].split("/")[0]
    assert "django-static-mathjax" in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_injected_parameters_cell_is_hidden_in_html_and_kept_in_the_notebook(tmp_path):
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = 1", "outputs": [],
              "execution_count": 1},
             {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "x = 2",
              "outputs": [], "execution_count": 2}]
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert build_book.hide_injected_parameters(path) == 1
    saved = json.loads(path.read_text())["cells"]
    assert saved[1]["source"] == "x = 2" and saved[1]["metadata"]["tags"] == ["injected-parameters", "remove-cell"]
    assert saved[0]["metadata"]["tags"] == ["parameters"]
    assert build_book.hide_injected_parameters(path) == 0


def _mathjax_or_skip():
    try:
        return build_book.mathjax_source()
    except SystemExit as exc:
        pytest.skip(f"MathJax is not installed ({exc}); `make setup` installs it")


@pytest.mark.skipif(not any(shutil.which(b) for b in check_book.BROWSERS), reason="needs Chromium")
def test_formulas_render_offline_with_the_shipped_mathjax(tmp_path):
    _mathjax_or_skip()
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    build_book.install_mathjax(html / "_static" / "mathjax")
    page = ('<html><head><script defer src="{src}"></script></head><body><main><h1>T</h1>'
            '<p>Influence <span class="math notranslate nohighlight">\\(I[i, j] = \\sum_t \\eta_t\\)</span>.</p>'
            '<div class="math notranslate nohighlight">\\[\\mathrm{SI}[i] = \\lVert g \\rVert^2\\]</div>'
            '</main></body></html>')
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\n")
    (html / "index.html").write_text(page.replace("{src}", "_static/mathjax/tex-chtml.js"))
    (html / "book" / "intro.html").write_text(page.replace("{src}", "../_static/mathjax/tex-chtml.js"))
    shots = tmp_path / "shots"
    assert check_book.main(["--html", str(html), "--toc", str(toc), "--screenshots", str(shots)]) == 0
    # the same page with MathJax from a CDN, as before: no network, so TeX source is shown
    (html / "book" / "intro.html").write_text(
        page.replace("{src}", "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"))
    assert check_book.main(["--html", str(html), "--toc", str(toc), "--screenshots", str(shots)]) == 1


def test_the_api_page_documents_every_public_module():
    """Each public module whose names its package does not already show has its automodule."""
    import importlib
    import pkgutil

    import glitchlib

    page = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"automodule:: (glitchlib[\w.]*)", page))
    missing = []
    for info in pkgutil.walk_packages(glitchlib.__path__, "glitchlib."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names = set(getattr(importlib.import_module(info.name), "__all__", ()))
        parent = set(getattr(importlib.import_module(info.name.rpartition(".")[0]), "__all__", ()))
        if info.name not in documented and not names <= parent:
            missing.append(info.name)
    assert not missing, f"book/api.md has no automodule for {missing}"
