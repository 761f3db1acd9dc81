"""Open every chapter of the built book in headless Chromium and check what a reader sees.

    python book/check_book.py --html book/_build/html

Serves the HTML on 127.0.0.1 (a free port), starts Chromium itself for each page
of ``_toc.yml`` (``--dump-dom`` and ``--screenshot``), and checks that

* the page loads and has a title (``<h1>``);
* result chapters (the executed notebooks) show at least one table and one
  figure, and every ``<img>`` of the page is served;
* no page shows an error: a Python traceback, a papermill failure, a 404;
* formulas are rendered: a page with math (Sphinx's ``class="math"`` elements)
  holds MathJax output (``<mjx-container>``), and no TeX source (``\\(``,
  ``\\[``, ``$$``, ``\\begin{``) is left in its text. The book serves its own
  MathJax, so this holds offline;
* papermill's injected-parameters cell is not shown.

Screenshots go to ``book/_build/screenshots/<page>.png``. Exits 1 when a check
fails (listing every failure), 2 when Chromium or the HTML is missing. No network
access beyond localhost: Chromium resolves every other host to nothing.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ERROR_MARKERS = {
    "a Python traceback": re.compile(r"Traceback \(most recent call last\)|class=\"[^\"]*output traceback"),
    "a papermill failure": re.compile(r"An Exception was encountered at|papermill-error-cell"),
    "an error output": re.compile(r"class=\"[^\"]*output error"),
    "an HTTP error page": re.compile(r"Error response</title>|Error code: 404"),
}


@dataclass
class PageResult:
    page: str
    tables: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", default=str(ROOT / "book" / "_build" / "html"), help="the built book")
    parser.add_argument("--toc", default=str(ROOT / "_toc.yml"), help="the table of contents")
    parser.add_argument("--screenshots", default=None, help="folder for the screenshots "
                        "(default: <html>/../screenshots)")
    parser.add_argument("--browser", default=None, help="Chromium executable (default: found on PATH)")
    parser.add_argument("--timeout", type=int, default=90, help="seconds allowed per page (default: 90)")
    args = parser.parse_args(argv)

    html = Path(args.html).resolve()
    if not (html / "index.html").is_file():
        print(f"check_book: error: no built book at {html} (run `make book` first)", file=sys.stderr)
        return 2
    browser = args.browser or next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        print("check_book: error: Chromium not found; install it (Debian: apt-get install chromium) "
              "or pass --browser", file=sys.stderr)
        return 2
    shots = Path(args.screenshots) if args.screenshots else html.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = toc_pages(Path(args.toc))

    server = _serve(html)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="check-book-") as profile_dir:
            for page, is_result in pages:
                url = urllib.parse.urljoin(base, page + ".html")
                shot = shots / (page.replace("/", "__") + ".png")
                results.append(check_page(browser, url, page, is_result, shot, profile_dir, args.timeout))
    finally:
        server.shutdown()

    failed = [r for r in results if r.problems]
    for r in results:
        state = "FAIL" if r.problems else "ok"
        print(f"{state:4s} {r.page}: {r.tables} tables, {r.images} figures"
              + "".join(f"\n       - {p}" for p in r.problems))
    print(f"screenshots: {shots}")
    print(f"{len(results) - len(failed)}/{len(results)} pages pass")
    return 1 if failed else 0


def toc_pages(toc: Path) -> list[tuple[str, bool]]:
    """Pages of a jb-book table of contents: (path without suffix, is a result chapter)."""
    import yaml

    spec = yaml.safe_load(toc.read_text(encoding="utf-8"))
    files = [spec["root"]]
    for part in spec.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
        files += [s["file"] for c in part.get("chapters", []) for s in c.get("sections", [])]
    return [(f, f.startswith("notebooks/")) for f in files]


def check_page(browser: str, url: str, page: str, is_result: bool, shot: Path, profile_dir: str,
               timeout: int) -> PageResult:
    """Load one page in headless Chromium, save its screenshot and check its DOM."""
    result = PageResult(page)
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile_dir}", "--window-size=1280,2400", "--virtual-time-budget=3000",
        f"--screenshot={shot}", "--dump-dom", url,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        result.problems.append(f"Chromium did not finish loading {url} within {timeout} s")
        return result
    dom = done.stdout
    if done.returncode != 0 or not dom.strip():
        tail = "\n".join(done.stderr.strip().splitlines()[-3:])
        result.problems.append(f"Chromium failed on {url} (exit {done.returncode}): {tail}")
        return result
    if not shot.is_file() or shot.stat().st_size == 0:
        result.problems.append("no screenshot was written")
    main = _main_content(dom)
    result.tables = len(re.findall(r"<table\b", main))
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", main)
    result.images = len(sources)
    if not re.search(r"<h1\b", main):
        result.problems.append("no title (<h1>) on the page")
    for what, marker in ERROR_MARKERS.items():
        if marker.search(dom):
            result.problems.append(f"the page shows {what}")
    result.problems += math_problems(main)
    if "injected-parameters" in main:
        result.problems.append("the page shows papermill's injected-parameters cell")
    if is_result and result.tables == 0:
        result.problems.append("no table in a result chapter")
    if is_result and result.images == 0:
        result.problems.append("no figure in a result chapter")
    for src in sources:
        problem = _fetch_problem(urllib.parse.urljoin(url, src))
        if problem:
            result.problems.append(f"figure {src}: {problem}")
    return result


#: TeX source that MathJax replaces when it renders: inline and display delimiters, environments.
RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")


def math_problems(html: str) -> list[str]:
    """Why the formulas of ``html`` (a page's DOM after scripts ran) are not rendered; empty if they are."""
    text = re.sub(r"<(script|style|pre|code|mjx-container)\b.*?</\1>", "", html, flags=re.DOTALL | re.IGNORECASE)
    text = re.sub(r"<[^>]+>", "", text)  # tags and their attributes are not shown text
    formulas = len(re.findall(r"class=\"[^\"]*\bmath\b", html))
    rendered = len(re.findall(r"<mjx-container\b", html))
    problems = []
    if formulas and not rendered:
        problems.append(f"{formulas} formulas but no MathJax output (<mjx-container>): MathJax did not load")
    raw = RAW_TEX.search(text)
    if raw:
        around = text[max(0, raw.start() - 30):raw.end() + 30].replace("\n", " ")
        problems.append(f"TeX source shown instead of a formula: ...{around}...")
    return problems


def _main_content(dom: str) -> str:
    """The article part of a page (the theme's navigation left out), or the whole page."""
    start = dom.find("<main")
    end = dom.rfind("</main>")
    return dom[start:end] if 0 <= start < end else dom


def _fetch_problem(url: str) -> str | None:
    if not url.startswith("http://127.0.0.1"):
        return None if url.startswith("data:") else "not served by the book"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return None if response.status == 200 and response.read() else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)


def _serve(directory: Path) -> http.server.ThreadingHTTPServer:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the check's output readable
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # a browser that closes early is no failure
            if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
                super().handle_error(request, client_address)

    handler = functools.partial(Quiet, directory=str(directory))
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    sys.exit(main())
