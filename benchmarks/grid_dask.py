"""The ``tiny`` grid three ways: serially, on 2 local Dask workers, through a scheduler address.

Each way starts from an empty store, so each computes the backbone features of
both datasets and all 8 cells:

* ``serial``: ``run_grid(jobs=1)``, the cells one after the other in this process;
* ``local cluster``: ``run_grid(cluster="local", workers=2)``, a ``LocalCluster``
  of 2 worker processes started and closed by the grid (its start-up included);
* ``scheduler address``: a ``LocalCluster`` of 2 workers started beforehand (as a
  user's running cluster would be, its start-up not timed, its workers with
  glibc's memory defaults as the README advises), the grid connecting to it by
  ``scheduler="tcp://..."``.

Every cell runs with one torch thread in all three (``threads=1``), so the
scores must be equal bit for bit; the script checks it. Cells are independent,
so the speed-up is bounded by the number of workers and by the feature sets:
the cells of one (dataset, model) wait for whoever computes its features.

Usage::

    python benchmarks/grid_dask.py                  # the tiny profile (8 cells)
    python benchmarks/grid_dask.py --n-train 100    # smaller cells
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(label: str, cells, root: Path, **how) -> float:
    from glitchlib.grid import run_grid

    start = time.perf_counter()
    outcome = run_grid(cells, store=root, progress=False, **how)
    seconds = time.perf_counter() - start
    if not outcome.ok or len(outcome.computed) != len(cells):
        raise SystemExit(f"{label}: {len(outcome.computed)} of {len(cells)} cells computed, failed: {outcome.failed}")
    print(f"{label:20s} {seconds:7.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=None, help="training samples per cell (default: the profile's)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import dask
    from distributed import LocalCluster

    from glitchlib.profiles import profile_settings
    from glitchlib.store import Store

    cells = profile_settings("tiny")
    if args.n_train:
        cells = [s.replace(n_train=args.n_train) for s in cells]
    print(f"tiny profile: {len(cells)} cells, {args.workers} workers, 1 torch thread per cell")
    with tempfile.TemporaryDirectory() as tmp:
        roots = {name: Path(tmp) / name for name in ("serial", "local", "address")}
        seconds = {"serial": timed("serial", cells, roots["serial"])}
        seconds["local"] = timed("local cluster", cells, roots["local"], cluster="local", workers=args.workers)
        # started like the README's own workers: glibc's memory defaults, not Dask's trimming
        environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), "MALLOC_TRIM_THRESHOLD_": None}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
                LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0",
                             silence_logs=logging.ERROR) as cluster:
            seconds["address"] = timed("scheduler address", cells, roots["address"],
                                       scheduler=cluster.scheduler_address)
        for name in ("local", "address"):
            same = all(np.array_equal(Store(root=roots[name]).load_scores(s.key()).select_dtypes("number").to_numpy(),
                                      Store(root=roots["serial"]).load_scores(s.key()).select_dtypes("number").to_numpy(),
                                      equal_nan=True) for s in cells)
            print(f"{name}: scores bit-identical to serial: {same}")
    print(f"speed-up over serial: local cluster {seconds['serial'] / seconds['local']:.2f}x, "
          f"scheduler address {seconds['serial'] / seconds['address']:.2f}x")


if __name__ == "__main__":
    main()
