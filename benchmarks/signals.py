"""Benchmark: every signal on a 60,000 x 10,000 float32 influence matrix.

Prints the wall time and the peak memory allocated on top of the inputs
(NumPy reports its buffers to ``tracemalloc``) for each signal function and for
the whole table (:func:`glitchlib.detect.compute_signals_from_matrices`), and
the process's peak resident memory. One random matrix stands in for ``I``,
``I*`` and ``I^b`` so that only one matrix is held.

Run::

    python benchmarks/signals.py                 # 60,000 x 10,000, about 2.4 GB
    python benchmarks/signals.py --n-train 6000 --n-test 1000
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from glitchlib import signals as S
from glitchlib.detect import compute_signals_from_matrices


def measure(fn):
    """Run ``fn()``; return (result, seconds, peak bytes allocated beyond what was live before)."""
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    return result, seconds, peak - before


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    I = rng.standard_normal((args.n_train, args.n_test), dtype=np.float32)
    SI = rng.random(args.n_train)
    y_train = rng.integers(0, args.n_classes, size=args.n_train)
    y_test = rng.integers(0, args.n_classes, size=args.n_test)
    matrix_mb = I.nbytes / 2**20
    print(f"matrix {args.n_train} x {args.n_test} float32 = {matrix_mb:,.0f} MiB "
          f"(generated in {time.perf_counter() - start:.1f} s), {args.n_classes} classes")

    C = args.n_classes
    cases = {
        "si": lambda: S.si(SI),
        "mi": lambda: S.mi(I),
        "mai": lambda: S.mai(I),
        "aai": lambda: S.aai(I),
        "mpi": lambda: S.mpi(I),
        "nil": lambda: S.nil(I, y_train, y_test, n_classes=C),
        "nil_opt": lambda: S.nil_opt(I, y_train, y_test, n_classes=C),
        "slip": lambda: S.slip(I, y_train, y_test, n_classes=C),
        "slin": lambda: S.slin(I, y_train, y_test, n_classes=C),
        "gd_class": lambda: S.gd_class(I, y_train, y_test, n_classes=C),
        "cnci (I* = I)": lambda: S.cnci(I, y_train, y_test, n_classes=C),
        "pcid (I^b = I)": lambda: S.pcid(I, I, y_test, n_classes=C),
        "counterfactual_labels": lambda: S.counterfactual_labels(I, y_test, n_classes=C),
        "second_best_labels": lambda: S.second_best_labels(I, y_test, n_classes=C),
        "class_sums (all 4 parts)": lambda: S._class_sums(I, y_test, n_classes=C),
    }
    tracemalloc.start()
    rows = []
    for name, fn in cases.items():
        _, seconds, extra = measure(fn)
        rows.append((name, seconds, extra))
    c = S.cnci(I, y_train, y_test, n_classes=C)
    p = S.pcid(I, I, y_test, n_classes=C)
    _, seconds, extra = measure(lambda: S.cfrank(c, p))
    rows.insert(12, ("cfrank (from cnci, pcid)", seconds, extra))
    report, seconds, extra = measure(lambda: compute_signals_from_matrices(I, SI, I, I, y_train, y_test, n_classes=C))
    tracemalloc.stop()

    print(f"\n{'function':<28}{'time [s]':>10}{'peak extra [MiB]':>18}{'x matrix':>10}")
    for name, s, e in rows:
        print(f"{name:<28}{s:>10.2f}{e / 2**20:>18.1f}{e / I.nbytes:>10.3f}")
    print(f"{'sum of the single signals':<28}{sum(s for n, s, _ in rows[:13]):>10.2f}")
    print(f"{'whole table (3 matrices)':<28}{seconds:>10.2f}{extra / 2**20:>18.1f}{extra / I.nbytes:>10.3f}")
    print(f"  (report.timings: {report.timings['signals']:.2f} s; columns: {', '.join(report.scores.columns)})")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"\nprocess peak RSS {peak_rss:,.0f} MiB (matrix {matrix_mb:,.0f} MiB)")


if __name__ == "__main__":
    main()
