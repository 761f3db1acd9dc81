# glitchlib: one-command setup, tests, book and benchmarks.
#   make setup            create .venv and install glitchlib with everything the book, tests, benchmarks need
#   make test             run the test suite (sets up first when needed)
#   make test-fast        the seconds-long math tests (signals, metrics, glitches, detection) while editing
#   make book             run the embedded grid, execute the notebooks, build the HTML book
#   make book PROFILE=paper   the same for another profile (embedded | paper | tiny | path/to/profile.yaml)
#   make book JOBS=4          the grid on a local Dask cluster of 4 worker processes (default 2; JOBS=1: in this process)
#   make book SCHEDULER=tcp://host:8786   the grid on a running Dask cluster
#   make book-check       build the book and open every chapter in headless Chromium
#   make bench            run every benchmark

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= embedded
RESULTS ?= results
JOBS ?= 2
SCHEDULER ?=
STAMP := $(VENV)/.glitchlib-installed

.PHONY: setup test test-fast book book-check bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name glitchlib --display-name "Python (glitchlib)" >/dev/null
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

FAST_TESTS := tests/test_signals.py tests/test_metrics.py tests/test_glitches.py tests/test_detect.py

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not gpu" $(FAST_TESTS)

book: setup
	$(PY) scripts/build_book.py --profile $(PROFILE) --results $(RESULTS) --jobs $(JOBS) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

book-check: book
	$(PY) book/check_book.py --html book/_build/html

bench: setup
	for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf book/_build book/_static/mathjax notebooks/_executed .pytest_cache
