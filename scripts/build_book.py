"""Build the book: compute the profile's results, execute the notebooks, render the HTML.

    python scripts/build_book.py --profile embedded --results results

1. ``glitchlib grid --profile <profile> --studies --store <results> -j <jobs> --verify``
   computes the missing cells of the profile's grid and of its further experiments
   (finished cells are read, never recomputed; a cell with a file that fails its
   sha256 is recomputed): in this process with one job, on a local Dask cluster of
   ``jobs`` worker processes otherwise, or on a running Dask scheduler with
   ``--scheduler``.
2. Every ``notebooks/*.py`` (jupytext percent format) is executed with papermill
   on the ``glitchlib`` kernel, with the parameters of ``book/params/<profile>.yaml``
   (each notebook receives those its ``parameters`` cell defines) plus
   ``results_dir``, into ``notebooks/_executed/<name>.ipynb``.
3. The executed notebooks are checked for Python warnings (a warning fails the
   build, like a Sphinx warning does).
4. ``jupyter-book build . --path-output book --warningiserror --keep-going --all``
   renders ``book/_build/html``; the book never executes code itself. MathJax
   3.2.2 (the PyPI package ``django-static-mathjax``, installed by ``make setup``)
   is copied to ``book/_static/mathjax`` first and served with the book, so the
   formulas render without network. The cell papermill injects under each
   ``parameters`` cell is tagged ``remove-cell``: hidden in the HTML, kept in the
   downloadable notebook.

Exits non-zero when any step fails and says which.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = NOTEBOOKS / "_executed"
PARAMS = ROOT / "book" / "params"
OUTPUT = ROOT / "book"  # jupyter-book writes OUTPUT/_build/html

#: Warnings in notebook output that are harmless and allowed: tqdm's notice
#: that ipywidgets is not installed (it then draws text progress bars).
ALLOWED_WARNINGS = (re.compile(r"TqdmWarning: IProgress not found"),)
WARNING_LINE = re.compile(r"^.*\b\w*Warning: .*$", re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="embedded",
                        help="embedded, paper, tiny, or a profile YAML file (default: embedded)")
    parser.add_argument("--results", default="results", help="the results store (default: results)")
    parser.add_argument("--jobs", "-j", type=int, default=1,
                        help="cells at once: 1 in this process, N > 1 a local Dask cluster of N workers (default: 1)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run the grid's cells on this running Dask scheduler instead (e.g. tcp://host:8786)")
    parser.add_argument("--params", default=None,
                        help="notebook parameters YAML (default: book/params/<profile stem>.yaml)")
    parser.add_argument("--kernel", default="glitchlib", help="Jupyter kernel (default: glitchlib)")
    parser.add_argument("--notebooks", nargs="*", default=None, metavar="NAME",
                        help="execute only the notebooks whose name starts with one of these")
    parser.add_argument("--skip-grid", action="store_true", help="do not run the grid first")
    parser.add_argument("--skip-execute", action="store_true", help="render the notebooks executed before")
    parser.add_argument("--skip-html", action="store_true", help="execute the notebooks only")
    parser.add_argument("--timeout", type=int, default=None, help="seconds allowed per notebook cell")
    args = parser.parse_args(argv)

    results = Path(args.results)
    results_param = _relative(results.resolve())
    params = _parameters(args.profile, args.params)
    params["results_dir"] = results_param
    times: dict[str, float] = {}

    if not args.skip_grid:
        start = time.perf_counter()
        where = ["--scheduler", args.scheduler] if args.scheduler else ["-j", str(args.jobs)]
        _step(f"results: glitchlib grid --profile {args.profile} --studies --store {results_param} "
              f"{' '.join(where)} --verify")
        from glitchlib.cli import main as glitchlib_main

        if glitchlib_main(["grid", "--profile", str(args.profile), "--studies", "--store", str(results), *where,
                           "--verify"]):
            return _fail("some runs of the grid failed (see above); the store keeps the finished ones")
        times["grid"] = time.perf_counter() - start

    if not args.skip_execute:
        _check_kernel(args.kernel)
        notebooks = _select(sorted(NOTEBOOKS.glob("[0-9]*.py")), args.notebooks)
        if not notebooks:
            return _fail(f"no notebook in {NOTEBOOKS} matches {args.notebooks}")
        EXECUTED.mkdir(parents=True, exist_ok=True)
        for path in notebooks:
            start = time.perf_counter()
            _step(f"notebook {path.name}")
            error = _execute(path, EXECUTED / f"{path.stem}.ipynb", params, args.kernel, args.timeout)
            if error:
                return _fail(error)
            times[path.stem] = time.perf_counter() - start
        problems = [p for nb in sorted(EXECUTED.glob("*.ipynb")) for p in _warnings_in(nb)]
        if problems:
            return _fail("Python warnings in the executed notebooks:\n  " + "\n  ".join(problems))

    if not args.skip_html:
        missing = _missing_chapters()
        if missing:
            return _fail("chapters of _toc.yml not executed yet: " + ", ".join(missing)
                         + " (run without --skip-execute / --notebooks)")
        start = time.perf_counter()
        _step(f"MathJax: {_relative(install_mathjax())}")
        _step("HTML: jupyter-book build (warnings are errors)")
        command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(ROOT),
                   "--path-output", str(OUTPUT), "--warningiserror", "--keep-going", "--all", "--quiet"]
        if subprocess.run(command, cwd=ROOT).returncode:
            return _fail("jupyter-book build failed (see the warnings above)")
        times["html"] = time.perf_counter() - start
        print(f"book: {OUTPUT / '_build' / 'html' / 'index.html'}")

    print("seconds: " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in times.items())
          + f"; total {sum(times.values()):.0f}")
    return 0


def _parameters(profile: str, params_file: str | None) -> dict:
    import yaml

    path = Path(params_file) if params_file else PARAMS / f"{Path(profile).stem}.yaml"
    if params_file and not path.is_file():
        raise SystemExit(f"--params {params_file}: no such file")
    values = {}
    if path.is_file():
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: expected a mapping of parameter names to values")
    values["profile"] = profile if not Path(profile).suffix else _relative(Path(profile).resolve())
    print(f"parameters: {path if path.is_file() else '(none: defaults)'}: {values}")
    return values


def _execute(source: Path, target: Path, params: dict, kernel: str, timeout: int | None) -> str | None:
    """Execute one jupytext notebook with papermill; return an error message or None."""
    import jupytext
    import papermill

    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = Path(tmp) / f"{source.stem}.ipynb"
        jupytext.write(jupytext.read(source), ipynb)
        declared = papermill.inspect_notebook(ipynb)
        chosen = {k: v for k, v in params.items() if k in declared}
        try:
            papermill.execute_notebook(
                str(ipynb), str(target), parameters=chosen, kernel_name=kernel, cwd=str(ROOT),
                progress_bar=False, execution_timeout=timeout,
            )
        except papermill.PapermillExecutionError as exc:
            return f"{source.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n" \
                   f"  the executed notebook with the traceback: {_relative(target)}"
    hide_injected_parameters(target)
    return None


#: Tag papermill gives the cell it injects, and the tag myst-nb leaves out of the HTML.
INJECTED_TAG, HIDDEN_TAG = "injected-parameters", "remove-cell"
#: Where the book's MathJax is copied (git-ignored); ``_config.yml`` serves it from ``_static``.
MATHJAX_DIR = ROOT / "book" / "_static" / "mathjax"
MATHJAX_PACKAGE = "django-static-mathjax==3.2.2.1"


def hide_injected_parameters(path: Path) -> int:
    """Tag papermill's injected-parameters cells ``remove-cell`` (hidden in the HTML); returns how many."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    count = 0
    for cell in notebook.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED_TAG in tags and HIDDEN_TAG not in tags:
            tags.append(HIDDEN_TAG)
            count += 1
    if count:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return count


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax 3 (PyPI ``django-static-mathjax``)."""
    try:
        import mathjax
    except ImportError:
        raise SystemExit(f"MathJax is not installed: pip install '{MATHJAX_PACKAGE}' (make setup does); "
                         "the book serves it so that formulas render offline") from None
    source = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    if not (source / "tex-chtml.js").is_file():
        raise SystemExit(f"{source} lacks tex-chtml.js; reinstall '{MATHJAX_PACKAGE}'")
    return source


def install_mathjax(target: Path = MATHJAX_DIR) -> Path:
    """Copy MathJax's ``es5`` folder to ``target`` (unless it is there already); returns ``target``."""
    import shutil

    source = mathjax_source()
    stamp = target / ".source"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == str(source):
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    stamp.write_text(str(source), encoding="utf-8")
    return target


def _warnings_in(path: Path) -> list[str]:
    """Python warnings printed by the cells of an executed notebook (allowed ones left out)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream" or output.get("name") != "stderr":
                continue
            text = "".join(output.get("text", ""))
            for match in WARNING_LINE.finditer(text):
                line = match.group(0)
                if not any(allowed.search(line) for allowed in ALLOWED_WARNINGS):
                    found.append(f"{path.name}, cell {number}: {line.strip()[:300]}")
    return found


def _missing_chapters() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [f for f in files if not any((ROOT / f).with_suffix(s).is_file() for s in (".md", ".ipynb"))]


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if name not in KernelSpecManager().find_kernel_specs():
        raise SystemExit(
            f"Jupyter kernel {name!r} is not installed; register it with\n"
            f"  {sys.executable} -m ipykernel install --sys-prefix --name {name} "
            f"--display-name 'Python (glitchlib)'\n(or run `make setup`)"
        )


def _select(paths: list[Path], prefixes: list[str] | None) -> list[Path]:
    if not prefixes:
        return paths
    return [p for p in paths if any(p.stem.startswith(prefix) for prefix in prefixes)]


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _step(message: str) -> None:
    print(f"== {message}", flush=True)


def _fail(message: str) -> int:
    print(f"build_book: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
